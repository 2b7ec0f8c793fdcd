-- Every message of `chat_chatmessage` with its chat's session, once, and
-- what it is:
--   is_turn: a turn, a human or AI message in the chat of a counted
--     session; the row then carries that session's team, chatbot,
--     participant, effective platform and length (ended_at - created_at in
--     microseconds, NULL while the session is open), so that no chart has
--     to join turns back to sessions;
--   is_other: any other valid message (system messages, messages of
--     uncounted sessions, messages whose chat has no session). Turns plus
--     these are the whole valid message table, which lets an incremental
--     ETL rebuild it without reading old messages from Postgres again;
--   and one column per anomaly of a single message, named after its kind.
--     Each depends only on the message and its chat's session, so an
--     incremental run adds the counts up over the messages it derives again.
-- The ETL splits these rows in one pass (etl/src/messages.rs).
SELECT
    s.team_id,
    m.id AS message_id,
    m.chat_id,
    s.session_id,
    s.chatbot_id,
    s.participant_id,
    s.platform,
    m.message_type,
    m.created_at,
    CAST(s.ended_at AS BIGINT) - CAST(s.created_at AS BIGINT) AS session_length_us,
    COALESCE(s.counted AND m.message_type IN ('human', 'ai'), false)
        AND m.id IS NOT NULL AND m.created_at IS NOT NULL AS is_turn,
    m.id IS NOT NULL AND m.chat_id IS NOT NULL AND m.message_type IS NOT NULL AND m.created_at IS NOT NULL
        AND NOT COALESCE(s.counted AND m.message_type IN ('human', 'ai'), false) AS is_other,
    s.session_id IS NULL AS orphan_messages,
    COALESCE(m.message_type NOT IN ('human', 'ai', 'system'), false) AS unknown_message_types,
    m.id IS NULL OR m.chat_id IS NULL OR m.message_type IS NULL OR m.created_at IS NULL
        AS messages_missing_columns,
    -- turns older than their session
    COALESCE(s.counted AND m.message_type IN ('human', 'ai') AND m.id IS NOT NULL
             AND m.created_at < s.created_at, false) AS turns_before_session_start
FROM chat_chatmessage m
LEFT JOIN snap_sessions s ON s.chat_id = m.chat_id
