-- Chatbots: working rows only; published versions are never chatbots.
SELECT team_id, id AS chatbot_id, COALESCE(name, '') AS name,
       COALESCE(is_archived, false) AS is_archived, created_at
FROM experiments_experiment
WHERE working_version_id IS NULL AND id IS NOT NULL AND team_id IS NOT NULL AND created_at IS NOT NULL
