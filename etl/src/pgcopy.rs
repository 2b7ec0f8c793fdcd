//! Decoder for Postgres' binary COPY format into Arrow batches.
//!
//! `COPY (SELECT ...) TO STDOUT (FORMAT binary)` is the fastest way to get
//! rows out of Postgres; the ETL asks for every column already cast to one of
//! the four [`Kind`]s, so decoding is a handful of fixed-width reads.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::SchemaRef;

use crate::error::{Error, Result};
use crate::source::Kind;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// Microseconds between 1970-01-01 and Postgres' epoch 2000-01-01.
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

enum Builder {
    Int(Int64Builder),
    Text(StringBuilder),
    Bool(BooleanBuilder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl Builder {
    fn new(kind: Kind) -> Self {
        match kind {
            Kind::Int => Builder::Int(Int64Builder::new()),
            Kind::Text => Builder::Text(StringBuilder::new()),
            Kind::Bool => Builder::Bool(BooleanBuilder::new()),
            Kind::Timestamp => Builder::Timestamp(TimestampMicrosecondBuilder::new()),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish().with_timezone("UTC")),
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::Int(b) => b.append_null(),
            Builder::Text(b) => b.append_null(),
            Builder::Bool(b) => b.append_null(),
            Builder::Timestamp(b) => b.append_null(),
        }
    }

    /// Appends one non-NULL value; returns false for an infinite timestamp
    /// (stored as NULL, reported by the caller).
    fn append(&mut self, v: &[u8]) -> Result<bool> {
        let fixed = |n: usize| -> Result<[u8; 8]> {
            if v.len() != n {
                return Err(Error::Copy(format!("expected {n} bytes, got {}", v.len())));
            }
            let mut a = [0u8; 8];
            a[8 - n..].copy_from_slice(v);
            Ok(a)
        };
        match self {
            Builder::Int(b) => b.append_value(i64::from_be_bytes(fixed(8)?)),
            Builder::Text(b) => match std::str::from_utf8(v) {
                Ok(s) => b.append_value(s),
                Err(_) => b.append_value(String::from_utf8_lossy(v)),
            },
            Builder::Bool(b) => b.append_value(fixed(1)?[7] != 0),
            Builder::Timestamp(b) => {
                let raw = i64::from_be_bytes(fixed(8)?);
                if raw == i64::MAX || raw == i64::MIN {
                    b.append_null();
                    return Ok(false);
                }
                b.append_value(raw + PG_EPOCH_OFFSET_US);
            }
        }
        Ok(true)
    }
}

/// Turns the bytes of one binary COPY stream into record batches.
pub struct CopyDecoder {
    schema: SchemaRef,
    builders: Vec<Builder>,
    buf: Vec<u8>,
    header_done: bool,
    finished: bool,
    rows_in_batch: usize,
    batch_rows: usize,
    rows: u64,
    infinite_timestamps: u64,
}

impl std::fmt::Debug for CopyDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyDecoder").field("rows", &self.rows).finish()
    }
}

impl CopyDecoder {
    pub fn new(schema: SchemaRef, kinds: &[Kind], batch_rows: usize) -> Self {
        CopyDecoder {
            schema,
            builders: kinds.iter().map(|k| Builder::new(*k)).collect(),
            buf: Vec::with_capacity(1 << 20),
            header_done: false,
            finished: false,
            rows_in_batch: 0,
            batch_rows,
            rows: 0,
            infinite_timestamps: 0,
        }
    }

    /// Rows decoded so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// `infinity` timestamps seen (kept as NULL).
    pub fn infinite_timestamps(&self) -> u64 {
        self.infinite_timestamps
    }

    /// Feeds a chunk of the stream; full batches come out.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<RecordBatch>) -> Result<()> {
        self.buf.extend_from_slice(chunk);
        let mut pos = 0;
        if !self.header_done {
            if self.buf.len() < SIGNATURE.len() + 8 {
                return Ok(());
            }
            if &self.buf[..SIGNATURE.len()] != SIGNATURE {
                return Err(Error::Copy("missing PGCOPY signature".into()));
            }
            let ext_at = SIGNATURE.len() + 4;
            let ext = be_i32(&self.buf[ext_at..ext_at + 4]) as usize;
            if self.buf.len() < ext_at + 4 + ext {
                return Ok(());
            }
            pos = ext_at + 4 + ext;
            self.header_done = true;
        }
        while !self.finished {
            match self.tuple_end(pos)? {
                None => break,
                Some(end) => {
                    self.decode_tuple(pos)?;
                    pos = end;
                    if self.rows_in_batch >= self.batch_rows {
                        out.push(self.flush()?);
                    }
                }
            }
        }
        self.buf.drain(..pos);
        Ok(())
    }

    /// Ends the stream: the last partial batch, if any.
    pub fn finish(mut self) -> Result<Option<RecordBatch>> {
        if !self.finished {
            return Err(Error::Copy("stream ended before the COPY trailer".into()));
        }
        if self.rows_in_batch == 0 {
            return Ok(None);
        }
        self.flush().map(Some)
    }

    fn flush(&mut self) -> Result<RecordBatch> {
        let cols = self.builders.iter_mut().map(Builder::finish).collect();
        self.rows_in_batch = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
    }

    /// Where the tuple starting at `pos` ends, or None if not all of it has
    /// arrived yet. Marks the stream finished at the trailer.
    fn tuple_end(&mut self, pos: usize) -> Result<Option<usize>> {
        let buf = &self.buf;
        if buf.len() < pos + 2 {
            return Ok(None);
        }
        let n = i16::from_be_bytes([buf[pos], buf[pos + 1]]);
        if n == -1 {
            self.finished = true;
            return Ok(None);
        }
        if n as usize != self.builders.len() {
            return Err(Error::Copy(format!("expected {} fields, got {n}", self.builders.len())));
        }
        let mut at = pos + 2;
        for _ in 0..n {
            if buf.len() < at + 4 {
                return Ok(None);
            }
            let len = be_i32(&buf[at..at + 4]);
            at += 4;
            if len > 0 {
                at += len as usize;
            }
        }
        Ok((buf.len() >= at).then_some(at))
    }

    fn decode_tuple(&mut self, pos: usize) -> Result<()> {
        let mut at = pos + 2;
        for b in self.builders.iter_mut() {
            let len = be_i32(&self.buf[at..at + 4]);
            at += 4;
            if len < 0 {
                b.append_null();
            } else {
                let v = &self.buf[at..at + len as usize];
                at += len as usize;
                if !b.append(v)? {
                    self.infinite_timestamps += 1;
                }
            }
        }
        self.rows += 1;
        self.rows_in_batch += 1;
        Ok(())
    }
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
