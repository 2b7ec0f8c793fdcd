//! Reading OCS from Postgres: connection checks and binary COPY into the stage.

use futures::StreamExt;
use sqlx::{Connection, PgConnection, Row};

use crate::error::{Error, Result};
use crate::pgcopy::CopyDecoder;
use crate::progress::Progress;
use crate::source::{SESSIONS, SOURCES, SourceTable};
use crate::stage::Stage;

/// Rows per Arrow batch when decoding.
const BATCH_ROWS: usize = 64 * 1024;

/// Connects, turning failures into a message that says what to fix.
pub async fn connect(url: &str) -> Result<PgConnection> {
    PgConnection::connect(url).await.map_err(Error::Connect)
}

/// What the ETL found out about the source database.
#[derive(Debug, Clone, Copy)]
pub struct SourceInfo {
    /// Whether `experiments_experimentsession.platform` exists (databases
    /// migrated after Nov 2025).
    pub session_platform: bool,
}

/// Checks that every OCS table the ETL reads is there, and which schema
/// variant this is.
pub async fn inspect(conn: &mut PgConnection) -> Result<SourceInfo> {
    let present: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = ANY (current_schemas(false)) AND table_name = ANY ($1)",
    )
    .bind(SOURCES.iter().map(|t| t.name).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?;
    let missing: Vec<&str> = SOURCES
        .iter()
        .map(|t| t.name)
        .filter(|n| !present.iter().any(|p| p == n))
        .collect();
    if !missing.is_empty() {
        return Err(Error::NotOcs {
            missing: missing.join(", "),
        });
    }
    let session_platform: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns
         WHERE table_schema = ANY (current_schemas(false)) AND table_name = $1 AND column_name = 'platform')",
    )
    .bind(SESSIONS)
    .fetch_one(&mut *conn)
    .await?;
    Ok(SourceInfo { session_platform })
}

/// The `COPY ... TO STDOUT (FORMAT binary)` statement for a table.
/// `min_id_exclusive` is our own watermark (an integer), never user input.
pub fn copy_statement(table: &SourceTable, info: SourceInfo, min_id_exclusive: Option<i64>) -> String {
    let cols: Vec<String> = table
        .columns
        .iter()
        .map(|(name, kind)| {
            if table.name == SESSIONS && *name == "platform" && !info.session_platform {
                format!("NULL::{} AS platform", kind.pg_cast())
            } else {
                format!("\"{name}\"::{}", kind.pg_cast())
            }
        })
        .collect();
    let filter = min_id_exclusive.map_or(String::new(), |id| format!(" WHERE id > {id}"));
    format!(
        "COPY (SELECT {} FROM {}{filter}) TO STDOUT (FORMAT binary)",
        cols.join(", "),
        table.name
    )
}

/// Streams one table into the stage; returns (rows, infinite timestamps).
pub async fn copy_table(
    conn: &mut PgConnection,
    table: &'static SourceTable,
    info: SourceInfo,
    min_id_exclusive: Option<i64>,
    stage: &mut Stage,
    progress: &mut Progress,
) -> Result<(u64, u64)> {
    progress.step(&format!("reading {}", table.name));
    let kinds: Vec<_> = table.columns.iter().map(|(_, k)| *k).collect();
    let mut decoder = CopyDecoder::new(table.schema.clone(), &kinds, BATCH_ROWS);
    let mut batches = Vec::new();
    let statement = copy_statement(table, info, min_id_exclusive);
    let mut stream = conn.copy_out_raw(&statement).await?;
    while let Some(chunk) = stream.next().await {
        decoder.push(&chunk?, &mut batches)?;
        for b in batches.drain(..) {
            progress.rows(b.num_rows() as u64);
            stage.write(table, &b)?;
        }
    }
    drop(stream);
    let (rows, infinite) = (decoder.rows(), decoder.infinite_timestamps());
    if let Some(b) = decoder.finish()? {
        progress.rows(b.num_rows() as u64);
        stage.write(table, &b)?;
    }
    stage.close_table(table)?;
    progress.done("read", table.name, rows);
    Ok((rows, infinite))
}

/// `count(*)` and the sum of ids (as a decimal string) of the messages with
/// `id <= max_id`, for the incremental ETL's deletion check.
pub async fn message_fingerprint(conn: &mut PgConnection, max_id: i64) -> Result<(u64, String)> {
    let row = sqlx::query("SELECT count(*), COALESCE(sum(id), 0)::text FROM chat_chatmessage WHERE id <= $1")
        .bind(max_id)
        .fetch_one(&mut *conn)
        .await?;
    Ok((row.get::<i64, _>(0) as u64, row.get::<String, _>(1)))
}
