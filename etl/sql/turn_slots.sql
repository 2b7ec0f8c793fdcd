-- The rollup: one row per session and 15-minute UTC slot holding its turns,
-- with the turn counts and the last human turn. Distinct counts (sessions,
-- participants, chatbots) stay exact over it because every row still names
-- its session and participant; only rows of the same session and slot merge.
-- `prev_slot` is the session's previous slot with turns and
-- `prev_human_slot` its previous slot with a human turn (NULL for the
-- first): a row is its session's first in a window or bucket exactly when
-- that previous slot lies before it, so charts count sessions with a filter
-- instead of a per-session grouping.
WITH slots AS (
    SELECT
        team_id,
        session_id,
        chatbot_id,
        participant_id,
        platform,
        arrow_cast(date_bin(INTERVAL '15 minutes', created_at), 'Timestamp(Microsecond, Some("UTC"))') AS slot,
        count(CASE WHEN message_type = 'human' THEN 1 END) AS human,
        count(CASE WHEN message_type = 'ai' THEN 1 END) AS ai,
        max(CASE WHEN message_type = 'human' THEN created_at END) AS last_human_at,
        session_length_us
    FROM snap_turns
    GROUP BY team_id, session_id, chatbot_id, participant_id, platform, session_length_us,
             date_bin(INTERVAL '15 minutes', created_at)
)
SELECT
    team_id, session_id, chatbot_id, participant_id, platform, slot, human, ai, last_human_at,
    session_length_us,
    lag(slot) OVER (PARTITION BY session_id ORDER BY slot) AS prev_slot,
    max(CASE WHEN human > 0 THEN slot END)
        OVER (PARTITION BY session_id ORDER BY slot ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_human_slot
FROM slots
