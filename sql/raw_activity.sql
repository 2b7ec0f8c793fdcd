-- f_activity over raw turns (when the rollup can't answer): one row per turn
-- of the window (`w_turns`: the team's turns inside [start, end) with the
-- request's filters), with the columns of the rollup. `prev_at` is the
-- session's previous turn in the window and `prev_human_at` its previous
-- human turn in the window (ties broken by message id), NULL for none.
SELECT session_id, chatbot_id, participant_id, platform, created_at,
       CASE WHEN message_type = 'human' THEN 1 ELSE 0 END AS human,
       CASE WHEN message_type = 'ai' THEN 1 ELSE 0 END AS ai,
       CASE WHEN message_type = 'human' THEN created_at END AS last_human_at,
       session_length_us,
       lag(created_at) OVER (PARTITION BY session_id ORDER BY created_at, message_id) AS prev_at,
       max(CASE WHEN message_type = 'human' THEN created_at END)
           OVER (PARTITION BY session_id ORDER BY created_at, message_id
                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_human_at
FROM w_turns
