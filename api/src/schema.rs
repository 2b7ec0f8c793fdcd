//! The chart endpoint's wire types for the OpenAPI document and for Rust
//! clients (tests parse responses into them). The engine serialises its own
//! types (`ocs_dash_engine::charts`) and stays free of HTTP concerns; these
//! mirror them field for field, and the tests parse every chart's real answer
//! with `deny_unknown_fields` and re-serialise it unchanged, so a drift fails.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Query parameters of every chart (all optional).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChartParams {
    /// `7`, `30`, `90`, `365` (the last N days including today) or `custom`; default `30`.
    pub date_range: Option<String>,
    /// `YYYY-MM-DD`, required with `custom`.
    pub start_date: Option<NaiveDate>,
    /// `YYYY-MM-DD`, required with `custom`, not before `start_date`.
    pub end_date: Option<NaiveDate>,
    /// `hourly`, `daily` (default), `weekly` or `monthly`.
    pub granularity: Option<String>,
    /// Chatbot ids, repeated or comma separated; default all.
    #[param(style = Form, explode = true)]
    pub experiments: Option<Vec<i64>>,
    /// Platform values (`whatsapp`, `telegram`, ...), repeated or comma separated; default all.
    #[param(style = Form, explode = true)]
    pub channels: Option<Vec<String>>,
    /// IANA zone name; default `UTC`.
    pub timezone: Option<String>,
    /// user-engagement only: 1..100, default 10.
    pub limit: Option<u32>,
    /// bot-performance only: a row field name, default `messages`.
    pub order_by: Option<String>,
    /// bot-performance only: `asc` or `desc` (default).
    pub order_dir: Option<String>,
    /// bot-performance only: from 1, default 1.
    pub page: Option<u32>,
    /// bot-performance only: 1..100, default 10.
    pub page_size: Option<u32>,
}

/// Every chart answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChartEnvelope {
    /// The chart's name.
    pub chart: String,
    pub filters: ResolvedFilters,
    pub snapshot: SnapshotInfo,
    pub data: ChartData,
}

/// The resolved request: presets turned into dates, lists sorted and deduplicated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolvedFilters {
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    pub timezone: String,
    /// `hourly`, `daily`, `weekly` or `monthly`.
    pub granularity: String,
    pub experiments: Vec<i64>,
    pub channels: Vec<String>,
}

/// Which snapshot answered, and when its data was exported from Postgres.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotInfo {
    pub version: String,
    pub as_of: DateTime<Utc>,
}

/// `data`, per chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ChartData {
    Overview(Overview),
    ActiveParticipants(Vec<ActiveParticipantsRow>),
    SessionAnalytics(Vec<SessionAnalyticsRow>),
    MessageVolume(Vec<MessageVolumeRow>),
    BotPerformance(BotPerformance),
    UserEngagement(UserEngagement),
    ChannelBreakdown(ChannelBreakdown),
    TagAnalytics(TagAnalytics),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Overview {
    pub total_chatbots: i64,
    pub active_chatbots: i64,
    pub total_participants: i64,
    pub active_participants: i64,
    pub active_sessions: i64,
    pub sessions_started: i64,
    pub completed_sessions: i64,
    /// A fraction, 0..1.
    pub completion_rate: f64,
    pub human_messages: i64,
    pub ai_messages: i64,
    pub total_messages: i64,
    pub avg_messages_per_session: f64,
    pub avg_sessions_per_participant: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActiveParticipantsRow {
    /// The bucket's start, RFC 3339 with the zone's offset.
    pub bucket: String,
    pub active_participants: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionAnalyticsRow {
    pub bucket: String,
    pub active_sessions: i64,
    pub sessions_started: i64,
    pub active_participants: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageVolumeRow {
    pub bucket: String,
    pub human_messages: i64,
    pub ai_messages: i64,
    pub total_messages: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BotRow {
    pub chatbot_id: i64,
    pub chatbot_name: String,
    pub participants: i64,
    pub sessions: i64,
    pub messages: i64,
    /// Minutes; `null` when none of its sessions ended.
    pub avg_session_duration: Option<f64>,
    pub completion_rate: f64,
    pub avg_messages_per_session: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BotPerformance {
    pub results: Vec<BotRow>,
    pub total_count: usize,
    pub page: usize,
    pub page_size: usize,
    pub total_pages: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EngagedParticipant {
    pub participant_id: i64,
    pub participant_name: String,
    pub total_messages: i64,
    pub total_sessions: i64,
    pub last_activity: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LengthBin {
    pub bin_start: f64,
    pub bin_end: f64,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserEngagement {
    pub most_active: Vec<EngagedParticipant>,
    pub least_active: Vec<EngagedParticipant>,
    pub total_participants: i64,
    pub session_length_distribution: Vec<LengthBin>,
    pub session_length_percentiles: Percentiles,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelRow {
    pub platform: Option<String>,
    pub label: Option<String>,
    pub sessions: i64,
    pub participants: i64,
    pub human_messages: i64,
    pub ai_messages: i64,
    pub session_share: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelTotals {
    pub sessions: i64,
    pub participants: i64,
    pub messages: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelBreakdown {
    pub platforms: Vec<ChannelRow>,
    pub totals: ChannelTotals,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagCount {
    pub tag_id: i64,
    pub name: String,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagCategory {
    pub category: String,
    pub label: String,
    pub tags: Vec<TagCount>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagAnalytics {
    pub message_tags: Vec<TagCategory>,
    pub session_tags: Vec<TagCategory>,
    pub total_tagged_messages: i64,
}
