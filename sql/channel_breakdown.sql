-- channel-breakdown: per effective platform with a session in R. A session
-- has one platform and counts once, on its first row in the window
-- (`prev_at` NULL or before it).
SELECT platform,
       count(*) FILTER (WHERE prev_at IS NULL OR prev_at < $start) AS sessions,
       count(DISTINCT CASE WHEN human > 0 THEN participant_id END) AS participants,
       sum(human) AS human_messages,
       sum(ai) AS ai_messages
FROM f_activity
WHERE created_at >= $start AND created_at < $end
GROUP BY platform
