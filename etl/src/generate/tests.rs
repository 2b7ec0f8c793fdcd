use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;

use chrono::{DateTime, TimeZone, Utc};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::pg::{push_escaped, push_int, push_timestamp};
use super::words::{TextPool, UuidOf, Uuids, push_uuid, row_uuid};
use super::*;
use crate::source::{SOURCES, source};

/// Keeps every batch in memory.
#[derive(Debug, Default)]
struct Mem {
    batches: Vec<(&'static str, RecordBatch)>,
    created: HashMap<&'static str, usize>,
}

impl BatchSink for Mem {
    fn write(&mut self, table: &'static SourceTable, batch: RecordBatch) -> impl Future<Output = Result<()>> + Send {
        assert_eq!(batch.schema(), table.schema, "{}", table.name);
        self.batches.push((table.name, batch));
        std::future::ready(Ok(()))
    }

    fn write_with_created(
        &mut self,
        table: &'static SourceTable,
        batch: RecordBatch,
        created_at: Vec<i64>,
    ) -> impl Future<Output = Result<()>> + Send {
        if !created_at.is_empty() {
            assert_eq!(created_at.len(), batch.num_rows(), "{}", table.name);
        }
        *self.created.entry(table.name).or_default() += created_at.len();
        self.write(table, batch)
    }
}

fn end() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 14, 15, 9, 26)
        .single()
        .expect("valid date")
}

fn opts(seed: u64, session_platform: bool) -> GenOptions {
    GenOptions {
        scale: Scale::Tiny,
        seed,
        end: end(),
        session_platform,
    }
}

fn run(o: &GenOptions) -> (Mem, GenSummary) {
    let mut mem = Mem::default();
    let summary = futures::executor::block_on(generate(o, &mut mem)).expect("generate");
    (mem, summary)
}

/// Every table as one batch.
struct Data(HashMap<&'static str, RecordBatch>);

impl Data {
    fn of(mem: &Mem) -> Self {
        Data(
            SOURCES
                .iter()
                .map(|t| {
                    let parts: Vec<RecordBatch> = mem
                        .batches
                        .iter()
                        .filter(|(n, _)| *n == t.name)
                        .map(|(_, b)| b.clone())
                        .collect();
                    (t.name, concat_batches(&t.schema, &parts).expect("concat"))
                })
                .collect(),
        )
    }

    fn col(&self, table: &str, col: &str) -> &dyn Array {
        self.0[source(table).name].column(source(table).col(col)).as_ref()
    }

    fn ints(&self, table: &str, col: &str) -> Vec<Option<i64>> {
        self.col(table, col).as_primitive::<Int64Type>().iter().collect()
    }

    fn ids(&self, table: &str) -> Vec<i64> {
        self.ints(table, "id").into_iter().map(|v| v.expect("id")).collect()
    }

    fn strs(&self, table: &str, col: &str) -> Vec<Option<String>> {
        self.col(table, col)
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect()
    }

    fn bools(&self, table: &str, col: &str) -> Vec<Option<bool>> {
        self.col(table, col).as_boolean().iter().collect()
    }

    fn times(&self, table: &str, col: &str) -> Vec<Option<i64>> {
        self.col(table, col)
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .collect()
    }

    fn rows(&self, table: &str) -> usize {
        self.0[source(table).name].num_rows()
    }

    /// (content type id of chats, of messages).
    fn content_types(&self) -> (i64, i64) {
        let ids = self.ids("django_content_type");
        let apps = self.strs("django_content_type", "app_label");
        let models = self.strs("django_content_type", "model");
        let find = |m: &str| {
            (0..ids.len())
                .find(|&i| apps[i].as_deref() == Some("chat") && models[i].as_deref() == Some(m))
                .map(|i| ids[i])
                .expect("content type")
        };
        (find("chat"), find("chatmessage"))
    }

    /// Effective platform per session (metrics.md §2).
    fn effective_platforms(&self) -> Vec<Option<String>> {
        let channels: HashMap<i64, Option<String>> = self
            .ids("channels_experimentchannel")
            .into_iter()
            .zip(self.strs("channels_experimentchannel", "platform"))
            .collect();
        let participants: HashMap<i64, Option<String>> = self
            .ids("experiments_participant")
            .into_iter()
            .zip(self.strs("experiments_participant", "platform"))
            .collect();
        let s = "experiments_experimentsession";
        self.strs(s, "platform")
            .into_iter()
            .zip(self.ints(s, "experiment_channel_id"))
            .zip(self.ints(s, "participant_id"))
            .map(|((p, c), part)| {
                p.or_else(|| c.and_then(|c| channels[&c].clone()))
                    .or_else(|| participants[&part.expect("participant")].clone())
            })
            .collect()
    }
}

const KNOWN_PLATFORMS: [&str; 11] = [
    "telegram",
    "web",
    "whatsapp",
    "facebook",
    "sureadhere",
    "api",
    "slack",
    "commcare_connect",
    "evaluations",
    "embedded_widget",
    "email",
];

#[test]
fn same_seed_same_batches() {
    let (a, sa) = run(&opts(7, true));
    let (b, sb) = run(&opts(7, true));
    assert_eq!(sa.rows, sb.rows);
    assert_eq!(a.batches.len(), b.batches.len());
    for ((na, ba), (nb, bb)) in a.batches.iter().zip(&b.batches) {
        assert_eq!(na, nb);
        assert_eq!(ba, bb, "{na}");
    }
    let (c, _) = run(&opts(8, true));
    assert_ne!(
        Data::of(&a).ints("chat_chatmessage", "chat_id"),
        Data::of(&c).ints("chat_chatmessage", "chat_id")
    );
}

#[test]
fn tiny_row_counts() {
    for seed in [1, 2, 3] {
        let (mem, summary) = run(&opts(seed, true));
        let d = Data::of(&mem);
        let rows = |t: &str| d.rows(t);
        for t in SOURCES.iter() {
            assert_eq!(summary.rows[t.name], rows(t.name) as u64, "{}", t.name);
        }
        assert_eq!(rows("teams_team"), 3);
        assert!(
            (2_400..=3_800).contains(&rows("chat_chatmessage")),
            "{:?}",
            summary.rows
        );
        assert!(
            (230..=380).contains(&rows("experiments_experimentsession")),
            "{:?}",
            summary.rows
        );
        assert!(
            (40..=150).contains(&rows("experiments_participant")),
            "{:?}",
            summary.rows
        );
        assert!(rows("chat_chat") > rows("experiments_experimentsession"));
        assert!(
            (15..=80).contains(&rows("experiments_experiment")),
            "{:?}",
            summary.rows
        );
        assert!(rows("annotations_customtaggeditem") > 300, "{:?}", summary.rows);
        assert!(rows("django_content_type") >= 10);
        // Tables without created_at in their source schema got the instants.
        for t in [
            "teams_team",
            "channels_experimentchannel",
            "chat_chat",
            "annotations_tag",
            "annotations_customtaggeditem",
        ] {
            assert_eq!(mem.created[t], rows(t), "{t}");
        }
    }
}

#[test]
fn every_anomaly_at_tiny() {
    for session_platform in [true, false] {
        let (mem, _) = run(&opts(11, session_platform));
        let d = Data::of(&mem);
        let s = "experiments_experimentsession";
        let session_chats: HashMap<i64, usize> = d
            .ints(s, "chat_id")
            .into_iter()
            .enumerate()
            .map(|(i, c)| (c.expect("chat"), i))
            .collect();
        let msg_chats: Vec<i64> = d.ints("chat_chatmessage", "chat_id").into_iter().flatten().collect();
        let msg_times = d.times("chat_chatmessage", "created_at");

        let orphans = msg_chats
            .iter()
            .filter(|c| !session_chats.contains_key(c))
            .collect::<HashSet<_>>()
            .len();
        assert!(orphans > 0, "orphan chats with messages");

        let unknown = d
            .effective_platforms()
            .into_iter()
            .flatten()
            .filter(|p| !KNOWN_PLATFORMS.contains(&p.as_str()) && !p.is_empty())
            .count();
        assert!(unknown > 0, "unknown platform");
        if session_platform {
            assert!(d.strs(s, "platform").iter().any(|p| p.as_deref() == Some("matrix")));
        } else {
            assert!(d.strs(s, "platform").iter().all(Option::is_none));
        }

        let created = d.times(s, "created_at");
        let ended = d.times(s, "ended_at");
        assert!(
            created
                .iter()
                .zip(&ended)
                .any(|(c, e)| e.is_some_and(|e| e < c.expect("created")))
        );

        let early = msg_chats
            .iter()
            .zip(&msg_times)
            .filter(|(c, t)| {
                session_chats
                    .get(c)
                    .is_some_and(|&i| t.expect("time") < created[i].expect("created"))
            })
            .count();
        assert!(early > 0, "message before its session");

        let (ct_chat, ct_msg) = d.content_types();
        let chats: HashSet<i64> = d.ids("chat_chat").into_iter().collect();
        let messages: HashSet<i64> = d.ids("chat_chatmessage").into_iter().collect();
        let t = "annotations_customtaggeditem";
        let cts = d.ints(t, "content_type_id");
        let objects = d.ints(t, "object_id");
        let dangling = |ct: i64, set: &HashSet<i64>| {
            cts.iter()
                .zip(&objects)
                .filter(|(c, o)| **c == Some(ct) && !set.contains(&o.expect("object")))
                .count()
        };
        assert!(dangling(ct_chat, &chats) > 0, "tag on a deleted chat");
        assert!(dangling(ct_msg, &messages) > 0, "tag on a deleted message");

        let tag_team: HashMap<i64, i64> = d
            .ids("annotations_tag")
            .into_iter()
            .zip(d.ints("annotations_tag", "team_id").into_iter().flatten())
            .collect();
        let mismatched = d
            .ints(t, "tag_id")
            .into_iter()
            .zip(d.ints(t, "team_id"))
            .filter(|(tag, team)| tag_team[&tag.expect("tag")] != team.expect("team"))
            .count();
        assert!(mismatched > 0, "tag of another team");
        // ...and they stay rare.
        assert!(
            mismatched < 5 && orphans < 8 && early < 10,
            "{mismatched} {orphans} {early}"
        );
    }
}

#[test]
fn content_type_ids_are_not_fixed() {
    let mut seen = HashSet::new();
    for seed in [1, 2, 3, 4] {
        let (mem, _) = run(&opts(seed, true));
        let (chat, message) = Data::of(&mem).content_types();
        assert!(![1, 2].contains(&chat) && ![1, 2].contains(&message));
        seen.insert((chat, message));
    }
    assert!(seen.len() > 1, "content type ids depend on the seed");
}

#[test]
fn participant_identifiers_unique() {
    for seed in [5, 6] {
        let (mem, _) = run(&opts(seed, true));
        let d = Data::of(&mem);
        let p = "experiments_participant";
        let keys: Vec<_> = d
            .ints(p, "team_id")
            .into_iter()
            .zip(d.strs(p, "platform"))
            .zip(d.strs(p, "identifier"))
            .collect();
        let unique: HashSet<_> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len());
        let names = d.strs(p, "name");
        let empty = names.iter().filter(|n| n.as_deref() == Some("")).count();
        assert!(empty > 0 && empty < names.len(), "some names empty");
    }
}

#[test]
fn one_live_global_channel_per_team() {
    let (mem, _) = run(&opts(3, true));
    let d = Data::of(&mem);
    let c = "channels_experimentchannel";
    let mut live: BTreeMap<(i64, String), usize> = BTreeMap::new();
    let rows = d
        .ints(c, "team_id")
        .into_iter()
        .zip(d.strs(c, "platform"))
        .zip(d.bools(c, "deleted"))
        .zip(d.ints(c, "experiment_id"));
    for (((team, platform), deleted), experiment) in rows {
        let platform = platform.expect("platform");
        if ["web", "api", "evaluations"].contains(&platform.as_str()) {
            assert!(experiment.is_none(), "team-wide channel");
            if deleted == Some(false) {
                *live.entry((team.expect("team"), platform)).or_default() += 1;
            }
        }
    }
    for team in d.ids("teams_team") {
        for p in ["web", "api", "evaluations"] {
            assert_eq!(live.get(&(team, p.to_string())), Some(&1), "team {team} {p}");
        }
    }
}

#[test]
fn references_and_ids_are_consistent() {
    let (mem, _) = run(&opts(21, true));
    let d = Data::of(&mem);
    for t in SOURCES.iter() {
        let ids = d.ids(t.name);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{} ids increase", t.name);
    }
    let e = "experiments_experiment";
    let working: HashSet<i64> = d
        .ids(e)
        .into_iter()
        .zip(d.ints(e, "working_version_id"))
        .filter(|(_, w)| w.is_none())
        .map(|(id, _)| id)
        .collect();
    let archived = d.bools(e, "is_archived").iter().filter(|a| **a == Some(true)).count();
    assert!(archived < working.len() / 3);
    let s = "experiments_experimentsession";
    assert!(
        d.ints(s, "experiment_id")
            .iter()
            .all(|x| working.contains(&x.expect("experiment")))
    );
    let chats: HashMap<i64, i64> = d
        .ids("chat_chat")
        .into_iter()
        .zip(d.ints("chat_chat", "team_id").into_iter().flatten())
        .collect();
    let session_chats: Vec<i64> = d.ints(s, "chat_id").into_iter().flatten().collect();
    assert_eq!(session_chats.iter().collect::<HashSet<_>>().len(), session_chats.len());
    for (chat, team) in session_chats.iter().zip(d.ints(s, "team_id")) {
        assert_eq!(chats[chat], team.expect("team"));
    }
    let channels: HashSet<i64> = d.ids("channels_experimentchannel").into_iter().collect();
    let channel_ids = d.ints(s, "experiment_channel_id");
    assert!(channel_ids.iter().flatten().all(|c| channels.contains(c)));
    assert!(channel_ids.iter().filter(|c| c.is_none()).count() < channel_ids.len() / 10);
    let end = end().timestamp_micros();
    for (t, col) in [
        ("chat_chatmessage", "created_at"),
        (s, "created_at"),
        (s, "ended_at"),
        ("experiments_participant", "created_at"),
        ("experiments_experiment", "created_at"),
    ] {
        assert!(d.times(t, col).iter().flatten().all(|&x| x < end), "{t}.{col}");
    }
    let statuses = d.strs(s, "status");
    let complete = statuses.iter().filter(|x| x.as_deref() == Some("complete")).count();
    assert!(complete * 2 > statuses.len() && complete * 10 < statuses.len() * 8);
    let with_platform = d.strs(s, "platform").iter().filter(|p| p.is_some()).count();
    assert!(with_platform * 10 > statuses.len() * 5 && with_platform * 10 < statuses.len() * 9);
    let objects = d.ints("annotations_customtaggeditem", "object_id");
    assert!(objects.iter().flatten().all(|&o| i32::try_from(o).is_ok()));
    let t = "annotations_tag";
    let categories: HashSet<Option<String>> = d.strs(t, "category").into_iter().collect();
    assert_eq!(categories.len(), 7);
    for (c, system) in d.strs(t, "category").iter().zip(d.bools(t, "is_system_tag")) {
        assert_eq!(system, Some(c.as_deref() != Some("")));
    }
}

#[test]
fn text_format_helpers() {
    for us in [
        0,
        1,
        1_773_500_966_123_456,
        -1,
        951_782_400_000_000,
        4_102_444_799_999_999,
    ] {
        let mut out = Vec::new();
        push_timestamp(&mut out, us);
        let want = DateTime::from_timestamp_micros(us)
            .expect("valid")
            .format("%Y-%m-%d %H:%M:%S%.6f+00")
            .to_string();
        assert_eq!(String::from_utf8(out).expect("utf8"), want);
    }
    let mut out = Vec::new();
    push_escaped(&mut out, "a\tb\\c\nd");
    assert_eq!(out, b"a\\tb\\\\c\\nd");
    let mut out = Vec::new();
    for v in [0, -5, i64::MAX, i64::MIN] {
        out.clear();
        push_int(&mut out, v);
        assert_eq!(String::from_utf8(out.clone()).expect("utf8"), v.to_string());
    }
    let mut u = String::new();
    push_uuid(&mut u, row_uuid(UuidOf::Session, i64::MAX));
    assert_eq!(u, "00000000-0004-8001-bfff-ffffffffffff");
    let mut rng = SmallRng::seed_from_u64(1);
    for _ in 0..100 {
        u.clear();
        push_uuid(&mut u, Uuids::Random.next(&mut rng, UuidOf::Session, 1));
        assert!(u.as_bytes()[14] == b'4' && b"89ab".contains(&u.as_bytes()[19]), "{u}");
    }
    let pool = TextPool::new(3);
    for id in 0..2_000 {
        for kind in ["human", "ai", "system"] {
            let c = pool.content(id, kind);
            assert!((20..=300).contains(&c.len()), "{c:?}");
            assert!(!c.contains(['\t', '\n', '\\']));
        }
    }
    assert_eq!(pool.content(5, "ai"), TextPool::new(3).content(5, "ai"));
}

#[test]
fn scale_names() {
    for s in [Scale::Tiny, Scale::S, Scale::M, Scale::L] {
        assert_eq!(s.to_string().parse::<Scale>(), Ok(s));
    }
    assert!("xl".parse::<Scale>().is_err());
}

#[test]
fn stages_as_parquet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stage = Stage::create(dir.path().join("stage")).expect("stage");
    let summary = futures::executor::block_on(generate(&opts(9, false), &mut stage)).expect("generate");
    let staged = stage.finish().expect("finish");
    assert_eq!(staged, summary.rows);
    for t in SOURCES.iter() {
        assert!(
            dir.path().join("stage").join(format!("{}.parquet", t.name)).exists(),
            "{}",
            t.name
        );
    }
}
