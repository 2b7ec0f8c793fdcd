-- channel-breakdown: per effective platform with a session in R.
SELECT platform,
       count(DISTINCT session_id) AS sessions,
       count(DISTINCT CASE WHEN message_type = 'human' THEN participant_id END) AS participants,
       count(CASE WHEN message_type = 'human' THEN 1 END) AS human_messages,
       count(CASE WHEN message_type = 'ai' THEN 1 END) AS ai_messages
FROM f_turns
WHERE created_at >= $start AND created_at < $end
GROUP BY platform
