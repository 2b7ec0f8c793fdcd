//! `ocs-dash`: the command line. Parses flags and calls the libraries;
//! every flag also reads an `OCS_DASH_*` environment variable.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use ocs_dash_engine::snapshot::DataDir;
use ocs_dash_engine::{CacheConfig, Engine, sql};
use ocs_dash_etl::generate::{self, GenOptions, Scale};
use ocs_dash_etl::progress::Progress;
use ocs_dash_etl::run::{self, EtlOptions};

/// Analytics for Open Chat Studio: Postgres → Parquet snapshots → dashboard charts.
#[derive(Debug, Parser)]
#[command(name = "ocs-dash", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter (tracing's env-filter syntax, e.g. `info`, `ocs_dash_etl=debug`).
    #[arg(long, env = "OCS_DASH_LOG", global = true)]
    log: Option<String>,
    /// Log as JSON lines (default when stderr is not a terminal).
    #[arg(long, env = "OCS_DASH_LOG_JSON", global = true)]
    log_json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a realistic multi-team data set straight into a snapshot (no database needed) and summarise it.
    Demo(DemoArgs),
    /// Export an OCS Postgres database into a new snapshot and make it current.
    Etl(EtlArgs),
    /// Fill a Postgres database with a synthetic OCS data set (creates the tables where missing).
    Generate(GenerateArgs),
    /// Ad-hoc read-only SQL over one team's snapshot tables; without a query, an interactive prompt.
    Sql(SqlArgs),
}

#[derive(Debug, Args)]
struct SqlArgs {
    #[command(flatten)]
    data: DataArg,
    /// The team's URL slug.
    #[arg(long, env = "OCS_DASH_TEAM", required_unless_present = "all_teams")]
    team: Option<String>,
    /// Operators only: see every team's rows (each table gets a team_id column).
    #[arg(long, env = "OCS_DASH_ALL_TEAMS", conflicts_with = "team")]
    all_teams: bool,
    /// Output format: table, csv or json.
    #[arg(long, env = "OCS_DASH_FORMAT", default_value = "table")]
    format: sql::Format,
    /// The query; omit it for an interactive prompt (end each query with `;`).
    query: Option<String>,
}

#[derive(Debug, Args)]
struct DataArg {
    /// Data directory holding the snapshots.
    #[arg(long, env = "OCS_DASH_DATA", default_value = "./data")]
    data: PathBuf,
}

#[derive(Debug, Args)]
struct DemoArgs {
    #[command(flatten)]
    data: DataArg,
    /// Size of the generated data set: tiny, s, m or l.
    #[arg(long, env = "OCS_DASH_SCALE", default_value = "s")]
    scale: Scale,
    /// Random seed (the same seed gives the same data).
    #[arg(long, env = "OCS_DASH_SEED", default_value_t = 42)]
    seed: u64,
}

#[derive(Debug, Args)]
struct EtlArgs {
    /// OCS Postgres, e.g. postgres://user:password@host:5432/ocs.
    #[arg(long, env = "OCS_DASH_DATABASE_URL")]
    database_url: String,
    #[command(flatten)]
    data: DataArg,
    /// Re-export everything instead of only what changed since the last snapshot.
    #[arg(long, env = "OCS_DASH_FULL")]
    full: bool,
    /// Complete old snapshot versions to keep besides the current one.
    #[arg(long, env = "OCS_DASH_KEEP", default_value_t = run::DEFAULT_KEEP)]
    keep: usize,
    /// Print the closing summary as JSON.
    #[arg(long, env = "OCS_DASH_JSON")]
    json: bool,
}

#[derive(Debug, Args)]
struct GenerateArgs {
    /// Postgres database to fill, e.g. postgres://postgres@127.0.0.1:5432/ocs_demo.
    #[arg(long, env = "OCS_DASH_DATABASE_URL")]
    database_url: String,
    /// Size: tiny (~3k messages), s (~300k), m (~10M messages, 1M sessions), l (~40M).
    #[arg(long, env = "OCS_DASH_SCALE", default_value = "s")]
    scale: Scale,
    /// Random seed (the same seed gives the same data).
    #[arg(long, env = "OCS_DASH_SEED", default_value_t = 42)]
    seed: u64,
    /// Create the tables as databases from before Nov 2025 have them (no experiments_experimentsession.platform).
    #[arg(long, env = "OCS_DASH_LEGACY_SCHEMA")]
    legacy_schema: bool,
    /// Instead of filling an empty database, add one more simulated day of activity to a generated one.
    #[arg(long, env = "OCS_DASH_NEXT_DAY")]
    next_day: bool,
}

fn init_logging(cli: &Cli) {
    let terminal = std::io::stderr().is_terminal();
    // On a terminal the progress bar tells the story; logs are for warnings.
    let default = if terminal { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_new(cli.log.as_deref().unwrap_or(default))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if cli.log_json || !terminal {
        builder.json().init();
    } else {
        builder.compact().init();
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    init_logging(&cli);
    if let Err(e) = run(cli).await {
        // One line that says what to fix; no backtrace.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo(a) => {
            let opts = GenOptions {
                scale: a.scale,
                seed: a.seed,
                end: chrono::Utc::now(),
                session_platform: true,
            };
            let mut progress = Progress::auto();
            let m = run::generate_snapshot(&a.data.data, &opts, &mut progress).await?;
            println!("generated snapshot {} in {}", m.version, a.data.data.display());
            println!("teams: {:?}", m.teams);
            for (t, n) in &m.tables {
                println!("  {t:<20} {n:>10} rows");
            }
        }
        Command::Etl(a) => {
            let opts = EtlOptions {
                database_url: a.database_url,
                data_dir: a.data.data,
                full: a.full,
                keep: a.keep,
            };
            let mut progress = Progress::auto();
            let summary = run::run_etl(&opts, &mut progress).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{summary}");
            }
        }
        Command::Generate(a) => {
            if a.next_day {
                let touched = generate::simulate_day(&a.database_url, a.seed).await?;
                println!("simulated one more day:");
                for (k, n) in touched {
                    println!("  {k:<28} {n:>10}");
                }
            } else {
                let opts = GenOptions {
                    scale: a.scale,
                    seed: a.seed,
                    end: chrono::Utc::now(),
                    session_platform: !a.legacy_schema,
                };
                let s = generate::generate_into_postgres(&a.database_url, &opts).await?;
                println!("generated scale {} in {:.1} s:", a.scale, s.elapsed.as_secs_f64());
                for (t, n) in &s.rows {
                    println!("  {t:<32} {n:>10}");
                }
            }
        }
        Command::Sql(a) => run_sql(a).await?,
    }
    Ok(())
}

async fn run_sql(a: SqlArgs) -> Result<()> {
    let engine = Engine::new(DataDir::new(&a.data.data), CacheConfig { ttl: std::time::Duration::ZERO, ..CacheConfig::default() });
    let snapshot = engine.snapshot()?;
    let team = match &a.team {
        None => None,
        Some(slug) => Some(
            snapshot
                .team(slug)
                .ok_or_else(|| {
                    let known: Vec<_> = snapshot.teams.iter().map(|t| t.slug.as_str()).collect();
                    anyhow::anyhow!("no team {slug:?} in the snapshot; teams: {}", known.join(", "))
                })?
                .id,
        ),
    };
    let ctx = sql::adhoc_context(&snapshot, team).await?;
    let run = |q: String| {
        let ctx = ctx.clone();
        async move {
            let (schema, batches) = sql::run_readonly(&ctx, &q).await?;
            anyhow::Ok(sql::render(&schema, &batches, a.format)?)
        }
    };
    if let Some(q) = a.query {
        print!("{}", run(q).await?);
        return Ok(());
    }
    // Interactive: read statements ending with `;`, report errors and go on.
    let stdin = std::io::stdin();
    let mut pending = String::new();
    let prompt = |pending: &str| {
        use std::io::Write;
        eprint!("{}", if pending.is_empty() { "ocs-dash> " } else { "     ...> " });
        std::io::stderr().flush().ok();
    };
    prompt(&pending);
    for line in stdin.lines() {
        let line = line?;
        pending.push_str(&line);
        pending.push('\n');
        if line.trim_end().ends_with(';') {
            let q = std::mem::take(&mut pending);
            match run(q.trim().trim_end_matches(';').to_string()).await {
                Ok(out) => print!("{out}"),
                Err(e) => eprintln!("error: {e:#}"),
            }
        }
        prompt(&pending);
    }
    Ok(())
}
