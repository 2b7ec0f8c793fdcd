//! Chart latency through the engine over a snapshot, cache off (and one
//! cached run), for the largest team: every chart, 365 and 30 days, daily.
//!
//! ```sh
//! cargo run --release -- demo --scale m --no-serve --data /tmp/ocs-m   # or an ETL'd snapshot
//! cargo bench --bench charts -- /tmp/ocs-m [runs]
//! cargo bench --bench charts -- s3://bucket/prefix [runs]             # AWS_* variables set
//! ```
//! Prints a markdown table: median and p95 of `runs` (default 7) timed runs
//! after one warm-up, plus which path (rollup or raw turns) answered.

use std::time::{Duration, Instant};

use ocs_dash_engine::charts::Chart;
use ocs_dash_engine::engine::choose_activity;
use ocs_dash_engine::filters::Filters;
use ocs_dash_engine::snapshot::DataDir;
use ocs_dash_engine::{CacheConfig, Engine};

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let Some(data) = args.first() else {
        // `cargo test --all-targets` runs benches with no arguments.
        eprintln!("usage: cargo bench --bench charts -- <data-dir> [runs]");
        return;
    };
    let runs: usize = args.get(1).map_or(7, |r| r.parse().expect("runs is a number"));
    let dir = DataDir::open(data).expect("a local folder or s3://bucket/prefix");
    let engine = Engine::new(
        dir.clone(),
        CacheConfig {
            ttl: Duration::ZERO,
            ..Default::default()
        },
    );
    let snap = engine.snapshot().await.expect("a snapshot in the data directory");
    // The largest team: the one with the biggest turns folder.
    let mut sizes = Vec::new();
    for t in &snap.teams {
        sizes.push((snap.dir.team_bytes("turns", t.id).await.expect("listing turns"), t));
    }
    let (bytes, team) = sizes.iter().max_by_key(|(b, _)| *b).expect("teams");
    let (bytes, team) = (*bytes, (*team).clone());
    let now = snap.manifest.as_of;
    println!(
        "snapshot {} ({} turns), team {} ({} MB of turns), {} threads, {runs} runs",
        snap.version,
        snap.manifest.tables["turns"],
        team.slug,
        bytes >> 20,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("\n| chart | window | path | median ms | p95 ms |\n|---|---|---|---:|---:|");
    for days in ["365", "30"] {
        let (f, o) = Filters::parse(&[("date_range".into(), days.into())], now).unwrap();
        let path = format!("{:?}", choose_activity(&snap.manifest, &f)).to_lowercase();
        for chart in Chart::ALL {
            engine.chart(&snap, team.id, chart, &f, &o).await.unwrap();
            let mut times: Vec<Duration> = (0..runs).map(|_| Duration::ZERO).collect();
            for t in times.iter_mut() {
                let started = Instant::now();
                engine.chart(&snap, team.id, chart, &f, &o).await.unwrap();
                *t = started.elapsed();
            }
            times.sort();
            let p95 = times[((runs as f64 * 0.95).ceil() as usize).clamp(1, runs) - 1];
            println!(
                "| {chart} | {days} d | {path} | {} | {} |",
                ms(times[runs / 2]),
                ms(p95)
            );
        }
    }
    let cached = Engine::new(dir, CacheConfig::default());
    let (f, o) = Filters::parse(&[("date_range".into(), "365".into())], now).unwrap();
    cached.chart(&snap, team.id, Chart::Overview, &f, &o).await.unwrap();
    let n = 10_000;
    let started = Instant::now();
    for _ in 0..n {
        cached.chart(&snap, team.id, Chart::Overview, &f, &o).await.unwrap();
    }
    println!(
        "\ncache hit (in process): {:.1} µs per request over {n}",
        started.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}
