-- channel-breakdown totals: participants are distinct over all platforms.
SELECT count(DISTINCT session_id) AS sessions,
       count(DISTINCT CASE WHEN message_type = 'human' THEN participant_id END) AS participants,
       count(*) AS messages
FROM f_turns
WHERE created_at >= $start AND created_at < $end
