-- tag-analytics: turns in the window carrying each tag.
SELECT t.tag_id, t.name, t.category, count(DISTINCT mt.message_id) AS count
FROM f_message_tags mt JOIN tags t ON t.tag_id = mt.tag_id
WHERE mt.created_at >= $start AND mt.created_at < $end
GROUP BY t.tag_id, t.name, t.category
