-- message-volume: human and AI turns per bucket.
SELECT bucket(created_at) AS b,
       count(CASE WHEN message_type = 'human' THEN 1 END) AS human_messages,
       count(CASE WHEN message_type = 'ai' THEN 1 END) AS ai_messages
FROM f_turns
WHERE created_at >= $start AND created_at < $end
GROUP BY 1
