//! The synthetic Open Chat Studio data set: a realistic, deterministic
//! (seeded) year of chatbot activity, produced as Arrow batches in exactly
//! the source schemas of [`crate::source`] and streamed in bounded chunks
//! into a [`BatchSink`]: the stage ([`crate::stage::Stage`]) or an OCS
//! Postgres database ([`PgSink`], [`generate_into_postgres`]).
//!
//! What it looks like (see the tests for the guarantees):
//! - teams of very different size (the first holds about half of the data,
//!   the rest follow a power law), 3..25 chatbots each with 0..5 published
//!   versions, ~10% archived, power-law popularity;
//! - team-wide web / api / evaluations channels (exactly one live each,
//!   sometimes an older soft-deleted one) and per-chatbot channels;
//! - participants with power-law activity and per-platform identifiers;
//! - sessions with daily and weekly rhythm, mild growth, the OCS status mix,
//!   lognormal lengths and message counts (mean about 10), 2% evaluations;
//! - tags of every category on messages and chats;
//! - rare anomalies at every scale: orphan chats, an unknown platform
//!   ('matrix'), sessions ending before they start, messages before their
//!   session, tags on deleted objects, a tag used by another team.
//!
//! Ids increase in generation order, message ids follow time.

mod buf;
mod day;
mod model;
mod pg;
mod sim;
mod words;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use datafusion::arrow::array::RecordBatch;

pub use day::simulate_day;
pub use pg::{PgSink, generate_into_postgres};
pub use words::Uuids;

use crate::error::Result;
use crate::source::SourceTable;
use crate::stage::Stage;

/// Where generated batches go.
pub trait BatchSink {
    /// `table` is one of [`crate::source::SOURCES`]; `batch` has exactly `table.schema`.
    fn write(
        &mut self,
        table: &'static SourceTable,
        batch: RecordBatch,
    ) -> impl std::future::Future<Output = Result<()>> + Send;

    /// Like [`BatchSink::write`], plus the creation instant of every row
    /// (microseconds since the Unix epoch, UTC) for the tables whose source
    /// schema has no `created_at` (`teams_team`, `channels_experimentchannel`,
    /// `chat_chat`, `annotations_tag`, `annotations_customtaggeditem`; empty
    /// for the others), for sinks that rebuild full OCS rows. The generator
    /// calls this one; by default the instants are dropped.
    fn write_with_created(
        &mut self,
        table: &'static SourceTable,
        batch: RecordBatch,
        created_at: Vec<i64>,
    ) -> impl std::future::Future<Output = Result<()>> + Send {
        drop(created_at);
        self.write(table, batch)
    }
}

impl BatchSink for Stage {
    fn write(
        &mut self,
        table: &'static SourceTable,
        batch: RecordBatch,
    ) -> impl std::future::Future<Output = Result<()>> + Send {
        std::future::ready(Stage::write(self, table, &batch))
    }
}

/// Size of the data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// About 3k messages over 60 days, 3 teams.
    Tiny,
    /// About 300k messages over a year, 5 teams.
    S,
    /// About 10M messages, 1M sessions, 200k participants over a year, 12 teams.
    M,
    /// About 40M messages over a year, 20 teams.
    L,
}

impl Scale {
    /// Target number of messages.
    pub fn messages(self) -> u64 {
        match self {
            Scale::Tiny => 3_000,
            Scale::S => 300_000,
            Scale::M => 10_000_000,
            Scale::L => 40_000_000,
        }
    }

    /// Days of activity ending at [`GenOptions::end`].
    pub fn days(self) -> i64 {
        match self {
            Scale::Tiny => 60,
            _ => 365,
        }
    }

    /// Number of teams.
    pub fn teams(self) -> usize {
        match self {
            Scale::Tiny => 3,
            Scale::S => 5,
            Scale::M => 12,
            Scale::L => 20,
        }
    }
}

impl FromStr for Scale {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tiny" => Ok(Scale::Tiny),
            "s" => Ok(Scale::S),
            "m" => Ok(Scale::M),
            "l" => Ok(Scale::L),
            _ => Err(format!("unknown scale {s:?}: expected tiny, s, m or l")),
        }
    }
}

impl fmt::Display for Scale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scale::Tiny => "tiny",
            Scale::S => "s",
            Scale::M => "m",
            Scale::L => "l",
        })
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenOptions {
    pub scale: Scale,
    pub seed: u64,
    /// The data ends at this instant (the CLI passes now): every timestamp is before it.
    pub end: DateTime<Utc>,
    /// false = legacy schema: `experiments_experimentsession.platform` is all NULL.
    pub session_platform: bool,
}

/// What was generated.
#[derive(Debug, Clone)]
pub struct GenSummary {
    /// Rows per source table.
    pub rows: BTreeMap<String, u64>,
    pub elapsed: Duration,
}

/// Generates the data set into `sink`, table chunks of at most about 100k
/// rows at a time. The same options give byte-identical batches.
pub async fn generate<S: BatchSink>(opts: &GenOptions, sink: &mut S) -> Result<GenSummary> {
    let started = Instant::now();
    let mut g = model::Gen::new(opts);
    g.setup(opts.scale.teams());
    let rows = g.run(sink).await?;
    Ok(GenSummary {
        rows,
        elapsed: started.elapsed(),
    })
}
