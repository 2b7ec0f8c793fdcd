//! The HTTP API over a generated snapshot, driven with `oneshot`: chart
//! bodies against the engine's own answers, every 400 of api.md, team
//! isolation, exports (pseudonyms, never a participant's name or id), the
//! audit log, the OpenAPI document, health, metrics, gzip, static files.

mod api_support;
mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use api_support::{Backend, Fixture, Reply, WINDOW, assert_close, pairs, same_cell};
use axum::body::Body;
use axum::http::{Request, header};
use chrono::Utc;
use hmac::{KeyInit, Mac};
use ocs_dash_api::pseudonym::{KEY_FILE, Pseudonyms};
use ocs_dash_api::schema::ChartEnvelope;
use ocs_dash_api::store::Store;
use ocs_dash_api::{AppState, Settings, app, auth};
use ocs_dash_engine::charts::Chart;
use ocs_dash_engine::filters::Filters;
use ocs_dash_engine::snapshot::DataDir;
use ocs_dash_engine::{CacheConfig, Engine, Team};
use serde_json::{Value, json};
use tower::ServiceExt;

/// The engine's answer, from an engine of its own with the cache off.
async fn engine_answer(team: i64, chart: Chart, query: &str) -> Value {
    let engine = Engine::new(
        DataDir::new(api_support::snapshot_dir()),
        CacheConfig {
            ttl: std::time::Duration::ZERO,
            ..CacheConfig::default()
        },
    );
    let snapshot = engine.snapshot().await.unwrap();
    let (filters, options) = Filters::parse(&pairs(query), Utc::now()).unwrap();
    serde_json::to_value(engine.chart(&snapshot, team, chart, &filters, &options).await.unwrap()).unwrap()
}

#[tokio::test]
async fn every_chart_answers_as_the_engine_does() {
    let f = Fixture::new(Backend::Sqlite, "charts").await;
    let bots = f
        .get(
            &f.alice,
            &f.url(&format!("api/bot-performance/?{WINDOW}&page_size=100")),
        )
        .await
        .json();
    let ids: Vec<i64> = bots["data"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["chatbot_id"].as_i64().unwrap())
        .collect();
    assert!(ids.len() >= 2);
    let queries = [
        WINDOW.to_string(),
        format!("{WINDOW}&timezone=Asia/Kolkata&granularity=weekly"),
        format!(
            "{WINDOW}&experiments={},{}&channels=web&channels=whatsapp",
            ids[1], ids[0]
        ),
        "date_range=custom&start_date=2026-02-20&end_date=2026-02-21&granularity=hourly&timezone=Europe%2FBerlin"
            .to_string(),
        format!("{WINDOW}&granularity=monthly&experiments=999999"),
    ];
    for chart in Chart::ALL {
        for q in &queries {
            let uri = f.url(&format!("api/{chart}/?{q}"));
            let r = f.get(&f.alice, &uri).await;
            assert_eq!(r.status, 200, "{uri}: {}", r.text());
            assert_eq!(r.header("content-type"), "application/json");
            let body = r.json();
            assert_close(&body, &engine_answer(f.team_a.id, chart, q).await, &uri);
            // The OpenAPI wire types describe the body exactly (unknown fields are refused).
            let typed: ChartEnvelope = serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("{uri}: {e}"));
            assert_eq!(serde_json::to_value(&typed).unwrap(), body, "{uri}");
        }
    }
    // The resolved filters: lists sorted and deduplicated, unknown ids kept.
    let r = f
        .get(
            &f.alice,
            &f.url(&format!("api/overview?{WINDOW}&experiments=5,3,5&channels=web,api")),
        )
        .await;
    assert_eq!(
        r.json()["filters"],
        json!({"start_date": "2026-01-15", "end_date": "2026-02-28", "timezone": "UTC", "granularity": "daily",
               "experiments": [3, 5], "channels": ["api", "web"]})
    );
    // The window has activity, and the other team's numbers differ.
    let a = f.get(&f.alice, &f.url(&format!("api/overview/?{WINDOW}"))).await.json();
    assert!(a["data"]["total_messages"].as_i64().unwrap() > 0);
    let b = f
        .get(
            &f.alice_b,
            &format!("/a/{}/dashboard/api/overview/?{WINDOW}", f.team_b.slug),
        )
        .await
        .json();
    assert_close(&b, &engine_answer(f.team_b.id, Chart::Overview, WINDOW).await, "team B");
    assert_ne!(a["data"], b["data"]);
    // Bot performance options and user-engagement's limit reach the engine.
    let q = format!("{WINDOW}&order_by=chatbot_name&order_dir=asc&page=2&page_size=2");
    let r = f
        .get(&f.alice, &f.url(&format!("api/bot-performance?{q}")))
        .await
        .json();
    assert_close(&r, &engine_answer(f.team_a.id, Chart::BotPerformance, &q).await, &q);
    assert_eq!(
        (r["data"]["page"].as_i64(), r["data"]["page_size"].as_i64()),
        (Some(2), Some(2))
    );
    let q = format!("{WINDOW}&limit=3");
    let r = f
        .get(&f.alice, &f.url(&format!("api/user-engagement/?{q}")))
        .await
        .json();
    assert_close(&r, &engine_answer(f.team_a.id, Chart::UserEngagement, &q).await, &q);
    assert!(r["data"]["most_active"].as_array().unwrap().len() <= 3);
    // Default window: the last 30 days (the generated data ends earlier, so zeros).
    let r = f.get(&f.alice, &f.url("api/message-volume")).await.json();
    assert_eq!(r["data"].as_array().unwrap().len(), 30);
    f.store.finish().await;
}

#[tokio::test]
async fn every_bad_parameter_is_a_400_naming_it() {
    let f = Fixture::new(Backend::Sqlite, "bad_params").await;
    let cases = [
        ("message-volume", "granularity=yearly", "granularity"),
        ("message-volume", "date_range=14", "date_range"),
        ("message-volume", "date_range=custom&end_date=2026-02-01", "start_date"),
        ("message-volume", "date_range=custom&start_date=2026-02-01", "end_date"),
        (
            "message-volume",
            "date_range=custom&start_date=2026-02-30&end_date=2026-03-01",
            "start_date",
        ),
        (
            "message-volume",
            "date_range=custom&start_date=2026-02-01&end_date=01/03/2026",
            "end_date",
        ),
        (
            "message-volume",
            "date_range=custom&start_date=2026-2-1&end_date=2026-03-01",
            "start_date",
        ),
        (
            "overview",
            "date_range=custom&start_date=2026-02-10&end_date=2026-02-01",
            "start_date",
        ),
        ("overview", "experiments=1,abc", "experiments"),
        ("overview", "experiments=1.5", "experiments"),
        ("overview", "channels=web,myspace", "channels"),
        ("overview", "timezone=Mars/Olympus_Mons", "timezone"),
        ("overview", "timezone=CEST", "timezone"),
        ("user-engagement", "limit=0", "limit"),
        ("user-engagement", "limit=101", "limit"),
        ("user-engagement", "limit=ten", "limit"),
        ("bot-performance", "page_size=0", "page_size"),
        ("bot-performance", "page_size=101", "page_size"),
        ("bot-performance", "page=0", "page"),
        ("bot-performance", "order_by=revenue", "order_by"),
        ("bot-performance", "order_dir=sideways", "order_dir"),
        (
            "active-participants",
            "date_range=custom&start_date=2020-01-01&end_date=2026-01-01&granularity=hourly",
            "granularity",
        ),
    ];
    for (chart, query, parameter) in cases {
        let r = f.get(&f.alice, &f.url(&format!("api/{chart}/?{query}"))).await;
        let e = r.error(400, "invalid_parameter");
        assert_eq!(e["parameter"], parameter, "{chart}?{query}: {e}");
    }
    let e = f
        .get(&f.alice, &f.url("api/message-volume/?granularity=yearly"))
        .await
        .error(400, "invalid_parameter");
    assert_eq!(
        e["message"],
        "granularity must be one of hourly, daily, weekly, monthly"
    );

    // Unknown chart and route: 404; a wrong method: 405; all with the envelope.
    f.get(&f.alice, &f.url("api/pie-chart/")).await.error(404, "not_found");
    f.get(&f.alice, "/a/x/y/z").await.error(404, "not_found");
    f.get(&f.alice, "/nothing-here").await.error(404, "not_found");
    let r = f
        .send(
            Request::put(f.url("api/overview/"))
                .header(header::AUTHORIZATION, format!("Bearer {}", f.alice))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    r.error(405, "method_not_allowed");

    // Bodies: malformed → 400, too large → 413.
    let post_raw = |uri: String, body: Vec<u8>| {
        Request::post(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", f.alice))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    f.send(post_raw(f.url("export/"), b"{\"chart\": ".to_vec()))
        .await
        .error(400, "bad_request");
    f.send(post_raw(f.url("export/"), b"\xff\xfe".to_vec()))
        .await
        .error(400, "bad_request");
    let big = json!({"chart": "overview", "filters": {"channels": vec!["web"; 20_000]}}).to_string();
    f.send(post_raw(f.url("export/"), big.clone().into_bytes()))
        .await
        .error(413, "payload_too_large");
    f.send(post_raw(f.url("filters/save/"), big.into_bytes()))
        .await
        .error(413, "payload_too_large");
    f.store.finish().await;
}

#[tokio::test]
async fn credentials_are_checked_and_teams_isolated() {
    let f = Fixture::new(Backend::Sqlite, "isolation").await;
    let uri = f.url(&format!("api/overview/?{WINDOW}"));
    // None, unknown, malformed: 401 with a Bearer challenge.
    let r = f.send(Request::get(&uri).body(Body::empty()).unwrap()).await;
    r.error(401, "unauthorized");
    assert_eq!(r.header("www-authenticate"), "Bearer");
    for auth in [
        "Bearer ocsd_0000000000000000000000000000000000000000000000000000000000000000".to_string(),
        format!("Basic {}", f.alice),
        "Bearer".to_string(),
        format!("Token {}", f.alice),
    ] {
        let r = f
            .send(
                Request::get(&uri)
                    .header(header::AUTHORIZATION, auth.as_str())
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        r.error(401, "unauthorized");
    }
    // A bad bearer header is not rescued by a cookie, and a bad cookie is a 401.
    let r = f
        .send(
            Request::get(&uri)
                .header(header::COOKIE, "ocs_dash_session=forged")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    r.error(401, "unauthorized");
    // The credential is checked before the slug: no existence leak to strangers.
    f.send(
        Request::get("/a/no-such-team/dashboard/api/overview/")
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .error(401, "unauthorized");

    // Team A's key on team B, and on an unknown slug: the same 404.
    let other = f
        .get(
            &f.alice,
            &format!("/a/{}/dashboard/api/overview/?{WINDOW}", f.team_b.slug),
        )
        .await;
    let unknown = f
        .get(&f.alice, &format!("/a/no-such-team/dashboard/api/overview/?{WINDOW}"))
        .await;
    other.error(404, "not_found");
    assert_eq!(other.json(), unknown.json());
    assert_eq!(other.status, unknown.status);
    for path in ["filters/", "filters/load/1/"] {
        f.get(&f.alice, &format!("/a/{}/dashboard/{path}", f.team_b.slug))
            .await
            .error(404, "not_found");
    }
    f.post_json(
        &f.alice,
        &format!("/a/{}/dashboard/export/", f.team_b.slug),
        &json!({"chart": "overview"}),
    )
    .await
    .error(404, "not_found");
    // The page: a signed-in stranger gets 404 too, not the page.
    f.get(&f.alice, &format!("/a/{}/dashboard/", f.team_b.slug))
        .await
        .error(404, "not_found");
    let page = f.get(&f.alice, &f.url("")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains(r#"<meta name="csrf-token" content="">"#),
        "bearer callers need no CSRF token"
    );

    // A revoked key stops working at once.
    let carol = auth::create_key(&f.store.store, &f.team_a, "carol").await.unwrap();
    assert_eq!(f.get(&carol.secret, &uri).await.status, 200);
    f.store.store.revoke_key(carol.key.id).await.unwrap();
    f.get(&carol.secret, &uri).await.error(401, "unauthorized");
    f.store.finish().await;
}

/// The pseudonym a test computes on its own from the key file.
fn pseudonym(participant_id: i64) -> String {
    let key = std::fs::read_to_string(api_support::snapshot_dir().join(KEY_FILE)).unwrap();
    let key = hex::decode(key.trim()).unwrap();
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(format!("participant:{participant_id}").as_bytes());
    format!("p_{}", hex::encode(&mac.finalize().into_bytes()[..16]))
}

fn filter_object(query: &str) -> Value {
    let mut o = serde_json::Map::new();
    for (k, v) in pairs(query) {
        o.insert(k, Value::String(v));
    }
    Value::Object(o)
}

/// CSV text without its `#` lines, as header and records.
fn parse_csv(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let header = reader.headers().unwrap().iter().map(str::to_string).collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    (header, rows)
}

async fn export(f: &Fixture, body: Value) -> Reply {
    f.post_json(&f.alice, &f.url("export/"), &body).await
}

#[tokio::test]
async fn exports_flatten_every_chart_without_participant_identities() {
    let f = Fixture::new(Backend::Sqlite, "exports").await;
    let filters = filter_object(WINDOW);
    let columns: [(Chart, &[&str]); 8] = [
        (
            Chart::Overview,
            &[
                "total_chatbots",
                "active_chatbots",
                "total_participants",
                "active_participants",
                "active_sessions",
                "sessions_started",
                "completed_sessions",
                "completion_rate",
                "human_messages",
                "ai_messages",
                "total_messages",
                "avg_messages_per_session",
                "avg_sessions_per_participant",
            ],
        ),
        (Chart::ActiveParticipants, &["bucket", "active_participants"]),
        (
            Chart::SessionAnalytics,
            &["bucket", "active_sessions", "sessions_started", "active_participants"],
        ),
        (
            Chart::MessageVolume,
            &["bucket", "human_messages", "ai_messages", "total_messages"],
        ),
        (
            Chart::BotPerformance,
            &[
                "chatbot_id",
                "chatbot_name",
                "participants",
                "sessions",
                "messages",
                "avg_session_duration",
                "completion_rate",
                "avg_messages_per_session",
            ],
        ),
        (
            Chart::UserEngagement,
            &[
                "section",
                "rank",
                "participant",
                "total_messages",
                "total_sessions",
                "last_activity",
                "bin_start",
                "bin_end",
                "count",
                "statistic",
                "value",
            ],
        ),
        (
            Chart::ChannelBreakdown,
            &[
                "section",
                "platform",
                "label",
                "sessions",
                "participants",
                "human_messages",
                "ai_messages",
                "total_messages",
                "session_share",
            ],
        ),
        (
            Chart::TagAnalytics,
            &["scope", "category", "category_label", "tag_id", "tag_name", "count"],
        ),
    ];
    let secrets: Vec<String> = f
        .participant_names(f.team_a.id)
        .await
        .into_iter()
        .filter(|s| s.len() >= 4)
        .collect();
    assert!(secrets.len() > 5);
    for (chart, expected) in columns {
        let csv = export(&f, json!({"chart": chart, "format": "csv", "filters": filters})).await;
        assert_eq!(csv.status, 200, "{chart}: {}", csv.text());
        assert_eq!(csv.header("content-type"), "text/csv; charset=utf-8");
        assert_eq!(
            csv.header("content-disposition"),
            format!(
                "attachment; filename=\"{}_{chart}_2026-01-15_2026-02-28.csv\"",
                f.team_a.slug
            )
        );
        let (header, rows) = parse_csv(&csv.text());
        assert!(!csv.text().starts_with('#'), "no filters unless asked");
        assert_eq!(header, expected, "{chart}");
        assert!(rows.iter().all(|r| r.len() == expected.len()));
        // A chart read is audited with as many rows as its export has.
        let r = f
            .get(&f.alice, &f.url(&format!("api/{chart}/?{WINDOW}&page_size=100")))
            .await;
        assert_eq!(r.status, 200);
        let audited = f.store.store.audit_log(1).await.unwrap().remove(0);
        assert_eq!(
            (audited.action.as_str(), audited.rows),
            ("chart", rows.len() as i64),
            "{chart}"
        );
        let json = export(&f, json!({"chart": chart, "format": "json", "filters": filters})).await;
        assert_eq!(json.status, 200);
        assert_eq!(json.header("content-type"), "application/json");
        assert!(json.header("content-disposition").ends_with(".json\""));
        let doc = json.json();
        assert_eq!(doc["chart"], chart.name());
        assert_eq!(doc["columns"], json!(expected));
        assert!(doc.get("filters").is_none());
        let json_rows = doc["rows"].as_array().unwrap();
        assert_eq!(json_rows.len(), rows.len(), "{chart}");
        // The same table in both formats.
        for (j, c) in json_rows.iter().zip(&rows) {
            for (col, cell) in expected.iter().zip(c) {
                let v = &j[*col];
                let text = match v {
                    Value::Null => String::new(),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                assert!(
                    same_cell(&text, cell.trim_start_matches('\'')),
                    "{chart}.{col}: {text} vs {cell}"
                );
            }
        }
        for body in [csv.text(), json.text()] {
            for s in &secrets {
                assert!(!body.contains(s.as_str()), "{chart} export holds participant {s:?}");
            }
            assert!(
                !body.contains("participant_id") && !body.contains("participant_name"),
                "{chart}"
            );
        }
    }

    // Rows keep the API's order and values.
    let api = f
        .get(&f.alice, &f.url(&format!("api/message-volume/?{WINDOW}")))
        .await
        .json();
    let (_, rows) = parse_csv(
        &export(&f, json!({"chart": "message-volume", "filters": filters}))
            .await
            .text(),
    );
    let expect: Vec<Vec<String>> = api["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            vec![
                r["bucket"].as_str().unwrap().to_string(),
                r["human_messages"].to_string(),
                r["ai_messages"].to_string(),
                r["total_messages"].to_string(),
            ]
        })
        .collect();
    assert_eq!(rows, expect);
    let overview = f.get(&f.alice, &f.url(&format!("api/overview/?{WINDOW}"))).await.json();
    let (_, rows) = parse_csv(
        &export(&f, json!({"chart": "overview", "filters": filters}))
            .await
            .text(),
    );
    assert_eq!(rows[0][0], overview["data"]["total_chatbots"].to_string());
    assert!(same_cell(&rows[0][7], &overview["data"]["completion_rate"].to_string()));

    // Participants appear as the keyed pseudonym, in the API's order, the same in every export.
    let q = format!("{WINDOW}&limit=5");
    let api = f
        .get(&f.alice, &f.url(&format!("api/user-engagement/?{q}")))
        .await
        .json();
    let mut expect = Vec::new();
    for section in ["most_active", "least_active"] {
        for p in api["data"][section].as_array().unwrap() {
            expect.push((
                section.to_string(),
                pseudonym(p["participant_id"].as_i64().unwrap()),
                p["total_messages"].to_string(),
            ));
        }
    }
    assert!(expect.len() >= 4);
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (_, rows) = parse_csv(
            &export(&f, json!({"chart": "user-engagement", "filters": filter_object(&q)}))
                .await
                .text(),
        );
        let got: Vec<(String, String, String)> = rows
            .iter()
            .filter(|r| r[0] == "most_active" || r[0] == "least_active")
            .map(|r| (r[0].clone(), r[2].clone(), r[3].clone()))
            .collect();
        assert_eq!(got, expect);
        seen.push(got);
        let total = rows.iter().find(|r| r[0] == "total_participants").unwrap();
        assert_eq!(total[10], api["data"]["total_participants"].to_string());
        let pcts: Vec<&str> = rows
            .iter()
            .filter(|r| r[0] == "session_length_percentiles")
            .map(|r| r[9].as_str())
            .collect();
        assert_eq!(pcts, ["p50", "p90", "p99"]);
    }
    // A restarted server (the key read back from the data directory) says the same.
    let state = AppState::new(
        f.engine.clone(),
        f.store.store.clone(),
        Pseudonyms::load_or_create(api_support::snapshot_dir()).unwrap(),
        Settings::default(),
    );
    let restarted = Fixture { app: app(state), ..f };
    let doc = export(
        &restarted,
        json!({"chart": "user-engagement", "format": "json", "filters": filter_object(&q)}),
    )
    .await
    .json();
    let first = &doc["rows"][0];
    assert_eq!(
        (
            first["section"].as_str().unwrap(),
            first["participant"].as_str().unwrap()
        ),
        (seen[0][0].0.as_str(), seen[0][0].1.as_str())
    );
    let f = restarted;

    // Bot performance: every chatbot, in the requested order (the API's pages, joined).
    let q = format!("{WINDOW}&order_by=chatbot_name&order_dir=desc");
    let mut api_rows = Vec::new();
    for page in 1.. {
        let r = f
            .get(
                &f.alice,
                &f.url(&format!("api/bot-performance/?{q}&page={page}&page_size=2")),
            )
            .await
            .json();
        let results = r["data"]["results"].as_array().unwrap().clone();
        if results.is_empty() {
            break;
        }
        api_rows.extend(results.into_iter().map(|b| b["chatbot_id"].to_string()));
    }
    assert!(api_rows.len() > 2);
    let (_, rows) = parse_csv(
        &export(&f, json!({"chart": "bot-performance", "filters": filter_object(&q)}))
            .await
            .text(),
    );
    assert_eq!(rows.iter().map(|r| r[0].clone()).collect::<Vec<_>>(), api_rows);

    // include_filters: `# key: value` lines (CSV) or a `filters` key (JSON).
    let q = format!("{WINDOW}&timezone=Europe/Berlin&channels=web,whatsapp&experiments=9,3");
    let r = export(
        &f,
        json!({"chart": "channel-breakdown", "include_filters": true, "filters": filter_object(&q)}),
    )
    .await;
    let text = r.text();
    assert!(
        text.starts_with(
            "# start_date: 2026-01-15\n# end_date: 2026-02-28\n# timezone: Europe/Berlin\n# granularity: daily\n\
             # experiments: 3,9\n# channels: web,whatsapp\nsection,platform,"
        ),
        "{text}"
    );
    let api = f
        .get(&f.alice, &f.url(&format!("api/channel-breakdown/?{q}")))
        .await
        .json();
    let doc = export(
        &f,
        json!({"chart": "channel-breakdown", "format": "json", "include_filters": true, "filters": filter_object(&q)}),
    )
    .await
    .json();
    assert_eq!(doc["filters"], api["filters"]);
    assert_eq!(doc["snapshot"], api["snapshot"]);
    // Lists as JSON arrays of numbers work too.
    let r = export(&f, json!({"chart": "overview", "filters": {"date_range": "custom", "start_date": "2026-01-15",
                                                                 "end_date": "2026-02-28", "experiments": [9, 3], "channels": []}}))
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Bad requests.
    export(&f, json!({"chart": "pie"})).await.error(404, "not_found");
    let e = export(&f, json!({"chart": "overview", "format": "xlsx"}))
        .await
        .error(400, "invalid_parameter");
    assert_eq!(e["parameter"], "format");
    let e = export(&f, json!({"chart": "overview", "filters": {"granularity": "yearly"}}))
        .await
        .error(400, "invalid_parameter");
    assert_eq!(e["parameter"], "granularity");
    let e = export(&f, json!({"chart": "overview", "filters": {"page": {"n": 1}}}))
        .await
        .error(400, "invalid_parameter");
    assert_eq!(e["parameter"], "page");
    export(&f, json!({"format": "csv"})).await.error(400, "bad_request");
    export(&f, json!({"chart": "overview", "include_filters": "yes"}))
        .await
        .error(400, "bad_request");

    // The audit log has each export: who, team, what, resolved filters, rows.
    let log = f.store.store.audit_log(500).await.unwrap();
    let e = log
        .iter()
        .find(|e| e.action == "export" && e.target == "channel-breakdown.csv")
        .unwrap();
    assert_eq!((e.user.as_str(), e.team_id), ("alice", f.team_a.id));
    assert_eq!(e.filters["timezone"], "Europe/Berlin");
    assert_eq!(e.filters["channels"], json!(["web", "whatsapp"]));
    let (_, rows) = parse_csv(&text);
    assert_eq!(e.rows, rows.len() as i64);
    assert_eq!(
        log.iter().filter(|e| e.action == "export").count(),
        8 * 2 + 1 + 1 + 2 + 1 + 1 + 1 + 1 + 1
    );
    f.store.finish().await;
}

#[tokio::test]
async fn chart_reads_are_audited() {
    let f = Fixture::new(Backend::Sqlite, "audit").await;
    let q = format!("{WINDOW}&granularity=weekly&channels=web");
    let r = f
        .get(&f.bob, &f.url(&format!("api/session-analytics/?{q}")))
        .await
        .json();
    let log = f.store.store.audit_log(10).await.unwrap();
    assert_eq!(log.len(), 1);
    let e = &log[0];
    assert_eq!(
        (e.user.as_str(), e.team_id, e.action.as_str(), e.target.as_str()),
        ("bob", f.team_a.id, "chart", "session-analytics")
    );
    assert_eq!(e.filters, r["filters"]);
    assert_eq!(e.rows, r["data"].as_array().unwrap().len() as i64);
    let key_id = f
        .store
        .store
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.user == "bob")
        .unwrap()
        .id;
    assert_eq!(e.key_id, key_id);
    // Refused requests read nothing and leave no row.
    f.get(&f.bob, &f.url("api/overview/?granularity=x"))
        .await
        .error(400, "invalid_parameter");
    f.get(&f.bob, &format!("/a/{}/dashboard/api/overview/", f.team_b.slug))
        .await
        .error(404, "not_found");
    assert_eq!(f.store.store.audit_log(10).await.unwrap().len(), 1);
    f.store.finish().await;
}

#[tokio::test]
async fn openapi_documents_every_route() {
    let f = Fixture::new(Backend::Sqlite, "openapi").await;
    let r = f
        .send(Request::get("/api/openapi.json").body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths: BTreeSet<&str> = doc["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = [
        "/",
        "/login",
        "/logout",
        "/healthz",
        "/metrics",
        "/api/openapi.json",
        "/static/{path}",
        "/a/{team_slug}/dashboard/",
        "/a/{team_slug}/dashboard/api/{chart}/",
        "/a/{team_slug}/dashboard/filters/",
        "/a/{team_slug}/dashboard/filters/save/",
        "/a/{team_slug}/dashboard/filters/load/{id}/",
        "/a/{team_slug}/dashboard/filters/{id}/",
        "/a/{team_slug}/dashboard/export/",
    ]
    .into();
    assert_eq!(paths, expected);
    assert!(doc["paths"]["/login"]["post"].is_object() && doc["paths"]["/login"]["get"].is_object());
    assert!(doc["paths"]["/a/{team_slug}/dashboard/filters/{id}/"]["delete"].is_object());
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for s in [
        "ChartEnvelope",
        "ChartData",
        "Overview",
        "BotPerformance",
        "UserEngagement",
        "Preset",
        "SavePreset",
        "ExportRequest",
        "ErrorEnvelope",
        "Health",
    ] {
        assert!(schemas.contains_key(s), "schema {s}");
    }
    let params: Vec<&str> = doc["paths"]["/a/{team_slug}/dashboard/api/{chart}/"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in [
        "team_slug",
        "chart",
        "date_range",
        "start_date",
        "end_date",
        "granularity",
        "experiments",
        "channels",
        "timezone",
        "limit",
        "order_by",
        "order_dir",
        "page",
        "page_size",
    ] {
        assert!(params.contains(&p), "{p} in {params:?}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["securitySchemes"]["session"].is_object());
    f.store.finish().await;
}

#[tokio::test]
async fn health_metrics_gzip_and_static_files() {
    let f = Fixture::new(Backend::Sqlite, "ops").await;
    let version = f.engine.snapshot().await.unwrap().version.clone();
    let r = f.send(Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    assert_eq!(r.json()["snapshot"], version.as_str());

    let uri = f.url(&format!("api/tag-analytics/?{WINDOW}"));
    for _ in 0..3 {
        assert_eq!(f.get(&f.alice, &uri).await.status, 200);
    }
    let r = f.send(Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").starts_with("text/plain"));
    let text = r.text();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("{name} in\n{text}"))
            .parse()
            .unwrap()
    };
    assert!(value("ocs_dash_cache_hits_total") >= 2.0);
    assert!(value("ocs_dash_cache_misses_total") >= 1.0);
    assert!(value("ocs_dash_cache_entries") >= 0.0);
    assert!(value("ocs_dash_snapshot_age_seconds") > 0.0);
    assert!(value(&format!("ocs_dash_snapshot_info{{version=\"{version}\"}}")) == 1.0);
    assert_eq!(
        value("ocs_dash_http_requests_total{method=\"GET\",route=\"/a/{team}/dashboard/api/{chart}\",status=\"200\"}"),
        3.0
    );
    assert_eq!(
        value("ocs_dash_http_request_duration_seconds_count{route=\"/a/{team}/dashboard/api/{chart}\"}"),
        3.0
    );
    assert!(!text.contains(&f.team_a.slug), "no slugs or ids as labels");

    // gzip when asked for.
    let r = f
        .send(
            Request::get(&uri)
                .header(header::AUTHORIZATION, format!("Bearer {}", f.alice))
                .header(header::ACCEPT_ENCODING, "gzip")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.header("content-encoding"), "gzip");
    assert_eq!(&r.body[..2], &[0x1f, 0x8b]);

    // The page's files, compiled in.
    for (path, kind) in [
        ("/static/dashboard.js", "text/javascript; charset=utf-8"),
        ("/static/dashboard.css", "text/css; charset=utf-8"),
        ("/static/vendor/chart.umd.min.js", "text/javascript; charset=utf-8"),
        ("/static/favicon.svg", "image/svg+xml"),
    ] {
        let r = f.send(Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!((r.status, r.header("content-type")), (200, kind), "{path}");
        let file = std::fs::read(format!("{}/api/assets{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert_eq!(r.body, file, "{path}");
    }
    for path in ["/static/nope.js", "/static/../Cargo.toml", "/static/%2e%2e/Cargo.toml"] {
        let r = f.send(Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(r.status, 404, "{path}");
    }
    f.store.finish().await;
}

#[tokio::test]
async fn without_a_snapshot_the_api_says_so_with_503() {
    let data = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::new(DataDir::new(data.path()), CacheConfig::default()));
    let store = Store::open_for(data.path(), None).await.unwrap();
    let team = Team {
        id: 1,
        name: "One".into(),
        slug: "one".into(),
    };
    let key = auth::create_key(&store, &team, "ann").await.unwrap();
    let state = AppState::new(
        engine,
        store.clone(),
        Pseudonyms::load_or_create(data.path()).unwrap(),
        Settings::default(),
    );
    let r = Reply::from(
        app(state.clone())
            .oneshot(
                Request::get("/a/one/dashboard/api/overview/")
                    .header(header::AUTHORIZATION, format!("Bearer {}", key.secret))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap(),
    )
    .await;
    let e = r.error(503, "unavailable");
    assert!(e["message"].as_str().unwrap().contains("ocs-dash etl"), "{e}");
    let r = Reply::from(
        app(state)
            .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((r.status, r.json()["snapshot"].clone()), (200, Value::Null));
    store.close().await;
}

#[tokio::test]
async fn with_the_cache_off_every_answer_is_computed() {
    let off = CacheConfig {
        ttl: std::time::Duration::ZERO,
        ..CacheConfig::default()
    };
    let f = Fixture::with_cache(Backend::Sqlite, "nocache", off).await;
    let uri = f.url(&format!("api/overview/?{WINDOW}"));
    let a = f.get(&f.alice, &uri).await.json();
    let b = f.get(&f.alice, &uri).await.json();
    assert_eq!(a, b);
    let metrics = f
        .send(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .text();
    assert!(metrics.contains("ocs_dash_cache_hits_total 0\n"), "{metrics}");
    assert!(metrics.contains("ocs_dash_cache_misses_total 2\n"), "{metrics}");
    f.store.finish().await;
}

/// A chart request with an `Accept-Encoding` header.
async fn get_encoded(f: &Fixture, uri: &str, accept: &str) -> Reply {
    f.send(
        Request::get(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", f.alice))
            .header(header::ACCEPT_ENCODING, accept)
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

#[tokio::test]
async fn cached_answers_are_served_as_stored_bytes_plain_or_gzipped() {
    let f = Fixture::new(Backend::Sqlite, "answers").await;
    for chart in Chart::ALL {
        let uri = f.url(&format!("api/{chart}/?{WINDOW}&timezone=Asia/Kolkata"));
        let plain = f.get(&f.alice, &uri).await;
        assert_eq!(plain.status, 200, "{uri}");
        assert_eq!(plain.header("content-type"), "application/json");
        assert_eq!(plain.header("content-encoding"), "");
        assert_close(
            &plain.json(),
            &engine_answer(f.team_a.id, chart, &format!("{WINDOW}&timezone=Asia/Kolkata")).await,
            &uri,
        );
        // Served again (from the cache): the same bytes, gzipped when asked for.
        let zipped = get_encoded(&f, &uri, "br;q=1.0, gzip;q=0.8").await;
        assert_eq!(zipped.status, 200);
        assert_eq!(
            (
                zipped.header("content-type"),
                zipped.header("content-encoding"),
                zipped.header("vary")
            ),
            ("application/json", "gzip", "accept-encoding")
        );
        assert_eq!(gunzip(&zipped.body), plain.body, "{uri}");
        // gzip refused with q=0: plain JSON.
        let refused = get_encoded(&f, &uri, "gzip;q=0, identity").await;
        assert_eq!(refused.header("content-encoding"), "");
        assert_eq!(refused.body, plain.body, "{uri}");
    }
    // Every cached read is audited like a computed one.
    let log = f.store.store.audit_log(100).await.unwrap();
    assert_eq!(log.iter().filter(|e| e.action == "chart").count(), 3 * Chart::ALL.len());
    assert!(log.iter().all(|e| e.filters["timezone"] == "Asia/Kolkata"));
    let metrics = f
        .send(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .text();
    assert!(
        metrics.contains(&format!("ocs_dash_cache_hits_total {}\n", 2 * Chart::ALL.len())),
        "{metrics}"
    );
    assert!(metrics.contains("\nocs_dash_answer_cache_bytes "), "{metrics}");
    f.store.finish().await;
}

#[tokio::test]
async fn a_new_snapshot_is_never_hidden_behind_a_cached_answer() {
    let dir = tempfile::tempdir().unwrap();
    let copied = std::process::Command::new("cp")
        .args(["-a", &format!("{}/.", api_support::snapshot_dir().display())])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(copied.success());
    let data = DataDir::new(dir.path());
    let engine = Arc::new(Engine::new(data.clone(), CacheConfig::default()));
    let old = engine.snapshot().await.unwrap();
    let team = old.teams[0].clone();
    let store = Store::open_for(dir.path(), None).await.unwrap();
    let key = auth::create_key(&store, &team, "ann").await.unwrap().secret;
    let app = app(AppState::new(
        engine,
        store.clone(),
        Pseudonyms::load_or_create(dir.path()).unwrap(),
        Settings::default(),
    ));
    let uri = format!("/a/{}/dashboard/api/overview/?{WINDOW}", team.slug);
    let ask = || async {
        Reply::from(
            app.clone()
                .oneshot(
                    Request::get(&uri)
                        .header(header::AUTHORIZATION, format!("Bearer {key}"))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap(),
        )
        .await
        .json()
    };
    let first = ask().await;
    assert_eq!(first["snapshot"]["version"], old.version.as_str());
    assert_eq!(ask().await, first, "cached");

    // The same data published as a new version: answered from it at once.
    let new_version = format!("{}-next", old.version);
    data.version_dir(&new_version)
        .copy_from(&data.version_dir(&old.version), |_| true)
        .await
        .unwrap();
    let head = data.require_head().await.unwrap();
    let mut manifest = head.manifest.clone();
    manifest.version = new_version.clone();
    data.publish(&manifest, Some(head.seq)).await.unwrap();
    let second = ask().await;
    assert_eq!(second["snapshot"]["version"], new_version.as_str());
    assert_eq!(second["data"], first["data"]);
    store.close().await;
}

#[tokio::test]
async fn a_key_revoked_by_another_process_stops_working_within_the_poll() {
    let f = Fixture::new(Backend::Sqlite, "revoke").await;
    let uri = f.url(&format!("api/overview/?{WINDOW}"));
    let carol = auth::create_key(&f.store.store, &f.team_a, "carol").await.unwrap();
    for _ in 0..3 {
        assert_eq!(f.get(&carol.secret, &uri).await.status, 200);
    }
    // `ocs-dash keys revoke` is another process with a store of its own.
    let cli = Store::open_for(f.store.path().unwrap(), None).await.unwrap();
    assert!(cli.revoke_key(carol.key.id).await.unwrap());
    cli.close().await;
    // The server re-reads the revocation counter before trusting what it remembers.
    tokio::time::sleep(ocs_dash_api::credentials::REVOCATION_POLL).await;
    f.get(&carol.secret, &uri).await.error(401, "unauthorized");
    // Other keys are verified again and still work.
    assert_eq!(f.get(&f.alice, &uri).await.status, 200);
    f.store.finish().await;
}
