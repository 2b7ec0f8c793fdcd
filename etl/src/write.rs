//! Writing snapshot tables: sorted, split by team (and by month for the
//! tables sorted by time), zstd Parquet with page statistics, into a version
//! of a data directory (a local folder or an object store: buffered,
//! multipart uploads through `object_store`).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate};
use datafusion::arrow::array::{Array, AsArray, RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimestampMicrosecondType};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::col as column;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{ExecutionPlan, Partitioning, SendableRecordBatchStream};
use datafusion::prelude::{DataFrame, col};
use futures::StreamExt;
use object_store::buffered::BufWriter;
use ocs_dash_engine::snapshot::{TEAM_COLUMN, TableDef, VersionDir};
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::error::{Error, Result};

/// Rows per row group: small enough that a 30-day window over a year of
/// data skips most groups, large enough to keep per-group overhead low.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;
/// A team's table rolls over to a new file after this many rows.
pub const FILE_ROWS: usize = 8 * 1024 * 1024;

/// A partitioned table whose first sort column is a timestamp is stored as
/// one file per team and UTC calendar month of that column (`part-YYYYMM-<n>`),
/// so that an incremental ETL rewrites only the months whose rows changed and
/// hard-links the rest. Returns that column's name.
pub fn chunk_column(def: &TableDef) -> Option<&'static str> {
    let first = *def.sort_by.first()?;
    let is_time = matches!(
        def.schema.field_with_name(first).ok()?.data_type(),
        DataType::Timestamp(..)
    );
    (def.partitioned && is_time).then_some(first)
}

/// The file chunk a row belongs to: its team (partitioned tables) and its
/// month as `YYYYMM` (chunked tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Chunk {
    pub team: Option<i64>,
    pub month: Option<u32>,
}

/// `YYYYMM` of a UTC instant in microseconds, and the first microsecond of
/// the next month.
pub fn month_of(micros: i64) -> (u32, i64) {
    let t = DateTime::from_timestamp_micros(micros).unwrap_or_default();
    let (y, m) = (t.year(), t.month());
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let next = NaiveDate::from_ymd_opt(ny, nm, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(i64::MAX, |d| d.and_utc().timestamp_micros());
    (y as u32 * 100 + m, next)
}

/// The first microsecond (UTC) of a `YYYYMM` month.
pub fn month_start(month: u32) -> i64 {
    NaiveDate::from_ymd_opt((month / 100) as i32, month % 100, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(i64::MIN, |d| d.and_utc().timestamp_micros())
}

/// The month of a chunked table's file name (`part-YYYYMM-<n>.parquet`).
pub fn file_month(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let (month, n) = rest.split_once('-')?;
    n.parse::<usize>().ok()?;
    (month.len() == 6).then(|| month.parse().ok()).flatten()
}

/// Splits a batch sorted by `team_id` (column 0, if `partitioned`) and then
/// by the column at `chunk_col` (if any) into one slice per chunk, without
/// the team column. Pure: no I/O.
pub fn split_into_chunks(
    batch: &RecordBatch,
    partitioned: bool,
    chunk_col: Option<usize>,
) -> Vec<(Chunk, RecordBatch)> {
    if !partitioned {
        return vec![(
            Chunk {
                team: None,
                month: None,
            },
            batch.clone(),
        )];
    }
    let teams = batch.column(0).as_primitive::<Int64Type>();
    let rest = batch
        .project(&(1..batch.num_columns()).collect::<Vec<_>>())
        .expect("valid projection");
    let times = chunk_col.map(|c| batch.column(c).as_primitive::<TimestampMicrosecondType>().values());
    let mut out = Vec::new();
    let mut start = 0;
    while start < batch.num_rows() {
        let team = teams.value(start);
        let mut end = start + 1;
        while end < batch.num_rows() && teams.value(end) == team {
            end += 1;
        }
        match times {
            None => out.push((
                Chunk {
                    team: Some(team),
                    month: None,
                },
                rest.slice(start, end - start),
            )),
            Some(times) => {
                let mut from = start;
                while from < end {
                    let (month, next) = month_of(times[from]);
                    let to = from + times[from..end].partition_point(|t| *t < next);
                    let chunk = Chunk {
                        team: Some(team),
                        month: Some(month),
                    };
                    out.push((chunk, rest.slice(from, to - from)));
                    from = to;
                }
            }
        }
        start = end;
    }
    out
}

pub(crate) fn properties(def: &TableDef) -> WriterProperties {
    let sorting = def
        .sort_by
        .iter()
        .map(|c| SortingColumn {
            column_idx: def.schema.index_of(c).expect("sort column in schema") as i32,
            descending: false,
            nulls_first: false,
        })
        .collect();
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL).expect("valid level")))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(sorting));
    // A dictionary only pays where values repeat within a row group: not
    // for instants and ids that are (nearly) unique per row, per session or
    // per participant. Interning those was about a twentieth of a full ETL's
    // CPU, and their files are smaller without (at scale m, `turns` 124 →
    // 113 MB, `sessions` 41 → 37 MB).
    for field in def.schema.fields() {
        let name = field.name().as_str();
        if matches!(field.data_type(), DataType::Timestamp(..)) || UNIQUE_VALUED.contains(&name) {
            props = props.set_column_dictionary_enabled(ColumnPath::from(name), false);
        }
        // Columns in (or, for message ids, close to) ascending order in a
        // file are stored as deltas: a sorted run of instants or serial ids
        // then takes a few bits a row before zstd instead of eight bytes
        // (`turns` 113 → 89 MB, and less for zstd to compress).
        if (def.sort_by.contains(&name) || name == "message_id")
            && matches!(field.data_type(), DataType::Int64 | DataType::Timestamp(..))
        {
            props = props.set_column_encoding(ColumnPath::from(name), Encoding::DELTA_BINARY_PACKED);
        }
        if UNCOMPRESSED.contains(&name) {
            props = props.set_column_compression(ColumnPath::from(name), Compression::UNCOMPRESSED);
        }
    }
    props.build()
}

/// Columns written without a dictionary: their values (nearly) never repeat
/// within a row group, or repeat only within one session's or one
/// participant's rows.
const UNIQUE_VALUED: &[&str] = &[
    "message_id",
    "id",
    "object_id",
    "session_id",
    "chat_id",
    "participant_id",
    "session_length_us",
    "external_id",
    "identifier",
];

/// Columns stored without zstd: once encoded (deltas of instants and
/// serial ids, dictionary indices of a few values) zstd made them at most
/// 1.45 times smaller (`status` 1.44), 11 MB of the 171 MB scale-m
/// snapshot in all, while each zstd column chunk costs two zstd contexts
/// to write and two to read, and creating one runs `cpuid` three times:
/// about 27 µs each in a virtual machine that traps it, 0.5 s of CPU over
/// the 9,300 chunks a full ETL writes and reads.
const UNCOMPRESSED: &[&str] = &[
    "created_at",
    "ended_at",
    "last_human_at",
    "message_id",
    "message_type",
    "chatbot_id",
    "tag_id",
    "human",
    "ai",
    "status",
];

/// zstd's fastest level. With the dictionaries above, going from level 3
/// to 1 took a full ETL's transform at scale m from 11.8 s to 10.6 s, and
/// the snapshot from 229 MB to 205 MB.
const ZSTD_LEVEL: i32 = 1;

/// Files encoded at the same time, each on a task of its own, while the
/// sorted rows stream on: Parquet encoding and compression, not the sort,
/// is most of a write.
pub(crate) const ENCODERS: usize = 2;

/// Runs `work` on every job, on [`ENCODERS`] threads that each take the
/// next job as they get free (so list the longest last: they are taken from
/// the end). Blocking; the results come in no particular order.
pub(crate) fn on_workers<J: Send, T: Send>(jobs: Vec<J>, work: impl Fn(J) -> Result<T> + Sync) -> Result<Vec<T>> {
    let jobs = std::sync::Mutex::new(jobs);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..ENCODERS)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let Some(job) = jobs.lock().expect("job list").pop() else {
                            return Ok::<_, Error>(done);
                        };
                        done.push(work(job)?);
                    }
                })
            })
            .collect();
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.join().expect("a worker thread panicked")?);
        }
        Ok(all)
    })
}

/// A file being written: its rows go to the task that encodes them.
struct TeamFile {
    chunk: Chunk,
    part: usize,
    rows: usize,
    rows_to: mpsc::Sender<RecordBatch>,
    encoder: JoinHandle<Result<()>>,
}

impl TeamFile {
    async fn write(mut self, batch: RecordBatch) -> Result<Self> {
        self.rows += batch.num_rows();
        if self.rows_to.send(batch).await.is_err() {
            // The encoder stopped early: its error says why.
            drop(self.rows_to);
            finish(self.encoder).await?;
            return Err(Error::io(
                "encoding a snapshot file",
                std::io::Error::other("the encoder stopped"),
            ));
        }
        Ok(self)
    }

    /// No more rows: the encoder closes the file.
    fn close(self) -> JoinHandle<Result<()>> {
        drop(self.rows_to);
        self.encoder
    }
}

async fn finish(encoder: JoinHandle<Result<()>>) -> Result<()> {
    encoder
        .await
        .map_err(|e| Error::io("encoding a snapshot file", std::io::Error::other(e)))?
}

/// The name of a table's file: `part-YYYYMM-<n>.parquet` in a time-sorted
/// table, `part-<n>.parquet` in the others.
pub fn file_name(month: Option<u32>, part: usize) -> String {
    match month {
        Some(m) => format!("part-{m}-{part}.parquet"),
        None => format!("part-{part}.parquet"),
    }
}

/// The folder of a team's files (or the table's, if unpartitioned).
pub fn chunk_dir(table_dir: &Path, team: Option<i64>) -> PathBuf {
    match team {
        Some(t) => table_dir.join(format!("{TEAM_COLUMN}={t}")),
        None => table_dir.to_path_buf(),
    }
}

/// The schema of the batches a partitioned table's writer takes: `team_id`,
/// then the table's columns.
pub(crate) fn with_team(def: &TableDef) -> SchemaRef {
    let mut fields = vec![Arc::new(Field::new(TEAM_COLUMN, DataType::Int64, false))];
    fields.extend(def.schema.fields().iter().cloned());
    Arc::new(Schema::new(fields))
}

/// The sort a table's rows are written in: team first (partitioned tables),
/// then the table's `sort_by`.
pub(crate) fn sort_keys(def: &TableDef) -> impl Iterator<Item = &'static str> + '_ {
    def.partitioned
        .then_some(TEAM_COLUMN)
        .into_iter()
        .chain(def.sort_by.iter().copied())
}

/// The rows of `df` (its table's columns, preceded by `team_id` for
/// partitioned tables) in the table's order, as streams to be written at the
/// same time. A partitioned table's teams are split between the streams by a
/// hash of the team and each stream is sorted by itself
/// ([`crate::sort::sorted`]: in memory while it fits): files are per team,
/// so no stream has to wait on a merge with the others, and each one is
/// written on a core of its own.
pub async fn ordered_streams(df: DataFrame, def: &TableDef) -> Result<Vec<SendableRecordBatchStream>> {
    if !def.partitioned {
        let order = sort_keys(def).map(|c| col(c).sort(true, false)).collect();
        return Ok(vec![df.sort(order)?.execute_stream().await?]);
    }
    let task = Arc::new(df.task_ctx());
    let n = team_streams(&task);
    let plan = df.create_physical_plan().await?;
    let schema = plan.schema();
    let split = RepartitionExec::try_new(plan, Partitioning::Hash(vec![column(TEAM_COLUMN, &schema)?], n))?;
    let parts = (0..n)
        .map(|p| split.execute(p, task.clone()))
        .collect::<datafusion::error::Result<Vec<_>>>()?;
    sort_each(parts, def, &task)
}

/// How many streams a partitioned table's teams are split between: twice
/// the context's partitions (the cores), so that teams of different sizes
/// still spread evenly.
pub fn team_streams(task: &TaskContext) -> usize {
    2 * task.session_config().target_partitions()
}

/// Each of `parts` (rows of a partitioned table, `team_id` first, every
/// team's rows in one part) sorted in the table's order
/// ([`crate::sort::sorted`]).
pub fn sort_each(
    parts: Vec<SendableRecordBatchStream>,
    def: &TableDef,
    task: &Arc<TaskContext>,
) -> Result<Vec<SendableRecordBatchStream>> {
    let Some(schema) = parts.first().map(|p| p.schema()) else {
        return Ok(Vec::new());
    };
    let keys = sort_keys(def)
        .map(|c| Ok(schema.index_of(c)?))
        .collect::<Result<Vec<_>>>()?;
    Ok(parts
        .into_iter()
        .map(|part| crate::sort::sorted(part, keys.clone(), task.clone()))
        .collect())
}

/// Runs `work` on every stream, each on a task of its own; returns what
/// each returned. An error ends the others.
pub async fn each_stream<T, W, F>(streams: Vec<SendableRecordBatchStream>, work: W) -> Result<Vec<T>>
where
    T: Send + 'static,
    W: Fn(SendableRecordBatchStream) -> F,
    F: Future<Output = Result<T>> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    for stream in streams {
        tasks.spawn(work(stream));
    }
    let mut out = Vec::new();
    while let Some(done) = tasks.join_next().await {
        out.push(done.map_err(|e| Error::io("writing a snapshot table", std::io::Error::other(e)))??);
    }
    Ok(out)
}

/// Writes one table of a snapshot into `version_dir/<table>/...` and returns
/// its row count. `df` yields the table's columns, preceded by `team_id` for
/// partitioned tables. Chunks (see [`chunk_column`]) with no rows in `df`
/// get no file.
pub async fn write_table(df: DataFrame, def: &'static TableDef, version: &VersionDir) -> Result<u64> {
    let streams = ordered_streams(df, def).await?;
    let written = each_stream(streams, |mut stream| {
        let version = version.clone();
        async move {
            let mut writer = TableWriter::new(def, &version);
            while let Some(batch) = stream.next().await {
                writer.push(batch?).await?;
            }
            writer.finish().await
        }
    })
    .await?;
    Ok(written.into_iter().sum())
}

/// The files of one snapshot table being written from batches that arrive
/// in the table's order ([`ordered_streams`]): each chunk's rows go to a file of its
/// own, encoded on a task of its own while the next rows arrive.
pub struct TableWriter<'a> {
    def: &'a TableDef,
    version: &'a VersionDir,
    props: WriterProperties,
    /// Position in the written batches (team first) of the chunking column.
    chunk_col: Option<usize>,
    links: Option<SessionLinks>,
    current: Option<TeamFile>,
    closing: VecDeque<JoinHandle<Result<()>>>,
    total: u64,
}

impl std::fmt::Debug for TableWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableWriter")
            .field("table", &self.def.name)
            .field("rows", &self.total)
            .finish()
    }
}

impl<'a> TableWriter<'a> {
    pub fn new(def: &'a TableDef, version: &'a VersionDir) -> Self {
        TableWriter {
            def,
            version,
            props: properties(def),
            chunk_col: chunk_column(def).map(|c| 1 + def.schema.index_of(c).expect("chunk column in schema")),
            links: SessionLinks::for_table(def),
            current: None,
            closing: VecDeque::new(),
            total: 0,
        }
    }

    fn open(&self, chunk: Chunk, part: usize) -> Result<TeamFile> {
        let name = file_name(chunk.month, part);
        let sink = BufWriter::new(
            self.version.data().store().clone(),
            self.version.path(self.def.name, chunk.team, &name),
        );
        let mut writer = AsyncArrowWriter::try_new(sink, self.def.schema.clone(), Some(self.props.clone()))?;
        let (rows_to, mut rows) = mpsc::channel::<RecordBatch>(4);
        let encoder = tokio::spawn(async move {
            while let Some(batch) = rows.recv().await {
                writer.write(&batch).await?;
            }
            writer.close().await?;
            Ok(())
        });
        Ok(TeamFile {
            chunk,
            part,
            rows: 0,
            rows_to,
            encoder,
        })
    }

    /// Appends rows that follow every row pushed before in the table's order.
    pub async fn push(&mut self, mut batch: RecordBatch) -> Result<()> {
        if let Some(links) = self.links.as_mut() {
            batch = links.fill(batch)?;
        }
        self.total += batch.num_rows() as u64;
        for (chunk, piece) in split_into_chunks(&batch, self.def.partitioned, self.chunk_col) {
            let piece = conform(piece, &self.def.schema)?;
            let next = match self.current.take() {
                Some(f) if f.chunk == chunk && f.rows < FILE_ROWS => f,
                Some(f) => {
                    let part = if f.chunk == chunk { f.part + 1 } else { 0 };
                    self.closing.push_back(f.close());
                    while self.closing.len() > ENCODERS {
                        finish(self.closing.pop_front().expect("an encoder")).await?;
                    }
                    self.open(chunk, part)?
                }
                None => self.open(chunk, 0)?,
            };
            self.current = Some(next.write(piece).await?);
        }
        Ok(())
    }

    /// Closes the last file and waits for every encoder; returns the rows
    /// written.
    pub async fn finish(mut self) -> Result<u64> {
        match self.current.take() {
            Some(f) => self.closing.push_back(f.close()),
            // An empty unpartitioned table still gets its (empty) file.
            None if !self.def.partitioned => {
                let empty = self.open(
                    Chunk {
                        team: None,
                        month: None,
                    },
                    0,
                )?;
                self.closing.push_back(empty.close());
            }
            None => {}
        }
        for encoder in self.closing {
            finish(encoder).await?;
        }
        Ok(self.total)
    }
}

/// Fills `prev_slot` and `prev_human_slot` of `turn_slots` (the session's
/// previous slot with turns, and with a human turn) in the writer's pass
/// over the rows, which arrive sorted by team and slot: one hash-map lookup
/// per row instead of the second sort by session a window function needs.
/// A row whose session has no earlier row in the stream keeps the values it
/// came with: NULL for a slot just rolled up (it is the session's first), the
/// stored links for a slot an incremental run carries over (its session is
/// unchanged and its earlier slots are in months that are not rewritten).
pub(crate) struct SessionLinks {
    /// Positions in the written batches (team first).
    team: usize,
    session: usize,
    slot: usize,
    human: usize,
    prev: usize,
    prev_human: usize,
    current_team: Option<i64>,
    /// Per session of the current team: its last slot so far, and its last
    /// slot with a human turn.
    last: HashMap<i64, (i64, Option<i64>)>,
}

impl SessionLinks {
    pub(crate) fn for_table(def: &TableDef) -> Option<SessionLinks> {
        let at = |name: &str| def.schema.index_of(name).ok().map(|i| i + 1);
        Some(SessionLinks {
            team: 0,
            session: at("session_id")?,
            slot: at("slot")?,
            human: at("human")?,
            prev: at("prev_slot")?,
            prev_human: at("prev_human_slot")?,
            current_team: None,
            last: HashMap::new(),
        })
    }

    pub(crate) fn fill(&mut self, batch: RecordBatch) -> Result<RecordBatch> {
        let team = batch.column(self.team).as_primitive::<Int64Type>();
        let session = batch.column(self.session).as_primitive::<Int64Type>();
        let slot = batch.column(self.slot).as_primitive::<TimestampMicrosecondType>();
        let human = batch.column(self.human).as_primitive::<Int64Type>();
        let given = batch.column(self.prev).as_primitive::<TimestampMicrosecondType>();
        let given_human = batch.column(self.prev_human).as_primitive::<TimestampMicrosecondType>();
        let mut prev = Vec::with_capacity(batch.num_rows());
        let mut prev_human = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let t = team.value(i);
            if self.current_team != Some(t) {
                self.current_team = Some(t);
                self.last.clear();
            }
            let at = slot.value(i);
            let through = |ph: Option<i64>| (at, if human.value(i) > 0 { Some(at) } else { ph });
            let (p, ph) = match self.last.entry(session.value(i)) {
                Entry::Occupied(mut seen) => {
                    let (last, last_human) = *seen.get();
                    seen.insert(through(last_human));
                    (Some(last), last_human)
                }
                Entry::Vacant(first) => {
                    let ph = given_human.is_valid(i).then(|| given_human.value(i));
                    first.insert(through(ph));
                    (given.is_valid(i).then(|| given.value(i)), ph)
                }
            };
            prev.push(p);
            prev_human.push(ph);
        }
        let zone: Option<Arc<str>> = Some("UTC".into());
        let mut cols = batch.columns().to_vec();
        cols[self.prev] = Arc::new(TimestampMicrosecondArray::from(prev).with_timezone_opt(zone.clone()));
        cols[self.prev_human] = Arc::new(TimestampMicrosecondArray::from(prev_human).with_timezone_opt(zone));
        Ok(RecordBatch::try_new(batch.schema(), cols)?)
    }
}

/// Gives a batch the table's declared schema (same columns and order; the
/// transform's nullability may be looser than the snapshot's).
fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let cols: Vec<Arc<dyn Array>> = batch.columns().to_vec();
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_columns_are_encoded_and_compressed_per_column() {
        let props = properties(crate::slots::turns_def());
        let path = |name: &str| ColumnPath::from(name);
        // A sorted instant: deltas, no dictionary, no zstd.
        let at = path("created_at");
        assert_eq!(props.encoding(&at), Some(Encoding::DELTA_BINARY_PACKED));
        assert!(!props.dictionary_enabled(&at));
        assert_eq!(props.compression(&at), Compression::UNCOMPRESSED);
        // A per-session id: plain values, zstd.
        let session = path("session_id");
        assert_eq!(props.encoding(&session), None);
        assert!(!props.dictionary_enabled(&session));
        assert!(matches!(props.compression(&session), Compression::ZSTD(_)));
        // A few values: a dictionary, and zstd only where it paid.
        assert!(props.dictionary_enabled(&path("platform")));
        assert!(matches!(props.compression(&path("platform")), Compression::ZSTD(_)));
        assert!(props.dictionary_enabled(&path("chatbot_id")));
        assert_eq!(props.compression(&path("chatbot_id")), Compression::UNCOMPRESSED);
    }
}
