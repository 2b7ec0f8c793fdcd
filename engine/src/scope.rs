//! A query scope: one team's tables of one snapshot version, with the
//! request's filters applied as views.
//!
//! Team isolation is by construction: each table is registered from the
//! team's own `team_id=<id>` folder only, so no query in the scope can
//! reach another team's rows, whatever its SQL says. Filters are applied
//! with DataFusion's expression API from parsed, typed values; nothing from a
//! request is spliced into SQL text.

use std::sync::Arc;

use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::{Expr, col, lit};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::error::Result;
use crate::filters::Filters;
use crate::snapshot::{TableDef, VersionDir, register_object_store, table, utc_micros};

/// The team-scoped tables charts read.
pub const TEAM_TABLES: &[&str] = &[
    "chatbots",
    "participants",
    "sessions",
    "turns",
    "turn_slots",
    "tags",
    "message_tags",
    "session_tags",
];

/// The DataFusion configuration of every engine query.
///
/// Parquet filter pushdown (evaluating predicates while decoding) stays off,
/// DataFusion's default: the date window, the team and the filters still
/// prune files, row groups and pages by their statistics (`tests/pushdown.rs`),
/// and what survives that pruning mostly matches (a window covers whole
/// pages), so filtering rows after decoding is cheaper. Measured at scale m,
/// largest team: the session lengths of 365 days 32 -> 15 ms, sessions
/// started 17 -> 8 ms, user engagement 45 -> 40 ms, and no query slower,
/// with or without a chatbot or channel filter.
pub fn engine_config() -> SessionConfig {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    SessionConfig::new().with_target_partitions(threads)
}

/// A fresh query context on `runtime`. Sharing one runtime between queries
/// shares its caches of file listings and Parquet footers, so a chart does
/// not list folders or read footers again; snapshot versions are immutable
/// folders, so a cached entry never goes stale.
pub fn session(runtime: &Arc<RuntimeEnv>) -> SessionContext {
    SessionContext::new_with_config_rt(engine_config(), runtime.clone())
}

/// Registers one team's folder of a table of `version` in `ctx`, with the
/// data directory's object store (a team with no rows in the table gets an
/// empty folder: an empty table). Usable on any context, local or
/// distributed.
pub fn register_team_table(ctx: &SessionContext, version: &VersionDir, team_id: i64, def: &TableDef) -> Result<()> {
    register_object_store(ctx, version.data());
    let opts = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new(version.team_url(def.name, team_id)?)
        .with_listing_options(opts)
        .with_schema(def.schema.clone());
    // The runtime's statistics cache: without it every scan derives each
    // file's statistics from its footer again (most of a chart's planning
    // time); files of a version never change, so entries never go stale.
    let stats = ctx.runtime_env().cache_manager.get_file_statistic_cache();
    ctx.register_table(def.name, Arc::new(ListingTable::try_new(config)?.with_cache(stats)))?;
    Ok(())
}

/// Where a query reads turn activity from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// One row per turn (`turns`).
    Raw,
    /// One row per session and 15-minute slot (`turn_slots`); exact when the
    /// window and every bucket start on a slot boundary inside the rollup's
    /// coverage (see [`crate::engine`]).
    Rollup,
}

/// Fills `ctx` (a fresh context, see [`session`]) with `team_id`'s tables
/// of `version` and the filtered views `f_chatbots`, `f_sessions`, `f_message_tags`,
/// `f_session_tags`, and `f_activity`: turn activity with columns
/// `session_id, chatbot_id, participant_id, platform, created_at, human, ai,
/// last_human_at, session_length_us, prev_at, prev_human_at, first_in_window,
/// first_human_in_window`, one row per turn or per slot depending on
/// `activity`. `prev_at` is the time of the session's previous row and
/// `prev_human_at` that of its previous row with a human turn (NULL for none;
/// over raw turns only rows inside the window count). `first_in_window` is
/// true on the session's first row in the window (`prev_at` NULL or before
/// the window's start) and `first_human_in_window` on its first row there
/// with a human turn (the same test on `prev_human_at`), so a chart counts
/// each session once with a filter instead of a per-session grouping; a row
/// is its session's first in a bucket when it is first in the window or
/// `bucket(prev_at) <> bucket(created_at)`.
pub async fn team_scope(
    ctx: SessionContext,
    version: &VersionDir,
    team_id: i64,
    filters: &Filters,
    activity: Activity,
) -> Result<SessionContext> {
    for name in TEAM_TABLES {
        register_team_table(&ctx, version, team_id, table(name).expect("known table"))?;
    }
    let bots = if filters.experiments.is_empty() {
        lit(true)
    } else {
        // Ids that are not chatbots of this team (version rows, other
        // teams' bots, unknown ids) match nothing.
        let own = team_chatbot_ids(&ctx).await?;
        let ids: Vec<Expr> = filters
            .experiments
            .iter()
            .filter(|id| own.contains(id))
            .map(|id| lit(*id))
            .collect();
        if ids.is_empty() {
            lit(false)
        } else {
            col("chatbot_id").in_list(ids, false)
        }
    };
    let platforms = in_list("platform", filters.channels.iter().map(|p| lit(p.as_str())).collect());
    let listed = !col("is_archived");
    let (start, end) = filters.window();
    let (start, end) = (
        lit(utc_micros(start.timestamp_micros())),
        lit(utc_micros(end.timestamp_micros())),
    );
    let activity_view = match activity {
        Activity::Raw => {
            // The window's turns first, so that the date pushdown prunes, and
            // `prev_at`/`prev_human_at` are then taken inside the window: a
            // previous turn before the window and none at all both make a
            // turn its session's first in the window, so the charts' tests
            // read the same.
            let turns = ctx
                .table("turns")
                .await?
                .filter(bots.clone())?
                .filter(platforms.clone())?
                .filter(col("created_at").gt_eq(start.clone()).and(col("created_at").lt(end)))?;
            ctx.register_table("w_turns", turns.into_view())?;
            ctx.sql(include_str!("../../sql/raw_activity.sql")).await?
        }
        Activity::Rollup => ctx
            .table("turn_slots")
            .await?
            .filter(bots.clone())?
            .filter(platforms.clone())?
            .select(vec![
                col("session_id"),
                col("chatbot_id"),
                col("participant_id"),
                col("platform"),
                col("slot").alias("created_at"),
                col("human"),
                col("ai"),
                col("last_human_at"),
                col("session_length_us"),
                col("prev_slot").alias("prev_at"),
                col("prev_human_slot").alias("prev_human_at"),
            ])?,
    };
    let first = |prev: &str| col(prev).is_null().or(col(prev).lt(start.clone()));
    let activity_view = activity_view
        .with_column("first_in_window", first("prev_at"))?
        .with_column("first_human_in_window", first("prev_human_at"))?;
    ctx.register_table("f_activity", activity_view.into_view())?;
    let views: [(&str, &str, Vec<Expr>); 4] = [
        ("f_chatbots", "chatbots", vec![listed, bots.clone()]),
        (
            "f_sessions",
            "sessions",
            vec![col("counted"), bots.clone(), platforms.clone()],
        ),
        ("f_message_tags", "message_tags", vec![bots.clone(), platforms.clone()]),
        ("f_session_tags", "session_tags", vec![bots, platforms]),
    ];
    for (view, base, predicates) in views {
        let mut df = ctx.table(base).await?;
        for p in predicates {
            df = df.filter(p)?;
        }
        ctx.register_table(view, df.into_view())?;
    }
    Ok(ctx)
}

async fn team_chatbot_ids(ctx: &SessionContext) -> Result<std::collections::HashSet<i64>> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    let mut ids = std::collections::HashSet::new();
    for b in ctx
        .table("chatbots")
        .await?
        .select_columns(&["chatbot_id"])?
        .collect()
        .await?
    {
        ids.extend(b.column(0).as_primitive::<Int64Type>().values().iter().copied());
    }
    Ok(ids)
}

/// `column IN (values)`, or TRUE for an empty list (no filter).
fn in_list(column: &str, values: Vec<Expr>) -> Expr {
    if values.is_empty() {
        lit(true)
    } else {
        col(column).in_list(values, false)
    }
}
