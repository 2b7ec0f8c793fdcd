//! `ocs-dash snapshot`: the daily rollup (`turn_slots`) of the current
//! snapshot, rebuilt over a range of days, backfilled, or pruned.
//!
//! Versions are immutable: each command writes a new version whose other
//! tables are copies of the current one's files (hard links on a local
//! disk, server-side copies in an object store), with the rollup rebuilt
//! from the snapshot's own `turns`, and publishes it like an ETL run. The manifest records the UTC days the rollup covers; the engine
//! answers from the rollup only inside that coverage and from `turns`
//! elsewhere, so every answer stays exact whatever was pruned.

use chrono::{Days, NaiveDate, Utc};
use datafusion::common::ScalarValue;
use datafusion::prelude::{col, lit};
use ocs_dash_engine::snapshot::{DataDir, Manifest, RollupCoverage, register_table, table};

use crate::error::Result;
use crate::slots::write_rollup;
use crate::transform::etl_context;

const ROLLUP: &str = "turn_slots";

/// Rebuilds the rollup of the current snapshot over `[from, to]` (UTC
/// days, `None` = unbounded) into a new current version.
pub async fn rebuild(dir: &DataDir, coverage: RollupCoverage, keep: usize) -> Result<Manifest> {
    let head = dir.require_head().await?;
    let old = head.manifest;
    let version = DataDir::new_version_name(Utc::now());
    let (src, dst) = (dir.version_dir(&old.version), dir.version_dir(&version));
    let rollup_folder = format!("{ROLLUP}/");
    dst.copy_from(&src, |file| !file.starts_with(&rollup_folder)).await?;

    let ctx = etl_context()?;
    let def = table("turns").expect("turns table");
    register_table(&ctx, "snap_turns", &src, def)?;
    let micros = |d: NaiveDate| {
        lit(ScalarValue::TimestampMicrosecond(
            Some(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_micros()),
            Some("UTC".into()),
        ))
    };
    // Days start on a slot boundary: a slot lies in the coverage exactly
    // when its turns do.
    let mut df = ctx.table("snap_turns").await?;
    if let Some(from) = coverage.from {
        df = df.filter(col("created_at").gt_eq(micros(from)))?;
    }
    if let Some(to) = coverage.to {
        df = df.filter(col("created_at").lt(micros(to + Days::new(1))))?;
    }
    let rows = write_rollup(df, &dst).await?;

    let mut manifest = old.clone();
    manifest.version = version.clone();
    manifest.created_at = Utc::now();
    manifest.rollup = Some(coverage);
    manifest.tables.insert(ROLLUP.to_string(), rows);
    dir.publish(&manifest, Some(head.seq)).await?;
    dir.prune(keep).await?;
    Ok(manifest)
}

/// Keeps the rollup for the last `days` days before the snapshot's `as_of`.
pub async fn prune(dir: &DataDir, days: u64, keep: usize) -> Result<Manifest> {
    let m = dir.require_head().await?.manifest;
    let last = m.as_of.date_naive();
    let from = last - Days::new(days.saturating_sub(1));
    let old = m.rollup.unwrap_or(RollupCoverage { from: None, to: None });
    let from = old.from.map_or(from, |f| f.max(from));
    rebuild(
        dir,
        RollupCoverage {
            from: Some(from),
            to: old.to,
        },
        keep,
    )
    .await
}
