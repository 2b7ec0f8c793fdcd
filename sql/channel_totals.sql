-- channel-breakdown totals: participants are distinct over all platforms
-- (sessions and messages are sums of the per-platform rows: a session has
-- one platform).
SELECT count(DISTINCT participant_id) AS participants
FROM f_activity
WHERE human > 0 AND created_at >= $start AND created_at < $end
