//! Writing snapshot tables: sorted, split by team, zstd Parquet with page
//! statistics, a few large files per team.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Int64Type, SchemaRef};
use datafusion::prelude::{DataFrame, col};
use futures::StreamExt;
use ocs_dash_engine::snapshot::{TEAM_COLUMN, TableDef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::error::{Error, Result};

/// Rows per row group: small enough that a 30-day window over a year of
/// data skips most groups, large enough to keep per-group overhead low.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;
/// A team's table rolls over to a new file after this many rows.
pub const FILE_ROWS: usize = 8 * 1024 * 1024;

/// Splits a batch sorted by `team_id` (column 0) into one slice per team
/// run, without the team column. Pure: no I/O.
pub fn split_by_team(batch: &RecordBatch) -> Vec<(i64, RecordBatch)> {
    let teams = batch.column(0).as_primitive::<Int64Type>();
    let rest = batch
        .project(&(1..batch.num_columns()).collect::<Vec<_>>())
        .expect("valid projection");
    let mut out = Vec::new();
    let mut start = 0;
    while start < batch.num_rows() {
        let team = teams.value(start);
        let mut end = start + 1;
        while end < batch.num_rows() && teams.value(end) == team {
            end += 1;
        }
        out.push((team, rest.slice(start, end - start)));
        start = end;
    }
    out
}

fn properties(def: &TableDef) -> WriterProperties {
    let sorting = def
        .sort_by
        .iter()
        .map(|c| SortingColumn {
            column_idx: def.schema.index_of(c).expect("sort column in schema") as i32,
            descending: false,
            nulls_first: false,
        })
        .collect();
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(sorting))
        .build()
}

struct TeamFile {
    team: Option<i64>,
    part: usize,
    rows: usize,
    writer: ArrowWriter<File>,
}

/// Writes one table of a snapshot into `version_dir/<table>/...` and returns
/// its row count. `df` yields the table's columns, preceded by `team_id` for
/// partitioned tables.
pub async fn write_table(df: DataFrame, def: &TableDef, version_dir: &Path) -> Result<u64> {
    let root = version_dir.join(def.name);
    fs::create_dir_all(&root).map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
    let mut order: Vec<_> = def.sort_by.iter().map(|c| col(*c).sort(true, false)).collect();
    if def.partitioned {
        order.insert(0, col(TEAM_COLUMN).sort(true, false));
    }
    let mut stream = df.sort(order)?.execute_stream().await?;
    let props = properties(def);
    let mut current: Option<TeamFile> = None;
    let mut total = 0u64;
    let open = |team: Option<i64>, part: usize| -> Result<TeamFile> {
        let dir = match team {
            Some(t) => root.join(format!("{TEAM_COLUMN}={t}")),
            None => root.clone(),
        };
        fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let path: PathBuf = dir.join(format!("part-{part}.parquet"));
        let file = File::create(&path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        let writer = ArrowWriter::try_new(file, def.schema.clone(), Some(props.clone()))?;
        Ok(TeamFile {
            team,
            part,
            rows: 0,
            writer,
        })
    };
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        total += batch.num_rows() as u64;
        let pieces = if def.partitioned {
            split_by_team(&batch).into_iter().map(|(t, b)| (Some(t), b)).collect()
        } else {
            vec![(None, batch)]
        };
        for (team, piece) in pieces {
            let piece = conform(piece, &def.schema)?;
            let next = match current.take() {
                Some(f) if f.team == team && f.rows < FILE_ROWS => f,
                Some(f) => {
                    let part = if f.team == team { f.part + 1 } else { 0 };
                    f.writer.close()?;
                    open(team, part)?
                }
                None => open(team, 0)?,
            };
            let mut f = next;
            f.rows += piece.num_rows();
            f.writer.write(&piece)?;
            current = Some(f);
        }
    }
    match current {
        Some(f) => {
            f.writer.close()?;
        }
        None if !def.partitioned => {
            // An empty unpartitioned table still gets its (empty) file.
            open(None, 0)?.writer.close()?;
        }
        None => {}
    }
    Ok(total)
}

/// Gives a batch the table's declared schema (same columns and order; the
/// transform's nullability may be looser than the snapshot's).
fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let cols: Vec<Arc<dyn Array>> = batch.columns().to_vec();
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}
