//! The ETL against a real Postgres with the real OCS schema: both schema
//! variants, every anomaly, incremental ≡ full, bad arguments.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{TestDb, snapshot_contents, snapshot_i64};
use ocs_dash_engine::snapshot::DataDir;
use ocs_dash_etl::generate::{self, GenOptions, Scale};
use ocs_dash_etl::progress::Progress;
use ocs_dash_etl::run::{EtlOptions, Summary, run_etl};
use sqlx::AssertSqlSafe;

fn gen_opts(scale: Scale, seed: u64, session_platform: bool) -> GenOptions {
    GenOptions {
        scale,
        seed,
        end: "2026-11-20T12:00:00Z".parse().unwrap(),
        session_platform,
    }
}

async fn etl(db: &TestDb, data: &Path, full: bool) -> Summary {
    let opts = EtlOptions {
        database_url: db.url.clone(),
        data: DataDir::new(data),
        full,
        keep: 2,
    };
    run_etl(&opts, &mut Progress::hidden()).await.unwrap()
}

/// Effective platform and counted sessions, written from metrics.md §2.
fn counted_sessions_sql(session_platform: bool) -> String {
    let first = if session_platform { "s.platform, " } else { "" };
    format!(
        "SELECT s.*, COALESCE({first}c.platform, p.platform) AS eff_platform
         FROM experiments_experimentsession s
         LEFT JOIN channels_experimentchannel c ON c.id = s.experiment_channel_id
         LEFT JOIN experiments_participant p ON p.id = s.participant_id
         WHERE s.status <> 'setup' AND COALESCE({first}c.platform, p.platform) IS DISTINCT FROM 'evaluations'"
    )
}

/// Row counts of every snapshot table, computed straight from the source.
async fn assert_counts_match_source(db: &TestDb, data: &Path, session_platform: bool) {
    let counted = counted_sessions_sql(session_platform);
    let turns = format!(
        "SELECT m.*, cs.team_id FROM chat_chatmessage m JOIN ({counted}) cs ON cs.chat_id = m.chat_id
         WHERE m.message_type IN ('human', 'ai')"
    );
    let checks = [
        ("SELECT count(*) FROM teams", "SELECT count(*) FROM teams_team".to_string()),
        (
            "SELECT count(*) FROM chatbots",
            "SELECT count(*) FROM experiments_experiment WHERE working_version_id IS NULL".into(),
        ),
        (
            "SELECT count(*) FROM sessions",
            "SELECT count(*) FROM experiments_experimentsession".into(),
        ),
        ("SELECT count(*) FROM sessions WHERE counted", format!("SELECT count(*) FROM ({counted}) x")),
        ("SELECT count(*) FROM turns", format!("SELECT count(*) FROM ({turns}) t")),
        (
            "SELECT count(*) FROM turns WHERE message_type = 'human'",
            format!("SELECT count(*) FROM ({turns}) t WHERE message_type = 'human'"),
        ),
        (
            "SELECT count(*) FROM message_tags",
            format!(
                "SELECT count(*) FROM (SELECT DISTINCT t.id, tu.id FROM annotations_customtaggeditem i
                 JOIN django_content_type ct ON ct.id = i.content_type_id AND ct.app_label = 'chat' AND ct.model = 'chatmessage'
                 JOIN annotations_tag t ON t.id = i.tag_id AND t.team_id = i.team_id AND t.category <> 'experiment_version'
                 JOIN ({turns}) tu ON tu.id = i.object_id AND tu.team_id = i.team_id) x"
            ),
        ),
        (
            "SELECT count(*) FROM session_tags",
            format!(
                "SELECT count(*) FROM (SELECT DISTINCT t.id, cs.id FROM annotations_customtaggeditem i
                 JOIN django_content_type ct ON ct.id = i.content_type_id AND ct.app_label = 'chat' AND ct.model = 'chat'
                 JOIN annotations_tag t ON t.id = i.tag_id AND t.team_id = i.team_id AND t.category <> 'experiment_version'
                 JOIN ({counted}) cs ON cs.chat_id = i.object_id AND cs.team_id = i.team_id) x"
            ),
        ),
        (
            "SELECT count(*) FROM (SELECT message_id FROM turns UNION ALL SELECT message_id FROM _other_messages)",
            "SELECT count(*) FROM chat_chatmessage".into(),
        ),
        (
            "SELECT count(DISTINCT participant_id) FROM turns WHERE message_type = 'human'",
            format!("SELECT count(DISTINCT participant_id) FROM ({turns}) t JOIN experiments_experimentsession s ON s.chat_id = t.chat_id WHERE t.message_type = 'human'"),
        ),
    ];
    for (snap_sql, pg_sql) in checks {
        let expected = db.scalar_i64(&pg_sql).await;
        let got = snapshot_i64(data, snap_sql).await;
        assert_eq!(got, expected, "{snap_sql} vs the source");
    }
    // Turns carry their session's effective platform (metrics.md §2).
    let platform_mix = format!(
        "SELECT count(*) FROM ({turns}) t WHERE t.team_id IS NOT NULL AND \
         (SELECT eff_platform FROM ({counted}) cs WHERE cs.chat_id = t.chat_id) = 'whatsapp'"
    );
    assert_eq!(
        snapshot_i64(data, "SELECT count(*) FROM turns WHERE platform = 'whatsapp'").await,
        db.scalar_i64(&platform_mix).await
    );
}

#[tokio::test]
async fn full_export_matches_source_current_schema() {
    let db = TestDb::create("full_current").await;
    generate::generate_into_postgres(&db.url, &gen_opts(Scale::Tiny, 7, true))
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let summary = etl(&db, data.path(), false).await;
    assert_eq!(summary.mode, "full");
    assert_counts_match_source(&db, data.path(), true).await;
    let m = DataDir::new(data.path()).manifest(&summary.version).await.unwrap();
    assert!(m.session_platform_column);
    assert_eq!(m.source, "postgres");
    // The generator plants every anomaly; the summary counts each of them.
    for kind in [
        "orphan_messages",
        "sessions_unknown_platform",
        "sessions_ended_before_start",
        "turns_before_session_start",
        "tagged_items_dangling",
        "tagged_items_other_team",
    ] {
        assert!(
            summary.anomalies.get(kind).copied().unwrap_or(0) > 0,
            "{kind} not reported: {:?}",
            summary.anomalies
        );
    }
    // Dangling tagged items, counted by Postgres from the source (the ETL
    // counts them with id bitmaps, not SQL).
    let dangling = db
        .scalar_i64(
            "SELECT count(*) FROM annotations_customtaggeditem i
             JOIN django_content_type ct ON ct.id = i.content_type_id AND ct.app_label = 'chat'
             LEFT JOIN annotations_tag t ON t.id = i.tag_id
             LEFT JOIN chat_chatmessage m ON ct.model = 'chatmessage' AND m.id = i.object_id
             LEFT JOIN chat_chat c ON ct.model = 'chat' AND c.id = i.object_id
             WHERE t.id IS NULL OR (m.id IS NULL AND c.id IS NULL)",
        )
        .await;
    assert_eq!(
        summary.anomalies.get("tagged_items_dangling").copied(),
        Some(dangling as u64)
    );
    // Message content is never exported.
    for def in ocs_dash_engine::snapshot::TABLES.iter() {
        assert!(
            def.schema.field_with_name("content").is_err(),
            "{} exports content",
            def.name
        );
    }
    db.drop_db().await;
}

#[tokio::test]
async fn full_export_matches_source_legacy_schema() {
    let db = TestDb::create("full_legacy").await;
    generate::generate_into_postgres(&db.url, &gen_opts(Scale::Tiny, 11, false))
        .await
        .unwrap();
    let platform_column = db
        .scalar_i64(
            "SELECT count(*) FROM information_schema.columns
             WHERE table_name = 'experiments_experimentsession' AND column_name = 'platform'",
        )
        .await;
    assert_eq!(platform_column, 0, "legacy schema has no session.platform");
    let data = tempfile::tempdir().unwrap();
    let summary = etl(&db, data.path(), true).await;
    assert_counts_match_source(&db, data.path(), false).await;
    assert!(
        !DataDir::new(data.path())
            .manifest(&summary.version)
            .await
            .unwrap()
            .session_platform_column
    );
    db.drop_db().await;
}

/// Runs the real binary; returns (exit code, stdout, stderr).
fn ocs_dash(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ocs-dash"))
        .args(args)
        .env_remove("OCS_DASH_DATA")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn incremental_equals_full_after_inserts_updates_and_deletes() {
    let db = TestDb::create("incremental").await;
    generate::generate_into_postgres(&db.url, &gen_opts(Scale::Tiny, 3, true))
        .await
        .unwrap();
    // Sessions whose platform comes from their channel (A) or, with no
    // channel, from their participant (B, C): a change of those rows must
    // reach the session (and its turns) though the session row stays.
    // Complete ones, the latest: none of the changes below touches them.
    db.exec(
        "CREATE TABLE picked AS
           SELECT (array_agg(id ORDER BY id DESC))[1] AS a, (array_agg(id ORDER BY id DESC))[2] AS b,
                  (array_agg(id ORDER BY id DESC))[3] AS c
           FROM experiments_experimentsession WHERE experiment_channel_id IS NOT NULL AND status = 'complete';
         UPDATE experiments_experimentsession SET platform = NULL
           WHERE id IN (SELECT a FROM picked UNION ALL SELECT b FROM picked UNION ALL SELECT c FROM picked);
         UPDATE experiments_experimentsession SET experiment_channel_id = NULL
           WHERE id IN (SELECT b FROM picked UNION ALL SELECT c FROM picked);",
    )
    .await;
    let inc = tempfile::tempdir().unwrap();
    assert_eq!(etl(&db, inc.path(), false).await.mode, "full");
    let watermark = db.scalar_i64("SELECT max(id) FROM chat_chatmessage").await;

    // A day of new activity, then the changes a nightly job must not miss.
    generate::simulate_day(&db.url, 1).await.unwrap();
    // A new turn in the last 15-minute slot of an open session whose turns
    // stay: the rollup merges it into that slot's previous row.
    let added = db
        .scalar_i64(&format!(
            "WITH added AS (
               INSERT INTO chat_chatmessage (created_at, updated_at, chat_id, message_type, content, translations, metadata)
               SELECT m.created_at, m.created_at, m.chat_id, 'human', 'again', '{{}}', '{{}}'
               FROM chat_chatmessage m JOIN ({}) s ON s.chat_id = m.chat_id
               WHERE s.status = 'active' AND s.ended_at IS NULL AND m.message_type = 'human'
                 AND NOT EXISTS (SELECT 1 FROM chat_chatmessage n WHERE n.chat_id = m.chat_id AND n.id > {watermark})
               ORDER BY m.id DESC LIMIT 1
               RETURNING 1)
             SELECT count(*) FROM added",
            counted_sessions_sql(true)
        ))
        .await;
    assert_eq!(added, 1);
    db.exec(
        "UPDATE experiments_experimentsession SET status = 'complete', ended_at = created_at + interval '42 minutes'
           WHERE id IN (SELECT id FROM experiments_experimentsession WHERE ended_at IS NULL ORDER BY id LIMIT 5);
         UPDATE experiments_experimentsession SET status = 'active'
           WHERE id IN (SELECT id FROM experiments_experimentsession WHERE status = 'setup' ORDER BY id LIMIT 3);
         DELETE FROM annotations_customtaggeditem WHERE id IN (SELECT id FROM annotations_customtaggeditem ORDER BY id LIMIT 7);
         INSERT INTO annotations_customtaggeditem (created_at, updated_at, team_id, tag_id, content_type_id, object_id)
           SELECT now(), now(), m.team_id, t.id, ct.id, m.id
           FROM (SELECT DISTINCT ON (s.team_id) s.team_id, cm.id FROM chat_chatmessage cm
                 JOIN experiments_experimentsession s ON s.chat_id = cm.chat_id
                 WHERE cm.message_type = 'human' ORDER BY s.team_id, cm.id) m
           JOIN LATERAL (SELECT id FROM annotations_tag WHERE team_id = m.team_id AND category = '' ORDER BY id LIMIT 1) t ON true
           JOIN django_content_type ct ON ct.app_label = 'chat' AND ct.model = 'chatmessage'
           ON CONFLICT DO NOTHING;
         CREATE TEMP TABLE gone AS SELECT id, chat_id FROM experiments_experimentsession ORDER BY id LIMIT 4;
         DELETE FROM annotations_customtaggeditem WHERE object_id IN (SELECT chat_id FROM gone)
           AND content_type_id = (SELECT id FROM django_content_type WHERE app_label = 'chat' AND model = 'chat');
         DELETE FROM annotations_customtaggeditem WHERE object_id IN
           (SELECT m.id FROM chat_chatmessage m JOIN gone g ON g.chat_id = m.chat_id)
           AND content_type_id = (SELECT id FROM django_content_type WHERE app_label = 'chat' AND model = 'chatmessage');
         DELETE FROM experiments_experimentsession WHERE id IN (SELECT id FROM gone);
         DELETE FROM chat_chatmessage WHERE chat_id IN (SELECT chat_id FROM gone);
         DELETE FROM chat_chat WHERE id IN (SELECT chat_id FROM gone);
         UPDATE channels_experimentchannel SET platform = 'email'
           WHERE id = (SELECT experiment_channel_id FROM experiments_experimentsession WHERE id = (SELECT a FROM picked));
         UPDATE experiments_participant SET platform = 'slack'
           WHERE id = (SELECT participant_id FROM experiments_experimentsession WHERE id = (SELECT b FROM picked));
         -- A participant deleted under its session (a database without the
         -- foreign key): the session's platform is then unknown.
         ALTER TABLE experiments_experimentsession
           DROP CONSTRAINT experiments_experime_participant_id_231668e8_fk_experimen;
         DELETE FROM experiments_participant
           WHERE id = (SELECT participant_id FROM experiments_experimentsession WHERE id = (SELECT c FROM picked));",
    )
    .await;
    let total_sessions = db
        .scalar_i64("SELECT count(*) FROM experiments_experimentsession")
        .await as u64;
    let total_messages = db.scalar_i64("SELECT count(*) FROM chat_chatmessage").await as u64;
    let total_items = db.scalar_i64("SELECT count(*) FROM annotations_customtaggeditem").await as u64;
    let s = etl(&db, inc.path(), false).await;
    assert_eq!(s.mode, "incremental", "{:?}", s.fallback);
    assert!(s.fallback.is_none());
    assert!(
        s.source_rows["chat_chatmessage"] < total_messages / 5,
        "read only the new messages: {s:?}"
    );
    assert!(
        s.source_rows["annotations_customtaggeditem"] < total_items / 5,
        "read only the new tagged items: {s:?}"
    );
    // The sessions written since, and every session of the changed channel
    // and participants.
    assert!(
        s.source_rows["experiments_experimentsession"] < total_sessions / 2,
        "read only the sessions that can have changed: {s:?}"
    );
    assert_equals_full(&db, inc.path()).await;

    // A message deleted on its own (below the watermark): the check notices
    // and the run reads every message.
    db.exec("DELETE FROM chat_chatmessage WHERE id = (SELECT min(m.id) FROM chat_chatmessage m JOIN experiments_experimentsession s ON s.chat_id = m.chat_id WHERE m.message_type = 'ai' AND NOT EXISTS (SELECT 1 FROM annotations_customtaggeditem i WHERE i.object_id = m.id))").await;
    generate::simulate_day(&db.url, 2).await.unwrap();
    let s = etl(&db, inc.path(), false).await;
    assert_eq!(s.mode, "full");
    assert!(s.fallback.is_some());
    assert_equals_full(&db, inc.path()).await;

    // And chained incremental runs stay equal, also when a tagged item
    // commits late (an id below the highest one the snapshot kept, here
    // naming no object): the run reads every item.
    generate::simulate_day(&db.url, 3).await.unwrap();
    db.exec(
        "INSERT INTO annotations_customtaggeditem (id, created_at, updated_at, team_id, tag_id, content_type_id, object_id)
         SELECT (SELECT min(id) - 1 FROM annotations_customtaggeditem), now(), now(), team_id, tag_id, content_type_id, -object_id
         FROM annotations_customtaggeditem ORDER BY id DESC LIMIT 1",
    )
    .await;
    let total_items = db.scalar_i64("SELECT count(*) FROM annotations_customtaggeditem").await as u64;
    let s = etl(&db, inc.path(), false).await;
    assert_eq!(s.mode, "incremental", "{:?}", s.fallback);
    assert_eq!(s.source_rows["annotations_customtaggeditem"], total_items);
    assert_equals_full(&db, inc.path()).await;

    // A previous snapshot from another cluster (as after a dump restored
    // into a new server): its transaction ids mean nothing here, so the run
    // reads every session.
    let manifests = inc.path().join("manifests");
    let head = std::fs::read_dir(&manifests)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&head).unwrap()).unwrap();
    let cluster = &mut manifest["source_position"]["cluster"];
    assert!(cluster.is_i64(), "the manifest records the cluster: {manifest}");
    *cluster = serde_json::json!(cluster.as_i64().unwrap() ^ 1);
    std::fs::write(&head, serde_json::to_vec(&manifest).unwrap()).unwrap();
    // Its stored message ids, one id short: their count is not the
    // manifest's, so the run reads the ids from the snapshot's tables.
    let ids = inc
        .path()
        .join("snapshots")
        .join(manifest["version"].as_str().unwrap())
        .join(ocs_dash_etl::dangling::MESSAGE_IDS);
    let mut bytes = std::fs::read(&ids).unwrap();
    let last = bytes.iter().rposition(|&b| b != 0).unwrap();
    bytes[last] &= bytes[last] - 1;
    std::fs::write(&ids, bytes).unwrap();
    generate::simulate_day(&db.url, 4).await.unwrap();
    let total_sessions = db
        .scalar_i64("SELECT count(*) FROM experiments_experimentsession")
        .await as u64;
    let s = etl(&db, inc.path(), false).await;
    assert_eq!(s.mode, "incremental", "{:?}", s.fallback);
    assert_eq!(s.source_rows["experiments_experimentsession"], total_sessions);
    assert_equals_full(&db, inc.path()).await;
    // Old versions were pruned to the last two complete ones.
    assert!(DataDir::new(inc.path()).versions().await.unwrap().len() <= 3);
    db.drop_db().await;
}

#[tokio::test]
async fn next_days_with_the_generation_seed_add_rows_without_clashing() {
    // `generate --next-day` without `--seed` uses the generation's seed 42:
    // new participants and sessions must still get UUIDs and identifiers no
    // earlier row has (unique constraints), day after day.
    let db = TestDb::create("next_day").await;
    generate::generate_into_postgres(&db.url, &gen_opts(Scale::S, 42, true))
        .await
        .unwrap();
    let count =
        "SELECT (SELECT count(*) FROM experiments_participant) + (SELECT count(*) FROM experiments_experimentsession)";
    let mut rows = db.scalar_i64(count).await;
    for _ in 0..3 {
        let touched = generate::simulate_day(&db.url, 42).await.unwrap();
        assert!(touched["participants_created"] > 0 && touched["sessions_created"] > 0);
        let now = db.scalar_i64(count).await;
        assert!(now > rows);
        rows = now;
    }
    db.drop_db().await;
}

/// The snapshot in `data` equals a `--full` export of `db` made now.
async fn assert_equals_full(db: &TestDb, data: &Path) {
    let full = tempfile::tempdir().unwrap();
    etl(db, full.path(), true).await;
    assert_tables_equal(data, full.path()).await;
}

/// Same rows in every table, and the same counts, anomalies and watermark
/// in the manifests.
async fn assert_tables_equal(a: &Path, b: &Path) {
    let (ta, tb) = (snapshot_contents(a).await, snapshot_contents(b).await);
    for (name, batch) in &ta {
        assert_eq!(batch.num_rows(), tb[name].num_rows(), "row count of {name}");
        assert!(batch == &tb[name], "table {name} differs between incremental and full");
    }
    let manifest = async |p: &Path| DataDir::new(p).require_head().await.unwrap().manifest;
    let (ma, mb) = (manifest(a).await, manifest(b).await);
    assert_eq!(ma.tables, mb.tables);
    assert_eq!(ma.watermark, mb.watermark);
    let mut anomalies = ma.anomalies.clone();
    // Infinite timestamps are counted among the rows read (fewer when incremental).
    anomalies.remove("infinite_timestamps");
    let mut expected = mb.anomalies.clone();
    expected.remove("infinite_timestamps");
    assert_eq!(anomalies, expected);
}

/// Every Parquet file of the current snapshot: path inside the version →
/// inode (hard links share it).
async fn current_files(data: &Path) -> BTreeMap<String, u64> {
    use std::os::unix::fs::MetadataExt;
    let dir = DataDir::new(data);
    let root = dir
        .version_dir(&dir.require_current().await.unwrap())
        .local_path()
        .unwrap();
    let mut out = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                let rel = p.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::metadata(&p).unwrap().ino());
            }
        }
    }
    out
}

#[tokio::test]
async fn incremental_rewrites_only_the_files_whose_rows_changed() {
    let db = TestDb::create("inc_files").await;
    generate::generate_into_postgres(&db.url, &gen_opts(Scale::Tiny, 9, true))
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    etl(&db, data.path(), true).await;
    let before = current_files(data.path()).await;
    // Time-sorted tables are stored per team and month.
    assert!(
        before
            .keys()
            .any(|f| f.starts_with("turns/team_id=") && f.contains("/part-20"))
    );

    // Nothing changed: every file is the previous one.
    let s = etl(&db, data.path(), false).await;
    assert_eq!(s.mode, "incremental", "{:?}", s.fallback);
    let same = current_files(data.path()).await;
    assert_eq!(same, before, "files were rewritten although nothing changed");

    // One session of the largest team gets another platform: its turns'
    // month, its own month, and the rollup and tags of that month change.
    let counted = counted_sessions_sql(true);
    let (team, session) = {
        let mut c = db.conn().await;
        let row: (i64, i64) = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT s.team_id, s.id FROM ({counted}) s
             JOIN chat_chatmessage m ON m.chat_id = s.chat_id
             WHERE s.team_id = (SELECT team_id FROM experiments_experimentsession GROUP BY 1 ORDER BY count(*) DESC LIMIT 1)
             GROUP BY s.team_id, s.id, s.created_at
             HAVING date_trunc('month', min(m.created_at) AT TIME ZONE 'UTC') = date_trunc('month', max(m.created_at) AT TIME ZONE 'UTC')
                AND date_trunc('month', min(m.created_at) AT TIME ZONE 'UTC') = date_trunc('month', s.created_at AT TIME ZONE 'UTC')
             ORDER BY s.id LIMIT 1"
        )))
        .fetch_one(&mut c)
        .await
        .unwrap();
        row
    };
    let month: String = {
        let mut c = db.conn().await;
        sqlx::query_scalar(
            "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYYMM') FROM experiments_experimentsession WHERE id = $1",
        )
        .bind(session)
        .fetch_one(&mut c)
        .await
        .unwrap()
    };
    db.exec(&format!(
        "UPDATE experiments_experimentsession SET platform = 'matrix' WHERE id = {session}"
    ))
    .await;
    let s = etl(&db, data.path(), false).await;
    assert_eq!(s.mode, "incremental", "{:?}", s.fallback);
    let after = current_files(data.path()).await;
    let folder = format!("/team_id={team}/");
    let mut rewritten = Vec::new();
    for (f, ino) in &after {
        if same.get(f) != Some(ino) {
            rewritten.push(f.clone());
            // The session's chat tags and its chat's other messages may change too.
            let expected = f.contains(&folder)
                && (f.contains(&format!("/part-{month}-")) || f.starts_with("session_tags/"))
                || f == "_other_messages/part-0.parquet";
            assert!(
                expected,
                "{f} was rewritten, but only team {team}'s month {month} changed"
            );
        }
    }
    for t in ["sessions", "turns", "turn_slots"] {
        assert!(
            rewritten.iter().any(|f| f.starts_with(&format!("{t}/"))),
            "{t} of month {month} not rewritten: {rewritten:?}"
        );
    }

    // A tag on an old turn of another team rewrites that team's month of
    // message tags only.
    let (other_team, tagged_month): (i64, String) = {
        let mut c = db.conn().await;
        sqlx::query_as(AssertSqlSafe(format!(
            "INSERT INTO annotations_customtaggeditem (created_at, updated_at, team_id, tag_id, content_type_id, object_id)
             SELECT now(), now(), s.team_id, t.id, ct.id, m.id
             FROM chat_chatmessage m JOIN ({counted}) s ON s.chat_id = m.chat_id
             JOIN LATERAL (SELECT id FROM annotations_tag WHERE team_id = s.team_id AND category = '' ORDER BY id LIMIT 1) t ON true
             JOIN django_content_type ct ON ct.app_label = 'chat' AND ct.model = 'chatmessage'
             WHERE s.team_id <> $1 AND m.message_type = 'human'
               AND NOT EXISTS (SELECT 1 FROM annotations_customtaggeditem i WHERE i.object_id = m.id AND i.content_type_id = ct.id)
             ORDER BY m.id LIMIT 1
             RETURNING team_id, (SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYYMM') FROM chat_chatmessage WHERE id = object_id)"
        )))
        .bind(team)
        .fetch_one(&mut c)
        .await
        .unwrap()
    };
    let s = etl(&db, data.path(), false).await;
    assert_eq!(s.mode, "incremental", "{:?}", s.fallback);
    let last = current_files(data.path()).await;
    let mut rewritten = Vec::new();
    for (f, ino) in &last {
        if after.get(f) != Some(ino) {
            rewritten.push(f.clone());
        }
    }
    assert_eq!(
        rewritten,
        vec![
            "_tagged_items/part-0.parquet".to_string(),
            format!("message_tags/team_id={other_team}/part-{tagged_month}-0.parquet")
        ]
    );
    assert_equals_full(&db, data.path()).await;
    db.drop_db().await;
}

#[tokio::test]
async fn kill_9_at_any_moment_leaves_the_previous_snapshot_serving() {
    let db = TestDb::create("crash").await;
    generate::generate_into_postgres(&db.url, &gen_opts(Scale::S, 5, true))
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let path = data.path().to_str().unwrap();
    let started = std::time::Instant::now();
    let (code, _, err) = ocs_dash(&["etl", "--database-url", &db.url, "--data", path, "--full"]);
    assert_eq!(code, 0, "{err}");
    let whole_run = started.elapsed();
    let baseline = snapshot_contents(data.path()).await;
    let mut killed_mid_run = 0;
    for step in 1..=8u32 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ocs-dash"))
            .args(["etl", "--database-url", &db.url, "--data", path, "--full"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(whole_run * step / 9);
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        child.kill().ok(); // SIGKILL
        child.wait().unwrap();
        let dir = DataDir::new(data.path());
        let current = dir.require_current().await.unwrap();
        dir.manifest(&current).await.expect("the current snapshot is complete");
        let now = snapshot_contents(data.path()).await;
        assert!(
            now == baseline,
            "after a kill at step {step} the current snapshot changed"
        );
    }
    assert!(killed_mid_run >= 5, "only {killed_mid_run} kills landed inside a run");
    // The next run cleans up what the killed ones left behind.
    let (code, _, err) = ocs_dash(&[
        "etl",
        "--database-url",
        &db.url,
        "--data",
        path,
        "--full",
        "--keep",
        "1",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(DataDir::new(data.path()).versions().await.unwrap().len() <= 2);
    db.drop_db().await;
}

#[tokio::test]
async fn bad_arguments_end_with_one_line_that_says_what_to_fix() {
    let data = tempfile::tempdir().unwrap();
    let target = data.path().join("never-created");
    let t = target.to_str().unwrap();

    let (code, _, err) = ocs_dash(&[
        "etl",
        "--database-url",
        "postgres://postgres@127.0.0.1:1/ocs",
        "--data",
        t,
    ]);
    assert_eq!(code, 1);
    assert!(err.trim().starts_with("error: cannot connect to the database"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let db = TestDb::create("not_ocs").await;
    let (code, _, err) = ocs_dash(&["etl", "--database-url", &db.url, "--data", t]);
    assert_eq!(code, 1);
    assert!(err.contains("has no Open Chat Studio tables"), "{err}");
    assert!(!target.exists(), "nothing written for a bad database");

    generate::generate_into_postgres(&db.url, &gen_opts(Scale::Tiny, 1, true))
        .await
        .unwrap();
    let file = data.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let (code, _, err) = ocs_dash(&["etl", "--database-url", &db.url, "--data", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot write to the data directory"), "{err}");

    let (code, _, err) = ocs_dash(&["generate", "--database-url", &db.url, "--scale", "tiny"]);
    assert_eq!(code, 1);
    assert!(err.contains("already holds Open Chat Studio rows"), "{err}");

    let (code, _, err) = ocs_dash(&["generate", "--database-url", &db.url, "--scale", "huge"]);
    assert_eq!(code, 2, "clap rejects a bad value: {err}");
    assert!(err.contains("huge"), "{err}");
    db.drop_db().await;
}

/// Every anomaly kind, planted by hand on top of generated data: each is
/// counted exactly once more in the summary and handled per metrics.md.
#[tokio::test]
async fn hand_planted_anomalies_are_counted_and_handled() {
    let db = TestDb::create("anomalies").await;
    generate::generate_into_postgres(&db.url, &gen_opts(Scale::Tiny, 21, true))
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let before = etl(&db, data.path(), true).await.anomalies;
    // Databases from before 2026-02 allow sessions without a participant.
    db.exec(
        "ALTER TABLE experiments_experimentsession ALTER COLUMN participant_id DROP NOT NULL;
         INSERT INTO chat_chat (id, created_at, updated_at, team_id, name, metadata) VALUES
           (900001, now(), now(), 1, '', '{}'), (900002, now(), now(), 1, '', '{}'),
           (900003, now(), now(), 1, '', '{}'), (900004, now(), now(), 1, '', '{}');
         INSERT INTO experiments_experimentsession (id, created_at, updated_at, team_id, external_id, participant_id,
             status, ended_at, experiment_id, chat_id, seed_task_id, experiment_channel_id, state, platform) VALUES
           (900001, '2026-11-01T10:00:00Z', now(), 1, 'anomaly-1', NULL, 'active', NULL,
             (SELECT id FROM experiments_experiment WHERE team_id = 1 AND working_version_id IS NULL ORDER BY id LIMIT 1),
             900001, '', NULL, '{}', 'web'),
           (900002, '2026-11-01T10:00:00Z', now(), 1, 'anomaly-2',
             (SELECT id FROM experiments_participant WHERE team_id = 1 ORDER BY id LIMIT 1), 'cancelled', 'infinity',
             (SELECT id FROM experiments_experiment WHERE team_id = 1 AND working_version_id IS NULL ORDER BY id LIMIT 1),
             900002, '', NULL, '{}', 'telegram'),
           (900003, '2026-11-01T10:00:00Z', now(), 1, 'anomaly-3',
             (SELECT id FROM experiments_participant WHERE team_id = 1 ORDER BY id LIMIT 1), 'active', NULL,
             (SELECT id FROM experiments_experiment WHERE team_id = 1 AND working_version_id IS NULL ORDER BY id LIMIT 1),
             900003, '', NULL, '{}', 'matrix');
         INSERT INTO chat_chatmessage (id, created_at, updated_at, chat_id, message_type, content, translations, metadata) VALUES
           (900001, '2026-11-01T10:01:00Z', now(), 900001, 'human', 'hi', '{}', '{}'),
           (900002, '2026-11-01T10:02:00Z', now(), 900002, 'tool', 'call', '{}', '{}'),
           (900003, '2026-11-01T10:03:00Z', now(), 900002, 'human', 'hi', '{}', '{}'),
           (900004, '2026-11-01T10:04:00Z', now(), 900004, 'human', 'lost', '{}', '{}'),
           (900005, '2026-11-01T09:00:00Z', now(), 900003, 'human', 'early', '{}', '{}');
         -- A tag on a message that does not exist (dangling) and one on an
         -- existing chat (not dangling).
         INSERT INTO annotations_customtaggeditem (id, created_at, updated_at, team_id, tag_id, content_type_id, object_id)
         SELECT (SELECT max(id) FROM annotations_customtaggeditem) + n, now(), now(), 1,
                (SELECT id FROM annotations_tag WHERE team_id = 1 ORDER BY id LIMIT 1),
                (SELECT id FROM django_content_type WHERE app_label = 'chat' AND model = m), o
         FROM (VALUES (1, 'chatmessage', 999999), (2, 'chat', 900004)) v(n, m, o);",
    )
    .await;
    let after = etl(&db, data.path(), true).await.anomalies;
    let delta = |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
    assert_eq!(delta("sessions_without_participant"), 1, "{after:?}");
    assert_eq!(delta("sessions_unknown_status"), 1);
    assert_eq!(delta("infinite_timestamps"), 1);
    assert_eq!(delta("unknown_message_types"), 1);
    assert_eq!(delta("orphan_messages"), 1);
    assert_eq!(delta("sessions_unknown_platform"), 1);
    assert_eq!(delta("turns_before_session_start"), 1);
    assert_eq!(delta("tagged_items_dangling"), 1);
    let d = data.path();
    // A session without participant counts; its turn has no participant.
    assert_eq!(
        snapshot_i64(
            d,
            "SELECT count(*) FROM turns WHERE message_id = 900001 AND participant_id IS NULL"
        )
        .await,
        1
    );
    // An unknown status counts like any non-setup status; 'infinity' is read as NULL.
    assert_eq!(
        snapshot_i64(
            d,
            "SELECT count(*) FROM sessions WHERE session_id = 900002 AND counted AND ended_at IS NULL"
        )
        .await,
        1
    );
    // An unknown message type is never a turn, but is kept for incremental runs.
    assert_eq!(
        snapshot_i64(d, "SELECT count(*) FROM turns WHERE message_id = 900002").await,
        0
    );
    assert_eq!(
        snapshot_i64(
            d,
            "SELECT count(*) FROM _other_messages WHERE message_id IN (900002, 900004)"
        )
        .await,
        2
    );
    // An unknown platform is kept as it is; a turn before its session's start is a turn.
    assert_eq!(
        snapshot_i64(
            d,
            "SELECT count(*) FROM turns WHERE message_id = 900005 AND platform = 'matrix'"
        )
        .await,
        1
    );
    db.drop_db().await;
}
