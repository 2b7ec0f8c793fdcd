-- session-analytics, part 1: sessions with a turn in the bucket, and the
-- distinct human authors (activity folded per bucket and session first).
WITH per_session AS (
    SELECT bucket(created_at) AS b, session_id, max(participant_id) AS participant_id, sum(human) AS human
    FROM f_activity
    WHERE created_at >= $start AND created_at < $end
    GROUP BY 1, session_id
)
SELECT b,
       count(*) AS active_sessions,
       count(DISTINCT CASE WHEN human > 0 THEN participant_id END) AS active_participants
FROM per_session
GROUP BY b
