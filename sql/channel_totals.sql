-- channel-breakdown totals: participants are distinct over all platforms.
SELECT count(DISTINCT session_id) AS sessions,
       count(DISTINCT CASE WHEN human > 0 THEN participant_id END) AS participants,
       sum(human + ai) AS messages
FROM f_activity
WHERE created_at >= $start AND created_at < $end
