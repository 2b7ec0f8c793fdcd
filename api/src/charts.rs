//! `GET /a/{team}/dashboard/api/{chart}/`: the eight charts as JSON.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use chrono::Utc;
use ocs_dash_engine::charts::Chart;
use ocs_dash_engine::filters::Filters;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{PathParams, query_pairs};
use crate::schema::{ChartEnvelope, ChartParams};
use crate::{AppState, route};

pub fn router() -> Router<AppState> {
    route(Router::new(), "/a/{team}/dashboard/api/{chart}", get(chart))
}

/// Parses a chart name (unknown → 404).
pub(crate) fn parse_chart(name: &str) -> Result<Chart, ApiError> {
    name.parse().map_err(|()| ApiError::NotFound("chart"))
}

#[utoipa::path(get, path = "/a/{team_slug}/dashboard/api/{chart}/", tag = "charts",
    description = "One chart of the dashboard for the caller's team (the trailing slash is optional). \
                   `data` per chart is described in metrics.md.",
    params(
        ("team_slug" = String, Path, description = "The team's URL slug (must be the credential's team)"),
        ("chart" = String, Path, description = "overview, active-participants, session-analytics, message-volume, \
                                                bot-performance, user-engagement, channel-breakdown or tag-analytics"),
        ChartParams,
    ),
    responses(
        (status = 200, body = ChartEnvelope, description = "The chart with its resolved filters and snapshot"),
        (status = 400, body = crate::error::ErrorEnvelope, description = "A parameter is invalid (the error names it)"),
        (status = 401, body = crate::error::ErrorEnvelope, description = "No credential, or an invalid one"),
        (status = 404, body = crate::error::ErrorEnvelope, description = "Unknown chart, or a team the credential is not for"),
        (status = 503, body = crate::error::ErrorEnvelope, description = "No snapshot yet"),
    ),
    security(("bearer" = []), ("session" = [])))]
pub(crate) async fn chart(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((_team, name)): PathParams<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let chart = parse_chart(&name)?;
    let (filters, options) = Filters::parse(&query_pairs(query.as_deref()), Utc::now())?;
    let answer = state
        .answers()
        .get(
            state.engine(),
            &caller.snapshot,
            caller.team.id,
            chart,
            &filters,
            &options,
        )
        .await?;
    state
        .store()
        .audit_row(caller.audit_row("chart", chart.name(), answer.filters.clone(), answer.rows))
        .await?;
    Ok(answer.response(&headers))
}
