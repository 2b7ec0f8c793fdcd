-- session-analytics, part 1: sessions with a turn in the bucket, and the
-- distinct human authors.
SELECT bucket(created_at) AS b,
       count(DISTINCT session_id) AS active_sessions,
       count(DISTINCT CASE WHEN human > 0 THEN participant_id END) AS active_participants
FROM f_activity
WHERE created_at >= $start AND created_at < $end
GROUP BY 1
