//! Rewriting one chunk of a table (a team's month of a time-sorted table,
//! see [`crate::write::chunk_column`], or an unpartitioned table's files)
//! when few of its rows change: the row
//! groups that lose no row and that no new row sorts into are copied byte
//! for byte, with their statistics and page index; only the others are
//! decoded, filtered, merged with the new rows and encoded again.
//!
//! An incremental run mostly changes a chunk in two ways: a deleted
//! session takes its chat's turns out of some old month, and the day's
//! new turns go to the end of the current month. Re-encoding the whole
//! month for either was most of the run's turns step; here both touch one
//! or two of a month's row groups.
//!
//! ## Why the order holds
//!
//! Row groups are visited in the chunk's order. New rows (sorted) that sort
//! before a group's first key go before it; new rows whose first sort key
//! is within a group's range make it *dirty*, as does a dropped row. The
//! rows of dirty groups and the new rows are collected and sorted together
//! before the next clean group, which is copied only if every collected row
//! has a smaller first sort key than the group's smallest (from its
//! statistics); a tie makes that group dirty too. So every written row
//! group follows the rows before it in the full sort order.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{
    SortColumn, concat_batches, filter_record_batch, lexsort_to_indices, take_record_batch,
};
use datafusion::arrow::datatypes::{Int64Type, SchemaRef, TimestampMicrosecondType};
use ocs_dash_engine::snapshot::TableDef;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::arrow_writer::{ArrowRowGroupWriterFactory, compute_leaves};
use parquet::arrow::{ArrowSchemaConverter, ProjectionMask, add_encoded_arrow_schema_to_metadata};
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::statistics::Statistics;
use parquet::file::writer::SerializedFileWriter;

use crate::error::{Error, Result};
use crate::write::{FILE_ROWS, ROW_GROUP_ROWS, file_name, properties};

/// What changes in a chunk: the previous rows that `drop` picks go; `new`
/// rows (the table's columns, sorted by its `sort_by`) come.
#[derive(Debug)]
pub struct Change<'a> {
    pub drop: Option<Drop<'a>>,
    pub new: Vec<RecordBatch>,
}

/// A [`Drop`]'s test, owned (to be moved to the threads that patch).
pub type DropTest = std::sync::Arc<dyn Fn(&[i64]) -> bool + Send + Sync>;

/// Which previous rows go: those whose values in `columns` (Int64, not
/// null) make `test` true.
pub struct Drop<'a> {
    pub columns: &'a [&'static str],
    pub test: &'a (dyn Fn(&[i64]) -> bool + Sync),
}

impl std::fmt::Debug for Drop<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drop").field("columns", &self.columns).finish()
    }
}

impl Drop<'_> {
    /// Per row of `batch` (which holds the drop columns), whether it goes.
    fn rows(&self, batch: &RecordBatch) -> Result<Vec<bool>> {
        let columns = self
            .columns
            .iter()
            .map(|c| Ok(batch.column(batch.schema().index_of(c)?).as_primitive::<Int64Type>()))
            .collect::<Result<Vec<_>>>()?;
        let mut values = vec![0; columns.len()];
        Ok((0..batch.num_rows())
            .map(|i| {
                for (v, c) in values.iter_mut().zip(&columns) {
                    *v = c.value(i);
                }
                (self.test)(&values)
            })
            .collect())
    }
}

/// What a patch did, for the run's log and the tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Patched {
    /// Rows in the written files.
    pub rows: u64,
    /// Row groups copied unchanged.
    pub copied: usize,
    /// Row groups encoded from rows.
    pub encoded: usize,
}

impl std::fmt::Display for Patched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} row groups copied, {} encoded", self.copied, self.encoded)
    }
}

impl std::ops::Add for Patched {
    type Output = Patched;

    fn add(self, o: Patched) -> Patched {
        Patched {
            rows: self.rows + o.rows,
            copied: self.copied + o.copied,
            encoded: self.encoded + o.encoded,
        }
    }
}

impl std::ops::AddAssign for Patched {
    fn add_assign(&mut self, o: Patched) {
        *self = *self + o;
    }
}

/// One row group of the chunk's previous files.
struct Group {
    file: Arc<File>,
    meta: Arc<ParquetMetaData>,
    reader: ArrowReaderMetadata,
    index: usize,
}

impl Group {
    fn rows(&self) -> usize {
        self.meta.row_group(self.index).num_rows() as usize
    }

    /// The smallest and largest value of the first sort column, if the
    /// group's statistics hold them.
    fn range(&self, column: usize) -> Option<(i64, i64)> {
        match self.meta.row_group(self.index).column(column).statistics()? {
            Statistics::Int64(s) => Some((*s.min_opt()?, *s.max_opt()?)),
            _ => None,
        }
    }

    fn read(&self, projection: Option<Vec<usize>>) -> Result<Vec<RecordBatch>> {
        let file = self
            .file
            .try_clone()
            .map_err(|e| Error::io("reading a snapshot file", e))?;
        let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.reader.clone())
            .with_row_groups(vec![self.index])
            .with_batch_size(ROW_GROUP_ROWS);
        if let Some(columns) = projection {
            let mask = ProjectionMask::leaves(builder.parquet_schema(), columns);
            builder = builder.with_projection(mask);
        }
        Ok(builder.build()?.collect::<std::result::Result<Vec<_>, _>>()?)
    }
}

/// Writes a chunk (of `month`, in a time-sorted table; its previous `files`
/// in part order) with `change` applied, as the chunk's files in
/// `out_dir`. Blocking: file I/O and encoding.
pub fn patch_chunk(
    def: &TableDef,
    files: &[PathBuf],
    month: Option<u32>,
    change: Change<'_>,
    out_dir: &Path,
) -> Result<Patched> {
    let schema = def.schema.clone();
    let key = schema.index_of(def.sort_by[0])?;
    let options = ArrowReaderOptions::new().with_schema(schema.clone());
    let mut groups = Vec::new();
    for path in files {
        let open = |e| Error::io(format!("reading {}", path.display()), e);
        let file = Arc::new(File::open(path).map_err(open)?);
        let meta = Arc::new(
            ParquetMetaDataReader::new()
                .with_page_index_policy(PageIndexPolicy::Optional)
                .parse_and_finish(file.as_ref())?,
        );
        let reader = ArrowReaderMetadata::try_new(meta.clone(), options.clone())?;
        for index in 0..meta.num_row_groups() {
            groups.push(Group {
                file: file.clone(),
                meta: meta.clone(),
                reader: reader.clone(),
                index,
            });
        }
    }
    let new = concat_batches(&schema, &change.new)?;
    let new_keys = first_keys(&new, key);
    let mut next = 0;
    let mut out = Output::new(def, schema.clone(), out_dir, month)?;
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_max: Option<i64> = None;
    let take_new = |to: usize, pending: &mut Vec<RecordBatch>, pending_max: &mut Option<i64>, next: &mut usize| {
        if to > *next {
            pending.push(new.slice(*next, to - *next));
            *pending_max = (*pending_max).max(Some(new_keys[to - 1]));
            *next = to;
        }
    };
    for group in &groups {
        let range = group.range(key);
        if let Some((min, _)) = range {
            let before = next + new_keys[next..].partition_point(|k| *k < min);
            take_new(before, &mut pending, &mut pending_max, &mut next);
        }
        let inside = match range {
            Some((_, max)) => next + new_keys[next..].partition_point(|k| *k <= max),
            None => next,
        };
        let clean = match range {
            Some((min, _)) => {
                inside == next && pending_max.is_none_or(|m| m < min) && !drops_a_row(group, change.drop.as_ref())?
            }
            None => false,
        };
        if clean {
            out.encode(std::mem::take(&mut pending), def.sort_by)?;
            pending_max = None;
            out.copy(group)?;
            continue;
        }
        take_new(inside, &mut pending, &mut pending_max, &mut next);
        for batch in group.read(None)? {
            let kept = match &change.drop {
                Some(drop) => {
                    let keep: BooleanArray = drop.rows(&batch)?.into_iter().map(|d| Some(!d)).collect();
                    filter_record_batch(&batch, &keep)?
                }
                None => batch,
            };
            if kept.num_rows() > 0 {
                let keys = first_keys(&kept, key);
                pending_max = pending_max.max(keys.iter().max().copied());
                pending.push(kept);
            }
        }
    }
    take_new(new.num_rows(), &mut pending, &mut pending_max, &mut next);
    out.encode(pending, def.sort_by)?;
    out.finish()
}

/// The first sort column's values (a timestamp or an id) as i64.
fn first_keys(batch: &RecordBatch, column: usize) -> Vec<i64> {
    let col = batch.column(column);
    match col.as_primitive_opt::<TimestampMicrosecondType>() {
        Some(t) => t.values().to_vec(),
        None => col.as_primitive::<Int64Type>().values().to_vec(),
    }
}

/// Whether `drop` picks a row of `group` (only the columns it reads are
/// decoded).
fn drops_a_row(group: &Group, drop: Option<&Drop<'_>>) -> Result<bool> {
    let Some(drop) = drop else {
        return Ok(false);
    };
    let schema = group.reader.schema();
    let columns = drop
        .columns
        .iter()
        .map(|c| Ok(schema.index_of(c)?))
        .collect::<Result<Vec<_>>>()?;
    for batch in group.read(Some(columns))? {
        if drop.rows(&batch)?.contains(&true) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The files being written: row groups copied or encoded, a new part
/// after [`FILE_ROWS`] rows as in [`crate::write`].
struct Output<'a> {
    def: &'a TableDef,
    schema: SchemaRef,
    dir: &'a Path,
    month: Option<u32>,
    part: usize,
    file_rows: usize,
    writer: Option<(SerializedFileWriter<File>, ArrowRowGroupWriterFactory)>,
    done: Patched,
}

impl<'a> Output<'a> {
    fn new(def: &'a TableDef, schema: SchemaRef, dir: &'a Path, month: Option<u32>) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        Ok(Output {
            def,
            schema,
            dir,
            month,
            part: 0,
            file_rows: 0,
            writer: None,
            done: Patched::default(),
        })
    }

    /// The file the next `rows` rows go to.
    fn file(&mut self, rows: usize) -> Result<&mut (SerializedFileWriter<File>, ArrowRowGroupWriterFactory)> {
        if self.writer.is_some() && self.file_rows >= FILE_ROWS {
            self.close()?;
            self.part += 1;
        }
        if self.writer.is_none() {
            let path = self.dir.join(file_name(self.month, self.part));
            let file = File::create(&path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
            let mut props = properties(self.def);
            add_encoded_arrow_schema_to_metadata(&self.schema, &mut props);
            let props = Arc::new(props);
            let parquet = ArrowSchemaConverter::new()
                .with_coerce_types(props.coerce_types())
                .convert(&self.schema)?;
            let writer = SerializedFileWriter::new(file, parquet.root_schema_ptr(), props)?;
            let factory = ArrowRowGroupWriterFactory::new(&writer, self.schema.clone());
            self.writer = Some((writer, factory));
            self.file_rows = 0;
        }
        self.file_rows += rows;
        self.done.rows += rows as u64;
        Ok(self.writer.as_mut().expect("an open file"))
    }

    fn copy(&mut self, group: &Group) -> Result<()> {
        let meta = group.meta.row_group(group.index);
        let rows = group.rows();
        let (writer, _) = self.file(rows)?;
        let mut row_group = writer.next_row_group()?;
        for (c, column) in meta.columns().iter().enumerate() {
            row_group.append_column(
                group.file.as_ref(),
                ColumnCloseResult {
                    bytes_written: column.compressed_size() as u64,
                    rows_written: rows as u64,
                    metadata: column.clone(),
                    bloom_filter: None,
                    column_index: group.meta.column_index().map(|i| i[group.index][c].clone()),
                    offset_index: group.meta.offset_index().map(|i| i[group.index][c].clone()),
                },
            )?;
        }
        row_group.close()?;
        self.done.copied += 1;
        Ok(())
    }

    /// Sorts `batches` by the table's order and encodes them as row groups.
    fn encode(&mut self, batches: Vec<RecordBatch>, sort_by: &[&str]) -> Result<()> {
        let all = concat_batches(&self.schema, &batches)?;
        if all.num_rows() == 0 {
            return Ok(());
        }
        // Rows whose first key already rises strictly (kept rows of
        // consecutive groups of a table sorted by a unique id, then new
        // rows above them) are in order whatever the other keys.
        let first = first_keys(&all, self.schema.index_of(sort_by[0])?);
        let sorted = if first.windows(2).all(|w| w[0] < w[1]) {
            all
        } else {
            let keys = sort_by
                .iter()
                .map(|c| {
                    Ok(SortColumn {
                        values: all.column(self.schema.index_of(c)?).clone(),
                        options: None,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            take_record_batch(&all, &lexsort_to_indices(&keys, None)?)?
        };
        let mut from = 0;
        while from < sorted.num_rows() {
            let rows = ROW_GROUP_ROWS.min(sorted.num_rows() - from);
            let slice = sorted.slice(from, rows);
            let schema = self.schema.clone();
            let (writer, factory) = self.file(rows)?;
            let mut chunks = Vec::new();
            let columns = factory.create_column_writers(writer.flushed_row_groups().len())?;
            for ((mut column, field), array) in columns.into_iter().zip(schema.fields()).zip(slice.columns()) {
                for leaf in compute_leaves(field, array)? {
                    column.write(&leaf)?;
                }
                chunks.push(column.close()?);
            }
            let mut row_group = writer.next_row_group()?;
            for chunk in chunks {
                chunk.append_to_row_group(&mut row_group)?;
            }
            row_group.close()?;
            self.done.encoded += 1;
            from += rows;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some((writer, _)) = self.writer.take() {
            writer.close()?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Patched> {
        self.close()?;
        Ok(self.done)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
    use datafusion::arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
    use ocs_dash_engine::snapshot::table;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};

    use super::{Change, Drop, Patched, patch_chunk};
    use crate::write::ROW_GROUP_ROWS;

    /// Turns of one team and month: (message id, chat id, second of the month).
    fn turns(rows: &[(i64, i64, i64)]) -> RecordBatch {
        let def = table("turns").unwrap();
        let month = 1_793_491_200_000_000; // 2026-11-01T00:00:00Z
        let ints = |f: &dyn Fn(&(i64, i64, i64)) -> i64| Arc::new(Int64Array::from_iter_values(rows.iter().map(f)));
        RecordBatch::try_new(
            def.schema.clone(),
            vec![
                ints(&|r| r.0),
                ints(&|r| r.1),
                ints(&|r| r.1 + 1000),
                ints(&|r| r.1 % 3),
                Arc::new(Int64Array::from_iter(
                    rows.iter().map(|r| (r.1 % 5 != 0).then_some(r.1)),
                )),
                Arc::new(StringArray::from_iter(
                    rows.iter().map(|r| (r.1 % 7 != 0).then_some("web")),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| if r.0 % 2 == 0 { "human" } else { "ai" }),
                )),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| month + r.2 * 1_000_000))
                        .with_timezone("UTC"),
                ),
                Arc::new(Int64Array::from_iter(
                    rows.iter().map(|r| (r.1 % 4 != 0).then_some(r.2)),
                )),
            ],
        )
        .unwrap()
    }

    /// Count and message id sum of the turns of `batch` in a window of
    /// seconds.
    fn expected_window(batch: &RecordBatch, from: i64, to: i64) -> (i64, i64) {
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::{Int64Type, TimestampMicrosecondType};
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let at = batch.column(7).as_primitive::<TimestampMicrosecondType>();
        (0..batch.num_rows())
            .filter(|&i| (from * 1_000_000..to * 1_000_000).contains(&at.value(i)))
            .fold((0, 0), |(n, s), i| (n + 1, s + ids.value(i)))
    }

    fn sorted(batch: &RecordBatch) -> RecordBatch {
        let keys = [7, 0].map(|c| SortColumn {
            values: batch.column(c).clone(),
            options: None,
        });
        take_record_batch(batch, &lexsort_to_indices(&keys, None).unwrap()).unwrap()
    }

    fn read(dir: &std::path::Path) -> (RecordBatch, usize) {
        let path = dir.join("part-202611-0.parquet");
        let file = std::fs::File::open(&path).unwrap();
        // The copied row groups keep a page index that points into the new file.
        let meta = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Required)
            .parse_and_finish(&file)
            .unwrap();
        let groups = meta.num_row_groups();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
        let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
        let def = table("turns").unwrap();
        (concat_batches(&def.schema, &batches).unwrap(), groups)
    }

    /// Turns of a file with `created_at` in a window, through DataFusion's
    /// Parquet scan with filter pushdown: it prunes row groups on their
    /// statistics and pages on the page index, so wrong statistics or page
    /// offsets in a copied row group would show.
    async fn window(path: &std::path::Path, from: i64, to: i64) -> (i64, i64) {
        use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
        let mut config = SessionConfig::new();
        config.options_mut().execution.parquet.pushdown_filters = true;
        let ctx = SessionContext::new_with_config(config);
        ctx.register_parquet("t", path.to_str().unwrap(), ParquetReadOptions::default())
            .await
            .unwrap();
        let sql = format!(
            "SELECT count(*), CAST(COALESCE(sum(message_id), 0) AS BIGINT) FROM t
             WHERE created_at >= to_timestamp_seconds({from}) AND created_at < to_timestamp_seconds({to})"
        );
        let b = &ctx.sql(&sql).await.unwrap().collect().await.unwrap()[0];
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::Int64Type;
        (
            b.column(0).as_primitive::<Int64Type>().value(0),
            b.column(1).as_primitive::<Int64Type>().value(0),
        )
    }

    #[tokio::test]
    async fn patching_copies_untouched_row_groups_and_keeps_the_order() {
        let def = table("turns").unwrap();
        // 200k turns, three per second (ties on the first sort key across
        // row group boundaries), 500 consecutive turns per chat.
        let old: Vec<_> = (0..200_000i64).map(|i| (i, i / 500, i / 3)).collect();
        let first = tempfile::tempdir().unwrap();
        let written = patch_chunk(
            def,
            &[],
            Some(202611),
            Change {
                drop: None,
                new: vec![turns(&old)],
            },
            first.path(),
        )
        .unwrap();
        assert_eq!(
            written,
            Patched {
                rows: 200_000,
                copied: 0,
                encoded: 4
            }
        );
        // Drop a chat inside the second row group; add turns inside the
        // third (one tied with its first key) and after the end.
        let boundary = (2 * ROW_GROUP_ROWS as i64) / 3;
        let new = [
            (300_000, 9_000, boundary),
            (300_001, 9_001, boundary + 100),
            (300_002, 9_002, 90_000),
        ];
        let second = tempfile::tempdir().unwrap();
        let patched = patch_chunk(
            def,
            &[first.path().join("part-202611-0.parquet")],
            Some(202611),
            Change {
                drop: Some(Drop {
                    columns: &["chat_id"],
                    test: &|v| v[0] == 200,
                }),
                new: vec![turns(&new)],
            },
            second.path(),
        )
        .unwrap();
        let mut expected: Vec<_> = old.iter().copied().filter(|r| r.1 != 200).collect();
        expected.extend(new);
        let expected = sorted(&turns(&expected));
        let (got, groups) = read(second.path());
        assert_eq!(got, expected);
        assert_eq!(patched.rows, expected.num_rows() as u64);
        // The first and last row groups are copied. The second loses a
        // chat and gains a turn tied with its last key, so the third (whose
        // first key is that same second) is encoded with it, as is the turn
        // after the end.
        assert_eq!((patched.copied, patched.encoded), (2, 3), "{patched:?}");
        assert_eq!(groups, 5);
        // Windows inside the copied first and last row groups, and across.
        let start = 1_793_491_200; // 2026-11-01T00:00:00Z
        for (from, to) in [
            (100, 900),
            (20_000, 21_000),
            (66_000, 66_600),
            (10_000, 60_000),
            (0, 100_000),
        ] {
            let want = expected_window(&expected, start + from, start + to);
            assert_eq!(
                window(&second.path().join("part-202611-0.parquet"), start + from, start + to).await,
                want
            );
        }
        // Nothing to do: every row group is copied as it was.
        let third = tempfile::tempdir().unwrap();
        let none = patch_chunk(
            def,
            &[second.path().join("part-202611-0.parquet")],
            Some(202611),
            Change {
                drop: Some(Drop {
                    columns: &["chat_id"],
                    test: &|_| false,
                }),
                new: vec![],
            },
            third.path(),
        )
        .unwrap();
        assert_eq!(none.encoded, 0);
        assert_eq!(none.copied, groups);
        assert_eq!(read(third.path()).0, expected);
    }
}
