-- tag-analytics: sessions in R whose chat carries each tag (a session of R
-- is named once, by its first row in the window).
SELECT t.tag_id, t.name, t.category, count(DISTINCT st.session_id) AS count
FROM f_session_tags st JOIN tags t ON t.tag_id = st.tag_id
WHERE st.session_id IN (SELECT session_id FROM f_activity
                        WHERE (prev_at IS NULL OR prev_at < $start)
                          AND created_at >= $start AND created_at < $end)
GROUP BY t.tag_id, t.name, t.category
