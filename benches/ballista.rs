//! Chart latency on a Ballista cluster against the local engine, over the
//! same snapshot, cache off: every chart for the largest and the smallest
//! team, 365 and 30 days daily, 30 days hourly; the two sides interleaved
//! run by run so machine noise hits both alike.
//!
//! ```sh
//! ocs-dash ballista-scheduler --bind 127.0.0.1:50050 &
//! ocs-dash ballista-executor --scheduler 127.0.0.1:50050 --bind 127.0.0.1:50051 --grpc-port 50052 &
//! cargo bench --features ballista --bench ballista -- <data-dir> df://127.0.0.1:50050 [runs]
//! ```
//! Prints a markdown table: median local and Ballista latency of `runs`
//! (default 5) timed runs after one warm-up, and their ratio.

use std::time::{Duration, Instant};

use ocs_dash_engine::ballista::Cluster;
use ocs_dash_engine::charts::Chart;
use ocs_dash_engine::filters::Filters;
use ocs_dash_engine::snapshot::DataDir;
use ocs_dash_engine::{Backend, CacheConfig, Engine, Team};

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

/// Floats to 9 significant digits (a distributed plan may sum in another order).
fn rounded(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => Value::String(format!("{:.8e}", n.as_f64().unwrap())),
        Value::Array(a) => Value::Array(a.into_iter().map(rounded).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, rounded(v))).collect()),
        other => other,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let (Some(data), Some(url)) = (args.first(), args.get(1)) else {
        // `cargo test --all-targets` runs benches with no arguments.
        eprintln!("usage: cargo bench --features ballista --bench ballista -- <data-dir> df://HOST:PORT [runs]");
        return;
    };
    let runs: usize = args.get(2).map_or(5, |r| r.parse().expect("runs is a number"));
    let off = CacheConfig {
        ttl: Duration::ZERO,
        ..Default::default()
    };
    let local = Engine::new(DataDir::new(data), off);
    let remote =
        Engine::new(DataDir::new(data), off).with_backend(Backend::Ballista(Cluster::new(url).expect("a df:// URL")));
    let snap = local.snapshot().await.expect("a snapshot in the data directory");
    let version = snap.dir.local_path().expect("a local data directory");
    let size = |t: &Team| -> u64 {
        std::fs::read_dir(version.join("turns").join(format!("team_id={}", t.id)))
            .map(|d| d.map(|f| f.unwrap().metadata().unwrap().len()).sum())
            .unwrap_or(0)
    };
    let mut teams: Vec<&Team> = snap.teams.iter().filter(|t| size(t) > 0).collect();
    teams.sort_by_key(|t| size(t));
    let (small, large) = (teams[0], teams[teams.len() - 1]);
    println!(
        "snapshot {} ({} turns), {runs} runs, {} threads",
        snap.version,
        snap.manifest.tables["turns"],
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("\n| team | chart | window | local ms | ballista ms | ratio |\n|---|---|---|---:|---:|---:|");
    let windows = [
        ("365 d daily", "365", "daily"),
        ("30 d daily", "30", "daily"),
        ("30 d hourly", "30", "hourly"),
    ];
    let (mut sum_local, mut sum_remote) = (Duration::ZERO, Duration::ZERO);
    for team in [large, small] {
        let label = format!("{} ({} KB)", team.slug, size(team) >> 10);
        for (name, days, granularity) in windows {
            let pairs = [
                ("date_range".to_string(), days.to_string()),
                ("granularity".to_string(), granularity.to_string()),
            ];
            let (f, o) = Filters::parse(&pairs, snap.manifest.as_of).unwrap();
            for chart in Chart::ALL {
                let a = local.chart(&snap, team.id, chart, &f, &o).await.unwrap();
                let b = remote.chart(&snap, team.id, chart, &f, &o).await.unwrap();
                assert_eq!(
                    rounded(serde_json::to_value(&a.data).unwrap()),
                    rounded(serde_json::to_value(&b.data).unwrap()),
                    "{chart} {name}: the two sides disagree"
                );
                let (mut tl, mut tr) = (Vec::new(), Vec::new());
                for _ in 0..runs {
                    let t = Instant::now();
                    local.chart(&snap, team.id, chart, &f, &o).await.unwrap();
                    tl.push(t.elapsed());
                    let t = Instant::now();
                    remote.chart(&snap, team.id, chart, &f, &o).await.unwrap();
                    tr.push(t.elapsed());
                }
                let (l, r) = (median(tl), median(tr));
                sum_local += l;
                sum_remote += r;
                println!(
                    "| {label} | {chart} | {name} | {} | {} | {:.1} |",
                    ms(l),
                    ms(r),
                    r.as_secs_f64() / l.as_secs_f64()
                );
            }
        }
    }
    println!(
        "\nall charts, sum of medians: local {} ms, ballista {} ms ({:.1}x)",
        ms(sum_local),
        ms(sum_remote),
        sum_remote.as_secs_f64() / sum_local.as_secs_f64()
    );
}
