//! The eight charts of the dashboard (api.md), computed exactly as
//! metrics.md defines them, over a [`crate::scope::team_scope`].

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, TimestampMicrosecondType};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{col, lit};
use datafusion::prelude::SessionContext;
use futures::try_join;
use serde::Serialize;

use crate::buckets::Buckets;
use crate::error::Result;
use crate::filters::{BotOrder, Filters, Options, platform_label};

/// A chart of the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Chart {
    Overview,
    ActiveParticipants,
    SessionAnalytics,
    MessageVolume,
    BotPerformance,
    UserEngagement,
    ChannelBreakdown,
    TagAnalytics,
}

impl Chart {
    pub const ALL: [Chart; 8] = [
        Chart::Overview,
        Chart::ActiveParticipants,
        Chart::SessionAnalytics,
        Chart::MessageVolume,
        Chart::BotPerformance,
        Chart::UserEngagement,
        Chart::ChannelBreakdown,
        Chart::TagAnalytics,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Chart::Overview => "overview",
            Chart::ActiveParticipants => "active-participants",
            Chart::SessionAnalytics => "session-analytics",
            Chart::MessageVolume => "message-volume",
            Chart::BotPerformance => "bot-performance",
            Chart::UserEngagement => "user-engagement",
            Chart::ChannelBreakdown => "channel-breakdown",
            Chart::TagAnalytics => "tag-analytics",
        }
    }
}

impl FromStr for Chart {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        Chart::ALL.into_iter().find(|c| c.name() == s).ok_or(())
    }
}

impl fmt::Display for Chart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overview {
    pub total_chatbots: i64,
    pub active_chatbots: i64,
    pub total_participants: i64,
    pub active_participants: i64,
    pub active_sessions: i64,
    pub sessions_started: i64,
    pub completed_sessions: i64,
    pub completion_rate: f64,
    pub human_messages: i64,
    pub ai_messages: i64,
    pub total_messages: i64,
    pub avg_messages_per_session: f64,
    pub avg_sessions_per_participant: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActiveParticipantsRow {
    pub bucket: String,
    pub active_participants: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionAnalyticsRow {
    pub bucket: String,
    pub active_sessions: i64,
    pub sessions_started: i64,
    pub active_participants: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageVolumeRow {
    pub bucket: String,
    pub human_messages: i64,
    pub ai_messages: i64,
    pub total_messages: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BotRow {
    pub chatbot_id: i64,
    pub chatbot_name: String,
    pub participants: i64,
    pub sessions: i64,
    pub messages: i64,
    pub avg_session_duration: Option<f64>,
    pub completion_rate: f64,
    pub avg_messages_per_session: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BotPerformance {
    pub results: Vec<BotRow>,
    pub total_count: usize,
    pub page: usize,
    pub page_size: usize,
    pub total_pages: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngagedParticipant {
    pub participant_id: i64,
    pub participant_name: String,
    pub total_messages: i64,
    pub total_sessions: i64,
    pub last_activity: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LengthBin {
    pub bin_start: f64,
    pub bin_end: f64,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserEngagement {
    pub most_active: Vec<EngagedParticipant>,
    pub least_active: Vec<EngagedParticipant>,
    pub total_participants: i64,
    pub session_length_distribution: Vec<LengthBin>,
    pub session_length_percentiles: Percentiles,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelRow {
    /// `null` only for sessions whose platform is unknown everywhere.
    pub platform: Option<String>,
    pub label: Option<String>,
    pub sessions: i64,
    pub participants: i64,
    pub human_messages: i64,
    pub ai_messages: i64,
    pub session_share: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelTotals {
    pub sessions: i64,
    pub participants: i64,
    pub messages: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelBreakdown {
    pub platforms: Vec<ChannelRow>,
    pub totals: ChannelTotals,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TagCount {
    pub tag_id: i64,
    pub name: String,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TagCategory {
    pub category: String,
    pub label: String,
    pub tags: Vec<TagCount>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TagAnalytics {
    pub message_tags: Vec<TagCategory>,
    pub session_tags: Vec<TagCategory>,
    pub total_tagged_messages: i64,
}

/// The `data` of any chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
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

/// Tag category labels (metrics.md §1); an unknown category is its own label.
pub fn category_label(category: &str) -> &str {
    match category {
        "" => "User Defined",
        "bot_response" => "Bot Response",
        "safety_layer_response" => "Safety Layer Response",
        "experiment_version" => "Experiment Version",
        "response_rating" => "Response Rating",
        "error" => "Error",
        "media_type" => "Media Type",
        other => other,
    }
}

/// Computes one chart in a team scope.
pub async fn compute(ctx: &SessionContext, chart: Chart, f: &Filters, o: &Options) -> Result<ChartData> {
    let q = Query::new(ctx, f);
    Ok(match chart {
        Chart::Overview => ChartData::Overview(overview(&q).await?),
        Chart::ActiveParticipants => {
            let series = q
                .series(
                    include_str!("../../sql/active_participants.sql"),
                    &["active_participants"],
                )
                .await?;
            ChartData::ActiveParticipants(
                q.names()
                    .zip(&series[0])
                    .map(|(bucket, n)| ActiveParticipantsRow {
                        bucket,
                        active_participants: *n,
                    })
                    .collect(),
            )
        }
        Chart::SessionAnalytics => {
            let (act, started) = try_join!(
                q.series(
                    include_str!("../../sql/session_activity.sql"),
                    &["active_sessions", "active_participants"],
                ),
                q.series(include_str!("../../sql/sessions_started.sql"), &["sessions_started"]),
            )?;
            ChartData::SessionAnalytics(
                q.names()
                    .enumerate()
                    .map(|(i, bucket)| SessionAnalyticsRow {
                        bucket,
                        active_sessions: act[0][i],
                        sessions_started: started[0][i],
                        active_participants: act[1][i],
                    })
                    .collect(),
            )
        }
        Chart::MessageVolume => {
            let s = q
                .series(
                    include_str!("../../sql/message_volume.sql"),
                    &["human_messages", "ai_messages"],
                )
                .await?;
            ChartData::MessageVolume(
                q.names()
                    .enumerate()
                    .map(|(i, bucket)| MessageVolumeRow {
                        bucket,
                        human_messages: s[0][i],
                        ai_messages: s[1][i],
                        total_messages: s[0][i] + s[1][i],
                    })
                    .collect(),
            )
        }
        Chart::BotPerformance => ChartData::BotPerformance(bot_performance(&q, o).await?),
        Chart::UserEngagement => ChartData::UserEngagement(user_engagement(&q, o).await?),
        Chart::ChannelBreakdown => ChartData::ChannelBreakdown(channel_breakdown(&q).await?),
        Chart::TagAnalytics => ChartData::TagAnalytics(tag_analytics(&q).await?),
    })
}

/// One request's SQL runner: binds `$start`/`$end` and knows the buckets.
struct Query<'a> {
    ctx: &'a SessionContext,
    start: ScalarValue,
    end: ScalarValue,
    buckets: Buckets,
}

impl<'a> Query<'a> {
    fn new(ctx: &'a SessionContext, f: &Filters) -> Self {
        let (start, end) = f.window();
        let ts = |t: DateTime<chrono_tz::Tz>| crate::snapshot::utc_micros(t.timestamp_micros());
        let buckets = Buckets::new(f);
        ctx.register_udf(buckets.udf());
        Query {
            ctx,
            start: ts(start),
            end: ts(end),
            buckets,
        }
    }

    async fn frame(&self, sql: &str) -> Result<datafusion::prelude::DataFrame> {
        Ok(self
            .ctx
            .sql(sql)
            .await?
            .with_param_values(vec![("start", self.start.clone()), ("end", self.end.clone())])?)
    }

    async fn rows(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        Ok(self.frame(sql).await?.collect().await?)
    }

    /// Runs a `SELECT bucket(..) AS b, m1, m2 ...` query into zero-filled
    /// series, one per metric column.
    async fn series(&self, sql: &str, metrics: &[&str]) -> Result<Vec<Vec<i64>>> {
        let mut out = vec![vec![0i64; self.buckets.len()]; metrics.len()];
        for batch in self.rows(sql).await? {
            let b = ints(&batch, "b")?;
            for (m, series) in metrics.iter().zip(out.iter_mut()) {
                for (i, v) in b.iter().zip(ints(&batch, m)?) {
                    if let Some(slot) = usize::try_from(*i).ok().and_then(|i| series.get_mut(i)) {
                        *slot = v;
                    }
                }
            }
        }
        Ok(out)
    }

    fn names(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.buckets.len()).map(|i| self.buckets.name(i))
    }
}

fn column(batch: &RecordBatch, name: &str, to: &DataType) -> Result<std::sync::Arc<dyn Array>> {
    let c = batch
        .column_by_name(name)
        .ok_or_else(|| datafusion::error::DataFusionError::Internal(format!("query has no column {name}")))?;
    Ok(cast(c, to)?)
}

fn ints(batch: &RecordBatch, name: &str) -> Result<Vec<i64>> {
    let a = column(batch, name, &DataType::Int64)?;
    let a = a.as_primitive::<Int64Type>();
    Ok((0..a.len())
        .map(|i| if a.is_null(i) { 0 } else { a.value(i) })
        .collect())
}

fn floats(batch: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>> {
    let a = column(batch, name, &DataType::Float64)?;
    let a = a.as_primitive::<Float64Type>();
    Ok((0..a.len()).map(|i| (!a.is_null(i)).then(|| a.value(i))).collect())
}

fn strings(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    let a = column(batch, name, &DataType::Utf8)?;
    let a = a.as_string::<i32>();
    Ok((0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i).to_string()))
        .collect())
}

fn timestamps(batch: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>> {
    let a = column(batch, name, &crate::snapshot::timestamp_type())?;
    let a = a.as_primitive::<TimestampMicrosecondType>();
    Ok((0..a.len()).map(|i| (!a.is_null(i)).then(|| a.value(i))).collect())
}

fn ratio(a: i64, b: i64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

async fn overview(q: &Query<'_>) -> Result<Overview> {
    let batches = q.rows(include_str!("../../sql/overview.sql")).await?;
    let b = &batches[0];
    let v = |name: &str| -> Result<i64> { Ok(ints(b, name)?[0]) };
    let (human, ai) = (v("human_messages")?, v("ai_messages")?);
    let (active_sessions, active_participants) = (v("active_sessions")?, v("active_participants")?);
    let completed = v("completed_sessions")?;
    Ok(Overview {
        total_chatbots: v("total_chatbots")?,
        active_chatbots: v("active_chatbots")?,
        total_participants: v("total_participants")?,
        active_participants,
        active_sessions,
        sessions_started: v("sessions_started")?,
        completed_sessions: completed,
        completion_rate: ratio(completed, active_sessions),
        human_messages: human,
        ai_messages: ai,
        total_messages: human + ai,
        avg_messages_per_session: ratio(human + ai, active_sessions),
        avg_sessions_per_participant: ratio(active_sessions, active_participants),
    })
}

async fn bot_performance(q: &Query<'_>, o: &Options) -> Result<BotPerformance> {
    let mut rows = Vec::new();
    for b in q.rows(include_str!("../../sql/bot_performance.sql")).await? {
        let (ids, names) = (ints(&b, "chatbot_id")?, strings(&b, "chatbot_name")?);
        let (parts, sessions, msgs) = (ints(&b, "participants")?, ints(&b, "sessions")?, ints(&b, "messages")?);
        let (completed, ended_us) = (ints(&b, "completed")?, ints(&b, "ended_us")?);
        for i in 0..b.num_rows() {
            rows.push(BotRow {
                chatbot_id: ids[i],
                chatbot_name: names[i].clone().unwrap_or_default(),
                participants: parts[i],
                sessions: sessions[i],
                messages: msgs[i],
                avg_session_duration: (completed[i] > 0)
                    .then(|| ended_us[i] as f64 / (completed[i] as f64 * 60_000_000.0)),
                completion_rate: ratio(completed[i], sessions[i]),
                avg_messages_per_session: ratio(msgs[i], sessions[i]),
            });
        }
    }
    sort_bots(&mut rows, o.order_by, o.descending);
    let total_count = rows.len();
    let results = rows
        .into_iter()
        .skip((o.page - 1).saturating_mul(o.page_size))
        .take(o.page_size)
        .collect();
    Ok(BotPerformance {
        results,
        total_count,
        page: o.page,
        page_size: o.page_size,
        total_pages: total_count.div_ceil(o.page_size),
    })
}

/// Sorts by the chosen field; `null` last in both directions; ties by id.
fn sort_bots(rows: &mut [BotRow], by: BotOrder, descending: bool) {
    let num = |r: &BotRow| -> Option<f64> {
        match by {
            BotOrder::ChatbotName => None,
            BotOrder::Participants => Some(r.participants as f64),
            BotOrder::Sessions => Some(r.sessions as f64),
            BotOrder::Messages => Some(r.messages as f64),
            BotOrder::AvgSessionDuration => r.avg_session_duration,
            BotOrder::CompletionRate => Some(r.completion_rate),
            BotOrder::AvgMessagesPerSession => Some(r.avg_messages_per_session),
        }
    };
    rows.sort_by(|a, b| {
        let primary = if by == BotOrder::ChatbotName {
            let o = a.chatbot_name.cmp(&b.chatbot_name);
            if descending { o.reverse() } else { o }
        } else {
            match (num(a), num(b)) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(x), Some(y)) => {
                    let o = x.total_cmp(&y);
                    if descending { o.reverse() } else { o }
                }
            }
        };
        primary.then(a.chatbot_id.cmp(&b.chatbot_id))
    });
}

/// One participant's activity in the window (a row of `sql/engagement.sql`).
#[derive(Debug, Clone, Copy)]
struct ParticipantActivity {
    id: i64,
    messages: i64,
    sessions: i64,
    last_us: Option<i64>,
}

/// The first `limit` rows in `order`, sorted (a partial selection, then a
/// sort of the kept rows only).
fn top(
    rows: &[ParticipantActivity],
    limit: usize,
    order: impl Fn(&ParticipantActivity, &ParticipantActivity) -> Ordering,
) -> Vec<ParticipantActivity> {
    let mut v = rows.to_vec();
    if v.len() > limit && limit > 0 {
        v.select_nth_unstable_by(limit - 1, &order);
    }
    v.truncate(limit);
    v.sort_by(order);
    v
}

/// Display names (`name`, else `identifier`) of these participants.
async fn participant_names(q: &Query<'_>, ids: Vec<i64>) -> Result<std::collections::HashMap<i64, String>> {
    let mut by_id = std::collections::HashMap::new();
    if ids.is_empty() {
        return Ok(by_id);
    }
    let names = q
        .ctx
        .table("participants")
        .await?
        .filter(col("participant_id").in_list(ids.into_iter().map(lit).collect(), false))?
        .collect()
        .await?;
    for b in &names {
        let (ids, name, ident) = (
            ints(b, "participant_id")?,
            strings(b, "name")?,
            strings(b, "identifier")?,
        );
        for i in 0..b.num_rows() {
            let n = name[i].clone().unwrap_or_default();
            by_id.insert(
                ids[i],
                if n.is_empty() {
                    ident[i].clone().unwrap_or_default()
                } else {
                    n
                },
            );
        }
    }
    Ok(by_id)
}

async fn user_engagement(q: &Query<'_>, o: &Options) -> Result<UserEngagement> {
    let (participants, sessions) = try_join!(
        q.rows(include_str!("../../sql/engagement.sql")),
        q.rows(include_str!("../../sql/session_lengths.sql")),
    )?;
    let mut rows = Vec::new();
    for b in participants {
        let (ids, msgs, sess, last) = (
            ints(&b, "participant_id")?,
            ints(&b, "total_messages")?,
            ints(&b, "total_sessions")?,
            timestamps(&b, "last_activity")?,
        );
        rows.extend((0..b.num_rows()).map(|i| ParticipantActivity {
            id: ids[i],
            messages: msgs[i],
            sessions: sess[i],
            last_us: last[i],
        }));
    }
    // Ties by participant id, ascending, in both lists (metrics.md).
    let most = top(&rows, o.limit, |a, b| b.messages.cmp(&a.messages).then(a.id.cmp(&b.id)));
    let least = top(&rows, o.limit, |a, b| a.messages.cmp(&b.messages).then(a.id.cmp(&b.id)));
    let names = participant_names(q, most.iter().chain(&least).map(|a| a.id).collect()).await?;
    let shown = |list: Vec<ParticipantActivity>| -> Vec<EngagedParticipant> {
        list.into_iter()
            .map(|a| EngagedParticipant {
                participant_id: a.id,
                participant_name: names.get(&a.id).cloned().unwrap_or_default(),
                total_messages: a.messages,
                total_sessions: a.sessions,
                last_activity: a
                    .last_us
                    .and_then(DateTime::<Utc>::from_timestamp_micros)
                    .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
                    .unwrap_or_default(),
            })
            .collect()
    };
    let mut lengths = Vec::new();
    for b in sessions {
        lengths.extend(floats(&b, "minutes")?.into_iter().flatten());
    }
    lengths.sort_by(f64::total_cmp);
    Ok(UserEngagement {
        most_active: shown(most),
        least_active: shown(least),
        total_participants: rows.len() as i64,
        session_length_distribution: histogram(&lengths),
        session_length_percentiles: Percentiles {
            p50: percentile_cont(&lengths, 0.5),
            p90: percentile_cont(&lengths, 0.9),
            p99: percentile_cont(&lengths, 0.99),
        },
    })
}

/// Ten equal-width bins from min to max of sorted `v`; `start <= v < end`,
/// the last bin also taking the maximum; one bin when min = max.
pub fn histogram(v: &[f64]) -> Vec<LengthBin> {
    let (Some(&min), Some(&max)) = (v.first(), v.last()) else {
        return Vec::new();
    };
    if min == max {
        return vec![LengthBin {
            bin_start: min,
            bin_end: max,
            count: v.len() as i64,
        }];
    }
    let width = (max - min) / 10.0;
    let edges: Vec<f64> = (0..10).map(|i| min + width * i as f64).collect();
    let mut bins: Vec<LengthBin> = (0..10)
        .map(|i| LengthBin {
            bin_start: edges[i],
            bin_end: if i == 9 { max } else { edges[i + 1] },
            count: 0,
        })
        .collect();
    for x in v {
        let i = edges.partition_point(|e| e <= x).saturating_sub(1).min(9);
        bins[i].count += 1;
    }
    bins
}

/// Linear interpolation between closest ranks (Postgres `percentile_cont`)
/// over sorted `v`.
pub fn percentile_cont(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let pos = p * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

async fn channel_breakdown(q: &Query<'_>) -> Result<ChannelBreakdown> {
    let (by_platform, t) = try_join!(
        q.rows(include_str!("../../sql/channel_breakdown.sql")),
        q.rows(include_str!("../../sql/channel_totals.sql")),
    )?;
    let mut platforms = Vec::new();
    for b in by_platform {
        let (p, s, parts) = (
            strings(&b, "platform")?,
            ints(&b, "sessions")?,
            ints(&b, "participants")?,
        );
        let (h, a) = (ints(&b, "human_messages")?, ints(&b, "ai_messages")?);
        for i in 0..b.num_rows() {
            platforms.push(ChannelRow {
                label: p[i].as_deref().map(|p| platform_label(p).to_string()),
                platform: p[i].clone(),
                sessions: s[i],
                participants: parts[i],
                human_messages: h[i],
                ai_messages: a[i],
                session_share: 0.0,
            });
        }
    }
    let totals = ChannelTotals {
        sessions: platforms.iter().map(|r| r.sessions).sum(),
        participants: ints(&t[0], "participants")?[0],
        messages: platforms.iter().map(|r| r.human_messages + r.ai_messages).sum(),
    };
    for r in &mut platforms {
        r.session_share = ratio(r.sessions, totals.sessions);
    }
    // By sessions, then platform; a null platform after equal counts.
    platforms.sort_by(|a, b| {
        b.sessions
            .cmp(&a.sessions)
            .then_with(|| a.platform.is_none().cmp(&b.platform.is_none()))
            .then_with(|| a.platform.cmp(&b.platform))
    });
    Ok(ChannelBreakdown { platforms, totals })
}

async fn tag_counts(q: &Query<'_>, sql: &str) -> Result<Vec<TagCategory>> {
    let mut tags: Vec<(String, TagCount)> = Vec::new();
    for b in q.rows(sql).await? {
        let (ids, names, cats, counts) = (
            ints(&b, "tag_id")?,
            strings(&b, "name")?,
            strings(&b, "category")?,
            ints(&b, "count")?,
        );
        for i in 0..b.num_rows() {
            if counts[i] >= 1 {
                tags.push((
                    cats[i].clone().unwrap_or_default(),
                    TagCount {
                        tag_id: ids[i],
                        name: names[i].clone().unwrap_or_default(),
                        count: counts[i],
                    },
                ));
            }
        }
    }
    let mut groups: Vec<TagCategory> = Vec::new();
    for (category, tag) in tags {
        match groups.iter_mut().find(|g| g.category == category) {
            Some(g) => g.tags.push(tag),
            None => groups.push(TagCategory {
                label: category_label(&category).to_string(),
                category,
                tags: vec![tag],
            }),
        }
    }
    for g in &mut groups {
        g.tags.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.name.cmp(&b.name))
                .then(a.tag_id.cmp(&b.tag_id))
        });
    }
    groups.sort_by(|a, b| a.label.cmp(&b.label).then_with(|| a.category.cmp(&b.category)));
    Ok(groups)
}

async fn tag_analytics(q: &Query<'_>) -> Result<TagAnalytics> {
    let (message_tags, session_tags, total) = try_join!(
        tag_counts(q, include_str!("../../sql/message_tags.sql")),
        tag_counts(q, include_str!("../../sql/session_tags.sql")),
        q.rows(include_str!("../../sql/tagged_messages.sql")),
    )?;
    Ok(TagAnalytics {
        message_tags,
        session_tags,
        total_tagged_messages: ints(&total[0], "total_tagged_messages")?[0],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_match_postgres_percentile_cont() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile_cont(&v, 0.5), Some(2.5));
        assert!((percentile_cont(&v, 0.9).unwrap() - 3.7).abs() < 1e-12);
        assert_eq!(percentile_cont(&[], 0.5), None);
        assert_eq!(percentile_cont(&[7.0], 0.99), Some(7.0));
    }

    #[test]
    fn histogram_has_ten_bins_and_the_last_takes_the_max() {
        let v: Vec<f64> = (0..=10).map(f64::from).collect();
        let h = histogram(&v);
        assert_eq!(h.len(), 10);
        assert_eq!(h[0].count, 1);
        assert_eq!(h[9].count, 2);
        assert_eq!(h.iter().map(|b| b.count).sum::<i64>(), 11);
        assert_eq!(
            histogram(&[3.0, 3.0]),
            vec![LengthBin {
                bin_start: 3.0,
                bin_end: 3.0,
                count: 2
            }]
        );
        assert!(histogram(&[]).is_empty());
    }

    #[test]
    fn bots_sort_with_nulls_last_both_ways_and_ties_by_id() {
        let row = |id, d: Option<f64>| BotRow {
            chatbot_id: id,
            chatbot_name: format!("b{id}"),
            participants: 0,
            sessions: 0,
            messages: 0,
            avg_session_duration: d,
            completion_rate: 0.0,
            avg_messages_per_session: 0.0,
        };
        let mut rows = vec![row(3, None), row(2, Some(1.0)), row(1, Some(5.0)), row(4, Some(1.0))];
        sort_bots(&mut rows, BotOrder::AvgSessionDuration, true);
        assert_eq!(rows.iter().map(|r| r.chatbot_id).collect::<Vec<_>>(), [1, 2, 4, 3]);
        sort_bots(&mut rows, BotOrder::AvgSessionDuration, false);
        assert_eq!(rows.iter().map(|r| r.chatbot_id).collect::<Vec<_>>(), [2, 4, 1, 3]);
    }
}
