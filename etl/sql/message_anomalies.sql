-- The anomalies of single messages: one row per kind with the count of
-- messages in `chat_chatmessage` it applies to, in one pass over the
-- messages joined with their chat's session. Each message's kinds depend
-- only on the message and that session, so an incremental run adds up these
-- counts over the messages it re-derived.
SELECT k.kind, CASE k.kind
        WHEN 'orphan_messages' THEN c.orphan_messages
        WHEN 'unknown_message_types' THEN c.unknown_message_types
        WHEN 'messages_missing_columns' THEN c.messages_missing_columns
        ELSE c.turns_before_session_start
    END AS n
FROM (
    SELECT
        count(CASE WHEN s.session_id IS NULL THEN 1 END) AS orphan_messages,
        count(CASE WHEN m.message_type NOT IN ('human', 'ai', 'system') THEN 1 END) AS unknown_message_types,
        count(CASE WHEN m.id IS NULL OR m.chat_id IS NULL OR m.message_type IS NULL OR m.created_at IS NULL
              THEN 1 END) AS messages_missing_columns,
        -- turns (turns.sql) older than their session
        count(CASE WHEN s.counted AND m.message_type IN ('human', 'ai') AND m.id IS NOT NULL
                        AND m.created_at < s.created_at THEN 1 END) AS turns_before_session_start
    FROM chat_chatmessage m
    LEFT JOIN snap_sessions s ON s.chat_id = m.chat_id
) c
CROSS JOIN (VALUES ('orphan_messages'), ('unknown_message_types'), ('messages_missing_columns'),
                   ('turns_before_session_start')) AS k(kind)
