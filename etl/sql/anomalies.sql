-- One row per anomaly kind the transform handled, besides the per-message
-- kinds of messages.sql. Each is a count of source rows; none of
-- them stops the ETL. `tagged_items_dangling` is counted by
-- etl/src/dangling.rs.
SELECT 'sessions_missing_columns' AS kind, count(*) AS n FROM experiments_experimentsession
WHERE id IS NULL OR team_id IS NULL OR chat_id IS NULL OR experiment_id IS NULL
   OR status IS NULL OR created_at IS NULL
UNION ALL
SELECT 'sessions_unknown_platform', count(*) FROM snap_sessions
WHERE platform IS NULL OR platform NOT IN ('telegram', 'web', 'whatsapp', 'facebook', 'sureadhere', 'api',
    'slack', 'commcare_connect', 'evaluations', 'embedded_widget', 'email')
UNION ALL
SELECT 'sessions_unknown_status', count(*) FROM snap_sessions
WHERE status NOT IN ('setup', 'pending', 'active', 'pending-review', 'complete', 'unknown')
UNION ALL
SELECT 'sessions_without_participant', count(*) FROM snap_sessions s
LEFT JOIN experiments_participant p ON p.id = s.participant_id
WHERE p.id IS NULL
UNION ALL
SELECT 'sessions_without_chatbot', count(*) FROM snap_sessions s
LEFT JOIN snap_chatbots b ON b.chatbot_id = s.chatbot_id AND b.team_id = s.team_id
WHERE b.chatbot_id IS NULL
UNION ALL
SELECT 'sessions_ended_before_start', count(*) FROM snap_sessions
WHERE ended_at < created_at
UNION ALL
SELECT 'tagged_items_other_team', count(*) FROM annotations_customtaggeditem i
JOIN annotations_tag t ON t.id = i.tag_id
WHERE t.team_id <> i.team_id
