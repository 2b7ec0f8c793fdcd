-- user-engagement: every participant with a human turn in the window, with
-- their human turns, sessions and last human turn. Grouping by session first
-- makes the session count a plain count (no per-participant distinct set);
-- the row count is `total_participants`, and most/least active are picked
-- from these rows in Rust.
WITH per_session AS (
    SELECT participant_id, session_id, sum(human) AS human, max(last_human_at) AS last_human_at
    FROM f_activity
    WHERE human > 0 AND participant_id IS NOT NULL
      AND created_at >= $start AND created_at < $end
    GROUP BY participant_id, session_id
)
SELECT participant_id, sum(human) AS total_messages, count(*) AS total_sessions,
       max(last_human_at) AS last_activity
FROM per_session
GROUP BY participant_id
