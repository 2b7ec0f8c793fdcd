-- tag-analytics: sessions in R whose chat carries each tag (a session of R
-- is named once, by its first row in the window; a (tag, session) pair is
-- one row of session_tags, so the rows are the distinct sessions).
SELECT t.tag_id, t.name, t.category, c.count
FROM (SELECT tag_id, count(*) AS count
      FROM f_session_tags
      WHERE session_id IN (SELECT session_id FROM f_activity
                           WHERE first_in_window
                             AND created_at >= $start AND created_at < $end)
      GROUP BY tag_id) c
JOIN tags t ON t.tag_id = c.tag_id
