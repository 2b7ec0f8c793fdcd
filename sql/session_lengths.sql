-- Lengths in minutes of the ended sessions in R (sessions with a turn in the window).
SELECT CAST(CAST(ended_at AS BIGINT) - CAST(created_at AS BIGINT) AS DOUBLE) / 60000000.0 AS minutes
FROM f_sessions
WHERE ended_at IS NOT NULL
  AND session_id IN (SELECT session_id FROM f_activity WHERE created_at >= $start AND created_at < $end)
