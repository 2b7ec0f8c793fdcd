//! The few rows of a previous snapshot's table that an incremental run
//! needs, found in one pass over the table's files.
//!
//! An incremental run looks up previous turns three ways: those of the
//! changed chats, those of sessions with new turns (rolled up again into
//! slots), and those that a new tagged item points at. Three DataFusion
//! joins over `prev_turns` did that, each decoding a key column of every
//! previous turn (10 M at scale m). Here the keys are known first, as
//! [`IdSet`]s, and one read per file tests a row's keys while decoding them
//! (a Parquet row filter), then decodes the other columns of the matching
//! rows only; the joins run over the rows found. A row group is read only
//! for the keys its statistics leave possible. Ids grow with time, so the
//! chats of a day's messages rule out most older groups (their `chat_id`
//! read in 25 ms instead of 90 ms at scale m); the old messages tagged that
//! day, spread over the year, rule out few, and `message_id` (delta-encoded)
//! is the dearer column to decode: about 180 ms over every turn. At scale m
//! the one read took 0.26 s where the three joins took about 0.5 s.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::arrow::error::ArrowError;
use datafusion::datasource::MemTable;
use ocs_dash_engine::snapshot::TableDef;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowFilter,
};
use parquet::file::statistics::Statistics;

use crate::dangling::IdSet;
use crate::error::{Error, Result};
use crate::write::{ROW_GROUP_ROWS, on_workers, with_team};

/// A row matches if the value of one of these Int64 columns is in its set.
pub type Keys = Vec<(&'static str, Arc<IdSet>)>;

/// The rows of a partitioned table of a previous version (`files`: each
/// with its team) that match `keys`, `team_id` first, as an in-memory
/// table.
pub async fn matching(def: &'static TableDef, files: Vec<(i64, PathBuf)>, keys: Keys) -> Result<MemTable> {
    let schema = with_team(def);
    let batches =
        tokio::task::spawn_blocking(move || on_workers(files, |(team, path)| read_file(def, team, &path, &keys)))
            .await
            .map_err(|e| Error::io("reading a previous table", std::io::Error::other(e)))??;
    // One partition per file read.
    Ok(MemTable::try_new(schema, batches)?)
}

/// The matching rows of one file of `team`. A row group is read only with
/// the keys whose column's range there (its statistics) holds an id of the
/// key's set, and not at all if no key's does.
fn read_file(def: &TableDef, team: i64, path: &Path, keys: &Keys) -> Result<Vec<RecordBatch>> {
    let open = || File::open(path).map_err(|e| Error::io(format!("reading {}", path.display()), e));
    let options = ArrowReaderOptions::new().with_schema(def.schema.clone());
    let meta = ArrowReaderMetadata::load(&open()?, options)?;
    let columns = keys
        .iter()
        .map(|(c, _)| Ok(def.schema.index_of(c)?))
        .collect::<Result<Vec<_>>>()?;
    // Row groups by the keys live in them.
    let mut by_keys: BTreeMap<Vec<usize>, Vec<usize>> = BTreeMap::new();
    for (g, group) in meta.metadata().row_groups().iter().enumerate() {
        let live: Vec<usize> = keys
            .iter()
            .zip(&columns)
            .enumerate()
            .filter(|(_, ((_, set), c))| match group.column(**c).statistics() {
                Some(Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
                    (Some(&lo), Some(&hi)) => set.any_in(lo, hi),
                    _ => !set.is_empty(),
                },
                _ => !set.is_empty(),
            })
            .map(|(k, _)| k)
            .collect();
        if !live.is_empty() {
            by_keys.entry(live).or_default().push(g);
        }
    }
    let schema = with_team(def);
    let mut out = Vec::new();
    for (live, groups) in by_keys {
        let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(open()?, meta.clone());
        let mask = ProjectionMask::leaves(builder.parquet_schema(), live.iter().map(|&k| columns[k]));
        let live: Keys = live.iter().map(|&k| keys[k].clone()).collect();
        let test = ArrowPredicateFn::new(mask, move |batch: RecordBatch| matches(&batch, &live));
        let reader = builder
            .with_row_groups(groups)
            .with_row_filter(RowFilter::new(vec![Box::new(test)]))
            .with_batch_size(ROW_GROUP_ROWS)
            .build()?;
        for batch in reader {
            let batch = batch?;
            if batch.num_rows() > 0 {
                let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_value(team, batch.num_rows()))];
                columns.extend(batch.columns().iter().cloned());
                out.push(RecordBatch::try_new(schema.clone(), columns)?);
            }
        }
    }
    Ok(out)
}

/// Per row of `batch` (the key columns), whether one of its keys is in its
/// set.
fn matches(batch: &RecordBatch, keys: &Keys) -> std::result::Result<BooleanArray, ArrowError> {
    let columns = keys
        .iter()
        .map(|(c, set)| {
            Ok((
                batch.column(batch.schema().index_of(c)?).as_primitive::<Int64Type>(),
                set,
            ))
        })
        .collect::<std::result::Result<Vec<_>, ArrowError>>()?;
    let rows = BooleanBuffer::collect_bool(batch.num_rows(), |i| {
        columns.iter().any(|(c, set)| c.is_valid(i) && set.contains(c.value(i)))
    });
    Ok(BooleanArray::new(rows, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;
    use ocs_dash_engine::snapshot::table;

    /// A file of `n` turns whose every id column (chat, message, session,
    /// ...) holds the row's number, in row groups of 10,000.
    fn turns_file(dir: &Path, n: i64) -> PathBuf {
        use datafusion::arrow::array::{StringArray, TimestampMicrosecondArray};
        use datafusion::arrow::datatypes::DataType;
        let def = table("turns").expect("turns");
        let columns: Vec<ArrayRef> = def
            .schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                match f.data_type() {
                    DataType::Int64 => Arc::new(Int64Array::from_iter_values(0..n)),
                    DataType::Utf8 => Arc::new(StringArray::from_iter_values((0..n).map(|_| "human"))),
                    _ => Arc::new(TimestampMicrosecondArray::from_iter_values(0..n).with_timezone("UTC")),
                }
            })
            .collect();
        let batch = RecordBatch::try_new(def.schema.clone(), columns).expect("batch");
        let path = dir.join("part.parquet");
        let file = File::create(&path).expect("file");
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(10_000))
            .build();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).expect("writer");
        w.write(&batch).expect("write");
        w.close().expect("close");
        path
    }

    #[tokio::test]
    async fn rows_matching_any_key_are_read_with_their_team() {
        let (a, b) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        let files = vec![(42, turns_file(a.path(), 100_000)), (7, turns_file(b.path(), 20_000))];
        let def = table("turns").expect("turns");
        // Groups of 10,000: the first holds keys of both columns, the sixth
        // a chat only, the eighth and tenth a message only; the others none.
        let keys = vec![
            ("chat_id", Arc::new(IdSet::new(&[3, 55_555, 200_000]))),
            ("message_id", Arc::new(IdSet::new(&[5, 70_000, 99_999]))),
        ];
        let found = matching(def, files, keys).await.expect("scan");
        let ctx = SessionContext::new();
        ctx.register_table("t", Arc::new(found)).expect("register");
        let rows = crate::transform::int64_values(&ctx, "SELECT team_id * 1000000 + message_id FROM t ORDER BY 1")
            .await
            .expect("query");
        assert_eq!(
            rows,
            vec![
                7_000_003, 7_000_005, 42_000_003, 42_000_005, 42_055_555, 42_070_000, 42_099_999
            ]
        );
    }
}
