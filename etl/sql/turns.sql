-- Turns: human and AI messages in the chat of a counted session, carrying
-- their session's team, chatbot, participant, effective platform and length
-- (ended_at - created_at in microseconds, NULL while the session is open),
-- so that no chart has to join turns back to sessions.
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
    CAST(s.ended_at AS BIGINT) - CAST(s.created_at AS BIGINT) AS session_length_us
FROM chat_chatmessage m
JOIN snap_sessions s ON s.chat_id = m.chat_id
WHERE s.counted
  AND m.message_type IN ('human', 'ai')
  AND m.id IS NOT NULL AND m.created_at IS NOT NULL
