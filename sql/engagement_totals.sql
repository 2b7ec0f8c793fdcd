-- user-engagement: number of active participants.
SELECT count(DISTINCT participant_id) AS total_participants
FROM f_turns
WHERE message_type = 'human' AND created_at >= $start AND created_at < $end
