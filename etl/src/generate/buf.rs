//! Row buffers: rows accumulate per table in Arrow builders and leave as
//! `RecordBatch`es of at most about [`CHUNK_ROWS`] rows.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};

use super::BatchSink;
use crate::error::Result;
use crate::source::{Kind, SOURCES, SourceTable};

/// Rows per batch (and so per `COPY` into Postgres).
pub(super) const CHUNK_ROWS: usize = 100_000;

// Positions in `SOURCES` (checked in `Out::new`).
pub(super) const TEAMS: usize = 0;
pub(super) const CONTENT_TYPES: usize = 1;
pub(super) const EXPERIMENTS: usize = 2;
pub(super) const PARTICIPANTS: usize = 3;
pub(super) const CHANNELS: usize = 4;
pub(super) const SESSIONS: usize = 5;
pub(super) const CHATS: usize = 6;
pub(super) const MESSAGES: usize = 7;
pub(super) const TAGS: usize = 8;
pub(super) const TAGGED: usize = 9;
const NAMES: [&str; 10] = [
    "teams_team",
    "django_content_type",
    "experiments_experiment",
    "experiments_participant",
    "channels_experimentchannel",
    "experiments_experimentsession",
    "chat_chat",
    "chat_chatmessage",
    "annotations_tag",
    "annotations_customtaggeditem",
];

/// One value of a row, in column order.
#[derive(Debug, Clone, Copy)]
pub(super) enum V<'a> {
    I(i64),
    S(&'a str),
    B(bool),
    /// Microseconds since the Unix epoch, UTC.
    T(i64),
    N,
}

enum Col {
    Int(Int64Builder),
    Text(StringBuilder),
    Bool(BooleanBuilder),
    Ts(TimestampMicrosecondBuilder),
}

impl std::fmt::Debug for Col {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Col::Int(_) => "Int",
            Col::Text(_) => "Text",
            Col::Bool(_) => "Bool",
            Col::Ts(_) => "Ts",
        })
    }
}

/// The rows of one table not yet handed to the sink.
#[derive(Debug)]
pub(super) struct TableBuf {
    table: &'static SourceTable,
    cols: Vec<Col>,
    /// Creation instants for tables whose source schema has no created_at.
    created: Vec<i64>,
    rows: usize,
}

impl TableBuf {
    fn new(table: &'static SourceTable) -> Self {
        let cols = table
            .columns
            .iter()
            .map(|(_, k)| match k {
                Kind::Int => Col::Int(Int64Builder::new()),
                Kind::Text => Col::Text(StringBuilder::new()),
                Kind::Bool => Col::Bool(BooleanBuilder::new()),
                Kind::Timestamp => Col::Ts(TimestampMicrosecondBuilder::new()),
            })
            .collect();
        TableBuf {
            table,
            cols,
            created: Vec::new(),
            rows: 0,
        }
    }

    /// Appends a row (values in the table's column order). A value whose
    /// kind does not match its column is a bug in the generator.
    pub(super) fn push(&mut self, row: &[V<'_>]) {
        assert_eq!(row.len(), self.cols.len(), "row width for {}", self.table.name);
        for (col, v) in self.cols.iter_mut().zip(row) {
            match (col, *v) {
                (Col::Int(b), V::I(x)) => b.append_value(x),
                (Col::Int(b), V::N) => b.append_null(),
                (Col::Text(b), V::S(x)) => b.append_value(x),
                (Col::Text(b), V::N) => b.append_null(),
                (Col::Bool(b), V::B(x)) => b.append_value(x),
                (Col::Bool(b), V::N) => b.append_null(),
                (Col::Ts(b), V::T(x)) => b.append_value(x),
                (Col::Ts(b), V::N) => b.append_null(),
                (c, v) => panic!("generator bug: {v:?} in a {c:?} column of {}", self.table.name),
            }
        }
        self.rows += 1;
    }

    /// Appends a row of a table without created_at, with its creation instant.
    pub(super) fn push_created(&mut self, row: &[V<'_>], created: i64) {
        self.push(row);
        self.created.push(created);
    }

    fn take(&mut self) -> Result<(RecordBatch, Vec<i64>)> {
        let arrays: Vec<ArrayRef> = self
            .cols
            .iter_mut()
            .map(|c| -> ArrayRef {
                match c {
                    Col::Int(b) => Arc::new(b.finish()),
                    Col::Text(b) => Arc::new(b.finish()),
                    Col::Bool(b) => Arc::new(b.finish()),
                    Col::Ts(b) => Arc::new(b.finish().with_timezone("UTC")),
                }
            })
            .collect();
        self.rows = 0;
        let batch = RecordBatch::try_new(self.table.schema.clone(), arrays)?;
        Ok((batch, std::mem::take(&mut self.created)))
    }
}

/// The buffers of all tables, and the rows handed to the sink so far.
#[derive(Debug)]
pub(super) struct Out {
    bufs: Vec<TableBuf>,
    rows: BTreeMap<String, u64>,
}

impl Out {
    pub(super) fn new() -> Self {
        assert_eq!(SOURCES.len(), NAMES.len(), "source tables changed");
        let bufs = SOURCES
            .iter()
            .zip(NAMES)
            .map(|(t, n)| {
                assert_eq!(t.name, n, "source table order changed");
                TableBuf::new(t)
            })
            .collect();
        Out {
            bufs,
            rows: SOURCES.iter().map(|t| (t.name.to_string(), 0)).collect(),
        }
    }

    pub(super) fn buf(&mut self, table: usize) -> &mut TableBuf {
        &mut self.bufs[table]
    }

    async fn flush<S: BatchSink>(&mut self, i: usize, sink: &mut S) -> Result<()> {
        let buf = &mut self.bufs[i];
        if buf.rows == 0 {
            return Ok(());
        }
        let table = buf.table;
        let (batch, created) = buf.take()?;
        *self.rows.entry(table.name.to_string()).or_default() += batch.num_rows() as u64;
        sink.write_with_created(table, batch, created).await
    }

    /// Hands over every table holding a full chunk.
    pub(super) async fn flush_full<S: BatchSink>(&mut self, sink: &mut S) -> Result<()> {
        for i in 0..self.bufs.len() {
            if self.bufs[i].rows >= CHUNK_ROWS {
                self.flush(i, sink).await?;
            }
        }
        Ok(())
    }

    /// Hands over everything left; returns the rows per table.
    pub(super) async fn flush_all<S: BatchSink>(&mut self, sink: &mut S) -> Result<BTreeMap<String, u64>> {
        for i in 0..self.bufs.len() {
            self.flush(i, sink).await?;
        }
        Ok(self.rows.clone())
    }
}

/// The next id of every table.
#[derive(Debug, Clone, Default)]
pub(super) struct Ids {
    pub(super) next: [i64; 10],
}

impl Ids {
    /// Ids continuing after the given largest ids (0 for an empty table).
    pub(super) fn after(max: [i64; 10]) -> Self {
        Ids {
            next: max.map(|m| m + 1),
        }
    }

    pub(super) fn take(&mut self, table: usize) -> i64 {
        let id = self.next[table];
        self.next[table] += 1;
        id
    }
}
