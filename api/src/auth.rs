//! Who is calling: API keys, browser sessions and CSRF.
//!
//! - An API key (`ocsd_` + 64 hex digits, 256 random bits) is shown once when
//!   it is created; the store keeps only its SHA-256. It belongs to one team
//!   (by id) and one named user. Clients send `Authorization: Bearer <key>`.
//! - `/login` exchanges a key for a browser session: a random token in an
//!   `HttpOnly; SameSite=Strict` cookie (the store keeps its SHA-256) and a
//!   CSRF token the dashboard page carries. A request made with the cookie
//!   that is not GET/HEAD must send that token in `X-CSRF-Token`.
//! - The team of every `/a/{team}/...` request comes from the credential
//!   only: the slug in the URL must name that same team in the current
//!   snapshot, or the answer is 404 whether or not the slug exists.

use std::sync::Arc;

use axum::extract::{Form, FromRequestParts, RawPathParams, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Router, extract::rejection::FormRejection};
use chrono::Utc;
use ocs_dash_engine::{Snapshot, Team};
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::audit::AuditRow;
use crate::error::{ApiError, Error, Result};
use crate::page;
use crate::store::{ApiKey, AuditEntry, Credential, SESSION_TTL, Store};
use crate::{AppState, route};

/// The session cookie's name.
pub const COOKIE: &str = "ocs_dash_session";
/// The header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
const KEY_PREFIX: &str = "ocsd_";

/// The SHA-256 (hex) under which a key or session token is stored.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Compares secrets without an early exit (no timing hint on how much matched).
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A key just created; `secret` exists nowhere else and is printed once.
pub struct NewKey {
    pub key: ApiKey,
    pub secret: String,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Creates an API key for a user of a team.
pub async fn create_key(store: &Store, team: &Team, user: &str) -> Result<NewKey> {
    let user = user.trim();
    if user.is_empty() || user.chars().count() > 100 || user.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "the user name must be 1 to 100 printable characters".into(),
        ));
    }
    let secret = format!("{KEY_PREFIX}{}", random_hex(32));
    let prefix = &secret[..KEY_PREFIX.len() + 8];
    let key = store
        .insert_key(&hash_secret(&secret), prefix, team.id, &team.slug, user)
        .await?;
    Ok(NewKey { key, secret })
}

/// The authenticated caller of a `/a/{team}/...` route, its team checked.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: i64,
    pub user: String,
    pub team: Team,
    /// The snapshot the team was resolved in (answer from this one).
    pub snapshot: Arc<Snapshot>,
    /// The session's CSRF token when signed in with the cookie.
    pub csrf: Option<String>,
}

impl Caller {
    /// An audit row for something this caller did.
    pub(crate) fn audit(&self, action: &str, target: &str, filters: serde_json::Value, rows: usize) -> AuditRow {
        self.audit_row(action, target, filters.to_string().into(), rows)
    }

    /// The same, with the filters already JSON text (a cached answer's).
    pub(crate) fn audit_row(&self, action: &str, target: &str, filters: Arc<str>, rows: usize) -> AuditRow {
        AuditRow {
            at_micros: Utc::now().timestamp_micros(),
            key_id: self.key_id,
            user: self.user.clone(),
            team_id: self.team.id,
            action: action.to_string(),
            target: target.to_string(),
            filters,
            rows: i64::try_from(rows).unwrap_or(i64::MAX),
        }
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The credential a request carries: a bearer key wins over the cookie;
/// a malformed `Authorization` header counts as an invalid credential.
async fn credential(headers: &HeaderMap, store: &Store) -> Result<Option<Credential>, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let secret = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim())
            .ok_or(ApiError::Unauthorized)?;
        return Ok(store.key_by_hash(&hash_secret(secret)).await?);
    }
    match cookie(headers, COOKIE) {
        Some(token) => Ok(store.session_by_hash(&hash_secret(token)).await?),
        None => Ok(None),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let cred = credential(&parts.headers, state.store())
            .await?
            .ok_or(ApiError::Unauthorized)?;
        if let Some(expected) = &cred.csrf {
            let safe = matches!(parts.method, Method::GET | Method::HEAD);
            let sent = parts.headers.get(CSRF_HEADER).map(HeaderValue::as_bytes);
            if !safe && !sent.is_some_and(|s| same_secret(s, expected.as_bytes())) {
                return Err(ApiError::CsrfRejected);
            }
        }
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound("team"))?;
        let slug = params
            .iter()
            .find(|(k, _)| *k == "team")
            .map(|(_, v)| v.to_string())
            .ok_or(ApiError::NotFound("team"))?;
        let snapshot = state.engine().snapshot().await?;
        let team = snapshot
            .team(&slug)
            .filter(|t| t.id == cred.team_id)
            .cloned()
            .ok_or(ApiError::NotFound("team"))?;
        Ok(Caller {
            key_id: cred.key_id,
            user: cred.user,
            team,
            snapshot,
            csrf: cred.csrf,
        })
    }
}

/// Sign-in, sign-out and `/` (which sends a signed-in browser to its dashboard).
pub fn router() -> Router<AppState> {
    let r = Router::new().route("/", get(home));
    let r = route(r, "/login", get(login_page).post(login_submit));
    route(r, "/logout", get(logout_page).post(logout_submit))
}

/// The sign-in form.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginForm {
    /// An API key from `ocs-dash keys create`.
    pub key: String,
}

/// The sign-out form (the page's CSRF token).
#[derive(Debug, Deserialize, ToSchema)]
pub struct LogoutForm {
    #[serde(default)]
    pub csrf_token: String,
}

fn redirect(status: StatusCode, to: &str) -> Response {
    (status, [(header::LOCATION, to.to_string())]).into_response()
}

/// Where a credential's dashboard is (its team's slug in the current snapshot).
async fn dashboard_url(state: &AppState, cred: &Credential) -> String {
    let slug = state
        .engine()
        .snapshot()
        .await
        .ok()
        .and_then(|s| s.teams.iter().find(|t| t.id == cred.team_id).map(|t| t.slug.clone()))
        .unwrap_or_else(|| cred.team_slug.clone());
    format!("/a/{slug}/dashboard/")
}

#[utoipa::path(get, path = "/", tag = "browser",
    responses((status = 302, description = "To the signed-in team's dashboard, or to /login")))]
pub(crate) async fn home(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let session = match cookie(&headers, COOKIE) {
        Some(token) => state.store().session_by_hash(&hash_secret(token)).await?,
        None => None,
    };
    Ok(match session {
        Some(cred) => redirect(StatusCode::FOUND, &dashboard_url(&state, &cred).await),
        None => redirect(StatusCode::FOUND, "/login"),
    })
}

#[utoipa::path(get, path = "/login", tag = "browser",
    params(("key" = Option<String>, Query, description = "An API key: signs in at once (the demo's one-click link)")),
    responses(
        (status = 200, description = "The sign-in form", content_type = "text/html"),
        (status = 303, description = "Signed in: session cookie set, on to the team's dashboard"),
        (status = 401, description = "The key is not valid: the form again", content_type = "text/html"),
    ))]
pub(crate) async fn login_page(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let key = query.as_deref().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "key")
            .map(|(_, v)| v.into_owned())
    });
    match key {
        Some(key) => sign_in(&state, &key).await,
        None => Ok(page::login(StatusCode::OK, None)),
    }
}

#[utoipa::path(post, path = "/login", tag = "browser",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed in: session cookie set, on to the team's dashboard"),
        (status = 400, description = "No key in the form", content_type = "text/html"),
        (status = 401, description = "The key is not valid", content_type = "text/html"),
    ))]
pub(crate) async fn login_submit(
    State(state): State<AppState>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, ApiError> {
    match form {
        Ok(Form(f)) => sign_in(&state, &f.key).await,
        Err(_) => Ok(page::login(
            StatusCode::BAD_REQUEST,
            Some("Paste an API key to sign in."),
        )),
    }
}

async fn sign_in(state: &AppState, key: &str) -> Result<Response, ApiError> {
    let Some(cred) = state.store().key_by_hash(&hash_secret(key.trim())).await? else {
        return Ok(page::login(
            StatusCode::UNAUTHORIZED,
            Some("That API key is not valid (or was revoked)."),
        ));
    };
    let token = random_hex(32);
    let csrf = random_hex(32);
    state
        .store()
        .insert_session(&hash_secret(&token), cred.key_id, &csrf)
        .await?;
    state
        .store()
        .audit(&AuditEntry {
            at: Utc::now(),
            key_id: cred.key_id,
            user: cred.user.clone(),
            team_id: cred.team_id,
            action: "login".into(),
            target: "session".into(),
            filters: serde_json::Value::Object(Default::default()),
            rows: 0,
        })
        .await?;
    let secure = if state.settings().secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_TTL.num_seconds()
    );
    let mut response = redirect(StatusCode::SEE_OTHER, &dashboard_url(state, &cred).await);
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    Ok(response)
}

#[utoipa::path(get, path = "/logout", tag = "browser",
    responses(
        (status = 200, description = "A sign-out button (a form carrying the CSRF token)", content_type = "text/html"),
        (status = 302, description = "Not signed in: to /login"),
    ))]
pub(crate) async fn logout_page(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let session = match cookie(&headers, COOKIE) {
        Some(token) => state.store().session_by_hash(&hash_secret(token)).await?,
        None => None,
    };
    Ok(match session.and_then(|c| c.csrf.map(|csrf| (c.user, csrf))) {
        Some((user, csrf)) => page::logout(&user, &csrf),
        None => redirect(StatusCode::FOUND, "/login"),
    })
}

#[utoipa::path(post, path = "/logout", tag = "browser",
    request_body(content = LogoutForm, content_type = "application/x-www-form-urlencoded",
        description = "The CSRF token, as a form field or in X-CSRF-Token"),
    responses(
        (status = 303, description = "Signed out (cookie cleared), to /login"),
        (status = 403, description = "Signed in but without the CSRF token", body = crate::error::ErrorEnvelope),
    ))]
pub(crate) async fn logout_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LogoutForm>, FormRejection>,
) -> Result<Response, ApiError> {
    if let Some(token) = cookie(&headers, COOKIE) {
        let hash = hash_secret(token);
        if let Some(cred) = state.store().session_by_hash(&hash).await? {
            let expected = cred.csrf.clone().unwrap_or_default();
            let from_form = form.map(|Form(f)| f.csrf_token).unwrap_or_default();
            let from_header = headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !same_secret(from_form.as_bytes(), expected.as_bytes())
                && !same_secret(from_header.as_bytes(), expected.as_bytes())
            {
                return Err(ApiError::CsrfRejected);
            }
            state.store().delete_session(&hash).await?;
            state
                .store()
                .audit(&AuditEntry {
                    at: Utc::now(),
                    key_id: cred.key_id,
                    user: cred.user,
                    team_id: cred.team_id,
                    action: "logout".into(),
                    target: "session".into(),
                    filters: serde_json::Value::Object(Default::default()),
                    rows: 0,
                })
                .await?;
        }
    }
    let mut response = redirect(StatusCode::SEE_OTHER, "/login");
    let clear = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&clear).map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_in_full() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
        assert!(!same_secret(b"", b"a"));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; ocs_dash_session=tok; b=2"),
        );
        assert_eq!(cookie(&h, COOKIE), Some("tok"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn key_hashes_are_sha256_hex() {
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
