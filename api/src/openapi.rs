//! The OpenAPI 3 document of every route, generated from the handlers'
//! annotations and the Rust types (utoipa), served at `/api/openapi.json`.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::AppState;

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "ocs-dash",
        description = "Analytics for Open Chat Studio dashboards: chart JSON, filter presets, exports. \
                       Every /a/{team_slug}/... route needs an API key (Bearer) or the session cookie from /login \
                       (plus X-CSRF-Token on POST/DELETE) bound to that team."
    ),
    paths(
        crate::charts::chart,
        crate::presets::save,
        crate::presets::list,
        crate::presets::load,
        crate::presets::remove,
        crate::export::export,
        crate::page::dashboard,
        crate::page::asset,
        crate::auth::home,
        crate::auth::login_page,
        crate::auth::login_submit,
        crate::auth::logout_page,
        crate::auth::logout_submit,
        crate::ops::health,
        crate::ops::metrics,
        openapi_json,
    ),
    components(schemas(crate::error::ErrorEnvelope, crate::error::ErrorDetail)),
    modifiers(&Security),
    tags(
        (name = "charts", description = "The dashboard's charts"),
        (name = "presets", description = "Saved filters, per user and team"),
        (name = "exports", description = "Charts as CSV or JSON downloads"),
        (name = "browser", description = "Sign-in, the dashboard page and its files"),
        (name = "operations", description = "Health, metrics and this document"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key from `ocs-dash keys create`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::COOKIE,
                "The browser session from /login; POST and DELETE also need the X-CSRF-Token header",
            ))),
        );
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/api/openapi.json", get(openapi_json))
}

#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "This document")))]
pub(crate) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
