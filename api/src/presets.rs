//! Filter presets: saved per user and team; anyone else gets 404.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::Utc;
use ocs_dash_engine::filters::Filters;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{JsonBody, PathParams, filter_pairs};
use crate::store::Preset;
use crate::{AppState, route};

pub fn router() -> Router<AppState> {
    let r = route(Router::new(), "/a/{team}/dashboard/filters", get(list));
    let r = route(r, "/a/{team}/dashboard/filters/save", post(save));
    let r = route(r, "/a/{team}/dashboard/filters/load/{id}", get(load));
    route(r, "/a/{team}/dashboard/filters/{id}", delete(remove))
}

/// A preset to save.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SavePreset {
    /// 1 to 100 characters; saving an existing name replaces that preset.
    pub name: String,
    /// The chart query parameters (`date_range`, `experiments`, ...).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub filters: Map<String, Value>,
    /// Open this preset by default (unsets the user's previous default in the team).
    #[serde(default)]
    pub is_default: bool,
}

/// A preset id from the path; one that is not a number names no preset.
fn preset_id(id: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| ApiError::NotFound("preset"))
}

#[utoipa::path(post, path = "/a/{team_slug}/dashboard/filters/save/", tag = "presets",
    params(("team_slug" = String, Path, description = "The team's URL slug")),
    request_body = SavePreset,
    responses(
        (status = 201, body = Preset, description = "Saved (or replaced, keeping its id)"),
        (status = 400, body = crate::error::ErrorEnvelope, description = "Malformed body, bad name or an invalid filter"),
        (status = 401, body = crate::error::ErrorEnvelope),
        (status = 403, body = crate::error::ErrorEnvelope, description = "Cookie without the CSRF token"),
        (status = 404, body = crate::error::ErrorEnvelope),
    ),
    security(("bearer" = []), ("session" = [])))]
pub(crate) async fn save(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<SavePreset>,
) -> Result<(StatusCode, Json<Preset>), ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid("name", "name must be 1 to 100 characters"));
    }
    // Only valid filters are saved (dates stay as given: a relative range stays relative).
    Filters::parse(&filter_pairs(&body.filters)?, Utc::now())?;
    let preset = state
        .store()
        .save_preset(caller.team.id, &caller.user, name, &body.filters, body.is_default)
        .await?;
    state
        .store()
        .audit_row(caller.audit("preset.save", &preset.id.to_string(), Value::Object(body.filters), 1))
        .await?;
    Ok((StatusCode::CREATED, Json(preset)))
}

#[utoipa::path(get, path = "/a/{team_slug}/dashboard/filters/", tag = "presets",
    params(("team_slug" = String, Path, description = "The team's URL slug")),
    responses(
        (status = 200, body = Vec<Preset>, description = "The caller's presets in this team, by name"),
        (status = 401, body = crate::error::ErrorEnvelope),
        (status = 404, body = crate::error::ErrorEnvelope),
    ),
    security(("bearer" = []), ("session" = [])))]
pub(crate) async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<Preset>>, ApiError> {
    Ok(Json(state.store().list_presets(caller.team.id, &caller.user).await?))
}

#[utoipa::path(get, path = "/a/{team_slug}/dashboard/filters/load/{id}/", tag = "presets",
    params(("team_slug" = String, Path, description = "The team's URL slug"), ("id" = i64, Path, description = "The preset's id")),
    responses(
        (status = 200, body = Preset),
        (status = 401, body = crate::error::ErrorEnvelope),
        (status = 404, body = crate::error::ErrorEnvelope, description = "No such preset of this user in this team"),
    ),
    security(("bearer" = []), ("session" = [])))]
pub(crate) async fn load(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((_team, id)): PathParams<(String, String)>,
) -> Result<Json<Preset>, ApiError> {
    state
        .store()
        .get_preset(caller.team.id, &caller.user, preset_id(&id)?)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("preset"))
}

#[utoipa::path(delete, path = "/a/{team_slug}/dashboard/filters/{id}/", tag = "presets",
    params(("team_slug" = String, Path, description = "The team's URL slug"), ("id" = i64, Path, description = "The preset's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = crate::error::ErrorEnvelope),
        (status = 403, body = crate::error::ErrorEnvelope, description = "Cookie without the CSRF token"),
        (status = 404, body = crate::error::ErrorEnvelope, description = "No such preset of this user in this team"),
    ),
    security(("bearer" = []), ("session" = [])))]
pub(crate) async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((_team, id)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = preset_id(&id)?;
    if !state.store().delete_preset(caller.team.id, &caller.user, id).await? {
        return Err(ApiError::NotFound("preset"));
    }
    state
        .store()
        .audit_row(caller.audit("preset.delete", &id.to_string(), Value::Object(Map::new()), 0))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
