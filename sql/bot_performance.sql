-- bot-performance: one row per listed chatbot, zero activity included.
-- Sorting and paging happen in Rust (a handful of rows, exact rules).
WITH w AS (
    SELECT * FROM f_turns WHERE created_at >= $start AND created_at < $end
),
per_session AS (
    SELECT session_id, count(*) AS messages FROM w GROUP BY session_id
),
per_bot AS (
    SELECT s.chatbot_id,
           count(*) AS sessions,
           count(DISTINCT s.participant_id) AS participants,
           sum(p.messages) AS messages,
           count(s.ended_at) AS completed,
           avg(CASE WHEN s.ended_at IS NOT NULL
               THEN CAST(CAST(s.ended_at AS BIGINT) - CAST(s.created_at AS BIGINT) AS DOUBLE) / 60000000.0 END)
               AS avg_session_duration
    FROM per_session p JOIN f_sessions s ON s.session_id = p.session_id
    GROUP BY s.chatbot_id
)
SELECT b.chatbot_id, b.name AS chatbot_name,
       COALESCE(p.participants, 0) AS participants,
       COALESCE(p.sessions, 0) AS sessions,
       COALESCE(p.messages, 0) AS messages,
       COALESCE(p.completed, 0) AS completed,
       p.avg_session_duration
FROM f_chatbots b LEFT JOIN per_bot p ON p.chatbot_id = b.chatbot_id
