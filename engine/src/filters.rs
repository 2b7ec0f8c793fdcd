//! Chart requests: parsing and validating the dashboard's query parameters
//! into a canonical, resolved form (api.md), and the time window they mean.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::error::{Error, Result};

/// Platform values OCS knows, with their labels (metrics.md §1).
pub const PLATFORMS: &[(&str, &str)] = &[
    ("telegram", "Telegram"),
    ("web", "Web"),
    ("whatsapp", "WhatsApp"),
    ("facebook", "Facebook"),
    ("sureadhere", "SureAdhere"),
    ("api", "API"),
    ("slack", "Slack"),
    ("commcare_connect", "CommCare Connect"),
    ("evaluations", "Evaluations"),
    ("embedded_widget", "Chat Widget & API"),
    ("email", "Email"),
];

/// The label of a platform value; an unknown value is its own label.
pub fn platform_label(platform: &str) -> &str {
    PLATFORMS
        .iter()
        .find(|(p, _)| *p == platform)
        .map_or(platform, |(_, l)| l)
}

/// Most buckets one chart may return.
pub const MAX_BUCKETS: usize = 10_000;

/// Bucket width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Hourly,
    Daily,
    Weekly,
    Monthly,
}

impl FromStr for Granularity {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        Ok(match s {
            "hourly" => Granularity::Hourly,
            "daily" => Granularity::Daily,
            "weekly" => Granularity::Weekly,
            "monthly" => Granularity::Monthly,
            _ => return Err(()),
        })
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Granularity::Hourly => "hourly",
            Granularity::Daily => "daily",
            Granularity::Weekly => "weekly",
            Granularity::Monthly => "monthly",
        })
    }
}

/// The resolved filters every chart takes (the `filters` of a response).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Filters {
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    #[serde(serialize_with = "ser_tz")]
    pub timezone: Tz,
    pub granularity: Granularity,
    /// Chatbot ids, sorted and deduplicated; empty = all.
    pub experiments: Vec<i64>,
    /// Platform values, sorted and deduplicated; empty = all.
    pub channels: Vec<String>,
}

fn ser_tz<S: serde::Serializer>(tz: &Tz, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

/// Chart-specific options (user-engagement and bot-performance).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Options {
    pub limit: usize,
    pub order_by: BotOrder,
    pub descending: bool,
    pub page: usize,
    pub page_size: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limit: 10,
            order_by: BotOrder::Messages,
            descending: true,
            page: 1,
            page_size: 10,
        }
    }
}

/// Sortable bot-performance fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BotOrder {
    ChatbotName,
    Participants,
    Sessions,
    Messages,
    AvgSessionDuration,
    CompletionRate,
    AvgMessagesPerSession,
}

const BOT_ORDERS: &[(&str, BotOrder)] = &[
    ("chatbot_name", BotOrder::ChatbotName),
    ("participants", BotOrder::Participants),
    ("sessions", BotOrder::Sessions),
    ("messages", BotOrder::Messages),
    ("avg_session_duration", BotOrder::AvgSessionDuration),
    ("completion_rate", BotOrder::CompletionRate),
    ("avg_messages_per_session", BotOrder::AvgMessagesPerSession),
];

fn invalid(parameter: &str, message: impl Into<String>) -> Error {
    Error::InvalidParameter {
        parameter: parameter.to_string(),
        message: message.into(),
    }
}

/// Collects every value of a parameter, splitting comma lists
/// (`experiments=1&experiments=2` and `experiments=1,2` mean the same).
fn list<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == name)
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect()
}

/// The single value of a parameter; repeating it with different values is an error.
fn single<'a>(pairs: &'a [(String, String)], name: &str) -> Result<Option<&'a str>> {
    let mut values = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.trim());
    let first = values.next();
    if let Some(other) = values.find(|v| Some(*v) != first) {
        return Err(invalid(
            name,
            format!("{name} was given twice ({} and {other})", first.unwrap_or("")),
        ));
    }
    Ok(first.filter(|v| !v.is_empty()))
}

fn date(pairs: &[(String, String)], name: &str) -> Result<Option<NaiveDate>> {
    single(pairs, name)?
        .map(|v| {
            NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .ok()
                .filter(|_| v.len() == 10)
                .ok_or_else(|| invalid(name, format!("{name} must be a date like 2026-03-01, got {v:?}")))
        })
        .transpose()
}

fn bounded(pairs: &[(String, String)], name: &str, lo: usize, hi: usize, default: usize) -> Result<usize> {
    match single(pairs, name)? {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| invalid(name, format!("{name} must be an integer from {lo} to {hi}, got {v:?}"))),
    }
}

impl Filters {
    /// Parses the query parameters of a chart request. `now` fixes "today"
    /// for the date presets (in the request's zone).
    pub fn parse(pairs: &[(String, String)], now: DateTime<Utc>) -> Result<(Filters, Options)> {
        let timezone = match single(pairs, "timezone")? {
            None => Tz::UTC,
            Some(v) => v.parse::<Tz>().map_err(|_| {
                invalid(
                    "timezone",
                    format!("timezone must be an IANA zone name like Europe/Berlin, got {v:?}"),
                )
            })?,
        };
        let granularity = match single(pairs, "granularity")? {
            None => Granularity::Daily,
            Some(v) => v.parse().map_err(|_| {
                invalid(
                    "granularity",
                    "granularity must be one of hourly, daily, weekly, monthly",
                )
            })?,
        };
        let start = date(pairs, "start_date")?;
        let end = date(pairs, "end_date")?;
        let range = single(pairs, "date_range")?;
        let (start_date, end_date) = match (range, start, end) {
            (Some("custom"), Some(s), Some(e)) | (None, Some(s), Some(e)) => (s, e),
            (Some("custom"), _, _) | (None, Some(_), None) | (None, None, Some(_)) => {
                let missing = if start.is_none() { "start_date" } else { "end_date" };
                return Err(invalid(
                    missing,
                    format!("{missing} is required with a custom date range"),
                ));
            }
            (Some(v), _, _) => {
                let days: u64 = match v {
                    "7" => 7,
                    "30" => 30,
                    "90" => 90,
                    "365" => 365,
                    _ => {
                        return Err(invalid(
                            "date_range",
                            "date_range must be one of 7, 30, 90, 365, custom",
                        ));
                    }
                };
                let today = now.with_timezone(&timezone).date_naive();
                (today - Days::new(days - 1), today)
            }
            (None, None, None) => {
                let today = now.with_timezone(&timezone).date_naive();
                (today - Days::new(29), today)
            }
        };
        if start_date > end_date {
            return Err(invalid("start_date", "start_date must not be after end_date"));
        }
        let mut experiments = list(pairs, "experiments")
            .into_iter()
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    invalid(
                        "experiments",
                        format!("experiments must be chatbot ids (integers), got {v:?}"),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        experiments.sort_unstable();
        experiments.dedup();
        let mut channels = list(pairs, "channels")
            .into_iter()
            .map(|v| {
                PLATFORMS
                    .iter()
                    .find(|(p, _)| *p == v)
                    .map(|(p, _)| p.to_string())
                    .ok_or_else(|| {
                        let all: Vec<_> = PLATFORMS.iter().map(|(p, _)| *p).collect();
                        invalid(
                            "channels",
                            format!("channels must be platform values ({}), got {v:?}", all.join(", ")),
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        channels.sort();
        channels.dedup();
        let order_by = match single(pairs, "order_by")? {
            None => BotOrder::Messages,
            Some(v) => BOT_ORDERS
                .iter()
                .find(|(n, _)| *n == v)
                .map(|(_, o)| *o)
                .ok_or_else(|| {
                    let all: Vec<_> = BOT_ORDERS.iter().map(|(n, _)| *n).collect();
                    invalid("order_by", format!("order_by must be one of {}", all.join(", ")))
                })?,
        };
        let descending = match single(pairs, "order_dir")? {
            None | Some("desc") => true,
            Some("asc") => false,
            Some(_) => return Err(invalid("order_dir", "order_dir must be asc or desc")),
        };
        let options = Options {
            limit: bounded(pairs, "limit", 1, 100, 10)?,
            order_by,
            descending,
            page: bounded(pairs, "page", 1, usize::MAX, 1)?,
            page_size: bounded(pairs, "page_size", 1, 100, 10)?,
        };
        let filters = Filters {
            start_date,
            end_date,
            timezone,
            granularity,
            experiments,
            channels,
        };
        let buckets = filters.bucket_count();
        if buckets > MAX_BUCKETS {
            return Err(invalid(
                "granularity",
                format!(
                    "the window would have {buckets} {granularity} buckets (at most {MAX_BUCKETS}): choose a coarser granularity or a shorter range"
                ),
            ));
        }
        Ok((filters, options))
    }

    /// The window `[start, end)` as instants.
    pub fn window(&self) -> (DateTime<Tz>, DateTime<Tz>) {
        (
            local_midnight(self.timezone, self.start_date),
            local_midnight(self.timezone, self.end_date + Days::new(1)),
        )
    }

    /// Bucket count without building them (for the limit check).
    fn bucket_count(&self) -> usize {
        let days = (self.end_date - self.start_date).num_days() as usize + 1;
        match self.granularity {
            // A DST day has at most 25 hours; 24 per day plus slack is exact enough for a limit.
            Granularity::Hourly => days * 24 + days.div_ceil(180),
            Granularity::Daily => days,
            Granularity::Weekly => days.div_ceil(7) + 1,
            Granularity::Monthly => days.div_ceil(28) + 1,
        }
    }
}

/// Local midnight of `date` in `tz`; where midnight does not exist (a DST
/// gap at midnight), the first instant of that local day.
pub fn local_midnight(tz: Tz, date: NaiveDate) -> DateTime<Tz> {
    let mut t = date.and_time(NaiveTime::MIN);
    loop {
        if let Some(dt) = tz.from_local_datetime(&t).earliest() {
            return dt;
        }
        t += chrono::Duration::minutes(15);
    }
}
