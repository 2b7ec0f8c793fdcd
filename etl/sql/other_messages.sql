-- Every valid message that is not a turn (system messages, messages of
-- uncounted sessions, messages whose chat has no session). Turns plus these
-- are the whole valid message table, which lets an incremental ETL rebuild
-- it without reading old messages from Postgres again.
SELECT m.id AS message_id, m.chat_id, m.message_type, m.created_at
FROM chat_chatmessage m
LEFT JOIN snap_sessions s ON s.chat_id = m.chat_id
WHERE m.id IS NOT NULL AND m.chat_id IS NOT NULL
  AND m.message_type IS NOT NULL AND m.created_at IS NOT NULL
  AND NOT (COALESCE(s.counted, false) AND m.message_type IN ('human', 'ai'))
