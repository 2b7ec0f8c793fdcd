-- Every tagged item as read, kept in the snapshot (`_tagged_items`) so that
-- the next incremental run reads only the items added since and the ids of
-- the others (to find the deleted ones) instead of every item again.
SELECT id, team_id, tag_id, content_type_id, object_id
FROM annotations_customtaggeditem
WHERE id IS NOT NULL
