//! The snapshot format: tables, columns, the versioned data directory.
//!
//! ```text
//! DATA/
//!   CURRENT                         name of the current version (flipped by rename)
//!   snapshots/<version>/
//!     manifest.json                 written last: a version without it is incomplete
//!     teams/part-0.parquet
//!     <table>/team_id=<id>/part-<n>.parquet   one folder per team (hive style)
//!     _other_messages/part-0.parquet          raw rows kept only for incremental ETL
//! ```
//!
//! Versions are named `YYYYMMDDTHHMMSS.ffffffZ-<suffix>` so they sort by
//! creation time. The ETL writes a new version beside the current one, fsyncs
//! it, and only then replaces `CURRENT` (write a temporary file, fsync,
//! rename, fsync the folder). A reader resolves `CURRENT` once per query
//! and so never sees half a snapshot; an ETL killed at any moment leaves the
//! previous version current and complete.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Name of the pointer file inside the data directory.
pub const CURRENT_FILE: &str = "CURRENT";
/// Name of the manifest inside a version folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The hive partition column of every team-partitioned table.
pub const TEAM_COLUMN: &str = "team_id";

/// The data type of every timestamp in a snapshot: UTC microseconds.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
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
    /// UTC days `[from, to]` the `turn_slots` rollup covers; `None` when the
    /// snapshot has none (then every query reads `turns`).
    #[serde(default)]
    pub rollup: Option<RollupCoverage>,
    /// Team ids present in the snapshot.
    pub teams: Vec<i64>,
}

/// The snapshot layout this build writes and reads. 2: `turns` and
/// `turn_slots` carry `session_length_us`.
pub const FORMAT: u32 = 2;

fn first_format() -> u32 {
    1
}

/// A data directory holding snapshot versions and the `CURRENT` pointer.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// The folder of one version.
    pub fn version_dir(&self, version: &str) -> PathBuf {
        self.snapshots().join(version)
    }

    /// A fresh, sortable version name.
    pub fn new_version_name(now: DateTime<Utc>) -> String {
        format!("{}-{:08x}", now.format("%Y%m%dT%H%M%S%.6fZ"), rand_suffix())
    }

    /// The current version, if any snapshot was ever published.
    pub fn current(&self) -> Result<Option<String>> {
        let path = self.root.join(CURRENT_FILE);
        match fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// The current version, or [`Error::NoSnapshot`].
    pub fn require_current(&self) -> Result<String> {
        self.current()?.ok_or_else(|| Error::NoSnapshot(self.root.clone()))
    }

    /// Reads a version's manifest.
    pub fn manifest(&self, version: &str) -> Result<Manifest> {
        let path = self.version_dir(version).join(MANIFEST_FILE);
        let text = fs::read_to_string(&path).map_err(|e| Error::BadSnapshot {
            version: version.to_string(),
            reason: format!("{}: {e}", path.display()),
        })?;
        Ok(serde_json::from_str(&text)?)
    }

    /// Writes the manifest (the last file of a version), then fsyncs every
    /// file and folder of the version so that publishing it can't expose
    /// data still in the page cache only.
    pub fn seal(&self, manifest: &Manifest) -> Result<()> {
        let dir = self.version_dir(&manifest.version);
        let text = serde_json::to_vec_pretty(manifest)?;
        write_durably(&dir.join(MANIFEST_FILE), &text)?;
        fsync_tree(&dir)?;
        fsync_dir(&self.snapshots())
    }

    /// Makes `version` current: temp file, fsync, rename, fsync the folder.
    /// The version must be sealed.
    pub fn publish(&self, version: &str) -> Result<()> {
        self.manifest(version)?;
        let tmp = self.root.join(format!("{CURRENT_FILE}.tmp"));
        write_durably(&tmp, format!("{version}\n").as_bytes())?;
        let dst = self.root.join(CURRENT_FILE);
        fs::rename(&tmp, &dst).map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))?;
        fsync_dir(&self.root)
    }

    /// All version folders, oldest first (complete or not).
    pub fn versions(&self) -> Result<Vec<String>> {
        let dir = self.snapshots();
        let mut out = Vec::new();
        match fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
                    if entry.path().is_dir() {
                        out.push(entry.file_name().to_string_lossy().into_owned());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
        }
        out.sort();
        Ok(out)
    }

    /// Deletes old versions, keeping the current one and the `keep` newest
    /// complete versions. Incomplete versions older than the current one are
    /// leftovers of a killed ETL and go too; newer incomplete ones may belong
    /// to an ETL still running and are left alone. Returns what was removed.
    pub fn prune(&self, keep: usize) -> Result<Vec<String>> {
        let current = self.current()?;
        let versions = self.versions()?;
        let complete: Vec<&String> = versions
            .iter()
            .filter(|v| self.version_dir(v).join(MANIFEST_FILE).exists())
            .collect();
        let kept: Vec<&String> = complete.iter().rev().take(keep).copied().collect();
        let mut removed = Vec::new();
        for v in &versions {
            let is_current = current.as_deref() == Some(v.as_str());
            let is_complete = complete.contains(&v);
            let newer_than_current = current.as_deref().is_some_and(|c| v.as_str() > c);
            let drop = !is_current
                && if is_complete {
                    !kept.contains(&v)
                } else {
                    !newer_than_current
                };
            if drop {
                let dir = self.version_dir(v);
                fs::remove_dir_all(&dir).map_err(|e| Error::io(format!("removing {}", dir.display()), e))?;
                removed.push(v.clone());
            }
        }
        Ok(removed)
    }
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id()) as u32
}

fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let ctx = || format!("writing {}", path.display());
    let mut f = fs::File::create(path).map_err(|e| Error::io(ctx(), e))?;
    f.write_all(bytes).map_err(|e| Error::io(ctx(), e))?;
    f.sync_all().map_err(|e| Error::io(ctx(), e))
}

fn fsync_dir(path: &Path) -> Result<()> {
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", path.display()), e))
}

fn fsync_tree(path: &Path) -> Result<()> {
    let entries = fs::read_dir(path).map_err(|e| Error::io(format!("listing {}", path.display()), e))?;
    for entry in entries {
        let p = entry
            .map_err(|e| Error::io(format!("listing {}", path.display()), e))?
            .path();
        if p.is_dir() {
            fsync_tree(&p)?;
        } else {
            fs::File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(format!("syncing {}", p.display()), e))?;
        }
    }
    fsync_dir(path)
}

/// Registers one snapshot table stored under `root` (its folder) in `ctx`
/// as `alias`. A partitioned table gets its `team_id` column from the
/// `team_id=<id>` folder names.
pub fn register_table(ctx: &SessionContext, alias: &str, root: &Path, def: &TableDef) -> Result<()> {
    let url = ListingTableUrl::parse(format!("{}/", root.display()))?;
    let mut opts = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    if def.partitioned {
        opts = opts.with_table_partition_cols(vec![(TEAM_COLUMN.to_string(), DataType::Int64)]);
    }
    let config = ListingTableConfig::new(url)
        .with_listing_options(opts)
        .with_schema(def.schema.clone());
    ctx.register_table(alias, Arc::new(ListingTable::try_new(config)?))?;
    Ok(())
}

/// Registers every table of one version, all teams, in `ctx` under its own
/// name prefixed by `prefix`. For the ETL's own reads and for
/// whole-snapshot comparisons; team-scoped readers see one team's folders.
pub fn register_all(ctx: &SessionContext, dir: &DataDir, version: &str, prefix: &str) -> Result<()> {
    for def in TABLES.iter() {
        let root = dir.version_dir(version).join(def.name);
        register_table(ctx, &format!("{prefix}{}", def.name), &root, def)?;
    }
    Ok(())
}
