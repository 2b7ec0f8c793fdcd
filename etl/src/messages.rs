//! The one pass over every message joined with its chat's session
//! (`etl/sql/messages.sql`), split three ways: turns, the other valid
//! messages, and the counts of the anomalies of single messages.
//!
//! A full run reads the 10 M staged messages and joins them with the
//! sessions once, here, instead of once for each of the three: the join's
//! rows are routed to the writers of `turns` ([`Pass::start`]) while the
//! other messages and the counts gather beside them ([`Pass::finish`]).
//! An incremental run, whose derived messages are few, reads the same SQL
//! through [`turns_sql`], [`others_sql`] and [`count`], so both runs
//! classify a message by the same predicates.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::{filter_record_batch, interleave_record_batch};
use datafusion::arrow::datatypes::{Int64Type, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{ExecutionPlanProperties, SendableRecordBatchStream, displayable};
use datafusion::prelude::SessionContext;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use ocs_dash_engine::snapshot::{TEAM_COLUMN, TableDef, table};
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::slots::turns_def;
use crate::write::with_team;

/// Every message with its session, classified.
pub const MESSAGES_SQL: &str = include_str!("../sql/messages.sql");

/// The anomalies of single messages: each is a boolean column of
/// [`MESSAGES_SQL`] named after its kind.
pub const KINDS: [&str; 4] = [
    "orphan_messages",
    "unknown_message_types",
    "messages_missing_columns",
    "turns_before_session_start",
];

/// Batches a turns stream may hold before its sorter takes them.
const QUEUED: usize = 4;

/// Turns routed at a time ([`Router`]).
const ROUTED_ROWS: usize = 64 * 1024;

fn others_def() -> &'static TableDef {
    table("_other_messages").expect("_other_messages table")
}

/// The column names of `def`'s rows as the transform yields them: `team_id`
/// first for a partitioned table.
fn names(def: &TableDef) -> Vec<String> {
    let schema = if def.partitioned {
        with_team(def)
    } else {
        def.schema.clone()
    };
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

/// `SELECT <def's columns> FROM (MESSAGES_SQL) WHERE <flag>`.
fn select(def: &TableDef, flag: &str) -> String {
    format!(
        "SELECT {} FROM (\n{MESSAGES_SQL}\n) WHERE {flag}",
        names(def).join(", ")
    )
}

/// The turns of `chat_chatmessage`: `team_id`, then the columns of `turns`.
pub fn turns_sql() -> String {
    select(turns_def(), "is_turn")
}

/// The other valid messages of `chat_chatmessage`: the columns of
/// `_other_messages`.
pub fn others_sql() -> String {
    select(others_def(), "is_other")
}

/// Messages met per anomaly kind, in the order of [`KINDS`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts(pub [u64; 4]);

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        for (n, more) in self.0.iter_mut().zip(other.0) {
            *n += more;
        }
    }
}

impl Counts {
    /// Adds the flags of a batch whose kind columns are at `at`.
    fn add(&mut self, batch: &RecordBatch, at: &[usize; 4]) {
        for (n, &c) in self.0.iter_mut().zip(at) {
            *n += batch.column(c).as_boolean().true_count() as u64;
        }
    }

    /// Each kind with its count.
    pub fn kinds(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        KINDS.iter().copied().zip(self.0)
    }
}

/// The anomaly counts over every message of `chat_chatmessage` in `ctx`.
pub async fn count(ctx: &SessionContext) -> Result<Counts> {
    let sql = format!("SELECT {} FROM (\n{MESSAGES_SQL}\n)", KINDS.join(", "));
    let mut stream = ctx.sql(&sql).await?.execute_stream().await?;
    let mut counts = Counts::default();
    while let Some(batch) = stream.next().await {
        counts.add(&batch?, &[0, 1, 2, 3]);
    }
    Ok(counts)
}

/// Where the columns of each output are in a row of [`MESSAGES_SQL`].
#[derive(Debug, Clone)]
struct Columns {
    team: usize,
    is_turn: usize,
    is_other: usize,
    turns: Vec<usize>,
    others: Vec<usize>,
    kinds: [usize; 4],
}

impl Columns {
    fn of(schema: &Schema) -> Result<Columns> {
        let at = |name: &str| schema.index_of(name).map_err(Error::from);
        let all = |def: &TableDef| names(def).iter().map(|n| at(n)).collect::<Result<Vec<_>>>();
        Ok(Columns {
            team: at(TEAM_COLUMN)?,
            is_turn: at("is_turn")?,
            is_other: at("is_other")?,
            turns: all(turns_def())?,
            others: all(others_def())?,
            kinds: [at(KINDS[0])?, at(KINDS[1])?, at(KINDS[2])?, at(KINDS[3])?],
        })
    }
}

/// What one part of the join yields besides its turns.
type Rest = (Vec<RecordBatch>, Counts);

/// The pass under way (a full run), once its turns are routed.
#[derive(Debug)]
pub struct Pass {
    others: SchemaRef,
    parts: JoinSet<Result<Rest>>,
}

impl Pass {
    /// Starts the pass over `chat_chatmessage` in `ctx`, each part of the
    /// join on a task of its own. Returns the turns (`team_id`, then the
    /// columns of `turns`, in no order) split between `streams` streams, a
    /// team's turns all in one; the pass goes on only as they are read.
    pub async fn start(ctx: &SessionContext, streams: usize) -> Result<(Vec<SendableRecordBatchStream>, Pass)> {
        let df = ctx.sql(MESSAGES_SQL).await?;
        let task = Arc::new(df.task_ctx());
        let plan = df.create_physical_plan().await?;
        tracing::debug!(plan = %displayable(plan.as_ref()).indent(true), "the pass over messages");
        let schema = plan.schema();
        let c = Columns::of(&schema)?;
        let turns_schema = Arc::new(schema.project(&c.turns)?);
        let others = Arc::new(schema.project(&c.others)?);
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..streams).map(|_| mpsc::channel(QUEUED)).unzip();
        let mut parts = JoinSet::new();
        for p in 0..plan.output_partitioning().partition_count() {
            let input = plan.execute(p, task.clone())?;
            parts.spawn(route(input, c.clone(), senders.clone()));
        }
        let turns = receivers
            .into_iter()
            .map(|r| -> SendableRecordBatchStream { Box::pin(RecordBatchStreamAdapter::new(turns_schema.clone(), r)) })
            .collect();
        Ok((turns, Pass { others, parts }))
    }

    /// Waits for the pass to end; returns the other messages (the columns
    /// of `_other_messages`, in no order) and the anomaly counts.
    pub async fn finish(mut self) -> Result<(MemTable, Counts)> {
        let (mut others, mut counts) = (Vec::new(), Counts::default());
        while let Some(done) = self.parts.join_next().await {
            let (batches, n) = done.map_err(|e| Error::DataFusion(DataFusionError::External(Box::new(e))))??;
            others.push(batches);
            counts += n;
        }
        Ok((MemTable::try_new(self.others, others)?, counts))
    }
}

/// Routes one part of the join: each batch's turns to the stream of their
/// team, its other messages and counts kept. An error reaches the turns
/// streams too, so their writers stop at once.
async fn route(
    input: SendableRecordBatchStream,
    c: Columns,
    mut turns: Vec<mpsc::Sender<datafusion::error::Result<RecordBatch>>>,
) -> Result<Rest> {
    let routed = route_all(input, &c, &mut turns).await;
    if let Err(e) = &routed {
        for to in &mut turns {
            // A stream whose writer stopped already needs no word.
            let _ = to
                .send(Err(DataFusionError::Execution(format!("reading the messages: {e}"))))
                .await;
        }
    }
    routed
}

async fn route_all(
    mut input: SendableRecordBatchStream,
    c: &Columns,
    turns: &mut [mpsc::Sender<datafusion::error::Result<RecordBatch>>],
) -> Result<Rest> {
    let (mut others, mut counts) = (Vec::new(), Counts::default());
    let mut router = Router::new(turns.len());
    while let Some(batch) = input.next().await {
        let batch = batch?;
        counts.add(&batch, &c.kinds);
        router.add(&batch, c)?;
        if router.rows >= ROUTED_ROWS && !router.send(turns).await? {
            // The writers stopped: their error says why.
            return Ok((others, counts));
        }
        let other = filter_record_batch(&batch.project(&c.others)?, batch.column(c.is_other).as_boolean())?;
        if other.num_rows() > 0 {
            others.push(other);
        }
    }
    router.send(turns).await?;
    Ok((others, counts))
}

/// Turns gathered from the join's batches until there are [`ROUTED_ROWS`]
/// of them, then handed on as one batch per stream: a stream's sorter then
/// holds a few large batches instead of thousands of small ones, which each
/// batch it gathers would have to go through.
struct Router {
    /// The turn columns of the join's batches since the last send.
    held: Vec<RecordBatch>,
    /// Per stream, its turns: (batch in `held`, row).
    picks: Vec<Vec<(usize, usize)>>,
    rows: usize,
}

impl Router {
    fn new(streams: usize) -> Router {
        Router {
            held: Vec::new(),
            picks: vec![Vec::new(); streams],
            rows: 0,
        }
    }

    /// Takes the turns of a batch of the join, each to its team's stream.
    fn add(&mut self, batch: &RecordBatch, c: &Columns) -> Result<()> {
        let is_turn = batch.column(c.is_turn).as_boolean();
        let team = batch.column(c.team).as_primitive::<Int64Type>();
        let (at, streams) = (self.held.len(), self.picks.len() as i64);
        let before = self.rows;
        for i in 0..batch.num_rows() {
            if is_turn.is_valid(i) && is_turn.value(i) {
                self.picks[team.value(i).rem_euclid(streams) as usize].push((at, i));
                self.rows += 1;
            }
        }
        if self.rows > before {
            self.held.push(batch.project(&c.turns)?);
        }
        Ok(())
    }

    /// Hands each stream its turns; false if the streams' readers stopped.
    async fn send(&mut self, turns: &mut [mpsc::Sender<datafusion::error::Result<RecordBatch>>]) -> Result<bool> {
        let held: Vec<&RecordBatch> = self.held.iter().collect();
        for (to, picks) in turns.iter_mut().zip(&mut self.picks) {
            if picks.is_empty() {
                continue;
            }
            let rows = interleave_record_batch(&held, picks)?;
            picks.clear();
            if to.send(Ok(rows)).await.is_err() {
                return Ok(false);
            }
        }
        self.held.clear();
        self.rows = 0;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Message ids, sorted, of `batches`.
    fn ids(batches: &[RecordBatch]) -> Vec<i64> {
        let mut out: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                b.column_by_name("message_id")
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        out.sort();
        out
    }

    async fn context() -> SessionContext {
        let ctx = SessionContext::new();
        // Chat 10: team 1, counted, from 12:00; chat 20: team 2, counted,
        // from 12:00; chat 30: team 3, not counted; chat 40 has no session.
        ctx.sql(
            "CREATE VIEW snap_sessions AS SELECT team_id, session_id, chat_id, chatbot_id, participant_id,
                 platform, counted, arrow_cast(created_at, 'Timestamp(Microsecond, Some(\"UTC\"))') AS created_at,
                 arrow_cast(ended_at, 'Timestamp(Microsecond, Some(\"UTC\"))') AS ended_at FROM (VALUES
                 (1, 100, 10, 7, 70, 'web', true, TIMESTAMP '2026-01-01 12:00:00', TIMESTAMP '2026-01-01 13:00:00'),
                 (2, 200, 20, 8, NULL, 'api', true, TIMESTAMP '2026-01-01 12:00:00', NULL),
                 (3, 300, 30, 9, 90, 'web', false, TIMESTAMP '2026-01-01 12:00:00', NULL)
             ) AS s(team_id, session_id, chat_id, chatbot_id, participant_id, platform, counted, created_at, ended_at)",
        )
        .await
        .unwrap();
        ctx.sql(
            "CREATE VIEW chat_chatmessage AS SELECT id, chat_id, message_type,
                 arrow_cast(created_at, 'Timestamp(Microsecond, Some(\"UTC\"))') AS created_at FROM (VALUES
                 (1, 10, 'human', TIMESTAMP '2026-01-01 12:01:00'),
                 (2, 10, 'system', TIMESTAMP '2026-01-01 12:01:00'),
                 (3, 20, 'ai', TIMESTAMP '2026-01-01 11:59:00'),
                 (4, 30, 'human', TIMESTAMP '2026-01-01 12:01:00'),
                 (5, 40, 'human', TIMESTAMP '2026-01-01 12:01:00'),
                 (6, 10, 'bogus', TIMESTAMP '2026-01-01 12:01:00'),
                 (7, 10, 'human', NULL),
                 (8, 20, 'human', TIMESTAMP '2026-01-01 12:02:00')
             ) AS m(id, chat_id, message_type, created_at)",
        )
        .await
        .unwrap();
        ctx
    }

    #[tokio::test]
    async fn one_pass_splits_turns_by_team_others_and_anomalies_as_the_views_do() {
        let ctx = context().await;
        let (streams, pass) = Pass::start(&ctx, 2).await.unwrap();
        let mut turns = Vec::new();
        for stream in streams {
            let batches: Vec<RecordBatch> = stream.map(|b| b.unwrap()).collect().await;
            let teams: Vec<i64> = batches
                .iter()
                .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
                .collect();
            turns.push((ids(&batches), teams));
        }
        // Team 2 goes to stream 0, team 1 to stream 1.
        assert_eq!(turns, vec![(vec![3, 8], vec![2, 2]), (vec![1], vec![1])]);
        let (others, counts) = pass.finish().await.unwrap();
        let others = ctx.read_table(Arc::new(others)).unwrap().collect().await.unwrap();
        assert_eq!(ids(&others), vec![2, 4, 5, 6]);
        assert_eq!(others[0].schema().fields().len(), others_def().schema.fields().len());
        // Orphan 5, unknown type 6, no created_at 7, turn 3 before its session.
        assert_eq!(counts, Counts([1, 1, 1, 1]));

        // The views an incremental run reads classify alike.
        let batches = ctx.sql(&turns_sql()).await.unwrap().collect().await.unwrap();
        assert_eq!(ids(&batches), vec![1, 3, 8]);
        let length = batches
            .iter()
            .flat_map(|b| {
                b.column_by_name("session_length_us")
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .iter()
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>();
        assert!(length.contains(&Some(3_600_000_000)) && length.contains(&None));
        let batches = ctx.sql(&others_sql()).await.unwrap().collect().await.unwrap();
        assert_eq!(ids(&batches), vec![2, 4, 5, 6]);
        assert_eq!(count(&ctx).await.unwrap(), counts);
    }
}
