-- bot-performance: one row per listed chatbot, zero activity included.
-- Sorting and paging happen in Rust (a handful of rows, exact rules).
-- A session counts once, on its first row in the window
-- (`first_in_window`); its chatbot, participant and length are on every row.
WITH per_bot AS (
    SELECT chatbot_id,
           count(*) FILTER (WHERE first_in_window) AS sessions,
           count(DISTINCT participant_id) AS participants,
           sum(human + ai) AS messages,
           count(*) FILTER (WHERE first_in_window AND session_length_us IS NOT NULL)
               AS completed,
           -- Integer microseconds: an exact sum whatever the row order, so
           -- every plan (raw or rollup, any partitioning) gives the same mean.
           sum(session_length_us) FILTER (WHERE first_in_window) AS ended_us
    FROM f_activity
    WHERE created_at >= $start AND created_at < $end
    GROUP BY chatbot_id
)
SELECT b.chatbot_id, b.name AS chatbot_name,
       COALESCE(p.participants, 0) AS participants,
       COALESCE(p.sessions, 0) AS sessions,
       COALESCE(p.messages, 0) AS messages,
       COALESCE(p.completed, 0) AS completed,
       p.ended_us
FROM f_chatbots b LEFT JOIN per_bot p ON p.chatbot_id = b.chatbot_id
