//! Chart answers as the bytes that go on the wire.
//!
//! The engine caches a chart's data; serializing the envelope to JSON and
//! gzipping it would still cost every request. So the server keeps, beside
//! the engine's cache and with the same settings (time to live, byte bound,
//! `--cache-ttl 0` = off), the encoded answer: its JSON, the JSON gzipped,
//! the resolved filters as the audit log writes them, and the row count.
//! The key is the engine's: snapshot version, team, chart, resolved filters
//! and options, so a new snapshot is never hidden behind an old answer and a
//! relative `date_range` moves with the calendar.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use flate2::Compression;
use flate2::write::GzEncoder;
use moka::future::Cache;
use ocs_dash_engine::charts::Chart;
use ocs_dash_engine::filters::{Filters, Options};
use ocs_dash_engine::{ChartResponse, Engine, Snapshot};

use crate::error::ApiError;
use crate::export::record_count;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    version: String,
    team: i64,
    chart: Chart,
    filters: Filters,
    options: Options,
}

/// One chart answer, encoded.
#[derive(Debug)]
pub(crate) struct Answer {
    json: Bytes,
    /// The JSON gzipped (only for cached answers; others are left to the compression layer).
    gzip: Option<Bytes>,
    /// The resolved filters as JSON text (the audit row's `filters`).
    pub filters: Arc<str>,
    /// Rows handed out (the audit row's `rows`).
    pub rows: usize,
}

impl Answer {
    fn encode(response: &ChartResponse, gzip: bool) -> Result<Answer, ApiError> {
        let internal = |e: std::io::Error| ApiError::Internal(format!("encoding a chart answer: {e}"));
        let json = serde_json::to_vec(response).map_err(|e| internal(e.into()))?;
        let filters = serde_json::to_string(&response.filters).map_err(|e| internal(e.into()))?;
        let gzip = if gzip {
            let mut z = GzEncoder::new(Vec::with_capacity(json.len() / 4), Compression::default());
            z.write_all(&json).map_err(internal)?;
            Some(Bytes::from(z.finish().map_err(internal)?))
        } else {
            None
        };
        Ok(Answer {
            json: Bytes::from(json),
            gzip,
            filters: filters.into(),
            rows: record_count(&response.data),
        })
    }

    /// The HTTP response: the gzipped bytes when the client takes gzip and
    /// they exist, the JSON otherwise (which the compression layer may still compress).
    pub(crate) fn response(&self, request: &HeaderMap) -> Response {
        let gzip = self.gzip.as_ref().filter(|_| accepts_gzip(request));
        let mut response = Response::new(Body::from(gzip.unwrap_or(&self.json).clone()));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if gzip.is_some() {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        }
        response
    }

    fn weight(&self) -> u32 {
        let bytes = self.json.len() + self.gzip.as_ref().map_or(0, Bytes::len) + self.filters.len();
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

/// Whether `Accept-Encoding` takes gzip (listed, and not with `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .or_else(|| p.trim().strip_prefix("Q="))
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip")) && !refused
        })
}

/// The encoded answers, cached as the engine's settings say.
#[derive(Debug)]
pub(crate) struct Answers {
    cache: Option<Cache<Key, Arc<Answer>>>,
    hits: AtomicU64,
}

impl Answers {
    pub(crate) fn new(engine: &Engine) -> Answers {
        let config = engine.cache_config();
        let cache = (!config.ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(config.max_bytes)
                .weigher(|_k: &Key, v: &Arc<Answer>| v.weight())
                .time_to_live(config.ttl)
                .build()
        });
        Answers {
            cache,
            hits: AtomicU64::new(0),
        }
    }

    /// A chart answer for a team, encoded: from the cache, or from the
    /// engine (concurrent identical misses compute once).
    pub(crate) async fn get(
        &self,
        engine: &Engine,
        snapshot: &Snapshot,
        team: i64,
        chart: Chart,
        filters: &Filters,
        options: &Options,
    ) -> Result<Arc<Answer>, ApiError> {
        let compute = |gzip: bool| async move {
            let response = engine.chart(snapshot, team, chart, filters, options).await?;
            Answer::encode(&response, gzip).map(Arc::new)
        };
        let Some(cache) = &self.cache else {
            return compute(false).await;
        };
        let key = Key {
            version: snapshot.version.clone(),
            team,
            chart,
            filters: filters.clone(),
            options: options.clone(),
        };
        if let Some(answer) = cache.get(&key).await {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(answer);
        }
        cache
            .try_get_with(key, compute(true))
            .await
            .map_err(Arc::unwrap_or_clone)
    }

    /// Answers served from this cache (the engine was not asked).
    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// (entries, bytes) of this cache.
    pub(crate) fn stats(&self) -> (u64, u64) {
        self.cache
            .as_ref()
            .map_or((0, 0), |c| (c.entry_count(), c.weighted_size()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> bool {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        accepts_gzip(&h)
    }

    #[test]
    fn gzip_is_taken_when_listed_without_q_zero() {
        assert!(accept("gzip"));
        assert!(accept("gzip, deflate, br"));
        assert!(accept("br;q=1.0, GZIP;q=0.5"));
        assert!(!accept("gzip;q=0"));
        assert!(!accept("gzip; q=0.000, br"));
        assert!(!accept("br, deflate"));
        assert!(!accept("identity"));
        assert!(!accept(""));
        assert!(!accept_none());
    }

    fn accept_none() -> bool {
        accepts_gzip(&HeaderMap::new())
    }
}
