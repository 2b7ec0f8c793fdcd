-- channel-breakdown: per effective platform with a session in R (a session
-- has one platform, so activity is folded per session first).
WITH per_session AS (
    SELECT session_id, max(platform) AS platform, max(participant_id) AS participant_id,
           sum(human) AS human, sum(ai) AS ai
    FROM f_activity
    WHERE created_at >= $start AND created_at < $end
    GROUP BY session_id
)
SELECT platform,
       count(*) AS sessions,
       count(DISTINCT CASE WHEN human > 0 THEN participant_id END) AS participants,
       sum(human) AS human_messages,
       sum(ai) AS ai_messages
FROM per_session
GROUP BY platform
