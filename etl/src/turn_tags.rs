//! `message_tags` of a full run, built in the pass that writes `turns`.
//!
//! A message tag is a turn with one of the tags attached to its message by
//! an item of the turn's own team (`etl/sql/message_tags.sql`). The table
//! is sorted like `turns` (team, `created_at`, `message_id`) and then by
//! `tag_id`, so the writer of a team's turns can hand on each tagged turn
//! once per tag, in tag order, and the rows arrive in the table's order: no
//! second read of the 10 M written turns, no join, no sort. At scale m that
//! step took 1.1–1.35 s after `turns` was written, the last step of a full
//! run. Incremental runs still join `message_tags.sql` with the turns they
//! derive again.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{Int64Type, SchemaRef};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use ocs_dash_engine::snapshot::{TEAM_COLUMN, TableDef, table};

use crate::dangling::IdSet;
use crate::error::{Error, Result};
use crate::write::with_team;

/// The tags of every tagged message, by message.
#[derive(Debug)]
pub struct TurnTags {
    /// The tagged messages: most turns have no tag, and this answers for
    /// them without hashing.
    tagged: IdSet,
    /// Per tagged message, its range in `pairs`.
    at: HashMap<i64, (u32, u32)>,
    /// (team, tag) of each attachment, grouped by message, tag order within.
    pairs: Vec<(i64, i64)>,
    /// `team_id`, then the columns of `message_tags`.
    schema: SchemaRef,
}

fn def() -> &'static TableDef {
    table("message_tags").expect("message_tags table")
}

impl TurnTags {
    /// Reads `sql`, which returns `team_id`, `tag_id`, `message_id` (one
    /// row per attachment; repeats are dropped).
    pub async fn read(ctx: &SessionContext, sql: &str) -> Result<TurnTags> {
        let mut rows = Vec::new();
        let mut stream = ctx.sql(sql).await?.execute_stream().await?;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let col = |i: usize| batch.column(i).as_primitive::<Int64Type>();
            let (team, tag, message) = (col(0), col(1), col(2));
            for i in 0..batch.num_rows() {
                if team.is_valid(i) && tag.is_valid(i) && message.is_valid(i) {
                    rows.push((message.value(i), tag.value(i), team.value(i)));
                }
            }
        }
        Ok(TurnTags::new(rows))
    }

    /// From (message, tag, team) attachments.
    fn new(mut rows: Vec<(i64, i64, i64)>) -> TurnTags {
        rows.sort_unstable();
        rows.dedup();
        let mut at = HashMap::new();
        let mut messages = Vec::new();
        let mut start = 0;
        for (i, &(message, ..)) in rows.iter().enumerate() {
            if rows.get(i + 1).is_none_or(|next| next.0 != message) {
                at.insert(message, (start as u32, i as u32 + 1));
                messages.push(message);
                start = i + 1;
            }
        }
        TurnTags {
            tagged: IdSet::new(&messages),
            at,
            pairs: rows.into_iter().map(|(_, tag, team)| (team, tag)).collect(),
            schema: with_team(def()),
        }
    }

    /// The `message_tags` rows (`team_id` first) of a batch of turns
    /// (`team_id` first), in the batch's order and then tag order; `None`
    /// if no turn in it is tagged.
    pub fn of(&self, turns: &RecordBatch) -> Result<Option<RecordBatch>> {
        let column = |name: &str| Ok::<_, Error>(turns.column(turns.schema().index_of(name)?));
        let team = column(TEAM_COLUMN)?.as_primitive::<Int64Type>();
        let message = column("message_id")?.as_primitive::<Int64Type>();
        let (mut rows, mut tags) = (Vec::new(), Vec::new());
        for (i, &m) in message.values().iter().enumerate() {
            if !self.tagged.contains(m) {
                continue;
            }
            let Some(&(from, to)) = self.at.get(&m) else {
                continue;
            };
            for &(t, tag) in &self.pairs[from as usize..to as usize] {
                if t == team.value(i) {
                    rows.push(i as u32);
                    tags.push(tag);
                }
            }
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let rows = UInt32Array::from(rows);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for field in self.schema.fields() {
            columns.push(match field.name().as_str() {
                "tag_id" => Arc::new(Int64Array::from(std::mem::take(&mut tags))),
                name => take(column(name)?, &rows, None)?,
            });
        }
        Ok(Some(RecordBatch::try_new(self.schema.clone(), columns)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{StringArray, TimestampMicrosecondArray};

    /// Turns with `team_id` first: (team, message) per row.
    fn turns(rows: &[(i64, i64)]) -> RecordBatch {
        let ints = |v: Vec<i64>| -> ArrayRef { Arc::new(Int64Array::from(v)) };
        let n = rows.len();
        let turns_def = table("turns").unwrap();
        let mut columns = vec![ints(rows.iter().map(|r| r.0).collect())];
        for field in turns_def.schema.fields() {
            columns.push(match field.name().as_str() {
                "message_id" => ints(rows.iter().map(|r| r.1).collect()),
                "platform" | "message_type" => Arc::new(StringArray::from(vec!["web"; n])),
                "created_at" => Arc::new(
                    TimestampMicrosecondArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>()).with_timezone("UTC"),
                ),
                _ => ints(rows.iter().map(|r| r.1 * 10).collect()),
            });
        }
        RecordBatch::try_new(with_team(turns_def), columns).unwrap()
    }

    /// (team, tag, message, session) per row.
    fn rows(b: &RecordBatch) -> Vec<(i64, i64, i64, i64)> {
        let int = |name: &str| b.column_by_name(name).unwrap().as_primitive::<Int64Type>().clone();
        let (team, tag, message, session) = (int(TEAM_COLUMN), int("tag_id"), int("message_id"), int("session_id"));
        (0..b.num_rows())
            .map(|i| (team.value(i), tag.value(i), message.value(i), session.value(i)))
            .collect()
    }

    #[test]
    fn each_tagged_turn_once_per_tag_of_its_own_team_in_tag_order() {
        // Message 5 has tags 9 and 2 of team 1 (9 attached twice) and tag 4
        // of team 2; message 7 has only a tag of another team.
        let tags = TurnTags::new(vec![(5, 9, 1), (5, 2, 1), (5, 9, 1), (5, 4, 2), (7, 3, 2)]);
        let out = tags.of(&turns(&[(1, 3), (1, 5), (1, 6), (1, 7)])).unwrap().unwrap();
        assert_eq!(rows(&out), vec![(1, 2, 5, 50), (1, 9, 5, 50)]);
        assert_eq!(out.schema().field(0).name(), TEAM_COLUMN);
        assert_eq!(out.num_columns(), 1 + def().schema.fields().len());
        assert!(tags.of(&turns(&[(1, 3), (2, 7), (1, 8)])).unwrap().is_some());
        assert!(tags.of(&turns(&[(1, 3), (1, 7), (1, 8)])).unwrap().is_none());
    }
}
