//! The synthetic OCS world: teams, chatbots, channels and tags decided up
//! front, then a year of sessions simulated hour by hour in time order, with
//! the messages of all open conversations merged through a heap so that
//! message ids follow time.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Poisson};

use super::buf::{CHANNELS, CHATS, CONTENT_TYPES, EXPERIMENTS, Ids, MESSAGES, Out, SESSIONS, TAGS, TEAMS, V};
use super::sim::{
    self, DAY, HOUR, MIN, MsgKind, PLAT_COUNT, Plat, SEC, SessionRow, TeamTags, lognormal_us, message_tags,
};
use super::words::{self, Uuids, pick};
use super::{BatchSink, GenOptions};
use crate::error::Result;

/// Per-chatbot channel platforms: (platform, chance a chatbot has it,
/// share of traffic it draws when present).
const BOT_PLATS: [(Plat, f64, f64); 8] = [
    (Plat::Whatsapp, 0.45, 30.0),
    (Plat::Telegram, 0.35, 15.0),
    (Plat::Facebook, 0.12, 6.0),
    (Plat::Slack, 0.12, 6.0),
    (Plat::Sureadhere, 0.06, 5.0),
    (Plat::CommcareConnect, 0.10, 6.0),
    (Plat::EmbeddedWidget, 0.25, 10.0),
    (Plat::Email, 0.08, 3.0),
];
const WEB_WEIGHT: f64 = 40.0;
const API_WEIGHT: f64 = 8.0;
const MATRIX_WEIGHT: f64 = 0.08;
/// Most sessions one participant is planned to have.
const MAX_SESSIONS: u32 = 2000;

/// An exponential draw with the given mean (microseconds), at least a minute.
fn exponential_us(rng: &mut SmallRng, mean: i64) -> i64 {
    let u: f64 = rng.random();
    MIN + (-(1.0 - u).ln() * mean as f64) as i64
}

/// Rare data defects, forced once each early on and then random.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anomaly {
    /// A chat with messages and no session.
    OrphanChat,
    /// A session on a channel with a platform OCS does not know.
    MatrixChannel,
    /// session.platform holds a value OCS does not know.
    UnknownSessionPlatform,
    EndedBeforeCreated,
    MessageBeforeSession,
    /// A session and chat deleted, leaving a tag on the chat behind.
    DeletedSession,
    /// A message deleted, leaving its tags behind.
    DeletedMessage,
    /// A chat tagged with another team's tag.
    TagTeamMismatch,
}

/// (anomaly, chance per session slot once the forced one is out).
const ANOMALIES: [(Anomaly, f64); 8] = [
    (Anomaly::OrphanChat, 0.002),
    (Anomaly::MatrixChannel, 0.0),
    (Anomaly::UnknownSessionPlatform, 0.0003),
    (Anomaly::EndedBeforeCreated, 0.0005),
    (Anomaly::MessageBeforeSession, 0.0005),
    (Anomaly::DeletedSession, 0.0005),
    (Anomaly::DeletedMessage, 0.0003),
    (Anomaly::TagTeamMismatch, 0.0002),
];

const FLAG_DELETED: u8 = 1;
const FLAG_FORCE_TAG: u8 = 2;
const NO_BOT: u32 = u32::MAX;

/// A participant due back: (due, participant id, sessions left after that
/// one, mean gap).
type Return = (i64, i64, u32, i64);

/// A channel serving sessions created in `[from, until)`.
#[derive(Debug, Clone, Copy)]
struct Span {
    id: i64,
    from: i64,
    until: i64,
}

fn span_at(spans: &[Span], t: i64) -> Option<i64> {
    spans.iter().find(|s| s.from <= t && t < s.until).map(|s| s.id)
}

#[derive(Debug)]
struct Team {
    id: i64,
    share: f64,
    tz: i64,
    created: i64,
    active_from: i64,
    bots: Vec<usize>,
    bot_cum: Vec<f64>,
    web: Vec<Span>,
    api: Vec<Span>,
    eval: i64,
    tags: TeamTags,
    /// Participants created so far (makes identifiers unique).
    counter: u64,
    /// Per platform: participants due to come back, as (due, participant id,
    /// sessions left after that one, mean gap).
    pools: Vec<BinaryHeap<Reverse<Return>>>,
}

#[derive(Debug)]
struct Bot {
    id: i64,
    team: usize,
    name: &'static str,
    created: i64,
    /// Archived at (sessions stop), or `i64::MAX`.
    until: i64,
    versions: Vec<i64>,
    channels: Vec<(Plat, Vec<Span>)>,
}

/// A message waiting for its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    t: i64,
    seq: u64,
    chat: i64,
    team: u16,
    bot: u32,
    kind: MsgKind,
    flags: u8,
}

/// A channel row before ids are given out in creation order.
#[derive(Debug)]
struct ChannelSpec {
    created: i64,
    team: usize,
    bot: Option<usize>,
    name: String,
    plat: Plat,
    deleted: bool,
}

#[derive(Debug)]
pub(super) struct Gen {
    rng: SmallRng,
    out: Out,
    ids: Ids,
    start: i64,
    end: i64,
    sessions_target: f64,
    session_platform: bool,
    teams: Vec<Team>,
    bots: Vec<Bot>,
    ct_chat: i64,
    ct_msg: i64,
    matrix_channel: i64,
    heap: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    slot_no: usize,
    script: Vec<(i64, MsgKind)>,
    tag_scratch: Vec<(i64, i64)>,
    chat_scratch: Vec<i64>,
    text: String,
    arrivals: Vec<(f64, Plat, Option<i64>)>,
}

impl Gen {
    pub(super) fn new(opts: &GenOptions) -> Self {
        let end = opts.end.timestamp_micros();
        let mut rng = SmallRng::seed_from_u64(words::mix64(opts.seed));
        let mut ids = Ids::after([0; 10]);
        // Some chats were deleted long ago: chat ids do not start where
        // session ids do.
        ids.next[CHATS] += rng.random_range(1..50);
        Gen {
            rng,
            out: Out::new(),
            ids,
            start: end - opts.scale.days() * DAY,
            end,
            sessions_target: opts.scale.messages() as f64 / 10.0,
            session_platform: opts.session_platform,
            teams: Vec::new(),
            bots: Vec::new(),
            ct_chat: 0,
            ct_msg: 0,
            matrix_channel: 0,
            heap: BinaryHeap::new(),
            seq: 0,
            slot_no: 0,
            script: Vec::new(),
            tag_scratch: Vec::new(),
            chat_scratch: Vec::new(),
            text: String::new(),
            arrivals: Vec::new(),
        }
    }

    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo { lo } else { self.rng.random_range(lo..hi) }
    }

    /// Teams, content types, chatbots, channels and tags.
    pub(super) fn setup(&mut self, team_count: usize) {
        self.teams(team_count);
        self.content_types();
        self.chatbots();
        self.channels();
        self.tags();
    }

    fn teams(&mut self, n: usize) {
        const TZS: [i64; 20] = [3, 2, 5, 1, 0, -5, 8, 3, 2, 1, 5, 0, 7, -3, 2, 3, 1, 0, 9, -6];
        let mut names: Vec<&str> = words::TEAM_NAMES.to_vec();
        names.shuffle(&mut self.rng);
        let tail: f64 = (1..n).map(|i| (i as f64).powf(-1.3)).sum();
        let window = self.end - self.start;
        let mut slugs: Vec<String> = Vec::new();
        let mut rows: Vec<(i64, usize, &str, String)> = Vec::new();
        for (i, name) in names.into_iter().take(n).enumerate() {
            let share = if i == 0 {
                0.5
            } else {
                0.5 * (i as f64).powf(-1.3) / tail
            };
            let (created, active_from) = if i == 0 || self.rng.random_bool(0.5) {
                (self.start - self.rng.random_range(10..600) * DAY, self.start)
            } else {
                let from = self.start + (self.rng.random_range(0.0..0.6) * window as f64) as i64;
                (from - self.rng.random_range(DAY..30 * DAY), from)
            };
            let mut slug = words::slugify(name);
            if slugs.contains(&slug) {
                slug = format!("{slug}-{}", i + 1);
            }
            slugs.push(slug.clone());
            rows.push((created, i, name, slug));
            self.teams.push(Team {
                id: 0,
                share,
                tz: TZS[i % TZS.len()],
                created,
                active_from,
                bots: Vec::new(),
                bot_cum: Vec::new(),
                web: Vec::new(),
                api: Vec::new(),
                eval: 0,
                tags: TeamTags::default(),
                counter: 0,
                pools: (0..PLAT_COUNT).map(|_| BinaryHeap::new()).collect(),
            });
        }
        // Ids in creation order: the biggest team is not necessarily the first.
        rows.sort_unstable();
        for (created, i, name, slug) in rows {
            let id = self.ids.take(TEAMS);
            self.teams[i].id = id;
            self.out
                .buf(TEAMS)
                .push_created(&[V::I(id), V::S(name), V::S(&slug)], created);
        }
    }

    /// Django's content types, in a seeded order starting at a seeded id, so
    /// nobody can hard-code the ids of ('chat','chat') and ('chat','chatmessage').
    fn content_types(&mut self) {
        let mut cts: Vec<(&str, &str)> = vec![
            ("admin", "logentry"),
            ("auth", "permission"),
            ("auth", "group"),
            ("auth", "user"),
            ("contenttypes", "contenttype"),
            ("sessions", "session"),
            ("teams", "team"),
            ("teams", "membership"),
            ("experiments", "experiment"),
            ("experiments", "participant"),
            ("experiments", "experimentsession"),
            ("bot_channels", "experimentchannel"),
            ("chat", "chat"),
            ("chat", "chatmessage"),
            ("annotations", "tag"),
            ("annotations", "customtaggeditem"),
            ("pipelines", "pipeline"),
        ];
        cts.shuffle(&mut self.rng);
        let mut id = self.rng.random_range(3..60);
        for (app, model) in cts {
            match (app, model) {
                ("chat", "chat") => self.ct_chat = id,
                ("chat", "chatmessage") => self.ct_msg = id,
                _ => {}
            }
            self.out.buf(CONTENT_TYPES).push(&[V::I(id), V::S(app), V::S(model)]);
            id += 1 + i64::from(self.rng.random_bool(0.15));
        }
    }

    fn chatbots(&mut self) {
        // (created, order, bot index, version number or 0 for the chatbot row)
        let mut events: Vec<(i64, usize, usize, usize)> = Vec::new();
        for ti in 0..self.teams.len() {
            let (share, created, active_from) = {
                let t = &self.teams[ti];
                (t.share, t.created, t.active_from)
            };
            // Small data sets have fewer chatbots (tiny: about 10 in the biggest team).
            let size = (self.sessions_target / 30_000.0).powf(0.25).min(1.0);
            let count = ((3.0 + 22.0 * size * (share / 0.5).powf(0.7)).round() as i64 + self.rng.random_range(-1..=1))
                .clamp(3, 25) as usize;
            let mut names: Vec<&'static str> = words::CHATBOT_NAMES.to_vec();
            names.shuffle(&mut self.rng);
            let live_from = active_from.max(self.start);
            let mut cum = 0.0;
            for (k, name) in names.into_iter().take(count).enumerate() {
                let bot_created = if k == 0 {
                    created + self.between(0, (active_from - created) / 2)
                } else if self.rng.random_bool(0.6) || live_from >= self.end - 7 * DAY {
                    self.between(created, live_from)
                } else {
                    self.between(live_from, self.end - 7 * DAY)
                };
                let until = if k > 0 && self.rng.random_bool(0.1) {
                    let lo = (bot_created + DAY).max(self.start);
                    self.between(lo, self.end)
                } else {
                    i64::MAX
                };
                let n_versions = {
                    let u: f64 = self.rng.random();
                    [0.25, 0.5, 0.7, 0.85, 0.95].iter().position(|&c| u < c).unwrap_or(5)
                };
                let last = until.min(self.end) - HOUR;
                let mut versions: Vec<i64> = (0..n_versions)
                    .map(|_| self.between(bot_created + HOUR, last))
                    .collect();
                versions.sort_unstable();
                let bi = self.bots.len();
                events.push((bot_created, events.len(), bi, 0));
                for (v, &vt) in versions.iter().enumerate() {
                    events.push((vt, events.len(), bi, v + 1));
                }
                cum += ((k + 1) as f64).powf(-1.2);
                self.teams[ti].bots.push(bi);
                self.teams[ti].bot_cum.push(cum);
                self.bots.push(Bot {
                    id: 0,
                    team: ti,
                    name,
                    created: bot_created,
                    until,
                    versions,
                    channels: Vec::new(),
                });
            }
        }
        events.sort_unstable();
        for (t, _, bi, version) in events {
            let id = self.ids.take(EXPERIMENTS);
            let bot = &mut self.bots[bi];
            let team_id = self.teams[bot.team].id;
            if version == 0 {
                bot.id = id;
                let archived = bot.until != i64::MAX;
                self.out.buf(EXPERIMENTS).push(&[
                    V::I(id),
                    V::I(team_id),
                    V::S(bot.name),
                    V::N,
                    V::B(archived),
                    V::T(t),
                ]);
            } else {
                self.out.buf(EXPERIMENTS).push(&[
                    V::I(id),
                    V::I(team_id),
                    V::S(bot.name),
                    V::I(bot.id),
                    V::B(false),
                    V::T(t),
                ]);
            }
        }
    }

    /// Team-wide web / api / evaluations channels (an old, soft-deleted one
    /// now and then), per-chatbot channels, and the one 'matrix' channel.
    fn channels(&mut self) {
        let mut specs: Vec<ChannelSpec> = Vec::new();
        // Where each spec's id goes: (team, which) for team-wide channels,
        // (bot, channel index, span index) for chatbot channels.
        enum Slot {
            Web(usize, usize),
            Api(usize, usize),
            Eval(usize),
            Bot(usize, usize, usize),
            Matrix(usize, usize, usize),
        }
        let mut slots: Vec<Slot> = Vec::new();
        let half = self.start + (self.end - self.start) / 2;
        for ti in 0..self.teams.len() {
            let created = self.teams[ti].created;
            for plat in [Plat::Web, Plat::Api] {
                let p_old = if plat == Plat::Web { 0.3 } else { 0.2 };
                let lo = created.max(self.start) + DAY;
                let mut spans = Vec::new();
                if self.rng.random_bool(p_old) && lo < half {
                    let d = self.between(lo, half);
                    spans.push((created, i64::MIN, d, true));
                    spans.push((d, d, i64::MAX, false));
                } else {
                    spans.push((created, i64::MIN, i64::MAX, false));
                }
                for (k, (c, from, until, deleted)) in spans.into_iter().enumerate() {
                    specs.push(ChannelSpec {
                        created: c,
                        team: ti,
                        bot: None,
                        name: plat.label().to_string(),
                        plat,
                        deleted,
                    });
                    let span = Span { id: 0, from, until };
                    let team = &mut self.teams[ti];
                    if plat == Plat::Web {
                        team.web.push(span);
                        slots.push(Slot::Web(ti, k));
                    } else {
                        team.api.push(span);
                        slots.push(Slot::Api(ti, k));
                    }
                }
            }
            specs.push(ChannelSpec {
                created: created + self.rng.random_range(HOUR..30 * DAY),
                team: ti,
                bot: None,
                name: Plat::Evaluations.label().to_string(),
                plat: Plat::Evaluations,
                deleted: false,
            });
            slots.push(Slot::Eval(ti));
        }
        for bi in 0..self.bots.len() {
            let (bot_created, team) = (self.bots[bi].created, self.bots[bi].team);
            for (plat, p, _) in BOT_PLATS {
                if !self.rng.random_bool(p) {
                    continue;
                }
                let c = bot_created + self.rng.random_range(MIN..3 * DAY);
                let lo = c.max(self.start) + DAY;
                let mut spans = Vec::new();
                if self.rng.random_bool(0.15) && lo < self.end - DAY {
                    let d = self.between(lo, self.end - DAY);
                    spans.push((c, c, d, true));
                    if self.rng.random_bool(0.6) {
                        spans.push((d, d, i64::MAX, false));
                    }
                } else {
                    spans.push((c, c, i64::MAX, false));
                }
                let ci = self.bots[bi].channels.len();
                let mut list = Vec::new();
                for (k, (created, from, until, deleted)) in spans.into_iter().enumerate() {
                    specs.push(ChannelSpec {
                        created,
                        team,
                        bot: Some(bi),
                        name: format!("{} {}", self.bots[bi].name, plat.label()),
                        plat,
                        deleted,
                    });
                    slots.push(Slot::Bot(bi, ci, k));
                    list.push(Span { id: 0, from, until });
                }
                self.bots[bi].channels.push((plat, list));
            }
        }
        // A legacy integration OCS does not know: 'matrix' on the biggest team's top chatbot.
        let bi = self.teams[0].bots[0];
        let c = self.bots[bi].created + HOUR;
        let ci = self.bots[bi].channels.len();
        specs.push(ChannelSpec {
            created: c,
            team: 0,
            bot: Some(bi),
            name: format!("{} Matrix bridge", self.bots[bi].name),
            plat: Plat::Matrix,
            deleted: false,
        });
        slots.push(Slot::Matrix(bi, ci, 0));
        self.bots[bi].channels.push((
            Plat::Matrix,
            vec![Span {
                id: 0,
                from: c,
                until: i64::MAX,
            }],
        ));

        let mut order: Vec<usize> = (0..specs.len()).collect();
        order.sort_by_key(|&i| (specs[i].created, i));
        for i in order {
            let id = self.ids.take(CHANNELS);
            let s = &specs[i];
            let team_id = self.teams[s.team].id;
            let experiment = s.bot.map_or(V::N, |b| V::I(self.bots[b].id));
            self.out.buf(CHANNELS).push_created(
                &[
                    V::I(id),
                    V::I(team_id),
                    V::S(&s.name),
                    experiment,
                    V::S(s.plat.as_str()),
                    V::B(s.deleted),
                ],
                s.created,
            );
            match slots[i] {
                Slot::Web(t, k) => self.teams[t].web[k].id = id,
                Slot::Api(t, k) => self.teams[t].api[k].id = id,
                Slot::Eval(t) => self.teams[t].eval = id,
                Slot::Bot(b, c, k) => self.bots[b].channels[c].1[k].id = id,
                Slot::Matrix(b, c, k) => {
                    self.bots[b].channels[c].1[k].id = id;
                    self.matrix_channel = id;
                }
            }
        }
    }

    /// Every category for every team; ids in creation order.
    fn tags(&mut self) {
        // (created, order, team, category index, position, name)
        let mut specs: Vec<(i64, usize, usize, usize, usize, String)> = Vec::new();
        for ti in 0..self.teams.len() {
            let created = self.teams[ti].created;
            let max_versions = self.teams[ti]
                .bots
                .iter()
                .map(|&b| self.bots[b].versions.len())
                .max()
                .unwrap_or(0)
                .max(1);
            let mut user: Vec<&str> = words::USER_TAGS.to_vec();
            user.shuffle(&mut self.rng);
            user.truncate(self.rng.random_range(5..=12));
            let mut bot_response: Vec<&str> = words::BOT_RESPONSE_TAGS.to_vec();
            bot_response.shuffle(&mut self.rng);
            bot_response.truncate(self.rng.random_range(3..=5));
            let versions: Vec<String> = (1..=max_versions).map(|k| format!("v{k}")).collect();
            let lists: [Vec<String>; 7] = [
                user.iter().map(|s| s.to_string()).collect(),
                bot_response.iter().map(|s| s.to_string()).collect(),
                words::SAFETY_TAGS.iter().map(|s| s.to_string()).collect(),
                versions,
                words::RATING_TAGS.iter().map(|s| s.to_string()).collect(),
                words::ERROR_TAGS.iter().map(|s| s.to_string()).collect(),
                words::MEDIA_TAGS.iter().map(|s| s.to_string()).collect(),
            ];
            for (cat, list) in lists.into_iter().enumerate() {
                for (pos, name) in list.into_iter().enumerate() {
                    let t = created + self.rng.random_range(MIN..60 * DAY);
                    specs.push((t, specs.len(), ti, cat, pos, name));
                }
            }
        }
        specs.sort_unstable();
        const CATEGORIES: [&str; 7] = [
            "",
            "bot_response",
            "safety_layer_response",
            "experiment_version",
            "response_rating",
            "error",
            "media_type",
        ];
        for (t, _, ti, cat, pos, name) in specs {
            let id = self.ids.take(TAGS);
            let team = &mut self.teams[ti];
            self.out.buf(TAGS).push_created(
                &[
                    V::I(id),
                    V::I(team.id),
                    V::S(&name),
                    V::S(CATEGORIES[cat]),
                    V::B(cat != 0),
                ],
                t,
            );
            let list = match cat {
                0 => &mut team.tags.user,
                1 => &mut team.tags.bot_response,
                2 => &mut team.tags.safety,
                3 => &mut team.tags.version,
                4 => &mut team.tags.rating,
                5 => &mut team.tags.error,
                _ => &mut team.tags.media,
            };
            if list.len() <= pos {
                list.resize(pos + 1, 0);
            }
            list[pos] = id;
        }
    }

    /// Runs the year: sessions hour by hour, messages as their time comes.
    pub(super) async fn run<S: BatchSink>(&mut self, sink: &mut S) -> Result<BTreeMap<String, u64>> {
        let hours = ((self.end - self.start) + HOUR - 1) / HOUR;
        let weight = |team: &Team, h: i64, hour_start: i64| -> f64 {
            if hour_start < team.active_from {
                return 0.0;
            }
            let (hour, weekday) = sim::local_hour_weekday(hour_start, team.tz);
            sim::rhythm(hour, weekday) * (1.0 + 0.6 * h as f64 / hours as f64)
        };
        let z: Vec<f64> = self
            .teams
            .iter()
            .map(|team| (0..hours).map(|h| weight(team, h, self.start + h * HOUR)).sum())
            .collect();
        let mut slots: Vec<(i64, usize)> = Vec::new();
        for h in 0..hours {
            let h0 = self.start + h * HOUR;
            let h1 = (h0 + HOUR).min(self.end);
            slots.clear();
            for (ti, team) in self.teams.iter().enumerate() {
                let w = weight(team, h, h0);
                if w <= 0.0 || z[ti] <= 0.0 {
                    continue;
                }
                let lambda = self.sessions_target * team.share * w / z[ti];
                let k = Poisson::new(lambda).map_or(0.0, |d| d.sample(&mut self.rng)) as usize;
                for _ in 0..k {
                    slots.push((self.rng.random_range(h0..h1), ti));
                }
            }
            slots.sort_unstable();
            for &(t, ti) in &slots {
                self.drain(t);
                self.slot(t, ti);
            }
            self.out.flush_full(sink).await?;
        }
        self.drain(i64::MAX);
        self.out.flush_all(sink).await
    }

    fn slot(&mut self, t: i64, team: usize) {
        let ordinal = self.slot_no;
        self.slot_no += 1;
        let anomaly = if ordinal >= 3 && (ordinal - 3).is_multiple_of(7) && (ordinal - 3) / 7 < ANOMALIES.len() {
            Some(ANOMALIES[(ordinal - 3) / 7].0)
        } else {
            let mut u: f64 = self.rng.random();
            ANOMALIES.iter().find_map(|&(a, p)| {
                u -= p;
                (u < 0.0).then_some(a)
            })
        };
        match anomaly {
            Some(Anomaly::OrphanChat) => self.orphan_chat(t, team),
            Some(Anomaly::DeletedSession) => self.deleted_session(t, team),
            other => self.session(t, team, other),
        }
    }

    fn pick_bot(&mut self, ti: usize, t: i64) -> usize {
        let team = &self.teams[ti];
        let total = team.bot_cum.last().copied().unwrap_or(0.0);
        for _ in 0..8 {
            let u = self.rng.random_range(0.0..total);
            let k = team.bot_cum.partition_point(|&c| c <= u).min(team.bots.len() - 1);
            let b = &self.bots[team.bots[k]];
            if b.created <= t && t < b.until {
                return team.bots[k];
            }
        }
        team.bots[0]
    }

    /// How the participant arrives: platform and channel.
    fn pick_arrival(&mut self, ti: usize, bi: usize, t: i64) -> (Plat, Option<i64>) {
        let team = &self.teams[ti];
        let web = span_at(&team.web, t);
        self.arrivals.clear();
        self.arrivals.push((WEB_WEIGHT, Plat::Web, web));
        self.arrivals.push((API_WEIGHT, Plat::Api, span_at(&team.api, t)));
        for (plat, spans) in &self.bots[bi].channels {
            if let Some(id) = span_at(spans, t) {
                let w = BOT_PLATS
                    .iter()
                    .find(|(p, _, _)| p == plat)
                    .map_or(MATRIX_WEIGHT, |(_, _, w)| *w);
                self.arrivals.push((w, *plat, Some(id)));
            }
        }
        let total: f64 = self.arrivals.iter().map(|a| a.0).sum();
        let mut u = self.rng.random_range(0.0..total);
        let mut choice = self.arrivals[0];
        for a in &self.arrivals {
            if u < a.0 {
                choice = *a;
                break;
            }
            u -= a.0;
        }
        let (plat, mut channel) = (choice.1, choice.2);
        if plat == Plat::Api && self.rng.random_bool(0.1) {
            channel = web; // API sessions created against the web channel
        }
        if matches!(plat, Plat::Web | Plat::Api) && self.rng.random_bool(0.03) {
            channel = None;
        }
        (plat, channel)
    }

    /// The participant of a new session: someone due to come back on this
    /// platform, else a newcomer who gets a planned number of sessions (half
    /// just one, else a heavy-tailed count, staff running evaluations many)
    /// spread over a lifetime that grows with it.
    fn participant(&mut self, ti: usize, plat: Plat, t: i64) -> i64 {
        let pool = &mut self.teams[ti].pools[plat.idx()];
        if let Some(&Reverse((due, id, left, gap))) = pool.peek()
            && due <= t
        {
            pool.pop();
            if left > 0 {
                let next = t + exponential_us(&mut self.rng, gap);
                pool.push(Reverse((next, id, left - 1, gap)));
            }
            return id;
        }
        let team = &mut self.teams[ti];
        let counter = team.counter;
        team.counter += 1;
        let created = t - self.rng.random_range(0..30 * SEC);
        let id = sim::new_participant(
            &mut self.out,
            &mut self.ids,
            &mut self.rng,
            team.id,
            counter,
            plat,
            created,
            &mut self.text,
            Uuids::Random,
        );
        let sessions = if plat == Plat::Evaluations {
            1 + sim::lognormal(&mut self.rng, 30.0, 1.0) as u32
        } else if self.rng.random_bool(0.5) {
            1
        } else {
            1 + (sim::lognormal(&mut self.rng, 4.0, 1.2).ceil() as u32).min(MAX_SESSIONS)
        };
        if sessions > 1 {
            // Shorter windows (tiny) compress lifetimes alike.
            let window = (self.end - self.start) as f64;
            let median = 3.0 * DAY as f64 * window / (365.0 * DAY as f64);
            let lifetime = (f64::from(sessions).powf(0.6) * sim::lognormal(&mut self.rng, median, 0.8)).min(window);
            let gap = (lifetime / f64::from(sessions)) as i64;
            let next = t + exponential_us(&mut self.rng, gap);
            team.pools[plat.idx()].push(Reverse((next, id, sessions - 2, gap)));
        }
        id
    }

    fn session(&mut self, t: i64, ti: usize, anomaly: Option<Anomaly>) {
        let matrix = anomaly == Some(Anomaly::MatrixChannel);
        let ti = if matrix { 0 } else { ti };
        let bi = if matrix {
            self.teams[0].bots[0]
        } else {
            self.pick_bot(ti, t)
        };
        let eval = anomaly.is_none() && self.rng.random_bool(0.02);
        let (plat, channel) = if eval {
            (Plat::Evaluations, Some(self.teams[ti].eval))
        } else if matrix {
            (Plat::Matrix, Some(self.matrix_channel))
        } else {
            self.pick_arrival(ti, bi, t)
        };
        let participant = self.participant(ti, plat, t);
        let mut status = sim::pick_status(&mut self.rng);
        if anomaly.is_some() && matches!(status, "setup" | "pending" | "pending-pre-survey") {
            status = "complete";
        }
        let mut n = sim::message_count(&mut self.rng, status);
        if anomaly.is_some() {
            n = n.max(2);
        }
        let greeting = status == "setup" || self.rng.random_bool(0.15);
        sim::script(&mut self.rng, t, n, greeting, &mut self.script);
        if anomaly == Some(Anomaly::MessageBeforeSession) {
            self.script[0].0 = t - SEC - lognormal_us(&mut self.rng, 600.0, 1.0);
        }
        let end = self.end;
        self.script.retain(|m| m.0 < end);
        let last = self.script.iter().map(|m| m.0).max().unwrap_or(t).max(t);
        let mut ended = sim::ended_at(&mut self.rng, status, last);
        if ended.is_some_and(|e| e >= end) {
            ended = None;
            if status == "complete" {
                status = "active";
            }
        }
        if anomaly == Some(Anomaly::EndedBeforeCreated) {
            status = "complete";
            ended = Some(t - MIN - lognormal_us(&mut self.rng, 1800.0, 1.0));
        }
        let platform = if !self.session_platform {
            None
        } else if matches!(anomaly, Some(Anomaly::UnknownSessionPlatform | Anomaly::MatrixChannel)) {
            Some(Plat::Matrix.as_str())
        } else if self.rng.random_bool(0.7) {
            Some(plat.as_str())
        } else {
            None
        };
        let team_id = self.teams[ti].id;
        let id = self.ids.take(SESSIONS);
        let chat = self.ids.take(CHATS);
        sim::push_chat(&mut self.out, chat, team_id, t);
        sim::push_session(
            &mut self.out,
            &mut self.rng,
            Uuids::Random,
            &SessionRow {
                id,
                team_id,
                participant_id: participant,
                experiment_id: self.bots[bi].id,
                chat_id: chat,
                channel_id: channel,
                status,
                created: t,
                ended,
                platform,
            },
        );
        let mismatch = anomaly == Some(Anomaly::TagTeamMismatch);
        if !self.script.is_empty() && (mismatch || self.rng.random_bool(0.1)) {
            let when = (last + lognormal_us(&mut self.rng, 86_400.0, 1.0)).min(end - SEC);
            sim::chat_tags(&mut self.rng, &self.teams[ti].tags, &mut self.chat_scratch);
            for &tag in &self.chat_scratch {
                sim::push_tagged(&mut self.out, &mut self.ids, team_id, tag, self.ct_chat, chat, when);
            }
            if mismatch {
                let other = &self.teams[(ti + 1) % self.teams.len()].tags.user;
                let tag = *pick(&mut self.rng, other);
                sim::push_tagged(&mut self.out, &mut self.ids, team_id, tag, self.ct_chat, chat, when);
            }
        }
        for (i, &(mt, kind)) in self.script.iter().enumerate() {
            let flags = if i == 0 && anomaly == Some(Anomaly::DeletedMessage) {
                FLAG_DELETED | FLAG_FORCE_TAG
            } else {
                0
            };
            self.seq += 1;
            self.heap.push(Reverse(Pending {
                t: mt,
                seq: self.seq,
                chat,
                team: ti as u16,
                bot: bi as u32,
                kind,
                flags,
            }));
        }
    }

    /// A chat with messages but no session (e.g. a pipeline test chat).
    fn orphan_chat(&mut self, t: i64, ti: usize) {
        let chat = self.ids.take(CHATS);
        sim::push_chat(&mut self.out, chat, self.teams[ti].id, t);
        let n = sim::message_count(&mut self.rng, "active");
        let greeting = self.rng.random_bool(0.3);
        sim::script(&mut self.rng, t, n, greeting, &mut self.script);
        for &(mt, kind) in &self.script {
            if mt >= self.end {
                continue;
            }
            self.seq += 1;
            self.heap.push(Reverse(Pending {
                t: mt,
                seq: self.seq,
                chat,
                team: ti as u16,
                bot: NO_BOT,
                kind,
                flags: 0,
            }));
        }
    }

    /// A session deleted together with its chat; the chat's tag stayed.
    fn deleted_session(&mut self, t: i64, ti: usize) {
        self.ids.take(SESSIONS);
        let chat = self.ids.take(CHATS);
        let team = &self.teams[ti];
        let tag = *pick(&mut self.rng, &team.tags.user);
        let when = (t + lognormal_us(&mut self.rng, 3600.0, 1.0)).min(self.end - SEC);
        sim::push_tagged(&mut self.out, &mut self.ids, team.id, tag, self.ct_chat, chat, when);
    }

    /// Emits every waiting message due before `until`.
    fn drain(&mut self, until: i64) {
        while let Some(Reverse(p)) = self.heap.peek().copied()
            && p.t < until
        {
            self.heap.pop();
            self.emit(p);
        }
    }

    fn emit(&mut self, p: Pending) {
        let id = self.ids.take(MESSAGES);
        let deleted = p.flags & FLAG_DELETED != 0 || self.rng.random_bool(0.0002);
        if !deleted {
            sim::push_message(&mut self.out, id, p.chat, p.kind, p.t);
        }
        let team = &self.teams[p.team as usize];
        let versions = if p.bot == NO_BOT {
            0
        } else {
            self.bots[p.bot as usize].versions.partition_point(|&v| v <= p.t)
        };
        message_tags(&mut self.rng, &team.tags, p.kind, versions, &mut self.tag_scratch);
        if p.flags & FLAG_FORCE_TAG != 0 && self.tag_scratch.is_empty() {
            self.tag_scratch.push((*pick(&mut self.rng, &team.tags.user), HOUR));
        }
        for &(tag, delay) in &self.tag_scratch {
            let when = (p.t + delay).min(self.end - SEC);
            sim::push_tagged(&mut self.out, &mut self.ids, team.id, tag, self.ct_msg, id, when);
        }
    }
}
