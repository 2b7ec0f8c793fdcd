-- Tags on turns (metrics.md §3 tag-analytics): the tag and the tagged item
-- both of the turn's team (`message_items`), one row per (tag, message)
-- however often it was attached.
SELECT
    tu.team_id,
    i.tag_id,
    tu.message_id,
    tu.session_id,
    tu.chatbot_id,
    tu.participant_id,
    tu.platform,
    tu.message_type,
    tu.created_at
FROM message_items i
JOIN snap_turns tu ON tu.message_id = i.message_id AND tu.team_id = i.team_id
