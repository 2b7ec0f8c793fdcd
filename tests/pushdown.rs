//! The date window and the team prune files, row groups and pages: read
//! back from DataFusion's scan metrics, over a year of data.

use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
use datafusion::physical_plan::metrics::MetricValue;
use datafusion::physical_plan::{ExecutionPlan, collect};
use ocs_dash_engine::filters::Filters;
use ocs_dash_engine::scope::{session, team_scope};
use ocs_dash_engine::snapshot::DataDir;
use ocs_dash_etl::generate::{GenOptions, Scale};
use ocs_dash_etl::progress::Progress;

/// (pruned, matched) of a pruning metric, or the value of a count, summed
/// over the plan's scans.
fn metric(plan: &Arc<dyn ExecutionPlan>, name: &str) -> (usize, usize) {
    let mut sum = (0, 0);
    if let Some(m) = plan.metrics().filter(|_| plan.name() == "DataSourceExec") {
        for x in m.iter().filter(|x| x.value().name() == name) {
            match x.value() {
                MetricValue::PruningMetrics { pruning_metrics, .. } => {
                    sum.0 += pruning_metrics.pruned();
                    sum.1 += pruning_metrics.matched();
                }
                v => sum.1 += v.as_usize(),
            }
        }
    }
    for c in plan.children() {
        let (p, m) = metric(c, name);
        sum = (sum.0 + p, sum.1 + m);
    }
    sum
}

#[tokio::test]
async fn a_narrow_window_skips_most_of_a_year_of_turns() {
    let data = tempfile::tempdir().unwrap();
    let end = "2026-11-20T12:00:00Z".parse().unwrap();
    let opts = GenOptions {
        scale: Scale::S,
        seed: 9,
        end,
        session_platform: true,
    };
    let m = ocs_dash_etl::run::generate_snapshot(&DataDir::new(data.path()), &opts, &mut Progress::hidden())
        .await
        .unwrap();
    let dir = DataDir::new(data.path());
    let pairs = vec![
        ("start_date".to_string(), "2026-11-14".to_string()),
        ("end_date".to_string(), "2026-11-20".to_string()),
    ];
    let (filters, _) = Filters::parse(&pairs, end).unwrap();
    // The largest team: the one whose turns folder is biggest.
    let vdir = dir.version_dir(&m.version);
    let mut sizes = Vec::new();
    for &t in &m.teams {
        sizes.push((vdir.team_bytes("turns", t).await.unwrap(), t));
    }
    let team = sizes.iter().max().unwrap().1;
    let ctx = team_scope(
        session(&Default::default()),
        &vdir,
        team,
        &filters,
        ocs_dash_engine::scope::Activity::Raw,
    )
    .await
    .unwrap();
    let (start, stop) = filters.window();
    let df = ctx
        .sql("SELECT count(*) FROM f_activity WHERE created_at >= $1 AND created_at < $2")
        .await
        .unwrap()
        .with_param_values(vec![
            datafusion::common::ScalarValue::TimestampMicrosecond(Some(start.timestamp_micros()), Some("UTC".into())),
            datafusion::common::ScalarValue::TimestampMicrosecond(Some(stop.timestamp_micros()), Some("UTC".into())),
        ])
        .unwrap();
    let plan = df.create_physical_plan().await.unwrap();
    let out = collect(plan.clone(), ctx.task_ctx()).await.unwrap();
    let count = out[0].column(0).as_primitive::<Int64Type>().value(0) as usize;
    assert!(count > 100, "the window holds turns: {count}");

    // Team: the scan lists only this team's folder, out of one per team.
    assert!(m.teams.len() >= 5);
    let shown = datafusion::physical_plan::displayable(plan.as_ref())
        .indent(true)
        .to_string();
    let files: Vec<&str> = shown
        .split(|c: char| c.is_whitespace() || "[],{}".contains(c))
        .filter(|w| w.contains(".parquet"))
        .collect();
    assert!(!files.is_empty(), "{shown}");
    assert!(
        files.iter().all(|f| f.contains(&format!("/team_id={team}/"))),
        "{files:?}"
    );
    // Date window: files (one per month) and row groups outside it are
    // skipped on their statistics...
    let team_dir = vdir.local_path().unwrap().join("turns").join(format!("team_id={team}"));
    let (mut groups, mut rows) = (0, 0);
    for f in std::fs::read_dir(&team_dir).unwrap() {
        let file = std::fs::File::open(f.unwrap().path()).unwrap();
        let reader = SerializedFileReader::new(file).unwrap();
        groups += reader.metadata().num_row_groups();
        rows += reader.metadata().file_metadata().num_rows() as usize;
    }
    let (pruned, read) = metric(&plan, "row_groups_pruned_statistics");
    let (files_pruned, _) = metric(&plan, "files_ranges_pruned_statistics");
    eprintln!(
        "row groups: {read} read of {groups} ({pruned} pruned in opened files, {files_pruned} files pruned); {count} rows in the window"
    );
    assert!(read >= 1);
    assert!(read * 4 < groups, "most row groups of a year lie outside a week");
    // ...and inside the ones read, pages outside the window are skipped on
    // the page index: the scan decodes only the pages that overlap the
    // window (the filter then drops their rows outside it, after decoding:
    // see `engine_config`).
    let (rows_skipped, rows_kept) = metric(&plan, "page_index_rows_pruned");
    let scanned = metric(&plan, "output_rows").1;
    eprintln!(
        "pages: {rows_skipped} rows skipped, {rows_kept} kept; {scanned} rows out of the scan, of {rows} in the team's turns"
    );
    assert_eq!(scanned, rows_kept, "the scan outputs the rows of the pages it kept");
    assert!(scanned >= count);
    assert!(scanned * 4 < rows, "a week's scan decodes a small part of the year");
}
