//! `ocs-dash`: the command line. Parses flags and calls the libraries;
//! every flag also reads an `OCS_DASH_*` environment variable.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use ocs_dash_api::store::Store;
use ocs_dash_api::{ServeConfig, Server, Settings, auth, parse_duration, shutdown_signal};
use ocs_dash_engine::snapshot::DataDir;
use ocs_dash_engine::{Backend, CacheConfig, Engine, Snapshot, sql};
use ocs_dash_etl::generate::{self, GenOptions, Scale};
use ocs_dash_etl::progress::Progress;
use ocs_dash_etl::run::{self, EtlOptions};

/// jemalloc keeps freed memory for reuse a while instead of handing large
/// blocks straight back to the kernel as glibc did, where the ETL's Arrow
/// buffers were faulted in and zeroed afresh batch after batch (README,
/// "One pass over the messages; CollectLeft; jemalloc").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    /// Generate a realistic multi-team data set into a snapshot (no database needed), create an API key, serve the dashboard and print its URL.
    Demo(DemoArgs),
    /// Serve the API and the dashboard page over the current snapshot.
    Serve(ServeArgs),
    /// Manage API keys (each belongs to one team and one named user).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Export an OCS Postgres database into a new snapshot and make it current.
    Etl(EtlArgs),
    /// Fill a Postgres database with a synthetic OCS data set (creates the tables where missing).
    Generate(GenerateArgs),
    /// Ad-hoc read-only SQL over one team's snapshot tables; without a query, an interactive prompt.
    Sql(SqlArgs),
    /// The daily metric rollup of the current snapshot: build, backfill a date range, prune old days.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Run a Ballista scheduler that `serve --ballista` and `sql --ballista` can send queries to.
    #[cfg(feature = "ballista")]
    BallistaScheduler(SchedulerArgs),
    /// Run a Ballista executor for a scheduler started by `ballista-scheduler`.
    #[cfg(feature = "ballista")]
    BallistaExecutor(ExecutorArgs),
}

#[cfg(feature = "ballista")]
#[derive(Debug, Args)]
struct SchedulerArgs {
    /// Address to listen on (clients use df://ADDRESS).
    #[arg(long, env = "OCS_DASH_BIND", default_value = "127.0.0.1:50050")]
    bind: SocketAddr,
}

#[cfg(feature = "ballista")]
#[derive(Debug, Args)]
struct ExecutorArgs {
    /// The scheduler's address.
    #[arg(long, env = "OCS_DASH_SCHEDULER", default_value = "127.0.0.1:50050")]
    scheduler: SocketAddr,
    /// Arrow Flight address (shuffle data, results); the scheduler, the other executors and clients must reach it.
    #[arg(long, env = "OCS_DASH_BIND", default_value = "127.0.0.1:50051")]
    bind: SocketAddr,
    /// Port for the tasks the scheduler pushes (on the --bind host).
    #[arg(long, env = "OCS_DASH_GRPC_PORT", default_value_t = 50052)]
    grpc_port: u16,
    /// Tasks run at once (0 = one per core).
    #[arg(long, env = "OCS_DASH_VCORES", default_value_t = 0)]
    vcores: usize,
    /// Directory for shuffle files (default: a temporary one).
    #[arg(long, env = "OCS_DASH_WORK_DIR")]
    work_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct BackendArg {
    /// Run the queries on an Apache DataFusion Ballista cluster: its scheduler's df://HOST:PORT (builds with the `ballista` feature).
    #[arg(long, env = "OCS_DASH_BALLISTA")]
    ballista: Option<String>,
}

impl BackendArg {
    fn backend(&self) -> Result<Backend> {
        match &self.ballista {
            None => Ok(Backend::Local),
            #[cfg(feature = "ballista")]
            Some(url) => Ok(Backend::Ballista(ocs_dash_engine::ballista::Cluster::new(url)?)),
            #[cfg(not(feature = "ballista"))]
            Some(_) => anyhow::bail!(
                "--ballista: this ocs-dash was built without Ballista; build it with `--features ballista`"
            ),
        }
    }
}

#[derive(Debug, Subcommand)]
enum SnapshotCommand {
    /// Rebuild the rollup over every day (or `--from`/`--to`, UTC days) into a new current version.
    Build(RollupArgs),
    /// Rebuild the rollup for exactly the days `--from`..`--to` (UTC), e.g. after pruning.
    Backfill(BackfillArgs),
    /// Keep the rollup for the last `--keep-days` days only; older windows are answered from raw turns.
    Prune(PruneArgs),
    /// Show the current snapshot: version, freshness, rows per table, rollup coverage.
    Status(DataArg),
}

#[derive(Debug, Args)]
struct RollupArgs {
    #[command(flatten)]
    data: DataArg,
    /// First UTC day covered (default: unbounded).
    #[arg(long, env = "OCS_DASH_FROM")]
    from: Option<chrono::NaiveDate>,
    /// Last UTC day covered (default: unbounded).
    #[arg(long, env = "OCS_DASH_TO")]
    to: Option<chrono::NaiveDate>,
    /// Complete old versions to keep besides the current one.
    #[arg(long, env = "OCS_DASH_KEEP", default_value_t = run::DEFAULT_KEEP)]
    keep: usize,
}

#[derive(Debug, Args)]
struct BackfillArgs {
    #[command(flatten)]
    data: DataArg,
    /// First UTC day.
    #[arg(long, env = "OCS_DASH_FROM")]
    from: chrono::NaiveDate,
    /// Last UTC day.
    #[arg(long, env = "OCS_DASH_TO")]
    to: chrono::NaiveDate,
    /// Complete old versions to keep besides the current one.
    #[arg(long, env = "OCS_DASH_KEEP", default_value_t = run::DEFAULT_KEEP)]
    keep: usize,
}

#[derive(Debug, Args)]
struct PruneArgs {
    #[command(flatten)]
    data: DataArg,
    /// Days of rollup to keep, counted back from the snapshot's as-of day.
    #[arg(long, env = "OCS_DASH_KEEP_DAYS")]
    keep_days: u64,
    /// Complete old versions to keep besides the current one.
    #[arg(long, env = "OCS_DASH_KEEP", default_value_t = run::DEFAULT_KEEP)]
    keep: usize,
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
    #[command(flatten)]
    backend: BackendArg,
}

#[derive(Debug, Args)]
struct DataArg {
    /// Where the snapshots are: a local folder, or an object-store URL such
    /// as s3://bucket/prefix (credentials, region and endpoint from the AWS_*
    /// environment variables).
    #[arg(long, env = "OCS_DASH_DATA", default_value = "./data")]
    data: String,
}

impl DataArg {
    fn open(&self) -> Result<DataDir> {
        Ok(DataDir::open(&self.data)?)
    }
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
    /// Address to serve on.
    #[arg(long, env = "OCS_DASH_BIND", default_value = "127.0.0.1:8000")]
    bind: SocketAddr,
    /// Only generate the snapshot; no key, no server.
    #[arg(long, env = "OCS_DASH_NO_SERVE")]
    no_serve: bool,
    #[command(flatten)]
    meta: MetaArg,
}

#[derive(Debug, Args)]
struct MetaArg {
    /// Postgres URL of the metadata store (keys, sessions, presets, audit log); default: STATE/meta.sqlite.
    #[arg(long, env = "OCS_DASH_META_URL")]
    meta_url: Option<String>,
    /// Local folder for the SQLite metadata store and the pseudonym key; default: the data directory when it is local (required when --data is a URL).
    #[arg(long, env = "OCS_DASH_STATE")]
    state: Option<PathBuf>,
}

impl MetaArg {
    /// The local folder for server state.
    fn state_dir(&self, data: &DataDir) -> Result<PathBuf> {
        match (&self.state, data.local_path()) {
            (Some(dir), _) => Ok(dir.clone()),
            (None, Some(local)) => Ok(local.to_path_buf()),
            (None, None) => anyhow::bail!(
                "--data {} is not a local folder: pass --state DIR, a local folder for the metadata store and the pseudonym key",
                data.location()
            ),
        }
    }
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    data: DataArg,
    /// Address to serve on.
    #[arg(long, env = "OCS_DASH_BIND", default_value = "127.0.0.1:8000")]
    bind: SocketAddr,
    /// How long chart answers stay cached (0, 90s, 30m, 2h, 1d); 0 turns the cache off.
    #[arg(long, env = "OCS_DASH_CACHE_TTL", default_value = "30m", value_parser = parse_duration)]
    cache_ttl: Duration,
    /// Upper bound of the cache's size, in MiB of JSON.
    #[arg(long, env = "OCS_DASH_CACHE_MB", default_value_t = 256)]
    cache_mb: u64,
    #[command(flatten)]
    meta: MetaArg,
    /// Mark the session cookie Secure (set when the server is reached over HTTPS).
    #[arg(long, env = "OCS_DASH_SECURE_COOKIES")]
    secure_cookies: bool,
    #[command(flatten)]
    backend: BackendArg,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key for a user of a team and print it (it is shown only this once).
    Create {
        /// The team's URL slug (in the current snapshot).
        #[arg(long, env = "OCS_DASH_TEAM")]
        team: String,
        /// Who the key is for (presets and the audit log are kept per user).
        #[arg(long, env = "OCS_DASH_USER")]
        user: String,
        #[command(flatten)]
        data: DataArg,
        #[command(flatten)]
        meta: MetaArg,
    },
    /// List the keys (never the keys themselves: id, prefix, team, user, dates).
    List {
        #[command(flatten)]
        data: DataArg,
        #[command(flatten)]
        meta: MetaArg,
        /// Print JSON.
        #[arg(long, env = "OCS_DASH_JSON")]
        json: bool,
    },
    /// Revoke a key (by the id `keys list` shows); its browser sessions end too.
    Revoke {
        /// The key's id.
        id: i64,
        #[command(flatten)]
        data: DataArg,
        #[command(flatten)]
        meta: MetaArg,
    },
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
    // A server logs its requests.
    let serving = matches!(
        &cli.command,
        Command::Serve(_) | Command::Demo(DemoArgs { no_serve: false, .. })
    );
    let default = match (terminal, serving) {
        (false, _) => "info",
        (true, true) => "warn,ocs_dash_api=info",
        (true, false) => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_new(cli.log.as_deref().unwrap_or(default))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
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
        Command::Demo(a) => run_demo(a).await?,
        Command::Serve(a) => {
            let data = a.data.open()?;
            let config = ServeConfig {
                state_dir: a.meta.state_dir(&data)?,
                data,
                bind: a.bind,
                cache: CacheConfig {
                    ttl: a.cache_ttl,
                    max_bytes: a.cache_mb << 20,
                },
                meta_url: a.meta.meta_url,
                settings: Settings {
                    secure_cookies: a.secure_cookies,
                },
                backend: a.backend.backend()?,
            };
            let server = Server::start(&config).await?;
            println!("serving on http://{}", server.local_addr()?);
            server.run(shutdown_signal()).await?;
        }
        Command::Keys(k) => run_keys(k).await?,
        Command::Etl(a) => {
            let opts = EtlOptions {
                database_url: a.database_url,
                data: a.data.open()?,
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
        #[cfg(feature = "ballista")]
        Command::BallistaScheduler(a) => {
            let listener = tokio::net::TcpListener::bind(a.bind).await?;
            println!("ballista scheduler on df://{}", listener.local_addr()?);
            ocs_dash_engine::ballista::run_scheduler(listener).await?;
        }
        #[cfg(feature = "ballista")]
        Command::BallistaExecutor(a) => {
            ocs_dash_engine::ballista::run_executor(ocs_dash_engine::ballista::ExecutorOptions {
                scheduler: a.scheduler,
                bind: a.bind,
                grpc_port: a.grpc_port,
                vcores: a.vcores,
                work_dir: a.work_dir,
            })
            .await?;
        }
        Command::Snapshot(c) => {
            use ocs_dash_engine::snapshot::RollupCoverage;
            use ocs_dash_etl::rollup;
            let m = match c {
                SnapshotCommand::Build(a) => {
                    rollup::rebuild(&a.data.open()?, RollupCoverage { from: a.from, to: a.to }, a.keep).await?
                }
                SnapshotCommand::Backfill(a) => {
                    if a.from > a.to {
                        anyhow::bail!("--from {} is after --to {}", a.from, a.to);
                    }
                    rollup::rebuild(
                        &a.data.open()?,
                        RollupCoverage {
                            from: Some(a.from),
                            to: Some(a.to),
                        },
                        a.keep,
                    )
                    .await?
                }
                SnapshotCommand::Prune(a) => rollup::prune(&a.data.open()?, a.keep_days, a.keep).await?,
                SnapshotCommand::Status(d) => d.open()?.require_head().await?.manifest,
            };
            let day = |d: Option<chrono::NaiveDate>| d.map_or("unbounded".to_string(), |d| d.to_string());
            println!(
                "snapshot {} ({} from {}), data as of {}",
                m.version,
                m.mode,
                m.source,
                m.as_of.to_rfc3339()
            );
            match m.rollup {
                Some(r) => println!("rollup covers {} .. {}", day(r.from), day(r.to)),
                None => println!("no rollup: every chart reads raw turns"),
            }
            for (t, n) in &m.tables {
                println!("  {t:<20} {n:>12} rows");
            }
        }
    }
    Ok(())
}

async fn run_demo(a: DemoArgs) -> Result<()> {
    let opts = GenOptions {
        scale: a.scale,
        seed: a.seed,
        end: chrono::Utc::now(),
        session_platform: true,
    };
    let mut progress = Progress::auto();
    let data = a.data.open()?;
    let m = run::generate_snapshot(&data, &opts, &mut progress).await?;
    println!("generated snapshot {} in {}", m.version, data.location());
    println!("teams: {:?}", m.teams);
    for (t, n) in &m.tables {
        println!("  {t:<20} {n:>10} rows");
    }
    if a.no_serve {
        return Ok(());
    }
    let config = ServeConfig {
        state_dir: a.meta.state_dir(&data)?,
        data,
        bind: a.bind,
        cache: CacheConfig::default(),
        meta_url: a.meta.meta_url,
        settings: Settings::default(),
        backend: Backend::Local,
    };
    let server = Server::start(&config).await?;
    let snapshot = server.state().engine().snapshot().await?;
    let team = snapshot
        .teams
        .first()
        .ok_or_else(|| anyhow::anyhow!("the generated snapshot has no team"))?;
    let key = auth::create_key(server.state().store(), team, "demo").await?;
    let addr = server.local_addr()?;
    // A wildcard bind is reached on loopback from this machine.
    let host = if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    println!();
    println!(
        "API key for team {:?} (user demo), shown once: {}",
        team.slug, key.secret
    );
    println!("dashboard:    http://{host}/a/{}/dashboard/", team.slug);
    println!("sign in with: http://{host}/login?key={}", key.secret);
    println!("stop with ctrl-c");
    server.run(shutdown_signal()).await?;
    Ok(())
}

/// The current snapshot of a data directory (keys are bound to its teams).
async fn current_snapshot(data: &DataDir) -> Result<std::sync::Arc<Snapshot>> {
    let engine = Engine::new(
        data.clone(),
        CacheConfig {
            ttl: Duration::ZERO,
            ..CacheConfig::default()
        },
    );
    Ok(engine.snapshot().await?)
}

async fn run_keys(k: KeysCommand) -> Result<()> {
    match k {
        KeysCommand::Create { team, user, data, meta } => {
            let data = data.open()?;
            let snapshot = current_snapshot(&data).await?;
            let team = snapshot.team(&team).ok_or_else(|| {
                let known: Vec<_> = snapshot.teams.iter().map(|t| t.slug.as_str()).collect();
                anyhow::anyhow!("no team {team:?} in the snapshot; teams: {}", known.join(", "))
            })?;
            let store = Store::open_for(&meta.state_dir(&data)?, meta.meta_url.as_deref()).await?;
            let key = auth::create_key(&store, team, &user).await?;
            eprintln!(
                "created key {} ({}…) for user {:?} of team {:?}; it is shown only now:",
                key.key.id, key.key.prefix, key.key.user, team.slug
            );
            println!("{}", key.secret);
        }
        KeysCommand::List { data, meta, json } => {
            let store = Store::open_for(&meta.state_dir(&data.open()?)?, meta.meta_url.as_deref()).await?;
            let keys = store.list_keys().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                println!(
                    "{:>5}  {:<14} {:<20} {:<20} {:<20} revoked",
                    "id", "prefix", "team", "user", "created"
                );
                for k in keys {
                    println!(
                        "{:>5}  {:<14} {:<20} {:<20} {:<20} {}",
                        k.id,
                        k.prefix,
                        k.team_slug,
                        k.user,
                        k.created_at.format("%Y-%m-%d %H:%M:%S"),
                        k.revoked_at
                            .map_or(String::new(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    );
                }
            }
        }
        KeysCommand::Revoke { id, data, meta } => {
            let store = Store::open_for(&meta.state_dir(&data.open()?)?, meta.meta_url.as_deref()).await?;
            if !store.revoke_key(id).await? {
                anyhow::bail!("no active key with id {id} (see `ocs-dash keys list`)");
            }
            println!("revoked key {id}");
        }
    }
    Ok(())
}

async fn run_sql(a: SqlArgs) -> Result<()> {
    let snapshot = current_snapshot(&a.data.open()?).await?;
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
    let ctx = sql::adhoc_context_on(&a.backend.backend()?, &snapshot, team).await?;
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
