-- Lengths in minutes of the ended sessions in R (sessions with a turn in the window).
SELECT CAST(max(session_length_us) AS DOUBLE) / 60000000.0 AS minutes
FROM f_activity
WHERE session_length_us IS NOT NULL AND created_at >= $start AND created_at < $end
GROUP BY session_id
