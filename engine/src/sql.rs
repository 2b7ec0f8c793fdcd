//! Ad-hoc, read-only SQL over a snapshot (`ocs-dash sql`).
//!
//! The tables are the team-scoped snapshot tables (see the README for their
//! columns): `chatbots`, `participants`, `sessions`, `turns`, `tags`,
//! `message_tags`, `session_tags`, plus `teams` holding the team itself.
//! With `--all-teams` (an operator's flag) every team's rows are visible and
//! each table has a `team_id` column. DDL, DML (INSERT, COPY ...), `SET` and
//! other statements are refused before planning; DataFusion's URL tables
//! (`SELECT * FROM 'file.parquet'`) are not enabled, so no file outside the
//! snapshot can be read.

use std::sync::Arc;

use arrow::util::pretty::pretty_format_batches;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::{col, lit};
use datafusion::prelude::SessionContext;

use crate::backend::Backend;
use crate::engine::Snapshot;
use crate::error::{Result, user_query_error};
use crate::scope::{TEAM_TABLES, register_team_table};
use crate::snapshot::{TABLES, register_table, table};

/// Output formats of `ocs-dash sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            _ => Err(format!("unknown format {s:?}: use table, csv or json")),
        }
    }
}

/// A context over one team's tables (or all teams' with `team = None`).
pub async fn adhoc_context(snapshot: &Snapshot, team: Option<i64>) -> Result<SessionContext> {
    adhoc_context_on(&Backend::Local, snapshot, team).await
}

/// [`adhoc_context`] in a context of `backend` (local or a Ballista cluster).
pub async fn adhoc_context_on(backend: &Backend, snapshot: &Snapshot, team: Option<i64>) -> Result<SessionContext> {
    let ctx = backend.context(&Arc::new(RuntimeEnv::default())).await?;
    let teams_def = table("teams").expect("teams table");
    match team {
        Some(id) => {
            for name in TEAM_TABLES {
                register_team_table(&ctx, &snapshot.dir, id, table(name).expect("known table"))?;
            }
            register_table(&ctx, "all_teams", &snapshot.dir, teams_def)?;
            let own = ctx.table("all_teams").await?.filter(col("team_id").eq(lit(id)))?;
            ctx.register_table("teams", own.into_view())?;
            ctx.deregister_table("all_teams")?;
        }
        None => {
            for def in TABLES.iter().filter(|d| !d.internal) {
                register_table(&ctx, def.name, &snapshot.dir, def)?;
            }
        }
    }
    Ok(ctx)
}

/// Runs one read-only query.
pub async fn run_readonly(ctx: &SessionContext, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = ctx.sql_with_options(sql, options).await.map_err(user_query_error)?;
    let schema = df.schema().inner().clone();
    let batches = df.collect().await.map_err(user_query_error)?;
    Ok((schema, batches))
}

/// Renders a result.
pub fn render(schema: &SchemaRef, batches: &[RecordBatch], format: Format) -> Result<String> {
    Ok(match format {
        Format::Table => {
            if batches.iter().all(|b| b.num_rows() == 0) {
                let cols: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                format!("({}) 0 rows\n", cols.join(", "))
            } else {
                format!("{}\n", pretty_format_batches(batches)?)
            }
        }
        Format::Csv => {
            let mut out = Vec::new();
            let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
            if batches.is_empty() {
                w.write(&RecordBatch::new_empty(schema.clone()))?;
            }
            for b in batches {
                w.write(b)?;
            }
            drop(w);
            String::from_utf8_lossy(&out).into_owned()
        }
        Format::Json => {
            let mut w = arrow::json::ArrayWriter::new(Vec::new());
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
            let mut s = String::from_utf8_lossy(&w.into_inner()).into_owned();
            if s.is_empty() {
                s.push_str("[]");
            }
            s.push('\n');
            s
        }
    })
}
