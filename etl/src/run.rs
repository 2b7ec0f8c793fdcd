//! The ETL run: export (full or incremental), transform, publish.
//!
//! ## Incremental runs and how deletions are detected
//!
//! The small tables are re-read whole on every run, so inserts, updates and
//! deletions there are picked up exactly. Three tables are read in part:
//!
//! - **Sessions** (updated in place: ending, status changes): only the rows
//!   a transaction wrote since the previous snapshot was read, found by
//!   their `xmin` (the manifest keeps that snapshot's xmin and the
//!   cluster's identity), with the
//!   sessions whose channel or participant was written since or is gone,
//!   plus the ids of all (a session kept but no longer read is deleted);
//!   see [`postgres::Rows::ChangedSessions`] and [`crate::incremental`].
//!   After 2^30 transactions, in another cluster, or from a snapshot
//!   without an xmin, every session is read.
//! - **Tagged items** (inserted and deleted, never edited): the ones above
//!   the highest id the previous snapshot kept, and the ids of the others.
//! - **Messages** (inserted, never edited): the previous snapshot keeps
//!   every valid message (turns plus `_other_messages`) and records the
//!   highest message id it saw, with the count and sum of all ids up to
//!   it.
//!
//! For messages, a new run
//! 1. finds the previous messages whose chat no longer exists (OCS deletes a
//!    session's messages by deleting its chat),
//! 2. asks Postgres for the count and id sum of messages up to the old
//!    watermark, and compares them with the previous snapshot's minus those:
//!    equal means no message below the watermark was deleted or inserted
//!    late (a transaction that committed after the previous export with a
//!    lower id),
//! 3. reads only messages above the watermark.
//!
//! The read of 3 and of every other table runs over `READERS` connections
//! sharing one snapshot ([`postgres::Reader`]); the check of 2 runs on one
//! more connection of that snapshot once the copies are done, beside the
//! transform of the incremental version, which is published only if the
//! check passes. If it fails, the run discards that version, falls back to
//! reading every message, tagged item and session (the rest of them, on the
//! checking connection, in the same snapshot) and says so in its summary. OCS never
//! edits a message's `chat_id`, `message_type` or `created_at` after insert;
//! an edit of those in place is the one change an incremental run would not
//! see (`--full` does).
//! [`crate::incremental`] then rewrites only the files whose rows changed,
//! so an incremental snapshot holds the same rows as a full one.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;
use ocs_dash_engine::snapshot::{DataDir, Manifest, MessageWatermark, Published, SourcePosition, VersionDir};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::generate::{self, GenOptions};
use crate::incremental;
use crate::postgres::{self, Done, Job, Rows};
use crate::progress::Progress;
use crate::source::{ITEMS, MESSAGES, SESSIONS, SOURCES, source};
use crate::stage::Stage;
use crate::transform;

/// How many complete versions to keep besides the current one.
pub const DEFAULT_KEEP: usize = 3;

/// Options of `ocs-dash etl`.
#[derive(Debug, Clone)]
pub struct EtlOptions {
    pub database_url: String,
    /// Where snapshots go: a local folder or an object store.
    pub data: DataDir,
    /// Re-read everything instead of only what changed.
    pub full: bool,
    /// Complete versions kept by pruning.
    pub keep: usize,
}

/// What a run did, for the closing summary.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub version: String,
    pub mode: String,
    /// Why an incremental run read every message after all.
    pub fallback: Option<String>,
    pub as_of: DateTime<Utc>,
    pub source_rows: BTreeMap<String, u64>,
    pub tables: BTreeMap<String, u64>,
    pub anomalies: BTreeMap<String, u64>,
    pub elapsed: Duration,
    pub pruned: Vec<String>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "snapshot {} ({}), data as of {}",
            self.version,
            self.mode,
            self.as_of.to_rfc3339()
        )?;
        if let Some(why) = &self.fallback {
            writeln!(f, "  read every message: {why}")?;
        }
        let read: u64 = self.source_rows.values().sum();
        let secs = self.elapsed.as_secs_f64();
        writeln!(
            f,
            "  {read} source rows in {secs:.2} s ({:.0} rows/s)",
            read as f64 / secs.max(1e-9)
        )?;
        writeln!(f, "  source rows read:")?;
        for (t, n) in &self.source_rows {
            writeln!(f, "    {t:<32} {n:>12}")?;
        }
        writeln!(f, "  snapshot rows written:")?;
        for (t, n) in &self.tables {
            writeln!(f, "    {t:<32} {n:>12}")?;
        }
        if self.anomalies.is_empty() {
            writeln!(f, "  anomalies: none")?;
        } else {
            writeln!(f, "  anomalies (handled per metrics.md, see the README):")?;
            for (t, n) in &self.anomalies {
                writeln!(f, "    {t:<32} {n:>12}")?;
            }
        }
        if !self.pruned.is_empty() {
            writeln!(f, "  pruned old versions: {}", self.pruned.join(", "))?;
        }
        Ok(())
    }
}

/// Makes sure the data directory exists and can be written, before any
/// export starts.
pub async fn prepare_data_dir(dir: &DataDir) -> Result<()> {
    dir.check_writable().await.map_err(|source| Error::DataDir {
        path: dir.location().to_string(),
        source,
    })
}

/// Postgres connections reading the source at the same time.
const READERS: usize = 2;

/// The source tables other than messages, largest first (the order a
/// parallel export hands them out in).
const BY_SIZE: &[&str] = &[
    "annotations_customtaggeditem",
    "experiments_experimentsession",
    "chat_chat",
    "experiments_participant",
];

/// Exports OCS Postgres into a new snapshot and makes it current.
pub async fn run_etl(opts: &EtlOptions, progress: &mut Progress) -> Result<Summary> {
    let started = Instant::now();
    // Every table at once over several connections sharing one snapshot:
    // messages (above the previous watermark, see the module docs) first,
    // then the rest, largest first; the check of the messages below the
    // watermark on one more connection, beside the transform.
    let mut reader = postgres::Reader::open(&opts.database_url, READERS + 1).await?;
    let (info, as_of, xmin) = (reader.info, reader.as_of, reader.xmin);
    let checker = reader.split_off();
    let dir = &opts.data;
    prepare_data_dir(dir).await?;
    let head = dir.head().await?;
    let mut fallback = None;
    let previous = match previous_postgres_manifest(head.as_ref()).filter(|_| !opts.full) {
        Some(prev) => match incremental::usable(dir, &prev) {
            Ok(prev_dir) => Some((prev, prev_dir)),
            Err(why) => {
                fallback = Some(why);
                None
            }
        },
        None => None,
    };
    // The tagged items the previous snapshot kept, up to the highest id
    // there (see `incremental`).
    let kept_items = match &previous {
        Some((_, prev_dir)) => Some(incremental::item_ids(prev_dir).await?),
        None => None,
    };
    let items_mark = kept_items.as_ref().and_then(|ids| ids.last().copied());
    // Sessions written since the previous snapshot's xmin (see
    // `postgres::Rows::ChangedSessions`), in the same cluster, while it is
    // less than 2^30 transactions old (Postgres compares transaction ids
    // modulo 2^32).
    let sessions_since = previous
        .as_ref()
        .and_then(|(prev, _)| prev.source_position)
        .filter(|p| Some(p.cluster) == info.cluster)
        .and_then(|p| (xmin.checked_sub(p.xmin)? < 1 << 30).then_some(p.xmin as u32));

    let version = DataDir::new_version_name(Utc::now());
    let vdir = dir.version_dir(&version);
    let mut stage = Stage::create(dir.staging_dir(&version))?;
    let messages = source(MESSAGES);
    let watermark = previous.as_ref().map(|(prev, _)| prev.watermark.max_id);
    let mut jobs = Vec::new();
    match watermark {
        Some(w) => jobs.push(Job::Copy {
            table: messages,
            rows: Rows::Ids {
                above: Some(w),
                up_to: None,
            },
            part: 0,
        }),
        // Every message, an equal share of the heap per connection.
        None => jobs.extend(shares(&mut reader, messages).await?),
    }
    let others = BY_SIZE.iter().map(|n| source(n)).chain(
        SOURCES
            .iter()
            .filter(|t| t.name != MESSAGES && !BY_SIZE.contains(&t.name)),
    );
    let items = source(ITEMS);
    for table in others {
        match (items_mark, sessions_since) {
            // The new items, and the ids of the others.
            (Some(mark), _) if table.name == ITEMS => {
                jobs.push(Job::Ids {
                    table,
                    rows: Rows::Ids {
                        above: None,
                        up_to: Some(mark),
                    },
                });
                jobs.push(Job::Copy {
                    table,
                    rows: Rows::Ids {
                        above: Some(mark),
                        up_to: None,
                    },
                    part: 0,
                });
            }
            // The sessions that can have changed, and the ids of all.
            (_, Some(since)) if table.name == SESSIONS => {
                jobs.push(Job::Copy {
                    table,
                    rows: Rows::ChangedSessions { since },
                    part: 0,
                });
                jobs.push(Job::Ids { table, rows: Rows::All });
            }
            // Every session otherwise, in shares too, so that neither
            // connection waits on the other's.
            _ if table.name == SESSIONS => jobs.extend(shares(&mut reader, table).await?),
            _ => jobs.push(Job::Copy {
                table,
                rows: Rows::All,
                part: 0,
            }),
        }
    }
    progress.step("reading the source");
    let mut infinite = 0;
    let done = reader.run(&jobs, &stage, progress).await?;
    let mut read_ids = absorb(&mut stage, &jobs, done, &mut infinite);
    let session_ids = read_ids.remove(SESSIONS);
    let gone_items = match (kept_items, read_ids.remove(ITEMS), items_mark) {
        (Some(kept), Some(now), Some(mark)) => match incremental::gone_items(&kept, now) {
            Ok(gone) => Some(gone),
            Err(late) => {
                tracing::info!(late, "tagged items committed late below id {mark}: reading every item");
                let rest = [old_items(items, mark)];
                let done = reader.run(&rest, &stage, progress).await?;
                absorb(&mut stage, &rest, done, &mut infinite);
                None
            }
        },
        _ => None,
    };
    reader.close().await?;
    // The check of the messages below the watermark, once the read is
    // over: beside the transform, which leaves a core idle more often than
    // the read does.
    let check = match &previous {
        Some((prev, _)) => {
            let (mut checker, below) = (checker, prev.watermark.max_id);
            Some(tokio::spawn(async move {
                let found = checker.message_fingerprint(below).await;
                found.map(|f| (checker, f))
            }))
        }
        None => {
            checker.close().await?;
            None
        }
    };
    let read_rows: u64 = stage.rows().values().sum();
    progress.done("read", "all", read_rows);

    let ctx = transform::etl_context()?;
    for table in SOURCES.iter().filter(|t| t.name != MESSAGES) {
        let name = match gone_items {
            Some(_) if table.name == ITEMS => "new_annotations_customtaggeditem",
            _ => table.name,
        };
        stage.register(&ctx, table, name).await?;
    }
    let only_new_items = gone_items.is_some();
    // An incremental version, built while Postgres checks the messages below
    // the watermark, and published only if they are what the previous
    // snapshot kept.
    let mut built = None;
    if let (Some((prev, prev_dir)), Some(check)) = (previous, check) {
        progress.step("comparing with the previous snapshot");
        stage.register(&ctx, messages, "new_chat_chatmessage").await?;
        let plan = incremental::prepare(&ctx, dir, prev, prev_dir, gone_items, session_ids).await?;
        progress.step("writing snapshot");
        let out = incremental::run(&ctx, &plan, &vdir).await?;
        let (mut checker, pg) = check
            .await
            .map_err(|e| Error::Copy(format!("the message check failed: {e}")))??;
        let kept = plan.kept()?;
        if kept == pg {
            built = Some(out);
        } else {
            fallback = Some(format!(
                "messages up to id {} changed since the last snapshot (now {} rows, snapshot kept {})",
                plan.watermark(),
                pg.0,
                kept.0
            ));
            discard_tables(&vdir, &stage)?;
            // The rest of the messages (and of the items), in the same snapshot.
            let mut rest = vec![Job::Copy {
                table: messages,
                rows: Rows::Ids {
                    above: None,
                    up_to: Some(plan.watermark()),
                },
                part: 1,
            }];
            if let (true, Some(mark)) = (only_new_items, items_mark) {
                rest.push(old_items(items, mark));
            }
            if let Some(since) = sessions_since {
                rest.push(Job::Copy {
                    table: source(SESSIONS),
                    rows: Rows::KeptSessions { since },
                    part: 1,
                });
            }
            let done = checker.run(&rest, &stage, progress).await?;
            absorb(&mut stage, &rest, done, &mut infinite);
        }
        checker.close().await?;
    }
    let source_rows = stage.rows();

    let meta = Meta {
        version: version.clone(),
        as_of,
        source: "postgres",
        source_position: info.cluster.map(|cluster| SourcePosition { cluster, xmin }),
        mode: if built.is_some() { "incremental" } else { "full" },
        session_platform_column: info.session_platform,
        source_rows: source_rows.clone(),
        infinite_timestamps: infinite,
    };
    let manifest = match built {
        Some((out, watermark)) => {
            stage.remove()?;
            seal_and_publish(&ctx, dir, head.map(|h| h.seq), meta, out, watermark, progress).await?
        }
        None => {
            // A fresh context: nothing of the comparison stays registered.
            let ctx = transform::etl_context()?;
            for table in SOURCES.iter() {
                stage.register(&ctx, table, table.name).await?;
            }
            finish_snapshot(&ctx, dir, head.map(|h| h.seq), stage, meta, progress).await?
        }
    };
    let mode = manifest.mode.clone();
    let pruned = dir.prune(opts.keep).await?;
    Ok(Summary {
        version,
        mode,
        fallback,
        as_of,
        source_rows,
        tables: manifest.tables,
        anomalies: manifest.anomalies,
        elapsed: started.elapsed(),
        pruned,
    })
}

/// Removes what an incremental run wrote into `vdir` (a local folder):
/// its tables' folders and its files, keeping the stage inside it.
fn discard_tables(vdir: &VersionDir, stage: &Stage) -> Result<()> {
    let Some(path) = vdir.local_path() else {
        return Ok(());
    };
    let io = |e| Error::io(format!("removing the tables of {}", path.display()), e);
    for entry in std::fs::read_dir(&path).map_err(io)? {
        let entry = entry.map_err(io)?.path();
        if entry.is_dir() && entry != stage.dir() {
            std::fs::remove_dir_all(&entry).map_err(io)?;
        } else if entry.is_file() {
            // The message ids stored beside the tables.
            std::fs::remove_file(&entry).map_err(io)?;
        }
    }
    Ok(())
}

/// Adds the staged files of finished `jobs` to the stage and their infinite
/// timestamps to `infinite`; returns the ids each ids job read, by table.
fn absorb(stage: &mut Stage, jobs: &[Job], done: Vec<Done>, infinite: &mut u64) -> BTreeMap<&'static str, Vec<i64>> {
    let mut read = BTreeMap::new();
    for (job, d) in jobs.iter().zip(done) {
        match (job, d) {
            (_, Done::Copied { file, infinite: n }) => {
                *infinite += n;
                stage.add(file);
            }
            (Job::Ids { table, .. }, Done::Ids(ids)) => {
                read.insert(table.name, ids);
            }
            (Job::Copy { table, .. }, Done::Ids(_)) => unreachable!("a copy of {} returned ids", table.name),
        }
    }
    read
}

/// Copies of a table, an equal share of its heap per connection of `reader`.
async fn shares(reader: &mut postgres::Reader, table: &'static crate::source::SourceTable) -> Result<Vec<Job>> {
    let (pages, n) = reader.pages(table).await?;
    let share = pages.div_ceil(n as u64);
    Ok((0..n)
        .map(|part| Job::Copy {
            table,
            rows: Rows::Pages {
                from: share * part as u64,
                to: (part + 1 < n).then_some(share * (part as u64 + 1)),
            },
            part,
        })
        .collect())
}

/// The copy of the tagged items up to `mark` (with those above it, read
/// first, every item).
fn old_items(items: &'static crate::source::SourceTable, mark: i64) -> Job {
    Job::Copy {
        table: items,
        rows: Rows::Ids {
            above: None,
            up_to: Some(mark),
        },
        part: 1,
    }
}

/// The last snapshot this data directory got from Postgres, if an
/// incremental run can build on it.
fn previous_postgres_manifest(head: Option<&Published>) -> Option<Manifest> {
    // An older layout is rewritten in full.
    head.map(|h| h.manifest.clone())
        .filter(|m| m.source == "postgres" && m.format == ocs_dash_engine::snapshot::FORMAT)
}

/// Highest id, count and decimal id sum of a registered message table.
pub(crate) async fn watermark(ctx: &SessionContext, table: &str) -> Result<MessageWatermark> {
    let sql = format!(
        "SELECT COALESCE(max(id), 0), count(*), \
         CAST(COALESCE(sum(CAST(id AS DECIMAL(38, 0))), 0) AS VARCHAR) FROM {table}"
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let b = &batches[0];
    let sum_col = datafusion::arrow::compute::cast(b.column(2), &datafusion::arrow::datatypes::DataType::Utf8)?;
    Ok(MessageWatermark {
        max_id: b.column(0).as_primitive::<Int64Type>().value(0),
        count: b.column(1).as_primitive::<Int64Type>().value(0) as u64,
        id_sum: sum_col.as_string::<i32>().value(0).to_string(),
    })
}

struct Meta {
    version: String,
    as_of: DateTime<Utc>,
    source: &'static str,
    source_position: Option<SourcePosition>,
    mode: &'static str,
    session_platform_column: bool,
    source_rows: BTreeMap<String, u64>,
    infinite_timestamps: u64,
}

/// Full transform, seal, publish: the tail every full build shares.
async fn finish_snapshot(
    ctx: &SessionContext,
    dir: &DataDir,
    base: Option<u64>,
    stage: Stage,
    meta: Meta,
    progress: &mut Progress,
) -> Result<Manifest> {
    let vdir = dir.version_dir(&meta.version);
    let watermark = watermark(ctx, MESSAGES).await?;
    progress.step("writing snapshot");
    let out = transform::run(ctx, &vdir).await?;
    stage.remove()?;
    seal_and_publish(ctx, dir, base, meta, out, watermark, progress).await
}

/// Writes the manifest of a fully written version and makes it current.
/// Publishes as the successor of log entry `base` (the head the run built on).
async fn seal_and_publish(
    ctx: &SessionContext,
    dir: &DataDir,
    base: Option<u64>,
    meta: Meta,
    out: transform::Transformed,
    watermark: MessageWatermark,
    progress: &mut Progress,
) -> Result<Manifest> {
    progress.done("transform", "all", out.tables.values().sum());
    let mut anomalies = out.anomalies;
    if meta.infinite_timestamps > 0 {
        anomalies.insert("infinite_timestamps".into(), meta.infinite_timestamps);
    }
    let teams = transform::int64_values(ctx, "SELECT team_id FROM snap_teams ORDER BY team_id").await?;
    let manifest = Manifest {
        format: ocs_dash_engine::snapshot::FORMAT,
        version: meta.version.clone(),
        as_of: meta.as_of,
        created_at: Utc::now(),
        source: meta.source.to_string(),
        mode: meta.mode.to_string(),
        session_platform_column: meta.session_platform_column,
        tables: out.tables,
        source_rows: meta.source_rows,
        anomalies,
        watermark,
        source_position: meta.source_position,
        teams,
        rollup: Some(ocs_dash_engine::snapshot::RollupCoverage { from: None, to: None }),
    };
    dir.publish(&manifest, base).await?;
    progress.finish();
    Ok(manifest)
}

/// Builds a new current snapshot from source rows held in memory (a
/// fixture, see [`crate::fixture`]), through the same transform as the ETL.
pub async fn snapshot_from_batches(
    dir: &DataDir,
    batches: Vec<(
        &'static crate::source::SourceTable,
        datafusion::arrow::array::RecordBatch,
    )>,
    as_of: DateTime<Utc>,
) -> Result<Manifest> {
    prepare_data_dir(dir).await?;
    let base = dir.head().await?.map(|h| h.seq);
    let version = DataDir::new_version_name(Utc::now());
    let mut stage = Stage::create(dir.staging_dir(&version))?;
    for (table, batch) in &batches {
        stage.write(table, batch)?;
    }
    let rows = stage.finish()?;
    let ctx = transform::etl_context()?;
    for table in SOURCES.iter() {
        stage.register(&ctx, table, table.name).await?;
    }
    finish_snapshot(
        &ctx,
        dir,
        base,
        stage,
        Meta {
            version,
            as_of,
            source: "fixture",
            source_position: None,
            mode: "full",
            session_platform_column: true,
            source_rows: rows,
            infinite_timestamps: 0,
        },
        &mut Progress::hidden(),
    )
    .await
}

/// Generates a synthetic OCS straight into a new current snapshot, without
/// Postgres (`ocs-dash demo`), through the same transform as the ETL.
pub async fn generate_snapshot(dir: &DataDir, opts: &GenOptions, progress: &mut Progress) -> Result<Manifest> {
    prepare_data_dir(dir).await?;
    let base = dir.head().await?.map(|h| h.seq);
    let version = DataDir::new_version_name(Utc::now());
    let mut stage = Stage::create(dir.staging_dir(&version))?;
    progress.step("generating");
    let summary = generate::generate(opts, &mut stage).await?;
    stage.finish()?;
    let ctx = transform::etl_context()?;
    for table in SOURCES.iter() {
        stage.register(&ctx, table, table.name).await?;
    }
    let manifest = finish_snapshot(
        &ctx,
        dir,
        base,
        stage,
        Meta {
            version,
            as_of: opts.end,
            source: "generator",
            source_position: None,
            mode: "full",
            session_platform_column: opts.session_platform,
            source_rows: summary.rows,
            infinite_timestamps: 0,
        },
        progress,
    )
    .await?;
    dir.prune(DEFAULT_KEEP).await?;
    Ok(manifest)
}
