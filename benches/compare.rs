//! The comparative benchmark of issue #5: ocs-dash against what a user would
//! do instead, on the same data, in the same run.
//!
//! Run it with `bash scripts/bench-compare.sh` (it prepares the data set, the
//! release build and the DuckDB venv, then calls this with the right flags):
//!
//! ```sh
//! cargo bench --bench compare -- --db NAME --data DIR --python .venv-bench/bin/python \
//!     --bin target/release/ocs-dash [--reps 7] [--only charts,etl,http] [--out FILE]
//! ```
//!
//! Parts:
//! - **charts**: every chart for the largest and a small team, over 30 and
//!   365 days daily and 30 days hourly, with and without a chatbot + channel
//!   filter, computed by the engine in process (cache off), by DuckDB over a
//!   plain Parquet export of the OCS source tables (`benches/duckdb_worker.py`,
//!   SQL written from metrics.md), and by Postgres over the OCS tables with
//!   OCS's indexes (the differential test's oracle, `tests/oracle/`). All
//!   three answers are compared before anything is timed; then each case runs
//!   round-robin, one run per side per round, so machine noise hits all sides
//!   alike.
//! - **etl**: `ocs-dash etl --full` and the raw binary `COPY` of the same
//!   rows, alternated, on a copy of the database; then `generate --next-day`
//!   and an incremental `ocs-dash etl`.
//! - **http**: `ocs-dash serve` under `oha` on loopback, cache off (a random
//!   mix of 1,152 chart URLs) and on (the dashboard's 24 default views), with
//!   the server's peak RSS. (Not wrk: on this machine its latency figures
//!   break Little's law, e.g. a mean of 19 ms at 18,700 req/s over 32
//!   connections, where at most 1.7 ms is possible.)
//!
//! Prints the tables and writes them, with the machine description, to
//! `benches/results/` (or `--out`). Exits non-zero when the sides disagree.

#[path = "../tests/oracle/mod.rs"]
mod oracle;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use ocs_dash_engine::charts::Chart;
use ocs_dash_engine::filters::Filters;
use ocs_dash_engine::snapshot::DataDir;
use ocs_dash_engine::{CacheConfig, Engine};
use ocs_dash_etl::postgres;
use ocs_dash_etl::progress::Progress;
use ocs_dash_etl::source::SOURCES;
use ocs_dash_etl::stage::Stage;
use oracle::OracleFilters;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

const USAGE: &str = "usage: cargo bench --bench compare -- --db NAME --data DIR [--pg URL] [--python PATH] \
[--bin PATH] [--work DIR] [--reps N] [--only charts,etl,http] [--pg-timeout SECS] [--pg-budget SECS] \
[--etl-reps N] [--oha PATH] [--http-secs N] [--scale LABEL] [--out FILE]";

#[derive(Debug, Clone)]
struct Args {
    /// Postgres server URL without a database name.
    pg: String,
    /// The generated OCS database (only read; the ETL part works on a copy).
    db: String,
    /// Data directory holding the ETL snapshot of `db`.
    data: PathBuf,
    python: PathBuf,
    bin: PathBuf,
    /// Scratch space: the Parquet export, ETL copies, the server's data dir.
    work: PathBuf,
    reps: usize,
    parts: Vec<String>,
    /// Statement timeout of a Postgres chart query.
    pg_timeout: u64,
    /// Seconds of timed runs per Postgres case (at least one run).
    pg_budget: f64,
    etl_reps: usize,
    oha: PathBuf,
    http_secs: u64,
    scale: String,
    out: Option<PathBuf>,
}

fn parse_args() -> Option<Args> {
    let raw: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if raw.is_empty() {
        return None;
    }
    let mut flags = BTreeMap::new();
    let mut it = raw.into_iter();
    while let Some(flag) = it.next() {
        let name = flag
            .strip_prefix("--")
            .unwrap_or_else(|| panic!("unexpected argument {flag:?}\n{USAGE}"));
        let value = it.next().unwrap_or_else(|| panic!("--{name} needs a value\n{USAGE}"));
        flags.insert(name.to_string(), value);
    }
    let mut take = |name: &str| flags.remove(name);
    let num = |v: Option<String>, name: &str, default: f64| -> f64 {
        v.map_or(default, |v| {
            v.parse().unwrap_or_else(|_| panic!("--{name} takes a number"))
        })
    };
    let args = Args {
        pg: take("pg").unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432".into()),
        db: take("db").unwrap_or_else(|| panic!("--db is required\n{USAGE}")),
        data: take("data")
            .unwrap_or_else(|| panic!("--data is required\n{USAGE}"))
            .into(),
        python: take("python").unwrap_or_else(|| ".venv-bench/bin/python".into()).into(),
        bin: take("bin").unwrap_or_else(|| "target/release/ocs-dash".into()).into(),
        work: take("work").unwrap_or_else(|| "target/bench-compare".into()).into(),
        reps: num(take("reps"), "reps", 7.0) as usize,
        parts: take("only")
            .unwrap_or_else(|| "charts,etl,http".into())
            .split(',')
            .map(str::to_string)
            .collect(),
        pg_timeout: num(take("pg-timeout"), "pg-timeout", 30.0) as u64,
        pg_budget: num(take("pg-budget"), "pg-budget", 5.0),
        etl_reps: num(take("etl-reps"), "etl-reps", 3.0) as usize,
        oha: take("oha").unwrap_or_else(|| "oha".into()).into(),
        http_secs: num(take("http-secs"), "http-secs", 20.0) as u64,
        scale: take("scale").unwrap_or_else(|| "m".into()),
        out: take("out").map(PathBuf::from),
    };
    if let Some(unknown) = flags.keys().next() {
        panic!("unknown flag --{unknown}\n{USAGE}");
    }
    assert!(
        args.reps >= 1 && args.etl_reps >= 1,
        "--reps and --etl-reps are at least 1"
    );
    Some(args)
}

impl Args {
    fn db_url(&self, db: &str) -> String {
        format!("{}/{db}", self.pg.trim_end_matches('/'))
    }
}

// ---------------------------------------------------------------- statistics

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Nearest-rank 95th percentile.
fn p95(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((s.len() as f64 * 0.95).ceil() as usize).clamp(1, s.len()) - 1]
}

fn ms(secs: f64) -> String {
    let ms = secs * 1e3;
    if ms < 10.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.0}")
    }
}

fn geomean(v: &[f64]) -> f64 {
    (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp()
}

/// Equal JSON; floats within 1e-9 relative. Returns where they first differ.
fn same(a: &Value, b: &Value, path: &str) -> Result<(), String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            if (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0) {
                Ok(())
            } else {
                Err(format!("{path}: {x} vs {y}"))
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Err(format!("{path}: {} vs {} items", x.len(), y.len()));
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

// ---------------------------------------------------------------- machine

fn machine(args: &Args, duckdb: &str, postgres: &str) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let ram_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ours = command_output(Command::new(&args.bin).arg("--version")).unwrap_or_else(|| "ocs-dash ?".into());
    let mut commit = command_output(Command::new("git").args(["rev-parse", "--short", "HEAD"])).unwrap_or_default();
    // Tracked files changed since that commit: the binary measured is not exactly it.
    let changed = command_output(Command::new("git").args(["status", "--porcelain", "--untracked-files=no"]));
    if changed.is_some_and(|c| !c.is_empty()) {
        commit.push_str(" with uncommitted changes");
    }
    let kernel = command_output(Command::new("uname").arg("-r")).unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {:.1} GiB RAM, Linux {kernel}; {ours} (commit {commit}, {} build), \
         DuckDB {duckdb} (Python), PostgreSQL {postgres}; taken {} UTC",
        ram_kb as f64 / (1 << 20) as f64,
        if cfg!(debug_assertions) { "debug" } else { "release" },
        chrono::Utc::now().format("%Y-%m-%d %H:%M")
    )
}

fn command_output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

// ---------------------------------------------------------------- DuckDB worker

struct DuckDb {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    version: String,
}

impl DuckDb {
    fn start(python: &Path, export: &Path) -> DuckDb {
        let mut child = Command::new(python)
            .arg("benches/duckdb_worker.py")
            .arg("serve")
            .arg(export)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting the DuckDB worker with {}: {e}", python.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("reading the DuckDB worker");
        let ready: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("DuckDB worker said {line:?}"));
        let version = ready["duckdb"]
            .as_str()
            .expect("the worker names its DuckDB version")
            .to_string();
        DuckDb {
            child,
            stdin,
            stdout,
            version,
        }
    }

    /// The chart's `data` and the seconds DuckDB spent on it.
    fn chart(&mut self, request: &Value) -> Result<(Value, f64), String> {
        writeln!(self.stdin, "{request}").map_err(|e| e.to_string())?;
        self.stdin.flush().map_err(|e| e.to_string())?;
        let mut line = String::new();
        self.stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        let mut answer: Value = serde_json::from_str(&line).map_err(|e| format!("{e}: {line:?}"))?;
        if let Some(err) = answer.get("error") {
            return Err(format!("DuckDB: {err}"));
        }
        let secs = answer["seconds"].as_f64().ok_or("no seconds")?;
        Ok((answer["data"].take(), secs))
    }
}

impl Drop for DuckDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain Parquet export of the OCS source tables for DuckDB: the columns
/// the dashboard needs, read by the ETL's binary COPY and rewritten by
/// DuckDB's own `COPY TO parquet`. Reused while the marker names the database.
async fn export_for_duckdb(args: &Args) -> (PathBuf, Option<f64>) {
    let dir = args.work.join(format!("export-{}", args.db));
    let marker = dir.join("parquet").join(".complete");
    if marker.exists() {
        return (dir.join("parquet"), None);
    }
    let started = Instant::now();
    let _ = std::fs::remove_dir_all(&dir);
    let mut conn = postgres::connect(&args.db_url(&args.db))
        .await
        .expect("connecting to the database");
    let info = postgres::inspect(&mut conn).await.expect("an OCS database");
    let mut stage = Stage::create(dir.join("stage")).expect("creating the export folder");
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut conn)
        .await
        .unwrap();
    for table in SOURCES.iter() {
        postgres::copy_table(&mut conn, table, info, &mut stage, &mut Progress::hidden())
            .await
            .unwrap_or_else(|e| panic!("exporting {}: {e}", table.name));
    }
    stage.finish().unwrap();
    drop(conn);
    std::fs::create_dir_all(dir.join("parquet")).unwrap();
    let status = Command::new(&args.python)
        .arg("benches/duckdb_worker.py")
        .arg("export")
        .arg(stage.dir())
        .arg(dir.join("parquet"))
        .status()
        .expect("running the DuckDB export");
    assert!(status.success(), "the DuckDB export failed");
    stage.remove().unwrap();
    std::fs::write(&marker, b"").unwrap();
    (dir.join("parquet"), Some(started.elapsed().as_secs_f64()))
}

// ---------------------------------------------------------------- Postgres

async fn pg_connect(args: &Args) -> PgConnection {
    let mut conn = PgConnection::connect(&args.db_url(&args.db))
        .await
        .expect("connecting to the database");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SET statement_timeout = '{}s'",
        args.pg_timeout
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    conn
}

/// One oracle run; `Err` when it hit the statement timeout. The oracle
/// panics on any query error, so it runs in a task whose panic we inspect.
async fn pg_chart(
    args: &Args,
    conn: &mut Option<PgConnection>,
    team: i64,
    chart: Chart,
    f: &OracleFilters,
) -> Result<(Value, f64), String> {
    let mut c = match conn.take() {
        Some(c) => c,
        None => pg_connect(args).await,
    };
    let f = f.clone();
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let v = oracle::chart(&mut c, team, chart.name(), &f).await;
        (c, v, started.elapsed().as_secs_f64())
    });
    match task.await {
        Ok((c, v, secs)) => {
            *conn = Some(c);
            Ok((v, secs))
        }
        Err(e) => {
            let msg = e
                .try_into_panic()
                .ok()
                .and_then(|p| {
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                })
                .unwrap_or_default();
            if msg.contains("statement timeout") {
                Err(format!("> {} s", args.pg_timeout))
            } else {
                panic!("Postgres oracle failed: {}", msg.lines().next().unwrap_or(""));
            }
        }
    }
}

// ---------------------------------------------------------------- charts

#[derive(Debug, Clone)]
struct Case {
    team_label: String,
    team: i64,
    window: &'static str,
    filtered: bool,
    chart: Chart,
    pairs: Vec<(String, String)>,
}

#[derive(Debug, Default)]
struct Timings {
    engine: Vec<f64>,
    duckdb: Vec<f64>,
    pg: Vec<f64>,
    pg_timeout: Option<String>,
}

/// The `data` of one chart by each side (the first, untimed, run).
struct Answers {
    engine: Value,
    duckdb: Value,
    pg: Option<Value>,
}

struct ChartBench<'a> {
    args: &'a Args,
    engine: Engine,
    snapshot: std::sync::Arc<ocs_dash_engine::engine::Snapshot>,
    duck: DuckDb,
    pg: Option<PgConnection>,
}

impl ChartBench<'_> {
    fn filters(&self, case: &Case) -> (Filters, ocs_dash_engine::filters::Options) {
        Filters::parse(&case.pairs, self.snapshot.manifest.as_of).expect("valid bench filters")
    }

    fn oracle_filters(f: &Filters) -> OracleFilters {
        let mut of = OracleFilters::new(f.start_date, f.end_date);
        of.timezone = f.timezone.name().to_string();
        of.granularity = f.granularity.to_string();
        of.experiments = f.experiments.clone();
        of.channels = f.channels.clone();
        of
    }

    fn duck_request(case: &Case, f: &Filters) -> Value {
        json!({
            "chart": case.chart.name(),
            "team": case.team,
            "start_date": f.start_date.to_string(),
            "end_date": f.end_date.to_string(),
            "timezone": f.timezone.name(),
            "granularity": f.granularity.to_string(),
            "experiments": f.experiments,
            "channels": f.channels,
        })
    }

    async fn run_engine(&self, case: &Case) -> (Value, f64) {
        let (f, o) = self.filters(case);
        let started = Instant::now();
        let r = self
            .engine
            .chart(&self.snapshot, case.team, case.chart, &f, &o)
            .await
            .unwrap_or_else(|e| panic!("engine failed on {}: {e}", case.chart));
        let secs = started.elapsed().as_secs_f64();
        (serde_json::to_value(r.data.as_ref()).unwrap(), secs)
    }

    fn run_duck(&mut self, case: &Case) -> (Value, f64) {
        let (f, _) = self.filters(case);
        self.duck
            .chart(&Self::duck_request(case, &f))
            .unwrap_or_else(|e| panic!("{} {} {}: {e}", case.team_label, case.window, case.chart))
    }

    async fn run_pg(&mut self, case: &Case) -> Result<(Value, f64), String> {
        let (f, _) = self.filters(case);
        pg_chart(
            self.args,
            &mut self.pg,
            case.team,
            case.chart,
            &Self::oracle_filters(&f),
        )
        .await
    }

    /// First run of every side: the answers to compare, and a first timing.
    async fn check(&mut self, case: &Case, t: &mut Timings) -> Answers {
        let (engine, _) = self.run_engine(case).await;
        let (duckdb, _) = self.run_duck(case);
        let pg = match self.run_pg(case).await {
            Ok((v, secs)) => {
                t.pg.push(secs);
                Some(v)
            }
            Err(why) => {
                t.pg_timeout = Some(why);
                None
            }
        };
        Answers { engine, duckdb, pg }
    }

    async fn time(&mut self, case: &Case, t: &mut Timings) {
        // Postgres gets as many timed runs as fit its budget; when its check
        // run alone took longer, that run is its one sample.
        let pg_runs = match t.pg.first() {
            Some(first) if *first < self.args.pg_budget => {
                ((self.args.pg_budget / first) as usize).clamp(1, self.args.reps)
            }
            _ => 0,
        };
        let mut pg_done = 0;
        for round in 0..self.args.reps {
            for side in 0..3 {
                match (round + side) % 3 {
                    0 => t.engine.push(self.run_engine(case).await.1),
                    1 => t.duckdb.push(self.run_duck(case).1),
                    _ if pg_done < pg_runs => {
                        pg_done += 1;
                        if pg_done == 1 {
                            // Replace the check run (it may have been cold).
                            t.pg.clear();
                        }
                        match self.run_pg(case).await {
                            Ok((_, secs)) => t.pg.push(secs),
                            Err(why) => t.pg_timeout = Some(why),
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Bytes of a team's `turns` folder: how the bench ranks teams by size.
fn turns_bytes(snapshot: &ocs_dash_engine::engine::Snapshot, team: i64) -> u64 {
    let version = snapshot.dir.local_path().expect("a local --data folder");
    std::fs::read_dir(version.join("turns").join(format!("team_id={team}")))
        .map(|d| d.filter_map(|f| f.ok()?.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

/// Teams: the largest (most turns on disk) and a small one (the smallest
/// with turns in the last 30 days of the snapshot).
async fn pick_teams(
    engine: &Engine,
    snapshot: &ocs_dash_engine::engine::Snapshot,
    pg: &mut PgConnection,
) -> Vec<(String, i64, Option<(i64, String)>)> {
    let mut teams: Vec<(u64, &ocs_dash_engine::engine::Team)> = snapshot
        .teams
        .iter()
        .map(|t| (turns_bytes(snapshot, t.id), t))
        .collect();
    teams.sort_by_key(|(s, t)| (std::cmp::Reverse(*s), t.id));
    let largest = teams.first().expect("a snapshot with teams").1;
    let (f, o) = Filters::parse(&[("date_range".into(), "30".into())], snapshot.manifest.as_of).unwrap();
    let mut small = None;
    for (_, t) in teams.iter().rev() {
        let r = engine.chart(snapshot, t.id, Chart::Overview, &f, &o).await.unwrap();
        let v = serde_json::to_value(r.data.as_ref()).unwrap();
        if v["total_messages"].as_i64().unwrap_or(0) > 0 {
            small = Some(*t);
            break;
        }
    }
    let small = small.expect("a team with turns in the last 30 days");
    let mut out = Vec::new();
    for (label, team) in [("largest", largest), ("small", small)] {
        // The filter a user would pick: the team's busiest chatbot and its
        // most common effective platform.
        let bot: Option<(i64, String)> = sqlx::query_as(
            "SELECT s.experiment_id, COALESCE(s.platform, c.platform, p.platform)
             FROM experiments_experimentsession s
             LEFT JOIN channels_experimentchannel c ON c.id = s.experiment_channel_id
             LEFT JOIN experiments_participant p ON p.id = s.participant_id
             JOIN experiments_experiment e ON e.id = s.experiment_id AND e.working_version_id IS NULL
             WHERE s.team_id = $1 AND COALESCE(s.platform, c.platform, p.platform) IS NOT NULL
               AND COALESCE(s.platform, c.platform, p.platform) <> 'evaluations'
             GROUP BY 1, 2 ORDER BY count(*) DESC, 1, 2 LIMIT 1",
        )
        .bind(team.id)
        .fetch_optional(&mut *pg)
        .await
        .expect("picking the filter");
        out.push((format!("{label} ({})", team.slug), team.id, bot));
    }
    out
}

const WINDOWS: [(&str, &str, &str); 3] = [
    ("30 d daily", "30", "daily"),
    ("365 d daily", "365", "daily"),
    ("30 d hourly", "30", "hourly"),
];

struct ChartResults {
    rows: Vec<(Case, Timings)>,
    mismatches: Vec<String>,
    duckdb_version: String,
    export_secs: Option<f64>,
    teams: String,
    largest: i64,
}

async fn charts_part(args: &Args) -> ChartResults {
    let engine = Engine::new(
        DataDir::new(&args.data),
        CacheConfig {
            ttl: Duration::ZERO,
            ..Default::default()
        },
    );
    let snapshot = engine.snapshot().await.expect("a snapshot in --data");
    let (export, export_secs) = export_for_duckdb(args).await;
    let duck = DuckDb::start(&args.python, &export);
    let mut pg = pg_connect(args).await;
    let teams = pick_teams(&engine, &snapshot, &mut pg).await;
    let mut cases = Vec::new();
    for (label, team, bot) in &teams {
        for (window, days, granularity) in WINDOWS {
            for filtered in [false, true] {
                let mut pairs: Vec<(String, String)> = vec![
                    ("date_range".into(), days.into()),
                    ("granularity".into(), granularity.into()),
                ];
                if filtered {
                    let Some((bot, platform)) = bot else { continue };
                    pairs.push(("experiments".into(), bot.to_string()));
                    pairs.push(("channels".into(), platform.clone()));
                }
                for chart in Chart::ALL {
                    cases.push(Case {
                        team_label: label.clone(),
                        team: *team,
                        window,
                        filtered,
                        chart,
                        pairs: pairs.clone(),
                    });
                }
            }
        }
    }
    let teams_desc = teams
        .iter()
        .map(|(label, id, bot)| match bot {
            Some((b, p)) => format!("{label}: team {id}, filter experiments={b}&channels={p}"),
            None => format!("{label}: team {id}, no filter case"),
        })
        .collect::<Vec<_>>()
        .join("; ");
    eprintln!("{teams_desc}");
    let mut bench = ChartBench {
        args,
        engine,
        snapshot,
        duck,
        pg: Some(pg),
    };
    let mut rows = Vec::new();
    let mut mismatches = Vec::new();
    for (i, case) in cases.into_iter().enumerate() {
        let name = format!(
            "{} {} {}{}",
            case.team_label,
            case.window,
            case.chart,
            if case.filtered { " filtered" } else { "" }
        );
        eprint!("[{}] {name}: ", i + 1);
        let mut t = Timings::default();
        let answers = bench.check(&case, &mut t).await;
        let mut bad = Vec::new();
        if let Err(d) = same(&answers.engine, &answers.duckdb, "data") {
            bad.push(format!("ocs-dash vs DuckDB: {d}"));
        }
        if let Some(pg) = &answers.pg
            && let Err(d) = same(&answers.engine, pg, "data")
        {
            bad.push(format!("ocs-dash vs Postgres: {d}"));
        }
        if !bad.is_empty() {
            let msg = format!("MISMATCH {name} ({:?}): {}", case.pairs, bad.join("; "));
            eprintln!("\n{msg}");
            mismatches.push(msg);
            continue;
        }
        bench.time(&case, &mut t).await;
        eprintln!(
            "ocs-dash {} ms, DuckDB {} ms, Postgres {}",
            ms(median(&t.engine)),
            ms(median(&t.duckdb)),
            t.pg_timeout
                .clone()
                .unwrap_or_else(|| format!("{} ms", ms(median(&t.pg))))
        );
        rows.push((case, t));
    }
    ChartResults {
        rows,
        mismatches,
        duckdb_version: bench.duck.version.clone(),
        export_secs,
        teams: teams_desc,
        largest: teams[0].1,
    }
}

fn charts_report(r: &ChartResults, out: &mut String) {
    let _ = writeln!(out, "### Charts: ocs-dash vs DuckDB vs Postgres\n");
    let _ = writeln!(out, "Teams: {}.\n", r.teams);
    if let Some(s) = r.export_secs {
        let _ = writeln!(
            out,
            "Parquet export of the source tables for DuckDB (binary COPY + DuckDB `COPY TO parquet`): {s:.1} s.\n"
        );
    }
    let _ = writeln!(
        out,
        "Milliseconds, median (p95) of the timed runs; ratios are of medians (below 1: ocs-dash is faster).\n"
    );
    let _ = writeln!(
        out,
        "| team | window | filter | chart | ocs-dash | DuckDB | Postgres | ocs-dash/DuckDB | ocs-dash/Postgres |"
    );
    let _ = writeln!(out, "|---|---|---|---|---:|---:|---:|---:|---:|");
    let (mut vs_duck, mut vs_pg) = (Vec::new(), Vec::new());
    for (c, t) in &r.rows {
        let e = median(&t.engine);
        let d = median(&t.duckdb);
        let pg = match &t.pg_timeout {
            Some(why) if t.pg.is_empty() => why.clone(),
            _ if t.pg.len() == 1 => format!("{} (1 run)", ms(t.pg[0])),
            _ => format!("{} ({})", ms(median(&t.pg)), ms(p95(&t.pg))),
        };
        let pg_ratio = if t.pg.is_empty() {
            "-".to_string()
        } else {
            let x = e / median(&t.pg);
            vs_pg.push((x, c));
            format!("{x:.3}")
        };
        vs_duck.push((e / d, c));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} ({}) | {} ({}) | {pg} | {:.2} | {pg_ratio} |",
            c.team_label,
            c.window,
            if c.filtered { "bot+channel" } else { "-" },
            c.chart,
            ms(e),
            ms(p95(&t.engine)),
            ms(d),
            ms(p95(&t.duckdb)),
            e / d,
        );
    }
    let summary = |name: &str, v: &[(f64, &Case)], out: &mut String| {
        if v.is_empty() {
            return;
        }
        let ratios: Vec<f64> = v.iter().map(|(x, _)| *x).collect();
        let (worst, case) = v.iter().max_by(|a, b| a.0.total_cmp(&b.0)).unwrap();
        let _ = writeln!(
            out,
            "- ocs-dash/{name}: geometric mean {:.3} over {} cases, worst {worst:.3} ({} {} {}{})",
            geomean(&ratios),
            v.len(),
            case.team_label,
            case.window,
            case.chart,
            if case.filtered { " filtered" } else { "" }
        );
    };
    let _ = writeln!(out);
    summary("DuckDB", &vs_duck, out);
    let below = vs_duck.iter().filter(|(x, _)| *x < 1.0).count();
    let _ = writeln!(out, "  - faster than DuckDB in {below} of {} cases", vs_duck.len());
    summary("Postgres", &vs_pg, out);
    let twenty = vs_pg.iter().filter(|(x, _)| *x <= 0.05).count();
    let timeouts = r.rows.iter().filter(|(_, t)| t.pg.is_empty()).count();
    let _ = writeln!(
        out,
        "  - at least 20x faster than Postgres in {twenty} of {} cases; Postgres hit the statement timeout in {timeouts}",
        vs_pg.len()
    );
    if r.mismatches.is_empty() {
        let _ = writeln!(
            out,
            "- every answer was checked before timing: all sides returned the same `data` (floats within 1e-9 relative)"
        );
    } else {
        let _ = writeln!(
            out,
            "\n**The sides disagreed ({} cases; not timed):**\n",
            r.mismatches.len()
        );
        for m in &r.mismatches {
            let _ = writeln!(out, "- {m}");
        }
    }
    let _ = writeln!(out);
}

// ---------------------------------------------------------------- processes

/// Runs a command to completion; wall time, peak RSS (KiB, sampled from
/// /proc while it runs) and stdout.
fn run_measured(cmd: &mut Command) -> (f64, u64, String) {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let mut peak = 0;
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let status = loop {
        peak = peak.max(peak_rss_kb(child.id()).unwrap_or(0));
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let secs = started.elapsed().as_secs_f64();
    let out = out_reader.join().unwrap();
    let err = err_reader.join().unwrap();
    assert!(status.success(), "{cmd:?} failed: {}", err.trim());
    (secs, peak, out)
}

/// `VmHWM` (peak resident set) of a live process, in KiB.
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn sh(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed");
}

// ---------------------------------------------------------------- ETL

/// Raw binary COPY of exactly the rows and columns the full ETL reads, in
/// one REPEATABLE READ transaction, bytes discarded.
async fn copy_floor(url: &str) -> (f64, u64) {
    let started = Instant::now();
    let mut conn = postgres::connect(url).await.unwrap();
    let info = postgres::inspect(&mut conn).await.unwrap();
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut conn)
        .await
        .unwrap();
    let mut bytes = 0u64;
    for table in SOURCES.iter() {
        let mut stream = conn
            .copy_out_raw(&postgres::copy_statement(table, info, postgres::Rows::All))
            .await
            .unwrap();
        while let Some(chunk) = stream.next().await {
            bytes += chunk.unwrap().len() as u64;
        }
    }
    sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
    (started.elapsed().as_secs_f64(), bytes)
}

async fn etl_part(args: &Args, out: &mut String) {
    let copy_db = format!("{}_etlbench", args.db);
    let url = args.db_url(&copy_db);
    let pg_host = ["-h", "127.0.0.1", "-U", "postgres"];
    let _ = Command::new("dropdb")
        .args(pg_host)
        .args(["--if-exists", &copy_db])
        .status();
    eprintln!("copying database {} to {copy_db}", args.db);
    let started = Instant::now();
    sh(Command::new("createdb").args(pg_host).args(["-T", &args.db, &copy_db]));
    let createdb_secs = started.elapsed().as_secs_f64();
    let data = args.work.join("etl-data");
    let (mut etl, mut copy, mut etl_rss) = (Vec::new(), Vec::new(), 0);
    let mut copied_bytes = 0;
    for i in 0..args.etl_reps {
        let (secs, bytes) = copy_floor(&url).await;
        copy.push(secs);
        copied_bytes = bytes;
        let _ = std::fs::remove_dir_all(&data);
        let (secs, rss, _) = run_measured(
            Command::new(&args.bin)
                .args(["etl", "--full", "--keep", "1", "--database-url", &url, "--data"])
                .arg(&data),
        );
        etl.push(secs);
        etl_rss = etl_rss.max(rss);
        eprintln!(
            "[etl {}] COPY {:.1} s, full ETL {secs:.1} s (peak RSS {} MB)",
            i + 1,
            copy[i],
            rss >> 10
        );
    }
    let (mut gen_secs, mut inc, mut inc_rss) = (Vec::new(), Vec::new(), 0);
    for i in 0..args.etl_reps {
        let (g, _, _) = run_measured(
            Command::new(&args.bin)
                .args(["generate", "--next-day", "--seed"])
                .arg((1000 + i).to_string())
                .args(["--database-url", &url]),
        );
        gen_secs.push(g);
        let (secs, rss, _) = run_measured(
            Command::new(&args.bin)
                .args(["etl", "--keep", "1", "--database-url", &url, "--data"])
                .arg(&data),
        );
        inc.push(secs);
        inc_rss = inc_rss.max(rss);
        eprintln!(
            "[etl {}] next day generated in {g:.1} s, incremental ETL {secs:.1} s",
            i + 1
        );
    }
    let _ = std::fs::remove_dir_all(&data);
    sh(Command::new("dropdb").args(pg_host).arg(&copy_db));
    let _ = writeln!(out, "### ETL vs the raw COPY floor\n");
    let _ = writeln!(
        out,
        "On a copy of `{}` (createdb -T: {createdb_secs:.0} s). {} runs each, alternated; seconds, median (p95).\n",
        args.db, args.etl_reps
    );
    let _ = writeln!(
        out,
        "| step | median s | p95 s | peak RSS | ratio |\n|---|---:|---:|---:|---:|"
    );
    let _ = writeln!(
        out,
        "| raw `COPY (SELECT …) TO STDOUT (FORMAT binary)` of the ETL's rows ({} MB) | {:.2} | {:.2} | | 1 |",
        copied_bytes >> 20,
        median(&copy),
        p95(&copy)
    );
    let _ = writeln!(
        out,
        "| `ocs-dash etl --full` | {:.2} | {:.2} | {} MB | ETL/COPY {:.2} |",
        median(&etl),
        p95(&etl),
        etl_rss >> 10,
        median(&etl) / median(&copy)
    );
    let _ = writeln!(
        out,
        "| `ocs-dash generate --next-day` (one more day in Postgres) | {:.2} | {:.2} | | |",
        median(&gen_secs),
        p95(&gen_secs)
    );
    let _ = writeln!(
        out,
        "| `ocs-dash etl` incremental, after one new day | {:.2} | {:.2} | {} MB | |\n",
        median(&inc),
        p95(&inc),
        inc_rss >> 10
    );
}

// ---------------------------------------------------------------- HTTP

/// The chart URLs of one load: every chart over 7/30/90/365 days, daily,
/// weekly or monthly, in four zones, with no, one or two channels (1,152
/// URLs); `hot` narrows it to the dashboard's default views (30 days, UTC,
/// every channel: 24 URLs), which a warm cache answers.
fn load_urls(base: &str, team: &str, hot: bool) -> Vec<String> {
    let (ranges, zones, channels): (&[&str], &[&str], &[&str]) = if hot {
        (&["30"], &["UTC"], &[""])
    } else {
        (
            &["7", "30", "90", "365"],
            &["UTC", "Europe/Berlin", "Asia/Kolkata", "America/New_York"],
            &["", "&channels=web", "&channels=whatsapp,telegram"],
        )
    };
    let mut urls = Vec::new();
    for chart in Chart::ALL {
        for range in ranges {
            for grain in ["daily", "weekly", "monthly"] {
                for zone in zones {
                    for channel in channels {
                        urls.push(format!(
                            "{base}/a/{team}/dashboard/api/{chart}/?date_range={range}&granularity={grain}&timezone={zone}{channel}"
                        ));
                    }
                }
            }
        }
    }
    urls
}

struct LoadRun {
    label: String,
    summary: Value,
    rss_mb: u64,
}

async fn http_part(args: &Args, team_slug: &str, out: &mut String) {
    let data = args.work.join("http-data");
    let _ = std::fs::remove_dir_all(&data);
    // A private copy: the server writes its metadata store into DATA.
    sh(Command::new("cp").arg("-a").arg(&args.data).arg(&data));
    for f in ["meta.sqlite", "meta.sqlite-wal", "meta.sqlite-shm"] {
        let _ = std::fs::remove_file(data.join(f));
    }
    let (_, _, key) = run_measured(
        Command::new(&args.bin)
            .args(["keys", "create", "--team", team_slug, "--user", "bench", "--data"])
            .arg(&data),
    );
    let key = key.trim().to_string();
    let mut runs = Vec::new();
    for (label, ttl, hot, conns) in [
        ("cache off, random mix of 1,152 chart URLs", "0", false, 4),
        ("cache on, the 24 default views (hits after warm-up)", "30m", true, 32),
    ] {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Command::new(&args.bin)
            .args([
                "serve",
                "--cache-ttl",
                ttl,
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--data",
            ])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting ocs-dash serve");
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while reqwest::get(format!("{base}/healthz")).await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(60), "the server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let urls = args.work.join("load-urls.txt");
        std::fs::write(&urls, load_urls(&base, team_slug, hot).join("\n")).unwrap();
        // A closed loop of `conns` connections, each sending its next
        // request (a random URL of the file) when the last answer is in.
        let oha = |secs: u64, conns: usize| {
            let mut cmd = Command::new(&args.oha);
            // `-w`: requests in flight at the deadline finish (not counted as errors).
            cmd.args([
                "--no-tui",
                "--output-format",
                "json",
                "--urls-from-file",
                "-w",
                "-t",
                "10s",
            ])
            .args(["-z", &format!("{secs}s"), "-c", &conns.to_string()])
            .args(["-H", &format!("Authorization: Bearer {key}")])
            .arg(&urls);
            cmd
        };
        if hot {
            // Warm-up: fill the cache with the 24 views.
            run_measured(&mut oha(5, 4));
        }
        let (_, _, stdout) = run_measured(&mut oha(args.http_secs, conns));
        let summary: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("oha printed {stdout:?}: {e}"));
        let rss_mb = peak_rss_kb(server.id()).unwrap_or(0) >> 10;
        let _ = server.kill();
        let _ = server.wait();
        let run = LoadRun {
            label: format!("{label}, {conns} connections"),
            summary,
            rss_mb,
        };
        eprintln!("[http] {}", run.row());
        runs.push(run);
    }
    let _ = std::fs::remove_dir_all(&data);
    let _ = writeln!(out, "### HTTP under load (oha on loopback)\n");
    let _ = writeln!(
        out,
        "`ocs-dash serve` (release) and `oha -z {}s` (closed loop, random URL of the mix per request) share the machine's cores; team `{team_slug}`.\n",
        args.http_secs
    );
    let _ = writeln!(
        out,
        "| load | req/s | p50 ms | p99 ms | non-2xx | errors | server peak RSS |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for r in runs {
        let _ = writeln!(out, "{}", r.row());
    }
    let _ = writeln!(out);
}

impl LoadRun {
    /// A markdown row from oha's JSON summary (latencies in seconds).
    fn row(&self) -> String {
        let s = &self.summary;
        let ms = |p: &str| {
            s["latencyPercentiles"][p]
                .as_f64()
                .map_or("-".into(), |v| format!("{:.2}", v * 1e3))
        };
        let sum = |m: &Value, keep: &dyn Fn(&str) -> bool| -> u64 {
            m.as_object().map_or(0, |m| {
                m.iter().filter(|(k, _)| keep(k)).filter_map(|(_, n)| n.as_u64()).sum()
            })
        };
        format!(
            "| {} | {:.0} | {} | {} | {} | {} | {} MB |",
            self.label,
            s["summary"]["requestsPerSec"].as_f64().unwrap_or(0.0),
            ms("p50"),
            ms("p99"),
            sum(&s["statusCodeDistribution"], &|code| !code.starts_with('2')),
            sum(&s["errorDistribution"], &|_| true),
            self.rss_mb
        )
    }
}

// ---------------------------------------------------------------- main

#[tokio::main]
async fn main() {
    let Some(args) = parse_args() else {
        // `cargo test --all-targets` runs benches with no arguments.
        eprintln!("{USAGE}\n(use scripts/bench-compare.sh, which prepares everything)");
        return;
    };
    // Postgres timeouts surface as panics inside the oracle's task: keep them quiet.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.to_string().contains("statement timeout") {
            default_hook(info);
        }
    }));
    std::fs::create_dir_all(&args.work).expect("creating --work");
    let engine = Engine::new(DataDir::new(&args.data), CacheConfig::default());
    let snapshot = engine.snapshot().await.expect("a snapshot in --data");
    let mut conn = pg_connect(&args).await;
    let pg_version: String = sqlx::query_scalar(
        "SELECT current_setting('server_version') || ' with shared_buffers ' || current_setting('shared_buffers')
             || ', work_mem ' || current_setting('work_mem') || ', max_parallel_workers_per_gather '
             || current_setting('max_parallel_workers_per_gather') || ', jit ' || current_setting('jit')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    drop(conn);
    let mut body = String::new();
    let _ = writeln!(
        body,
        "Data: scale `{}`, database `{}` and its snapshot {} ({} turns, {} sessions, {} teams).\n",
        args.scale,
        args.db,
        snapshot.version,
        snapshot.manifest.tables.get("turns").copied().unwrap_or(0),
        snapshot.manifest.tables.get("sessions").copied().unwrap_or(0),
        snapshot.teams.len()
    );
    let mut duckdb_version = "-".to_string();
    let mut mismatches = Vec::new();
    let mut largest = None;
    if args.parts.iter().any(|p| p == "charts") {
        let r = charts_part(&args).await;
        duckdb_version = r.duckdb_version.clone();
        largest = Some(r.largest);
        charts_report(&r, &mut body);
        mismatches = r.mismatches;
    }
    if args.parts.iter().any(|p| p == "etl") {
        etl_part(&args, &mut body).await;
    }
    if args.parts.iter().any(|p| p == "http") {
        let id = largest.unwrap_or_else(|| {
            let t = snapshot
                .teams
                .iter()
                .max_by_key(|t| (turns_bytes(&snapshot, t.id), -t.id));
            t.expect("teams").id
        });
        let slug = snapshot.teams.iter().find(|t| t.id == id).unwrap().slug.clone();
        http_part(&args, &slug, &mut body).await;
    }
    let report = format!(
        "## Comparative benchmark, scale {}\n\nMachine: {}.\n\n{body}",
        args.scale,
        machine(&args, &duckdb_version, &pg_version)
    );
    println!("\n{report}");
    let path = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "benches/results/compare-{}-{}.md",
            args.scale,
            chrono::Utc::now().format("%Y%m%d-%H%M")
        ))
    });
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("creating the results folder");
    }
    std::fs::write(&path, &report).expect("writing the results");
    eprintln!("written to {}", path.display());
    if !mismatches.is_empty() {
        eprintln!("\nFAILED: the sides disagreed in {} cases:", mismatches.len());
        for m in &mismatches {
            eprintln!("  {m}");
        }
        std::process::exit(1);
    }
}
