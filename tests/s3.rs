//! Snapshots on S3: a real S3-compatible server (moto, from PyPI) on
//! loopback, started by each test. The ETL into `s3://`, every chart equal
//! to the local-disk path on the same data, a second run, `kill -9` of
//! the real binary mid-run, the rollup commands and pruning, and the
//! publication log's compare-and-swap.
//!
//! `scripts/test.sh` installs `moto[server]` into `target/moto-venv`;
//! `OCS_DASH_MOTO_SERVER` may name another `moto_server` executable.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestDb, contents_of};
use ocs_dash_engine::charts::Chart;
use ocs_dash_engine::filters::Filters;
use ocs_dash_engine::snapshot::DataDir;
use ocs_dash_engine::{CacheConfig, Engine, Error};
use ocs_dash_etl::generate::{self, GenOptions, Scale};
use ocs_dash_etl::progress::Progress;
use ocs_dash_etl::run::{EtlOptions, Summary, run_etl};
use serde_json::Value;

/// A moto S3 server on a free loopback port, stopped on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Moto {
        let exe = std::env::var("OCS_DASH_MOTO_SERVER").map_or_else(
            |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/moto-venv/bin/moto_server"),
            PathBuf::from,
        );
        assert!(
            exe.exists(),
            "{} not found: run scripts/test.sh (it installs moto[server] into target/moto-venv) \
             or set OCS_DASH_MOTO_SERVER",
            exe.display()
        );
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(&exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "moto did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// The `AWS_*` settings that point a client at this server.
    fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// A new empty bucket.
    async fn bucket(&self, name: &str) {
        let response = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "creating bucket {name}: {}",
            response.status()
        );
    }

    fn data(&self, url: &str) -> DataDir {
        DataDir::open_with_env(url, self.env()).unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn gen_opts(scale: Scale, seed: u64) -> GenOptions {
    GenOptions {
        scale,
        seed,
        end: "2026-11-20T12:00:00Z".parse().unwrap(),
        session_platform: true,
    }
}

async fn etl(db: &TestDb, data: &DataDir, full: bool) -> Summary {
    let opts = EtlOptions {
        database_url: db.url.clone(),
        data: data.clone(),
        full,
        keep: 1,
    };
    run_etl(&opts, &mut Progress::hidden()).await.unwrap()
}

/// The real binary with the moto settings in its environment.
fn ocs_dash(moto: &Moto, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ocs-dash"))
        .args(args)
        .envs(moto.env())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Filter sets every chart is asked with: the default window, a custom
/// daily window in a half-hour zone, hourly days, and a channel filter.
fn filter_sets() -> Vec<Vec<(String, String)>> {
    let p = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    vec![
        p(&[]),
        p(&[
            ("date_range", "custom"),
            ("start_date", "2026-10-01"),
            ("end_date", "2026-11-20"),
            ("timezone", "Asia/Kolkata"),
        ]),
        p(&[
            ("date_range", "custom"),
            ("start_date", "2026-11-17"),
            ("end_date", "2026-11-19"),
            ("granularity", "hourly"),
            ("timezone", "Europe/Berlin"),
        ]),
        p(&[("date_range", "90"), ("granularity", "weekly"), ("channels", "web")]),
    ]
}

/// Every chart for the first `teams` teams and each filter set.
async fn charts(data: &DataDir, teams: usize, sets: &[Vec<(String, String)>]) -> Vec<Value> {
    let started = Instant::now();
    let engine = Engine::new(
        data.clone(),
        CacheConfig {
            ttl: Duration::ZERO,
            ..Default::default()
        },
    );
    let snapshot = engine.snapshot().await.unwrap();
    let now = snapshot.manifest.as_of;
    let mut out = Vec::new();
    for team in snapshot.teams.iter().take(teams) {
        for pairs in sets {
            let (filters, options) = Filters::parse(pairs, now).unwrap();
            for chart in Chart::ALL {
                let r = engine
                    .chart(&snapshot, team.id, chart, &filters, &options)
                    .await
                    .unwrap();
                out.push(serde_json::json!({"team": team.id, "chart": chart, "data": r.data}));
            }
        }
    }
    eprintln!(
        "{} charts from {} in {:?}",
        out.len(),
        data.location(),
        started.elapsed()
    );
    out
}

#[tokio::test]
async fn etl_into_s3_answers_every_chart_like_local_disk_also_on_the_next_run() {
    let moto = Moto::start();
    moto.bucket("snapshots").await;
    let db = TestDb::create("s3_etl").await;
    generate::generate_into_postgres(&db.url, &gen_opts(Scale::Tiny, 11))
        .await
        .unwrap();
    let s3 = moto.data("s3://snapshots/ocs/prod");
    let local_dir = tempfile::tempdir().unwrap();
    let local = DataDir::new(local_dir.path());

    let on_s3 = etl(&db, &s3, true).await;
    etl(&db, &local, true).await;
    assert_eq!(s3.require_current().await.unwrap(), on_s3.version);
    assert_eq!(
        contents_of(&s3).await,
        contents_of(&local).await,
        "same tables on S3 and disk"
    );
    // Two teams (debug-build DataFusion takes a while per chart), every chart, four filter sets.
    let answers = charts(&s3, 2, &filter_sets()).await;
    assert_eq!(answers.len(), 2 * 4 * Chart::ALL.len());
    assert!(
        answers == charts(&local, 2, &filter_sets()).await,
        "a chart differs between S3 and local disk"
    );

    // One more day. On disk the run is incremental (rewrites the changed
    // files, links the rest); into S3 it reads everything and says why.
    generate::simulate_day(&db.url, 2).await.unwrap();
    let next = etl(&db, &s3, false).await;
    assert_eq!(next.mode, "full");
    assert!(
        next.fallback.as_deref().unwrap_or("").contains("object store"),
        "{:?}",
        next.fallback
    );
    assert_eq!(etl(&db, &local, false).await.mode, "incremental");
    assert_eq!(contents_of(&s3).await, contents_of(&local).await);
    let sets = &filter_sets()[..1];
    assert!(charts(&s3, 2, sets).await == charts(&local, 2, sets).await);
    // keep = 1: the current version and one before it.
    assert_eq!(s3.versions().await.unwrap(), vec![on_s3.version, next.version]);

    // The same snapshot through the CLI: status and ad-hoc SQL.
    let url = "s3://snapshots/ocs/prod";
    let (code, out, err) = ocs_dash(&moto, &["snapshot", "status", "--data", url]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&s3.require_current().await.unwrap()), "{out}");
    let snapshot = Engine::new(s3.clone(), CacheConfig::default())
        .snapshot()
        .await
        .unwrap();
    let team = &snapshot.teams[0];
    let turns = snapshot.manifest.tables["turns"];
    let (code, out, err) = ocs_dash(
        &moto,
        &[
            "sql",
            "--data",
            url,
            "--all-teams",
            "--format",
            "csv",
            "SELECT count(*) AS n FROM turns",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("n\n{turns}\n"));
    let (code, _, err) = ocs_dash(
        &moto,
        &[
            "sql",
            "--data",
            url,
            "--team",
            &team.slug,
            "SELECT count(*) FROM sessions",
        ],
    );
    assert_eq!(code, 0, "{err}");

    // The server over S3 (its metadata store and pseudonym key in --state).
    let state = tempfile::tempdir().unwrap();
    let (code, _, err) = ocs_dash(&moto, &["serve", "--data", url, "--bind", "127.0.0.1:0"]);
    assert_eq!(code, 1);
    assert!(err.contains("pass --state DIR"), "{err}");
    let mut server = Command::new(env!("CARGO_BIN_EXE_ocs-dash"))
        .args(["serve", "--data", url, "--bind", "127.0.0.1:0", "--state"])
        .arg(state.path())
        .envs(moto.env())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(server.stdout.take().unwrap()), &mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("serving on ")
        .expect("the bound address")
        .to_string();
    let health: Value = reqwest::get(format!("{base}/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    server.kill().ok();
    server.wait().ok();
    assert_eq!(health["snapshot"], Value::from(snapshot.version.clone()), "{health}");
    assert!(state.path().join("meta.sqlite").exists());
    db.drop_db().await;
}

#[tokio::test]
async fn kill_9_mid_etl_on_s3_leaves_the_previous_snapshot_serving() {
    let moto = Moto::start();
    moto.bucket("crash").await;
    let db = TestDb::create("s3_crash").await;
    generate::generate_into_postgres(&db.url, &gen_opts(Scale::Tiny, 5))
        .await
        .unwrap();
    let url = "s3://crash/data";
    let s3 = moto.data(url);
    let etl_args = ["etl", "--database-url", &db.url, "--data", url, "--full"];
    // Staged source rows go to the temporary folder: this test's own.
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (code, _, err) = ocs_dash(&moto, &etl_args);
    assert_eq!(code, 0, "{err}");
    let whole_run = started.elapsed();
    let baseline = contents_of(&s3).await;
    let sets = &filter_sets()[..1];
    let answers = charts(&s3, 1, sets).await;
    let version = s3.require_current().await.unwrap();
    let mut killed_mid_run = 0;
    for step in 1..=5u32 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ocs-dash"))
            .args(etl_args)
            .envs(moto.env())
            .env("TMPDIR", tmp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(whole_run * step / 6);
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        child.kill().ok(); // SIGKILL
        child.wait().unwrap();
        let current = s3.require_current().await.unwrap();
        if current != version {
            // The run finished before the kill: it published a whole new version.
            assert!(current > version);
        }
        assert!(
            contents_of(&s3).await == baseline,
            "after a kill at step {step} the data changed"
        );
        assert!(
            charts(&s3, 1, sets).await == answers,
            "after a kill at step {step} a chart changed"
        );
    }
    assert!(killed_mid_run >= 3, "only {killed_mid_run} kills landed inside a run");
    // The next complete run publishes, and its prune removes the leftovers.
    let mut args = etl_args.to_vec();
    args.extend(["--keep", "1"]);
    let (code, _, err) = ocs_dash(&moto, &args);
    assert_eq!(code, 0, "{err}");
    assert!(s3.versions().await.unwrap().len() <= 2);
    assert!(contents_of(&s3).await == baseline);
    db.drop_db().await;
}

#[tokio::test]
async fn rollup_build_backfill_and_prune_on_s3_change_no_answer() {
    let moto = Moto::start();
    moto.bucket("rollups").await;
    let url = "s3://rollups/x";
    let s3 = moto.data(url);
    ocs_dash_etl::run::generate_snapshot(&s3, &gen_opts(Scale::Tiny, 8), &mut Progress::hidden())
        .await
        .unwrap();
    // The default window (inside the pruned rollup's coverage) and 90 days (reaching outside it).
    let sets = [filter_sets()[0].clone(), filter_sets()[3].clone()];
    let answers = charts(&s3, 1, &sets).await;
    let status = |moto: &Moto| {
        let (code, out, err) = ocs_dash(moto, &["snapshot", "status", "--data", url]);
        assert_eq!(code, 0, "{err}");
        out
    };
    assert!(status(&moto).contains("rollup covers unbounded .. unbounded"));

    let (code, out, err) = ocs_dash(
        &moto,
        &["snapshot", "prune", "--data", url, "--keep-days", "30", "--keep", "1"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("rollup covers 2026-10-22 .. unbounded"), "{out}");
    assert!(
        charts(&s3, 1, &sets).await == answers,
        "pruning the rollup changed an answer"
    );
    assert_eq!(
        s3.versions().await.unwrap().len(),
        2,
        "keep 1: the current version and one before it"
    );

    let (code, out, err) = ocs_dash(
        &moto,
        &[
            "snapshot",
            "backfill",
            "--data",
            url,
            "--from",
            "2026-09-01",
            "--to",
            "2026-11-20",
            "--keep",
            "1",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("rollup covers 2026-09-01 .. 2026-11-20"), "{out}");
    assert!(charts(&s3, 1, &sets).await == answers, "a backfill changed an answer");

    let (code, out, err) = ocs_dash(&moto, &["snapshot", "build", "--data", url, "--keep", "0"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("rollup covers unbounded .. unbounded"), "{out}");
    assert!(charts(&s3, 1, &sets).await == answers);
    assert_eq!(
        s3.versions().await.unwrap().len(),
        1,
        "keep 0: only the current version"
    );
    assert!(status(&moto).contains(&s3.require_current().await.unwrap()));
}

#[tokio::test]
async fn publishing_is_compare_and_swap_on_s3_and_on_disk() {
    let moto = Moto::start();
    moto.bucket("cas").await;
    let local_dir = tempfile::tempdir().unwrap();
    for dir in [moto.data("s3://cas"), DataDir::new(local_dir.path())] {
        let first = ocs_dash_etl::run::generate_snapshot(&dir, &gen_opts(Scale::Tiny, 3), &mut Progress::hidden())
            .await
            .unwrap();
        let head = dir.require_head().await.unwrap();
        assert_eq!(head.manifest.version, first.version);
        // Two writers built on the same head: the first publishes, the second is refused.
        let (mut a, mut b) = (first.clone(), first.clone());
        for m in [&mut a, &mut b] {
            m.version = DataDir::new_version_name(chrono::Utc::now());
            let files = dir
                .version_dir(&m.version)
                .copy_from(&dir.version_dir(&first.version), |_| true)
                .await
                .unwrap();
            assert!(files >= 10, "every table has a file: {files}");
        }
        assert_eq!(dir.publish(&a, Some(head.seq)).await.unwrap(), head.seq + 1);
        let refused = dir.publish(&b, Some(head.seq)).await.unwrap_err();
        assert!(matches!(refused, Error::Conflict(_)), "{refused}");
        assert_eq!(dir.require_current().await.unwrap(), a.version, "{}", dir.location());
        // A reader that loaded the old head sees the new one.
        assert!(dir.published_after(head.seq).await.unwrap());
        assert!(!dir.published_after(head.seq + 1).await.unwrap());
    }
}
