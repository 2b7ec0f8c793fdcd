//! Staging: source rows land in local Parquet files before the transform
//! reads them, so memory stays bounded by a batch no matter how large the
//! source is, and the transform can read a table more than once.
//!
//! A table is staged as `<table>.parquet`, plus `<table>-<n>.parquet` for
//! further parts written at the same time (one per Postgres connection of a
//! parallel export); the transform reads all of a table's parts as one.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use datafusion::arrow::array::RecordBatch;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::error::{Error, Result};
use crate::source::{SOURCES, SourceTable};

/// A folder of staged source tables.
pub struct Stage {
    dir: PathBuf,
    /// Open parts written through [`Stage::write`].
    writers: HashMap<&'static str, StagedFile>,
    /// Closed parts of each table.
    files: BTreeMap<&'static str, Vec<PathBuf>>,
    rows: BTreeMap<String, u64>,
}

impl std::fmt::Debug for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stage")
            .field("dir", &self.dir)
            .field("rows", &self.rows)
            .finish()
    }
}

/// One part of a staged table being written.
pub struct StagedFile {
    table: &'static SourceTable,
    path: PathBuf,
    writer: ArrowWriter<File>,
    rows: u64,
}

impl std::fmt::Debug for StagedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedFile")
            .field("path", &self.path)
            .field("rows", &self.rows)
            .finish()
    }
}

impl StagedFile {
    /// Appends a batch in the table's source schema.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch)?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Finishes the file; hand it to [`Stage::add`].
    pub fn close(self) -> Result<ClosedFile> {
        self.writer.close()?;
        Ok(ClosedFile {
            table: self.table,
            path: self.path,
            rows: self.rows,
        })
    }
}

/// A finished part of a staged table.
#[derive(Debug)]
pub struct ClosedFile {
    table: &'static SourceTable,
    path: PathBuf,
    rows: u64,
}

impl ClosedFile {
    pub fn rows(&self) -> u64 {
        self.rows
    }
}

impl Stage {
    pub fn create(dir: PathBuf) -> Result<Self> {
        fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        Ok(Stage {
            dir,
            writers: HashMap::new(),
            files: BTreeMap::new(),
            rows: BTreeMap::new(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Rows staged so far per table (closed parts only).
    pub fn rows(&self) -> BTreeMap<String, u64> {
        self.rows.clone()
    }

    /// Starts part `n` of a table (an empty file if it gets no rows). Parts
    /// of one table can be written at the same time.
    pub fn part(&self, table: &'static SourceTable, n: usize) -> Result<StagedFile> {
        let path = match n {
            0 => self.dir.join(format!("{}.parquet", table.name)),
            n => self.dir.join(format!("{}-{n}.parquet", table.name)),
        };
        let file = File::create(&path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        // Plain and uncompressed, without statistics: staging is read
        // once or twice, straight through, so any encoding work is lost.
        let props = WriterProperties::builder()
            .set_compression(Compression::UNCOMPRESSED)
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::None)
            .build();
        let writer = ArrowWriter::try_new(file, table.schema.clone(), Some(props))?;
        Ok(StagedFile {
            table,
            path,
            writer,
            rows: 0,
        })
    }

    /// Records a finished part.
    pub fn add(&mut self, file: ClosedFile) {
        *self.rows.entry(file.table.name.to_string()).or_default() += file.rows;
        self.files.entry(file.table.name).or_default().push(file.path);
    }

    /// Appends a batch (in the table's source schema) to a staged table
    /// written in one part.
    pub fn write(&mut self, table: &'static SourceTable, batch: &RecordBatch) -> Result<()> {
        if !self.writers.contains_key(table.name) {
            let w = self.part(table, 0)?;
            self.writers.insert(table.name, w);
        }
        self.writers
            .get_mut(table.name)
            .expect("writer just inserted")
            .write(batch)
    }

    /// Closes one table's file (writing an empty one if it got no rows), so
    /// that it can be read while others are still being staged.
    pub fn close_table(&mut self, table: &'static SourceTable) -> Result<()> {
        let w = match self.writers.remove(table.name) {
            Some(w) => w,
            None => self.part(table, 0)?,
        };
        let closed = w.close()?;
        self.add(closed);
        Ok(())
    }

    /// Closes every file; tables that got no rows get an empty file, so the
    /// transform always finds all of them.
    pub fn finish(&mut self) -> Result<BTreeMap<String, u64>> {
        for t in SOURCES.iter() {
            if !self.files.contains_key(t.name) {
                self.close_table(t)?;
            }
        }
        Ok(self.rows.clone())
    }

    /// Registers every closed part of a staged table in `ctx` as `alias`.
    pub async fn register(&self, ctx: &SessionContext, table: &SourceTable, alias: &str) -> Result<()> {
        let paths: Vec<String> = self
            .files
            .get(table.name)
            .into_iter()
            .flatten()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let df = ctx
            .read_parquet(paths, ParquetReadOptions::default().schema(&table.schema))
            .await?;
        ctx.deregister_table(alias)?;
        ctx.register_table(alias, df.into_view())?;
        Ok(())
    }

    /// Removes the staging folder.
    pub fn remove(self) -> Result<()> {
        fs::remove_dir_all(&self.dir).map_err(|e| Error::io(format!("removing {}", self.dir.display()), e))
    }
}
