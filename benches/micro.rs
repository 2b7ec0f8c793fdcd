//! Micro-benchmarks (divan): each chart through the engine, cold (cache
//! off; the snapshot's metadata and the OS page cache warm after one run)
//! and cached (a hit of the engine's result cache), and the ETL transform
//! (staged source tables → a snapshot version).
//!
//! ```sh
//! cargo bench --bench micro                          # generates a scale-s data set first
//! OCS_DASH_BENCH_SCALE=m cargo bench --bench micro   # another scale
//! OCS_DASH_BENCH_DATA=/work/data/m cargo bench --bench micro -- chart
//! ```
//!
//! The charts run for the team with the most turns, over the last 30 days,
//! daily. Without `OCS_DASH_BENCH_DATA` they read a snapshot generated
//! straight from the synthetic generator (no Postgres), the same one the
//! transform benchmark stages. Under `cargo test` (no `--bench` flag) divan
//! runs each benchmark once, on a tiny generated data set.

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use divan::Bencher;
use ocs_dash_engine::charts::Chart;
use ocs_dash_engine::engine::Snapshot;
use ocs_dash_engine::filters::{Filters, Options};
use ocs_dash_engine::snapshot::DataDir;
use ocs_dash_engine::{CacheConfig, Engine};
use ocs_dash_etl::generate::{self, GenOptions, Scale};
use ocs_dash_etl::progress::Progress;
use ocs_dash_etl::source::SOURCES;
use ocs_dash_etl::stage::Stage;
use ocs_dash_etl::{run, transform};
use tokio::runtime::Runtime;

fn main() {
    divan::main();
}

static RT: LazyLock<Runtime> = LazyLock::new(|| Runtime::new().expect("a tokio runtime"));

/// The generated data set: its staged source tables and the snapshot built
/// from them (kept in a temporary folder for the whole run).
struct Generated {
    _dir: tempfile::TempDir,
    /// Finished (every file closed); behind a lock only because the
    /// writer state it held makes it `!Sync`.
    stage: Mutex<Stage>,
    data: PathBuf,
}

fn scale() -> Scale {
    if !std::env::args().any(|a| a == "--bench") {
        return Scale::Tiny;
    }
    std::env::var("OCS_DASH_BENCH_SCALE").ok().map_or(Scale::S, |s| {
        s.parse().expect("OCS_DASH_BENCH_SCALE is tiny, s, m or l")
    })
}

static GENERATED: LazyLock<Generated> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let opts = GenOptions {
        scale: scale(),
        seed: 42,
        end: "2026-11-20T12:00:00Z".parse().unwrap(),
        session_platform: true,
    };
    let started = std::time::Instant::now();
    let mut stage = Stage::create(dir.path().join("stage")).unwrap();
    RT.block_on(async {
        generate::generate(&opts, &mut stage).await.unwrap();
        stage.finish().unwrap();
        run::generate_snapshot(&DataDir::new(dir.path().join("data")), &opts, &mut Progress::hidden())
            .await
            .unwrap();
    });
    eprintln!(
        "generated a {:?} data set in {:.1} s",
        opts.scale,
        started.elapsed().as_secs_f64()
    );
    Generated {
        data: dir.path().join("data"),
        _dir: dir,
        stage: Mutex::new(stage),
    }
});

/// One engine over the snapshot, with its team and a 30-day window.
struct Fixture {
    engine: Engine,
    snapshot: Arc<Snapshot>,
    team: i64,
    filters: Filters,
    options: Options,
}

impl Fixture {
    fn new(data: &Path, cache: CacheConfig) -> Fixture {
        let engine = Engine::new(DataDir::new(data), cache);
        let snapshot = RT.block_on(engine.snapshot()).expect("a snapshot");
        let turns = |t: i64| -> u64 { RT.block_on(snapshot.dir.team_bytes("turns", t)).unwrap_or(0) };
        let team = snapshot.teams.iter().max_by_key(|t| turns(t.id)).expect("teams").id;
        let (filters, options) =
            Filters::parse(&[("date_range".into(), "30".into())], snapshot.manifest.as_of).unwrap();
        Fixture {
            engine,
            snapshot,
            team,
            filters,
            options,
        }
    }

    fn chart(&self, chart: Chart) {
        RT.block_on(
            self.engine
                .chart(&self.snapshot, self.team, chart, &self.filters, &self.options),
        )
        .expect("chart");
    }
}

fn data_dir() -> PathBuf {
    std::env::var_os("OCS_DASH_BENCH_DATA").map_or_else(|| GENERATED.data.clone(), PathBuf::from)
}

static COLD: LazyLock<Fixture> = LazyLock::new(|| {
    Fixture::new(
        &data_dir(),
        CacheConfig {
            ttl: Duration::ZERO,
            ..Default::default()
        },
    )
});

static CACHED: LazyLock<Fixture> = LazyLock::new(|| Fixture::new(&data_dir(), CacheConfig::default()));

/// A chart computed from the snapshot (cache off).
#[divan::bench(args = Chart::ALL, sample_count = 20)]
fn chart_cold(bencher: Bencher, chart: Chart) {
    COLD.chart(chart);
    bencher.bench_local(|| COLD.chart(chart));
}

/// A chart answered from the engine's result cache.
#[divan::bench(args = Chart::ALL)]
fn chart_cached(bencher: Bencher, chart: Chart) {
    CACHED.chart(chart);
    bencher.bench_local(|| CACHED.chart(chart));
}

/// The ETL transform over the staged source tables of the generated data
/// set, writing a new snapshot version each time.
#[divan::bench(sample_count = 5, sample_size = 1)]
fn etl_transform(bencher: Bencher) {
    let stage = GENERATED.stage.lock().expect("stage lock");
    bencher
        .with_inputs(|| tempfile::tempdir().expect("a temporary folder"))
        .bench_local_values(|out| {
            RT.block_on(async {
                let ctx = transform::etl_context().unwrap();
                for table in SOURCES.iter() {
                    stage.register(&ctx, table, table.name).await.unwrap();
                }
                transform::run(&ctx, &DataDir::new(out.path()).version_dir("bench"))
                    .await
                    .unwrap()
            });
            out
        });
}
