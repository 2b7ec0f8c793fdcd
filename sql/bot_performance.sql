-- bot-performance: one row per listed chatbot, zero activity included.
-- Sorting and paging happen in Rust (a handful of rows, exact rules).
WITH per_session AS (
    SELECT session_id, max(chatbot_id) AS chatbot_id, max(participant_id) AS participant_id,
           max(session_length_us) AS length_us, sum(human + ai) AS messages
    FROM f_activity
    WHERE created_at >= $start AND created_at < $end
    GROUP BY session_id
),
per_bot AS (
    SELECT chatbot_id,
           count(*) AS sessions,
           count(DISTINCT participant_id) AS participants,
           sum(messages) AS messages,
           count(length_us) AS completed,
           -- Integer microseconds: an exact sum whatever the row order, so
           -- every plan (raw or rollup, any partitioning) gives the same mean.
           sum(length_us) AS ended_us
    FROM per_session
    GROUP BY chatbot_id
)
SELECT b.chatbot_id, b.name AS chatbot_name,
       COALESCE(p.participants, 0) AS participants,
       COALESCE(p.sessions, 0) AS sessions,
       COALESCE(p.messages, 0) AS messages,
       COALESCE(p.completed, 0) AS completed,
       p.ended_us
FROM f_chatbots b LEFT JOIN per_bot p ON p.chatbot_id = b.chatbot_id
