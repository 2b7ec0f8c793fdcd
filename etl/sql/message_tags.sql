-- Tags on turns (metrics.md §3 tag-analytics): the tag and the tagged item
-- both of the turn's team, no 'experiment_version' tags, one row per
-- (tag, message) however often it was attached.
SELECT DISTINCT
    tu.team_id,
    t.id AS tag_id,
    tu.message_id,
    tu.session_id,
    tu.chatbot_id,
    tu.participant_id,
    tu.platform,
    tu.message_type,
    tu.created_at
FROM annotations_customtaggeditem i
JOIN django_content_type ct
  ON ct.id = i.content_type_id AND ct.app_label = 'chat' AND ct.model = 'chatmessage'
JOIN annotations_tag t
  ON t.id = i.tag_id AND t.team_id = i.team_id AND COALESCE(t.category, '') <> 'experiment_version'
JOIN snap_turns tu ON tu.message_id = i.object_id AND tu.team_id = i.team_id
