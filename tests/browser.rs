//! The dashboard page in a real browser, end to end: a tiny generated
//! snapshot, an API key from `ocs-dash keys create`, the real binary serving
//! it (`ocs-dash serve`), and `tests/browser/dashboard.test.mjs` driving
//! Debian's Chromium through playwright-core: sign in, every chart's numbers
//! against the engine, filters, URL, presets, exports, screenshots.
//!
//! Needs Node with `web/node_modules` (`bash scripts/build-assets.sh`) and
//! `/usr/bin/chromium` (`apt-get install chromium`). Missing either is a
//! failure with that instruction, not a skip: CI installs both.
//! Screenshots, downloads and logs land in `tests/out/browser/`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ocs_dash_engine::charts::Chart;
use ocs_dash_engine::filters::Filters;
use ocs_dash_engine::snapshot::DataDir;
use ocs_dash_engine::{CacheConfig, Engine, Snapshot};
use ocs_dash_etl::generate::{GenOptions, Scale};
use ocs_dash_etl::progress::Progress;
use ocs_dash_etl::run::generate_snapshot;
use serde_json::{Map, Value, json};

/// The generated data ends here, so the expected numbers never depend on the day the test runs.
const DATA_END: &str = "2026-11-20T12:00:00Z";
/// The fixed view the page is opened with: 30 days ending on DATA_END's
/// date, in a zone with DST so local-day buckets are exercised.
const START: &str = "2026-10-22";
const END: &str = "2026-11-20";
const ZONE: &str = "Europe/Berlin";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Kills the server we started (by its handle) however the test ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn prerequisites() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's Chromium (`apt-get install chromium`) to run the browser test"
    );
    assert!(
        root().join("web/node_modules/playwright-core/package.json").exists(),
        "web/node_modules is missing: run `bash scripts/build-assets.sh` (npm ci in web/) to run the browser test"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "`node` is not on PATH: install Node.js (`apt-get install nodejs npm`) to run the browser test"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until the server answers `GET /login`.
fn wait_for_server(addr: &str, server: &mut Server, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!(
                "ocs-dash serve exited with {status}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if let Ok(mut s) = TcpStream::connect(addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let req = format!("GET /login HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            let mut buf = Vec::new();
            if s.write_all(req.as_bytes()).is_ok() && s.read_to_end(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 ") {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "ocs-dash serve did not answer on {addr} within 90 s:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every chart's `data` for one query, as the engine answers it (what the server must serve).
async fn view(engine: &Engine, snapshot: &Snapshot, team_id: i64, query: &str) -> Value {
    let now: DateTime<Utc> = DATA_END.parse().unwrap();
    let (filters, options) = Filters::parse(&pairs(query), now).unwrap_or_else(|e| panic!("{query}: {e}"));
    let mut charts = Map::new();
    for chart in Chart::ALL {
        let answer = engine
            .chart(snapshot, team_id, chart, &filters, &options)
            .await
            .unwrap();
        charts.insert(
            chart.name().to_string(),
            serde_json::to_value(answer.data.as_ref()).unwrap(),
        );
    }
    Value::Object(charts)
}

/// Runs the async part (snapshot, expected numbers) on its own runtime.
fn build_fixture(data: &Path, out: &Path, query: &str) -> (String, Value) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let opts = GenOptions {
            scale: Scale::Tiny,
            seed: 20261120,
            end: DATA_END.parse().unwrap(),
            session_platform: true,
        };
        generate_snapshot(&DataDir::new(data), &opts, &mut Progress::hidden())
            .await
            .unwrap();
        let engine = Engine::new(
            DataDir::new(data),
            CacheConfig {
                ttl: Duration::ZERO,
                ..CacheConfig::default()
            },
        );
        let snapshot = engine.snapshot().await.unwrap();
        // The team with the most messages in the window: the page has the most to show.
        let mut best: Option<(i64, String, i64)> = None;
        for team in &snapshot.teams {
            let base = view(&engine, &snapshot, team.id, query).await;
            let messages = base["overview"]["total_messages"].as_i64().unwrap_or(0);
            if best.as_ref().is_none_or(|b| messages > b.2) {
                best = Some((team.id, team.slug.clone(), messages));
            }
        }
        let (team_id, slug, messages) = best.expect("the generator made teams");
        assert!(messages > 0, "no team has messages between {START} and {END}");
        let base = view(&engine, &snapshot, team_id, query).await;
        let weekly = view(&engine, &snapshot, team_id, &format!("{query}&granularity=weekly")).await;
        let platform = base["channel-breakdown"]["platforms"][0]["platform"]
            .as_str()
            .expect("a platform with sessions in the window")
            .to_string();
        let channel = view(
            &engine,
            &snapshot,
            team_id,
            &format!("{query}&granularity=weekly&channels={platform}"),
        )
        .await;
        let expected = json!({
            "base": base,
            "weekly": weekly,
            "channel": {"platform": platform, "charts": channel},
        });
        std::fs::write(out, serde_json::to_vec_pretty(&expected).unwrap()).unwrap();
        (slug, expected)
    })
}

fn create_key(data: &Path, slug: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ocs-dash"))
        .args([
            "keys",
            "create",
            "--team",
            slug,
            "--user",
            "browser-test@example.org",
            "--data",
        ])
        .arg(data)
        .env_remove("OCS_DASH_DATA")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ocs-dash keys create failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The key is the one `ocsd_…` word; else the last line printed.
    stdout
        .split_whitespace()
        .find(|w| w.starts_with("ocsd_"))
        .map(str::to_string)
        .or_else(|| {
            stdout
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_string)
        })
        .expect("ocs-dash keys create printed a key")
}

#[test]
fn dashboard_in_a_real_browser() {
    prerequisites();
    let out_dir: PathBuf = root().join("tests/out/browser");
    std::fs::create_dir_all(&out_dir).unwrap();
    let data = tempfile::tempdir().unwrap();
    let query = format!("date_range=custom&start_date={START}&end_date={END}&timezone={ZONE}");
    let expected_path = out_dir.join("expected.json");
    let (slug, _expected) = build_fixture(data.path(), &expected_path, &query);
    let key = create_key(data.path(), &slug);

    let addr = format!("127.0.0.1:{}", free_port());
    let log_path = out_dir.join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_ocs-dash"))
            .args(["serve", "--bind", &addr, "--data"])
            .arg(data.path())
            .env_remove("OCS_DASH_DATA")
            .env_remove("OCS_DASH_BIND")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start ocs-dash serve"),
    );
    wait_for_server(&addr, &mut server, &log_path);

    let status = Command::new("node")
        .arg("tests/browser/dashboard.test.mjs")
        .current_dir(root())
        .env("BASE_URL", format!("http://{addr}"))
        .env("LOGIN_KEY", &key)
        .env("TEAM_SLUG", &slug)
        .env("EXPECTED_JSON", &expected_path)
        .env("FILTER_QUERY", format!("{query}&granularity=daily"))
        .env("OUT_DIR", &out_dir)
        .status()
        .expect("run node");
    drop(server);
    assert!(
        status.success(),
        "the browser test failed (its output is above; tests/out/browser/ has log.txt, server.log and screenshots)"
    );
}
