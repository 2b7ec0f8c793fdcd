//! Ballista: a scheduler and an executor (`ocs-dash ballista-scheduler` and
//! `ocs-dash ballista-executor`, real processes on loopback ports) answer
//! every chart with the same numbers as the local engine on the same
//! snapshot, through the raw and the rollup path, in zones with and without
//! DST; the cache and team isolation work unchanged; `ocs-dash sql
//! --ballista` answers like the local prompt.
//!
//! Built only with the `ballista` feature (`cargo test --features ballista`),
//! which CI enables.
#![cfg(feature = "ballista")]

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use ocs_dash_engine::ballista::Cluster;
use ocs_dash_engine::charts::{self, Chart};
use ocs_dash_engine::filters::{Filters, Options};
use ocs_dash_engine::scope::{Activity, team_scope};
use ocs_dash_engine::snapshot::DataDir;
use ocs_dash_engine::{Backend, CacheConfig, Engine, sql};
use ocs_dash_etl::generate::{GenOptions, Scale};
use ocs_dash_etl::progress::Progress;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ocs-dash");

/// A child process killed when the test ends, pass or fail.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scheduler and one executor with two task slots, on loopback.
fn start_cluster() -> (Cluster, [Killed; 2]) {
    let scheduler = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let spawn = |args: &[String]| {
        Killed(
            Command::new(BIN)
                .args(args)
                .env("OCS_DASH_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let s = spawn(&["ballista-scheduler".into(), "--bind".into(), scheduler.to_string()]);
    let e = spawn(&[
        "ballista-executor".into(),
        "--scheduler".into(),
        scheduler.to_string(),
        "--bind".into(),
        SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())).to_string(),
        "--grpc-port".into(),
        free_port().to_string(),
        "--vcores".into(),
        "2".into(),
    ]);
    (Cluster::new(&format!("df://{scheduler}")).unwrap(), [s, e])
}

/// Waits until the cluster runs a query (the executor has registered).
async fn wait_ready(cluster: &Cluster) {
    let started = Instant::now();
    loop {
        let attempt = async {
            let ctx = cluster.context().await?;
            let batches = ctx.sql("SELECT 41 + 1").await?.collect().await?;
            Ok::<_, ocs_dash_engine::Error>(batches[0].column(0).as_primitive::<Int64Type>().value(0))
        };
        match tokio::time::timeout(Duration::from_secs(20), attempt).await {
            Ok(Ok(v)) => {
                assert_eq!(v, 42);
                return;
            }
            Ok(Err(e)) if started.elapsed() < Duration::from_secs(120) => {
                eprintln!("cluster not ready yet: {e}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Ok(Err(e)) => panic!("the Ballista cluster never answered: {e}"),
            Err(_) => panic!("the Ballista cluster did not answer within 20 s"),
        }
    }
}

/// Equal JSON, floats within 1e-9 relative (a distributed plan may sum in another order).
fn same(a: &Value, b: &Value, path: &str) -> Result<(), String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            if (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0) {
                Ok(())
            } else {
                Err(format!("{path}: {x} vs {y}"))
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .try_for_each(|(i, (x, y))| same(x, y, &format!("{path}[{i}]"))),
        (Value::Object(x), Value::Object(y)) if x.keys().eq(y.keys()) => {
            x.iter().try_for_each(|(k, v)| same(v, &y[k], &format!("{path}.{k}")))
        }
        _ if a == b => Ok(()),
        _ => Err(format!("{path}:\n local:    {a}\n ballista: {b}")),
    }
}

fn filters(query: &str) -> (Filters, Options) {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    Filters::parse(&pairs, "2026-11-20T12:00:00Z".parse().unwrap()).unwrap()
}

fn no_cache() -> CacheConfig {
    CacheConfig {
        ttl: Duration::ZERO,
        ..CacheConfig::default()
    }
}

async fn own_chatbots(engine: &Engine, team: i64) -> Vec<i64> {
    let snapshot = engine.snapshot().await.unwrap();
    let ctx = sql::adhoc_context(&snapshot, Some(team)).await.unwrap();
    let (_, batches) = sql::run_readonly(&ctx, "SELECT chatbot_id FROM chatbots ORDER BY chatbot_id")
        .await
        .unwrap();
    batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ballista_answers_every_chart_like_the_local_engine() {
    let data = tempfile::tempdir().unwrap();
    let opts = GenOptions {
        scale: Scale::Tiny,
        seed: 6,
        end: "2026-11-20T12:00:00Z".parse().unwrap(),
        session_platform: true,
    };
    let manifest = ocs_dash_etl::run::generate_snapshot(&DataDir::new(data.path()), &opts, &mut Progress::hidden())
        .await
        .unwrap();
    assert!(manifest.rollup.is_some(), "the generated snapshot has a rollup");
    let (cluster, _processes) = start_cluster();
    wait_ready(&cluster).await;

    let local = Engine::new(DataDir::new(data.path()), no_cache());
    let remote = Engine::new(DataDir::new(data.path()), no_cache()).with_backend(Backend::Ballista(cluster.clone()));
    let snapshot = local.snapshot().await.unwrap();
    let (team, other) = (manifest.teams[0], manifest.teams[1]);
    let bots = own_chatbots(&local, team).await;
    let foreign = own_chatbots(&local, other).await;
    assert!(!bots.is_empty() && !foreign.is_empty());

    let cases = [
        // 30 days, daily, UTC.
        "start_date=2026-10-22&end_date=2026-11-20".to_string(),
        // Berlin's fall-back day (25 hours), hourly.
        "start_date=2026-10-24&end_date=2026-10-26&timezone=Europe/Berlin&granularity=hourly".to_string(),
        // New York across its fall-back, daily, one chatbot.
        format!(
            "start_date=2026-10-15&end_date=2026-11-15&timezone=America/New_York&experiments={}",
            bots[0]
        ),
        // Half-hour zone, hourly, two channels.
        "start_date=2026-11-18&end_date=2026-11-20&timezone=Asia/Kolkata&granularity=hourly&channels=web,whatsapp"
            .to_string(),
        // A year by week, in Berlin, with chatbot and channel filters.
        format!(
            "start_date=2025-11-21&end_date=2026-11-20&timezone=Europe/Berlin&granularity=weekly&experiments={},{}&channels=web",
            bots[0],
            bots[bots.len() - 1]
        ),
        // Months in New York; bot ordering options.
        "start_date=2026-01-01&end_date=2026-11-20&timezone=America/New_York&granularity=monthly&order_by=messages&order_dir=asc&page_size=3&limit=4".to_string(),
        // Another team's chatbot: matches nothing here, on both sides.
        format!("start_date=2026-10-22&end_date=2026-11-20&experiments={}", foreign[0]),
    ];
    let mut compared = 0;
    for case in &cases {
        let (f, o) = filters(case);
        for chart in Chart::ALL {
            let a = local.chart(&snapshot, team, chart, &f, &o).await.unwrap();
            let b = remote
                .chart(&snapshot, team, chart, &f, &o)
                .await
                .unwrap_or_else(|e| panic!("{chart} {case} on Ballista: {e}"));
            let (a, b) = (serde_json::to_value(&a).unwrap(), serde_json::to_value(&b).unwrap());
            same(&a, &b, &format!("{chart}?{case}")).unwrap();
            compared += 1;
        }
        // Both activity paths, whatever the engine would pick.
        for activity in [Activity::Raw, Activity::Rollup] {
            let runtime = Default::default();
            let here = Backend::Local.context(&runtime).await.unwrap();
            let here = team_scope(here, &snapshot.dir, team, &f, activity).await.unwrap();
            let there = remote.backend().context(&runtime).await.unwrap();
            let there = team_scope(there, &snapshot.dir, team, &f, activity).await.unwrap();
            for chart in [Chart::MessageVolume, Chart::SessionAnalytics] {
                let a = charts::compute(&here, chart, &f, &o).await.unwrap();
                let b = charts::compute(&there, chart, &f, &o).await.unwrap();
                let (a, b) = (serde_json::to_value(&a).unwrap(), serde_json::to_value(&b).unwrap());
                same(&a, &b, &format!("{chart} {activity:?}?{case}")).unwrap();
            }
        }
    }
    assert_eq!(compared, cases.len() * Chart::ALL.len());

    // The foreign chatbot case is empty, not the other team's numbers.
    let (f, o) = filters(&cases[6]);
    let overview = serde_json::to_value(remote.chart(&snapshot, team, Chart::Overview, &f, &o).await.unwrap()).unwrap();
    assert_eq!(overview["data"]["total_messages"], 0);
    assert_eq!(overview["data"]["total_chatbots"], 0);
    // And the charts have data at all (the comparison is not of empties).
    let (f, o) = filters(&cases[0]);
    let overview = serde_json::to_value(remote.chart(&snapshot, team, Chart::Overview, &f, &o).await.unwrap()).unwrap();
    assert!(overview["data"]["total_messages"].as_i64().unwrap() > 0);

    // The result cache sits above the backend, unchanged.
    let cached =
        Engine::new(DataDir::new(data.path()), CacheConfig::default()).with_backend(Backend::Ballista(cluster.clone()));
    let first = cached.chart(&snapshot, team, Chart::Overview, &f, &o).await.unwrap();
    let again = cached.chart(&snapshot, team, Chart::Overview, &f, &o).await.unwrap();
    assert!(Arc::ptr_eq(&first.data, &again.data));
    assert_eq!(cached.cache_counts().hits, 1);
}

fn sql_cli(data: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .env("OCS_DASH_LOG", "warn")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_on_ballista_sees_one_team_and_stays_read_only() {
    let data = tempfile::tempdir().unwrap();
    let opts = GenOptions {
        scale: Scale::Tiny,
        seed: 7,
        end: "2026-11-20T12:00:00Z".parse().unwrap(),
        session_platform: true,
    };
    ocs_dash_etl::run::generate_snapshot(&DataDir::new(data.path()), &opts, &mut Progress::hidden())
        .await
        .unwrap();
    let (cluster, _processes) = start_cluster();
    wait_ready(&cluster).await;
    let snapshot = Engine::new(DataDir::new(data.path()), no_cache())
        .snapshot()
        .await
        .unwrap();
    let slug = snapshot.teams[0].slug.clone();
    let query = "SELECT (SELECT count(*) FROM teams) AS teams, count(*) AS turns, \
                 count(DISTINCT session_id) AS sessions, max(created_at) AS last FROM turns";
    let (code, local, err) = sql_cli(data.path(), &["--team", &slug, "--format", "csv", query]);
    assert_eq!(code, 0, "{err}");
    let (code, remote, err) = sql_cli(
        data.path(),
        &["--team", &slug, "--format", "csv", "--ballista", cluster.url(), query],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(local, remote);
    let row: Vec<&str> = local.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(row[0], "1", "the team's own row of teams only");
    assert!(row[1].parse::<i64>().unwrap() > 0);

    // Refusals happen before anything reaches the cluster.
    let (code, _, err) = sql_cli(
        data.path(),
        &["--team", &slug, "--ballista", cluster.url(), "DROP TABLE turns"],
    );
    assert_eq!(code, 1);
    assert!(err.starts_with("error: DDL not supported"), "{err}");
    // A malformed cluster URL is a one-line error.
    let (code, _, err) = sql_cli(
        data.path(),
        &["--team", &slug, "--ballista", "http://nowhere", "SELECT 1"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("df://HOST:PORT"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_ballista_answers_over_http_like_the_local_engine() {
    let data = tempfile::tempdir().unwrap();
    let opts = GenOptions {
        scale: Scale::Tiny,
        seed: 8,
        end: chrono::Utc::now(),
        session_platform: true,
    };
    ocs_dash_etl::run::generate_snapshot(&DataDir::new(data.path()), &opts, &mut Progress::hidden())
        .await
        .unwrap();
    let (cluster, _processes) = start_cluster();
    wait_ready(&cluster).await;
    let local = Engine::new(DataDir::new(data.path()), no_cache());
    let snapshot = local.snapshot().await.unwrap();
    let (team, other) = (&snapshot.teams[0], &snapshot.teams[1]);
    let data_s = data.path().to_str().unwrap();
    let out = Command::new(BIN)
        .args([
            "keys", "create", "--team", &team.slug, "--user", "ballista", "--data", data_s,
        ])
        .env("OCS_DASH_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();

    let port = free_port();
    let _server = Killed(
        Command::new(BIN)
            .args(["serve", "--data", data_s, "--bind", &format!("127.0.0.1:{port}")])
            .args(["--cache-ttl", "0", "--ballista", cluster.url()])
            .env("OCS_DASH_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let started = Instant::now();
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "server did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let query = "date_range=30&timezone=Europe/Berlin&granularity=daily";
    let (f, o) = Filters::parse(
        &form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect::<Vec<_>>(),
        chrono::Utc::now(),
    )
    .unwrap();
    for chart in [Chart::Overview, Chart::MessageVolume, Chart::UserEngagement] {
        let r = http
            .get(format!("{base}/a/{}/dashboard/api/{chart}/?{query}", team.slug))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{chart}");
        let body: Value = r.json().await.unwrap();
        let expected = serde_json::to_value(local.chart(&snapshot, team.id, chart, &f, &o).await.unwrap()).unwrap();
        same(&expected["data"], &body["data"], chart.name()).unwrap();
    }
    // Another team's dashboard stays out of reach.
    let r = http
        .get(format!("{base}/a/{}/dashboard/api/overview/?{query}", other.slug))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
