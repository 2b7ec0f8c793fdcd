//! Incremental runs: derive again only what the changes since the previous
//! snapshot can have touched, write only the files whose rows changed, and
//! hard-link every other file of the previous version.
//!
//! ## Why this is exact
//!
//! The tables sorted by time (`sessions`, `turns`, `turn_slots`,
//! `message_tags`) are stored as one file per team and UTC month
//! ([`crate::write::chunk_column`]); the other team tables as one file per
//! team. A file is either copied (hard-linked) from the previous version or
//! written again with all of its rows (for `sessions`, `turns`,
//! `turn_slots`, `message_tags` and `_other_messages`, [`crate::patch`]
//! copies the row groups that keep all their rows and gain none, and
//! encodes only the others), so it suffices to find a superset of the files
//! whose rows changed:
//!
//! - **Small tables** (`chatbots`, `participants`, `tags`, `sessions`,
//!   `session_tags`) are derived in full from the re-read source tables and
//!   compared with the previous version (sessions, chatbots, participants
//!   and tags by a join on their id, teams and session tags with `EXCEPT`
//!   both ways); a team's (or a
//!   team-month's) file is written only if a row differs. Sessions are
//!   derived again only for the source rows read (those that can have
//!   changed, [`crate::postgres::Rows::ChangedSessions`]); every other
//!   session keeps its previous row unless its id is gone, and only the
//!   rows read and gone are compared.
//! - **Turns** depend only on a message and its chat's session. The chats
//!   whose session rows differ from the previous snapshot in anything a turn
//!   or a message anomaly reads (added, deleted or changed sessions), and
//!   the chats deleted since, are the *changed chats*. Their kept messages
//!   and the new messages (above the watermark, see [`crate::run`]) are run
//!   through the same `messages.sql` as a full run; every
//!   other message keeps its row. A month of a team is rewritten if it held
//!   a turn of a changed chat or gets a new turn; `turn_slots` follows
//!   `turns` month by month (a 15-minute slot never crosses a month).
//! - **Message tags** are `message_items` (re-derived from the source in
//!   full) joined with turns. A month is rewritten if its turns were, if it
//!   held a tag whose item is gone, or if a new item tags one of its turns,
//!   and patched rather than joined again: a message has at most one turn,
//!   so the new rows are the month's previous rows minus those of turns
//!   derived again and of items gone, plus the items new since on turns
//!   that stay (found in the previous turns), plus every item on the turns
//!   derived again.
//! - **Tagged items**, which OCS inserts and deletes but never edits, are
//!   kept whole in `_tagged_items`. A run reads the items above the highest
//!   id kept there and only the ids of the others; the ids kept but no
//!   longer read are the deleted items. The source's items are then the
//!   kept ones less those plus the new ones ([`prepare`]). An id read below
//!   that mark but not kept (an item committed late) makes the run read
//!   every item instead ([`crate::run`]).
//! - **Anomalies**: the per-message kinds are the previous counts, minus
//!   the counts over the changed chats' old messages (with the previous
//!   sessions), plus the counts over what was derived again; the others are
//!   computed in full, the dangling tagged items over the previous
//!   snapshot's message ids as its run stored them
//!   ([`crate::dangling::MESSAGE_IDS`], used only if their count and sum
//!   are its manifest's) patched with the changed chats' messages.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, TimestampMicrosecondType};
use datafusion::datasource::MemTable;
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext, col, lit};
use ocs_dash_engine::snapshot::{
    DataDir, Manifest, MessageWatermark, RollupCoverage, TABLES, TEAM_COLUMN, TableDef, VersionDir, register_all,
    table, timestamp_type, utc_micros,
};

use crate::dangling::{self, IdSet};
use crate::error::{Error, Result};
use crate::patch::{Change, Drop, DropTest, Patched, patch_chunk};
use crate::transform::{self, Transformed, create_view};
use crate::write::{
    Chunk, SessionLinks, chunk_column, chunk_dir, file_month, month_of, month_start, on_workers, sort_keys,
    split_into_chunks, write_table,
};
use crate::{messages, scan, slots};

/// Session columns whose change can change a turn, an other message, or a
/// per-message anomaly of the session's chat (`team_id` and `session_id`
/// first).
const SESSION_KEY: &str =
    "team_id, session_id, chat_id, chatbot_id, participant_id, platform, counted, created_at, ended_at";

/// The columns of `snap_sessions` besides `team_id` when it is put together
/// from the previous sessions and those read (see [`prepare`]).
const SNAP_SESSION_COLUMNS: &str =
    "session_id, chat_id, chatbot_id, participant_id, platform, status, counted, created_at, ended_at";

/// What an incremental run builds on, found before new messages are read.
#[derive(Debug)]
pub struct Plan {
    prev: Manifest,
    prev_dir: PathBuf,
    /// Count and id sum of the previous snapshot's messages whose chat is gone.
    removed: (u64, i128),
    /// The ids of the previous snapshot's tagged items deleted since, when
    /// only the items added since were read (see [`prepare`]).
    gone_items: Option<Arc<IdSet>>,
}

impl Plan {
    /// Count and id sum (decimal) the source must have up to the previous
    /// watermark if no message there was deleted or inserted late.
    pub fn kept(&self) -> Result<(u64, String)> {
        let sum = parse_sum(&self.prev.watermark.id_sum)? - self.removed.1;
        Ok((self.prev.watermark.count - self.removed.0, sum.to_string()))
    }

    /// Highest message id of the previous snapshot.
    pub fn watermark(&self) -> i64 {
        self.prev.watermark.max_id
    }
}

fn parse_sum(s: &str) -> Result<i128> {
    s.parse()
        .map_err(|_| Error::PrevSnapshot(format!("bad message id sum {s:?} in the manifest")))
}

/// Whether an incremental run can build on `prev`: its folder, or why the
/// run must read everything instead.
pub fn usable(dir: &DataDir, prev: &Manifest) -> std::result::Result<PathBuf, String> {
    if prev.rollup != Some(RollupCoverage { from: None, to: None }) {
        return Err("the previous snapshot's rollup does not cover every day".into());
    }
    // Unchanged files are hard-linked beside the new ones: a local disk only.
    let Some(prev_dir) = dir.version_dir(&prev.version).local_path() else {
        return Err("the data directory is an object store, where a run rewrites every table".into());
    };
    for def in TABLES.iter() {
        chunk_files(def, &prev_dir)?;
    }
    Ok(prev_dir)
}

/// The ids of the tagged items of the previous snapshot (found [`usable`]
/// in `prev_dir`), ascending.
pub async fn item_ids(prev_dir: &Path) -> Result<Vec<i64>> {
    let ctx = SessionContext::new();
    let path = prev_dir.join("_tagged_items");
    let opts = ParquetReadOptions::default().schema(&table("_tagged_items").expect("snapshot table").schema);
    ctx.register_parquet("items", path.to_string_lossy().as_ref(), opts)
        .await?;
    let mut ids = transform::int64_values(&ctx, "SELECT id FROM items").await?;
    ids.sort_unstable();
    Ok(ids)
}

/// The ids in `before` (ascending) that are not in `now`, or, if `now` holds
/// ids that `before` lacks (items committed late, below the previous
/// snapshot's highest id), how many.
pub fn gone_items(before: &[i64], mut now: Vec<i64>) -> std::result::Result<Vec<i64>, usize> {
    now.sort_unstable();
    let (mut gone, mut late) = (Vec::new(), 0);
    let (mut i, mut j) = (0, 0);
    while i < before.len() || j < now.len() {
        match (before.get(i), now.get(j)) {
            (Some(b), Some(n)) if b == n => (i, j) = (i + 1, j + 1),
            (Some(b), Some(n)) if b < n => {
                gone.push(*b);
                i += 1;
            }
            (Some(b), None) => {
                gone.push(*b);
                i += 1;
            }
            _ => {
                late += 1;
                j += 1;
            }
        }
    }
    if late > 0 { Err(late) } else { Ok(gone) }
}

/// Registers the tables of `prev` (found [`usable`] in `prev_dir`) as
/// `prev_<table>`, derives the small tables from the source tables
/// registered in `ctx` (as `snap_<table>`, in memory), finds the changed
/// chats and reads the previous turns the run looks up (of those chats, of
/// the chats of the new messages, registered as `new_chat_chatmessage`, and
/// of the messages an item added since tags).
///
/// With `gone_items`, the run read only the tagged items added since `prev`
/// (registered as `new_annotations_customtaggeditem`): the source's items
/// are then the previous snapshot's, less those ids, plus those. With
/// `session_ids` (the id of every source session), the run read only the
/// sessions that can have changed since ([`crate::postgres::Rows`]): the
/// derived sessions are then the previous snapshot's, less those read and
/// those whose id is gone, plus those read, derived again.
pub async fn prepare(
    ctx: &SessionContext,
    dir: &DataDir,
    prev: Manifest,
    prev_dir: PathBuf,
    gone_items: Option<Vec<i64>>,
    session_ids: Option<Vec<i64>>,
) -> Result<Plan> {
    let step = Step::new();
    register_all(ctx, dir, &prev.version, "prev_")?;
    let gone_items = match gone_items {
        Some(gone) => {
            register_ids(ctx, "items_gone", gone.clone())?;
            let cols = columns(table("_tagged_items").expect("snapshot table"));
            materialize(
                ctx,
                "annotations_customtaggeditem",
                &format!(
                    "SELECT {cols} FROM prev__tagged_items i
                         WHERE NOT EXISTS (SELECT 1 FROM items_gone g WHERE g.id = i.id)
                     UNION ALL SELECT {cols} FROM new_annotations_customtaggeditem"
                ),
            )
            .await?;
            Some(Arc::new(IdSet::new(&gone)))
        }
        None => None,
    };
    // Scans of the previous snapshot that a join narrows to a few chats or
    // messages then decode the join column first and the rest only for
    // matching rows.
    ctx.sql("SET datafusion.execution.parquet.pushdown_filters = true")
        .await?
        .collect()
        .await?;
    for (name, sql) in [
        ("teams", transform::TEAMS_SQL),
        ("chatbots", transform::CHATBOTS_SQL),
        ("participants", transform::PARTICIPANTS_SQL),
        ("tags", transform::TAGS_SQL),
    ] {
        materialize(ctx, &format!("snap_{name}"), sql).await?;
    }
    let session_cols = columns(table("sessions").expect("sessions"));
    // The sessions derived from the source rows read (all, or those that
    // can have changed) as `read_sessions`, and the previous ones to
    // compare them with: all, or those read and those gone.
    let diff_prev = match session_ids {
        None => {
            materialize(ctx, "read_sessions", transform::SESSIONS_SQL).await?;
            create_view(ctx, "snap_sessions", "SELECT * FROM read_sessions").await?;
            "prev_sessions"
        }
        Some(now) => {
            materialize(
                ctx,
                "read_sessions",
                &format!("SELECT team_id, {session_cols} FROM ({})", transform::SESSIONS_SQL),
            )
            .await?;
            let now = IdSet::new(&now);
            let mut replaced: Vec<i64> = transform::int64_values(ctx, "SELECT session_id FROM prev_sessions")
                .await?
                .into_iter()
                .filter(|id| !now.contains(*id))
                .collect();
            replaced.extend(
                transform::int64_values(ctx, "SELECT id FROM experiments_experimentsession WHERE id IS NOT NULL")
                    .await?,
            );
            register_ids(ctx, "sessions_replaced", replaced)?;
            // Only the columns the messages, the session tags and the
            // anomalies read (the rows of the sessions added or changed
            // are taken from `read_sessions`): without the external ids
            // and channels, this took 225 ms instead of 350 at scale m.
            materialize(
                ctx,
                "snap_sessions",
                &kept_and_new(
                    SNAP_SESSION_COLUMNS,
                    "prev_sessions",
                    "NOT EXISTS (SELECT 1 FROM sessions_replaced r WHERE r.id = prev_sessions.session_id)",
                    "read_sessions",
                ),
            )
            .await?;
            create_view(
                ctx,
                "prev_sessions_replaced",
                "SELECT * FROM prev_sessions WHERE session_id IN (SELECT id FROM sessions_replaced)",
            )
            .await?;
            "prev_sessions_replaced"
        }
    };
    step.log("derived the small tables");
    // Sessions added, deleted or changed, with whether a turn or a message
    // anomaly of their chat can change (one join on the session id).
    let key_cols = SESSION_KEY.split(", ").collect::<Vec<_>>();
    materialize(
        ctx,
        "sessions_diff",
        &format!(
            "SELECT n.team_id AS n_team, n.created_at AS n_created, n.chat_id AS n_chat, n.session_id AS n_session,
                    p.team_id AS p_team, p.created_at AS p_created, p.chat_id AS p_chat, p.session_id AS p_session,
                    (n.session_id IS NULL OR p.session_id IS NULL OR {}) AS turns_changed
             FROM read_sessions n FULL JOIN {diff_prev} p ON n.session_id = p.session_id
             WHERE n.session_id IS NULL OR p.session_id IS NULL OR {}",
            differs(&key_cols),
            differs(&row_columns(table("sessions").expect("sessions")))
        ),
    )
    .await?;
    materialize(
        ctx,
        "x_chats",
        "SELECT DISTINCT chat_id FROM (
             SELECT n_chat AS chat_id FROM sessions_diff WHERE turns_changed
             UNION ALL SELECT p_chat FROM sessions_diff WHERE turns_changed
             UNION ALL SELECT chat_id FROM prev_sessions s
                 WHERE NOT EXISTS (SELECT 1 FROM chat_chat c WHERE c.id = s.chat_id)
             UNION ALL SELECT chat_id FROM prev__other_messages m
                 WHERE NOT EXISTS (SELECT 1 FROM chat_chat c WHERE c.id = m.chat_id))
         WHERE chat_id IS NOT NULL",
    )
    .await?;
    step.log("found the changed chats");
    // Tagged items compared with the previous message tags, for the items
    // added since on turns that stay.
    materialize(ctx, "message_items", transform::MESSAGE_ITEMS_SQL).await?;
    materialize(
        ctx,
        "tags_diff",
        "SELECT p.team_id AS p_team, p.created_at AS p_created, p.tag_id AS p_tag, p.message_id AS p_message,
                i.team_id AS i_team, i.tag_id AS i_tag, i.message_id AS i_message
         FROM prev_message_tags p FULL JOIN message_items i
           ON i.team_id = p.team_id AND i.tag_id = p.tag_id AND i.message_id = p.message_id
         WHERE p.message_id IS NULL OR i.message_id IS NULL",
    )
    .await?;
    step.log("message tags: compared with the previous ones");
    // Every previous turn the run looks up, in one read (crate::scan):
    // those of the changed chats (derived again), of the chats with new
    // messages (their sessions' slots are rolled up again from all their
    // turns), and of the messages an item added since tags.
    let turns = table("turns").expect("turns");
    let chats = IdSet::read(
        ctx,
        "SELECT chat_id FROM x_chats UNION ALL SELECT chat_id FROM new_chat_chatmessage",
    )
    .await?;
    let tagged = IdSet::read(ctx, "SELECT i_message FROM tags_diff WHERE p_message IS NULL").await?;
    let files = chunk_files(turns, &prev_dir)
        .map_err(Error::PrevSnapshot)?
        .into_iter()
        .flat_map(|(chunk, paths)| paths.into_iter().map(move |p| (chunk.team.expect("partitioned"), p)))
        .collect();
    let keys = vec![("chat_id", Arc::new(chats)), ("message_id", Arc::new(tagged))];
    ctx.deregister_table("touched_turns")?;
    ctx.register_table("touched_turns", Arc::new(scan::matching(turns, files, keys).await?))?;
    step.log("read the previous turns looked up");
    materialize(
        ctx,
        "x_prev_turns",
        &format!(
            "SELECT team_id, {} FROM touched_turns WHERE chat_id IN (SELECT chat_id FROM x_chats)",
            columns(turns)
        ),
    )
    .await?;
    materialize(
        ctx,
        "x_prev_other",
        "SELECT * FROM prev__other_messages WHERE chat_id IN (SELECT chat_id FROM x_chats)",
    )
    .await?;
    let gone = ctx
        .sql(
            "SELECT count(*), CAST(COALESCE(sum(CAST(message_id AS DECIMAL(38, 0))), 0) AS VARCHAR) FROM (
                 SELECT message_id, chat_id FROM x_prev_turns UNION ALL SELECT message_id, chat_id FROM x_prev_other) m
             WHERE NOT EXISTS (SELECT 1 FROM chat_chat c WHERE c.id = m.chat_id)",
        )
        .await?
        .collect()
        .await?;
    let count = gone[0].column(0).as_primitive::<Int64Type>().value(0) as u64;
    let sum = cast(gone[0].column(1), &DataType::Utf8)?;
    let removed = (count, parse_sum(sum.as_string::<i32>().value(0))?);
    step.log("the changed chats' previous messages");
    Ok(Plan {
        prev,
        prev_dir,
        removed,
        gone_items,
    })
}

/// Builds the new version `version` (of a local data directory, see
/// [`prepare`]) from the plan and the new messages registered as
/// `new_chat_chatmessage`. Returns what was written and the new message
/// watermark.
pub async fn run(ctx: &SessionContext, plan: &Plan, version: &VersionDir) -> Result<(Transformed, MessageWatermark)> {
    let vpath = local(version);
    let vdir = vpath.as_path();
    let def = |name| table(name).expect("snapshot table");
    let step = Step::new();
    let items = tagged_items(ctx, plan, version).await?;
    // The messages derived again: kept messages of changed chats, and new ones.
    create_view(
        ctx,
        "chat_chatmessage",
        "SELECT message_id AS id, chat_id, message_type, created_at FROM x_prev_turns
             WHERE chat_id IN (SELECT id FROM chat_chat)
         UNION ALL SELECT message_id AS id, chat_id, message_type, created_at FROM x_prev_other
             WHERE chat_id IN (SELECT id FROM chat_chat)
         UNION ALL SELECT id, chat_id, message_type, created_at FROM new_chat_chatmessage",
    )
    .await?;
    materialize(ctx, "d_turns", &messages::turns_sql()).await?;
    materialize(ctx, "d_other", &messages::others_sql()).await?;
    step.log("derived new and changed messages");

    let teams = def("teams");
    let changed = format!("SELECT count(*) FROM ({})", changed_rows_sql(teams, false));
    if count(ctx, &changed).await? == 0 {
        link_except(teams, &plan.prev_dir, vdir, &BTreeSet::new())?;
    } else {
        write_table(ctx.table("snap_teams").await?, teams, version).await?;
    }
    for name in ["chatbots", "participants", "tags"] {
        let changed = changed_teams_by_id(ctx, def(name)).await?;
        write_changed(ctx, def(name), &changed, &plan.prev_dir, version).await?;
    }
    let changed = chunk_set(
        ctx,
        "SELECT n_team, date_trunc('month', n_created) FROM sessions_diff WHERE n_team IS NOT NULL
         UNION SELECT p_team, date_trunc('month', p_created) FROM sessions_diff WHERE p_team IS NOT NULL",
    )
    .await?;
    // Their months, patched: the sessions added or changed replace those
    // changed or deleted.
    let sessions = def("sessions");
    let new = ctx
        .sql(&format!(
            "SELECT team_id, {} FROM read_sessions WHERE session_id IN (SELECT n_session FROM sessions_diff)",
            columns(sessions)
        ))
        .await?;
    let drop = first_in(Arc::new(IdSet::read(ctx, "SELECT p_session FROM sessions_diff").await?));
    patch_chunks(new, sessions, &changed, &["session_id"], drop, &plan.prev_dir, vdir).await?;
    step.log("small tables");

    // Turns and their rollup, month by month.
    let turns = def("turns");
    let turn_cols = columns(turns);
    let a_turns = chunk_set(
        ctx,
        "SELECT DISTINCT team_id, date_trunc('month', created_at) FROM (
             SELECT team_id, created_at FROM x_prev_turns UNION ALL SELECT team_id, created_at FROM d_turns)",
    )
    .await?;
    // Turns and other messages of the changed chats go.
    let changed_chats = Arc::new(IdSet::read(ctx, "SELECT chat_id FROM x_chats").await?);
    let new = ctx.table("d_turns").await?;
    let drop = first_in(changed_chats.clone());
    let patched = patch_chunks(new, turns, &a_turns, &["chat_id"], drop, &plan.prev_dir, vdir).await?;
    step.log(&format!("turns: {} team-months rewritten ({patched})", a_turns.len()));
    // A session's slots are linked across months (`prev_slot`), so a session
    // with any new or changed turn is rolled up again from all its turns
    // (kept ones from the previous version, plus d_turns), and every month
    // holding one of its slots, before or after, is rewritten; the other
    // sessions' slots in those months are kept as they were.
    let slots_def = def("turn_slots");
    materialize(
        ctx,
        "t_sessions",
        "SELECT DISTINCT session_id FROM (
             SELECT session_id FROM d_turns UNION ALL SELECT session_id FROM x_prev_turns)",
    )
    .await?;
    let mut a_slots = chunk_set(
        ctx,
        "SELECT DISTINCT team_id, date_trunc('month', slot) FROM prev_turn_slots
         WHERE session_id IN (SELECT session_id FROM t_sessions)",
    )
    .await?;
    a_slots.extend(a_turns.iter().copied());
    // `touched_turns` holds every kept turn of those sessions: a kept
    // turn's chat is its session's chat (a session whose chat changed made
    // both chats changed ones), which is the chat of a message derived
    // again, so a changed chat or one with new messages.
    create_view(
        ctx,
        "snap_turns",
        &kept_and_new(
            &turn_cols,
            "touched_turns",
            &format!(
                "session_id IN (SELECT session_id FROM d_turns) AND {}",
                kept_chat("touched_turns")
            ),
            "d_turns",
        ),
    )
    .await?;
    ctx.deregister_table("d_slots")?;
    ctx.register_table(
        "d_slots",
        Arc::new(slots::rollup_table(ctx.table("snap_turns").await?).await?),
    )?;
    step.log("turn slots: sessions with new or changed turns rolled up again");
    let new = ctx
        .sql(&format!("SELECT team_id, {} FROM d_slots", columns(slots_def)))
        .await?;
    let drop = first_in(Arc::new(IdSet::read(ctx, "SELECT session_id FROM t_sessions").await?));
    let patched = patch_chunks(new, slots_def, &a_slots, &["session_id"], drop, &plan.prev_dir, vdir).await?;
    step.log(&format!(
        "turn slots: {} team-months rewritten ({patched})",
        a_slots.len()
    ));

    // Message tags: months whose turns changed, lost a tag, or gained one,
    // patched from their previous rows (see the module docs).
    let tag_cols = columns(def("message_tags"));
    // Items that tagged no turn before and now tag a turn that stays.
    materialize(
        ctx,
        "tags_added",
        "SELECT t.team_id, d.i_tag AS tag_id, t.message_id, t.session_id, t.chatbot_id, t.participant_id,
                t.platform, t.message_type, t.created_at
         FROM touched_turns t
         JOIN tags_diff d ON d.i_message = t.message_id AND d.i_team = t.team_id
         WHERE d.p_message IS NULL AND NOT EXISTS (SELECT 1 FROM x_chats x WHERE x.chat_id = t.chat_id)",
    )
    .await?;
    let mut a_tags = chunk_set(
        ctx,
        "SELECT p_team, date_trunc('month', p_created) FROM tags_diff WHERE p_team IS NOT NULL
         UNION SELECT team_id, date_trunc('month', created_at) FROM tags_added",
    )
    .await?;
    a_tags.extend(a_turns.iter().copied());
    step.log("message tags: found the tags added to kept turns");
    // Turns derived again: every item on them, as a full run joins them.
    create_view(ctx, "snap_turns", "SELECT * FROM d_turns").await?;
    let new = ctx
        .sql(&format!(
            "SELECT team_id, {tag_cols} FROM tags_added UNION ALL SELECT * FROM ({})",
            transform::MESSAGE_TAGS_SQL
        ))
        .await?;
    // Tags of turns derived again, and of items gone.
    let derived = IdSet::read(ctx, "SELECT message_id FROM x_prev_turns").await?;
    let mut gone = HashSet::new();
    for b in ctx
        .sql("SELECT p_tag, p_message FROM tags_diff WHERE i_message IS NULL")
        .await?
        .collect()
        .await?
    {
        let (tag, message) = (
            b.column(0).as_primitive::<Int64Type>(),
            b.column(1).as_primitive::<Int64Type>(),
        );
        gone.extend(tag.values().iter().copied().zip(message.values().iter().copied()));
    }
    let drop = Arc::new(move |v: &[i64]| derived.contains(v[1]) || gone.contains(&(v[0], v[1])));
    let patched = patch_chunks(
        new,
        def("message_tags"),
        &a_tags,
        &["tag_id", "message_id"],
        drop,
        &plan.prev_dir,
        vdir,
    )
    .await?;
    step.log(&format!(
        "message tags: {} team-months patched ({patched})",
        a_tags.len()
    ));

    materialize(ctx, "snap_session_tags", transform::SESSION_TAGS_SQL).await?;
    let changed = changed_chunks(ctx, def("session_tags")).await?;
    write_changed(ctx, def("session_tags"), &changed, &plan.prev_dir, version).await?;
    let other = def("_other_messages");
    if count(
        ctx,
        "SELECT count(*) FROM (SELECT chat_id FROM x_prev_other UNION ALL SELECT chat_id FROM d_other)",
    )
    .await?
        == 0
    {
        link_except(other, &plan.prev_dir, vdir, &BTreeSet::new())?;
    } else {
        let new = ctx.sql(&format!("SELECT {} FROM d_other", columns(other))).await?;
        let all = BTreeSet::from([Chunk {
            team: None,
            month: None,
        }]);
        let drop = first_in(changed_chats);
        patch_chunks(new, other, &all, &["chat_id"], drop, &plan.prev_dir, vdir).await?;
    }
    step.log("session tags and other messages");

    let anomalies = anomalies(ctx, plan, version).await?;
    step.log("anomalies");
    if let Some(patching) = items {
        patching
            .await
            .map_err(|e| Error::Copy(format!("writing the tagged items failed: {e}")))??;
        step.log("tagged items");
    }

    let mut tables = BTreeMap::new();
    for def in TABLES.iter() {
        tables.insert(def.name.to_string(), count_rows(&vdir.join(def.name))?);
    }
    let new = crate::run::watermark(ctx, "new_chat_chatmessage").await?;
    let (kept_count, kept_sum) = plan.kept()?;
    let watermark = MessageWatermark {
        max_id: new.max_id.max(plan.prev.watermark.max_id),
        count: kept_count + new.count,
        id_sum: (parse_sum(&kept_sum)? + parse_sum(&new.id_sum)?).to_string(),
    };
    Ok((Transformed { tables, anomalies }, watermark))
}

/// Writes `_tagged_items`: from every item if all were read; else patched
/// from the previous ones in a task of its own (returned), which runs beside
/// the rest of the run, as nothing else reads what it writes.
async fn tagged_items(
    ctx: &SessionContext,
    plan: &Plan,
    version: &VersionDir,
) -> Result<Option<tokio::task::JoinHandle<Result<()>>>> {
    let items = table("_tagged_items").expect("snapshot table");
    let Some(gone) = plan.gone_items.clone() else {
        write_table(ctx.sql(transform::TAGGED_ITEMS_SQL).await?, items, version).await?;
        return Ok(None);
    };
    let new = ctx
        .sql(&format!(
            "SELECT {} FROM new_annotations_customtaggeditem WHERE id IS NOT NULL",
            columns(items)
        ))
        .await?;
    let (prev_dir, vdir) = (plan.prev_dir.clone(), local(version));
    if gone.is_empty() && new.clone().count().await? == 0 {
        link_except(items, &prev_dir, &vdir, &BTreeSet::new())?;
        return Ok(None);
    }
    Ok(Some(tokio::spawn(async move {
        let all = BTreeSet::from([Chunk {
            team: None,
            month: None,
        }]);
        patch_chunks(new, items, &all, &["id"], first_in(gone), &prev_dir, &vdir).await?;
        Ok(())
    })))
}

/// Every anomaly count of the new snapshot (see the module docs).
async fn anomalies(ctx: &SessionContext, plan: &Plan, version: &VersionDir) -> Result<BTreeMap<String, u64>> {
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    // The per-message kinds over the messages derived again...
    let derived = messages::count(ctx).await?;
    for (kind, n) in derived.kinds() {
        let before = plan.prev.anomalies.get(kind).copied().unwrap_or(0) as i64;
        *counts.entry(kind.to_string()).or_default() += before + n as i64;
    }
    // ...minus the same kinds over their previous version.
    let old = transform::etl_context()?;
    old.register_table("snap_sessions", ctx.table_provider("prev_sessions").await?)?;
    old.register_table("x_prev_turns", ctx.table_provider("x_prev_turns").await?)?;
    old.register_table("x_prev_other", ctx.table_provider("x_prev_other").await?)?;
    create_view(
        &old,
        "chat_chatmessage",
        "SELECT message_id AS id, chat_id, message_type, created_at FROM x_prev_turns
         UNION ALL SELECT message_id AS id, chat_id, message_type, created_at FROM x_prev_other",
    )
    .await?;
    for (kind, n) in messages::count(&old).await?.kinds() {
        *counts.entry(kind.to_string()).or_default() -= n as i64;
    }
    // The other kinds in full; the dangling tagged items over the message
    // ids of the new snapshot: the previous ones (as the previous run stored
    // them, else read from its tables), less those of the changed chats,
    // plus those derived again. The new ids are stored for the next run.
    for (kind, n) in transform::anomalies(ctx, transform::ANOMALIES_SQL).await? {
        *counts.entry(kind).or_default() += n;
    }
    let prev = &plan.prev.watermark;
    let prev = match dangling::stored(&plan.prev_dir, prev.count, parse_sum(&prev.id_sum)?) {
        Some(ids) => ids,
        None => {
            tracing::info!("incremental: no usable stored message ids, reading them from the previous snapshot");
            IdSet::read(
                ctx,
                "SELECT message_id FROM prev_turns UNION ALL SELECT message_id FROM prev__other_messages",
            )
            .await?
        }
    };
    let messages = dangling::Messages::patched(
        ctx,
        prev,
        "SELECT message_id FROM x_prev_turns UNION ALL SELECT message_id FROM x_prev_other",
        "SELECT id FROM chat_chatmessage",
    )
    .await?;
    messages.save(version).await?;
    counts.insert(
        dangling::KIND.to_string(),
        dangling::count(ctx, &messages).await? as i64,
    );
    Ok(counts
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| (k, n as u64))
        .collect())
}

/// Logs the time of each part of a run.
struct Step(std::cell::Cell<std::time::Instant>);

impl Step {
    fn new() -> Self {
        Step(std::cell::Cell::new(std::time::Instant::now()))
    }

    fn log(&self, what: &str) {
        let now = std::time::Instant::now();
        let ms = now.duration_since(self.0.replace(now)).as_millis() as u64;
        tracing::info!(ms, "incremental: {what}");
    }
}

/// The condition that a row of `table` (with a `chat_id`) is not of a
/// changed chat. `NOT EXISTS` rather than `NOT IN`: the two agree here (no
/// chat id is NULL), but DataFusion plans `NOT IN` as a null-aware anti
/// join that collects the whole outer table, millions of kept rows, into
/// one hash table, where `NOT EXISTS` builds on the few changed chats.
fn kept_chat(table: &str) -> String {
    format!("NOT EXISTS (SELECT 1 FROM x_chats x WHERE x.chat_id = {table}.chat_id)")
}

/// The rows of `kept` that `keep` holds on to, then every row of `new`: a
/// rewritten table's rows, `team_id` first and then `cols`.
fn kept_and_new(cols: &str, kept: &str, keep: &str, new: &str) -> String {
    format!("SELECT team_id, {cols} FROM {kept} WHERE {keep} UNION ALL SELECT team_id, {cols} FROM {new}")
}

/// The table's file columns, comma-separated.
fn columns(def: &TableDef) -> String {
    def.schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `sql` and keeps its result in memory as the table `name`, split
/// over the context's partitions.
async fn materialize(ctx: &SessionContext, name: &str, sql: &str) -> Result<()> {
    let df = ctx.sql(sql).await?;
    let batches = df.clone().collect().await?;
    // The batches' own schema (nullability may be tighter than the plan's).
    let schema = batches
        .first()
        .map_or_else(|| df.schema().inner().clone(), |b| b.schema());
    let n = ctx.copied_config().target_partitions().max(1);
    let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(); n];
    for (i, b) in batches.into_iter().enumerate() {
        parts[i % n].push(b);
    }
    ctx.deregister_table(name)?;
    ctx.register_table(name, Arc::new(MemTable::try_new(schema, parts)?))?;
    Ok(())
}

/// The chunks named by the rows of `sql`: `(team_id)` or `(team_id, month)`.
async fn chunk_set(ctx: &SessionContext, sql: &str) -> Result<BTreeSet<Chunk>> {
    let mut out = BTreeSet::new();
    for b in ctx.sql(sql).await?.collect().await? {
        let teams = b.column(0).as_primitive::<Int64Type>();
        let months = if b.num_columns() > 1 {
            Some(cast(b.column(1), &timestamp_type())?)
        } else {
            None
        };
        for i in 0..b.num_rows() {
            let month = months
                .as_ref()
                .map(|m| month_of(m.as_primitive::<TimestampMicrosecondType>().value(i)).0);
            out.insert(Chunk {
                team: Some(teams.value(i)),
                month,
            });
        }
    }
    Ok(out)
}

/// The files of a table in a version, by chunk; an error naming the reason
/// if a file does not follow the chunked layout.
fn chunk_files(def: &TableDef, version_dir: &Path) -> std::result::Result<BTreeMap<Chunk, Vec<PathBuf>>, String> {
    let root = version_dir.join(def.name);
    let mut out: BTreeMap<Chunk, Vec<PathBuf>> = BTreeMap::new();
    let list = |dir: &Path| -> std::result::Result<Vec<PathBuf>, String> {
        let mut files = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| format!("listing {}: {e}", dir.display()))? {
            let path = entry.map_err(|e| format!("listing {}: {e}", dir.display()))?.path();
            if path.extension().is_some_and(|e| e == "parquet") {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
    };
    if !def.partitioned {
        if !root.is_dir() {
            return Err(format!(
                "the previous snapshot has no {} (an older ocs-dash wrote it)",
                def.name
            ));
        }
        out.insert(
            Chunk {
                team: None,
                month: None,
            },
            list(&root)?,
        );
        return Ok(out);
    }
    let chunked = chunk_column(def).is_some();
    if !root.is_dir() {
        return Ok(out);
    }
    for entry in fs::read_dir(&root).map_err(|e| format!("listing {}: {e}", root.display()))? {
        let entry = entry.map_err(|e| format!("listing {}: {e}", root.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(team) = name
            .strip_prefix(&format!("{TEAM_COLUMN}="))
            .and_then(|t| t.parse::<i64>().ok())
        else {
            continue;
        };
        for file in list(&entry.path())? {
            let month = if chunked {
                let name = file.file_name().unwrap_or_default().to_string_lossy();
                Some(file_month(&name).ok_or_else(|| "the previous snapshot has the old file layout".to_string())?)
            } else {
                None
            };
            out.entry(Chunk {
                team: Some(team),
                month,
            })
            .or_default()
            .push(file);
        }
    }
    Ok(out)
}

/// Registers `ids` in memory as the table `name` with one column, `id`.
fn register_ids(ctx: &SessionContext, name: &str, ids: Vec<i64>) -> Result<()> {
    let batch = RecordBatch::try_from_iter([("id", Arc::new(Int64Array::from(ids)) as ArrayRef)])?;
    ctx.deregister_table(name)?;
    ctx.register_table(name, Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]])?))?;
    Ok(())
}

/// A [`Drop`] test: the row's first drop column is in `set`.
fn first_in(set: Arc<IdSet>) -> DropTest {
    Arc::new(move |v: &[i64]| set.contains(v[0]))
}

/// Writes the `chunks` of a table into `vdir`, each from its previous files
/// less the rows `drop` picks (from their `drop_columns`), plus the rows of
/// `new` (`team_id` first if the table is partitioned, then its columns) in
/// it ([`crate::patch`]); hard-links every other chunk. [`ENCODERS`] chunks
/// at a time.
async fn patch_chunks(
    new: DataFrame,
    def: &'static TableDef,
    chunks: &BTreeSet<Chunk>,
    drop_columns: &'static [&'static str],
    drop: DropTest,
    prev_dir: &Path,
    vdir: &Path,
) -> Result<Patched> {
    let order = sort_keys(def).map(|c| col(c).sort(true, false)).collect();
    let chunk_col = chunk_column(def).map(|c| 1 + def.schema.index_of(c).expect("chunk column in schema"));
    let mut new_rows: BTreeMap<Chunk, Vec<RecordBatch>> = BTreeMap::new();
    // Links between a session's slots, as the writer fills them: the new
    // rows hold every slot of their sessions.
    let mut links = SessionLinks::for_table(def);
    for batch in new.sort(order)?.collect().await? {
        let batch = match links.as_mut() {
            Some(links) => links.fill(batch)?,
            None => batch,
        };
        for (chunk, rows) in split_into_chunks(&batch, def.partitioned, chunk_col) {
            new_rows.entry(chunk).or_default().push(rows);
        }
    }
    let mut files = chunk_files(def, prev_dir).map_err(Error::PrevSnapshot)?;
    let jobs: Vec<_> = chunks
        .iter()
        .map(|c| {
            let out = chunk_dir(&vdir.join(def.name), c.team);
            (
                files.remove(c).unwrap_or_default(),
                c.month,
                new_rows.remove(c).unwrap_or_default(),
                out,
            )
        })
        .collect();
    let done = tokio::task::spawn_blocking(move || {
        let done = on_workers(jobs, |(files, month, new, out)| {
            let change = Change {
                drop: Some(Drop {
                    columns: drop_columns,
                    test: drop.as_ref(),
                }),
                new,
            };
            patch_chunk(def, &files, month, change, &out)
        })?;
        Ok::<_, Error>(done.into_iter().fold(Patched::default(), |all, one| all + one))
    })
    .await
    .map_err(|e| Error::io("patching a snapshot table", std::io::Error::other(e)))??;
    link_except(def, prev_dir, vdir, chunks)?;
    Ok(done)
}

/// The rows in which `snap_<table>` and `prev_<table>` differ (with
/// `team_id` first if `team`).
fn changed_rows_sql(def: &TableDef, team: bool) -> String {
    let (name, cols) = (def.name, columns(def));
    let cols = if team { format!("team_id, {cols}") } else { cols };
    format!(
        "(SELECT {cols} FROM snap_{name} EXCEPT SELECT {cols} FROM prev_{name})
         UNION ALL
         (SELECT {cols} FROM prev_{name} EXCEPT SELECT {cols} FROM snap_{name})"
    )
}

/// `team_id` and the file columns of a table: a row as the comparisons
/// with the previous version see it.
fn row_columns(def: &TableDef) -> Vec<&str> {
    std::iter::once(TEAM_COLUMN)
        .chain(def.schema.fields().iter().map(|f| f.name().as_str()))
        .collect()
}

/// The condition that the joined rows `n` and `p` differ in one of `cols`.
fn differs(cols: &[&str]) -> String {
    cols.iter()
        .map(|c| format!("(n.{c} IS DISTINCT FROM p.{c})"))
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// The teams in which a per-team table derived in full in memory
/// (`snap_<table>`) differs from the previous version, for a table whose
/// first sort column is a unique id (the source row's primary key): one
/// join on that id, where `EXCEPT` both ways hashed every column of every
/// row twice (230 ms for the 195 k participants of scale m).
async fn changed_teams_by_id(ctx: &SessionContext, def: &TableDef) -> Result<BTreeSet<Chunk>> {
    let (name, id) = (def.name, def.sort_by[0]);
    let diff = format!(
        "SELECT n.team_id AS n_team, p.team_id AS p_team
         FROM snap_{name} n FULL JOIN prev_{name} p ON n.{id} = p.{id}
         WHERE n.{id} IS NULL OR p.{id} IS NULL OR {}",
        differs(&row_columns(def))
    );
    let mut teams = BTreeSet::new();
    for b in ctx.sql(&diff).await?.collect().await? {
        for column in b.columns() {
            teams.extend(column.as_primitive::<Int64Type>().iter().flatten().map(|team| Chunk {
                team: Some(team),
                month: None,
            }));
        }
    }
    Ok(teams)
}

/// The single count `sql` returns.
async fn count(ctx: &SessionContext, sql: &str) -> Result<i64> {
    let batches = ctx.sql(sql).await?.collect().await?;
    Ok(batches[0].column(0).as_primitive::<Int64Type>().value(0))
}

/// The chunks in which a table derived in full in memory (`snap_<table>`)
/// differs from the previous version.
async fn changed_chunks(ctx: &SessionContext, def: &TableDef) -> Result<BTreeSet<Chunk>> {
    let key = match chunk_column(def) {
        Some(c) => format!("team_id, date_trunc('month', {c}) AS month"),
        None => "team_id".to_string(),
    };
    chunk_set(
        ctx,
        &format!("SELECT DISTINCT {key} FROM ({})", changed_rows_sql(def, true)),
    )
    .await
}

/// Writes the `changed` chunks of a table derived in full in memory
/// (`snap_<table>`) and links the others.
async fn write_changed(
    ctx: &SessionContext,
    def: &'static TableDef,
    changed: &BTreeSet<Chunk>,
    prev_dir: &Path,
    version: &VersionDir,
) -> Result<()> {
    let name = def.name;
    let ts = |v: i64| lit(utc_micros(v));
    // Rows of the changed teams (and months).
    let mut keep = lit(false);
    for chunk in changed {
        let mut this = col(TEAM_COLUMN).eq(lit(chunk.team.expect("partitioned")));
        if let (Some(c), Some(m)) = (chunk_column(def), chunk.month) {
            let start = month_start(m);
            this = this.and(col(c).gt_eq(ts(start))).and(col(c).lt(ts(month_of(start).1)));
        }
        keep = keep.or(this);
    }
    let df = ctx.table(format!("snap_{name}")).await?.filter(keep)?;
    write_table(df, def, version).await?;
    link_except(def, prev_dir, &local(version), changed)
}

/// The folder of a version of a local data directory.
fn local(version: &VersionDir) -> PathBuf {
    version
        .local_path()
        .expect("incremental plans exist for local data directories only")
}

/// Hard-links every file of a table in the previous version into the new
/// one, except the files of `skip`.
fn link_except(def: &TableDef, prev_dir: &Path, vdir: &Path, skip: &BTreeSet<Chunk>) -> Result<()> {
    let files = chunk_files(def, prev_dir).map_err(Error::PrevSnapshot)?;
    for (chunk, paths) in files {
        if skip.contains(&chunk) {
            continue;
        }
        let dir = chunk_dir(&vdir.join(def.name), chunk.team);
        fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        for from in paths {
            let to = dir.join(from.file_name().unwrap_or_default());
            fs::hard_link(&from, &to).map_err(|e| Error::io(format!("linking {}", to.display()), e))?;
        }
    }
    Ok(())
}

/// Rows in every Parquet file of a table folder, from the file footers.
fn count_rows(dir: &Path) -> Result<u64> {
    let mut total = 0;
    if !dir.is_dir() {
        return Ok(0);
    }
    for entry in fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))? {
        let path = entry
            .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?
            .path();
        if path.is_dir() {
            total += count_rows(&path)?;
        } else if path.extension().is_some_and(|e| e == "parquet") {
            let file = fs::File::open(&path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
            let reader = parquet::file::reader::SerializedFileReader::new(file)?;
            total += parquet::file::reader::FileReader::metadata(&reader)
                .file_metadata()
                .num_rows() as u64;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::gone_items;

    #[test]
    fn gone_items_are_the_kept_ids_no_longer_read_and_late_ones_are_counted() {
        assert_eq!(gone_items(&[1, 2, 5, 9], vec![9, 1, 5]), Ok(vec![2]));
        assert_eq!(gone_items(&[1, 2], vec![]), Ok(vec![1, 2]));
        assert_eq!(gone_items(&[], vec![]), Ok(vec![]));
        // 3 and 0 were not kept: committed late.
        assert_eq!(gone_items(&[1, 2, 5], vec![5, 3, 0, 1]), Err(2));
    }
}
