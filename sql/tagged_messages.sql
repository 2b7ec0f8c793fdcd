-- tag-analytics: distinct turns in the window carrying at least one tag.
SELECT count(DISTINCT message_id) AS total_tagged_messages
FROM f_message_tags
WHERE created_at >= $start AND created_at < $end
