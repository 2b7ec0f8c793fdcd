//! One more simulated day on a generated database, for incremental-ETL
//! tests and benchmarks.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

use super::buf::{CHATS, Ids, MESSAGES, Out, PARTICIPANTS, SESSIONS, TAGGED};
use super::pg::{PgSink, session_platform_column, sync_sequences};
use super::sim::{self, DAY, HOUR, MsgKind, Plat, SEC, SessionRow, TeamTags};
use super::words::{Uuids, mix64, pick};
use crate::error::{Error, Result};
use crate::source::SOURCES;

/// A recent counted session whose team, chatbot, channel and participant a
/// new session can follow.
#[derive(Debug)]
struct Template {
    team_id: i64,
    participant_id: i64,
    experiment_id: i64,
    channel_id: Option<i64>,
    participant_platform: String,
    platform: String,
}

/// Tagged items to insert: team, tag, content type, object, created.
type TaggedCols = (Vec<i64>, Vec<i64>, Vec<i32>, Vec<i32>, Vec<DateTime<Utc>>);

/// An existing session: (id, chat id, team id, chatbot id).
type Open = (i64, i64, i64, i64);

fn ts(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

/// Simulates one more day of activity on a database filled by
/// [`super::generate_into_postgres`]: new sessions, chats and messages over
/// the 24 h after the latest message (about 1/365 of the data set's volume,
/// ids continuing after the current max), new messages in some open
/// sessions, some open sessions ending (status -> complete, ended_at set),
/// some setup sessions becoming active, tags added to new and old
/// messages/chats and a few tagged items removed, and a few sessions deleted
/// together with their chat, messages and tagged items. All in one
/// transaction; deterministic from `seed` and the database's contents.
/// Returns rows touched per kind.
pub async fn simulate_day(database_url: &str, seed: u64) -> Result<BTreeMap<String, u64>> {
    let mut conn = PgConnection::connect(database_url).await.map_err(Error::Connect)?;
    let platform_column = session_platform_column(&mut conn).await?;
    sqlx::query("BEGIN").execute(&mut conn).await?;
    let mut rng = SmallRng::seed_from_u64(mix64(seed ^ 0xDA7_DA7));
    let mut touched: BTreeMap<String, u64> = BTreeMap::new();

    // ---- what is there
    let mut max = [0i64; 10];
    for (i, t) in SOURCES.iter().enumerate() {
        let sql = format!("SELECT COALESCE(max(id), 0)::int8 FROM {}", t.name);
        max[i] = sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&mut conn).await?;
    }
    let last: Option<DateTime<Utc>> = sqlx::query_scalar("SELECT max(created_at) FROM chat_chatmessage")
        .fetch_one(&mut conn)
        .await?;
    let day_start = last.unwrap_or_else(Utc::now).timestamp_micros() + SEC;
    let day_end = day_start + DAY;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_chatmessage")
        .fetch_one(&mut conn)
        .await?;
    let messages_day = (total / 365).max(20) as usize;
    let sessions_day = (messages_day / 10).max(3);

    let mut ct = [0i64; 2];
    for (slot, model) in ct.iter_mut().zip(["chat", "chatmessage"]) {
        let id: Option<i64> =
            sqlx::query_scalar("SELECT id::int8 FROM django_content_type WHERE app_label = 'chat' AND model = $1")
                .bind(model)
                .fetch_optional(&mut conn)
                .await?;
        *slot = id.ok_or_else(|| Error::NotOcs {
            missing: format!("django_content_type row ('chat', '{model}')"),
        })?;
    }
    let [ct_chat, ct_msg] = ct;

    let mut tags: HashMap<i64, TeamTags> = HashMap::new();
    let mut version_tags: HashMap<(i64, usize), i64> = HashMap::new();
    for row in sqlx::query("SELECT id, team_id, category::text, name::text FROM annotations_tag ORDER BY id")
        .fetch_all(&mut conn)
        .await?
    {
        let (id, team): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        let (category, name): (String, String) = (row.try_get(2)?, row.try_get(3)?);
        let t = tags.entry(team).or_default();
        match category.as_str() {
            "" => t.user.push(id),
            "bot_response" => t.bot_response.push(id),
            "safety_layer_response" => t.safety.push(id),
            "response_rating" => t.rating.push(id),
            "error" => t.error.push(id),
            "media_type" => t.media.push(id),
            "experiment_version" => {
                if let Some(k) = name.strip_prefix('v').and_then(|k| k.parse::<usize>().ok()) {
                    version_tags.insert((team, k), id);
                }
            }
            _ => {}
        }
    }
    for (team, t) in tags.iter_mut() {
        t.version = (1..).map_while(|k| version_tags.get(&(*team, k)).copied()).collect();
        // "thumbs up" before "thumbs down", as the generator made them.
        t.rating.sort_unstable();
    }
    let versions: HashMap<i64, usize> = sqlx::query(
        "SELECT working_version_id, count(*) FROM experiments_experiment
         WHERE working_version_id IS NOT NULL GROUP BY 1",
    )
    .fetch_all(&mut conn)
    .await?
    .into_iter()
    .map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<i64, _>(1)? as usize)))
    .collect::<Result<_, sqlx::Error>>()?;

    let session_platform = if platform_column { "s.platform, " } else { "" };
    let templates: Vec<Template> = sqlx::query(AssertSqlSafe(format!(
        "SELECT s.team_id, s.participant_id, s.experiment_id, s.experiment_channel_id, p.platform::text,
                COALESCE({session_platform}c.platform, p.platform)::text
         FROM experiments_experimentsession s
         JOIN experiments_participant p ON p.id = s.participant_id
         JOIN experiments_experiment e ON e.id = s.experiment_id
         LEFT JOIN channels_experimentchannel c ON c.id = s.experiment_channel_id
         WHERE s.status <> 'setup' AND NOT e.is_archived AND e.working_version_id IS NULL
           AND (c.id IS NULL OR NOT c.deleted)
         ORDER BY s.id DESC LIMIT 2000"
    )))
    .fetch_all(&mut conn)
    .await?
    .into_iter()
    .map(|r| {
        Ok(Template {
            team_id: r.try_get(0)?,
            participant_id: r.try_get(1)?,
            experiment_id: r.try_get(2)?,
            channel_id: r.try_get(3)?,
            participant_platform: r.try_get(4)?,
            platform: r.try_get(5)?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    let open = sessions_with_status(&mut conn, "active", (sessions_day * 4) as i64).await?;
    let setup = sessions_with_status(&mut conn, "setup", 200).await?;

    // ---- new rows
    let mut out = Out::new();
    let mut ids = Ids::after(max);
    let no_tags = TeamTags::default();
    let mut script = Vec::new();
    let mut chat_scratch = Vec::new();
    let mut text = String::new();
    // (time, order, chat, team, chatbot versions, kind)
    let mut messages: Vec<(i64, usize, i64, i64, usize, MsgKind)> = Vec::new();
    let push_script = |messages: &mut Vec<_>, script: &[(i64, MsgKind)], chat, team, v| {
        for &(t, kind) in script {
            if t < day_end {
                messages.push((t, messages.len(), chat, team, v, kind));
            }
        }
    };

    let new_sessions = if templates.is_empty() {
        0
    } else {
        sessions_day * 85 / 100
    };
    let mut starts: Vec<i64> = (0..new_sessions)
        .map(|_| {
            for _ in 0..64 {
                let t = day_start + rng.random_range(0..DAY);
                let (hour, weekday) = sim::local_hour_weekday(t, 2);
                if rng.random_bool(sim::rhythm(hour, weekday) / 1.3) {
                    return t;
                }
            }
            day_start + rng.random_range(0..DAY)
        })
        .collect();
    starts.sort_unstable();
    for t in starts {
        let tpl = pick(&mut rng, &templates);
        let participant = if rng.random_bool(0.6) {
            tpl.participant_id
        } else {
            let plat = Plat::parse(&tpl.participant_platform).unwrap_or(Plat::Web);
            // Counters above every id so far: unique against all identifiers.
            let counter = ids.next[PARTICIPANTS] as u64;
            sim::new_participant(
                &mut out,
                &mut ids,
                &mut rng,
                tpl.team_id,
                counter,
                plat,
                t - SEC,
                &mut text,
                Uuids::FromRowIds,
            )
        };
        let mut status = sim::pick_status(&mut rng);
        let n = sim::message_count(&mut rng, status);
        let greeting = status == "setup" || rng.random_bool(0.15);
        sim::script(&mut rng, t, n, greeting, &mut script);
        script.retain(|m| m.0 < day_end);
        let last = script.last().map_or(t, |m| m.0);
        let mut ended = sim::ended_at(&mut rng, status, last);
        if ended.is_some_and(|e| e >= day_end) {
            ended = None;
            if status == "complete" {
                status = "active";
            }
        }
        let platform = (platform_column && rng.random_bool(0.7)).then_some(tpl.platform.as_str());
        let id = ids.take(SESSIONS);
        let chat = ids.take(CHATS);
        sim::push_chat(&mut out, chat, tpl.team_id, t);
        sim::push_session(
            &mut out,
            &mut rng,
            Uuids::FromRowIds,
            &SessionRow {
                id,
                team_id: tpl.team_id,
                participant_id: participant,
                experiment_id: tpl.experiment_id,
                chat_id: chat,
                channel_id: tpl.channel_id,
                status,
                created: t,
                ended,
                platform,
            },
        );
        let team_tags = tags.get(&tpl.team_id).unwrap_or(&no_tags);
        if !script.is_empty() && rng.random_bool(0.1) {
            sim::chat_tags(&mut rng, team_tags, &mut chat_scratch);
            for &tag in &chat_scratch {
                let when = last + rng.random_range(SEC..HOUR);
                sim::push_tagged(&mut out, &mut ids, tpl.team_id, tag, ct_chat, chat, when);
            }
        }
        let v = versions.get(&tpl.experiment_id).copied().unwrap_or(0);
        push_script(&mut messages, &script, chat, tpl.team_id, v);
    }
    touched.insert("sessions_created".into(), new_sessions as u64);

    // Open sessions: some go on talking, others end; some setup sessions start.
    let mut order: Vec<usize> = (0..open.len()).collect();
    order.shuffle(&mut rng);
    let continued = (sessions_day / 10).max(1).min(order.len());
    let ending = (sessions_day * 15 / 100).max(1).min(order.len() - continued);
    let mut busy: BTreeSet<i64> = BTreeSet::new();
    for &i in &order[..continued] {
        let (id, chat, team, bot) = open[i];
        busy.insert(id);
        let start = day_start + rng.random_range(0..DAY - HOUR);
        let n = (sim::lognormal(&mut rng, 3.0, 0.7).round() as usize).max(1);
        sim::script(&mut rng, start, n, false, &mut script);
        push_script(
            &mut messages,
            &script,
            chat,
            team,
            versions.get(&bot).copied().unwrap_or(0),
        );
    }
    let mut end_ids = Vec::new();
    let mut end_times = Vec::new();
    for &i in &order[continued..continued + ending] {
        end_ids.push(open[i].0);
        end_times.push(ts(day_start + rng.random_range(0..DAY)));
    }
    let activated: Vec<Open> = setup
        .iter()
        .copied()
        .filter(|_| rng.random_bool(0.3))
        .take((sessions_day / 50).max(1))
        .collect();
    for &(id, chat, team, bot) in &activated {
        busy.insert(id);
        let start = day_start + rng.random_range(0..DAY - HOUR);
        let n = sim::message_count(&mut rng, "active");
        sim::script(&mut rng, start, n, true, &mut script);
        push_script(
            &mut messages,
            &script,
            chat,
            team,
            versions.get(&bot).copied().unwrap_or(0),
        );
    }
    busy.extend(end_ids.iter().copied());

    // Messages in time order, so their ids follow time.
    messages.sort_unstable();
    let mut tag_scratch = Vec::new();
    for &(t, _, chat, team, v, kind) in &messages {
        let id = ids.take(MESSAGES);
        sim::push_message(&mut out, id, chat, kind, t);
        sim::message_tags(&mut rng, tags.get(&team).unwrap_or(&no_tags), kind, v, &mut tag_scratch);
        for &(tag, delay) in &tag_scratch {
            sim::push_tagged(&mut out, &mut ids, team, tag, ct_msg, id, t + delay);
        }
    }

    let mut sink = PgSink::new(conn, seed, platform_column).with_uuids(Uuids::FromRowIds);
    let rows = out.flush_all(&mut sink).await?;
    let mut conn = sink.into_connection();
    for (table, key) in [
        ("experiments_participant", "participants_created"),
        ("chat_chat", "chats_created"),
        ("chat_chatmessage", "messages_created"),
        ("annotations_customtaggeditem", "tagged_items_created"),
    ] {
        touched.insert(key.into(), rows.get(table).copied().unwrap_or(0));
    }
    touched.insert("sessions_continued".into(), continued as u64);

    // ---- updates
    let r = sqlx::query(
        "UPDATE experiments_experimentsession s
         SET status = 'complete',
             ended_at = GREATEST(v.ended, (SELECT max(m.created_at) FROM chat_chatmessage m
                                           WHERE m.chat_id = s.chat_id) + interval '90 seconds'),
             updated_at = GREATEST(v.ended, (SELECT max(m.created_at) FROM chat_chatmessage m
                                             WHERE m.chat_id = s.chat_id) + interval '90 seconds')
         FROM unnest($1::int8[], $2::timestamptz[]) AS v(id, ended)
         WHERE s.id = v.id",
    )
    .bind(&end_ids)
    .bind(&end_times)
    .execute(&mut conn)
    .await?;
    touched.insert("sessions_ended".into(), r.rows_affected());
    let r =
        sqlx::query("UPDATE experiments_experimentsession SET status = 'active', updated_at = $2 WHERE id = ANY($1)")
            .bind(activated.iter().map(|a| a.0).collect::<Vec<_>>())
            .bind(ts(day_start))
            .execute(&mut conn)
            .await?;
    touched.insert("sessions_activated".into(), r.rows_affected());

    // Tags on old messages and chats (reviews of past conversations).
    let mut tagged_ids: Vec<i64> = Vec::new();
    let mut tagged_cols = TaggedCols::default();
    let mut add_tag = |ids: &mut Ids, team: i64, tag: i64, ct: i64, object: i64, when: i64| {
        tagged_ids.push(ids.take(TAGGED));
        tagged_cols.0.push(team);
        tagged_cols.1.push(tag);
        tagged_cols.2.push(ct as i32);
        tagged_cols.3.push(object as i32);
        tagged_cols.4.push(ts(when));
    };
    let sample = |rng: &mut SmallRng, max: i64, k: usize| -> Vec<i64> {
        let mut v: Vec<i64> = (0..k).map(|_| rng.random_range(1..=max.max(1))).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let old_messages = sample(&mut rng, max[MESSAGES], messages_day / 50 + 1);
    for row in sqlx::query(
        "SELECT m.id, c.team_id, m.message_type::text FROM chat_chatmessage m
         JOIN chat_chat c ON c.id = m.chat_id WHERE m.id = ANY($1) ORDER BY m.id",
    )
    .bind(&old_messages)
    .fetch_all(&mut conn)
    .await?
    {
        let (id, team, kind): (i64, i64, String) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let t = tags.get(&team).unwrap_or(&no_tags);
        let list = if kind == "ai" && rng.random_bool(0.5) {
            &t.rating
        } else {
            &t.user
        };
        if !list.is_empty() {
            let tag = *pick(&mut rng, list);
            add_tag(&mut ids, team, tag, ct_msg, id, day_start + rng.random_range(0..DAY));
        }
    }
    let old_chats = sample(&mut rng, max[CHATS], sessions_day / 20 + 1);
    for row in sqlx::query("SELECT id, team_id FROM chat_chat WHERE id = ANY($1) ORDER BY id")
        .bind(&old_chats)
        .fetch_all(&mut conn)
        .await?
    {
        let (id, team): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        let t = tags.get(&team).unwrap_or(&no_tags);
        if !t.user.is_empty() {
            let tag = *pick(&mut rng, &t.user);
            add_tag(&mut ids, team, tag, ct_chat, id, day_start + rng.random_range(0..DAY));
        }
    }
    let r = sqlx::query(
        "INSERT INTO annotations_customtaggeditem
             (id, created_at, updated_at, team_id, tag_id, content_type_id, object_id)
         SELECT v.id, v.at, v.at, v.team_id, v.tag_id, v.ct, v.object_id
         FROM unnest($1::int8[], $2::timestamptz[], $3::int8[], $4::int8[], $5::int4[], $6::int4[])
              AS v(id, at, team_id, tag_id, ct, object_id)
         ON CONFLICT (content_type_id, object_id, tag_id) DO NOTHING",
    )
    .bind(&tagged_ids)
    .bind(&tagged_cols.4)
    .bind(&tagged_cols.0)
    .bind(&tagged_cols.1)
    .bind(&tagged_cols.2)
    .bind(&tagged_cols.3)
    .execute(&mut conn)
    .await?;
    touched.insert("tags_added_to_old_objects".into(), r.rows_affected());

    // A few tags removed again.
    let removed = sample(&mut rng, max[TAGGED], messages_day / 500 + 2);
    let r = sqlx::query("DELETE FROM annotations_customtaggeditem WHERE id = ANY($1)")
        .bind(&removed)
        .execute(&mut conn)
        .await?;
    touched.insert("tagged_items_removed".into(), r.rows_affected());

    // A few old sessions deleted with their chat, messages and tags.
    let candidates: Vec<i64> = sample(&mut rng, max[SESSIONS], sessions_day / 300 + 2)
        .into_iter()
        .filter(|id| !busy.contains(id))
        .collect();
    let doomed: Vec<(i64, i64)> =
        sqlx::query("SELECT id, chat_id FROM experiments_experimentsession WHERE id = ANY($1) ORDER BY id")
            .bind(&candidates)
            .fetch_all(&mut conn)
            .await?
            .into_iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?;
    let (session_ids, chat_ids): (Vec<i64>, Vec<i64>) = doomed.into_iter().unzip();
    let r = sqlx::query(
        "DELETE FROM annotations_customtaggeditem
         WHERE (content_type_id = $2 AND object_id = ANY($1))
            OR (content_type_id = $3 AND object_id IN (SELECT id FROM chat_chatmessage WHERE chat_id = ANY($1)))",
    )
    .bind(&chat_ids)
    .bind(ct_chat as i32)
    .bind(ct_msg as i32)
    .execute(&mut conn)
    .await?;
    touched.insert("tagged_items_deleted".into(), r.rows_affected());
    for (sql, list, key) in [
        (
            "DELETE FROM chat_chatmessage WHERE chat_id = ANY($1)",
            &chat_ids,
            "messages_deleted",
        ),
        (
            "DELETE FROM experiments_experimentsession WHERE id = ANY($1)",
            &session_ids,
            "sessions_deleted",
        ),
        ("DELETE FROM chat_chat WHERE id = ANY($1)", &chat_ids, "chats_deleted"),
    ] {
        let r = sqlx::query(sql).bind(list).execute(&mut conn).await?;
        touched.insert(key.into(), r.rows_affected());
    }

    sync_sequences(&mut conn).await?;
    sqlx::query("COMMIT").execute(&mut conn).await?;
    conn.close().await?;
    Ok(touched)
}

async fn sessions_with_status(conn: &mut PgConnection, status: &str, limit: i64) -> Result<Vec<Open>> {
    Ok(sqlx::query(
        "SELECT s.id, s.chat_id, s.team_id, s.experiment_id FROM experiments_experimentsession s
         WHERE s.status = $1 AND s.ended_at IS NULL ORDER BY s.id DESC LIMIT $2",
    )
    .bind(status)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
    .collect::<Result<_, sqlx::Error>>()?)
}
