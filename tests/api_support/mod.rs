//! Helpers of the HTTP tests: one generated snapshot per test binary, an app
//! over it with a metadata store of either backend, and request shortcuts.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, header};
use chrono::{DateTime, TimeZone, Utc};
use http_body_util::BodyExt;
use ocs_dash_api::pseudonym::Pseudonyms;
use ocs_dash_api::store::Store;
use ocs_dash_api::{AppState, Settings, app, auth};
use ocs_dash_engine::snapshot::{DataDir, register_all};
use ocs_dash_engine::{CacheConfig, Engine, Team};
use ocs_dash_etl::generate::{GenOptions, Scale};
use ocs_dash_etl::progress::Progress;
use serde_json::Value;
use tower::ServiceExt;

use crate::common::TestDb;

/// The generated data ends here, so windows before it hold data.
pub fn data_end() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

/// A custom window with activity in it.
pub const WINDOW: &str = "date_range=custom&start_date=2026-01-15&end_date=2026-02-28";

/// The snapshot every test of this binary reads (generated once, never written after).
pub fn snapshot_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        // Own runtime on its own thread: the tests' runtimes may be current-thread.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let opts = GenOptions {
                    scale: Scale::Tiny,
                    seed: 7,
                    end: data_end(),
                    session_platform: true,
                };
                ocs_dash_etl::run::generate_snapshot(&DataDir::new(&path), &opts, &mut Progress::hidden())
                    .await
                    .unwrap();
            });
            // Made here, before any test reads it, so no two tests race to create it.
            Pseudonyms::load_or_create(&path).unwrap();
        })
        .join()
        .unwrap();
        dir
    })
    .path()
}

/// Which metadata store backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A store of the backend, in a folder or database of its own.
pub struct TestStore {
    pub store: Store,
    dir: Option<tempfile::TempDir>,
    db: Option<TestDb>,
}

impl TestStore {
    pub async fn new(backend: Backend, tag: &str) -> TestStore {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::open_for(dir.path(), None).await.unwrap();
                TestStore {
                    store,
                    dir: Some(dir),
                    db: None,
                }
            }
            Backend::Postgres => {
                let db = TestDb::create(&format!("meta_{tag}")).await;
                let store = Store::open(&db.url).await.unwrap();
                TestStore {
                    store,
                    dir: None,
                    db: Some(db),
                }
            }
        }
    }

    /// The SQLite store's folder.
    pub fn path(&self) -> Option<&Path> {
        self.dir.as_ref().map(|d| d.path())
    }

    pub async fn finish(self) {
        self.store.close().await;
        if let Some(db) = self.db {
            db.drop_db().await;
        }
    }
}

/// An app over the shared snapshot, with keys for two users of team A and one of team B.
pub struct Fixture {
    pub app: Router,
    pub state: AppState,
    pub engine: Arc<Engine>,
    pub store: TestStore,
    pub team_a: Team,
    pub team_b: Team,
    /// alice @ team A
    pub alice: String,
    /// bob @ team A
    pub bob: String,
    /// alice @ team B (same name, other team)
    pub alice_b: String,
}

impl Fixture {
    pub async fn new(backend: Backend, tag: &str) -> Fixture {
        Fixture::with_cache(backend, tag, CacheConfig::default()).await
    }

    pub async fn with_cache(backend: Backend, tag: &str, cache: CacheConfig) -> Fixture {
        let data = snapshot_dir();
        let engine = Arc::new(Engine::new(DataDir::new(data), cache));
        let snapshot = engine.snapshot().await.unwrap();
        let (team_a, team_b) = (snapshot.teams[0].clone(), snapshot.teams[1].clone());
        let store = TestStore::new(backend, tag).await;
        let alice = auth::create_key(&store.store, &team_a, "alice").await.unwrap().secret;
        let bob = auth::create_key(&store.store, &team_a, "bob").await.unwrap().secret;
        let alice_b = auth::create_key(&store.store, &team_b, "alice").await.unwrap().secret;
        let state = AppState::new(
            engine.clone(),
            store.store.clone(),
            Pseudonyms::load_or_create(data).unwrap(),
            Settings::default(),
        );
        Fixture {
            app: app(state.clone()),
            state,
            engine,
            store,
            team_a,
            team_b,
            alice,
            bob,
            alice_b,
        }
    }

    /// `/a/{team A}/dashboard/{rest}`
    pub fn url(&self, rest: &str) -> String {
        format!("/a/{}/dashboard/{rest}", self.team_a.slug)
    }

    pub async fn send(&self, req: Request<Body>) -> Reply {
        Reply::from(self.app.clone().oneshot(req).await.unwrap()).await
    }

    pub async fn get(&self, key: &str, uri: &str) -> Reply {
        self.send(
            get(uri)
                .header(header::AUTHORIZATION, format!("Bearer {key}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    pub async fn post_json(&self, key: &str, uri: &str, body: &Value) -> Reply {
        self.send(
            Request::post(uri)
                .header(header::AUTHORIZATION, format!("Bearer {key}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    pub async fn delete(&self, key: &str, uri: &str) -> Reply {
        self.send(
            Request::delete(uri)
                .header(header::AUTHORIZATION, format!("Bearer {key}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// Names and identifiers of every participant of a team (what exports must never hold).
    pub async fn participant_names(&self, team_id: i64) -> Vec<String> {
        let dir = DataDir::new(snapshot_dir());
        let version = dir.require_current().await.unwrap();
        let ctx = datafusion::prelude::SessionContext::new();
        register_all(&ctx, &dir, &version, "").unwrap();
        let batches = ctx
            .sql(&format!(
                "SELECT name, identifier FROM participants WHERE team_id = {team_id}"
            ))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut out = Vec::new();
        for b in batches {
            for c in 0..2 {
                let col = datafusion::arrow::compute::cast(b.column(c), &datafusion::arrow::datatypes::DataType::Utf8)
                    .unwrap();
                let col = col
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::StringArray>()
                    .unwrap();
                out.extend(col.iter().flatten().filter(|s| s.len() >= 3).map(str::to_string));
            }
        }
        out
    }
}

pub fn get(uri: &str) -> axum::http::request::Builder {
    Request::get(uri)
}

/// A response with its body read.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub async fn from(r: Response<Body>) -> Reply {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.into_body().collect().await.unwrap().to_bytes().to_vec();
        Reply { status, headers, body }
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }

    /// Asserts the error envelope with this status and code; returns the error object.
    #[track_caller]
    pub fn error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.text());
        let body = self.json();
        let e = body["error"].clone();
        assert_eq!(e["code"], code, "{body}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        e
    }
}

/// A query string's pairs.
pub fn pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

/// Equal JSON, floats within 1e-12 relative (serde_json's default float
/// parser may land one ulp off the written value).
#[track_caller]
pub fn assert_close(a: &Value, b: &Value, context: &str) {
    if let Err(e) = close(a, b, "") {
        panic!("{context}: {e}\n left: {a}\nright: {b}");
    }
}

fn close(a: &Value, b: &Value, path: &str) -> Result<(), String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            if same_float(x, y) {
                Ok(())
            } else {
                Err(format!("{path}: {x} vs {y}"))
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .try_for_each(|(i, (x, y))| close(x, y, &format!("{path}[{i}]"))),
        (Value::Object(x), Value::Object(y)) if x.keys().eq(y.keys()) => {
            x.iter().try_for_each(|(k, v)| close(v, &y[k], &format!("{path}.{k}")))
        }
        _ if a == b => Ok(()),
        _ => Err(format!("{path}: {a} vs {b}")),
    }
}

pub fn same_float(x: f64, y: f64) -> bool {
    (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1.0)
}

/// Equal cells: numerically when both are numbers.
pub fn same_cell(a: &str, b: &str) -> bool {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => same_float(x, y),
        _ => a == b,
    }
}
