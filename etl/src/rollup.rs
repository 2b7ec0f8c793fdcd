//! `ocs-dash snapshot`: the daily rollup (`turn_slots`) of the current
//! snapshot, rebuilt over a range of days, backfilled, or pruned.
//!
//! Versions are immutable: each command writes a new version whose other
//! tables are hard links to the current one's files (no copy), with the
//! rollup rebuilt from the snapshot's own `turns`, and publishes it like an
//! ETL run. The manifest records the UTC days the rollup covers; the engine
//! answers from the rollup only inside that coverage and from `turns`
//! elsewhere, so every answer stays exact whatever was pruned.

use std::path::Path;

use chrono::{Days, NaiveDate, Utc};
use datafusion::common::ScalarValue;
use datafusion::prelude::{col, lit};
use ocs_dash_engine::snapshot::{DataDir, Manifest, RollupCoverage, register_table, table};

use crate::error::{Error, Result};
use crate::transform::etl_context;
use crate::write::write_table;

const ROLLUP: &str = "turn_slots";

/// Rebuilds the rollup of the current snapshot over `[from, to]` (UTC
/// days, `None` = unbounded) into a new current version.
pub async fn rebuild(data_dir: &Path, coverage: RollupCoverage, keep: usize) -> Result<Manifest> {
    let dir = DataDir::new(data_dir);
    let current = dir.require_current()?;
    let old = dir.manifest(&current)?;
    let version = DataDir::new_version_name(Utc::now());
    let (src, dst) = (dir.version_dir(&current), dir.version_dir(&version));
    link_tree(&src, &dst, ROLLUP)?;

    let ctx = etl_context()?;
    let def = table("turns").expect("turns table");
    register_table(&ctx, "snap_turns", &src.join("turns"), def)?;
    let micros = |d: NaiveDate| {
        lit(ScalarValue::TimestampMicrosecond(
            Some(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_micros()),
            Some("UTC".into()),
        ))
    };
    let mut df = ctx.sql(crate::transform::TURN_SLOTS_SQL).await?;
    if let Some(from) = coverage.from {
        df = df.filter(col("slot").gt_eq(micros(from)))?;
    }
    if let Some(to) = coverage.to {
        df = df.filter(col("slot").lt(micros(to + Days::new(1))))?;
    }
    let rows = write_table(df, table(ROLLUP).expect("rollup table"), &dst).await?;

    let mut manifest = old.clone();
    manifest.version = version.clone();
    manifest.created_at = Utc::now();
    manifest.rollup = Some(coverage);
    manifest.tables.insert(ROLLUP.to_string(), rows);
    dir.seal(&manifest)?;
    dir.publish(&version)?;
    dir.prune(keep)?;
    Ok(manifest)
}

/// Keeps the rollup for the last `days` days before the snapshot's `as_of`.
pub async fn prune(data_dir: &Path, days: u64, keep: usize) -> Result<Manifest> {
    let dir = DataDir::new(data_dir);
    let m = dir.manifest(&dir.require_current()?)?;
    let last = m.as_of.date_naive();
    let from = last - Days::new(days.saturating_sub(1));
    let old = m.rollup.unwrap_or(RollupCoverage { from: None, to: None });
    let from = old.from.map_or(from, |f| f.max(from));
    rebuild(
        data_dir,
        RollupCoverage {
            from: Some(from),
            to: old.to,
        },
        keep,
    )
    .await
}

/// Hard-links every file of `src` into `dst`, except the folder `skip`.
fn link_tree(src: &Path, dst: &Path, skip: &str) -> Result<()> {
    std::fs::create_dir_all(dst).map_err(|e| Error::io(format!("creating {}", dst.display()), e))?;
    let entries = std::fs::read_dir(src).map_err(|e| Error::io(format!("listing {}", src.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", src.display()), e))?;
        let name = entry.file_name();
        if name == skip || name == ocs_dash_engine::snapshot::MANIFEST_FILE {
            continue;
        }
        let (from, to) = (entry.path(), dst.join(&name));
        if from.is_dir() {
            link_tree(&from, &to, "")?;
        } else {
            std::fs::hard_link(&from, &to).map_err(|e| Error::io(format!("linking {}", to.display()), e))?;
        }
    }
    Ok(())
}
