SELECT team_id, id AS participant_id, COALESCE(name, '') AS name,
       COALESCE(identifier, '') AS identifier, COALESCE(platform, '') AS platform, created_at
FROM experiments_participant
WHERE id IS NOT NULL AND team_id IS NOT NULL AND created_at IS NOT NULL
