//! The engine: resolves the current snapshot, scopes queries to one team,
//! and caches answers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use moka::future::Cache;
use serde::Serialize;

use crate::backend::Backend;
use crate::buckets::Buckets;
use crate::charts::{self, Chart, ChartData};
use crate::error::{Error, Result};
use crate::filters::{Filters, Options};
use crate::scope::{Activity, team_scope};
use crate::snapshot::{DataDir, FORMAT, Manifest, SLOT_MICROS, VersionDir};

/// A team as the snapshot knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Team {
    pub id: i64,
    pub name: String,
    pub slug: String,
}

/// One loaded snapshot version.
#[derive(Debug)]
pub struct Snapshot {
    pub version: String,
    pub manifest: Manifest,
    pub teams: Vec<Team>,
    pub dir: VersionDir,
}

impl Snapshot {
    async fn load(data: &DataDir, manifest: Manifest) -> Result<Snapshot> {
        let version = manifest.version.clone();
        if manifest.format != FORMAT {
            return Err(Error::BadSnapshot {
                version,
                reason: format!(
                    "it has layout {} and this ocs-dash reads layout {FORMAT}: run `ocs-dash etl --full` to rewrite it",
                    manifest.format
                ),
            });
        }
        let dir = data.version_dir(&manifest.version);
        let bad = |e: parquet::errors::ParquetError| Error::BadSnapshot {
            version: version.clone(),
            reason: e.to_string(),
        };
        let bytes = dir.read(&dir.file("teams", None, 0)).await?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(bad)?
            .build()
            .map_err(bad)?;
        let mut teams = Vec::new();
        for batch in reader {
            let b: RecordBatch = batch?;
            let ids = b.column(0).as_primitive::<Int64Type>();
            let (names, slugs) = (b.column(1).as_string::<i32>(), b.column(2).as_string::<i32>());
            for i in 0..b.num_rows() {
                teams.push(Team {
                    id: ids.value(i),
                    name: names.value(i).to_string(),
                    slug: slugs.value(i).to_string(),
                });
            }
        }
        Ok(Snapshot {
            version: manifest.version.clone(),
            manifest,
            teams,
            dir,
        })
    }

    /// The team with this URL slug.
    pub fn team(&self, slug: &str) -> Option<&Team> {
        self.teams.iter().find(|t| t.slug == slug)
    }
}

/// Which snapshot answered (`snapshot` in every response).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotRef {
    pub version: String,
    pub as_of: DateTime<Utc>,
}

/// A chart answer with its resolved request (api.md's envelope).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChartResponse {
    pub chart: Chart,
    pub filters: Filters,
    pub snapshot: SnapshotRef,
    pub data: Arc<ChartData>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    team: i64,
    chart: Chart,
    filters: Filters,
    options: Options,
    version: String,
}

/// Cache settings.
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    /// Time to live of an answer; zero turns the cache off.
    pub ttl: Duration,
    /// Upper bound of the cached answers' size (their JSON length).
    pub max_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl: Duration::from_secs(30 * 60),
            max_bytes: 256 << 20,
        }
    }
}

/// The query engine over a data directory.
#[derive(Debug)]
pub struct Engine {
    data: DataDir,
    cache_config: CacheConfig,
    backend: Backend,
    cache: Option<Cache<CacheKey, Arc<ChartData>>>,
    loaded: Mutex<Option<Loaded>>,
    /// Serialises loading a new snapshot.
    loading: tokio::sync::Mutex<()>,
    /// How long a resolved snapshot is trusted before the log is checked again.
    refresh: Duration,
    /// Shared by every query: its caches of folder listings and Parquet
    /// footers outlive one request (see [`crate::scope::session`]).
    runtime: Arc<RuntimeEnv>,
    /// Chart answers asked for, and those computed (the rest came from the cache).
    asked: AtomicU64,
    computed: AtomicU64,
}

#[derive(Debug, Clone)]
struct Loaded {
    seq: u64,
    snapshot: Arc<Snapshot>,
    checked: Instant,
}

/// How often a server looks for a new snapshot in an object store (one
/// existence check per interval). A local directory is checked on every
/// request: a `stat`.
pub const OBJECT_STORE_REFRESH: Duration = Duration::from_secs(1);

/// How often the result cache answered (for the server's metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheCounts {
    pub hits: u64,
    pub misses: u64,
}

impl Engine {
    pub fn new(data: DataDir, cache_config: CacheConfig) -> Engine {
        let cache = (!cache_config.ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(cache_config.max_bytes)
                .weigher(|_k: &CacheKey, v: &Arc<ChartData>| {
                    serde_json::to_vec(v.as_ref()).map_or(u32::MAX, |b| b.len().try_into().unwrap_or(u32::MAX))
                })
                .time_to_live(cache_config.ttl)
                .build()
        });
        let refresh = if data.local_path().is_some() {
            Duration::ZERO
        } else {
            OBJECT_STORE_REFRESH
        };
        Engine {
            data,
            cache_config,
            backend: Backend::Local,
            cache,
            loaded: Mutex::new(None),
            runtime: query_runtime(),
            loading: tokio::sync::Mutex::new(()),
            refresh,
            asked: AtomicU64::new(0),
            computed: AtomicU64::new(0),
        }
    }

    /// Runs the chart queries on `backend` instead of in this process.
    pub fn with_backend(mut self, backend: Backend) -> Engine {
        self.backend = backend;
        self
    }

    /// Where the chart queries run.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The data directory.
    pub fn data(&self) -> &DataDir {
        &self.data
    }

    /// The current snapshot. The publication log is checked on every call
    /// (at most once per [`OBJECT_STORE_REFRESH`] in an object store), so a
    /// new snapshot is visible without a restart.
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>> {
        let seen = self.loaded.lock().expect("snapshot lock").clone();
        if let Some(l) = &seen {
            if l.checked.elapsed() < self.refresh {
                return Ok(l.snapshot.clone());
            }
            if !self.data.published_after(l.seq).await? {
                if !self.refresh.is_zero() {
                    self.mark_checked(l.seq);
                }
                return Ok(l.snapshot.clone());
            }
        }
        let _one = self.loading.lock().await;
        let head = self.data.require_head().await?;
        let current = self.loaded.lock().expect("snapshot lock").clone();
        let snapshot = match current {
            Some(l) if l.seq == head.seq => l.snapshot,
            _ => Arc::new(Snapshot::load(&self.data, head.manifest).await?),
        };
        *self.loaded.lock().expect("snapshot lock") = Some(Loaded {
            seq: head.seq,
            snapshot: snapshot.clone(),
            checked: Instant::now(),
        });
        Ok(snapshot)
    }

    fn mark_checked(&self, seq: u64) {
        if let Some(l) = self
            .loaded
            .lock()
            .expect("snapshot lock")
            .as_mut()
            .filter(|l| l.seq == seq)
        {
            l.checked = Instant::now();
        }
    }

    /// Answers one chart for one team (by id, from the caller's credential).
    pub async fn chart(
        &self,
        snapshot: &Snapshot,
        team_id: i64,
        chart: Chart,
        filters: &Filters,
        options: &Options,
    ) -> Result<ChartResponse> {
        // Options only matter to the charts that read them; one key otherwise.
        let options = match chart {
            Chart::BotPerformance => Options {
                limit: 10,
                ..options.clone()
            },
            Chart::UserEngagement => Options {
                limit: options.limit,
                ..Options::default()
            },
            _ => Options::default(),
        };
        self.asked.fetch_add(1, Ordering::Relaxed);
        let compute = async {
            self.computed.fetch_add(1, Ordering::Relaxed);
            let ctx = team_scope(
                self.backend.context(&self.runtime).await?,
                &snapshot.dir,
                team_id,
                filters,
                choose_activity(&snapshot.manifest, filters),
            )
            .await?;
            charts::compute(&ctx, chart, filters, &options).await.map(Arc::new)
        };
        let data = match &self.cache {
            None => compute.await?,
            Some(cache) => {
                let key = CacheKey {
                    team: team_id,
                    chart,
                    filters: filters.clone(),
                    options: options.clone(),
                    version: snapshot.version.clone(),
                };
                // Concurrent identical misses wait for one computation.
                cache.try_get_with(key, compute).await.map_err(unwrap_shared)?
            }
        };
        Ok(ChartResponse {
            chart,
            filters: filters.clone(),
            snapshot: SnapshotRef {
                version: snapshot.version.clone(),
                as_of: snapshot.manifest.as_of,
            },
            data,
        })
    }

    /// The result cache's settings (a server caching encoded answers follows them).
    pub fn cache_config(&self) -> CacheConfig {
        self.cache_config
    }

    /// Cache statistics: (entries, weighted bytes).
    pub fn cache_stats(&self) -> Option<(u64, u64)> {
        self.cache.as_ref().map(|c| (c.entry_count(), c.weighted_size()))
    }

    /// Cache hits and misses since start (every answer is a miss with the cache off).
    pub fn cache_counts(&self) -> CacheCounts {
        let misses = self.computed.load(Ordering::Relaxed);
        CacheCounts {
            hits: self.asked.load(Ordering::Relaxed).saturating_sub(misses),
            misses,
        }
    }
}

/// The runtime of chart queries: the default memory pool, with room in the
/// listing and footer caches for every table folder of a large snapshot.
fn query_runtime() -> Arc<RuntimeEnv> {
    let caches = CacheManagerConfig::default()
        .with_list_files_cache_limit(16 << 20)
        .with_metadata_cache_limit(256 << 20)
        .with_file_statistics_cache_limit(64 << 20);
    RuntimeEnvBuilder::new()
        .with_cache_manager(caches)
        .build_arc()
        .expect("the default runtime builds")
}

/// Raw turns or the rollup: the rollup gives the exact same answer when it
/// covers the window and the window's edges and every bucket start fall on
/// slot boundaries (true for every current time zone; checked, not assumed).
pub fn choose_activity(manifest: &Manifest, filters: &Filters) -> Activity {
    let Some(coverage) = manifest.rollup else {
        return Activity::Raw;
    };
    let (start, end) = filters.window();
    let aligned = |t: i64| t.rem_euclid(SLOT_MICROS) == 0;
    let buckets = Buckets::new(filters);
    let ok = coverage.covers(start.with_timezone(&Utc), end.with_timezone(&Utc))
        && aligned(start.timestamp_micros())
        && aligned(end.timestamp_micros())
        && buckets.starts.iter().all(|b| aligned(b.timestamp_micros()));
    if ok { Activity::Rollup } else { Activity::Raw }
}

fn unwrap_shared(e: Arc<Error>) -> Error {
    Arc::try_unwrap(e).unwrap_or_else(|shared| Error::Shared(shared.to_string()))
}
