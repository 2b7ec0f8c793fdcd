//! Staging: source rows land in local Parquet files (one per source table)
//! before the transform reads them, so memory stays bounded by a batch no
//! matter how large the source is, and the transform can read a table more
//! than once.

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
    writers: HashMap<&'static str, ArrowWriter<File>>,
    rows: BTreeMap<String, u64>,
    closed: Vec<&'static str>,
}

impl std::fmt::Debug for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stage")
            .field("dir", &self.dir)
            .field("rows", &self.rows)
            .finish()
    }
}

impl Stage {
    pub fn create(dir: PathBuf) -> Result<Self> {
        fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        Ok(Stage {
            dir,
            writers: HashMap::new(),
            rows: BTreeMap::new(),
            closed: Vec::new(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, table: &str) -> PathBuf {
        self.dir.join(format!("{table}.parquet"))
    }

    /// Appends a batch (in the table's source schema) to a staged table.
    pub fn write(&mut self, table: &'static SourceTable, batch: &RecordBatch) -> Result<()> {
        if !self.writers.contains_key(table.name) {
            let path = self.path(table.name);
            let file = File::create(&path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
            // Plain and uncompressed, without statistics: staging is read
            // once or twice, straight through, so any encoding work is lost.
            let props = WriterProperties::builder()
                .set_compression(Compression::UNCOMPRESSED)
                .set_dictionary_enabled(false)
                .set_statistics_enabled(EnabledStatistics::None)
                .build();
            let w = ArrowWriter::try_new(file, table.schema.clone(), Some(props))?;
            self.writers.insert(table.name, w);
        }
        let w = self.writers.get_mut(table.name).expect("writer just inserted");
        w.write(batch)?;
        *self.rows.entry(table.name.to_string()).or_default() += batch.num_rows() as u64;
        Ok(())
    }

    /// Closes one table's file (writing an empty one if it got no rows), so
    /// that it can be read while others are still being staged.
    pub fn close_table(&mut self, table: &'static SourceTable) -> Result<()> {
        if !self.writers.contains_key(table.name) {
            self.write(table, &RecordBatch::new_empty(table.schema.clone()))?;
        }
        if let Some(w) = self.writers.remove(table.name) {
            w.close()?;
        }
        self.closed.push(table.name);
        Ok(())
    }

    /// Closes every file; tables that got no rows get an empty file, so the
    /// transform always finds all of them.
    pub fn finish(&mut self) -> Result<BTreeMap<String, u64>> {
        for t in SOURCES.iter() {
            if !self.closed.contains(&t.name) {
                self.close_table(t)?;
            }
        }
        Ok(self.rows.clone())
    }

    /// Registers one closed staged table in `ctx` as `alias`.
    pub async fn register(&self, ctx: &SessionContext, table: &SourceTable, alias: &str) -> Result<()> {
        let path = self.path(table.name);
        ctx.register_parquet(
            alias,
            path.to_string_lossy().as_ref(),
            ParquetReadOptions::default().schema(&table.schema),
        )
        .await?;
        Ok(())
    }

    /// Removes the staging folder.
    pub fn remove(self) -> Result<()> {
        fs::remove_dir_all(&self.dir).map_err(|e| Error::io(format!("removing {}", self.dir.display()), e))
    }
}
