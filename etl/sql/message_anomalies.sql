-- The anomalies of single messages: one row per kind with the count of
-- messages in `chat_chatmessage` (turns in `snap_turns`) it applies to. Each
-- message's kinds depend only on the message and its chat's session, so an
-- incremental run adds up these counts over the messages it re-derived.
SELECT 'orphan_messages' AS kind, count(*) AS n
FROM chat_chatmessage m LEFT JOIN snap_sessions s ON s.chat_id = m.chat_id
WHERE s.session_id IS NULL
UNION ALL
SELECT 'unknown_message_types', count(*) FROM chat_chatmessage
WHERE message_type IS NOT NULL AND message_type NOT IN ('human', 'ai', 'system')
UNION ALL
SELECT 'messages_missing_columns', count(*) FROM chat_chatmessage
WHERE id IS NULL OR chat_id IS NULL OR message_type IS NULL OR created_at IS NULL
UNION ALL
SELECT 'turns_before_session_start', count(*) FROM snap_turns t
JOIN snap_sessions s ON s.session_id = t.session_id AND s.team_id = t.team_id
WHERE t.created_at < s.created_at
