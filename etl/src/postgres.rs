//! Reading OCS from Postgres: connection checks and binary COPY into the stage.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use futures::StreamExt;
use sqlx::{Connection, PgConnection, Row};

use crate::error::{Error, Result};
use crate::pgcopy::CopyDecoder;
use crate::progress::{Progress, RowCounter};
use crate::source::{Kind, SESSIONS, SOURCES, SourceTable};
use crate::stage::{ClosedFile, Stage, StagedFile};

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
    /// Whether a validated foreign key ties every session to an existing
    /// participant, and to an existing channel (OCS's schema has both).
    pub session_keys: (bool, bool),
    /// The cluster's `system_identifier`, if this role may read it.
    pub cluster: Option<i64>,
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
    let mut keys = [false; 2];
    for (key, (column, target)) in keys.iter_mut().zip([
        ("participant_id", "experiments_participant"),
        ("experiment_channel_id", "channels_experimentchannel"),
    ]) {
        *key = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_constraint k
                 JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = ALL (k.conkey)
             WHERE k.contype = 'f' AND k.convalidated
               AND k.conrelid = to_regclass($1) AND k.confrelid = to_regclass($2) AND a.attname = $3)",
        )
        .bind(SESSIONS)
        .bind(target)
        .bind(column)
        .fetch_one(&mut *conn)
        .await?;
    }
    // Outside any transaction, so that a refusal costs nothing but this.
    let cluster = sqlx::query_scalar("SELECT system_identifier FROM pg_control_system()")
        .fetch_one(&mut *conn)
        .await
        .ok();
    Ok(SourceInfo {
        session_platform,
        session_keys: (keys[0], keys[1]),
        cluster,
    })
}

/// The `COPY ... TO STDOUT (FORMAT binary)` statement for a table.
pub fn copy_statement(table: &SourceTable, info: SourceInfo, rows: Rows) -> String {
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
    let filter = rows.filter(info);
    format!(
        "COPY (SELECT {} FROM {}{filter}) TO STDOUT (FORMAT binary)",
        cols.join(", "),
        table.name
    )
}

/// Which rows of a table to read. The bounds are our own numbers
/// (integers), never user input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Rows {
    #[default]
    All,
    /// Rows with an id in `(above, up_to]`; with no lower bound, also the
    /// rows without an id.
    Ids { above: Option<i64>, up_to: Option<i64> },
    /// Rows stored in heap pages `[from, to)` (a TID range scan), so that
    /// connections reading parts of one table each scan only their part.
    Pages { from: u64, to: Option<u64> },
    /// Sessions only: the rows whose derived row can differ from what a
    /// read in a snapshot with xmin `since` (the low 32 bits of
    /// [`Reader::xmin`]) saw ([`sessions_changed`]).
    ChangedSessions { since: u32 },
    /// Sessions only: every other row.
    KeptSessions { since: u32 },
}

/// Whether a session's derived row (`etl/sql/sessions.sql`) can differ from
/// the one a read in a snapshot with xmin `since` derived: the session row,
/// its channel's or its participant's was written by a transaction not older
/// than `since` (`age` compares transaction ids modulo 2^32, so the caller
/// makes sure `since` is less than 2^31 transactions old), its channel or
/// participant is gone (only possible where no foreign key forbids it), or
/// it lacks a column the transform needs (such rows are skipped and counted
/// as an anomaly, so they are always read). A superset: a row written since
/// but equal to before is read too.
fn sessions_changed(since: u32, info: SourceInfo) -> String {
    let new = format!("age(xmin) <= age('{since}'::xid)");
    let mut sql = format!(
        "{new}
         OR id IS NULL OR team_id IS NULL OR chat_id IS NULL OR experiment_id IS NULL
         OR status IS NULL OR created_at IS NULL
         OR experiment_channel_id IN (SELECT id FROM channels_experimentchannel WHERE {new})
         OR participant_id IN (SELECT id FROM experiments_participant WHERE {new})"
    );
    let (participant_key, channel_key) = info.session_keys;
    if !channel_key {
        sql.push_str(
            " OR experiment_channel_id NOT IN (SELECT id FROM channels_experimentchannel WHERE id IS NOT NULL)",
        );
    }
    if !participant_key {
        sql.push_str(" OR participant_id NOT IN (SELECT id FROM experiments_participant WHERE id IS NOT NULL)");
    }
    sql
}

impl Rows {
    fn filter(self, info: SourceInfo) -> String {
        match self {
            Rows::All
            | Rows::Ids {
                above: None,
                up_to: None,
            } => String::new(),
            Rows::Ids {
                above: Some(a),
                up_to: None,
            } => format!(" WHERE id > {a}"),
            Rows::Ids {
                above: None,
                up_to: Some(b),
            } => format!(" WHERE id <= {b} OR id IS NULL"),
            Rows::Ids {
                above: Some(a),
                up_to: Some(b),
            } => format!(" WHERE id > {a} AND id <= {b}"),
            Rows::Pages { from, to: None } => format!(" WHERE ctid >= '({from},0)'"),
            Rows::Pages { from, to: Some(to) } => format!(" WHERE ctid >= '({from},0)' AND ctid < '({to},0)'"),
            Rows::ChangedSessions { since } => format!(" WHERE {}", sessions_changed(since, info)),
            // NULL (a NULL id compared by IN) counts as not changed.
            Rows::KeptSessions { since } => format!(" WHERE ({}) IS NOT TRUE", sessions_changed(since, info)),
        }
    }
}

/// One piece of work of a parallel export.
#[derive(Debug, Clone, Copy)]
pub enum Job {
    /// COPY `rows` of a table into part `part` of its stage.
    Copy {
        table: &'static SourceTable,
        rows: Rows,
        part: usize,
    },
    /// The ids (a table's `id` column, not null) of `rows` of a table.
    Ids { table: &'static SourceTable, rows: Rows },
}

/// What a job found.
#[derive(Debug)]
pub enum Done {
    /// The staged file, and how many infinite timestamps the copy met.
    Copied {
        file: ClosedFile,
        infinite: u64,
    },
    Ids(Vec<i64>),
}

/// A transaction that reads the source, on one connection or several
/// sharing one snapshot (`pg_export_snapshot`), so every table is read as of
/// the same instant whichever connection reads it.
pub struct Reader {
    conns: Vec<PgConnection>,
    pub info: SourceInfo,
    /// The transaction's `now()`.
    pub as_of: chrono::DateTime<chrono::Utc>,
    /// The snapshot's xmin (`txid_snapshot_xmin`, with its epoch): every
    /// transaction older than it had ended when the snapshot was taken.
    pub xmin: u64,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("connections", &self.conns.len())
            .field("as_of", &self.as_of)
            .finish()
    }
}

impl Reader {
    /// Opens `connections` (at least one) read-only REPEATABLE READ
    /// transactions on one snapshot.
    pub async fn open(url: &str, connections: usize) -> Result<Reader> {
        let mut first = connect(url).await?;
        let info = inspect(&mut first).await?;
        sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut first)
            .await?;
        let (as_of, snapshot, xmin): (chrono::DateTime<chrono::Utc>, String, i64) =
            sqlx::query_as("SELECT now(), pg_export_snapshot(), txid_snapshot_xmin(txid_current_snapshot())")
                .fetch_one(&mut first)
                .await?;
        if !snapshot.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(Error::Copy(format!("unexpected snapshot id {snapshot:?}")));
        }
        let mut conns = vec![first];
        for _ in 1..connections.max(1) {
            let mut c = connect(url).await?;
            sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .execute(&mut c)
                .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("SET TRANSACTION SNAPSHOT '{snapshot}'")))
                .execute(&mut c)
                .await?;
            conns.push(c);
        }
        // Without a foreign key, a hashed subplan of `sessions_changed` holds
        // every participant id; with less memory Postgres would plan it as a
        // rescan per row.
        for c in &mut conns {
            sqlx::query("SET LOCAL work_mem = '64MB'").execute(&mut *c).await?;
        }
        Ok(Reader {
            conns,
            info,
            as_of,
            xmin: xmin as u64,
        })
    }

    /// Runs the jobs, each connection taking the next one as it gets free
    /// (so list the longest first), decoding on its own task. Returns what
    /// each job found, in the order of `jobs`.
    pub async fn run(&mut self, jobs: &[Job], stage: &Stage, progress: &Progress) -> Result<Vec<Done>> {
        let mut queue = std::collections::VecDeque::new();
        for (i, job) in jobs.iter().enumerate() {
            let file = match job {
                Job::Copy { table, part, .. } => Some(stage.part(table, *part)?),
                Job::Ids { .. } => None,
            };
            queue.push_back((i, *job, file));
        }
        let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
        let mut tasks = Vec::new();
        for mut conn in self.conns.drain(..) {
            let queue = queue.clone();
            let info = self.info;
            let bar = progress.counter();
            tasks.push(tokio::spawn(async move {
                let mut done = Vec::new();
                loop {
                    let next = queue.lock().expect("queue lock").pop_front();
                    let Some((i, job, file)) = next else { break };
                    let result = match job {
                        Job::Copy { table, rows, .. } => {
                            let mut file = file.expect("a staged part per copy job");
                            let infinite = copy_into(&mut conn, table, info, rows, &mut file, &bar).await?;
                            Done::Copied {
                                file: file.close()?,
                                infinite,
                            }
                        }
                        Job::Ids { table, rows } => Done::Ids(copy_ids(&mut conn, table, info, rows).await?),
                    };
                    done.push((i, result));
                }
                Ok::<_, Error>((conn, done))
            }));
        }
        let mut results: Vec<Option<Done>> = jobs.iter().map(|_| None).collect();
        for task in tasks {
            let (conn, done) = task
                .await
                .map_err(|e| Error::Copy(format!("a reader task failed: {e}")))??;
            self.conns.push(conn);
            for (i, d) in done {
                results[i] = Some(d);
            }
        }
        Ok(results.into_iter().map(|d| d.expect("every job ran")).collect())
    }

    /// Heap pages of a table, and how many connections read.
    pub async fn pages(&mut self, table: &SourceTable) -> Result<(u64, usize)> {
        let pages: i64 =
            sqlx::query_scalar("SELECT pg_relation_size($1::regclass) / current_setting('block_size')::int8")
                .bind(table.name)
                .fetch_one(&mut self.conns[0])
                .await?;
        Ok((pages.max(0) as u64, self.conns.len()))
    }

    /// Moves one connection (of at least two) into a reader of its own, on
    /// the same snapshot: a long query there runs beside this reader's
    /// copies, and the snapshot stays open on it after they end.
    pub fn split_off(&mut self) -> Reader {
        assert!(self.conns.len() > 1, "a reader keeps one connection");
        Reader {
            conns: self.conns.split_off(self.conns.len() - 1),
            info: self.info,
            as_of: self.as_of,
            xmin: self.xmin,
        }
    }

    /// `count(*)` and the sum of ids (as a decimal string) of the messages
    /// with `id <= max_id`, for the incremental ETL's deletion check.
    pub async fn message_fingerprint(&mut self, max_id: i64) -> Result<(u64, String)> {
        let conn = &mut self.conns[0];
        // One process: a parallel index-only scan of the 10 M ids of scale
        // m takes about as long and three times the CPU, which the
        // transform running beside it needs.
        sqlx::query("SET LOCAL max_parallel_workers_per_gather = 0")
            .execute(&mut *conn)
            .await?;
        let row = sqlx::query("SELECT count(*), COALESCE(sum(id), 0)::text FROM chat_chatmessage WHERE id <= $1")
            .bind(max_id)
            .fetch_one(&mut *conn)
            .await?;
        Ok((row.get::<i64, _>(0) as u64, row.get::<String, _>(1)))
    }

    /// Ends the transactions.
    pub async fn close(mut self) -> Result<()> {
        for c in &mut self.conns {
            sqlx::query("COMMIT").execute(&mut *c).await?;
        }
        Ok(())
    }
}

/// Runs a binary `COPY ... TO STDOUT` and hands each decoded batch (of
/// `schema`, columns of `kinds`) to `each`; returns the rows and infinite
/// timestamps decoded.
async fn stream_copy(
    conn: &mut PgConnection,
    statement: &str,
    schema: SchemaRef,
    kinds: &[Kind],
    mut each: impl FnMut(&RecordBatch) -> Result<()>,
) -> Result<(u64, u64)> {
    let mut decoder = CopyDecoder::new(schema, kinds, BATCH_ROWS);
    let mut batches = Vec::new();
    let mut stream = conn.copy_out_raw(statement).await?;
    while let Some(chunk) = stream.next().await {
        decoder.push(&chunk?, &mut batches)?;
        for b in batches.drain(..) {
            each(&b)?;
        }
    }
    drop(stream);
    let (rows, infinite) = (decoder.rows(), decoder.infinite_timestamps());
    if let Some(b) = decoder.finish()? {
        each(&b)?;
    }
    Ok((rows, infinite))
}

/// [`stream_copy`] of `rows` of a source table, all its columns.
async fn copy_rows(
    conn: &mut PgConnection,
    table: &SourceTable,
    info: SourceInfo,
    rows: Rows,
    each: impl FnMut(&RecordBatch) -> Result<()>,
) -> Result<(u64, u64)> {
    let kinds: Vec<_> = table.columns.iter().map(|(_, k)| *k).collect();
    let statement = copy_statement(table, info, rows);
    stream_copy(conn, &statement, table.schema.clone(), &kinds, each).await
}

/// Streams `rows` of one table into a staged file; returns the infinite
/// timestamps met.
async fn copy_into(
    conn: &mut PgConnection,
    table: &'static SourceTable,
    info: SourceInfo,
    rows: Rows,
    file: &mut StagedFile,
    bar: &RowCounter,
) -> Result<u64> {
    let (_, infinite) = copy_rows(conn, table, info, rows, |b| {
        bar.rows(b.num_rows() as u64);
        file.write(b)
    })
    .await?;
    Ok(infinite)
}

/// The non-null `id`s of `rows` of a table, in no particular order.
async fn copy_ids(conn: &mut PgConnection, table: &SourceTable, info: SourceInfo, rows: Rows) -> Result<Vec<i64>> {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
    let statement = format!(
        "COPY (SELECT id::int8 FROM {}{}) TO STDOUT (FORMAT binary)",
        table.name,
        rows.filter(info)
    );
    let mut ids = Vec::new();
    stream_copy(conn, &statement, schema, &[Kind::Int], |b| {
        ids.extend(b.column(0).as_primitive::<Int64Type>().iter().flatten());
        Ok(())
    })
    .await?;
    Ok(ids)
}

/// Streams one table into the stage on one connection; returns (rows,
/// infinite timestamps).
pub async fn copy_table(
    conn: &mut PgConnection,
    table: &'static SourceTable,
    info: SourceInfo,
    stage: &mut Stage,
    progress: &mut Progress,
) -> Result<(u64, u64)> {
    progress.step(&format!("reading {}", table.name));
    let (rows, infinite) = copy_rows(conn, table, info, Rows::All, |b| {
        progress.rows(b.num_rows() as u64);
        stage.write(table, b)
    })
    .await?;
    stage.close_table(table)?;
    progress.done("read", table.name, rows);
    Ok((rows, infinite))
}
