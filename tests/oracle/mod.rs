//! The differential-test oracle: every dashboard chart as plain Postgres SQL
//! straight over the OCS source tables, written literally from
//! `shared/spec/metrics.md` (definitions) and `shared/spec/api.md` (the
//! `data` shape of each chart). It is deliberately naive: no rollups, no
//! snapshot, no cleverness. The engine's answers are compared against it.
//!
//! Conventions used throughout the SQL:
//! - `p`  — the request: team, zone, window `[ws, we)` (instants) and its local
//!   bounds `[ws_local, we_local)`, filter lists;
//! - `cs` — counted sessions of the team with their effective platform;
//! - `fs` — counted sessions passing the filters;
//! - `tu` — turns (human/ai messages) of `fs`; `wt` — those inside the window;
//! - `r`  — `R`, the sessions of `fs` with at least one turn in the window,
//!   with their length in microseconds (`len_us`, NULL when not ended).
//!
//! Integer counts come back as JSON integers, fractions as JSON floats,
//! undefined values as `null`. Text is ordered by code point (`COLLATE "C"`).
//! Nothing depends on the connection's `TimeZone` setting.
//!
//! Readings of metrics.md where it leaves room (kept literal where it does not):
//! - The `experiments` filter keeps sessions whose `experiment_id` is in the
//!   list *and* is a chatbot of the team (`working_version_id IS NULL`,
//!   archived or not): version ids and other teams' ids match nothing.
//!   Unfiltered, a session pointing at a non-chatbot still counts, and
//!   `active_chatbots` is literally "distinct `experiment_id` over R".
//! - Archived chatbots are not listed (`total_chatbots`, bot-performance
//!   rows) but their sessions count everywhere else. The `channels` filter
//!   never removes chatbots from those two.
//! - A NULL effective platform (no session platform, no channel, participant
//!   row missing) is "not evaluations": counted, and shown in
//!   channel-breakdown as `platform: null, label: null`, after equal counts.
//! - A session without a participant counts as a session but adds no
//!   participant anywhere (distinct counts skip NULL; not in most/least_active).
//! - Session length = microsecond difference / 6e7 as float8 (negative when
//!   `ended_at < created_at`, kept). `avg_session_duration` is the exact
//!   numeric mean rounded once to float8. Histogram: `w = (max-min)/10`,
//!   `start_i = min + i*w`, `end_i = min + (i+1)*w`, the last `end` = max.
//! - Hourly buckets are real hours from the window start (local midnight);
//!   for whole-hour offset changes that is local-hour truncation. Local
//!   midnights that do not exist (e.g. America/Santiago 2026-09-06) are
//!   resolved by Postgres (first instant of the day) and the bucket is named
//!   by that real start ("2026-09-06T01:00:00-03:00").
//! - Tag categories outside the label table are labelled with the raw value;
//!   categories order by label, then category; tags by count desc, name, id.
//! - bot-performance also sorts by `chatbot_id`; a page past the end is empty.
#![allow(dead_code)] // each test binary uses its own subset

use serde_json::{Map, Value, json};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection, Row};

/// A resolved chart request (what api.md's `filters` holds, plus the
/// per-chart parameters).
#[derive(Debug, Clone)]
pub struct OracleFilters {
    pub start_date: chrono::NaiveDate,
    /// Inclusive: the window is `[local midnight of start_date, local
    /// midnight of end_date + 1 day)` in `timezone`.
    pub end_date: chrono::NaiveDate,
    /// IANA zone name, e.g. "UTC", "Europe/Berlin".
    pub timezone: String,
    /// hourly | daily | weekly | monthly
    pub granularity: String,
    /// Chatbot ids; empty = all.
    pub experiments: Vec<i64>,
    /// Platform values; empty = all.
    pub channels: Vec<String>,
    /// user-engagement
    pub limit: i64,
    /// bot-performance
    pub order_by: String,
    pub order_dir: String,
    pub page: i64,
    pub page_size: i64,
}

impl OracleFilters {
    /// The API defaults (daily, UTC, no filters, limit 10, messages desc,
    /// page 1 of 10) over `[start_date, end_date]`.
    pub fn new(start_date: chrono::NaiveDate, end_date: chrono::NaiveDate) -> OracleFilters {
        OracleFilters {
            start_date,
            end_date,
            timezone: "UTC".into(),
            granularity: "daily".into(),
            experiments: vec![],
            channels: vec![],
            limit: 10,
            order_by: "messages".into(),
            order_dir: "desc".into(),
            page: 1,
            page_size: 10,
        }
    }
}

/// Every chart name, in api.md's order.
pub const CHARTS: [&str; 8] = [
    "overview",
    "active-participants",
    "session-analytics",
    "message-volume",
    "bot-performance",
    "user-engagement",
    "channel-breakdown",
    "tag-analytics",
];

/// The `data` member of the chart's JSON response (api.md), for team `team_id`.
pub async fn chart(conn: &mut PgConnection, team_id: i64, chart: &str, f: &OracleFilters) -> Value {
    let q = Q::new(conn, team_id, f).await;
    match chart {
        "overview" => overview(conn, &q).await,
        "active-participants" => active_participants(conn, &q).await,
        "session-analytics" => session_analytics(conn, &q).await,
        "message-volume" => message_volume(conn, &q).await,
        "bot-performance" => bot_performance(conn, &q).await,
        "user-engagement" => user_engagement(conn, &q).await,
        "channel-breakdown" => channel_breakdown(conn, &q).await,
        "tag-analytics" => tag_analytics(conn, &q).await,
        other => panic!("oracle: unknown chart {other:?}"),
    }
}

/// Labels of platform values (metrics.md §1); unknown values keep their raw value.
const PLATFORM_LABEL_SQL: &str = "CASE {col}
    WHEN 'telegram' THEN 'Telegram'
    WHEN 'web' THEN 'Web'
    WHEN 'whatsapp' THEN 'WhatsApp'
    WHEN 'facebook' THEN 'Facebook'
    WHEN 'sureadhere' THEN 'SureAdhere'
    WHEN 'api' THEN 'API'
    WHEN 'slack' THEN 'Slack'
    WHEN 'commcare_connect' THEN 'CommCare Connect'
    WHEN 'evaluations' THEN 'Evaluations'
    WHEN 'embedded_widget' THEN 'Chat Widget & API'
    WHEN 'email' THEN 'Email'
    ELSE {col} END";

/// Labels of tag categories (metrics.md §1); unknown values keep their raw value.
const CATEGORY_LABEL_SQL: &str = "CASE {col}
    WHEN '' THEN 'User Defined'
    WHEN 'bot_response' THEN 'Bot Response'
    WHEN 'safety_layer_response' THEN 'Safety Layer Response'
    WHEN 'experiment_version' THEN 'Experiment Version'
    WHEN 'response_rating' THEN 'Response Rating'
    WHEN 'error' THEN 'Error'
    WHEN 'media_type' THEN 'Media Type'
    ELSE {col} END";

fn label(template: &str, col: &str) -> String {
    template.replace("{col}", col)
}

/// One request: the shared CTE prefix and the parameters it binds.
struct Q<'a> {
    team: i64,
    f: &'a OracleFilters,
    prefix: String,
}

impl<'a> Q<'a> {
    async fn new(conn: &mut PgConnection, team: i64, f: &'a OracleFilters) -> Q<'a> {
        // Databases from before Nov 2025 have no experiments_experimentsession.platform.
        let has_platform: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = 'experiments_experimentsession'
               AND column_name = 'platform')",
        )
        .fetch_one(&mut *conn)
        .await
        .expect("oracle: information_schema query");
        let sp = if has_platform { "s.platform, " } else { "" };
        // $1 team, $2 start_date, $3 end_date, $4 time zone, $5 chatbot ids, $6 platforms.
        let prefix = format!(
            "WITH p AS (
    SELECT $1::int8 AS team,
           $4::text AS tz,
           $2::date::timestamp AS ws_local,
           ($3::date + 1)::timestamp AS we_local,
           ($2::date::timestamp AT TIME ZONE $4::text) AS ws,
           (($3::date + 1)::timestamp AT TIME ZONE $4::text) AS we,
           $5::int8[] AS exps,
           $6::text[] AS chans
),
cs AS (
    SELECT s.id, s.experiment_id, s.participant_id, s.chat_id, s.created_at, s.ended_at,
           COALESCE({sp}c.platform, pt.platform) AS platform
    FROM experiments_experimentsession s
    CROSS JOIN p
    LEFT JOIN channels_experimentchannel c ON c.id = s.experiment_channel_id
    LEFT JOIN experiments_participant pt ON pt.id = s.participant_id
    WHERE s.team_id = p.team
      AND s.status <> 'setup'
      AND COALESCE({sp}c.platform, pt.platform) IS DISTINCT FROM 'evaluations'
),
fs AS (
    SELECT cs.* FROM cs CROSS JOIN p
    WHERE (cardinality(p.exps) = 0 OR cs.experiment_id IN (
               SELECT e.id FROM experiments_experiment e
               WHERE e.team_id = p.team AND e.working_version_id IS NULL AND e.id = ANY(p.exps)))
      AND (cardinality(p.chans) = 0 OR cs.platform = ANY(p.chans))
),
tu AS (
    SELECT m.id, m.message_type, m.created_at,
           fs.id AS session_id, fs.experiment_id, fs.participant_id, fs.platform
    FROM chat_chatmessage m
    JOIN fs ON fs.chat_id = m.chat_id
    WHERE m.message_type IN ('human', 'ai')
),
wt AS (
    SELECT tu.* FROM tu CROSS JOIN p
    WHERE tu.created_at >= p.ws AND tu.created_at < p.we
),
r AS (
    SELECT fs.*,
           CASE WHEN fs.ended_at IS NULL THEN NULL
                ELSE ((extract(epoch FROM fs.ended_at) - extract(epoch FROM fs.created_at)) * 1000000)::int8
           END AS len_us
    FROM fs
    WHERE fs.id IN (SELECT wt.session_id FROM wt)
)
"
        );
        Q { team, f, prefix }
    }

    /// Runs `body` after the shared prefix with the request's parameters.
    async fn rows(&self, conn: &mut PgConnection, body: &str) -> Vec<PgRow> {
        let sql = format!("{}{}", self.prefix, body);
        sqlx::query(AssertSqlSafe(sql.clone()))
            .bind(self.team)
            .bind(self.f.start_date)
            .bind(self.f.end_date)
            .bind(self.f.timezone.clone())
            .bind(self.f.experiments.clone())
            .bind(self.f.channels.clone())
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("oracle query failed: {e}\n{sql}"))
    }

    async fn one(&self, conn: &mut PgConnection, body: &str) -> PgRow {
        let mut rows = self.rows(conn, body).await;
        assert_eq!(rows.len(), 1, "oracle: expected one row from {body}");
        rows.pop().unwrap()
    }

    /// `, b AS (k, b_start)`: every bucket overlapping the window, `k` its join
    /// key, `b_start` its real start. Use with [`Q::key`] on an event time.
    fn buckets_cte(&self) -> String {
        match self.unit() {
            // Real hours from the window start (local midnight): a 23/25-hour
            // day across DST, half-hour offsets (Asia/Kolkata) stay local hours.
            None => ",
b AS (
    SELECT g AS k, g AS b_start
    FROM p, generate_series(p.ws, p.we - interval '1 microsecond', interval '1 hour') AS g
)"
            .to_string(),
            // Local calendar units, truncated in the zone (date_trunc week = Monday).
            Some(unit) => format!(
                ",
b AS (
    SELECT l AS k, (l AT TIME ZONE p.tz) AS b_start
    FROM p, generate_series(date_trunc('{unit}', p.ws_local), p.we_local - interval '1 microsecond',
                            interval '1 {unit}') AS l
)"
            ),
        }
    }

    /// The bucket key (see [`Q::buckets_cte`]) of instant `col`; needs `p` in scope.
    fn key(&self, col: &str) -> String {
        match self.unit() {
            None => format!("p.ws + make_interval(hours => floor(extract(epoch FROM ({col} - p.ws)) / 3600)::int)"),
            Some(unit) => format!("date_trunc('{unit}', {col} AT TIME ZONE p.tz)"),
        }
    }

    fn unit(&self) -> Option<&'static str> {
        match self.f.granularity.as_str() {
            "hourly" => None,
            "daily" => Some("day"),
            "weekly" => Some("week"),
            "monthly" => Some("month"),
            other => panic!("oracle: unknown granularity {other:?}"),
        }
    }

    /// A time series: `SELECT bucket, <cols> FROM b ... ORDER BY b_start`, where
    /// `joins` left-joins per-key aggregates onto `b.k`.
    async fn series(&self, conn: &mut PgConnection, cols: &[(&str, &str)], joins: &str) -> Vec<Value> {
        let body = format!(
            "{buckets}
SELECT to_char(b.b_start AT TIME ZONE p.tz, 'YYYY-MM-DD\"T\"HH24:MI:SS')
       || CASE WHEN o.off < 0 THEN '-' ELSE '+' END
       || lpad((abs(o.off) / 3600)::text, 2, '0') || ':' || lpad((abs(o.off) % 3600 / 60)::text, 2, '0')
       AS bucket,
       {select}
FROM b
CROSS JOIN p
CROSS JOIN LATERAL (
    SELECT extract(epoch FROM (b.b_start AT TIME ZONE p.tz) - (b.b_start AT TIME ZONE 'UTC'))::int AS off
) o
{joins}
ORDER BY b.b_start",
            buckets = self.buckets_cte(),
            select = cols
                .iter()
                .map(|(expr, name)| format!("({expr})::int8 AS {name}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let rows = self.rows(conn, &body).await;
        rows.iter()
            .map(|row| {
                let mut m = Map::new();
                m.insert("bucket".into(), Value::String(row.get("bucket")));
                for (_, name) in cols {
                    m.insert((*name).into(), json!(row.get::<i64, _>(*name)));
                }
                Value::Object(m)
            })
            .collect()
    }
}

/// Per-bucket aggregate subquery `alias(k, n)` over `source` rows matching `cond`.
fn per_key(q: &Q<'_>, alias: &str, agg: &str, source: &str, time_col: &str, cond: &str) -> String {
    format!(
        "LEFT JOIN (
    SELECT {key} AS k, {agg} AS n
    FROM {source} x CROSS JOIN p
    WHERE {cond}
    GROUP BY 1
) {alias} ON {alias}.k = b.k",
        key = q.key(&format!("x.{time_col}")),
    )
}

async fn overview(conn: &mut PgConnection, q: &Q<'_>) -> Value {
    let row = q
        .one(
            conn,
            "SELECT
    (SELECT count(*) FROM experiments_experiment e
     WHERE e.team_id = p.team AND e.working_version_id IS NULL AND NOT e.is_archived
       AND (cardinality(p.exps) = 0 OR e.id = ANY(p.exps))) AS total_chatbots,
    (SELECT count(DISTINCT r.experiment_id) FROM r) AS active_chatbots,
    (SELECT count(DISTINCT fs.participant_id) FROM fs) AS total_participants,
    (SELECT count(DISTINCT wt.participant_id) FROM wt WHERE wt.message_type = 'human') AS active_participants,
    (SELECT count(*) FROM r) AS active_sessions,
    (SELECT count(*) FROM fs WHERE fs.created_at >= p.ws AND fs.created_at < p.we) AS sessions_started,
    (SELECT count(*) FROM r WHERE r.ended_at IS NOT NULL) AS completed_sessions,
    (SELECT count(*) FROM wt WHERE wt.message_type = 'human') AS human_messages,
    (SELECT count(*) FROM wt WHERE wt.message_type = 'ai') AS ai_messages
FROM p",
        )
        .await;
    let g = |c: &str| row.get::<i64, _>(c);
    let ratio = |a: i64, b: i64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let (active_sessions, active_participants) = (g("active_sessions"), g("active_participants"));
    let (human, ai) = (g("human_messages"), g("ai_messages"));
    json!({
        "total_chatbots": g("total_chatbots"),
        "active_chatbots": g("active_chatbots"),
        "total_participants": g("total_participants"),
        "active_participants": active_participants,
        "active_sessions": active_sessions,
        "sessions_started": g("sessions_started"),
        "completed_sessions": g("completed_sessions"),
        "completion_rate": ratio(g("completed_sessions"), active_sessions),
        "human_messages": human,
        "ai_messages": ai,
        "total_messages": human + ai,
        "avg_messages_per_session": ratio(human + ai, active_sessions),
        "avg_sessions_per_participant": ratio(active_sessions, active_participants),
    })
}

async fn active_participants(conn: &mut PgConnection, q: &Q<'_>) -> Value {
    let joins = per_key(
        q,
        "ap",
        "count(DISTINCT x.participant_id)",
        "wt",
        "created_at",
        "x.message_type = 'human'",
    );
    Value::Array(
        q.series(conn, &[("COALESCE(ap.n, 0)", "active_participants")], &joins)
            .await,
    )
}

async fn session_analytics(conn: &mut PgConnection, q: &Q<'_>) -> Value {
    let joins = [
        per_key(q, "asx", "count(DISTINCT x.session_id)", "wt", "created_at", "true"),
        per_key(
            q,
            "st",
            "count(*)",
            "fs",
            "created_at",
            "x.created_at >= p.ws AND x.created_at < p.we",
        ),
        per_key(
            q,
            "ap",
            "count(DISTINCT x.participant_id)",
            "wt",
            "created_at",
            "x.message_type = 'human'",
        ),
    ]
    .join("\n");
    let cols = [
        ("COALESCE(asx.n, 0)", "active_sessions"),
        ("COALESCE(st.n, 0)", "sessions_started"),
        ("COALESCE(ap.n, 0)", "active_participants"),
    ];
    Value::Array(q.series(conn, &cols, &joins).await)
}

async fn message_volume(conn: &mut PgConnection, q: &Q<'_>) -> Value {
    let joins = [
        per_key(q, "h", "count(*)", "wt", "created_at", "x.message_type = 'human'"),
        per_key(q, "a", "count(*)", "wt", "created_at", "x.message_type = 'ai'"),
    ]
    .join("\n");
    let cols = [
        ("COALESCE(h.n, 0)", "human_messages"),
        ("COALESCE(a.n, 0)", "ai_messages"),
        ("COALESCE(h.n, 0) + COALESCE(a.n, 0)", "total_messages"),
    ];
    Value::Array(q.series(conn, &cols, &joins).await)
}

async fn bot_performance(conn: &mut PgConnection, q: &Q<'_>) -> Value {
    let f = q.f;
    let sort_col = match f.order_by.as_str() {
        "chatbot_name" => "chatbot_name COLLATE \"C\"",
        "chatbot_id" => "chatbot_id",
        "participants" => "participants",
        "sessions" => "sessions",
        "messages" => "messages",
        "avg_session_duration" => "avg_session_duration",
        "completion_rate" => "completion_rate",
        "avg_messages_per_session" => "avg_messages_per_session",
        other => panic!("oracle: unknown order_by {other:?}"),
    };
    let dir = match f.order_dir.as_str() {
        "asc" => "ASC",
        "desc" => "DESC",
        other => panic!("oracle: unknown order_dir {other:?}"),
    };
    let body = format!(
        ",
bots AS (
    SELECT e.id, e.name
    FROM experiments_experiment e CROSS JOIN p
    WHERE e.team_id = p.team AND e.working_version_id IS NULL AND NOT e.is_archived
      AND (cardinality(p.exps) = 0 OR e.id = ANY(p.exps))
),
counts AS (
    SELECT bots.id AS chatbot_id, bots.name AS chatbot_name,
        (SELECT count(DISTINCT r.participant_id) FROM r WHERE r.experiment_id = bots.id) AS participants,
        (SELECT count(*) FROM r WHERE r.experiment_id = bots.id) AS sessions,
        (SELECT count(*) FROM wt WHERE wt.experiment_id = bots.id) AS messages,
        (SELECT count(*) FROM r WHERE r.experiment_id = bots.id AND r.ended_at IS NOT NULL) AS ended,
        (SELECT sum(r.len_us) FROM r WHERE r.experiment_id = bots.id AND r.ended_at IS NOT NULL) AS sum_len_us
    FROM bots
),
rows AS (
    SELECT chatbot_id, chatbot_name, participants, sessions, messages,
        CASE WHEN ended = 0 THEN NULL
             ELSE (sum_len_us::numeric / (ended * 60000000)::numeric)::float8 END AS avg_session_duration,
        CASE WHEN sessions = 0 THEN 0::float8 ELSE ended::float8 / sessions::float8 END AS completion_rate,
        CASE WHEN sessions = 0 THEN 0::float8 ELSE messages::float8 / sessions::float8 END AS avg_messages_per_session
    FROM counts
)
SELECT rows.*, (SELECT count(*) FROM rows) AS total_count
FROM rows
ORDER BY {sort_col} {dir} NULLS LAST, chatbot_id ASC"
    );
    let rows = q.rows(conn, &body).await;
    let total_count = rows.first().map_or(0, |r| r.get::<i64, _>("total_count"));
    assert!(f.page >= 1 && f.page_size >= 1, "oracle: page and page_size start at 1");
    let results: Vec<Value> = rows
        .iter()
        .skip(((f.page - 1) * f.page_size) as usize)
        .take(f.page_size as usize)
        .map(|r| {
            json!({
                "chatbot_id": r.get::<i64, _>("chatbot_id"),
                "chatbot_name": r.get::<String, _>("chatbot_name"),
                "participants": r.get::<i64, _>("participants"),
                "sessions": r.get::<i64, _>("sessions"),
                "messages": r.get::<i64, _>("messages"),
                "avg_session_duration": r.get::<Option<f64>, _>("avg_session_duration"),
                "completion_rate": r.get::<f64, _>("completion_rate"),
                "avg_messages_per_session": r.get::<f64, _>("avg_messages_per_session"),
            })
        })
        .collect();
    let total_pages = if total_count == 0 {
        0
    } else {
        (total_count + f.page_size - 1) / f.page_size
    };
    json!({
        "results": results,
        "total_count": total_count,
        "page": f.page,
        "page_size": f.page_size,
        "total_pages": total_pages,
    })
}

async fn user_engagement(conn: &mut PgConnection, q: &Q<'_>) -> Value {
    let authors = ",
authors AS (
    SELECT wt.participant_id,
           count(*) AS total_messages,
           count(DISTINCT wt.session_id) AS total_sessions,
           max(wt.created_at) AS last_activity
    FROM wt
    WHERE wt.message_type = 'human' AND wt.participant_id IS NOT NULL
    GROUP BY wt.participant_id
)";
    let ranked = |order: &str| {
        format!(
            "{authors}
SELECT a.participant_id, COALESCE(NULLIF(pt.name, ''), pt.identifier) AS participant_name,
       a.total_messages, a.total_sessions,
       to_char(a.last_activity AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS last_activity
FROM authors a
LEFT JOIN experiments_participant pt ON pt.id = a.participant_id
ORDER BY a.total_messages {order}, a.participant_id ASC
LIMIT $7"
        )
    };
    let mut lists = Vec::new();
    for order in ["DESC", "ASC"] {
        let sql = format!("{}{}", q.prefix, ranked(order));
        let rows = sqlx::query(AssertSqlSafe(sql.clone()))
            .bind(q.team)
            .bind(q.f.start_date)
            .bind(q.f.end_date)
            .bind(q.f.timezone.clone())
            .bind(q.f.experiments.clone())
            .bind(q.f.channels.clone())
            .bind(q.f.limit)
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("oracle query failed: {e}\n{sql}"));
        let list: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "participant_id": r.get::<i64, _>("participant_id"),
                    "participant_name": r.get::<Option<String>, _>("participant_name"),
                    "total_messages": r.get::<i64, _>("total_messages"),
                    "total_sessions": r.get::<i64, _>("total_sessions"),
                    "last_activity": r.get::<String, _>("last_activity"),
                })
            })
            .collect();
        lists.push(Value::Array(list));
    }
    let least_active = lists.pop().unwrap();
    let most_active = lists.pop().unwrap();

    let total_participants: i64 = q
        .one(conn, &format!("{authors}\nSELECT count(*) AS n FROM authors"))
        .await
        .get("n");

    // Session lengths in minutes (float from microseconds) of the sessions in R that have ended.
    let lengths = ",
lens AS (SELECT r.len_us::float8 / 60000000.0::float8 AS v FROM r WHERE r.ended_at IS NOT NULL),
mm AS (SELECT min(v) AS mn, max(v) AS mx, count(*) AS n FROM lens)";
    let stats = q
        .one(
            conn,
            &format!(
                "{lengths}
SELECT mm.mn, mm.mx, mm.n,
       (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v) FROM lens) AS p50,
       (SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY v) FROM lens) AS p90,
       (SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY v) FROM lens) AS p99
FROM mm"
            ),
        )
        .await;
    let n: i64 = stats.get("n");
    let mn: Option<f64> = stats.get("mn");
    let mx: Option<f64> = stats.get("mx");
    let distribution: Vec<Value> = if n == 0 {
        vec![]
    } else if mn == mx {
        vec![json!({"bin_start": mn.unwrap(), "bin_end": mx.unwrap(), "count": n})]
    } else {
        // Ten equal-width bins: start_i = min + i*w, end_i = min + (i+1)*w
        // (the last ends at max exactly); start_i <= v < end_i, the last bin
        // also takes v = max.
        let rows = q
            .rows(
                conn,
                &format!(
                    "{lengths},
w AS (SELECT (mm.mx - mm.mn) / 10.0::float8 AS w FROM mm),
bins AS (
    SELECT i,
           mm.mn + i::float8 * w.w AS bin_start,
           CASE WHEN i = 9 THEN mm.mx ELSE mm.mn + (i + 1)::float8 * w.w END AS bin_end
    FROM mm, w, generate_series(0, 9) AS i
)
SELECT bins.i, bins.bin_start, bins.bin_end,
       (SELECT count(*) FROM lens
        WHERE lens.v >= bins.bin_start AND (lens.v < bins.bin_end OR (bins.i = 9 AND lens.v = bins.bin_end))) AS count
FROM bins
ORDER BY bins.i"
                ),
            )
            .await;
        let dist: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "bin_start": r.get::<f64, _>("bin_start"),
                    "bin_end": r.get::<f64, _>("bin_end"),
                    "count": r.get::<i64, _>("count"),
                })
            })
            .collect();
        let binned: i64 = dist.iter().map(|b| b["count"].as_i64().unwrap()).sum();
        assert_eq!(binned, n, "oracle: every length falls in exactly one bin");
        dist
    };
    json!({
        "most_active": most_active,
        "least_active": least_active,
        "total_participants": total_participants,
        "session_length_distribution": distribution,
        "session_length_percentiles": {
            "p50": stats.get::<Option<f64>, _>("p50"),
            "p90": stats.get::<Option<f64>, _>("p90"),
            "p99": stats.get::<Option<f64>, _>("p99"),
        },
    })
}

async fn channel_breakdown(conn: &mut PgConnection, q: &Q<'_>) -> Value {
    let body = format!(
        ",
plats AS (SELECT r.platform, count(*) AS sessions FROM r GROUP BY r.platform)
SELECT plats.platform,
       {label} AS label,
       plats.sessions,
       (SELECT count(DISTINCT wt.participant_id) FROM wt
        WHERE wt.platform IS NOT DISTINCT FROM plats.platform AND wt.message_type = 'human') AS participants,
       (SELECT count(*) FROM wt
        WHERE wt.platform IS NOT DISTINCT FROM plats.platform AND wt.message_type = 'human') AS human_messages,
       (SELECT count(*) FROM wt
        WHERE wt.platform IS NOT DISTINCT FROM plats.platform AND wt.message_type = 'ai') AS ai_messages,
       plats.sessions::float8 / (SELECT count(*) FROM r)::float8 AS session_share
FROM plats
ORDER BY plats.sessions DESC, plats.platform COLLATE \"C\" ASC NULLS LAST",
        label = label(PLATFORM_LABEL_SQL, "plats.platform"),
    );
    let rows = q.rows(conn, &body).await;
    let platforms: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "platform": r.get::<Option<String>, _>("platform"),
                "label": r.get::<Option<String>, _>("label"),
                "sessions": r.get::<i64, _>("sessions"),
                "participants": r.get::<i64, _>("participants"),
                "human_messages": r.get::<i64, _>("human_messages"),
                "ai_messages": r.get::<i64, _>("ai_messages"),
                "session_share": r.get::<f64, _>("session_share"),
            })
        })
        .collect();
    let totals = q
        .one(
            conn,
            "SELECT (SELECT count(*) FROM r) AS sessions,
       (SELECT count(DISTINCT wt.participant_id) FROM wt WHERE wt.message_type = 'human') AS participants,
       (SELECT count(*) FROM wt) AS messages",
        )
        .await;
    json!({
        "platforms": platforms,
        "totals": {
            "sessions": totals.get::<i64, _>("sessions"),
            "participants": totals.get::<i64, _>("participants"),
            "messages": totals.get::<i64, _>("messages"),
        },
    })
}

async fn tag_analytics(conn: &mut PgConnection, q: &Q<'_>) -> Value {
    let tags_cte = ",
tg AS (
    SELECT t.id, t.name, t.category
    FROM annotations_tag t CROSS JOIN p
    WHERE t.team_id = p.team AND t.category <> 'experiment_version'
),
items AS (
    SELECT i.tag_id, i.content_type_id, i.object_id
    FROM annotations_customtaggeditem i CROSS JOIN p
    WHERE i.team_id = p.team AND i.tag_id IN (SELECT tg.id FROM tg)
),
msg_tagged AS (
    SELECT DISTINCT items.tag_id, wt.id AS message_id
    FROM items JOIN wt ON wt.id = items.object_id
    WHERE items.content_type_id =
          (SELECT ct.id FROM django_content_type ct WHERE ct.app_label = 'chat' AND ct.model = 'chatmessage')
),
sess_tagged AS (
    SELECT DISTINCT items.tag_id, r.id AS session_id
    FROM items JOIN r ON r.chat_id = items.object_id
    WHERE items.content_type_id =
          (SELECT ct.id FROM django_content_type ct WHERE ct.app_label = 'chat' AND ct.model = 'chat')
)";
    let grouped = |counts: &str| {
        format!(
            "{tags_cte},
n AS ({counts})
SELECT tg.category, {label} AS label, tg.id AS tag_id, tg.name, n.count
FROM n JOIN tg ON tg.id = n.tag_id
WHERE n.count >= 1
ORDER BY {label} COLLATE \"C\", tg.category COLLATE \"C\", n.count DESC, tg.name COLLATE \"C\", tg.id",
            label = label(CATEGORY_LABEL_SQL, "tg.category"),
        )
    };
    let mut out = Vec::new();
    for counts in [
        "SELECT tag_id, count(*) AS count FROM msg_tagged GROUP BY tag_id",
        "SELECT tag_id, count(*) AS count FROM sess_tagged GROUP BY tag_id",
    ] {
        let rows = q.rows(conn, &grouped(counts)).await;
        let mut cats: Vec<Value> = Vec::new();
        for r in &rows {
            let category: String = r.get("category");
            let tag = json!({
                "tag_id": r.get::<i64, _>("tag_id"),
                "name": r.get::<String, _>("name"),
                "count": r.get::<i64, _>("count"),
            });
            match cats.last_mut() {
                Some(last) if last["category"] == category.as_str() => {
                    last["tags"].as_array_mut().unwrap().push(tag);
                }
                _ => cats.push(json!({
                    "category": category,
                    "label": r.get::<String, _>("label"),
                    "tags": [tag],
                })),
            }
        }
        out.push(Value::Array(cats));
    }
    let session_tags = out.pop().unwrap();
    let message_tags = out.pop().unwrap();
    let total: i64 = q
        .one(
            conn,
            &format!("{tags_cte}\nSELECT count(DISTINCT message_id) AS n FROM msg_tagged"),
        )
        .await
        .get("n");
    json!({
        "message_tags": message_tags,
        "session_tags": session_tags,
        "total_tagged_messages": total,
    })
}
