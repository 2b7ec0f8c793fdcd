-- Lengths in minutes of the ended sessions in R (sessions with a turn in the
-- window), one row per session: its first row in the window.
SELECT CAST(session_length_us AS DOUBLE) / 60000000.0 AS minutes
FROM f_activity
WHERE session_length_us IS NOT NULL AND first_in_window
  AND created_at >= $start AND created_at < $end
