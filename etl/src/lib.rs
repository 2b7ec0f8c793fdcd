//! ocs-dash ETL: from Open Chat Studio's Postgres (or the synthetic
//! generator) to a versioned, team-partitioned Parquet snapshot.
//!
//! ```text
//! Postgres ──COPY binary──▶ pgcopy ─┐
//!                                   ├─▶ stage (local Parquet) ─▶ transform (DataFusion SQL) ─▶ write ─▶ publish
//! generate ─────────────────────────┘
//! ```

pub mod dangling;
pub mod error;
pub mod fixture;
pub mod generate;
pub mod incremental;
pub mod messages;
pub mod patch;
pub mod pgcopy;
pub mod postgres;
pub mod progress;
pub mod rollup;
pub mod run;
pub mod scan;
pub mod slots;
pub mod sort;
pub mod source;
pub mod stage;
pub mod transform;
pub mod turn_tags;
pub mod write;

pub use error::{Error, Result};
