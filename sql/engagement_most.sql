-- user-engagement: the most active participants (human turns in the window).
SELECT t.participant_id, count(*) AS total_messages, count(DISTINCT t.session_id) AS total_sessions,
       max(t.created_at) AS last_activity
FROM f_turns t
WHERE t.message_type = 'human' AND t.participant_id IS NOT NULL
  AND t.created_at >= $start AND t.created_at < $end
GROUP BY t.participant_id
ORDER BY total_messages DESC, t.participant_id ASC
