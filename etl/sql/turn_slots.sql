-- The rollup: one row per session and 15-minute UTC slot holding its turns,
-- with the turn counts and the last human turn. Distinct counts (sessions,
-- participants, chatbots) stay exact over it because every row still names
-- its session and participant; only rows of the same session and slot merge.
-- A row is its session's first in a window or bucket exactly when its
-- previous slot lies before it, so charts count sessions with a filter
-- instead of a per-session grouping.
-- `prev_slot` (the session's previous slot with turns) and `prev_human_slot`
-- (its previous slot with a human turn) are filled in by the writer in its
-- pass over the rows in slot order (`write::SessionLinks`): a window
-- function would sort the whole table by session once more.
SELECT
    team_id,
    session_id,
    chatbot_id,
    participant_id,
    platform,
    arrow_cast(date_bin(INTERVAL '15 minutes', created_at), 'Timestamp(Microsecond, Some("UTC"))') AS slot,
    count(CASE WHEN message_type = 'human' THEN 1 END) AS human,
    count(CASE WHEN message_type = 'ai' THEN 1 END) AS ai,
    max(CASE WHEN message_type = 'human' THEN created_at END) AS last_human_at,
    session_length_us,
    arrow_cast(NULL, 'Timestamp(Microsecond, Some("UTC"))') AS prev_slot,
    arrow_cast(NULL, 'Timestamp(Microsecond, Some("UTC"))') AS prev_human_slot
FROM snap_turns
GROUP BY team_id, session_id, chatbot_id, participant_id, platform, session_length_us,
         date_bin(INTERVAL '15 minutes', created_at)
