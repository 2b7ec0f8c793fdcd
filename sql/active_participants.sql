-- active-participants: distinct human authors per bucket.
SELECT bucket(created_at) AS b, count(DISTINCT participant_id) AS active_participants
FROM f_activity
WHERE human > 0 AND created_at >= $start AND created_at < $end
GROUP BY 1
