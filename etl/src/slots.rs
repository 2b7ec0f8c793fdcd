//! The rollup `turn_slots`: one row per session and 15-minute UTC slot
//! holding its turns, with the turn counts and the last human turn.
//!
//! Distinct counts (sessions, participants, chatbots) stay exact over it
//! because every row still names its session and participant; only turns of
//! the same session and slot merge. A row is its session's first in a window
//! or bucket exactly when its previous slot lies before it, so charts count
//! sessions with a filter instead of a per-session grouping: `prev_slot`
//! (the session's previous slot with turns) and `prev_human_slot` (its
//! previous slot with a human turn) are filled in by the writer in its pass
//! over the rows in slot order ([`crate::write::TableWriter`]).
//!
//! The rollup is built in one pass over turns in the order they are written
//! (team, then time): a slot's turns are consecutive there, so it needs only
//! the open slot's sessions in memory, no hash aggregation over the whole
//! table and no second sort. A full ETL builds it while it writes `turns`.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayBuilder, ArrayRef, AsArray, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondArray,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, Schema, SchemaRef, TimestampMicrosecondType};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::prelude::DataFrame;
use futures::StreamExt;
use ocs_dash_engine::snapshot::{SLOT_MICROS, TEAM_COLUMN, TableDef, VersionDir, table};

use crate::error::{Error, Result};
use crate::turn_tags::TurnTags;
use crate::write::{TableWriter, each_stream, ordered_streams, with_team};

/// Slot rows gathered before they are handed on as one batch.
const BATCH_ROWS: usize = 64 * 1024;

pub(crate) fn turns_def() -> &'static TableDef {
    table("turns").expect("turns table")
}

fn slots_def() -> &'static TableDef {
    table("turn_slots").expect("turn_slots table")
}

/// One session's turns in the open slot.
#[derive(Debug)]
struct Slot {
    chatbot: i64,
    participant: Option<i64>,
    platform: Option<String>,
    session_length: Option<i64>,
    human: i64,
    ai: i64,
    last_human: Option<i64>,
}

/// Positions of the columns the rollup reads in a turns batch.
#[derive(Debug, Clone, Copy)]
struct Columns {
    team: usize,
    session: usize,
    chatbot: usize,
    participant: usize,
    platform: usize,
    message_type: usize,
    created_at: usize,
    session_length: usize,
}

impl Columns {
    fn of(schema: &Schema) -> Result<Columns> {
        let at = |name: &str| schema.index_of(name).map_err(Error::from);
        Ok(Columns {
            team: at(TEAM_COLUMN)?,
            session: at("session_id")?,
            chatbot: at("chatbot_id")?,
            participant: at("participant_id")?,
            platform: at("platform")?,
            message_type: at("message_type")?,
            created_at: at("created_at")?,
            session_length: at("session_length_us")?,
        })
    }
}

/// The streaming rollup: push turns (with `team_id`) sorted by team and
/// time, get `turn_slots` rows (with `team_id`) sorted by team, slot and
/// session.
#[derive(Debug)]
pub struct SlotRollup {
    schema: SchemaRef,
    columns: Option<Columns>,
    /// The open slot: its team and first microsecond.
    at: Option<(i64, i64)>,
    open: BTreeMap<i64, Slot>,
    out: Builders,
}

#[derive(Debug, Default)]
struct Builders {
    team: Int64Builder,
    session: Int64Builder,
    chatbot: Int64Builder,
    participant: Int64Builder,
    platform: StringBuilder,
    slot: TimestampMicrosecondBuilder,
    human: Int64Builder,
    ai: Int64Builder,
    last_human: TimestampMicrosecondBuilder,
    session_length: Int64Builder,
}

/// The rollup's rows: `team_id`, then the columns of `turn_slots`.
fn rollup_schema() -> SchemaRef {
    with_team(slots_def())
}

impl Default for SlotRollup {
    fn default() -> Self {
        SlotRollup {
            schema: rollup_schema(),
            columns: None,
            at: None,
            open: BTreeMap::new(),
            out: Builders::default(),
        }
    }
}

impl SlotRollup {
    /// Takes the next turns; returns the slot rows completed so far once
    /// there are enough of them for a batch.
    pub fn push(&mut self, turns: &RecordBatch) -> Result<Option<RecordBatch>> {
        let c = match self.columns {
            Some(c) => c,
            None => *self.columns.insert(Columns::of(&turns.schema())?),
        };
        let team = turns.column(c.team).as_primitive::<Int64Type>();
        let session = turns.column(c.session).as_primitive::<Int64Type>();
        let chatbot = turns.column(c.chatbot).as_primitive::<Int64Type>();
        let participant = turns.column(c.participant).as_primitive::<Int64Type>();
        let platform = cast(turns.column(c.platform), &DataType::Utf8)?;
        let platform = platform.as_string::<i32>();
        let kind = cast(turns.column(c.message_type), &DataType::Utf8)?;
        let kind = kind.as_string::<i32>();
        let created = turns.column(c.created_at).as_primitive::<TimestampMicrosecondType>();
        let length = turns.column(c.session_length).as_primitive::<Int64Type>();
        let value = |a: &dyn Array, i: usize| a.is_valid(i).then_some(i);
        for i in 0..turns.num_rows() {
            let t = created.value(i);
            let here = (team.value(i), t - t.rem_euclid(SLOT_MICROS));
            if self.at != Some(here) {
                if self.at.is_some_and(|at| at > here) {
                    return Err(Error::DataFusion(DataFusionError::Internal(format!(
                        "turns reached the rollup out of order: slot {here:?} after {:?}",
                        self.at
                    ))));
                }
                self.close_slot();
                self.at = Some(here);
            }
            let slot = self.open.entry(session.value(i)).or_insert_with(|| Slot {
                chatbot: chatbot.value(i),
                participant: value(participant, i).map(|i| participant.value(i)),
                platform: value(platform, i).map(|i| platform.value(i).to_string()),
                session_length: value(length, i).map(|i| length.value(i)),
                human: 0,
                ai: 0,
                last_human: None,
            });
            match kind.value(i) {
                "human" => {
                    slot.human += 1;
                    slot.last_human = slot.last_human.max(Some(t));
                }
                "ai" => slot.ai += 1,
                _ => {}
            }
        }
        if self.out.team.len() >= BATCH_ROWS {
            return self.emit().map(Some);
        }
        Ok(None)
    }

    /// Closes the last slot; returns the rows not handed on yet.
    pub fn finish(mut self) -> Result<Option<RecordBatch>> {
        self.close_slot();
        if self.out.team.is_empty() {
            return Ok(None);
        }
        self.emit().map(Some)
    }

    /// Moves the open slot's rows, in session order, to the output.
    fn close_slot(&mut self) {
        let Some((team, at)) = self.at else { return };
        let out = &mut self.out;
        for (session, s) in std::mem::take(&mut self.open) {
            out.team.append_value(team);
            out.session.append_value(session);
            out.chatbot.append_value(s.chatbot);
            out.participant.append_option(s.participant);
            out.platform.append_option(s.platform);
            out.slot.append_value(at);
            out.human.append_value(s.human);
            out.ai.append_value(s.ai);
            out.last_human.append_option(s.last_human);
            out.session_length.append_option(s.session_length);
        }
    }

    fn emit(&mut self) -> Result<RecordBatch> {
        let out = &mut self.out;
        let rows = out.team.len();
        let utc = |b: &mut TimestampMicrosecondBuilder| -> ArrayRef { Arc::new(b.finish().with_timezone("UTC")) };
        let none = || -> ArrayRef { Arc::new(TimestampMicrosecondArray::new_null(rows).with_timezone("UTC")) };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(out.team.finish()),
            Arc::new(out.session.finish()),
            Arc::new(out.chatbot.finish()),
            Arc::new(out.participant.finish()),
            Arc::new(out.platform.finish()),
            utc(&mut out.slot),
            Arc::new(out.human.finish()),
            Arc::new(out.ai.finish()),
            utc(&mut out.last_human),
            Arc::new(out.session_length.finish()),
            none(),
            none(),
        ];
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// Writes `turns`, its rollup `turn_slots` and the turns' `message_tags`
/// ([`crate::turn_tags`]) from `streams`, each yielding whole teams' turns
/// (`team_id` first) in the order of `turns` ([`crate::write::sort_each`]),
/// in one pass; returns the rows of each table.
pub async fn write_turns(
    streams: Vec<SendableRecordBatchStream>,
    version: &VersionDir,
    tags: Arc<TurnTags>,
) -> Result<Vec<(&'static str, u64)>> {
    let (turns, slots, tagged) = write(streams, version, Some(tags)).await?;
    Ok(vec![("turns", turns), ("turn_slots", slots), ("message_tags", tagged)])
}

/// Writes the rollup of the turns `df` yields (`team_id` first); returns
/// its rows.
pub async fn write_rollup(df: DataFrame, version: &VersionDir) -> Result<u64> {
    let streams = ordered_streams(df, turns_def()).await?;
    Ok(write(streams, version, None).await?.1)
}

/// Writes the rollup of the ordered turns `streams` yield, and with `tags`
/// the turns themselves and their message tags; returns the rows of each.
async fn write(
    streams: Vec<SendableRecordBatchStream>,
    version: &VersionDir,
    tags: Option<Arc<TurnTags>>,
) -> Result<(u64, u64, u64)> {
    let written = each_stream(streams, |stream| {
        let (version, tags) = (version.clone(), tags.clone());
        async move {
            let mut turns = tags.map(|tags| {
                (
                    TableWriter::new(turns_def(), &version),
                    tags,
                    TableWriter::new(table("message_tags").expect("message_tags table"), &version),
                )
            });
            let mut slots = TableWriter::new(slots_def(), &version);
            roll(stream, turns.as_mut(), Sink::Write(&mut slots)).await?;
            let (turns, tagged) = match turns {
                Some((w, _, tagged)) => (w.finish().await?, tagged.finish().await?),
                None => (0, 0),
            };
            Ok((turns, slots.finish().await?, tagged))
        }
    })
    .await?;
    Ok(written
        .into_iter()
        .fold((0, 0, 0), |(t, s, m), (a, b, c)| (t + a, s + b, m + c)))
}

/// The rollup of the turns `df` yields (`team_id` first), as a table of
/// `turn_slots` rows with `team_id`.
pub async fn rollup_table(df: DataFrame) -> Result<MemTable> {
    let streams = ordered_streams(df, turns_def()).await?;
    let parts = each_stream(streams, |stream| async move {
        let mut kept = Vec::new();
        roll(stream, None, Sink::Keep(&mut kept)).await?;
        Ok(kept)
    })
    .await?;
    Ok(MemTable::try_new(rollup_schema(), parts)?)
}

/// Where slot rows go.
enum Sink<'s, 'w> {
    Write(&'s mut TableWriter<'w>),
    Keep(&'s mut Vec<RecordBatch>),
}

impl Sink<'_, '_> {
    async fn push(&mut self, rows: RecordBatch) -> Result<()> {
        match self {
            Sink::Write(w) => w.push(rows).await,
            Sink::Keep(kept) => {
                kept.push(rows);
                Ok(())
            }
        }
    }
}

/// Streams turns in their written order into `turns` (if given, with the
/// writer of their message tags) and their slot rows into `slots`.
async fn roll(
    mut stream: SendableRecordBatchStream,
    mut turns: Option<&mut (TableWriter<'_>, Arc<TurnTags>, TableWriter<'_>)>,
    mut slots: Sink<'_, '_>,
) -> Result<()> {
    let mut rollup = SlotRollup::default();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        if let Some(rows) = rollup.push(&batch)? {
            slots.push(rows).await?;
        }
        if let Some((turns, tags, tagged)) = turns.as_mut() {
            if let Some(rows) = tags.of(&batch)? {
                tagged.push(rows).await?;
            }
            turns.push(batch).await?;
        }
    }
    if let Some(rows) = rollup.finish()? {
        slots.push(rows).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::Field;

    const MIN: i64 = 60 * 1_000_000;

    /// A turn: (team, session, type, minute).
    type Turn<'a> = (i64, i64, &'a str, i64);

    /// Turns with `team_id` first.
    fn turns(rows: &[Turn]) -> RecordBatch {
        let ints = |f: &dyn Fn(&Turn) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from(rows.iter().map(f).collect::<Vec<_>>()))
        };
        let schema = Schema::new(vec![
            Field::new(TEAM_COLUMN, DataType::Int64, false),
            Field::new("session_id", DataType::Int64, false),
            Field::new("chatbot_id", DataType::Int64, false),
            Field::new("participant_id", DataType::Int64, true),
            Field::new("platform", DataType::Utf8, true),
            Field::new("message_type", DataType::Utf8, false),
            Field::new(
                "created_at",
                DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("session_length_us", DataType::Int64, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                ints(&|r| r.0),
                ints(&|r| r.1),
                ints(&|r| r.1 * 10),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| (r.1 != 2).then_some(r.1 * 100)).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(rows.iter().map(|_| Some("web")).collect::<Vec<_>>())),
                Arc::new(StringArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
                Arc::new(
                    TimestampMicrosecondArray::from(rows.iter().map(|r| r.3 * MIN).collect::<Vec<_>>())
                        .with_timezone("UTC"),
                ),
                Arc::new(Int64Array::from(
                    rows.iter().map(|_| None).collect::<Vec<Option<i64>>>(),
                )),
            ],
        )
        .unwrap()
    }

    /// (team, session, slot minute, human, ai, last human minute) per row.
    fn rows(b: &RecordBatch) -> Vec<(i64, i64, i64, i64, i64, Option<i64>)> {
        let int = |name: &str| b.column_by_name(name).unwrap().as_primitive::<Int64Type>().clone();
        let ts = |name: &str| {
            b.column_by_name(name)
                .unwrap()
                .as_primitive::<TimestampMicrosecondType>()
                .clone()
        };
        let (team, session, human, ai) = (int(TEAM_COLUMN), int("session_id"), int("human"), int("ai"));
        let (slot, last) = (ts("slot"), ts("last_human_at"));
        (0..b.num_rows())
            .map(|i| {
                (
                    team.value(i),
                    session.value(i),
                    slot.value(i) / MIN,
                    human.value(i),
                    ai.value(i),
                    last.is_valid(i).then(|| last.value(i) / MIN),
                )
            })
            .collect()
    }

    #[test]
    fn merges_a_sessions_turns_per_slot_in_slot_and_session_order() {
        let mut r = SlotRollup::default();
        // Team 1: sessions 7 and 3 interleaved in the first slot, 7 again in
        // the next; team 2 starts over at an earlier time.
        let first = turns(&[
            (1, 7, "human", 1),
            (1, 3, "ai", 2),
            (1, 7, "ai", 3),
            (1, 7, "human", 14),
        ]);
        let second = turns(&[(1, 7, "ai", 15), (2, 2, "human", 0)]);
        assert!(r.push(&first).unwrap().is_none(), "fewer rows than a batch");
        assert!(r.push(&second).unwrap().is_none());
        let out = r.finish().unwrap().unwrap();
        assert_eq!(
            rows(&out),
            vec![
                (1, 3, 0, 0, 1, None),
                (1, 7, 0, 2, 1, Some(14)),
                (1, 7, 15, 0, 1, None),
                (2, 2, 0, 1, 0, Some(0)),
            ]
        );
        let chatbot = out.column_by_name("chatbot_id").unwrap().as_primitive::<Int64Type>();
        assert_eq!(chatbot.values().to_vec(), vec![30, 70, 70, 20]);
        let participant = out.column_by_name("participant_id").unwrap();
        assert_eq!(participant.null_count(), 1, "session 2 has no participant");
        assert_eq!(
            out.column_by_name("prev_slot").unwrap().null_count(),
            4,
            "links are the writer's"
        );
        assert_eq!(out.schema().fields().len(), 1 + slots_def().schema.fields().len());
    }

    #[test]
    fn refuses_turns_out_of_order() {
        let mut r = SlotRollup::default();
        r.push(&turns(&[(1, 1, "human", 30)])).unwrap();
        let err = r.push(&turns(&[(1, 1, "human", 0)])).unwrap_err();
        assert!(err.to_string().contains("out of order"), "{err}");
    }
}
