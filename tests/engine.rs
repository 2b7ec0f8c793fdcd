//! The engine's cache and the ad-hoc SQL command.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ocs_dash_engine::charts::Chart;
use ocs_dash_engine::filters::Filters;
use ocs_dash_engine::snapshot::DataDir;
use ocs_dash_engine::{CacheConfig, Engine};
use ocs_dash_etl::generate::{GenOptions, Scale};
use ocs_dash_etl::progress::Progress;

fn opts(seed: u64) -> GenOptions {
    GenOptions {
        scale: Scale::Tiny,
        seed,
        end: "2026-11-20T12:00:00Z".parse().unwrap(),
        session_platform: true,
    }
}

fn last_30_days() -> (Filters, ocs_dash_engine::filters::Options) {
    Filters::parse(&[], "2026-11-20T12:00:00Z".parse().unwrap()).unwrap()
}

#[tokio::test]
async fn cache_hits_are_fast_shared_and_never_hide_a_new_snapshot() {
    let data = tempfile::tempdir().unwrap();
    let first = ocs_dash_etl::run::generate_snapshot(&DataDir::new(data.path()), &opts(1), &mut Progress::hidden())
        .await
        .unwrap();
    let engine = Arc::new(Engine::new(DataDir::new(data.path()), CacheConfig::default()));
    let (f, o) = last_30_days();
    let team = first.teams[0];

    // Concurrent identical misses compute once: every caller gets the same answer object.
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let (engine, f, o) = (engine.clone(), f.clone(), o.clone());
            tokio::spawn(async move {
                let s = engine.snapshot().await.unwrap();
                engine.chart(&s, team, Chart::Overview, &f, &o).await.unwrap().data
            })
        })
        .collect();
    let mut answers = Vec::new();
    for c in calls {
        answers.push(c.await.unwrap());
    }
    assert!(
        answers.iter().all(|a| Arc::ptr_eq(a, &answers[0])),
        "one computation shared by all"
    );

    // A hit is the same object, well under a millisecond.
    let snap = engine.snapshot().await.unwrap();
    let started = Instant::now();
    let hit = engine.chart(&snap, team, Chart::Overview, &f, &o).await.unwrap();
    let took = started.elapsed();
    assert!(Arc::ptr_eq(&hit.data, &answers[0]));
    eprintln!("cache hit in {took:?}");

    // A new snapshot is visible at once, and its answers are not the old ones.
    let second = ocs_dash_etl::run::generate_snapshot(&DataDir::new(data.path()), &opts(2), &mut Progress::hidden())
        .await
        .unwrap();
    let snap = engine.snapshot().await.unwrap();
    assert_eq!(snap.version, second.version);
    let fresh = engine.chart(&snap, team, Chart::Overview, &f, &o).await.unwrap();
    assert_eq!(fresh.snapshot.version, second.version);
    assert!(!Arc::ptr_eq(&fresh.data, &hit.data));
    let uncached = Engine::new(
        DataDir::new(data.path()),
        CacheConfig {
            ttl: Duration::ZERO,
            ..Default::default()
        },
    );
    let direct = uncached.chart(&snap, team, Chart::Overview, &f, &o).await.unwrap();
    assert_eq!(
        direct.data, fresh.data,
        "cached answer = computed answer for the new snapshot"
    );
    assert_ne!(fresh.data, hit.data, "different data, different answer");

    // With the cache off every call computes.
    let a = uncached.chart(&snap, team, Chart::Overview, &f, &o).await.unwrap();
    assert!(!Arc::ptr_eq(&a.data, &direct.data));
    assert!(uncached.cache_stats().is_none());
}

fn sql(data: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ocs-dash"))
        .arg("sql")
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn sql_is_read_only_and_sees_one_team() {
    let data = tempfile::tempdir().unwrap();
    let m = ocs_dash_etl::run::generate_snapshot(&DataDir::new(data.path()), &opts(3), &mut Progress::hidden())
        .await
        .unwrap();
    let engine = Engine::new(DataDir::new(data.path()), CacheConfig::default());
    let snap = engine.snapshot().await.unwrap();
    let (team, other) = (&snap.teams[0], &snap.teams[1]);

    // One team: its own row of `teams`, and only its turns.
    let (code, out, err) = sql(
        data.path(),
        &[
            "--team",
            &team.slug,
            "--format",
            "csv",
            "SELECT team_id, slug FROM teams",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("team_id,slug\n{},{}\n", team.id, team.slug));
    let count = |args: &[&str]| -> i64 {
        let (code, out, err) = sql(data.path(), args);
        assert_eq!(code, 0, "{err}");
        out.lines().nth(1).unwrap().parse().unwrap()
    };
    let own = count(&["--team", &team.slug, "--format", "csv", "SELECT count(*) FROM turns"]);
    let all = count(&["--all-teams", "--format", "csv", "SELECT count(*) FROM turns"]);
    let theirs = count(&[
        "--all-teams",
        "--format",
        "csv",
        &format!("SELECT count(*) FROM turns WHERE team_id = {}", other.id),
    ]);
    let by_team = count(&[
        "--all-teams",
        "--format",
        "csv",
        &format!("SELECT count(*) FROM turns WHERE team_id = {}", team.id),
    ]);
    assert_eq!(own, by_team);
    assert!(own > 0 && theirs > 0 && own < all);
    assert_eq!(m.tables["turns"] as i64, all);

    // JSON output is an array of objects.
    let (_, out, _) = sql(
        data.path(),
        &[
            "--team",
            &team.slug,
            "--format",
            "json",
            "SELECT count(*) AS n FROM sessions WHERE counted",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v[0]["n"].as_i64().unwrap() > 0);

    // Writes, DDL, statements and file reads are refused with one clear line.
    for (q, says) in [
        ("DROP TABLE turns", "DDL not supported"),
        ("CREATE TABLE x AS SELECT 1", "DDL not supported"),
        ("INSERT INTO tags VALUES (1, 'a', 'b', true)", "DML not supported"),
        ("COPY turns TO '/tmp/ocs-dash-copy.csv'", "DML not supported"),
        ("SET datafusion.execution.batch_size = 1", "not supported"),
        ("SELECT * FROM '/etc/passwd'", "not found"),
        ("SELECT nope FROM turns", "nope"),
        ("SELEC 1", "SELEC"),
    ] {
        let (code, out, err) = sql(data.path(), &["--team", &team.slug, q]);
        assert_eq!(code, 1, "{q}: {out}");
        assert!(err.starts_with("error: ") && err.contains(says), "{q}: {err}");
        assert!(
            !err.contains("stack backtrace") && !err.contains("panicked"),
            "{q}: {err}"
        );
    }
    assert!(!std::path::Path::new("/tmp/ocs-dash-copy.csv").exists());
    let (code, _, err) = sql(data.path(), &["--team", "nope", "SELECT 1"]);
    assert_eq!(code, 1);
    assert!(err.contains("no team \"nope\""), "{err}");
}

/// The rollup path and the raw path give the same answer for every chart,
/// granularity and zone (including +05:30 and +05:45), and the engine picks
/// the rollup for them.
#[tokio::test]
async fn rollup_and_raw_turns_agree_for_every_chart_and_granularity() {
    use ocs_dash_engine::charts::compute;
    use ocs_dash_engine::engine::choose_activity;
    use ocs_dash_engine::scope::{Activity, session, team_scope};
    let data = tempfile::tempdir().unwrap();
    let m = ocs_dash_etl::run::generate_snapshot(&DataDir::new(data.path()), &opts(4), &mut Progress::hidden())
        .await
        .unwrap();
    assert!(
        m.tables["turn_slots"] < m.tables["turns"],
        "the rollup is smaller than the turns"
    );
    let vdir = DataDir::new(data.path()).version_dir(&m.version);
    let now = "2026-11-20T12:00:00Z".parse().unwrap();
    let mut compared = 0;
    for zone in [
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Asia/Kolkata",
        "Asia/Kathmandu",
    ] {
        for granularity in ["hourly", "daily", "weekly", "monthly"] {
            let (start, end) = if granularity == "hourly" {
                ("2026-11-10", "2026-11-13")
            } else {
                ("2026-09-25", "2026-11-20")
            };
            let mut pairs = vec![
                ("start_date".to_string(), start.to_string()),
                ("end_date".to_string(), end.to_string()),
                ("timezone".to_string(), zone.to_string()),
                ("granularity".to_string(), granularity.to_string()),
            ];
            if zone == "Asia/Kolkata" {
                pairs.push(("channels".into(), "web,whatsapp".into()));
            }
            let (f, o) = Filters::parse(&pairs, now).unwrap();
            assert_eq!(choose_activity(&m, &f), Activity::Rollup);
            for team in &m.teams {
                let raw = team_scope(session(&Default::default()), &vdir, *team, &f, Activity::Raw)
                    .await
                    .unwrap();
                let rolled = team_scope(session(&Default::default()), &vdir, *team, &f, Activity::Rollup)
                    .await
                    .unwrap();
                for chart in Chart::ALL {
                    let a = compute(&raw, chart, &f, &o).await.unwrap();
                    let b = compute(&rolled, chart, &f, &o).await.unwrap();
                    let (a, b) = (serde_json::to_value(&a).unwrap(), serde_json::to_value(&b).unwrap());
                    assert_eq!(a, b, "{chart} {pairs:?} team {team}");
                    compared += 1;
                }
            }
        }
    }
    eprintln!("{compared} answers equal on both paths");
}

/// `ocs-dash snapshot prune/backfill/build` change only where the rollup is
/// used, never an answer.
#[tokio::test]
async fn pruned_and_backfilled_rollups_give_the_same_answers() {
    use ocs_dash_engine::engine::choose_activity;
    use ocs_dash_engine::scope::Activity;
    let data = tempfile::tempdir().unwrap();
    let m = ocs_dash_etl::run::generate_snapshot(&DataDir::new(data.path()), &opts(5), &mut Progress::hidden())
        .await
        .unwrap();
    let engine = Engine::new(
        DataDir::new(data.path()),
        CacheConfig {
            ttl: Duration::ZERO,
            ..Default::default()
        },
    );
    let now = "2026-11-20T12:00:00Z".parse().unwrap();
    let window = |s: &str, e: &str| {
        Filters::parse(&[("start_date".into(), s.into()), ("end_date".into(), e.into())], now).unwrap()
    };
    let (old, recent) = (window("2026-09-22", "2026-10-05"), window("2026-11-14", "2026-11-20"));
    let team = m.teams[0];
    let (_, before) = answers(&engine, team, &old, &recent).await;
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ocs-dash"))
            .arg("snapshot")
            .args(args)
            .arg("--data")
            .arg(data.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    let out = run(&["prune", "--keep-days", "10"]);
    assert!(out.contains("rollup covers 2026-11-11 .. unbounded"), "{out}");
    let (snap, after) = answers(&engine, team, &old, &recent).await;
    assert_ne!(snap.version, m.version);
    assert!(snap.manifest.tables["turn_slots"] < m.tables["turn_slots"]);
    assert_eq!(choose_activity(&snap.manifest, &old.0), Activity::Raw);
    assert_eq!(choose_activity(&snap.manifest, &recent.0), Activity::Rollup);
    assert_eq!(before, after, "pruning the rollup changes no answer");

    let out = run(&["backfill", "--from", "2026-09-01", "--to", "2026-10-31"]);
    assert!(out.contains("rollup covers 2026-09-01 .. 2026-10-31"), "{out}");
    let (snap, after) = answers(&engine, team, &old, &recent).await;
    assert_eq!(choose_activity(&snap.manifest, &old.0), Activity::Rollup);
    assert_eq!(choose_activity(&snap.manifest, &recent.0), Activity::Raw);
    assert_eq!(before, after, "backfilling changes no answer");

    run(&["build"]);
    let snap = engine.snapshot().await.unwrap();
    assert_eq!(
        snap.manifest.tables["turn_slots"], m.tables["turn_slots"],
        "a full build restores every slot"
    );
    let out = run(&["status"]);
    assert!(
        out.contains(&snap.version) && out.contains("unbounded .. unbounded"),
        "{out}"
    );
}

async fn answers(
    engine: &Engine,
    team: i64,
    old: &(Filters, ocs_dash_engine::filters::Options),
    recent: &(Filters, ocs_dash_engine::filters::Options),
) -> (
    Arc<ocs_dash_engine::Snapshot>,
    Vec<Arc<ocs_dash_engine::charts::ChartData>>,
) {
    let snap = engine.snapshot().await.unwrap();
    let mut out = Vec::new();
    for (f, o) in [old, recent] {
        for chart in Chart::ALL {
            out.push(engine.chart(&snap, team, chart, f, o).await.unwrap().data);
        }
    }
    (snap, out)
}

#[tokio::test]
async fn sql_prompt_runs_each_statement_and_survives_errors() {
    use std::io::Write;
    let data = tempfile::tempdir().unwrap();
    ocs_dash_etl::run::generate_snapshot(&DataDir::new(data.path()), &opts(6), &mut Progress::hidden())
        .await
        .unwrap();
    let slug = Engine::new(DataDir::new(data.path()), CacheConfig::default())
        .snapshot()
        .await
        .unwrap()
        .teams[0]
        .slug
        .clone();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ocs-dash"))
        .args(["sql", "--format", "csv", "--team", &slug, "--data"])
        .arg(data.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT 41 + 1\n  AS answer;\nSELEC oops;\nSELECT count(*) AS teams FROM teams;\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "answer\n42\nteams\n1\n", "{stderr}");
    assert!(stderr.contains("error: ") && stderr.contains("SELEC"), "{stderr}");
}

#[tokio::test]
async fn a_snapshot_of_an_older_layout_is_refused_with_what_to_run() {
    let data = tempfile::tempdir().unwrap();
    let dir = DataDir::new(data.path());
    ocs_dash_etl::run::generate_snapshot(&dir, &opts(6), &mut Progress::hidden())
        .await
        .unwrap();
    // The publication log holds one entry: the manifest just written.
    let path = std::fs::read_dir(data.path().join("manifests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(json["format"], ocs_dash_engine::snapshot::FORMAT);
    // Manifests written before the layout was recorded have no `format`.
    json.as_object_mut().unwrap().remove("format");
    std::fs::write(&path, serde_json::to_string(&json).unwrap()).unwrap();
    let err = Engine::new(dir, CacheConfig::default())
        .snapshot()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("layout 1") && err.contains("ocs-dash etl --full"), "{err}");
}
