//! End to end with the real binary: `generate` into a fresh Postgres, `etl`,
//! `keys create`, `serve` (metadata in another Postgres database, given by
//! environment variable), real HTTP, then SIGTERM while a request is in
//! flight and a clean exit.

mod api_support;
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use api_support::{assert_close, pairs};
use chrono::{Days, Utc};
use common::TestDb;
use ocs_dash_engine::charts::Chart;
use ocs_dash_engine::filters::Filters;
use ocs_dash_engine::snapshot::DataDir;
use ocs_dash_engine::{CacheConfig, Engine};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_ocs-dash");

fn run(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .env("OCS_DASH_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ocs-dash {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn engine_answer(data: &Path, team: i64, chart: Chart, query: &str) -> Value {
    let engine = Engine::new(
        DataDir::new(data),
        CacheConfig {
            ttl: Duration::ZERO,
            ..CacheConfig::default()
        },
    );
    let snapshot = engine.snapshot().await.unwrap();
    let (filters, options) = Filters::parse(&pairs(query), Utc::now()).unwrap();
    serde_json::to_value(engine.chart(&snapshot, team, chart, &filters, &options).await.unwrap()).unwrap()
}

#[tokio::test]
async fn the_binary_serves_real_http_and_stops_cleanly() {
    let source = TestDb::create("api_e2e_src").await;
    let meta = TestDb::create("api_e2e_meta").await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();

    run(
        &[
            "generate",
            "--database-url",
            &source.url,
            "--scale",
            "tiny",
            "--seed",
            "5",
        ],
        &[],
    );
    run(&["etl", "--database-url", &source.url, "--data", data_s], &[]);
    let snapshot = Engine::new(DataDir::new(&data), CacheConfig::default())
        .snapshot()
        .await
        .unwrap();
    let (team_a, team_b) = (snapshot.teams[0].clone(), snapshot.teams[1].clone());

    let meta_env = [("OCS_DASH_META_URL", meta.url.as_str())];
    let key = run(
        &[
            "keys",
            "create",
            "--team",
            &team_a.slug,
            "--user",
            "e2e",
            "--data",
            data_s,
        ],
        &meta_env,
    );
    let key = key.trim().to_string();
    assert!(key.starts_with("ocsd_") && key.len() == 69, "{key}");
    let listed: Value = serde_json::from_str(&run(&["keys", "list", "--json", "--data", data_s], &meta_env)).unwrap();
    assert_eq!(listed[0]["team_slug"], team_a.slug.as_str());
    assert_eq!(listed[0]["user"], "e2e");
    assert!(!listed.to_string().contains(&key[5..]), "keys list never shows a key");
    // An unknown team is refused with the known ones named.
    let out = Command::new(BIN)
        .args(["keys", "create", "--team", "nope", "--user", "x", "--data", data_s])
        .envs(meta_env)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&team_a.slug));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log_path = dir.path().join("serve.log");
    let mut server = Command::new(BIN)
        .args([
            "serve",
            "--data",
            data_s,
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--cache-ttl",
            "90s",
        ])
        .envs(meta_env)
        .env("OCS_DASH_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status() == 200
        {
            let health: Value = r.json().await.unwrap();
            assert_eq!(health["snapshot"], snapshot.version.as_str());
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "server did not come up");
        assert!(
            server.try_wait().unwrap().is_none(),
            "server exited: {}",
            std::fs::read_to_string(&log_path).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let today = Utc::now().date_naive();
    let window = format!(
        "date_range=custom&start_date={}&end_date={today}",
        today - Days::new(29)
    );
    let get = |path: String| {
        http.get(format!("{base}/a/{}/dashboard/{path}", team_a.slug))
            .bearer_auth(&key)
            .send()
    };
    for (chart, query) in [
        (Chart::Overview, window.clone()),
        (
            Chart::MessageVolume,
            format!("{window}&timezone=Asia/Kolkata&granularity=weekly"),
        ),
        (
            Chart::BotPerformance,
            format!("{window}&order_by=sessions&order_dir=asc&page_size=3"),
        ),
        (Chart::ChannelBreakdown, format!("{window}&channels=web,whatsapp")),
    ] {
        let r = get(format!("api/{chart}/?{query}")).await.unwrap();
        assert_eq!(r.status(), 200, "{chart}");
        let body: Value = r.json().await.unwrap();
        assert_close(
            &body,
            &engine_answer(&data, team_a.id, chart, &query).await,
            chart.name(),
        );
    }
    let overview: Value = get(format!("api/overview?{window}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(overview["data"]["total_messages"].as_i64().unwrap() > 0, "{overview}");

    // Errors over the wire.
    let r = http
        .get(format!("{base}/a/{}/dashboard/api/overview/", team_a.slug))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!("{base}/a/{}/dashboard/api/overview/", team_b.slug))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = get("api/overview/?timezone=Nowhere/City".into()).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["parameter"], "timezone");

    // An export and a preset, written to the Postgres metadata store.
    let r = http
        .post(format!("{base}/a/{}/dashboard/export/", team_a.slug))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(json!({"chart": "user-engagement", "format": "csv", "filters": {"date_range": "30"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=")
    );
    let csv = r.text().await.unwrap();
    assert!(csv.starts_with("section,rank,participant,"), "{csv}");
    let r = http
        .post(format!("{base}/a/{}/dashboard/filters/save/", team_a.slug))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(json!({"name": "e2e", "filters": {"date_range": "7"}, "is_default": true}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains(&format!("ocs_dash_snapshot_info{{version=\"{}\"}} 1", snapshot.version)));
    assert!(metrics.contains("ocs_dash_cache_misses_total"));

    // SIGTERM with a request in flight: it is answered, then the process exits 0.
    let slow = tokio::spawn(
        http.get(format!(
            "{base}/a/{}/dashboard/api/user-engagement/?{window}&timezone=America/New_York&limit=100",
            team_a.slug
        ))
        .bearer_auth(&key)
        .send(),
    );
    tokio::time::sleep(Duration::from_millis(30)).await;
    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let r = slow.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["chart"], "user-engagement");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "server did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(log.contains("shutting down") && log.contains("\"stopped\""), "{log}");
    assert!(log.contains("\"route\":\"/a/{team}/dashboard/api/{chart}\""), "{log}");
    assert!(!log.contains(&key[5..]), "the log never holds a key");

    // What the server wrote to the metadata store: the audit log and the preset.
    let audited = meta
        .scalar_i64("SELECT count(*) FROM audit_log WHERE user_name = 'e2e' AND action IN ('chart', 'export')")
        .await;
    assert_eq!(
        audited,
        4 + 1 + 1 + 1,
        "four charts, the overview again, the export, the request in flight"
    );
    assert_eq!(
        meta.scalar_i64("SELECT count(*) FROM presets WHERE is_default = 1")
            .await,
        1
    );

    // Revoking through the CLI.
    let id = listed[0]["id"].as_i64().unwrap().to_string();
    run(&["keys", "revoke", &id, "--data", data_s], &meta_env);
    let listed: Value = serde_json::from_str(&run(&["keys", "list", "--json", "--data", data_s], &meta_env)).unwrap();
    assert!(listed[0]["revoked_at"].is_string());

    source.drop_db().await;
    meta.drop_db().await;
}

#[tokio::test]
async fn demo_generates_creates_a_key_serves_and_prints_a_sign_in_link() {
    use std::io::{BufRead, BufReader};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();

    // --no-serve only generates.
    let out = run(&["demo", "--no-serve", "--scale", "tiny", "--data", data_s], &[]);
    assert!(out.contains("generated snapshot"), "{out}");
    assert!(DataDir::new(&data).current().await.unwrap().is_some());
    assert!(!data.join("meta.sqlite").exists(), "no key, no store");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut demo = Command::new(BIN)
        .args(["demo", "--scale", "tiny", "--data", data_s])
        .env("OCS_DASH_BIND", format!("127.0.0.1:{port}"))
        .env("OCS_DASH_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let link = loop {
        let line = lines.next().expect("demo printed its sign-in link").unwrap();
        if let Some(link) = line.strip_prefix("sign in with: ") {
            break link.trim().to_string();
        }
    };
    assert!(
        link.starts_with(&format!("http://127.0.0.1:{port}/login?key=ocsd_")),
        "{link}"
    );

    // The link signs the browser in and leads to a dashboard that renders.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(&link).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with("/a/") && location.ends_with("/dashboard/"),
        "{location}"
    );
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = http
        .get(format!("http://127.0.0.1:{port}{location}"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<span data-testid=\"user\">demo</span>"));
    let js = http
        .get(format!("http://127.0.0.1:{port}/static/dashboard.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.headers()["content-type"], "text/javascript; charset=utf-8");

    Command::new("kill")
        .args(["-TERM", &demo.id().to_string()])
        .status()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = demo.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "demo did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn sigterm_under_load_loses_no_audit_row() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    run(&["demo", "--no-serve", "--scale", "tiny", "--data", data_s], &[]);
    let snapshot = Engine::new(DataDir::new(&data), CacheConfig::default())
        .snapshot()
        .await
        .unwrap();
    let team = snapshot.teams[0].slug.clone();
    let key = run(
        &["keys", "create", "--team", &team, "--user", "load", "--data", data_s],
        &[],
    )
    .trim()
    .to_string();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(BIN)
        .args(["serve", "--data", data_s, "--bind", &format!("127.0.0.1:{port}")])
        .env("OCS_DASH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let started = Instant::now();
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Eight clients read charts (cache hits after the first of each) until
    // the server goes away; each counts its 200s. A bounded loop: at most
    // 20,000 requests per client.
    const CLIENTS: usize = 8;
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (http, base, team, key, served) = (
            reqwest::Client::new(),
            base.clone(),
            team.clone(),
            key.clone(),
            served.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut ok = 0usize;
            for i in 0..20_000 {
                let chart = Chart::ALL[(c + i) % Chart::ALL.len()];
                let r = http
                    .get(format!("{base}/a/{team}/dashboard/api/{chart}/?date_range=90"))
                    .bearer_auth(&key)
                    .send()
                    .await;
                // An error means the server stopped (also while reading the body).
                let Ok(r) = r else { break };
                assert_eq!(r.status(), 200, "while serving");
                if r.bytes().await.is_err() {
                    break;
                }
                ok += 1;
                served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            ok
        }));
    }
    // SIGTERM once the load is well under way.
    while served.load(std::sync::atomic::Ordering::Relaxed) < 2_000 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the load did not get going"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut ok = 0;
    for c in clients {
        ok += c.await.unwrap();
    }
    let status = server.wait().unwrap();
    assert!(status.success(), "{status:?}");

    // Every answer that went out has its row; a request whose answer was
    // cut off by the shutdown may have one too (at most one per client).
    let store = ocs_dash_api::store::Store::open_for(&data, None).await.unwrap();
    let log = store.audit_log(i64::MAX).await.unwrap();
    store.close().await;
    let rows = log.iter().filter(|e| e.action == "chart" && e.user == "load").count();
    assert!(ok >= 2_000, "{ok}");
    assert!(rows >= ok && rows <= ok + CLIENTS, "{rows} audit rows for {ok} answers");
    assert!(
        log.iter()
            .all(|e| e.filters["start_date"].is_string() && Chart::ALL.iter().any(|c| c.name() == e.target))
    );
}
