-- bot-performance: one row per listed chatbot, zero activity included.
-- Sorting and paging happen in Rust (a handful of rows, exact rules).
WITH w AS (
    SELECT * FROM f_activity WHERE created_at >= $start AND created_at < $end
),
per_session AS (
    SELECT session_id, sum(human + ai) AS messages FROM w GROUP BY session_id
),
per_bot AS (
    SELECT s.chatbot_id,
           count(*) AS sessions,
           count(DISTINCT s.participant_id) AS participants,
           sum(p.messages) AS messages,
           count(s.ended_at) AS completed,
           -- Integer microseconds: an exact sum whatever the row order, so
           -- every plan (raw or rollup, any partitioning) gives the same mean.
           sum(CAST(s.ended_at AS BIGINT) - CAST(s.created_at AS BIGINT)) AS ended_us
    FROM per_session p JOIN f_sessions s ON s.session_id = p.session_id
    GROUP BY s.chatbot_id
)
SELECT b.chatbot_id, b.name AS chatbot_name,
       COALESCE(p.participants, 0) AS participants,
       COALESCE(p.sessions, 0) AS sessions,
       COALESCE(p.messages, 0) AS messages,
       COALESCE(p.completed, 0) AS completed,
       p.ended_us
FROM f_chatbots b LEFT JOIN per_bot p ON p.chatbot_id = b.chatbot_id
