-- session-analytics, part 1: sessions with a turn in the bucket, counted on
-- their first row in it (the session's previous row is before the window,
-- whose first bucket may start earlier, or in another bucket), and the
-- distinct human authors.
SELECT bucket(created_at) AS b,
       count(*) FILTER (WHERE first_in_window OR bucket(prev_at) <> bucket(created_at))
           AS active_sessions,
       count(DISTINCT CASE WHEN human > 0 THEN participant_id END) AS active_participants
FROM f_activity
WHERE created_at >= $start AND created_at < $end
GROUP BY 1
