-- Tag attachments that can make a message tag (metrics.md §3
-- tag-analytics): items on chat messages whose tag is of the item's own team
-- and not an 'experiment_version' tag, one row per (tag, message). Joined
-- with turns by message_tags.sql.
SELECT DISTINCT i.team_id, t.id AS tag_id, i.object_id AS message_id
FROM annotations_customtaggeditem i
JOIN django_content_type ct
  ON ct.id = i.content_type_id AND ct.app_label = 'chat' AND ct.model = 'chatmessage'
JOIN annotations_tag t
  ON t.id = i.tag_id AND t.team_id = i.team_id AND COALESCE(t.category, '') <> 'experiment_version'
