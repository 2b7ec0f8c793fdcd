-- user-engagement: number of active participants.
SELECT count(DISTINCT participant_id) AS total_participants
FROM f_activity
WHERE human > 0 AND created_at >= $start AND created_at < $end
