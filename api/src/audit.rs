//! The audit log's writer.
//!
//! A request queues its row (in memory, before its response goes out) and
//! one background task writes the queue to the metadata store: whatever has
//! queued up while the previous write ran goes in one multi-row `INSERT`, so
//! a busy server writes (and, on SQLite, syncs) a batch, not a row, per
//! commit. Readers of the log in this process ([`AuditLog::flush`]) first
//! wait for everything queued before them, and closing the store (graceful
//! shutdown, after the requests in flight have finished) writes the rest.
//!
//! What a crash (not SIGTERM) can lose is the rows of the batch being written
//! and those queued behind it: at most the last few milliseconds of requests.
//! While writing fails, new rows are refused ([`AuditLog::push`] errors, the
//! request gets a 500), so no data goes out unrecorded for longer than one
//! failed write; the rows already queued are retried until they are written.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::AnyPool;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// Rows waiting to be written at most (about 200 bytes each); a request
/// waits for room up to [`QUEUE_WAIT`], then fails.
const QUEUE_ROWS: usize = 64 * 1024;
const QUEUE_WAIT: Duration = Duration::from_secs(10);
/// Rows per `INSERT` statement (8 parameters each, far below SQLite's and
/// Postgres' limits); a batch may hold several statements, in one transaction.
const ROWS_PER_STATEMENT: usize = 256;
/// Rows taken from the queue for one transaction.
const BATCH_ROWS: usize = 4096;
/// At shutdown, a failing write is retried this many times before the rows are given up (and logged).
const CLOSE_ATTEMPTS: u32 = 5;

/// One row as it is written (the filters already JSON text).
#[derive(Debug, Clone)]
pub(crate) struct AuditRow {
    pub at_micros: i64,
    pub key_id: i64,
    pub user: String,
    pub team_id: i64,
    pub action: String,
    pub target: String,
    pub filters: Arc<str>,
    pub rows: i64,
}

#[derive(Debug)]
enum Msg {
    Row(AuditRow),
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
    /// Like `Flush`, then the writer stops.
    Close(oneshot::Sender<()>),
}

/// The queue and its writer task.
#[derive(Debug)]
pub(crate) struct AuditLog {
    tx: mpsc::Sender<Msg>,
    failing: Arc<AtomicBool>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl AuditLog {
    /// Starts the writer on the current tokio runtime.
    pub(crate) fn start(pool: AnyPool) -> AuditLog {
        let (tx, rx) = mpsc::channel(QUEUE_ROWS);
        let failing = Arc::new(AtomicBool::new(false));
        let writer = tokio::spawn(write_loop(pool, rx, failing.clone()));
        AuditLog {
            tx,
            failing,
            writer: Mutex::new(Some(writer)),
        }
    }

    /// Queues a row; fails while the store refuses writes, when the queue
    /// stays full, or after [`AuditLog::close`].
    pub(crate) async fn push(&self, row: AuditRow) -> Result<()> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(Error::Audit("the audit log cannot be written".into()));
        }
        let msg = Msg::Row(row);
        let sent = match self.tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(msg)) => {
                match tokio::time::timeout(QUEUE_WAIT, self.tx.send(msg)).await {
                    Ok(r) => r.map_err(|_| "the audit log is closed"),
                    Err(_) => Err("the audit log's queue stayed full"),
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err("the audit log is closed"),
        };
        sent.map_err(|m| Error::Audit(m.into()))
    }

    /// Waits until every row queued so far is written.
    pub(crate) async fn flush(&self) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Msg::Flush(done))
            .await
            .map_err(|_| Error::Audit("the audit log is closed".into()))?;
        wait.await
            .map_err(|_| Error::Audit("the audit log's writer stopped".into()))
    }

    /// Writes what is queued and stops the writer (idempotent).
    pub(crate) async fn close(&self) {
        let Some(writer) = self.writer.lock().await.take() else {
            return;
        };
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Close(done)).await.is_ok() {
            let _ = wait.await;
        }
        if let Err(e) = writer.await {
            tracing::error!(error = %e, "audit log writer");
        }
    }
}

async fn write_loop(pool: AnyPool, mut rx: mpsc::Receiver<Msg>, failing: Arc<AtomicBool>) {
    let mut msgs = Vec::with_capacity(BATCH_ROWS);
    let mut rows = Vec::with_capacity(BATCH_ROWS);
    loop {
        if rx.recv_many(&mut msgs, BATCH_ROWS).await == 0 {
            return; // every sender is gone
        }
        let mut waiting = Vec::new();
        let mut closing = false;
        for msg in msgs.drain(..) {
            match msg {
                Msg::Row(r) => rows.push(r),
                Msg::Flush(done) => waiting.push(done),
                Msg::Close(done) => {
                    closing = true;
                    waiting.push(done);
                }
            }
        }
        if closing {
            // Rows that raced the close are still written.
            rx.close();
            while let Some(msg) = rx.recv().await {
                match msg {
                    Msg::Row(r) => rows.push(r),
                    Msg::Flush(done) | Msg::Close(done) => waiting.push(done),
                }
            }
        }
        write_retrying(&pool, &rows, &failing, closing).await;
        rows.clear();
        for done in waiting {
            let _ = done.send(());
        }
        if closing {
            return;
        }
    }
}

/// Writes a batch; while the server runs, retries until it is written.
async fn write_retrying(pool: &AnyPool, rows: &[AuditRow], failing: &AtomicBool, closing: bool) {
    let mut pause = Duration::from_millis(50);
    let mut attempt = 0;
    while !rows.is_empty() {
        attempt += 1;
        match write(pool, rows).await {
            Ok(()) => {
                if failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(rows = rows.len(), "audit log written again");
                }
                return;
            }
            Err(e) => {
                failing.store(true, Ordering::Relaxed);
                if closing && attempt >= CLOSE_ATTEMPTS {
                    tracing::error!(error = %e, rows = rows.len(), "audit rows lost: the store refused them at shutdown");
                    return;
                }
                tracing::error!(error = %e, rows = rows.len(), "writing the audit log failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// One transaction of multi-row inserts, in queue order (ids follow it).
async fn write(pool: &AnyPool, rows: &[AuditRow]) -> Result<()> {
    let mut tx = pool.begin().await?;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        // The text holds only placeholders numbered here; every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(insert_sql(chunk.len()))).persistent(false);
        for r in chunk {
            q = q
                .bind(r.at_micros)
                .bind(r.key_id)
                .bind(r.user.as_str())
                .bind(r.team_id)
                .bind(r.action.as_str())
                .bind(r.target.as_str())
                .bind(&*r.filters)
                .bind(r.rows);
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

fn insert_sql(rows: usize) -> String {
    use std::fmt::Write;
    let mut sql = String::from(
        "INSERT INTO audit_log (at, key_id, user_name, team_id, action, target, filters, row_count) VALUES ",
    );
    for r in 0..rows {
        let p = r * 8;
        let _ = write!(
            sql,
            "{}(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
            if r == 0 { "" } else { ", " },
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 5,
            p + 6,
            p + 7,
            p + 8
        );
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_number_their_parameters_in_order() {
        assert_eq!(
            insert_sql(2),
            "INSERT INTO audit_log (at, key_id, user_name, team_id, action, target, filters, row_count) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8), ($9, $10, $11, $12, $13, $14, $15, $16)"
        );
    }
}
