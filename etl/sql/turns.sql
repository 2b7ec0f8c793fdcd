-- Turns: human and AI messages in the chat of a counted session, carrying
-- their session's team, chatbot, participant and effective platform.
SELECT
    s.team_id,
    m.id AS message_id,
    m.chat_id,
    s.session_id,
    s.chatbot_id,
    s.participant_id,
    s.platform,
    m.message_type,
    m.created_at
FROM chat_chatmessage m
JOIN snap_sessions s ON s.chat_id = m.chat_id
WHERE s.counted
  AND m.message_type IN ('human', 'ai')
  AND m.id IS NOT NULL AND m.created_at IS NOT NULL
