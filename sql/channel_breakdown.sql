-- channel-breakdown: per effective platform with a session in R. A session
-- has one platform and counts once, on its first row in the window
-- (`first_in_window`).
SELECT platform,
       count(*) FILTER (WHERE first_in_window) AS sessions,
       count(DISTINCT CASE WHEN human > 0 THEN participant_id END) AS participants,
       sum(human) AS human_messages,
       sum(ai) AS ai_messages
FROM f_activity
WHERE created_at >= $start AND created_at < $end
GROUP BY platform
