//! Loading generated batches into an OCS Postgres database with
//! `COPY ... FROM STDIN` (text format), filling every NOT NULL column of the
//! DDL that the source schema leaves out.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::time::Instant;

use chrono::Utc;
use datafusion::arrow::array::{
    Array, AsArray, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use datafusion::arrow::error::ArrowError;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::words::{TextPool, UuidOf, Uuids, mix64, push_uuid, slugify};
use super::{BatchSink, GenOptions, GenSummary, generate};
use crate::error::{Error, Result};
use crate::source::{SESSIONS, SOURCES, SourceTable};

pub(super) const SCHEMA: &str = include_str!("../../../data/ocs/schema.sql");
pub(super) const SCHEMA_LEGACY: &str = include_str!("../../../data/ocs/schema_legacy.sql");
pub(super) const INDEXES: &str = include_str!("../../../data/ocs/indexes.sql");

/// Rows encoded per `CopyData` send.
const ROWS_PER_SEND: usize = 4096;

/// A [`BatchSink`] that loads into the OCS tables of a Postgres database,
/// one `COPY` per batch. Columns the source schema lacks are filled the way
/// OCS would: `updated_at` = `created_at` (or `ended_at`), random UUIDs for
/// `public_id` / `external_id`, message text cut from a seeded word pool,
/// taggit-style unique tag slugs, version numbers counted per chatbot, and
/// `''` / `'{}'` / `false` for the rest. Tables without `created_at` in the
/// source schema take it from [`BatchSink::write_with_created`]; through
/// plain [`BatchSink::write`] they get the current time.
pub struct PgSink {
    conn: PgConnection,
    state: State,
    buf: Vec<u8>,
}

impl std::fmt::Debug for PgSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSink")
            .field("session_platform_column", &self.state.platform_column)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct State {
    text: TextPool,
    uuids: SmallRng,
    uuid_source: Uuids,
    slugs: HashSet<String>,
    /// Published versions seen so far per chatbot.
    versions: HashMap<i64, i32>,
    platform_column: bool,
}

impl PgSink {
    /// `seed` makes message texts and UUIDs reproducible;
    /// `session_platform_column` says whether the database's
    /// `experiments_experimentsession` has `platform` (else that column of
    /// the batches is dropped).
    pub fn new(conn: PgConnection, seed: u64, session_platform_column: bool) -> Self {
        PgSink {
            conn,
            state: State {
                text: TextPool::new(seed),
                uuids: SmallRng::seed_from_u64(mix64(seed ^ 0x00C0_FFEE)),
                uuid_source: Uuids::Random,
                slugs: HashSet::new(),
                versions: HashMap::new(),
                platform_column: session_platform_column,
            },
            buf: Vec::with_capacity(2 << 20),
        }
    }

    /// Where `public_id`s and `external_id`s come from (random by default).
    pub fn with_uuids(mut self, uuids: Uuids) -> Self {
        self.state.uuid_source = uuids;
        self
    }

    /// The connection, e.g. to run more SQL in the same transaction.
    pub fn connection(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    pub fn into_connection(self) -> PgConnection {
        self.conn
    }

    async fn copy(&mut self, table: &'static SourceTable, batch: RecordBatch, created: Vec<i64>) -> Result<()> {
        if batch.schema().fields() != table.schema.fields() {
            return Err(ArrowError::SchemaError(format!(
                "batch for {} does not have the source schema: {:?}",
                table.name,
                batch.schema()
            ))
            .into());
        }
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let PgSink { conn, state, buf } = self;
        let mut enc = Encoder::new(state, table, &batch, &created)?;
        let statement = format!(
            "COPY {} ({}) FROM STDIN",
            table.name,
            enc.columns(state.platform_column)
        );
        let mut copy = conn.copy_in_raw(&statement).await?;
        let mut lo = 0;
        while lo < n {
            let hi = (lo + ROWS_PER_SEND).min(n);
            buf.clear();
            enc.encode(state, lo..hi, buf);
            copy.send(buf.as_slice()).await?;
            lo = hi;
        }
        copy.finish().await?;
        Ok(())
    }
}

impl BatchSink for PgSink {
    fn write(
        &mut self,
        table: &'static SourceTable,
        batch: RecordBatch,
    ) -> impl std::future::Future<Output = Result<()>> + Send {
        self.copy(table, batch, Vec::new())
    }

    fn write_with_created(
        &mut self,
        table: &'static SourceTable,
        batch: RecordBatch,
        created_at: Vec<i64>,
    ) -> impl std::future::Future<Output = Result<()>> + Send {
        self.copy(table, batch, created_at)
    }
}

/// The table being encoded, with its columns looked up once.
enum Which<'a> {
    Teams {
        id: &'a Int64Array,
        name: &'a StringArray,
        slug: &'a StringArray,
    },
    ContentTypes {
        id: &'a Int64Array,
        app: &'a StringArray,
        model: &'a StringArray,
    },
    Experiments {
        id: &'a Int64Array,
        team: &'a Int64Array,
        name: &'a StringArray,
        working: &'a Int64Array,
        archived: &'a BooleanArray,
        created: &'a TimestampMicrosecondArray,
        /// (version_number, is_default_version) per row.
        numbers: Vec<(i32, bool)>,
    },
    Participants {
        id: &'a Int64Array,
        team: &'a Int64Array,
        name: &'a StringArray,
        identifier: &'a StringArray,
        platform: &'a StringArray,
        created: &'a TimestampMicrosecondArray,
    },
    Channels {
        id: &'a Int64Array,
        team: &'a Int64Array,
        name: &'a StringArray,
        experiment: &'a Int64Array,
        platform: &'a StringArray,
        deleted: &'a BooleanArray,
    },
    Sessions {
        id: &'a Int64Array,
        team: &'a Int64Array,
        external_id: &'a StringArray,
        participant: &'a Int64Array,
        experiment: &'a Int64Array,
        chat: &'a Int64Array,
        channel: &'a Int64Array,
        status: &'a StringArray,
        created: &'a TimestampMicrosecondArray,
        ended: &'a TimestampMicrosecondArray,
        platform: &'a StringArray,
    },
    Chats {
        id: &'a Int64Array,
        team: &'a Int64Array,
    },
    Messages {
        id: &'a Int64Array,
        chat: &'a Int64Array,
        kind: &'a StringArray,
        created: &'a TimestampMicrosecondArray,
    },
    Tags {
        id: &'a Int64Array,
        team: &'a Int64Array,
        name: &'a StringArray,
        category: &'a StringArray,
        system: &'a BooleanArray,
    },
    Tagged {
        id: &'a Int64Array,
        team: &'a Int64Array,
        tag: &'a Int64Array,
        content_type: &'a Int64Array,
        object: &'a Int64Array,
    },
}

struct Encoder<'a> {
    which: Which<'a>,
    created: &'a [i64],
    now: i64,
}

fn opt<A: Array, T>(a: &A, r: usize, v: impl FnOnce(usize) -> T) -> Option<T> {
    a.is_valid(r).then(|| v(r))
}

impl<'a> Encoder<'a> {
    fn new(state: &mut State, table: &SourceTable, b: &'a RecordBatch, created: &'a [i64]) -> Result<Self> {
        let i = |n: &str| b.column(table.col(n)).as_primitive::<Int64Type>();
        let s = |n: &str| b.column(table.col(n)).as_string::<i32>();
        let bo = |n: &str| b.column(table.col(n)).as_boolean();
        let t = |n: &str| b.column(table.col(n)).as_primitive::<TimestampMicrosecondType>();
        let which = match table.name {
            "teams_team" => Which::Teams {
                id: i("id"),
                name: s("name"),
                slug: s("slug"),
            },
            "django_content_type" => Which::ContentTypes {
                id: i("id"),
                app: s("app_label"),
                model: s("model"),
            },
            "experiments_experiment" => {
                let working = i("working_version_id");
                Which::Experiments {
                    id: i("id"),
                    team: i("team_id"),
                    name: s("name"),
                    working,
                    archived: bo("is_archived"),
                    created: t("created_at"),
                    numbers: state.version_numbers(i("id"), working),
                }
            }
            "experiments_participant" => Which::Participants {
                id: i("id"),
                team: i("team_id"),
                name: s("name"),
                identifier: s("identifier"),
                platform: s("platform"),
                created: t("created_at"),
            },
            "channels_experimentchannel" => Which::Channels {
                id: i("id"),
                team: i("team_id"),
                name: s("name"),
                experiment: i("experiment_id"),
                platform: s("platform"),
                deleted: bo("deleted"),
            },
            "experiments_experimentsession" => Which::Sessions {
                id: i("id"),
                team: i("team_id"),
                external_id: s("external_id"),
                participant: i("participant_id"),
                experiment: i("experiment_id"),
                chat: i("chat_id"),
                channel: i("experiment_channel_id"),
                status: s("status"),
                created: t("created_at"),
                ended: t("ended_at"),
                platform: s("platform"),
            },
            "chat_chat" => Which::Chats {
                id: i("id"),
                team: i("team_id"),
            },
            "chat_chatmessage" => Which::Messages {
                id: i("id"),
                chat: i("chat_id"),
                kind: s("message_type"),
                created: t("created_at"),
            },
            "annotations_tag" => Which::Tags {
                id: i("id"),
                team: i("team_id"),
                name: s("name"),
                category: s("category"),
                system: bo("is_system_tag"),
            },
            "annotations_customtaggeditem" => Which::Tagged {
                id: i("id"),
                team: i("team_id"),
                tag: i("tag_id"),
                content_type: i("content_type_id"),
                object: i("object_id"),
            },
            other => {
                return Err(ArrowError::SchemaError(format!("not an OCS source table: {other}")).into());
            }
        };
        Ok(Encoder {
            which,
            created,
            now: Utc::now().timestamp_micros(),
        })
    }

    /// The COPY column list, in the order rows are encoded.
    fn columns(&self, platform_column: bool) -> &'static str {
        match self.which {
            Which::Teams { .. } => "id, created_at, updated_at, name, slug",
            Which::ContentTypes { .. } => "id, app_label, model",
            Which::Experiments { .. } => {
                "id, created_at, updated_at, team_id, name, seed_message, public_id, \
                 conversational_consent_enabled, voice_response_behaviour, echo_transcript, \
                 participant_allowlist, working_version_id, version_number, is_default_version, \
                 is_archived, version_description, debug_mode_enabled, create_version_task_id, \
                 file_uploads_enabled"
            }
            Which::Participants { .. } => {
                "id, created_at, updated_at, team_id, name, identifier, public_id, platform, remote_id"
            }
            Which::Channels { .. } => {
                "id, created_at, updated_at, team_id, name, experiment_id, deleted, extra_data, external_id, platform"
            }
            Which::Sessions { .. } if platform_column => {
                "id, created_at, updated_at, team_id, external_id, participant_id, status, ended_at, \
                 experiment_id, chat_id, seed_task_id, experiment_channel_id, state, platform"
            }
            Which::Sessions { .. } => {
                "id, created_at, updated_at, team_id, external_id, participant_id, status, ended_at, \
                 experiment_id, chat_id, seed_task_id, experiment_channel_id, state"
            }
            Which::Chats { .. } => "id, created_at, updated_at, team_id, name, metadata",
            Which::Messages { .. } => {
                "id, created_at, updated_at, chat_id, message_type, content, translations, metadata"
            }
            Which::Tags { .. } => "id, created_at, updated_at, team_id, name, slug, is_system_tag, category",
            Which::Tagged { .. } => "id, created_at, updated_at, team_id, tag_id, content_type_id, object_id",
        }
    }

    /// The creation instant of a row of a table without created_at.
    fn created_of(&self, r: usize) -> i64 {
        self.created.get(r).copied().unwrap_or(self.now)
    }

    fn encode(&mut self, st: &mut State, rows: Range<usize>, out: &mut Vec<u8>) {
        for r in rows {
            let mut w = Line { out: &mut *out };
            match &self.which {
                Which::Teams { id, name, slug } => {
                    let c = Some(self.created_of(r));
                    w.int(opt(*id, r, |r| id.value(r)));
                    w.ts(c);
                    w.ts(c);
                    w.text(opt(*name, r, |r| name.value(r)));
                    w.text(opt(*slug, r, |r| slug.value(r)));
                }
                Which::ContentTypes { id, app, model } => {
                    w.int(opt(*id, r, |r| id.value(r)));
                    w.text(opt(*app, r, |r| app.value(r)));
                    w.text(opt(*model, r, |r| model.value(r)));
                }
                Which::Experiments {
                    id,
                    team,
                    name,
                    working,
                    archived,
                    created,
                    numbers,
                } => {
                    let c = opt(*created, r, |r| created.value(r));
                    let (number, default) = numbers[r];
                    w.int(opt(*id, r, |r| id.value(r)));
                    w.ts(c);
                    w.ts(c);
                    w.int(opt(*team, r, |r| team.value(r)));
                    w.text(opt(*name, r, |r| name.value(r)));
                    w.raw("");
                    w.uuid(st.uuid_source.next(
                        &mut st.uuids,
                        UuidOf::Chatbot,
                        opt(*id, r, |r| id.value(r)).unwrap_or(0),
                    ));
                    w.raw("f");
                    w.raw("reciprocal");
                    w.raw("f");
                    w.raw("{}");
                    w.int(opt(*working, r, |r| working.value(r)));
                    w.int(Some(i64::from(number)));
                    w.raw(if default { "t" } else { "f" });
                    w.boolean(opt(*archived, r, |r| archived.value(r)));
                    w.raw("");
                    w.raw("f");
                    w.raw("");
                    w.raw("f");
                }
                Which::Participants {
                    id,
                    team,
                    name,
                    identifier,
                    platform,
                    created,
                } => {
                    let c = opt(*created, r, |r| created.value(r));
                    w.int(opt(*id, r, |r| id.value(r)));
                    w.ts(c);
                    w.ts(c);
                    w.int(opt(*team, r, |r| team.value(r)));
                    w.text(opt(*name, r, |r| name.value(r)));
                    w.text(opt(*identifier, r, |r| identifier.value(r)));
                    w.uuid(st.uuid_source.next(
                        &mut st.uuids,
                        UuidOf::Participant,
                        opt(*id, r, |r| id.value(r)).unwrap_or(0),
                    ));
                    w.text(opt(*platform, r, |r| platform.value(r)));
                    w.raw("");
                }
                Which::Channels {
                    id,
                    team,
                    name,
                    experiment,
                    platform,
                    deleted,
                } => {
                    let c = Some(self.created_of(r));
                    w.int(opt(*id, r, |r| id.value(r)));
                    w.ts(c);
                    w.ts(c);
                    w.int(opt(*team, r, |r| team.value(r)));
                    w.text(opt(*name, r, |r| name.value(r)));
                    w.int(opt(*experiment, r, |r| experiment.value(r)));
                    w.boolean(opt(*deleted, r, |r| deleted.value(r)));
                    w.raw("{}");
                    w.uuid(st.uuid_source.next(
                        &mut st.uuids,
                        UuidOf::Channel,
                        opt(*id, r, |r| id.value(r)).unwrap_or(0),
                    ));
                    w.text(opt(*platform, r, |r| platform.value(r)));
                }
                Which::Sessions {
                    id,
                    team,
                    external_id,
                    participant,
                    experiment,
                    chat,
                    channel,
                    status,
                    created,
                    ended,
                    platform,
                } => {
                    let c = opt(*created, r, |r| created.value(r));
                    let e = opt(*ended, r, |r| ended.value(r));
                    w.int(opt(*id, r, |r| id.value(r)));
                    w.ts(c);
                    w.ts(e.or(c));
                    w.int(opt(*team, r, |r| team.value(r)));
                    w.text(opt(*external_id, r, |r| external_id.value(r)));
                    w.int(opt(*participant, r, |r| participant.value(r)));
                    w.text(opt(*status, r, |r| status.value(r)));
                    w.ts(e);
                    w.int(opt(*experiment, r, |r| experiment.value(r)));
                    w.int(opt(*chat, r, |r| chat.value(r)));
                    w.raw("");
                    w.int(opt(*channel, r, |r| channel.value(r)));
                    w.raw("{}");
                    if st.platform_column {
                        w.text(opt(*platform, r, |r| platform.value(r)));
                    }
                }
                Which::Chats { id, team } => {
                    let c = Some(self.created_of(r));
                    w.int(opt(*id, r, |r| id.value(r)));
                    w.ts(c);
                    w.ts(c);
                    w.int(opt(*team, r, |r| team.value(r)));
                    w.raw("");
                    w.raw("{}");
                }
                Which::Messages {
                    id,
                    chat,
                    kind,
                    created,
                } => {
                    let c = opt(*created, r, |r| created.value(r));
                    let i = opt(*id, r, |r| id.value(r));
                    let k = opt(*kind, r, |r| kind.value(r));
                    w.int(i);
                    w.ts(c);
                    w.ts(c);
                    w.int(opt(*chat, r, |r| chat.value(r)));
                    w.text(k);
                    w.text(Some(st.text.content(i.unwrap_or(0), k.unwrap_or("human"))));
                    w.raw("{}");
                    w.raw("{}");
                }
                Which::Tags {
                    id,
                    team,
                    name,
                    category,
                    system,
                } => {
                    let c = Some(self.created_of(r));
                    let n = opt(*name, r, |r| name.value(r));
                    w.int(opt(*id, r, |r| id.value(r)));
                    w.ts(c);
                    w.ts(c);
                    w.int(opt(*team, r, |r| team.value(r)));
                    w.text(n);
                    let slug = st.slug(n.unwrap_or("tag"));
                    w.text(Some(slug.as_str()));
                    w.boolean(opt(*system, r, |r| system.value(r)));
                    w.text(opt(*category, r, |r| category.value(r)));
                }
                Which::Tagged {
                    id,
                    team,
                    tag,
                    content_type,
                    object,
                } => {
                    let c = Some(self.created_of(r));
                    w.int(opt(*id, r, |r| id.value(r)));
                    w.ts(c);
                    w.ts(c);
                    w.int(opt(*team, r, |r| team.value(r)));
                    w.int(opt(*tag, r, |r| tag.value(r)));
                    w.int(opt(*content_type, r, |r| content_type.value(r)));
                    w.int(opt(*object, r, |r| object.value(r)));
                }
            }
            w.end();
        }
    }
}

impl State {
    /// django-taggit's slugs: the slugified name, then `_1`, `_2`, ... when
    /// taken (unique across all teams).
    fn slug(&mut self, name: &str) -> String {
        let base = match slugify(name) {
            s if s.is_empty() => "tag".to_string(),
            s => s,
        };
        let mut slug = base.clone();
        let mut k = 1;
        while self.slugs.contains(&slug) {
            slug = format!("{base}_{k}");
            k += 1;
        }
        self.slugs.insert(slug.clone());
        slug
    }

    /// Version numbers: a chatbot's published versions count 1, 2, ... in id
    /// order, the last one is the default; the working row carries the next
    /// number (as OCS does).
    fn version_numbers(&mut self, ids: &Int64Array, working: &Int64Array) -> Vec<(i32, bool)> {
        let mut totals: HashMap<i64, i32> = self.versions.clone();
        for r in 0..working.len() {
            if working.is_valid(r) {
                *totals.entry(working.value(r)).or_default() += 1;
            }
        }
        (0..ids.len())
            .map(|r| {
                if working.is_valid(r) {
                    let w = working.value(r);
                    let n = self.versions.entry(w).or_default();
                    *n += 1;
                    (*n, *n == totals[&w])
                } else {
                    let own = if ids.is_valid(r) { ids.value(r) } else { 0 };
                    (totals.get(&own).copied().unwrap_or(0) + 1, false)
                }
            })
            .collect()
    }
}

/// One text-format COPY line under construction: every value is followed
/// by a tab, `end` turns the last one into the newline.
struct Line<'b> {
    out: &'b mut Vec<u8>,
}

impl Line<'_> {
    fn raw(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
        self.out.push(b'\t');
    }

    fn null(&mut self) {
        self.raw("\\N");
    }

    fn text(&mut self, v: Option<&str>) {
        let Some(s) = v else { return self.null() };
        push_escaped(self.out, s);
        self.out.push(b'\t');
    }

    fn int(&mut self, v: Option<i64>) {
        let Some(v) = v else { return self.null() };
        push_int(self.out, v);
        self.out.push(b'\t');
    }

    fn boolean(&mut self, v: Option<bool>) {
        match v {
            Some(true) => self.raw("t"),
            Some(false) => self.raw("f"),
            None => self.null(),
        }
    }

    fn ts(&mut self, v: Option<i64>) {
        let Some(v) = v else { return self.null() };
        push_timestamp(self.out, v);
        self.out.push(b'\t');
    }

    fn uuid(&mut self, bits: u128) {
        let mut s = String::with_capacity(36);
        push_uuid(&mut s, bits);
        self.raw(&s);
    }

    fn end(self) {
        if let Some(last) = self.out.last_mut() {
            *last = b'\n';
        }
    }
}

/// Text-format escaping: backslash, tab, newline and carriage return.
pub(super) fn push_escaped(out: &mut Vec<u8>, s: &str) {
    if !s.bytes().any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r')) {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    for b in s.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

pub(super) fn push_int(out: &mut Vec<u8>, v: i64) {
    let mut digits = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[i..]);
}

fn push_digits(out: &mut Vec<u8>, v: u64, width: usize) {
    let mut buf = [b'0'; 8];
    let mut n = v;
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&buf[..width]);
}

/// `YYYY-MM-DD HH:MM:SS.ffffff+00` for microseconds since the Unix epoch
/// (years 1..=9999; others are written by chrono).
pub(super) fn push_timestamp(out: &mut Vec<u8>, us: i64) {
    const DAY_US: i64 = 86_400_000_000;
    let days = us.div_euclid(DAY_US);
    let in_day = us.rem_euclid(DAY_US) as u64;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    if !(1..=9999).contains(&y) {
        if let Some(t) = chrono::DateTime::from_timestamp_micros(us) {
            out.extend_from_slice(t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string().as_bytes());
        }
        return;
    }
    push_digits(out, y as u64, 4);
    out.push(b'-');
    push_digits(out, m as u64, 2);
    out.push(b'-');
    push_digits(out, d as u64, 2);
    out.push(b' ');
    let secs = in_day / 1_000_000;
    push_digits(out, secs / 3600, 2);
    out.push(b':');
    push_digits(out, secs / 60 % 60, 2);
    out.push(b':');
    push_digits(out, secs % 60, 2);
    out.push(b'.');
    push_digits(out, in_day % 1_000_000, 6);
    out.extend_from_slice(b"+00");
}

/// Whether `experiments_experimentsession.platform` exists.
pub(super) async fn session_platform_column(conn: &mut PgConnection) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns
         WHERE table_schema = ANY (current_schemas(false)) AND table_name = $1 AND column_name = 'platform')",
    )
    .bind(SESSIONS)
    .fetch_one(&mut *conn)
    .await?)
}

/// Points every table's id sequence at its largest id.
pub(super) async fn sync_sequences(conn: &mut PgConnection) -> Result<()> {
    for t in SOURCES.iter() {
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence('{0}', 'id'), max(id)) FROM {0}",
            t.name
        );
        sqlx::query(AssertSqlSafe(sql)).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Fills an OCS Postgres database: creates the tables from
/// `data/ocs/schema.sql` (or `schema_legacy.sql` when the database already
/// has `experiments_experimentsession` without a `platform` column, or when
/// `opts.session_platform` is false) where missing, refuses with
/// [`Error::NotEmpty`] if any OCS table holds rows, loads everything with
/// `COPY` in one transaction, applies `data/ocs/indexes.sql`, moves every id
/// sequence past the loaded ids, and runs `ANALYZE`. On a legacy database
/// the sessions get no platform (as if `session_platform` were false).
pub async fn generate_into_postgres(database_url: &str, opts: &GenOptions) -> Result<GenSummary> {
    let started = Instant::now();
    let mut conn = PgConnection::connect(database_url).await.map_err(Error::Connect)?;
    let sessions_exist: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(SESSIONS)
        .fetch_one(&mut conn)
        .await?;
    let legacy = (sessions_exist && !session_platform_column(&mut conn).await?) || !opts.session_platform;
    sqlx::raw_sql(if legacy { SCHEMA_LEGACY } else { SCHEMA })
        .execute(&mut conn)
        .await?;
    for t in SOURCES.iter() {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {})", t.name);
        let taken: bool = sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&mut conn).await?;
        if taken {
            return Err(Error::NotEmpty {
                table: t.name.to_string(),
            });
        }
    }
    let platform_column = session_platform_column(&mut conn).await?;
    let opts = GenOptions {
        session_platform: opts.session_platform && platform_column,
        ..opts.clone()
    };

    sqlx::query("BEGIN").execute(&mut conn).await?;
    let mut sink = PgSink::new(conn, opts.seed, platform_column);
    let summary = generate(&opts, &mut sink).await?;
    let mut conn = sink.into_connection();
    sqlx::raw_sql(INDEXES).execute(&mut conn).await?;
    sync_sequences(&mut conn).await?;
    sqlx::query("COMMIT").execute(&mut conn).await?;
    for t in SOURCES.iter() {
        sqlx::query(AssertSqlSafe(format!("ANALYZE {}", t.name)))
            .execute(&mut conn)
            .await?;
    }
    conn.close().await?;
    let rows: BTreeMap<String, u64> = summary.rows;
    Ok(GenSummary {
        rows,
        elapsed: started.elapsed(),
    })
}
