-- message-volume: human and AI turns per bucket.
SELECT bucket(created_at) AS b, sum(human) AS human_messages, sum(ai) AS ai_messages
FROM f_activity
WHERE created_at >= $start AND created_at < $end
GROUP BY 1
