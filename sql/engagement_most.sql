-- user-engagement: the most active participants (human turns in the window).
SELECT t.participant_id, sum(t.human) AS total_messages, count(DISTINCT t.session_id) AS total_sessions,
       max(t.last_human_at) AS last_activity
FROM f_activity t
WHERE t.human > 0 AND t.participant_id IS NOT NULL
  AND t.created_at >= $start AND t.created_at < $end
GROUP BY t.participant_id
ORDER BY total_messages DESC, t.participant_id ASC
