-- One row per anomaly kind the transform handled, besides the per-message
-- kinds of message_anomalies.sql. Each is a count of source rows; none of
-- them stops the ETL. `message_ids` holds the id of every message.
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
SELECT 'tagged_items_dangling', count(*) FROM annotations_customtaggeditem i
JOIN django_content_type ct ON ct.id = i.content_type_id AND ct.app_label = 'chat'
LEFT JOIN annotations_tag t ON t.id = i.tag_id
LEFT JOIN message_ids m ON ct.model = 'chatmessage' AND m.id = i.object_id
LEFT JOIN chat_chat c ON ct.model = 'chat' AND c.id = i.object_id
WHERE t.id IS NULL OR (m.id IS NULL AND c.id IS NULL)
UNION ALL
SELECT 'tagged_items_other_team', count(*) FROM annotations_customtaggeditem i
JOIN annotations_tag t ON t.id = i.tag_id
WHERE t.team_id <> i.team_id
