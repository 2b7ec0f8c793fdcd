-- overview: one row. f_* are the team's tables with the request's chatbot
-- and channel filters applied; f_activity holds turn activity (one row per
-- turn, or per session and 15-minute slot from the rollup) with `human` and
-- `ai` turn counts; $start/$end bound the window [start, end).
WITH w AS (
    SELECT * FROM f_activity WHERE created_at >= $start AND created_at < $end
),
act AS (
    SELECT count(DISTINCT session_id) AS active_sessions,
           count(DISTINCT chatbot_id) AS active_chatbots,
           count(DISTINCT CASE WHEN human > 0 THEN participant_id END) AS active_participants,
           sum(human) AS human_messages,
           sum(ai) AS ai_messages
    FROM w
),
completed AS (
    SELECT count(*) AS completed_sessions FROM f_sessions
    WHERE ended_at IS NOT NULL AND session_id IN (SELECT session_id FROM w)
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
       act.active_sessions, started.sessions_started, completed.completed_sessions,
       act.human_messages, act.ai_messages
FROM act CROSS JOIN completed CROSS JOIN started CROSS JOIN everyone CROSS JOIN bots
