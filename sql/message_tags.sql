-- tag-analytics: turns in the window carrying each tag. A (tag, turn) pair
-- is one row of message_tags, so the rows are the distinct turns; the
-- counts are taken per tag id before the tag's name is joined.
SELECT t.tag_id, t.name, t.category, c.count
FROM (SELECT tag_id, count(*) AS count
      FROM f_message_tags
      WHERE created_at >= $start AND created_at < $end
      GROUP BY tag_id) c
JOIN tags t ON t.tag_id = c.tag_id
