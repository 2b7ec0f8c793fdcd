SELECT id AS team_id, COALESCE(name, '') AS name, COALESCE(slug, '') AS slug
FROM teams_team
WHERE id IS NOT NULL
