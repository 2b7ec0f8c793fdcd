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

/// Request counters and latency histograms by route.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
}

impl Metrics {
    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        *self
            .requests
            .lock()
            .expect("metrics lock")
            .entry((method.to_string(), route.to_string(), status))
            .or_default() += 1;
        let mut latency = self.latency.lock().expect("metrics lock");
        let h = latency.entry(route.to_string()).or_default();
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            h.counts[i] += 1;
        }
        h.sum += seconds;
        h.count += 1;
    }

    fn render(&self, out: &mut String) {
        out.push_str("# HELP ocs_dash_http_requests_total HTTP requests by method, route and status.\n");
        out.push_str("# TYPE ocs_dash_http_requests_total counter\n");
        for ((method, route, status), n) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "ocs_dash_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                label(route)
            );
        }
        out.push_str("# HELP ocs_dash_http_request_duration_seconds HTTP request latency by route.\n");
        out.push_str("# TYPE ocs_dash_http_request_duration_seconds histogram\n");
        for (route, h) in self.latency.lock().expect("metrics lock").iter() {
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

/// Escapes a Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Logs and measures every request (route templates, never ids or queries, as labels).
pub(crate) async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req.extensions().get::<MatchedPath>().map_or_else(
        || "unmatched".to_string(),
        |p| p.as_str().trim_end_matches('/').to_string(),
    );
    let route = if route.is_empty() { "/".to_string() } else { route };
    let path = req.uri().path().to_string();
    let response = next.run(req).await;
    let seconds = start.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    state.metrics().observe(&method, &route, status, seconds);
    tracing::info!(
        target: "ocs_dash_api::request",
        method,
        route,
        path,
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
    let snapshot = state.engine().snapshot().ok();
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
    out.push_str("# HELP ocs_dash_cache_hits_total Chart answers served from the result cache.\n");
    out.push_str("# TYPE ocs_dash_cache_hits_total counter\n");
    let _ = writeln!(out, "ocs_dash_cache_hits_total {}", counts.hits);
    out.push_str("# HELP ocs_dash_cache_misses_total Chart answers computed.\n");
    out.push_str("# TYPE ocs_dash_cache_misses_total counter\n");
    let _ = writeln!(out, "ocs_dash_cache_misses_total {}", counts.misses);
    let (entries, bytes) = engine.cache_stats().unwrap_or((0, 0));
    out.push_str("# HELP ocs_dash_cache_entries Answers in the result cache.\n");
    out.push_str("# TYPE ocs_dash_cache_entries gauge\n");
    let _ = writeln!(out, "ocs_dash_cache_entries {entries}");
    out.push_str("# HELP ocs_dash_cache_bytes Size of the cached answers (JSON bytes).\n");
    out.push_str("# TYPE ocs_dash_cache_bytes gauge\n");
    let _ = writeln!(out, "ocs_dash_cache_bytes {bytes}");
    if let Ok(s) = engine.snapshot() {
        out.push_str("# HELP ocs_dash_snapshot_info The current snapshot's version.\n");
        out.push_str("# TYPE ocs_dash_snapshot_info gauge\n");
        let _ = writeln!(out, "ocs_dash_snapshot_info{{version=\"{}\"}} 1", label(&s.version));
        out.push_str(
            "# HELP ocs_dash_snapshot_as_of_seconds When the current snapshot's data was exported (Unix time).\n",
        );
        out.push_str("# TYPE ocs_dash_snapshot_as_of_seconds gauge\n");
        let _ = writeln!(out, "ocs_dash_snapshot_as_of_seconds {}", s.manifest.as_of.timestamp());
        out.push_str("# HELP ocs_dash_snapshot_age_seconds Age of the current snapshot's data.\n");
        out.push_str("# TYPE ocs_dash_snapshot_age_seconds gauge\n");
        let age = (Utc::now() - s.manifest.as_of).num_milliseconds() as f64 / 1000.0;
        let _ = writeln!(out, "ocs_dash_snapshot_age_seconds {age}");
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
