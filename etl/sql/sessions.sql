-- Sessions with their effective platform and whether they count
-- (metrics.md §2): COALESCE(session.platform, channel.platform,
-- participant.platform), the channel even when soft-deleted; counted when
-- status <> 'setup' and the effective platform is not 'evaluations'.
-- Rows missing a column OCS declares NOT NULL are skipped (and counted).
SELECT
    s.team_id,
    s.id AS session_id,
    COALESCE(s.external_id, '') AS external_id,
    s.chat_id,
    s.experiment_id AS chatbot_id,
    s.participant_id,
    s.experiment_channel_id AS channel_id,
    COALESCE(s.platform, c.platform, p.platform) AS platform,
    s.status,
    s.status <> 'setup'
        AND COALESCE(s.platform, c.platform, p.platform, '') <> 'evaluations' AS counted,
    s.created_at,
    s.ended_at
FROM experiments_experimentsession s
LEFT JOIN channels_experimentchannel c ON c.id = s.experiment_channel_id
LEFT JOIN experiments_participant p ON p.id = s.participant_id
WHERE s.id IS NOT NULL AND s.team_id IS NOT NULL AND s.chat_id IS NOT NULL
  AND s.experiment_id IS NOT NULL AND s.status IS NOT NULL AND s.created_at IS NOT NULL
