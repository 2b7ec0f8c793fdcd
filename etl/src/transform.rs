//! The one transform from OCS source rows to a snapshot.
//!
//! Input: the source tables of [`crate::source`] registered in a DataFusion
//! context under their OCS names (staged Parquet from Postgres or from the
//! generator; for an incremental run, `chat_chatmessage` is a view that
//! rebuilds the message table from the previous snapshot plus new rows).
//! Output: every table of [`ocs_dash_engine::snapshot::TABLES`], resolved by
//! the SQL in `etl/sql/` (counted sessions, effective platforms, turns with
//! their session's attributes, tags filtered per metrics.md), plus the count
//! of each anomaly met on the way. Both readers run exactly this code, so a
//! generated snapshot and an exported one can't drift apart.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Int64Type;
use std::sync::Arc;

use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use ocs_dash_engine::snapshot::{self, VersionDir, register_table};

use crate::error::Result;
use crate::turn_tags::TurnTags;
use crate::{dangling, messages, write};

/// Memory the ETL's queries may hold before sorts and aggregations spill to disk.
const ETL_MEMORY: usize = 4 << 30;

/// A DataFusion sort whose buffered rows stay under this (before it spills,
/// or at its end) is done in one piece (concatenate, sort, take) instead of
/// sorting every batch and merging them. DataFusion sorts the unpartitioned
/// tables and the team streams too large for [`crate::sort`]; when `turns`
/// still went through it, at scale m: `turns` 7.1 → 6.7 s and the transform
/// 9.0 → 8.6 s, for a peak RSS of 1.2–1.4 GB instead of 0.95.
const SORT_IN_PLACE: usize = 512 << 20;

/// A join side estimated under this many bytes (or, without a size
/// estimate, rows) is collected into one hash table shared by every
/// partition of the other side.
const COLLECT_JOIN_SIDE_BYTES: usize = 256 << 20;
const COLLECT_JOIN_SIDE_ROWS: usize = 4 << 20;

/// A DataFusion context for the ETL: bounded memory, spilling sorts.
pub fn etl_context() -> Result<SessionContext> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut config = SessionConfig::new()
        .with_target_partitions(threads)
        .with_information_schema(false);
    config.options_mut().execution.sort_in_place_threshold_bytes = SORT_IN_PLACE;
    // Build one hash table of a join's smaller side, up to a million or so
    // sessions, and stream the larger side through it where it lies, instead
    // of repartitioning both sides by the join key: the pass over the 10 M
    // messages ([`crate::messages`]) otherwise copies every message once
    // more only to hash-partition it by chat.
    let optimizer = &mut config.options_mut().optimizer;
    optimizer.hash_join_single_partition_threshold = COLLECT_JOIN_SIDE_BYTES;
    optimizer.hash_join_single_partition_threshold_rows = COLLECT_JOIN_SIDE_ROWS;
    // A fair pool: spillable operators (hash aggregates, sorts) share it
    // evenly and spill, leaving room for the merge phase that cannot; the
    // greedy pool let aggregates take it all and failed the merge at scale m.
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(ETL_MEMORY)))
        .build_arc()?;
    Ok(SessionContext::new_with_config_rt(config, runtime))
}

/// The SQL of the tables every later step reads, in writing order. Later
/// queries read earlier outputs back from the new snapshot as `snap_<table>`.
const FIRST: &[(&str, &str)] = &[
    ("teams", TEAMS_SQL),
    ("chatbots", CHATBOTS_SQL),
    ("participants", PARTICIPANTS_SQL),
    ("tags", TAGS_SQL),
    ("sessions", SESSIONS_SQL),
];

pub const TEAMS_SQL: &str = include_str!("../sql/teams.sql");
pub const CHATBOTS_SQL: &str = include_str!("../sql/chatbots.sql");
pub const PARTICIPANTS_SQL: &str = include_str!("../sql/participants.sql");
pub const TAGS_SQL: &str = include_str!("../sql/tags.sql");
pub const SESSIONS_SQL: &str = include_str!("../sql/sessions.sql");
/// Every tagged item, for the next incremental run.
pub const TAGGED_ITEMS_SQL: &str = include_str!("../sql/tagged_items.sql");
/// Tag attachments that can become message tags, as the view `message_items`.
pub const MESSAGE_ITEMS_SQL: &str = include_str!("../sql/message_items.sql");
/// `message_items` joined with `snap_turns` (incremental runs; a full run
/// builds the table in the pass over turns, [`crate::turn_tags`]).
pub const MESSAGE_TAGS_SQL: &str = include_str!("../sql/message_tags.sql");
pub const SESSION_TAGS_SQL: &str = include_str!("../sql/session_tags.sql");
/// Anomalies of tables other than messages ([`crate::messages`] counts
/// those), except the dangling tagged items ([`crate::dangling`]).
pub const ANOMALIES_SQL: &str = include_str!("../sql/anomalies.sql");

/// What the transform produced.
#[derive(Debug, Default, Clone)]
pub struct Transformed {
    /// Rows written per snapshot table.
    pub tables: BTreeMap<String, u64>,
    /// Source rows met per anomaly kind (only kinds that occurred).
    pub anomalies: BTreeMap<String, u64>,
}

/// Registers the result of `sql` as the view `name`.
pub async fn create_view(ctx: &SessionContext, name: &str, sql: &str) -> Result<()> {
    let view = ctx.sql(sql).await?.into_view();
    ctx.deregister_table(name)?;
    ctx.register_table(name, view)?;
    Ok(())
}

/// Runs the transform: source tables registered in `ctx` → the snapshot
/// tables written into `version`.
///
/// The tags of every tagged message are read beside the tables everything
/// else reads. Then one pass over the messages joined with their sessions
/// ([`crate::messages`]) feeds two strands that run at once: turns with
/// their rollup and their message tags ([`crate::turn_tags`]); and the
/// tagged items, session tags, anomalies and, once the pass is over, the
/// other messages. Each strand alone leaves a core idle much of the time (a
/// sort's merge, a writer waiting on its encoders).
pub async fn run(ctx: &SessionContext, version: &VersionDir) -> Result<Transformed> {
    create_view(ctx, "message_items", MESSAGE_ITEMS_SQL).await?;
    let first = async {
        let mut tables = BTreeMap::new();
        for (name, sql) in FIRST {
            tables.extend(step(ctx, version, name, sql).await?);
        }
        Ok::<_, crate::error::Error>(tables)
    };
    let tags = TurnTags::read(ctx, "SELECT team_id, tag_id, message_id FROM message_items");
    let (mut tables, tags) = futures::try_join!(first, tags)?;
    let task = ctx.task_ctx();
    let (turns, pass) = messages::Pass::start(ctx, write::team_streams(&task)).await?;
    let turns = write::sort_each(turns, crate::slots::turns_def(), &task)?;
    let turns = async {
        let started = std::time::Instant::now();
        let written = crate::slots::write_turns(turns, version, Arc::new(tags)).await?;
        registered(ctx, version, started, written)
    };
    let rest = async {
        let mut written = step(ctx, version, "_tagged_items", TAGGED_ITEMS_SQL).await?;
        written.extend(step(ctx, version, "session_tags", SESSION_TAGS_SQL).await?);
        let mut found = BTreeMap::new();
        for (kind, n) in anomalies(ctx, ANOMALIES_SQL).await? {
            if n > 0 {
                found.insert(kind, n as u64);
            }
        }
        let messages = dangling::Messages::read(ctx, "SELECT id FROM chat_chatmessage").await?;
        messages.save(version).await?;
        let n = dangling::count(ctx, &messages).await?;
        if n > 0 {
            found.insert(dangling::KIND.to_string(), n);
        }
        // The rest of the pass over messages.
        let started = std::time::Instant::now();
        let (others, counts) = pass.finish().await?;
        let def = snapshot::table("_other_messages").expect("a snapshot table");
        let rows = write::write_table(ctx.read_table(Arc::new(others))?, def, version).await?;
        written.extend(registered(ctx, version, started, vec![("_other_messages", rows)])?);
        for (kind, n) in counts.kinds().filter(|(_, n)| *n > 0) {
            found.insert(kind.to_string(), n);
        }
        Ok::<_, crate::error::Error>((written, found))
    };
    let (turns, (rest, anomalies)) = futures::try_join!(turns, rest)?;
    tables.extend(turns);
    tables.extend(rest);
    Ok(Transformed { tables, anomalies })
}

/// Writes the snapshot table `name` from `sql` and registers it as
/// `snap_<name>`; returns the rows written.
async fn step(ctx: &SessionContext, version: &VersionDir, name: &'static str, sql: &str) -> Result<Vec<(String, u64)>> {
    let started = std::time::Instant::now();
    let df = ctx.sql(sql).await?;
    let def = snapshot::table(name).expect("a snapshot table");
    let rows = crate::write::write_table(df, def, version).await?;
    registered(ctx, version, started, vec![(name, rows)])
}

/// Logs the tables a step wrote (begun at `started`) and registers each as
/// `snap_<name>`; returns the rows written per table.
fn registered(
    ctx: &SessionContext,
    version: &VersionDir,
    started: std::time::Instant,
    written: Vec<(&'static str, u64)>,
) -> Result<Vec<(String, u64)>> {
    for (name, rows) in &written {
        tracing::info!(
            table = name,
            rows,
            ms = started.elapsed().as_millis() as u64,
            "wrote snapshot table"
        );
        let def = snapshot::table(name).expect("a snapshot table");
        register_table(ctx, &format!("snap_{name}"), version, def)?;
    }
    Ok(written.into_iter().map(|(n, rows)| (n.to_string(), rows)).collect())
}

/// The non-null values, in order, of the one Int64 column `sql` returns.
pub async fn int64_values(ctx: &SessionContext, sql: &str) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    let mut stream = ctx.sql(sql).await?.execute_stream().await?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let col = batch.column(0).as_primitive::<Int64Type>();
        if col.null_count() == 0 {
            out.extend_from_slice(col.values());
        } else {
            out.extend(col.iter().flatten());
        }
    }
    Ok(out)
}

/// Runs an anomaly query: (kind, count) rows.
pub async fn anomalies(ctx: &SessionContext, sql: &str) -> Result<Vec<(String, i64)>> {
    let mut out = Vec::new();
    for batch in ctx.sql(sql).await?.collect().await? {
        let kinds = batch.column(0).as_string::<i32>();
        let counts = batch.column(1).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            out.push((kinds.value(i).to_string(), counts.value(i)));
        }
    }
    Ok(out)
}
