//! `POST /a/{team}/dashboard/export/`: a chart as a CSV or JSON download.
//!
//! Every chart flattens to one table (CSV: a header row and one row per
//! record; JSON: `columns` and `rows` objects), rows in the API's order:
//!
//! | chart | columns |
//! |---|---|
//! | overview | the 13 overview fields, one row |
//! | active-participants | `bucket, active_participants` |
//! | session-analytics | `bucket, active_sessions, sessions_started, active_participants` |
//! | message-volume | `bucket, human_messages, ai_messages, total_messages` |
//! | bot-performance | `chatbot_id, chatbot_name, participants, sessions, messages, avg_session_duration, completion_rate, avg_messages_per_session`: every chatbot (all pages) in the requested order |
//! | user-engagement | `section, rank, participant, total_messages, total_sessions, last_activity, bin_start, bin_end, count, statistic, value`; `section` is `most_active` / `least_active` (rank, participant, counts, last activity), `total_participants` (value), `session_length_distribution` (rank, bin_start, bin_end, count), `session_length_percentiles` (statistic `p50`/`p90`/`p99`, value) |
//! | channel-breakdown | `section, platform, label, sessions, participants, human_messages, ai_messages, total_messages, session_share`; `section` is `platform` per platform, then one `totals` row |
//! | tag-analytics | `scope, category, category_label, tag_id, tag_name, count`; `scope` is `message` or `session` per tag, then one `total_tagged_messages` row (count) |
//!
//! No participant name, identifier or OCS id is ever exported: the
//! `participant` column holds a keyed pseudonym ([`crate::pseudonym`]).
//! CSV text cells that a spreadsheet would run as a formula (starting with
//! `=`, `+`, `-`, `@`, tab or CR) get a leading `'`.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use ocs_dash_engine::ChartResponse;
use ocs_dash_engine::charts::{Chart, ChartData};
use ocs_dash_engine::filters::{Filters, Options};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::charts::parse_chart;
use crate::error::ApiError;
use crate::extract::{JsonBody, filter_pairs};
use crate::pseudonym::Pseudonyms;
use crate::{AppState, route};

pub fn router() -> Router<AppState> {
    route(Router::new(), "/a/{team}/dashboard/export", post(export))
}

/// An export request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// The chart's name.
    pub chart: String,
    /// `csv` (default) or `json`.
    #[serde(default)]
    pub format: Option<String>,
    /// Add the resolved filters (JSON: a `filters` key; CSV: `# key: value` lines first).
    #[serde(default)]
    pub include_filters: bool,
    /// The chart's query parameters as an object (`{"date_range": "90", "channels": ["whatsapp"]}`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub filters: Map<String, Value>,
}

/// One cell of an export table.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Int(i64),
    Float(f64),
    Text(String),
    Empty,
}

impl Cell {
    fn json(&self) -> Value {
        match self {
            Cell::Int(n) => json!(n),
            Cell::Float(f) => json!(f),
            Cell::Text(s) => json!(s),
            Cell::Empty => Value::Null,
        }
    }

    fn csv(&self) -> String {
        match self {
            Cell::Int(n) => n.to_string(),
            // Written as the JSON API writes it (`3.0`, `0.25`), never `NaN`.
            Cell::Float(f) => serde_json::Number::from_f64(*f).map_or(String::new(), |n| n.to_string()),
            Cell::Text(s) if s.starts_with(['=', '+', '-', '@', '\t', '\r']) => format!("'{s}"),
            Cell::Text(s) => s.clone(),
            Cell::Empty => String::new(),
        }
    }
}

fn opt(f: Option<f64>) -> Cell {
    f.map_or(Cell::Empty, Cell::Float)
}

fn text(s: &str) -> Cell {
    Cell::Text(s.to_string())
}

/// A chart flattened to one table.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: &'static [&'static str],
    pub rows: Vec<Vec<Cell>>,
}

const OVERVIEW: &[&str] = &[
    "total_chatbots",
    "active_chatbots",
    "total_participants",
    "active_participants",
    "active_sessions",
    "sessions_started",
    "completed_sessions",
    "completion_rate",
    "human_messages",
    "ai_messages",
    "total_messages",
    "avg_messages_per_session",
    "avg_sessions_per_participant",
];
const ACTIVE_PARTICIPANTS: &[&str] = &["bucket", "active_participants"];
const SESSION_ANALYTICS: &[&str] = &["bucket", "active_sessions", "sessions_started", "active_participants"];
const MESSAGE_VOLUME: &[&str] = &["bucket", "human_messages", "ai_messages", "total_messages"];
const BOTS: &[&str] = &[
    "chatbot_id",
    "chatbot_name",
    "participants",
    "sessions",
    "messages",
    "avg_session_duration",
    "completion_rate",
    "avg_messages_per_session",
];
const ENGAGEMENT: &[&str] = &[
    "section",
    "rank",
    "participant",
    "total_messages",
    "total_sessions",
    "last_activity",
    "bin_start",
    "bin_end",
    "count",
    "statistic",
    "value",
];
const CHANNELS: &[&str] = &[
    "section",
    "platform",
    "label",
    "sessions",
    "participants",
    "human_messages",
    "ai_messages",
    "total_messages",
    "session_share",
];
const TAGS: &[&str] = &["scope", "category", "category_label", "tag_id", "tag_name", "count"];

/// Flattens a chart's data into its export table (see the module docs).
pub fn table(data: &ChartData, pseudonyms: &Pseudonyms) -> Table {
    use Cell::{Empty, Float, Int};
    let (columns, rows): (&'static [&'static str], Vec<Vec<Cell>>) = match data {
        ChartData::Overview(o) => (
            OVERVIEW,
            vec![vec![
                Int(o.total_chatbots),
                Int(o.active_chatbots),
                Int(o.total_participants),
                Int(o.active_participants),
                Int(o.active_sessions),
                Int(o.sessions_started),
                Int(o.completed_sessions),
                Float(o.completion_rate),
                Int(o.human_messages),
                Int(o.ai_messages),
                Int(o.total_messages),
                Float(o.avg_messages_per_session),
                Float(o.avg_sessions_per_participant),
            ]],
        ),
        ChartData::ActiveParticipants(rows) => (
            ACTIVE_PARTICIPANTS,
            rows.iter()
                .map(|r| vec![text(&r.bucket), Int(r.active_participants)])
                .collect(),
        ),
        ChartData::SessionAnalytics(rows) => (
            SESSION_ANALYTICS,
            rows.iter()
                .map(|r| {
                    vec![
                        text(&r.bucket),
                        Int(r.active_sessions),
                        Int(r.sessions_started),
                        Int(r.active_participants),
                    ]
                })
                .collect(),
        ),
        ChartData::MessageVolume(rows) => (
            MESSAGE_VOLUME,
            rows.iter()
                .map(|r| {
                    vec![
                        text(&r.bucket),
                        Int(r.human_messages),
                        Int(r.ai_messages),
                        Int(r.total_messages),
                    ]
                })
                .collect(),
        ),
        ChartData::BotPerformance(b) => (
            BOTS,
            b.results
                .iter()
                .map(|r| {
                    vec![
                        Int(r.chatbot_id),
                        text(&r.chatbot_name),
                        Int(r.participants),
                        Int(r.sessions),
                        Int(r.messages),
                        opt(r.avg_session_duration),
                        Float(r.completion_rate),
                        Float(r.avg_messages_per_session),
                    ]
                })
                .collect(),
        ),
        ChartData::UserEngagement(u) => {
            let mut rows = Vec::new();
            for (section, list) in [("most_active", &u.most_active), ("least_active", &u.least_active)] {
                for (i, p) in list.iter().enumerate() {
                    rows.push(vec![
                        text(section),
                        Int(i as i64 + 1),
                        Cell::Text(pseudonyms.participant(p.participant_id)),
                        Int(p.total_messages),
                        Int(p.total_sessions),
                        text(&p.last_activity),
                        Empty,
                        Empty,
                        Empty,
                        Empty,
                        Empty,
                    ]);
                }
            }
            rows.push(vec![
                text("total_participants"),
                Empty,
                Empty,
                Empty,
                Empty,
                Empty,
                Empty,
                Empty,
                Empty,
                Empty,
                Int(u.total_participants),
            ]);
            for (i, bin) in u.session_length_distribution.iter().enumerate() {
                rows.push(vec![
                    text("session_length_distribution"),
                    Int(i as i64 + 1),
                    Empty,
                    Empty,
                    Empty,
                    Empty,
                    Float(bin.bin_start),
                    Float(bin.bin_end),
                    Int(bin.count),
                    Empty,
                    Empty,
                ]);
            }
            let p = &u.session_length_percentiles;
            for (name, value) in [("p50", p.p50), ("p90", p.p90), ("p99", p.p99)] {
                rows.push(vec![
                    text("session_length_percentiles"),
                    Empty,
                    Empty,
                    Empty,
                    Empty,
                    Empty,
                    Empty,
                    Empty,
                    Empty,
                    text(name),
                    opt(value),
                ]);
            }
            (ENGAGEMENT, rows)
        }
        ChartData::ChannelBreakdown(c) => {
            let mut rows: Vec<Vec<Cell>> = c
                .platforms
                .iter()
                .map(|p| {
                    vec![
                        text("platform"),
                        p.platform.as_deref().map_or(Empty, text),
                        p.label.as_deref().map_or(Empty, text),
                        Int(p.sessions),
                        Int(p.participants),
                        Int(p.human_messages),
                        Int(p.ai_messages),
                        Int(p.human_messages + p.ai_messages),
                        Float(p.session_share),
                    ]
                })
                .collect();
            let t = &c.totals;
            rows.push(vec![
                text("totals"),
                Empty,
                Empty,
                Int(t.sessions),
                Int(t.participants),
                Empty,
                Empty,
                Int(t.messages),
                Empty,
            ]);
            (CHANNELS, rows)
        }
        ChartData::TagAnalytics(t) => {
            let mut rows = Vec::new();
            for (scope, groups) in [("message", &t.message_tags), ("session", &t.session_tags)] {
                for g in groups {
                    for tag in &g.tags {
                        rows.push(vec![
                            text(scope),
                            text(&g.category),
                            text(&g.label),
                            Int(tag.tag_id),
                            text(&tag.name),
                            Int(tag.count),
                        ]);
                    }
                }
            }
            rows.push(vec![
                text("total_tagged_messages"),
                Empty,
                Empty,
                Empty,
                Empty,
                Int(t.total_tagged_messages),
            ]);
            (TAGS, rows)
        }
    };
    Table { columns, rows }
}

/// Rows of [`table`] for this data, without building it (the audit log's count).
pub fn record_count(data: &ChartData) -> usize {
    match data {
        ChartData::Overview(_) => 1,
        ChartData::ActiveParticipants(r) => r.len(),
        ChartData::SessionAnalytics(r) => r.len(),
        ChartData::MessageVolume(r) => r.len(),
        ChartData::BotPerformance(b) => b.results.len(),
        ChartData::UserEngagement(u) => {
            u.most_active.len() + u.least_active.len() + 1 + u.session_length_distribution.len() + 3
        }
        ChartData::ChannelBreakdown(c) => c.platforms.len() + 1,
        ChartData::TagAnalytics(t) => {
            t.message_tags
                .iter()
                .chain(&t.session_tags)
                .map(|g| g.tags.len())
                .sum::<usize>()
                + 1
        }
    }
}

/// The bot-performance export holds every chatbot: the pages of the
/// requested order, concatenated.
async fn all_bots(
    state: &AppState,
    caller: &Caller,
    filters: &Filters,
    options: &Options,
) -> Result<ChartResponse, ApiError> {
    let mut options = Options {
        page: 1,
        page_size: 100,
        ..options.clone()
    };
    let mut first = state
        .engine()
        .chart(
            &caller.snapshot,
            caller.team.id,
            Chart::BotPerformance,
            filters,
            &options,
        )
        .await?;
    let ChartData::BotPerformance(mut all) = (*first.data).clone() else {
        return Err(ApiError::Internal(
            "bot-performance answered with another chart's data".into(),
        ));
    };
    while options.page < all.total_pages {
        options.page += 1;
        let next = state
            .engine()
            .chart(
                &caller.snapshot,
                caller.team.id,
                Chart::BotPerformance,
                filters,
                &options,
            )
            .await?;
        if let ChartData::BotPerformance(b) = next.data.as_ref() {
            all.results.extend(b.results.iter().cloned());
        }
    }
    first.data = ChartData::BotPerformance(all).into();
    Ok(first)
}

fn filename(team: &str, chart: Chart, filters: &Filters, ext: &str) -> String {
    let team: String = team
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{team}_{chart}_{}_{}.{ext}", filters.start_date, filters.end_date)
}

/// `# key: value` lines of the resolved filters.
fn filter_comments(filters: &Filters) -> String {
    let list = |v: Vec<String>| v.join(",");
    [
        ("start_date", filters.start_date.to_string()),
        ("end_date", filters.end_date.to_string()),
        ("timezone", filters.timezone.name().to_string()),
        ("granularity", filters.granularity.to_string()),
        (
            "experiments",
            list(filters.experiments.iter().map(i64::to_string).collect()),
        ),
        ("channels", list(filters.channels.clone())),
    ]
    .iter()
    .map(|(k, v)| format!("# {k}: {v}\n"))
    .collect()
}

fn csv_body(table: &Table, comments: Option<String>) -> Result<Vec<u8>, ApiError> {
    let mut out = comments.unwrap_or_default().into_bytes();
    let internal = |e: csv::Error| ApiError::Internal(format!("writing CSV: {e}"));
    {
        let mut w = csv::Writer::from_writer(&mut out);
        w.write_record(table.columns).map_err(internal)?;
        for row in &table.rows {
            w.write_record(row.iter().map(Cell::csv)).map_err(internal)?;
        }
        w.flush().map_err(|e| internal(e.into()))?;
    }
    Ok(out)
}

fn json_body(response: &ChartResponse, table: &Table, include_filters: bool) -> Result<Vec<u8>, ApiError> {
    let rows: Vec<Value> = table
        .rows
        .iter()
        .map(|row| {
            Value::Object(
                table
                    .columns
                    .iter()
                    .zip(row)
                    .map(|(c, v)| (c.to_string(), v.json()))
                    .collect(),
            )
        })
        .collect();
    let mut doc = json!({
        "chart": response.chart,
        "snapshot": response.snapshot,
        "columns": table.columns,
        "rows": rows,
    });
    if include_filters {
        doc["filters"] = serde_json::to_value(&response.filters).map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    serde_json::to_vec_pretty(&doc).map_err(|e| ApiError::Internal(e.to_string()))
}

#[utoipa::path(post, path = "/a/{team_slug}/dashboard/export/", tag = "exports",
    description = "A chart as a download. The column set of each chart is in the server's README; \
                   participants appear only as pseudonyms.",
    params(("team_slug" = String, Path, description = "The team's URL slug")),
    request_body = ExportRequest,
    responses(
        (status = 200, description = "The file (`Content-Disposition: attachment`)", content((String = "text/csv"), (serde_json::Value = "application/json"))),
        (status = 400, body = crate::error::ErrorEnvelope, description = "Malformed body or an invalid filter"),
        (status = 401, body = crate::error::ErrorEnvelope),
        (status = 403, body = crate::error::ErrorEnvelope, description = "Cookie without the CSRF token"),
        (status = 404, body = crate::error::ErrorEnvelope, description = "Unknown chart, or another team"),
        (status = 413, body = crate::error::ErrorEnvelope),
    ),
    security(("bearer" = []), ("session" = [])))]
pub(crate) async fn export(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<ExportRequest>,
) -> Result<Response, ApiError> {
    let chart = parse_chart(&req.chart)?;
    let csv = match req.format.as_deref().unwrap_or("csv") {
        "csv" => true,
        "json" => false,
        other => {
            return Err(ApiError::invalid(
                "format",
                format!("format must be csv or json, got {other:?}"),
            ));
        }
    };
    let (filters, options) = Filters::parse(&filter_pairs(&req.filters)?, Utc::now())?;
    let response = match chart {
        Chart::BotPerformance => all_bots(&state, &caller, &filters, &options).await?,
        _ => {
            state
                .engine()
                .chart(&caller.snapshot, caller.team.id, chart, &filters, &options)
                .await?
        }
    };
    let table = table(&response.data, state.pseudonyms());
    let (body, content_type, ext) = if csv {
        let comments = req.include_filters.then(|| filter_comments(&filters));
        (csv_body(&table, comments)?, "text/csv; charset=utf-8", "csv")
    } else {
        (
            json_body(&response, &table, req.include_filters)?,
            "application/json",
            "json",
        )
    };
    let resolved = serde_json::to_value(&response.filters).map_err(|e| ApiError::Internal(e.to_string()))?;
    state
        .store()
        .audit_row(caller.audit("export", &format!("{chart}.{ext}"), resolved, table.rows.len()))
        .await?;
    let disposition = format!(
        "attachment; filename=\"{}\"",
        filename(&caller.team.slug, chart, &filters, ext)
    );
    let mut response = (StatusCode::OK, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_like_text_is_defused_in_csv_only() {
        assert_eq!(text("=SUM(A1)").csv(), "'=SUM(A1)");
        assert_eq!(text("Bot").csv(), "Bot");
        assert_eq!(Cell::Float(-1.5).csv(), "-1.5");
        assert_eq!(Cell::Float(3.0).csv(), "3.0");
        assert_eq!(Cell::Float(f64::NAN).csv(), "");
        assert_eq!(text("=x").json(), json!("=x"));
        assert_eq!(Cell::Empty.json(), Value::Null);
    }
}
