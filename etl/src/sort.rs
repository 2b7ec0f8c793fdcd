//! The sort of one stream of a partitioned snapshot table ([`sorted`]), in
//! memory on 64-bit keys while the rows fit the ETL's memory pool, and with
//! DataFusion's external (spilling) sort when they do not.
//!
//! Every sort column of a snapshot table (the team, then the table's
//! `sort_by`) is an `Int64` or a `Timestamp(µs)` declared NOT NULL, so a
//! row's order is a tuple of at most [`MAX_KEYS`] integers. Sorting those
//! tuples with the row's position and then gathering the rows once is what
//! the in-memory path does. DataFusion's sort instead sorts every batch on
//! its own with a per-row comparator over the columns, spills sorted runs
//! (whole rows) to disk when its share of the pool is used up, and merges
//! them row by row: at scale m the `turns` sort spilled and merged about a
//! fifth of a full ETL's transform time.

use std::mem::size_of;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef, TimeUnit, TimestampMicrosecondType};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use futures::{StreamExt, TryStreamExt};

/// The most sort columns of any snapshot table, the team included
/// (`message_tags`: team, created_at, message_id, tag_id).
pub const MAX_KEYS: usize = 4;

/// A row's sort key (`K` columns) and where the row is: (batch, row in
/// the batch).
type Entry<const K: usize> = ([i64; K], u32, u32);

/// Rows per sorted output batch.
const OUTPUT_ROWS: usize = 16 * 1024;

/// `input` sorted by the columns at `keys`, ascending. Nothing is read
/// until the result is polled; its first poll reads all of `input`.
pub fn sorted(input: SendableRecordBatchStream, keys: Vec<usize>, task: Arc<TaskContext>) -> SendableRecordBatchStream {
    let schema = input.schema();
    let rows = futures::stream::once(sort(input, keys, task)).try_flatten();
    Box::pin(RecordBatchStreamAdapter::new(schema, rows))
}

async fn sort(
    mut input: SendableRecordBatchStream,
    keys: Vec<usize>,
    task: Arc<TaskContext>,
) -> Result<SendableRecordBatchStream> {
    assert!(
        !keys.is_empty() && keys.len() <= MAX_KEYS,
        "1 to {MAX_KEYS} sort columns"
    );
    let schema = input.schema();
    let reservation = MemoryConsumer::new("ETL in-memory sort").register(task.memory_pool());
    let mut batches = Vec::new();
    while let Some(batch) = input.next().await {
        let batch = batch?;
        let need = batch.get_array_memory_size() + batch.num_rows() * size_of::<Entry<MAX_KEYS>>();
        if reservation.try_grow(need).is_err() {
            // Over this stream's share: DataFusion's external sort takes
            // what was read and the rest.
            batches.push(batch);
            drop(reservation);
            let all = futures::stream::iter(batches.into_iter().map(Ok)).chain(input);
            let all: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(schema.clone(), all));
            let ascending = SortOptions {
                descending: false,
                nulls_first: false,
            };
            let order = LexOrdering::new(
                keys.iter()
                    .map(|&k| PhysicalSortExpr::new(Arc::new(Column::new(schema.field(k).name(), k)), ascending)),
            )
            .expect("at least one sort column");
            let source = StreamingTableExec::try_new(
                schema.clone(),
                vec![Arc::new(Once(Mutex::new(Some(all)), schema))],
                None,
                [],
                false,
                None,
            )?;
            return SortExec::new(order, Arc::new(source)).execute(0, task);
        }
        batches.push(batch);
    }
    // A key as wide as the table's sort (the team and 1 to 3 more columns).
    let gather: Box<dyn Iterator<Item = Result<RecordBatch>> + Send> = match keys.len() {
        1 => Box::new(in_memory::<1>(batches, keys, reservation).await?),
        2 => Box::new(in_memory::<2>(batches, keys, reservation).await?),
        3 => Box::new(in_memory::<3>(batches, keys, reservation).await?),
        _ => Box::new(in_memory::<MAX_KEYS>(batches, keys, reservation).await?),
    };
    Ok(Box::pin(RecordBatchStreamAdapter::new(
        schema,
        futures::stream::iter(gather),
    )))
}

/// Orders the rows of `batches` on a blocking thread; the result gathers them.
async fn in_memory<const K: usize>(
    batches: Vec<RecordBatch>,
    keys: Vec<usize>,
    reservation: MemoryReservation,
) -> Result<Gather<K>> {
    tokio::task::spawn_blocking(move || {
        let entries = order_rows::<K>(&batches, &keys)?;
        Ok(Gather {
            batches,
            entries,
            at: 0,
            _reservation: reservation,
        })
    })
    .await
    .map_err(|e| DataFusionError::External(Box::new(e)))?
}

/// Every row of `batches` as an [`Entry`], in sort order (ties, which a
/// snapshot table's keys do not have, in input order).
fn order_rows<const K: usize>(batches: &[RecordBatch], keys: &[usize]) -> Result<Vec<Entry<K>>> {
    let mut entries = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for (b, batch) in batches.iter().enumerate() {
        let columns = keys.iter().map(|&k| key_values(batch, k)).collect::<Result<Vec<_>>>()?;
        for row in 0..batch.num_rows() {
            let mut key = [0; K];
            for (slot, values) in key.iter_mut().zip(&columns) {
                *slot = values[row];
            }
            entries.push((key, b as u32, row as u32));
        }
    }
    entries.sort_unstable();
    Ok(entries)
}

/// The values of a sort column as 64-bit integers.
fn key_values(batch: &RecordBatch, at: usize) -> Result<&[i64]> {
    let column = batch.column(at);
    let name = batch.schema_ref().field(at).name();
    if column.null_count() > 0 {
        return Err(DataFusionError::Execution(format!("the sort column {name} has NULLs")));
    }
    match column.data_type() {
        DataType::Int64 => Ok(column.as_primitive::<Int64Type>().values()),
        DataType::Timestamp(TimeUnit::Microsecond, _) => Ok(column.as_primitive::<TimestampMicrosecondType>().values()),
        other => Err(DataFusionError::Internal(format!(
            "the sort column {name} is {other}, not a 64-bit integer"
        ))),
    }
}

/// The sorted rows, gathered [`OUTPUT_ROWS`] at a time as they are asked for.
struct Gather<const K: usize> {
    batches: Vec<RecordBatch>,
    entries: Vec<Entry<K>>,
    at: usize,
    /// The pool holds the buffered rows until the last one is gathered.
    _reservation: MemoryReservation,
}

impl<const K: usize> Iterator for Gather<K> {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at == self.entries.len() {
            return None;
        }
        let end = (self.at + OUTPUT_ROWS).min(self.entries.len());
        let picks: Vec<(usize, usize)> = self.entries[self.at..end]
            .iter()
            .map(|&(_, b, r)| (b as usize, r as usize))
            .collect();
        self.at = end;
        let batches: Vec<&RecordBatch> = self.batches.iter().collect();
        Some(interleave_record_batch(&batches, &picks).map_err(DataFusionError::from))
    }
}

/// A stream as a one-partition source of a DataFusion plan, executed once.
struct Once(Mutex<Option<SendableRecordBatchStream>>, SchemaRef);

impl std::fmt::Debug for Once {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("buffered rows and the rest of a stream")
    }
}

impl PartitionStream for Once {
    fn schema(&self) -> &SchemaRef {
        &self.1
    }

    fn execute(&self, _: Arc<TaskContext>) -> SendableRecordBatchStream {
        self.0
            .lock()
            .expect("not poisoned")
            .take()
            .expect("a plan executes its source once")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::execution::memory_pool::FairSpillPool;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::prelude::SessionContext;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("team_id", DataType::Int64, false),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("id", DataType::Int64, false),
            Field::new("label", DataType::Utf8, false),
        ]))
    }

    /// `n` rows in batches of 1000, keys in a scrambled order, the label
    /// naming the row.
    fn input(n: i64) -> Vec<RecordBatch> {
        (0..n)
            .collect::<Vec<_>>()
            .chunks(1000)
            .map(|ids| {
                let scrambled: Vec<i64> = ids.iter().map(|i| (i * 7919) % n).collect();
                RecordBatch::try_new(
                    schema(),
                    vec![
                        Arc::new(Int64Array::from_iter_values(scrambled.iter().map(|k| k % 3))),
                        Arc::new(
                            TimestampMicrosecondArray::from_iter_values(scrambled.iter().map(|k| -k / 3))
                                .with_timezone("UTC"),
                        ),
                        Arc::new(Int64Array::from_iter_values(scrambled.iter().copied())),
                        Arc::new(StringArray::from_iter_values(
                            scrambled.iter().map(|k| format!("row {k}")),
                        )),
                    ],
                )
                .unwrap()
            })
            .collect()
    }

    async fn run(pool: usize, n: i64) -> Vec<(i64, i64, i64, String)> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(pool)))
            .build_arc()
            .unwrap();
        let mut config = datafusion::prelude::SessionConfig::new();
        config.options_mut().execution.sort_spill_reservation_bytes = 1 << 20;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        let schema = schema();
        let stream: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(
            schema.clone(),
            futures::stream::iter(input(n).into_iter().map(Ok)),
        ));
        let batches: Vec<RecordBatch> = sorted(stream, vec![0, 1, 2], ctx.task_ctx())
            .try_collect()
            .await
            .unwrap();
        let mut out = Vec::new();
        for b in &batches {
            for i in 0..b.num_rows() {
                out.push((
                    b.column(0).as_primitive::<Int64Type>().value(i),
                    b.column(1).as_primitive::<TimestampMicrosecondType>().value(i),
                    b.column(2).as_primitive::<Int64Type>().value(i),
                    b.column(3).as_string::<i32>().value(i).to_string(),
                ));
            }
        }
        out
    }

    fn expected(n: i64) -> Vec<(i64, i64, i64, String)> {
        let mut rows: Vec<_> = (0..n).map(|k| (k % 3, -k / 3, k, format!("row {k}"))).collect();
        rows.sort();
        rows
    }

    #[tokio::test]
    async fn sorts_in_memory_by_every_key() {
        assert_eq!(run(1 << 30, 50_000).await, expected(50_000));
    }

    #[tokio::test]
    async fn falls_back_to_the_external_sort_when_the_pool_is_small() {
        // 200,000 rows take about 17 MB with their keys: past this pool's
        // first batches, all of them go through DataFusion's spilling sort.
        assert_eq!(run(8 << 20, 200_000).await, expected(200_000));
    }
}
