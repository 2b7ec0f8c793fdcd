//! The snapshot format: tables, columns, manifests; and their registration
//! in DataFusion. Where versions live and how one becomes current is
//! [`crate::storage`] (a local folder or an object store, one code path).
//!
//! ```text
//! DATA/                                   a folder, or s3://bucket/prefix
//!   manifests/<seq>.json                  the publication log: seq n names version n's manifest
//!   snapshots/<version>/
//!     teams/part-0.parquet
//!     <table>/team_id=<id>/                   one folder per team (hive style):
//!       part-YYYYMM-<n>.parquet               sessions, turns, turn_slots, message_tags:
//!                                             one file per UTC month of the first sort column
//!       part-<n>.parquet                      chatbots, participants, tags, session_tags
//!     _other_messages/part-0.parquet          raw rows kept only for incremental ETL:
//!     _tagged_items/part-0.parquet            the other messages, and every tagged item
//! ```
//!
//! `<n>` counts from 0; a further file of the same team (and month) starts
//! after 8 Mi rows. Each file is sorted by its table's `sort_by`; readers
//! take every `*.parquet` file of a folder.
//!
//! Versions are named `YYYYMMDDTHHMMSS.ffffffZ-<suffix>` so they sort by
//! creation time. A writer puts every file of a new version first and
//! publishes it last, by creating the next manifest of the log with a
//! create-if-absent put; readers resolve the newest manifest. A version
//! without a manifest in the log is not a snapshot yet (or any more), so an
//! ETL killed at any moment leaves the previous version current and whole.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig};
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use crate::error::Result;
pub use crate::storage::{DataDir, Published, VersionDir, register_object_store};

/// The hive partition column of every team-partitioned table.
pub const TEAM_COLUMN: &str = "team_id";

/// The data type of every timestamp in a snapshot: UTC microseconds.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// A UTC timestamp of the snapshot's type, from microseconds since the epoch.
pub fn utc_micros(micros: i64) -> ScalarValue {
    ScalarValue::TimestampMicrosecond(Some(micros), Some("UTC".into()))
}

/// One table of a snapshot.
#[derive(Debug)]
pub struct TableDef {
    /// Folder name and SQL table name.
    pub name: &'static str,
    /// Whether the table is split into `team_id=<id>` folders.
    pub partitioned: bool,
    /// The order rows are written in (inside each team's files).
    pub sort_by: &'static [&'static str],
    /// Columns stored in the files (the partition column is not among them).
    pub schema: SchemaRef,
    /// Internal tables are never exposed to team queries.
    pub internal: bool,
}

fn schema(cols: &[(&str, DataType, bool)]) -> SchemaRef {
    Arc::new(Schema::new(
        cols.iter()
            .map(|(n, t, null)| Field::new(*n, t.clone(), *null))
            .collect::<Vec<_>>(),
    ))
}

/// Every table of a snapshot, in the order the ETL writes them.
pub static TABLES: LazyLock<Vec<TableDef>> = LazyLock::new(|| {
    use DataType::{Boolean as B, Int64 as I, Utf8 as S};
    let ts = timestamp_type;
    vec![
        TableDef {
            name: "teams",
            partitioned: false,
            sort_by: &["team_id"],
            schema: schema(&[("team_id", I, false), ("name", S, false), ("slug", S, false)]),
            internal: false,
        },
        TableDef {
            name: "chatbots",
            partitioned: true,
            sort_by: &["chatbot_id"],
            schema: schema(&[
                ("chatbot_id", I, false),
                ("name", S, false),
                ("is_archived", B, false),
                ("created_at", ts(), false),
            ]),
            internal: false,
        },
        TableDef {
            name: "participants",
            partitioned: true,
            sort_by: &["participant_id"],
            schema: schema(&[
                ("participant_id", I, false),
                ("name", S, false),
                ("identifier", S, false),
                ("platform", S, false),
                ("created_at", ts(), false),
            ]),
            internal: false,
        },
        TableDef {
            name: "sessions",
            partitioned: true,
            sort_by: &["created_at", "session_id"],
            schema: schema(&[
                ("session_id", I, false),
                ("external_id", S, false),
                ("chat_id", I, false),
                ("chatbot_id", I, false),
                ("participant_id", I, true),
                ("channel_id", I, true),
                ("platform", S, true),
                ("status", S, false),
                ("counted", B, false),
                ("created_at", ts(), false),
                ("ended_at", ts(), true),
            ]),
            internal: false,
        },
        TableDef {
            name: "turns",
            partitioned: true,
            sort_by: &["created_at", "message_id"],
            schema: schema(&[
                ("message_id", I, false),
                ("chat_id", I, false),
                ("session_id", I, false),
                ("chatbot_id", I, false),
                ("participant_id", I, true),
                ("platform", S, true),
                ("message_type", S, false),
                ("created_at", ts(), false),
                ("session_length_us", I, true),
            ]),
            internal: false,
        },
        TableDef {
            name: "turn_slots",
            partitioned: true,
            sort_by: &["slot", "session_id"],
            schema: schema(&[
                ("session_id", I, false),
                ("chatbot_id", I, false),
                ("participant_id", I, true),
                ("platform", S, true),
                ("slot", ts(), false),
                ("human", I, false),
                ("ai", I, false),
                ("last_human_at", ts(), true),
                ("session_length_us", I, true),
                ("prev_slot", ts(), true),
                ("prev_human_slot", ts(), true),
            ]),
            internal: false,
        },
        TableDef {
            name: "tags",
            partitioned: true,
            sort_by: &["tag_id"],
            schema: schema(&[
                ("tag_id", I, false),
                ("name", S, false),
                ("category", S, false),
                ("is_system_tag", B, false),
            ]),
            internal: false,
        },
        TableDef {
            name: "message_tags",
            partitioned: true,
            sort_by: &["created_at", "message_id", "tag_id"],
            schema: schema(&[
                ("tag_id", I, false),
                ("message_id", I, false),
                ("session_id", I, false),
                ("chatbot_id", I, false),
                ("participant_id", I, true),
                ("platform", S, true),
                ("message_type", S, false),
                ("created_at", ts(), false),
            ]),
            internal: false,
        },
        TableDef {
            name: "session_tags",
            partitioned: true,
            sort_by: &["session_id", "tag_id"],
            schema: schema(&[
                ("tag_id", I, false),
                ("session_id", I, false),
                ("chatbot_id", I, false),
                ("participant_id", I, true),
                ("platform", S, true),
            ]),
            internal: false,
        },
        TableDef {
            name: "_other_messages",
            partitioned: false,
            sort_by: &["message_id"],
            schema: schema(&[
                ("message_id", I, false),
                ("chat_id", I, false),
                ("message_type", S, false),
                ("created_at", ts(), false),
            ]),
            internal: true,
        },
        TableDef {
            name: "_tagged_items",
            partitioned: false,
            sort_by: &["id"],
            schema: schema(&[
                ("id", I, false),
                ("team_id", I, true),
                ("tag_id", I, true),
                ("content_type_id", I, true),
                ("object_id", I, true),
            ]),
            internal: true,
        },
    ]
});

/// Looks a table up by name.
pub fn table(name: &str) -> Option<&'static TableDef> {
    TABLES.iter().find(|t| t.name == name)
}

/// What the ETL remembers about `chat_chatmessage` for the next incremental
/// run: every message with `id <= max_id` is in the snapshot, and `count` and
/// `id_sum` let the next run notice deletions or late inserts below it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageWatermark {
    pub max_id: i64,
    pub count: u64,
    /// Sum of all message ids, as a decimal string (it can exceed 64 bits).
    pub id_sum: String,
}

/// A point in a Postgres cluster's transaction history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcePosition {
    /// The cluster's `system_identifier` (`pg_control_system()`): transaction
    /// ids mean nothing in another cluster, such as one a dump was
    /// restored into.
    pub cluster: i64,
    /// The oldest transaction still running when the source was read
    /// (`txid_snapshot_xmin`, epoch included): every row version written by
    /// an older transaction was seen.
    pub xmin: u64,
}

/// The UTC days a rollup covers, both ends included; `None` = unbounded
/// (built from every turn).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupCoverage {
    pub from: Option<chrono::NaiveDate>,
    pub to: Option<chrono::NaiveDate>,
}

impl RollupCoverage {
    /// Whether every instant of `[start, end)` lies in a covered day.
    pub fn covers(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        let from_ok = self.from.is_none_or(|d| start.date_naive() >= d);
        let to_ok = self.to.is_none_or(|d| {
            let last = end - chrono::Duration::microseconds(1);
            last.date_naive() <= d
        });
        from_ok && to_ok
    }
}

/// Width of a rollup slot. Every time zone's offset is a multiple of 15
/// minutes, so local hours, days, weeks and months all start on a slot
/// boundary and a slot never straddles two buckets or a window's edge.
pub const SLOT_MICROS: i64 = 15 * 60 * 1_000_000;

/// The description of one snapshot version, written last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The layout's version ([`FORMAT`]); manifests written before it was
    /// recorded read as 1.
    #[serde(default = "first_format")]
    pub format: u32,
    pub version: String,
    /// When the data was read from the source (the export transaction's start).
    pub as_of: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// `postgres` or `generator`.
    pub source: String,
    /// `full` or `incremental`.
    pub mode: String,
    /// Whether the source had `experiments_experimentsession.platform`.
    pub session_platform_column: bool,
    /// Rows per snapshot table.
    pub tables: BTreeMap<String, u64>,
    /// Rows read per source table.
    pub source_rows: BTreeMap<String, u64>,
    /// Anomalies found (and handled) per kind.
    pub anomalies: BTreeMap<String, u64>,
    pub watermark: MessageWatermark,
    /// Where in its Postgres cluster's history the source was read; the
    /// next incremental run reads only the sessions written since. `None`
    /// for other sources, for a cluster whose identity could not be read,
    /// and for snapshots written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_position: Option<SourcePosition>,
    /// UTC days `[from, to]` the `turn_slots` rollup covers; `None` when the
    /// snapshot has none (then every query reads `turns`).
    #[serde(default)]
    pub rollup: Option<RollupCoverage>,
    /// Team ids present in the snapshot.
    pub teams: Vec<i64>,
}

/// The snapshot layout this build writes and reads. 2: `turns` and
/// `turn_slots` carry `session_length_us`. 3: `turn_slots` carries
/// `prev_slot` and `prev_human_slot`.
pub const FORMAT: u32 = 3;

fn first_format() -> u32 {
    1
}

/// Registers one table of a version (all teams) in `ctx` as `alias`, with
/// the data directory's object store. A partitioned table gets its
/// `team_id` column from the `team_id=<id>` folder names.
pub fn register_table(ctx: &SessionContext, alias: &str, version: &VersionDir, def: &TableDef) -> Result<()> {
    register_object_store(ctx, version.data());
    let mut opts = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    if def.partitioned {
        opts = opts.with_table_partition_cols(vec![(TEAM_COLUMN.to_string(), DataType::Int64)]);
    }
    let config = ListingTableConfig::new(version.table_url(def.name)?)
        .with_listing_options(opts)
        .with_schema(def.schema.clone());
    ctx.register_table(alias, Arc::new(ListingTable::try_new(config)?))?;
    Ok(())
}

/// Registers every table of one version, all teams, in `ctx` under its own
/// name prefixed by `prefix`. For the ETL's own reads and for
/// whole-snapshot comparisons; team-scoped readers see one team's folders.
pub fn register_all(ctx: &SessionContext, dir: &DataDir, version: &str, prefix: &str) -> Result<()> {
    let version = dir.version_dir(version);
    for def in TABLES.iter() {
        register_table(ctx, &format!("{prefix}{}", def.name), &version, def)?;
    }
    Ok(())
}
