-- overview: one row. f_* are the team's tables with the request's chatbot
-- and channel filters applied; f_activity holds turn activity (one row per
-- turn, or per session and 15-minute slot from the rollup) with `human` and
-- `ai` turn counts and the session's length (NULL while open); $start/$end
-- bound the window [start, end).
-- Activity is first folded per session (a session has one chatbot and one
-- participant), so the session counts are plain counts.
WITH per_session AS (
    SELECT session_id, max(chatbot_id) AS chatbot_id, max(participant_id) AS participant_id,
           max(session_length_us) AS length_us, sum(human) AS human, sum(ai) AS ai
    FROM f_activity
    WHERE created_at >= $start AND created_at < $end
    GROUP BY session_id
),
act AS (
    SELECT count(*) AS active_sessions,
           count(DISTINCT chatbot_id) AS active_chatbots,
           count(DISTINCT CASE WHEN human > 0 THEN participant_id END) AS active_participants,
           count(length_us) AS completed_sessions,
           sum(human) AS human_messages,
           sum(ai) AS ai_messages
    FROM per_session
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
