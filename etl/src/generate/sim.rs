//! Behaviour shared by the full generator and `simulate_day`: platforms,
//! conversation scripts, session statuses, tagging rules and the rows they
//! produce.

use rand::Rng;
use rand::rngs::SmallRng;
use rand_distr::StandardNormal;

use super::buf::{CHATS, Ids, MESSAGES, Out, PARTICIPANTS, SESSIONS, TAGGED, V};
use super::words::{self, IdStyle, UuidOf, Uuids};

pub(super) const SEC: i64 = 1_000_000;
pub(super) const MIN: i64 = 60 * SEC;
pub(super) const HOUR: i64 = 60 * MIN;
pub(super) const DAY: i64 = 24 * HOUR;

/// Channel / participant platforms, plus one OCS does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Plat {
    Telegram,
    Web,
    Whatsapp,
    Facebook,
    Sureadhere,
    Api,
    Slack,
    CommcareConnect,
    Evaluations,
    EmbeddedWidget,
    Email,
    /// Not an OCS platform: the source of the "unknown platform" anomaly.
    Matrix,
}

pub(super) const PLAT_COUNT: usize = 12;
const ALL_PLATS: [Plat; PLAT_COUNT] = [
    Plat::Telegram,
    Plat::Web,
    Plat::Whatsapp,
    Plat::Facebook,
    Plat::Sureadhere,
    Plat::Api,
    Plat::Slack,
    Plat::CommcareConnect,
    Plat::Evaluations,
    Plat::EmbeddedWidget,
    Plat::Email,
    Plat::Matrix,
];

impl Plat {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Plat::Telegram => "telegram",
            Plat::Web => "web",
            Plat::Whatsapp => "whatsapp",
            Plat::Facebook => "facebook",
            Plat::Sureadhere => "sureadhere",
            Plat::Api => "api",
            Plat::Slack => "slack",
            Plat::CommcareConnect => "commcare_connect",
            Plat::Evaluations => "evaluations",
            Plat::EmbeddedWidget => "embedded_widget",
            Plat::Email => "email",
            Plat::Matrix => "matrix",
        }
    }

    pub(super) fn label(self) -> &'static str {
        match self {
            Plat::Telegram => "Telegram",
            Plat::Web => "Web",
            Plat::Whatsapp => "WhatsApp",
            Plat::Facebook => "Facebook",
            Plat::Sureadhere => "SureAdhere",
            Plat::Api => "API",
            Plat::Slack => "Slack",
            Plat::CommcareConnect => "CommCare Connect",
            Plat::Evaluations => "Evaluations",
            Plat::EmbeddedWidget => "Chat Widget",
            Plat::Email => "Email",
            Plat::Matrix => "Matrix",
        }
    }

    pub(super) fn idx(self) -> usize {
        self as usize
    }

    pub(super) fn parse(s: &str) -> Option<Plat> {
        ALL_PLATS.into_iter().find(|p| p.as_str() == s)
    }

    /// How participants arriving on this platform are identified.
    pub(super) fn id_style(self, rng: &mut SmallRng) -> IdStyle {
        match self {
            Plat::Whatsapp => IdStyle::Phone,
            Plat::Telegram => IdStyle::TelegramChat,
            Plat::Facebook => IdStyle::FacebookPsid,
            Plat::Slack => IdStyle::SlackUser,
            Plat::Sureadhere => IdStyle::PatientNumber,
            Plat::CommcareConnect => IdStyle::ConnectUser,
            Plat::Email | Plat::Evaluations => IdStyle::Email,
            Plat::Matrix => IdStyle::Matrix,
            Plat::Web if rng.random_bool(0.6) => IdStyle::Email,
            Plat::EmbeddedWidget if rng.random_bool(0.3) => IdStyle::Email,
            Plat::Web | Plat::EmbeddedWidget => IdStyle::Anonymous,
            Plat::Api if rng.random_bool(0.5) => IdStyle::ExternalUser,
            Plat::Api => IdStyle::Email,
        }
    }
}

/// A lognormal draw given its median.
pub(super) fn lognormal(rng: &mut SmallRng, median: f64, sigma: f64) -> f64 {
    let z: f64 = rng.sample(StandardNormal);
    median * (sigma * z).exp()
}

/// A duration in microseconds from a lognormal in seconds.
pub(super) fn lognormal_us(rng: &mut SmallRng, median_s: f64, sigma: f64) -> i64 {
    (lognormal(rng, median_s, sigma) * SEC as f64) as i64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum MsgKind {
    Human,
    Ai,
    System,
}

impl MsgKind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            MsgKind::Human => "human",
            MsgKind::Ai => "ai",
            MsgKind::System => "system",
        }
    }
}

/// Session status mix (OCS plus two rare legacy values).
pub(super) fn pick_status(rng: &mut SmallRng) -> &'static str {
    let u: f64 = rng.random();
    const MIX: [(f64, &str); 7] = [
        (0.03, "setup"),
        (0.05, "pending"),
        (0.30, "active"),
        (0.35, "pending-review"),
        (0.38, "unknown"),
        (0.381, "pending-pre-survey"),
        (0.382, "cancelled"),
    ];
    MIX.iter().find(|(c, _)| u < *c).map_or("complete", |(_, s)| s)
}

/// Messages in a session of this status (lognormal, mean about 10).
pub(super) fn message_count(rng: &mut SmallRng, status: &str) -> usize {
    match status {
        "setup" => usize::from(rng.random_bool(0.1)),
        "pending" | "pending-pre-survey" => rng.random_range(0..=1),
        _ => (lognormal(rng, 7.3, 0.85).round() as usize).max(1),
    }
}

/// When a session of this status ended, given its last message (`None`:
/// still open).
pub(super) fn ended_at(rng: &mut SmallRng, status: &str, last: i64) -> Option<i64> {
    let ends = match status {
        "complete" | "cancelled" => true,
        "pending-review" => rng.random_bool(0.5),
        "active" => rng.random_bool(0.02),
        _ => false,
    };
    ends.then(|| last + SEC + lognormal_us(rng, 600.0, 1.2))
}

/// A conversation of `n` messages starting at `start`: alternating human
/// and AI turns (AI replies seconds later), sometimes an AI greeting first,
/// about 3% system messages, gaps from seconds to days.
pub(super) fn script(rng: &mut SmallRng, start: i64, n: usize, greeting: bool, out: &mut Vec<(i64, MsgKind)>) {
    out.clear();
    let mut t = start + lognormal_us(rng, 15.0, 1.0);
    if greeting && n > 0 {
        out.push((t, MsgKind::Ai));
        t += lognormal_us(rng, 40.0, 1.0);
    }
    while out.len() < n {
        out.push((t, MsgKind::Human));
        if out.len() < n && rng.random_bool(0.03) {
            t += SEC + lognormal_us(rng, 1.0, 0.5);
            out.push((t, MsgKind::System));
        }
        if out.len() < n {
            t += SEC + lognormal_us(rng, 5.0, 0.7);
            out.push((t, MsgKind::Ai));
        }
        let u: f64 = rng.random();
        t += if u < 0.85 {
            lognormal_us(rng, 45.0, 0.9)
        } else if u < 0.97 {
            lognormal_us(rng, 1800.0, 1.0)
        } else {
            lognormal_us(rng, 86_400.0, 0.8)
        };
    }
}

/// Relative activity at a local hour of day and day of week (0 = Monday).
pub(super) fn rhythm(hour: usize, weekday: usize) -> f64 {
    const HOURS: [f64; 24] = [
        0.12, 0.08, 0.06, 0.06, 0.08, 0.18, 0.38, 0.7, 1.0, 1.2, 1.3, 1.3, 1.2, 1.2, 1.3, 1.3, 1.2, 1.1, 1.0, 0.95,
        0.85, 0.6, 0.4, 0.22,
    ];
    let week = match weekday {
        5 => 0.6,
        6 => 0.5,
        _ => 1.0,
    };
    HOURS[hour % 24] * week
}

/// (hour of day, weekday with Monday = 0) of an instant shifted by `tz` hours.
pub(super) fn local_hour_weekday(t: i64, tz: i64) -> (usize, usize) {
    let t = t + tz * HOUR;
    let days = t.div_euclid(DAY);
    ((t.rem_euclid(DAY) / HOUR) as usize, (days + 3).rem_euclid(7) as usize)
}

/// A team's tags by category; `version[k - 1]` is the tag "v{k}".
#[derive(Debug, Clone, Default)]
pub(super) struct TeamTags {
    pub(super) user: Vec<i64>,
    pub(super) bot_response: Vec<i64>,
    pub(super) safety: Vec<i64>,
    pub(super) version: Vec<i64>,
    pub(super) rating: Vec<i64>,
    pub(super) error: Vec<i64>,
    pub(super) media: Vec<i64>,
}

fn some_of(rng: &mut SmallRng, tags: &[i64], out: &mut Vec<(i64, i64)>, delay: i64) {
    if !tags.is_empty() {
        out.push((*words::pick(rng, tags), delay));
    }
}

/// The tags a message gets (tag id, delay after the message), at most one
/// per category, so never the same tag twice. `versions` = published
/// versions of its chatbot at the time (0 = none, or no chatbot).
pub(super) fn message_tags(
    rng: &mut SmallRng,
    tags: &TeamTags,
    kind: MsgKind,
    versions: usize,
    out: &mut Vec<(i64, i64)>,
) {
    out.clear();
    let quick = SEC + lognormal_us(rng, 2.0, 0.5);
    match kind {
        MsgKind::Ai => {
            if versions > 0
                && rng.random_bool(0.85)
                && let Some(&v) = tags.version.get(versions - 1)
            {
                out.push((v, quick));
            }
            if rng.random_bool(0.04) && tags.rating.len() >= 2 {
                let up = rng.random_bool(0.7);
                out.push((tags.rating[usize::from(!up)], lognormal_us(rng, 120.0, 1.5)));
            }
            if rng.random_bool(0.03) {
                some_of(rng, &tags.bot_response, out, quick);
            }
            if rng.random_bool(0.01) {
                some_of(rng, &tags.error, out, quick);
            }
            if rng.random_bool(0.005) {
                some_of(rng, &tags.media, out, quick);
            }
        }
        MsgKind::Human => {
            if rng.random_bool(0.02) && !tags.media.is_empty() {
                let u: f64 = rng.random();
                let i = if u < 0.75 {
                    0
                } else if u < 0.95 {
                    1
                } else {
                    2
                };
                out.push((tags.media[i.min(tags.media.len() - 1)], quick));
            }
        }
        MsgKind::System => return,
    }
    if rng.random_bool(0.008) {
        some_of(rng, &tags.safety, out, quick);
    }
    if rng.random_bool(0.005) {
        let later = lognormal_us(rng, 86_400.0, 1.0);
        some_of(rng, &tags.user, out, later);
    }
}

/// Distinct user-defined tags for a reviewed chat (1..=3).
pub(super) fn chat_tags(rng: &mut SmallRng, tags: &TeamTags, out: &mut Vec<i64>) {
    out.clear();
    let want = rng.random_range(1..=3).min(tags.user.len());
    while out.len() < want {
        let t = *words::pick(rng, &tags.user);
        if !out.contains(&t) {
            out.push(t);
        }
    }
}

/// Writes a new participant; returns its id.
#[allow(clippy::too_many_arguments)]
pub(super) fn new_participant(
    out: &mut Out,
    ids: &mut Ids,
    rng: &mut SmallRng,
    team_id: i64,
    counter: u64,
    plat: Plat,
    created: i64,
    scratch: &mut String,
    uuids: Uuids,
) -> i64 {
    let id = ids.take(PARTICIPANTS);
    let person = words::person(rng);
    let name = if plat != Plat::Evaluations && rng.random_bool(0.4) {
        String::new()
    } else if rng.random_bool(0.7) {
        format!("{} {}", person.0, person.1)
    } else {
        person.0.to_string()
    };
    let style = plat.id_style(rng);
    words::identifier(scratch, style, team_id, counter, person, rng, uuids);
    // OCS backfilled a platform for old participants; a few stayed empty.
    let platform = if rng.random_bool(0.01) { "" } else { plat.as_str() };
    out.buf(PARTICIPANTS).push(&[
        V::I(id),
        V::I(team_id),
        V::S(&name),
        V::S(scratch),
        V::S(platform),
        V::T(created),
    ]);
    id
}

/// One session row.
#[derive(Debug, Clone, Copy)]
pub(super) struct SessionRow<'a> {
    pub(super) id: i64,
    pub(super) team_id: i64,
    pub(super) participant_id: i64,
    pub(super) experiment_id: i64,
    pub(super) chat_id: i64,
    pub(super) channel_id: Option<i64>,
    pub(super) status: &'a str,
    pub(super) created: i64,
    pub(super) ended: Option<i64>,
    pub(super) platform: Option<&'a str>,
}

pub(super) fn push_session(out: &mut Out, rng: &mut SmallRng, uuids: Uuids, s: &SessionRow<'_>) {
    let mut external_id = String::with_capacity(36);
    words::push_uuid(&mut external_id, uuids.next(rng, UuidOf::Session, s.id));
    out.buf(SESSIONS).push(&[
        V::I(s.id),
        V::I(s.team_id),
        V::S(&external_id),
        V::I(s.participant_id),
        V::I(s.experiment_id),
        V::I(s.chat_id),
        s.channel_id.map_or(V::N, V::I),
        V::S(s.status),
        V::T(s.created),
        s.ended.map_or(V::N, V::T),
        s.platform.map_or(V::N, V::S),
    ]);
}

pub(super) fn push_chat(out: &mut Out, id: i64, team_id: i64, created: i64) {
    out.buf(CHATS).push_created(&[V::I(id), V::I(team_id)], created);
}

pub(super) fn push_message(out: &mut Out, id: i64, chat_id: i64, kind: MsgKind, t: i64) {
    out.buf(MESSAGES)
        .push(&[V::I(id), V::I(chat_id), V::S(kind.as_str()), V::T(t)]);
}

pub(super) fn push_tagged(
    out: &mut Out,
    ids: &mut Ids,
    team_id: i64,
    tag_id: i64,
    content_type: i64,
    object_id: i64,
    created: i64,
) {
    let id = ids.take(TAGGED);
    out.buf(TAGGED).push_created(
        &[
            V::I(id),
            V::I(team_id),
            V::I(tag_id),
            V::I(content_type),
            V::I(object_id),
        ],
        created,
    );
}
