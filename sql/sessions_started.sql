-- session-analytics, part 2: counted, filtered sessions created in the bucket.
SELECT bucket(created_at) AS b, count(*) AS sessions_started
FROM f_sessions
WHERE created_at >= $start AND created_at < $end
GROUP BY 1
