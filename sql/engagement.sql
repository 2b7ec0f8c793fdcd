-- user-engagement: every participant with a human turn in the window, with
-- their human turns, sessions and last human turn. A session counts once,
-- on its first row with a human turn in the window
-- (`first_human_in_window`), so there is no per-session grouping; the row count is
-- `total_participants`, and most/least active are picked from these rows
-- in Rust.
SELECT participant_id, sum(human) AS total_messages,
       count(*) FILTER (WHERE first_human_in_window) AS total_sessions,
       max(last_human_at) AS last_activity
FROM f_activity
WHERE human > 0 AND participant_id IS NOT NULL
  AND created_at >= $start AND created_at < $end
GROUP BY participant_id
