//! The OCS source tables as the ETL reads them.
//!
//! Each table is read (from Postgres or the generator) into Arrow batches
//! with exactly the columns below, staged as local Parquet under the same
//! table name, and then turned into a snapshot by [`crate::transform`].
//! Every staged column is nullable: a NULL the OCS schema forbids is an
//! anomaly the transform handles and counts, never a crash.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use ocs_dash_engine::snapshot::timestamp_type;

/// The four value kinds the ETL moves (ids are read as `int8` even where
/// OCS stores `integer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Text,
    Bool,
    Timestamp,
}

impl Kind {
    pub fn data_type(self) -> DataType {
        match self {
            Kind::Int => DataType::Int64,
            Kind::Text => DataType::Utf8,
            Kind::Bool => DataType::Boolean,
            Kind::Timestamp => timestamp_type(),
        }
    }

    /// The Postgres cast that makes a column arrive in this kind's binary form.
    pub fn pg_cast(self) -> &'static str {
        match self {
            Kind::Int => "int8",
            Kind::Text => "text",
            Kind::Bool => "bool",
            Kind::Timestamp => "timestamptz",
        }
    }
}

/// One source table and the columns the dashboard needs from it.
#[derive(Debug)]
pub struct SourceTable {
    pub name: &'static str,
    pub columns: &'static [(&'static str, Kind)],
    pub schema: SchemaRef,
}

impl SourceTable {
    /// Position of a column.
    pub fn col(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{} has no column {name}", self.name))
    }
}

use Kind::{Bool as B, Int as I, Text as S, Timestamp as T};

const SPECS: &[(&str, &[(&str, Kind)])] = &[
    ("teams_team", &[("id", I), ("name", S), ("slug", S)]),
    ("django_content_type", &[("id", I), ("app_label", S), ("model", S)]),
    (
        "experiments_experiment",
        &[
            ("id", I),
            ("team_id", I),
            ("name", S),
            ("working_version_id", I),
            ("is_archived", B),
            ("created_at", T),
        ],
    ),
    (
        "experiments_participant",
        &[
            ("id", I),
            ("team_id", I),
            ("name", S),
            ("identifier", S),
            ("platform", S),
            ("created_at", T),
        ],
    ),
    (
        "channels_experimentchannel",
        &[
            ("id", I),
            ("team_id", I),
            ("name", S),
            ("experiment_id", I),
            ("platform", S),
            ("deleted", B),
        ],
    ),
    (
        "experiments_experimentsession",
        &[
            ("id", I),
            ("team_id", I),
            ("external_id", S),
            ("participant_id", I),
            ("experiment_id", I),
            ("chat_id", I),
            ("experiment_channel_id", I),
            ("status", S),
            ("created_at", T),
            ("ended_at", T),
            ("platform", S),
        ],
    ),
    ("chat_chat", &[("id", I), ("team_id", I)]),
    (
        "chat_chatmessage",
        &[("id", I), ("chat_id", I), ("message_type", S), ("created_at", T)],
    ),
    (
        "annotations_tag",
        &[
            ("id", I),
            ("team_id", I),
            ("name", S),
            ("category", S),
            ("is_system_tag", B),
        ],
    ),
    (
        "annotations_customtaggeditem",
        &[
            ("id", I),
            ("team_id", I),
            ("tag_id", I),
            ("content_type_id", I),
            ("object_id", I),
        ],
    ),
];

/// All source tables, in reading order.
pub static SOURCES: LazyLock<Vec<SourceTable>> = LazyLock::new(|| {
    SPECS
        .iter()
        .map(|(name, columns)| SourceTable {
            name,
            columns,
            schema: Arc::new(Schema::new(
                columns
                    .iter()
                    .map(|(n, k)| Field::new(*n, k.data_type(), true))
                    .collect::<Vec<_>>(),
            )),
        })
        .collect()
});

/// Looks a source table up by name.
pub fn source(name: &str) -> &'static SourceTable {
    SOURCES
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("unknown source table {name}"))
}

/// The table holding messages (the one read incrementally).
pub const MESSAGES: &str = "chat_chatmessage";
/// The table holding tagged items (read incrementally, by id).
pub const ITEMS: &str = "annotations_customtaggeditem";
/// The table holding sessions (whose `platform` column is recent).
pub const SESSIONS: &str = "experiments_experimentsession";
