//! Runs the sqllogictest files in `sql/` that pin every chart's answer on
//! the small fixture (`data/fixtures/small.sql`).
//!
//! Records look like
//! ```text
//! query TT
//! chart message-volume acme start_date=2026-03-29&end_date=2026-03-29&granularity=hourly
//! ----
//! [0].bucket 2026-03-29T00:00:00+01:00
//! ...
//! ```
//! `chart <name> <team slug> <query string>` answers with the chart's `data`
//! flattened to one `path value` row per leaf; `sql <team slug> <query>`
//! runs read-only SQL over the team's snapshot tables. Set
//! `OCS_DASH_SLT_COMPLETE=1` to rewrite the expected results after a
//! deliberate change (then read the diff).

use std::sync::Arc;

use ocs_dash_engine::charts::Chart;
use ocs_dash_engine::filters::Filters;
use ocs_dash_engine::snapshot::DataDir;
use ocs_dash_engine::{CacheConfig, Engine, Snapshot, sql};
use serde_json::Value;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};

#[derive(Debug)]
struct SltError(String);

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SltError {}

#[derive(Clone)]
struct ChartDb {
    engine: Arc<Engine>,
    snapshot: Arc<Snapshot>,
}

fn flatten(v: &Value, path: String, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) => m.iter().for_each(|(k, v)| {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            flatten(v, p, out)
        }),
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .enumerate()
            .for_each(|(i, v)| flatten(v, format!("{path}[{i}]"), out)),
        Value::Array(_) => out.push(vec![path, "[]".into()]),
        Value::Null => out.push(vec![path, "NULL".into()]),
        Value::String(s) if s.is_empty() => out.push(vec![path, "(empty)".into()]),
        Value::String(s) => out.push(vec![path, s.clone()]),
        other => out.push(vec![path, other.to_string()]),
    }
}

impl ChartDb {
    fn team(&self, slug: &str) -> Result<i64, SltError> {
        self.snapshot
            .team(slug)
            .map(|t| t.id)
            .ok_or_else(|| SltError(format!("no team {slug}")))
    }
}

#[async_trait::async_trait]
impl AsyncDB for ChartDb {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let err = |e: ocs_dash_engine::Error| SltError(e.to_string());
        let mut words = sql.trim().splitn(3, char::is_whitespace);
        match (words.next(), words.next(), words.next()) {
            (Some("chart"), Some(name), rest) => {
                let (slug, query) = rest
                    .unwrap_or("")
                    .trim()
                    .split_once(char::is_whitespace)
                    .unwrap_or((rest.unwrap_or(""), ""));
                let chart: Chart = name.parse().map_err(|_| SltError(format!("no chart {name}")))?;
                let pairs: Vec<(String, String)> = query
                    .split('&')
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        (k.to_string(), v.to_string())
                    })
                    .collect();
                let now = "2026-11-20T12:00:00Z".parse().unwrap();
                let (filters, options) = Filters::parse(&pairs, now).map_err(err)?;
                let team = self.team(slug)?;
                let answer = self
                    .engine
                    .chart(&self.snapshot, team, chart, &filters, &options)
                    .await
                    .map_err(err)?;
                let mut rows = Vec::new();
                flatten(
                    &serde_json::to_value(answer.data.as_ref()).unwrap(),
                    String::new(),
                    &mut rows,
                );
                Ok(DBOutput::Rows {
                    types: vec![DefaultColumnType::Text, DefaultColumnType::Text],
                    rows,
                })
            }
            (Some("sql"), Some(slug), Some(query)) => {
                let ctx = sql::adhoc_context(&self.snapshot, Some(self.team(slug)?))
                    .await
                    .map_err(err)?;
                let (schema, batches) = sql::run_readonly(&ctx, query).await.map_err(err)?;
                let text = sql::render(&schema, &batches, sql::Format::Csv).map_err(err)?;
                let rows: Vec<Vec<String>> = text
                    .lines()
                    .skip(1)
                    .map(|l| l.split(',').map(str::to_string).collect())
                    .collect();
                Ok(DBOutput::Rows {
                    types: vec![DefaultColumnType::Text; schema.fields().len()],
                    rows,
                })
            }
            _ => Err(SltError(format!(
                "expected `chart <name> <team> <query>` or `sql <team> <query>`, got {sql:?}"
            ))),
        }
    }

    async fn shutdown(&mut self) {}
}

#[tokio::test]
async fn chart_results_are_pinned_on_the_fixture() {
    let data = tempfile::tempdir().unwrap();
    let batches = ocs_dash_etl::fixture::fixture_batches(include_str!("../data/fixtures/small.sql"))
        .await
        .unwrap();
    ocs_dash_etl::run::snapshot_from_batches(
        &DataDir::new(data.path()),
        batches,
        "2026-11-20T12:00:00Z".parse().unwrap(),
    )
    .await
    .unwrap();
    let engine = Arc::new(Engine::new(
        DataDir::new(data.path()),
        CacheConfig {
            ttl: std::time::Duration::ZERO,
            ..Default::default()
        },
    ));
    let db = ChartDb {
        snapshot: engine.snapshot().await.unwrap(),
        engine,
    };
    let mut files: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/sql"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in sql/");
    for file in files {
        let make = || {
            let db = db.clone();
            async move { Ok::<_, SltError>(db) }
        };
        let mut runner = Runner::new(make);
        if std::env::var("OCS_DASH_SLT_COMPLETE").is_ok_and(|v| v == "1") {
            runner
                .update_test_file(
                    &file,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await
                .unwrap();
        } else {
            runner
                .run_file_async(&file)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        }
    }
}
