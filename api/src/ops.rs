//! Operations: the request log and metrics middleware, `/healthz`, and
//! `/metrics` in Prometheus' text format.
//!
//! The request log has method, route template, path (never the query, which
//! may hold a sign-in key), status and latency; no header is ever logged, so
//! keys, cookies and `Authorization` stay out of the logs.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;

/// Upper bounds (seconds) of the latency histogram's buckets.
const BUCKETS: [f64; 12] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Debug, Default)]
struct Histogram {
    /// Per bucket (not cumulative; summed when rendered).
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// One route's counters: requests by method and status, and the latency histogram.
#[derive(Debug, Default)]
struct RouteStats {
    requests: Vec<(String, u16, u64)>,
    latency: Histogram,
}

/// Request counters and latency histograms by route (one lock, and no
/// allocation once a route, method and status have been seen).
#[derive(Debug, Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<String, RouteStats>>,
}

impl Metrics {
    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut routes = self.routes.lock().expect("metrics lock");
        if !routes.contains_key(route) {
            routes.insert(route.to_string(), RouteStats::default());
        }
        let Some(stats) = routes.get_mut(route) else {
            return;
        };
        match stats.requests.iter_mut().find(|(m, s, _)| *s == status && m == method) {
            Some((_, _, n)) => *n += 1,
            None => stats.requests.push((method.to_string(), status, 1)),
        }
        let h = &mut stats.latency;
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            h.counts[i] += 1;
        }
        h.sum += seconds;
        h.count += 1;
    }

    fn render(&self, out: &mut String) {
        let routes = self.routes.lock().expect("metrics lock");
        header(
            out,
            "ocs_dash_http_requests_total",
            "counter",
            "HTTP requests by method, route and status.",
        );
        for (route, stats) in routes.iter() {
            let mut requests: Vec<_> = stats.requests.iter().collect();
            requests.sort();
            for (method, status, n) in requests {
                let _ = writeln!(
                    out,
                    "ocs_dash_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                    label(route)
                );
            }
        }
        header(
            out,
            "ocs_dash_http_request_duration_seconds",
            "histogram",
            "HTTP request latency by route.",
        );
        for (route, stats) in routes.iter() {
            let h = &stats.latency;
            let route = label(route);
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "ocs_dash_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "ocs_dash_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "ocs_dash_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "ocs_dash_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
    }
}

/// A metric's `# HELP` and `# TYPE` lines, written once before its samples.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Escapes a Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Logs and measures every request (route templates, never ids or queries, as labels).
pub(crate) async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let uri = req.uri().clone();
    let response = next.run(req).await;
    let seconds = start.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    let route = matched
        .as_ref()
        .map_or("unmatched", |p| p.as_str().trim_end_matches('/'));
    let route = if route.is_empty() { "/" } else { route };
    state.metrics().observe(method.as_str(), route, status, seconds);
    tracing::info!(
        target: "ocs_dash_api::request",
        method = method.as_str(),
        route,
        path = uri.path(),
        status,
        latency_ms = seconds * 1000.0,
        "request"
    );
    response
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
}

/// `/healthz`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when the metadata store answers.
    pub status: &'static str,
    /// The current snapshot's version, `null` before the first one.
    pub snapshot: Option<String>,
    /// When its data was exported from Postgres.
    pub as_of: Option<chrono::DateTime<Utc>>,
}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses(
        (status = 200, body = Health, description = "Serving (the snapshot may still be missing)"),
        (status = 503, body = Health, description = "The metadata store does not answer"),
    ))]
pub(crate) async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let snapshot = state.engine().snapshot().await.ok();
    let store_ok = match state.store().ping().await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "health check: metadata store");
            false
        }
    };
    let health = Health {
        status: if store_ok { "ok" } else { "unavailable" },
        snapshot: snapshot.as_ref().map(|s| s.version.clone()),
        as_of: snapshot.as_ref().map(|s| s.manifest.as_of),
    };
    let status = if store_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health))
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let mut out = String::new();
    state.metrics().render(&mut out);
    let engine = state.engine();
    let counts = engine.cache_counts();
    let answers = state.answers();
    let (entries, bytes) = engine.cache_stats().unwrap_or((0, 0));
    let (answer_entries, answer_bytes) = answers.stats();
    // (name, type, help, labels with their braces or empty, value)
    let mut series: Vec<(&str, &str, &str, String, String)> = vec![
        (
            "ocs_dash_cache_hits_total",
            "counter",
            "Chart answers served from a cache (the encoded answers' or the engine's).",
            String::new(),
            (counts.hits + answers.hits()).to_string(),
        ),
        (
            "ocs_dash_cache_misses_total",
            "counter",
            "Chart answers computed.",
            String::new(),
            counts.misses.to_string(),
        ),
        (
            "ocs_dash_cache_entries",
            "gauge",
            "Answers in the result cache.",
            String::new(),
            entries.to_string(),
        ),
        (
            "ocs_dash_cache_bytes",
            "gauge",
            "Size of the cached answers (JSON bytes).",
            String::new(),
            bytes.to_string(),
        ),
        (
            "ocs_dash_answer_cache_entries",
            "gauge",
            "Encoded chart answers (JSON and gzip) in memory.",
            String::new(),
            answer_entries.to_string(),
        ),
        (
            "ocs_dash_answer_cache_bytes",
            "gauge",
            "Size of the encoded chart answers.",
            String::new(),
            answer_bytes.to_string(),
        ),
    ];
    if let Ok(s) = engine.snapshot().await {
        let age = (Utc::now() - s.manifest.as_of).num_milliseconds() as f64 / 1000.0;
        series.extend([
            (
                "ocs_dash_snapshot_info",
                "gauge",
                "The current snapshot's version.",
                format!("{{version=\"{}\"}}", label(&s.version)),
                "1".to_string(),
            ),
            (
                "ocs_dash_snapshot_as_of_seconds",
                "gauge",
                "When the current snapshot's data was exported (Unix time).",
                String::new(),
                s.manifest.as_of.timestamp().to_string(),
            ),
            (
                "ocs_dash_snapshot_age_seconds",
                "gauge",
                "Age of the current snapshot's data.",
                String::new(),
                age.to_string(),
            ),
        ]);
    }
    for (name, kind, help, labels, value) in &series {
        header(&mut out, name, kind, help);
        let _ = writeln!(out, "{name}{labels} {value}");
    }
    let mut response = out.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulatively() {
        let m = Metrics::default();
        m.observe("GET", "/x", 200, 0.003);
        m.observe("GET", "/x", 200, 0.2);
        m.observe("GET", "/x", 404, 20.0);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("ocs_dash_http_requests_total{method=\"GET\",route=\"/x\",status=\"200\"} 2"));
        assert!(out.contains("ocs_dash_http_requests_total{method=\"GET\",route=\"/x\",status=\"404\"} 1"));
        assert!(out.contains("ocs_dash_http_request_duration_seconds_bucket{route=\"/x\",le=\"0.005\"} 1"));
        assert!(out.contains("ocs_dash_http_request_duration_seconds_bucket{route=\"/x\",le=\"0.25\"} 2"));
        assert!(out.contains("ocs_dash_http_request_duration_seconds_bucket{route=\"/x\",le=\"10\"} 2"));
        assert!(out.contains("ocs_dash_http_request_duration_seconds_bucket{route=\"/x\",le=\"+Inf\"} 3"));
        assert!(out.contains("ocs_dash_http_request_duration_seconds_count{route=\"/x\"} 3"));
    }
}
