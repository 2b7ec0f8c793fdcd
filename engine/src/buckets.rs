//! Time buckets in the request's zone (metrics.md §2 "Buckets").
//!
//! Bucket starts are computed here with chrono-tz, not in SQL: DataFusion
//! has open bugs where zone casts silently bucket by UTC, and per-row zone
//! arithmetic is the most expensive part of a time-series query. The SQL
//! only calls `bucket(created_at)`, a UDF that binary-searches the sorted
//! bucket starts (as UTC instants) and returns the bucket's index.

use std::sync::Arc;

use chrono::{DateTime, Datelike, Days, Duration, Months, NaiveDate, SecondsFormat};
use chrono_tz::Tz;
use datafusion::arrow::array::{Array, AsArray, Int64Array};
use datafusion::arrow::datatypes::{DataType, TimestampMicrosecondType};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

use crate::filters::{Filters, Granularity, local_midnight};
use crate::snapshot::timestamp_type;

/// The buckets of one request: starts in ascending order, each a real
/// instant in the request's zone.
#[derive(Debug, Clone)]
pub struct Buckets {
    pub starts: Vec<DateTime<Tz>>,
}

impl Buckets {
    /// Every bucket overlapping the window of `f`.
    pub fn new(f: &Filters) -> Buckets {
        let tz = f.timezone;
        let (start, end) = f.window();
        let mut starts = Vec::new();
        match f.granularity {
            Granularity::Hourly => {
                // Real hours from local midnight: a fall-back day gets 25, a
                // spring-forward day 23, and the repeated 02:xx hours stay apart.
                let mut t = start;
                while t < end {
                    starts.push(t);
                    t += Duration::hours(1);
                }
            }
            Granularity::Daily => {
                let mut d = f.start_date;
                while d <= f.end_date {
                    starts.push(local_midnight(tz, d));
                    d = d + Days::new(1);
                }
            }
            Granularity::Weekly => {
                let monday = f.start_date - Days::new(f.start_date.weekday().num_days_from_monday() as u64);
                let mut d = monday;
                while d <= f.end_date {
                    starts.push(local_midnight(tz, d));
                    d = d + Days::new(7);
                }
            }
            Granularity::Monthly => {
                let mut d =
                    NaiveDate::from_ymd_opt(f.start_date.year(), f.start_date.month(), 1).expect("first of month");
                while d <= f.end_date {
                    starts.push(local_midnight(tz, d));
                    d = d + Months::new(1);
                }
            }
        }
        Buckets { starts }
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// RFC 3339 name of bucket `i`, with the zone's offset at its start.
    pub fn name(&self, i: usize) -> String {
        self.starts[i].to_rfc3339_opts(SecondsFormat::Secs, false)
    }

    /// The `bucket(ts)` UDF for these buckets. Rows are expected inside the
    /// window; one before the first start would get -1.
    pub fn udf(&self) -> ScalarUDF {
        ScalarUDF::new_from_impl(BucketUdf::new(
            self.starts.iter().map(|t| t.timestamp_micros()).collect(),
        ))
    }
}

/// `bucket(ts)`: the index of the last bucket start (UTC microseconds, sorted)
/// at or before `ts`. The starts are the function's whole state, so it can be
/// shipped to other processes as that list (see `crate::ballista`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct BucketUdf {
    starts: Arc<Vec<i64>>,
    signature: Signature,
}

impl BucketUdf {
    /// The function's name in SQL.
    pub const NAME: &'static str = "bucket";

    pub fn new(starts: Vec<i64>) -> BucketUdf {
        BucketUdf {
            starts: Arc::new(starts),
            signature: Signature::exact(vec![timestamp_type()], Volatility::Immutable),
        }
    }

    /// The bucket starts, ascending UTC microseconds.
    pub fn starts(&self) -> &[i64] {
        &self.starts
    }

    fn index(&self, ts: i64) -> i64 {
        self.starts.partition_point(|s| *s <= ts) as i64 - 1
    }
}

impl ScalarUDFImpl for BucketUdf {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType, DataFusionError> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue, DataFusionError> {
        match &args.args[..] {
            [ColumnarValue::Array(a)] => {
                let ts = a.as_primitive::<TimestampMicrosecondType>();
                let out: Int64Array = if ts.null_count() == 0 {
                    ts.values().iter().map(|v| self.index(*v)).collect::<Vec<_>>().into()
                } else {
                    ts.iter().map(|v| v.map(|v| self.index(v))).collect()
                };
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
            [ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(v, _))] => {
                Ok(ColumnarValue::Scalar(ScalarValue::Int64(v.map(|v| self.index(v)))))
            }
            other => Err(DataFusionError::Internal(format!("bucket() got {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::Filters;
    use chrono::Utc;

    fn buckets(q: &str) -> Buckets {
        let pairs: Vec<(String, String)> = q
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect();
        let (f, _) = Filters::parse(&pairs, Utc::now()).unwrap();
        Buckets::new(&f)
    }

    #[test]
    fn berlin_fall_back_day_has_25_hours_with_repeated_two_oclock() {
        let b = buckets(
            "date_range=custom&start_date=2026-10-25&end_date=2026-10-25&timezone=Europe/Berlin&granularity=hourly",
        );
        assert_eq!(b.len(), 25);
        assert_eq!(b.name(0), "2026-10-25T00:00:00+02:00");
        assert_eq!(b.name(2), "2026-10-25T02:00:00+02:00");
        assert_eq!(b.name(3), "2026-10-25T02:00:00+01:00");
        assert_eq!(b.name(24), "2026-10-25T23:00:00+01:00");
    }

    #[test]
    fn new_york_spring_forward_day_has_23_hours() {
        let b = buckets("start_date=2026-03-08&end_date=2026-03-08&timezone=America/New_York&granularity=hourly");
        assert_eq!(b.len(), 23);
        assert_eq!(b.name(1), "2026-03-08T01:00:00-05:00");
        assert_eq!(b.name(2), "2026-03-08T03:00:00-04:00");
    }

    #[test]
    fn kolkata_days_start_at_half_past_in_utc() {
        let b = buckets("start_date=2026-01-01&end_date=2026-01-02&timezone=Asia/Kolkata");
        assert_eq!(b.len(), 2);
        assert_eq!(b.name(0), "2026-01-01T00:00:00+05:30");
        assert_eq!(
            b.starts[0].with_timezone(&Utc).to_rfc3339(),
            "2025-12-31T18:30:00+00:00"
        );
    }

    #[test]
    fn weeks_start_on_monday_before_the_window_and_months_on_the_first() {
        let b = buckets("start_date=2026-03-04&end_date=2026-03-17&granularity=weekly&timezone=Europe/Berlin");
        assert_eq!(b.name(0), "2026-03-02T00:00:00+01:00");
        assert_eq!(b.len(), 3);
        let b = buckets("start_date=2026-02-15&end_date=2026-04-01&granularity=monthly&timezone=Europe/Berlin");
        let names: Vec<_> = (0..b.len()).map(|i| b.name(i)).collect();
        assert_eq!(
            names,
            [
                "2026-02-01T00:00:00+01:00",
                "2026-03-01T00:00:00+01:00",
                "2026-04-01T00:00:00+02:00"
            ]
        );
    }

    #[test]
    fn utc_names_use_plus_zero_offset() {
        let b = buckets("start_date=2026-01-01&end_date=2026-01-01");
        assert_eq!(b.name(0), "2026-01-01T00:00:00+00:00");
    }
}
