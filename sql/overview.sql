-- overview: one row. f_* are the team's tables with the request's chatbot
-- and channel filters applied; f_activity holds turn activity (one row per
-- turn, or per session and 15-minute slot from the rollup) with `human` and
-- `ai` turn counts, the session's length (NULL while open) and
-- `first_in_window`, true on the session's first row in the window;
-- $start/$end bound the window [start, end). A session is counted once, on
-- that row, so no per-session grouping is needed; its chatbot and
-- participant are the same on every row.
WITH act AS (
    SELECT count(*) FILTER (WHERE first_in_window) AS active_sessions,
           count(DISTINCT chatbot_id) AS active_chatbots,
           count(DISTINCT CASE WHEN human > 0 THEN participant_id END) AS active_participants,
           count(*) FILTER (WHERE first_in_window AND session_length_us IS NOT NULL)
               AS completed_sessions,
           sum(human) AS human_messages,
           sum(ai) AS ai_messages
    FROM f_activity
    WHERE created_at >= $start AND created_at < $end
),
started AS (
    SELECT count(*) AS sessions_started FROM f_sessions
    WHERE created_at >= $start AND created_at < $end
),
everyone AS (
    SELECT count(DISTINCT participant_id) AS total_participants FROM f_sessions
),
bots AS (
    SELECT count(*) AS total_chatbots FROM f_chatbots
)
SELECT bots.total_chatbots, act.active_chatbots, everyone.total_participants, act.active_participants,
       act.active_sessions, started.sessions_started, act.completed_sessions,
       act.human_messages, act.ai_messages
FROM act CROSS JOIN started CROSS JOIN everyone CROSS JOIN bots
