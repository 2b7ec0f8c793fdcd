//! ocs-dash's HTTP server (axum): the dashboard's chart JSON, filter
//! presets, exports, API keys and browser sessions, the audit log, the
//! dashboard page and its files, health and metrics.
//!
//! Every module exposes `router()`; [`app`] puts them together over one
//! [`AppState`]. Handlers extract (the [`auth::Caller`] extractor resolves and
//! checks the credential and its team), call the engine, and encode. Errors
//! become HTTP answers in one place ([`error::ApiError`]). The metadata
//! ([`store`]) lives in SQLite in the data directory or in Postgres.

pub mod answers;
pub mod audit;
pub mod auth;
pub mod charts;
pub mod credentials;
pub mod error;
pub mod export;
pub mod extract;
pub mod openapi;
pub mod ops;
pub mod page;
pub mod presets;
pub mod pseudonym;
pub mod schema;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::MethodRouter;
use ocs_dash_engine::snapshot::DataDir;
use ocs_dash_engine::{Backend, CacheConfig, Engine};
use tower_http::compression::CompressionLayer;

use answers::Answers;
pub use error::{ApiError, Error, Result};
use ops::Metrics;
use pseudonym::Pseudonyms;
use store::Store;

/// Largest request body accepted (presets and export requests are small).
pub const BODY_LIMIT: usize = 64 * 1024;

/// Server settings that are not part of the engine or the store.
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings {
    /// Mark the session cookie `Secure` (when served over HTTPS).
    pub secure_cookies: bool,
}

#[derive(Debug)]
struct Inner {
    engine: Arc<Engine>,
    answers: Answers,
    store: Store,
    pseudonyms: Pseudonyms,
    metrics: Metrics,
    settings: Settings,
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    pub fn new(engine: Arc<Engine>, store: Store, pseudonyms: Pseudonyms, settings: Settings) -> Self {
        AppState(Arc::new(Inner {
            answers: Answers::new(&engine),
            engine,
            store,
            pseudonyms,
            metrics: Metrics::default(),
            settings,
        }))
    }

    pub fn engine(&self) -> &Engine {
        &self.0.engine
    }

    pub(crate) fn answers(&self) -> &Answers {
        &self.0.answers
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    pub fn pseudonyms(&self) -> &Pseudonyms {
        &self.0.pseudonyms
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub(crate) fn settings(&self) -> Settings {
        self.0.settings
    }
}

/// Adds a route with and without its trailing slash (api.md: it is optional).
pub(crate) fn route(router: Router<AppState>, path: &str, method: MethodRouter<AppState>) -> Router<AppState> {
    router.route(&format!("{path}/"), method.clone()).route(path, method)
}

/// The whole application.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(charts::router())
        .merge(presets::router())
        .merge(export::router())
        .merge(page::router())
        .merge(auth::router())
        .merge(ops::router())
        .merge(openapi::router())
        .fallback(|| async { ApiError::NotFound("route") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(state.clone(), ops::track))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CompressionLayer::new())
        .with_state(state)
}

/// `ocs-dash serve`'s settings.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where the snapshots are (a local folder or an object store).
    pub data: DataDir,
    /// Local folder for the SQLite metadata store and the pseudonym key.
    pub state_dir: PathBuf,
    pub bind: SocketAddr,
    pub cache: CacheConfig,
    /// Postgres URL of the metadata store; `None` = SQLite in `state_dir`.
    pub meta_url: Option<String>,
    pub settings: Settings,
    /// Where the chart queries run (this process, or a Ballista cluster).
    pub backend: Backend,
}

/// A bound, ready server.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    state: AppState,
}

impl Server {
    /// Opens the engine, the metadata store (running its migrations) and the
    /// pseudonym key, and binds the address.
    pub async fn start(config: &ServeConfig) -> Result<Server> {
        let engine = Arc::new(Engine::new(config.data.clone(), config.cache).with_backend(config.backend.clone()));
        let store = Store::open_for(&config.state_dir, config.meta_url.as_deref()).await?;
        let pseudonyms = Pseudonyms::load_or_create(&config.state_dir)?;
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|e| Error::io(format!("binding {}", config.bind), e))?;
        Ok(Server {
            listener,
            state: AppState::new(engine, store, pseudonyms, config.settings),
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::io("reading the bound address", e))
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then finishes the requests in
    /// flight and closes the store.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let addr = self.local_addr()?;
        tracing::info!(%addr, "serving");
        let store = self.state.store().clone();
        axum::serve(self.listener, app(self.state))
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| Error::io("serving", e))?;
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing the requests in flight");
}

/// Parses a duration flag: `0`, `90s`, `30m`, `2h`, `1d` (a bare number is seconds).
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 0, 90s, 30m, 2h or 1d"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    Ok(Duration::from_secs(n.saturating_mul(seconds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("-5s").is_err());
    }
}
