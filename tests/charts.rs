//! The differential test: random OCS data in a real Postgres, the ETL, and
//! every chart for many random filter combinations compared with an
//! independent oracle written straight from metrics.md as Postgres SQL over
//! the source tables (`tests/oracle`).
//!
//! CI runs it with a fixed seed; `OCS_DASH_DIFF_SEED=<n>` (or `random`) and
//! `OCS_DASH_DIFF_CASES=<n>` explore further locally.

mod common;
mod oracle;

use chrono::{Days, NaiveDate};
use common::TestDb;
use ocs_dash_engine::charts::Chart;
use ocs_dash_engine::filters::Filters;
use ocs_dash_engine::snapshot::DataDir;
use ocs_dash_engine::{CacheConfig, Engine};
use ocs_dash_etl::generate::{self, GenOptions, Scale};
use ocs_dash_etl::progress::Progress;
use ocs_dash_etl::run::{EtlOptions, run_etl};
use oracle::OracleFilters;
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;

const ZONES: &[&str] = &[
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Asia/Kathmandu",
];
const GRANULARITIES: &[&str] = &["hourly", "daily", "weekly", "monthly"];
const PLATFORMS: &[&str] = &[
    "web",
    "whatsapp",
    "telegram",
    "api",
    "embedded_widget",
    "evaluations",
    "slack",
];
const ORDERS: &[&str] = &[
    "chatbot_name",
    "participants",
    "sessions",
    "messages",
    "avg_session_duration",
    "completion_rate",
    "avg_messages_per_session",
];

/// Equal JSON, floats within 1e-9 relative.
fn same(a: &Value, b: &Value, path: &str) -> Result<(), String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            let tol = 1e-9 * x.abs().max(y.abs()).max(1.0);
            if (x - y).abs() <= tol {
                Ok(())
            } else {
                Err(format!("{path}: {x} vs {y}"))
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Err(format!(
                    "{path}: {} vs {} items\n engine: {a}\n oracle: {b}",
                    x.len(),
                    y.len()
                ));
            }
            x.iter()
                .zip(y)
                .enumerate()
                .try_for_each(|(i, (x, y))| same(x, y, &format!("{path}[{i}]")))
        }
        (Value::Object(x), Value::Object(y)) => {
            let (kx, ky): (Vec<_>, Vec<_>) = (x.keys().collect(), y.keys().collect());
            if kx != ky {
                return Err(format!("{path}: keys {kx:?} vs {ky:?}"));
            }
            x.iter().try_for_each(|(k, v)| same(v, &y[k], &format!("{path}.{k}")))
        }
        _ if a == b => Ok(()),
        _ => Err(format!("{path}: {a} vs {b}")),
    }
}

fn seed() -> u64 {
    match std::env::var("OCS_DASH_DIFF_SEED").ok().as_deref() {
        None | Some("") => 20261125,
        Some("random") => rand::rng().random(),
        Some(s) => s.parse().expect("OCS_DASH_DIFF_SEED is a number or `random`"),
    }
}

#[tokio::test]
async fn every_chart_matches_the_oracle_for_random_filters() {
    let seed = seed();
    let cases: usize = std::env::var("OCS_DASH_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    eprintln!("differential seed {seed}, {cases} cases");
    let mut rng = SmallRng::seed_from_u64(seed);
    let db = TestDb::create("differential").await;
    let end: chrono::DateTime<chrono::Utc> = "2026-11-20T12:00:00Z".parse().unwrap();
    let session_platform = rng.random_bool(0.7);
    let opts = GenOptions {
        scale: Scale::Tiny,
        seed,
        end,
        session_platform,
    };
    generate::generate_into_postgres(&db.url, &opts).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let etl = EtlOptions {
        database_url: db.url.clone(),
        data: DataDir::new(data.path()),
        full: true,
        keep: 1,
    };
    run_etl(&etl, &mut Progress::hidden()).await.unwrap();

    let engine = Engine::new(
        DataDir::new(data.path()),
        CacheConfig {
            ttl: std::time::Duration::ZERO,
            ..Default::default()
        },
    );
    let snapshot = engine.snapshot().await.unwrap();
    let mut conn = db.conn().await;
    let team_ids: Vec<i64> = snapshot.teams.iter().map(|t| t.id).collect();
    let all_bots: Vec<i64> = sqlx::query_scalar("SELECT id FROM experiments_experiment ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let last_day = end.date_naive();
    let (mut checked, mut busy) = (0, 0);
    for case in 0..cases {
        let team = *team_ids.choose(&mut rng).unwrap();
        let granularity = *GRANULARITIES.choose(&mut rng).unwrap();
        let days = if granularity == "hourly" {
            rng.random_range(1..=4)
        } else {
            rng.random_range(1..=75)
        };
        let start: NaiveDate = last_day - Days::new(rng.random_range(0..56));
        let end_date = start + Days::new(days - 1);
        let zone = *ZONES.choose(&mut rng).unwrap();
        // Chatbot filters mix this team's bots, version rows, other teams' bots.
        let experiments: Vec<i64> = if rng.random_bool(0.35) {
            (0..rng.random_range(1..=3))
                .map(|_| *all_bots.choose(&mut rng).unwrap())
                .collect()
        } else {
            vec![]
        };
        let channels: Vec<String> = if rng.random_bool(0.3) {
            (0..rng.random_range(1..=2))
                .map(|_| PLATFORMS.choose(&mut rng).unwrap().to_string())
                .collect()
        } else {
            vec![]
        };
        let limit = rng.random_range(1..=12);
        let order_by = *ORDERS.choose(&mut rng).unwrap();
        let order_dir = if rng.random_bool(0.5) { "asc" } else { "desc" };
        let page_size = rng.random_range(1..=6);
        let page = rng.random_range(1..=2);

        let mut pairs: Vec<(String, String)> = vec![
            ("date_range".into(), "custom".into()),
            ("start_date".into(), start.to_string()),
            ("end_date".into(), end_date.to_string()),
            ("timezone".into(), zone.into()),
            ("granularity".into(), granularity.into()),
            ("limit".into(), limit.to_string()),
            ("order_by".into(), order_by.into()),
            ("order_dir".into(), order_dir.into()),
            ("page".into(), page.to_string()),
            ("page_size".into(), page_size.to_string()),
        ];
        // Both list spellings: repeated and comma separated.
        if case % 2 == 0 {
            pairs.extend(experiments.iter().map(|e| ("experiments".to_string(), e.to_string())));
        } else if !experiments.is_empty() {
            let joined: Vec<_> = experiments.iter().map(|e| e.to_string()).collect();
            pairs.push(("experiments".into(), joined.join(",")));
        }
        pairs.extend(channels.iter().map(|c| ("channels".to_string(), c.clone())));
        let (filters, options) = Filters::parse(&pairs, end).unwrap();

        let mut of = OracleFilters::new(start, end_date);
        of.timezone = zone.into();
        of.granularity = granularity.into();
        of.experiments = experiments.clone();
        of.channels = channels.clone();
        of.limit = limit;
        of.order_by = order_by.into();
        of.order_dir = order_dir.into();
        of.page = page;
        of.page_size = page_size;

        for chart in Chart::ALL {
            let got = engine.chart(&snapshot, team, chart, &filters, &options).await.unwrap();
            let got = serde_json::to_value(got.data.as_ref()).unwrap();
            let want = oracle::chart(&mut conn, team, chart.name(), &of).await;
            if let Err(diff) = same(&got, &want, chart.name()) {
                panic!("case {case} (seed {seed}): team {team}, {pairs:?}\n{diff}");
            }
            if chart == Chart::Overview && want["total_messages"].as_i64().unwrap() > 0 {
                busy += 1;
            }
            checked += 1;
        }
    }
    eprintln!("{checked} chart answers equal to the oracle, {busy} of {cases} windows with messages");
    assert!(
        busy * 3 >= cases,
        "too few windows with data ({busy} of {cases}): the comparison would prove little"
    );
    drop(conn);
    db.drop_db().await;
}

/// The fixture behind the `.slt` files, loaded into Postgres too: every
/// chart in every zone and granularity over its DST days equals the oracle,
/// so the pinned results are checked against metrics.md, not just frozen.
#[tokio::test]
async fn fixture_charts_match_the_oracle_in_every_zone_and_granularity() {
    use ocs_dash_etl::generate::BatchSink;
    let db = TestDb::create("fixture").await;
    db.exec(include_str!("../data/ocs/schema.sql")).await;
    let batches = ocs_dash_etl::fixture::fixture_batches(include_str!("../data/fixtures/small.sql"))
        .await
        .unwrap();
    let mut sink = generate::PgSink::new(db.conn().await, 1, true);
    for (table, batch) in &batches {
        sink.write(table, batch.clone()).await.unwrap();
    }
    drop(sink);
    let data = tempfile::tempdir().unwrap();
    ocs_dash_etl::run::snapshot_from_batches(
        &DataDir::new(data.path()),
        batches,
        "2026-11-20T12:00:00Z".parse().unwrap(),
    )
    .await
    .unwrap();
    let engine = Engine::new(
        DataDir::new(data.path()),
        CacheConfig {
            ttl: std::time::Duration::ZERO,
            ..Default::default()
        },
    );
    let snapshot = engine.snapshot().await.unwrap();
    let mut conn = db.conn().await;
    let windows = [
        ("2026-03-28", "2026-04-01"),
        ("2026-10-24", "2026-10-26"),
        ("2026-03-01", "2026-10-31"),
    ];
    let mut checked = 0;
    for team in [1, 2] {
        for (start, end) in windows {
            for zone in ZONES {
                for granularity in GRANULARITIES {
                    if granularity == &"hourly" && start == "2026-03-01" {
                        continue;
                    }
                    let pairs: Vec<(String, String)> = [
                        ("start_date", start),
                        ("end_date", end),
                        ("timezone", zone),
                        ("granularity", granularity),
                    ]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                    let (filters, options) = Filters::parse(&pairs, "2026-11-20T12:00:00Z".parse().unwrap()).unwrap();
                    let mut of = OracleFilters::new(start.parse().unwrap(), end.parse().unwrap());
                    of.timezone = zone.to_string();
                    of.granularity = granularity.to_string();
                    for chart in Chart::ALL {
                        let got = engine.chart(&snapshot, team, chart, &filters, &options).await.unwrap();
                        let got = serde_json::to_value(got.data.as_ref()).unwrap();
                        let want = oracle::chart(&mut conn, team, chart.name(), &of).await;
                        if let Err(diff) = same(&got, &want, chart.name()) {
                            panic!("team {team} {pairs:?}\n{diff}");
                        }
                        checked += 1;
                    }
                }
            }
        }
    }
    eprintln!("{checked} fixture answers equal to the oracle");
    drop(conn);
    db.drop_db().await;
}
