//! Small hand-written OCS data sets as SQL (`data/fixtures/*.sql`).
//!
//! A fixture is a list of `INSERT INTO <ocs table> (<columns>) VALUES ...`
//! statements over the source columns of [`crate::source`]. They run in
//! DataFusion against empty in-memory tables, so a fixture becomes a
//! snapshot through exactly the transform the ETL uses, without Postgres;
//! tests can also load the same rows into Postgres with
//! [`crate::generate::PgSink`] and compare with SQL over the source.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use crate::error::Result;
use crate::source::{SOURCES, SourceTable};

/// Runs a fixture's statements and returns every source table's rows.
pub async fn fixture_batches(sql: &str) -> Result<Vec<(&'static SourceTable, RecordBatch)>> {
    let ctx = SessionContext::new();
    for t in SOURCES.iter() {
        ctx.register_table(t.name, Arc::new(MemTable::try_new(t.schema.clone(), vec![vec![]])?))?;
    }
    for statement in split_statements(sql) {
        ctx.sql(&statement).await?.collect().await?;
    }
    let mut out = Vec::new();
    for t in SOURCES.iter() {
        for batch in ctx.table(t.name).await?.collect().await? {
            if batch.num_rows() > 0 {
                out.push((t, batch));
            }
        }
    }
    Ok(out)
}

/// Splits on `;` at line ends, dropping `--` comment lines.
fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        if line.trim_start().starts_with("--") {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if line.trim_end().ends_with(';') {
            let s = current.trim().trim_end_matches(';').to_string();
            if !s.is_empty() {
                out.push(s);
            }
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}
