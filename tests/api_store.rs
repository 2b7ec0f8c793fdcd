//! The metadata store and what rests on it (keys, sessions and CSRF,
//! presets, the audit log), run the same way against both backends:
//! SQLite in a folder and Postgres (`OCS_DASH_TEST_PG`).

mod api_support;
mod common;

use api_support::{Backend, Fixture, TestStore, WINDOW};
use axum::body::Body;
use axum::http::{Request, header};
use ocs_dash_api::auth::{self, hash_secret};
use ocs_dash_api::store::AuditEntry;
use serde_json::{Value, json};

async fn store_keys_sessions_and_audit(backend: Backend, tag: &str) {
    let t = TestStore::new(backend, tag).await;
    let s = &t.store;
    let k1 = s
        .insert_key(&hash_secret("secret-1"), "ocsd_aaaa", 11, "alpha", "ann")
        .await
        .unwrap();
    let k2 = s
        .insert_key(&hash_secret("secret-2"), "ocsd_bbbb", 12, "beta", "ben")
        .await
        .unwrap();
    assert_ne!(k1.id, k2.id);

    let cred = s.key_by_hash(&hash_secret("secret-1")).await.unwrap().unwrap();
    assert_eq!(
        (cred.key_id, cred.team_id, cred.team_slug.as_str(), cred.user.as_str()),
        (k1.id, 11, "alpha", "ann")
    );
    assert_eq!(cred.csrf, None);
    assert_eq!(s.key_by_hash(&hash_secret("secret-3")).await.unwrap(), None);

    let listed = s.list_keys().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0], k1);
    assert_eq!(listed[1].prefix, "ocsd_bbbb");

    s.insert_session(&hash_secret("token-1"), k1.id, "csrf-1")
        .await
        .unwrap();
    let session = s.session_by_hash(&hash_secret("token-1")).await.unwrap().unwrap();
    assert_eq!(
        (session.team_id, session.user.as_str(), session.csrf.as_deref()),
        (11, "ann", Some("csrf-1"))
    );
    assert_eq!(s.session_by_hash(&hash_secret("token-2")).await.unwrap(), None);
    s.delete_session(&hash_secret("token-1")).await.unwrap();
    assert_eq!(s.session_by_hash(&hash_secret("token-1")).await.unwrap(), None);

    // Revoking ends the key and its sessions; a second revoke finds nothing.
    s.insert_session(&hash_secret("token-3"), k2.id, "csrf-3")
        .await
        .unwrap();
    assert!(s.revoke_key(k2.id).await.unwrap());
    assert!(!s.revoke_key(k2.id).await.unwrap());
    assert_eq!(s.key_by_hash(&hash_secret("secret-2")).await.unwrap(), None);
    assert_eq!(s.session_by_hash(&hash_secret("token-3")).await.unwrap(), None);
    assert!(s.list_keys().await.unwrap()[1].revoked_at.is_some());

    for (i, action) in ["chart", "export"].into_iter().enumerate() {
        s.audit(&AuditEntry {
            at: chrono::Utc::now(),
            key_id: k1.id,
            user: "ann".into(),
            team_id: 11,
            action: action.into(),
            target: "overview".into(),
            filters: json!({"start_date": "2026-01-01", "experiments": [1, 2]}),
            rows: i as i64 + 5,
        })
        .await
        .unwrap();
    }
    let log = s.audit_log(10).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!((log[0].action.as_str(), log[0].rows), ("export", 6), "newest first");
    assert_eq!(
        log[1].filters,
        json!({"start_date": "2026-01-01", "experiments": [1, 2]})
    );
    assert_eq!(
        (log[1].user.as_str(), log[1].team_id, log[1].key_id),
        ("ann", 11, k1.id)
    );
    s.ping().await.unwrap();
    t.finish().await;
}

#[tokio::test]
async fn store_keys_sessions_and_audit_sqlite() {
    store_keys_sessions_and_audit(Backend::Sqlite, "store").await;
}

#[tokio::test]
async fn store_keys_sessions_and_audit_postgres() {
    store_keys_sessions_and_audit(Backend::Postgres, "store").await;
}

async fn store_presets(backend: Backend, tag: &str) {
    let t = TestStore::new(backend, tag).await;
    let s = &t.store;
    let f1 = json!({"date_range": "90"}).as_object().unwrap().clone();
    let f2 = json!({"date_range": "7", "channels": ["web"]})
        .as_object()
        .unwrap()
        .clone();
    let a = s.save_preset(1, "ann", "A", &f1, true).await.unwrap();
    // Same name: replaced in place (same id), new filters.
    let a2 = s.save_preset(1, "ann", "A", &f2, true).await.unwrap();
    assert_eq!(a.id, a2.id);
    assert_eq!(s.get_preset(1, "ann", a.id).await.unwrap().unwrap().filters, f2);
    // A new default unsets the old one.
    let b = s.save_preset(1, "ann", "B", &f1, true).await.unwrap();
    let list = s.list_presets(1, "ann").await.unwrap();
    assert_eq!(
        list.iter().map(|p| (p.name.as_str(), p.is_default)).collect::<Vec<_>>(),
        [("A", false), ("B", true)]
    );
    // Other users and other teams see nothing and can delete nothing.
    assert!(s.list_presets(1, "bob").await.unwrap().is_empty());
    assert!(s.list_presets(2, "ann").await.unwrap().is_empty());
    assert_eq!(s.get_preset(1, "bob", b.id).await.unwrap(), None);
    assert_eq!(s.get_preset(2, "ann", b.id).await.unwrap(), None);
    assert!(!s.delete_preset(1, "bob", b.id).await.unwrap());
    assert!(!s.delete_preset(2, "ann", b.id).await.unwrap());
    // The same name may exist for another user, each with a default.
    s.save_preset(1, "bob", "B", &f1, true).await.unwrap();
    assert!(s.list_presets(1, "ann").await.unwrap()[1].is_default);
    assert!(s.delete_preset(1, "ann", b.id).await.unwrap());
    assert_eq!(s.list_presets(1, "ann").await.unwrap().len(), 1);
    t.finish().await;
}

#[tokio::test]
async fn store_presets_sqlite() {
    store_presets(Backend::Sqlite, "presets").await;
}

#[tokio::test]
async fn store_presets_postgres() {
    store_presets(Backend::Postgres, "presets").await;
}

/// Presets over HTTP: round trip, replace by name, one default, ownership.
async fn presets_http(backend: Backend, tag: &str) {
    let f = Fixture::new(backend, tag).await;
    let save = f.url("filters/save/");
    let body =
        json!({"name": "Last quarter", "filters": {"date_range": "90", "channels": ["web"]}, "is_default": true});
    let r = f.post_json(&f.alice, &save, &body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let saved = r.json();
    let id = saved["id"].as_i64().unwrap();
    assert_eq!(saved["name"], "Last quarter");
    assert_eq!(saved["filters"], json!({"date_range": "90", "channels": ["web"]}));
    assert_eq!(saved["is_default"], true);
    assert!(saved["created_at"].as_str().unwrap().starts_with("20"));

    assert_eq!(f.get(&f.alice, &f.url("filters/")).await.json(), json!([saved]));
    assert_eq!(
        f.get(&f.alice, &f.url(&format!("filters/load/{id}/"))).await.json(),
        saved
    );
    assert_eq!(
        f.get(&f.alice, &f.url(&format!("filters/load/{id}"))).await.json(),
        saved
    );

    // Replace by name: same id, new filters and default flag.
    let r = f
        .post_json(
            &f.alice,
            &save,
            &json!({"name": "Last quarter", "filters": {"date_range": "30"}}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["id"], id);
    let list = f.get(&f.alice, &f.url("filters")).await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["filters"], json!({"date_range": "30"}));
    assert_eq!(list[0]["is_default"], false);

    // One default per user and team.
    for name in ["WhatsApp", "Web"] {
        let r = f
            .post_json(
                &f.alice,
                &save,
                &json!({"name": name, "filters": {"channels": name.to_lowercase()}, "is_default": true}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let list = f.get(&f.alice, &f.url("filters/")).await.json();
    let defaults: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["is_default"] == true)
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(defaults, ["Web"]);
    assert_eq!(list.as_array().unwrap().len(), 3);

    // Another user of the team, and the same user in another team: 404.
    assert_eq!(f.get(&f.bob, &f.url("filters/")).await.json(), json!([]));
    f.get(&f.bob, &f.url(&format!("filters/load/{id}/")))
        .await
        .error(404, "not_found");
    f.delete(&f.bob, &f.url(&format!("filters/{id}/")))
        .await
        .error(404, "not_found");
    let team_b = format!("/a/{}/dashboard/", f.team_b.slug);
    assert_eq!(f.get(&f.alice_b, &format!("{team_b}filters/")).await.json(), json!([]));
    f.get(&f.alice_b, &format!("{team_b}filters/load/{id}/"))
        .await
        .error(404, "not_found");
    f.delete(&f.alice_b, &format!("{team_b}filters/{id}/"))
        .await
        .error(404, "not_found");
    f.get(&f.alice_b, &f.url(&format!("filters/load/{id}/")))
        .await
        .error(404, "not_found");
    assert_eq!(
        f.get(&f.alice, &f.url(&format!("filters/load/{id}/"))).await.status,
        200,
        "still there"
    );

    // Bad input.
    for (body, parameter) in [
        (
            json!({"name": "x", "filters": {"granularity": "yearly"}}),
            "granularity",
        ),
        (json!({"name": "x", "filters": {"colour": "red"}}), "colour"),
        (json!({"name": "x", "filters": {"experiments": ["a"]}}), "experiments"),
        (json!({"name": "  ", "filters": {}}), "name"),
        (json!({"name": "n".repeat(101)}), "name"),
    ] {
        let e = f
            .post_json(&f.alice, &save, &body)
            .await
            .error(400, "invalid_parameter");
        assert_eq!(e["parameter"], parameter, "{body}");
    }
    for raw in [
        "{not json",
        r#"{"name": 5}"#,
        r#"{"filters": {}}"#,
        r#"{"name": "x", "extra": 1}"#,
        "[]",
    ] {
        let r = f
            .send(
                Request::post(&save)
                    .header(header::AUTHORIZATION, format!("Bearer {}", f.alice))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(raw))
                    .unwrap(),
            )
            .await;
        r.error(400, "bad_request");
    }
    f.get(&f.alice, &f.url("filters/load/abc/"))
        .await
        .error(404, "not_found");

    // Delete: 204, then gone.
    let r = f.delete(&f.alice, &f.url(&format!("filters/{id}/"))).await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    f.get(&f.alice, &f.url(&format!("filters/load/{id}/")))
        .await
        .error(404, "not_found");
    f.delete(&f.alice, &f.url(&format!("filters/{id}")))
        .await
        .error(404, "not_found");

    let log = f.store.store.audit_log(100).await.unwrap();
    let saves = log
        .iter()
        .filter(|e| e.action == "preset.save" && e.user == "alice")
        .count();
    assert_eq!(saves, 4);
    let deleted = log.iter().find(|e| e.action == "preset.delete").unwrap();
    assert_eq!(
        (deleted.target.as_str(), deleted.team_id),
        (id.to_string().as_str(), f.team_a.id)
    );
    f.store.finish().await;
}

#[tokio::test]
async fn presets_http_sqlite() {
    presets_http(Backend::Sqlite, "presets_http").await;
}

#[tokio::test]
async fn presets_http_postgres() {
    presets_http(Backend::Postgres, "presets_http").await;
}

fn session_cookie(set_cookie: &str) -> String {
    let pair = set_cookie.split(';').next().unwrap();
    assert!(pair.starts_with("ocs_dash_session="), "{set_cookie}");
    pair.to_string()
}

fn csrf_of(html: &str) -> String {
    let start = html.find(r#"<meta name="csrf-token" content=""#).expect("csrf meta") + 33;
    html[start..start + html[start..].find('"').unwrap()].to_string()
}

fn with_cookie(req: axum::http::request::Builder, cookie: &str) -> axum::http::request::Builder {
    req.header(header::COOKIE, format!("theme=dark; {cookie}"))
}

/// Sign-in with a key, the cookie, the page, CSRF on state changes, sign-out.
async fn browser_session(backend: Backend, tag: &str) {
    let f = Fixture::new(backend, tag).await;
    let dashboard = f.url("");

    // Not signed in: the page sends the browser to /login; `/` too.
    let r = f.send(Request::get(&dashboard).body(Body::empty()).unwrap()).await;
    assert_eq!((r.status, r.header("location")), (302, "/login"));
    let r = f.send(Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!((r.status, r.header("location")), (302, "/login"));
    let r = f.send(Request::get("/login").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").starts_with("text/html"));
    assert!(r.text().contains(r#"<form method="post" action="/login">"#));

    // A wrong key: the form again, with a message, and no cookie.
    let login = |body: String| {
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap()
    };
    let r = f.send(login("key=ocsd_nope".into())).await;
    assert_eq!(r.status, 401);
    assert!(r.text().contains("not valid"));
    assert!(r.headers.get(header::SET_COOKIE).is_none());
    let r = f.send(login("nothing=here".into())).await;
    assert_eq!(r.status, 400);

    // The right key: a session cookie and on to the team's dashboard.
    let r = f.send(login(format!("key={}", f.alice))).await;
    assert_eq!((r.status, r.header("location")), (303, dashboard.as_str()));
    let set_cookie = r.header("set-cookie").to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }
    let cookie = session_cookie(&set_cookie);
    assert!(!set_cookie.contains(&f.alice), "the cookie is not the key");

    // The one-click link does the same.
    let r = f
        .send(
            Request::get(format!("/login?key={}", f.bob))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!((r.status, r.header("location")), (303, dashboard.as_str()));
    let bob_cookie = session_cookie(r.header("set-cookie"));
    let r = f
        .send(Request::get("/login?key=ocsd_bad").body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status, 401);

    // The page, with the team, the user and the CSRF token filled in.
    let r = f
        .send(
            with_cookie(Request::get(&dashboard), &cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("content-type").starts_with("text/html"));
    assert!(r.header("content-security-policy").contains("default-src 'self'"));
    let html = r.text();
    assert!(!html.contains("{{"), "every placeholder filled");
    assert!(html.contains(&format!(r#"<meta name="team-slug" content="{}">"#, f.team_a.slug)));
    assert!(html.contains(&ocs_dash_api::page::escape(&f.team_a.name)));
    assert!(html.contains(r#"<span data-testid="user">alice</span>"#));
    let csrf = csrf_of(&html);
    assert_eq!(csrf.len(), 64);
    let r = f
        .send(with_cookie(Request::get("/"), &cookie).body(Body::empty()).unwrap())
        .await;
    assert_eq!((r.status, r.header("location")), (302, dashboard.as_str()));

    // Reads need no token.
    let chart = f.url(&format!("api/overview/?{WINDOW}"));
    let r = f
        .send(with_cookie(Request::get(&chart), &cookie).body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["chart"], "overview");

    // State changes need the token: missing, wrong (bob's), right.
    let save = |token: Option<&str>, cookie: &str| {
        let mut req =
            with_cookie(Request::post(f.url("filters/save/")), cookie).header(header::CONTENT_TYPE, "application/json");
        if let Some(t) = token {
            req = req.header("x-csrf-token", t);
        }
        req.body(Body::from(
            json!({"name": "Mine", "filters": {"date_range": "7"}}).to_string(),
        ))
        .unwrap()
    };
    f.send(save(None, &cookie)).await.error(403, "csrf_rejected");
    let bob_csrf = csrf_of(
        &f.send(
            with_cookie(Request::get(&dashboard), &bob_cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .text(),
    );
    f.send(save(Some(&bob_csrf), &cookie)).await.error(403, "csrf_rejected");
    let r = f.send(save(Some(&csrf), &cookie)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_i64().unwrap();
    let export = |token: Option<&str>| {
        let mut req = with_cookie(Request::post(f.url("export/")), &cookie);
        if let Some(t) = token {
            req = req.header("x-csrf-token", t);
        }
        req.body(Body::from(json!({"chart": "overview", "format": "json"}).to_string()))
            .unwrap()
    };
    f.send(export(None)).await.error(403, "csrf_rejected");
    assert_eq!(f.send(export(Some(&csrf))).await.status, 200);
    let delete = |token: Option<&str>| {
        let mut req = with_cookie(Request::delete(f.url(&format!("filters/{id}/"))), &cookie);
        if let Some(t) = token {
            req = req.header("x-csrf-token", t);
        }
        req.body(Body::empty()).unwrap()
    };
    f.send(delete(None)).await.error(403, "csrf_rejected");
    assert_eq!(f.send(delete(Some(&csrf))).await.status, 204);

    // A cookie of another team's user does not open this team.
    let other = f
        .send(
            Request::get(format!("/login?key={}", f.alice_b))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let other_cookie = session_cookie(other.header("set-cookie"));
    let r = f
        .send(
            with_cookie(Request::get(&chart), &other_cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    r.error(404, "not_found");
    let r = f
        .send(
            with_cookie(Request::get(&dashboard), &other_cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    r.error(404, "not_found");

    // Sign-out: the form carries the token; without it, refused.
    let r = f
        .send(
            with_cookie(Request::get("/logout"), &cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains(&format!(r#"name="csrf_token" value="{csrf}""#)));
    let logout = |body: String| {
        with_cookie(Request::post("/logout"), &cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap()
    };
    f.send(logout(String::new())).await.error(403, "csrf_rejected");
    let r = f.send(logout(format!("csrf_token={csrf}"))).await;
    assert_eq!((r.status, r.header("location")), (303, "/login"));
    assert!(r.header("set-cookie").contains("Max-Age=0"));
    let r = f
        .send(with_cookie(Request::get(&chart), &cookie).body(Body::empty()).unwrap())
        .await;
    r.error(401, "unauthorized");

    // Revoking a key ends its browser sessions.
    let bob_id = f
        .store
        .store
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.user == "bob")
        .unwrap()
        .id;
    assert_eq!(
        f.send(
            with_cookie(Request::get(&chart), &bob_cookie)
                .body(Body::empty())
                .unwrap()
        )
        .await
        .status,
        200
    );
    f.store.store.revoke_key(bob_id).await.unwrap();
    let r = f
        .send(
            with_cookie(Request::get(&chart), &bob_cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    r.error(401, "unauthorized");
    f.get(&f.bob, &chart).await.error(401, "unauthorized");

    let log = f.store.store.audit_log(100).await.unwrap();
    let actions: Vec<&str> = log
        .iter()
        .filter(|e| e.user == "alice" && e.team_id == f.team_a.id)
        .map(|e| e.action.as_str())
        .collect();
    for a in ["login", "logout", "chart", "export", "preset.save", "preset.delete"] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    f.store.finish().await;
}

#[tokio::test]
async fn browser_session_sqlite() {
    browser_session(Backend::Sqlite, "browser").await;
}

#[tokio::test]
async fn browser_session_postgres() {
    browser_session(Backend::Postgres, "browser").await;
}

#[tokio::test]
async fn keys_are_stored_only_as_hashes() {
    let f = Fixture::new(Backend::Sqlite, "hashes").await;
    let key = auth::create_key(&f.store.store, &f.team_a, "carol").await.unwrap();
    assert!(key.secret.starts_with("ocsd_") && key.secret.len() == 69);
    assert!(!format!("{key:?}").contains(&key.secret), "Debug hides the key");
    let listed = serde_json::to_value(f.store.store.list_keys().await.unwrap()).unwrap();
    assert!(!listed.to_string().contains(&key.secret[5..]));
    assert_eq!(listed[3]["prefix"], Value::from(&key.secret[..13]));
    // The files (database and write-ahead log) hold the hash, never the key.
    let mut files = Vec::new();
    for entry in std::fs::read_dir(f.store.path().unwrap()).unwrap() {
        files.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let hay = String::from_utf8_lossy(&files);
    assert!(!hay.contains(&key.secret[5..]));
    assert!(hay.contains(&hash_secret(&key.secret)));
    assert!(auth::create_key(&f.store.store, &f.team_a, "  ").await.is_err());
    f.store.finish().await;
}
