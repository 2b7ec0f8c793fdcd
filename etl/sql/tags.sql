SELECT team_id, id AS tag_id, COALESCE(name, '') AS name, COALESCE(category, '') AS category,
       COALESCE(is_system_tag, false) AS is_system_tag
FROM annotations_tag
WHERE id IS NOT NULL AND team_id IS NOT NULL
