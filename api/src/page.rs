//! The dashboard page, the sign-in and sign-out pages, and the static files
//! under `api/assets/static/` (compiled in by `build.rs`).

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::{AppState, route};

mod assets {
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

/// Everything a page may load comes from this server (the dashboard works
/// offline); Chart.js sets inline styles, so those are allowed.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The dashboard page and static files.
pub fn router() -> Router<AppState> {
    let r = route(Router::new(), "/a/{team}/dashboard", get(dashboard));
    r.route("/static/{*path}", get(asset))
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Replaces `{{name}}` placeholders with HTML-escaped values.
fn render(template: &str, values: &[(&str, &str)]) -> String {
    values.iter().fold(template.to_string(), |html, (name, value)| {
        html.replace(&format!("{{{{{name}}}}}"), &escape(value))
    })
}

fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // The one-click sign-in URL holds a key: never send it on as a referrer.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// The sign-in page, with an error message when a key was refused.
pub(crate) fn login(status: StatusCode, error: Option<&str>) -> Response {
    let error = error.map_or(String::new(), |e| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e))
    });
    html(status, include_str!("html/login.html").replace("{{error}}", &error))
}

/// The sign-out page (a button posting the CSRF token).
pub(crate) fn logout(user: &str, csrf: &str) -> Response {
    html(
        StatusCode::OK,
        render(
            include_str!("html/logout.html"),
            &[("user", user), ("csrf_token", csrf)],
        ),
    )
}

#[utoipa::path(get, path = "/a/{team_slug}/dashboard/", tag = "browser",
    params(("team_slug" = String, Path, description = "The team's URL slug")),
    responses(
        (status = 200, description = "The dashboard page", content_type = "text/html"),
        (status = 302, description = "Not signed in: to /login"),
        (status = 404, description = "A team the credential is not for, or no such team", body = crate::error::ErrorEnvelope),
    ),
    security(("session" = []), ("bearer" = [])))]
pub(crate) async fn dashboard(caller: Result<Caller, ApiError>) -> Response {
    match caller {
        Ok(c) => html(
            StatusCode::OK,
            render(
                assets::DASHBOARD_HTML,
                &[
                    ("team_slug", &c.team.slug),
                    ("team_name", &c.team.name),
                    ("csrf_token", c.csrf.as_deref().unwrap_or("")),
                    ("user", &c.user),
                ],
            ),
        ),
        Err(ApiError::Unauthorized) => (StatusCode::FOUND, [(header::LOCATION, "/login")]).into_response(),
        Err(e) => e.into_response(),
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json" | "map") => "application/json",
        Some("woff2") => "font/woff2",
        Some("md" | "txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[utoipa::path(get, path = "/static/{path}", tag = "browser",
    params(("path" = String, Path, description = "A file below api/assets/static/, e.g. dashboard.js")),
    responses(
        (status = 200, description = "The file, with its content type"),
        (status = 404, description = "No such file", body = crate::error::ErrorEnvelope),
    ))]
pub(crate) async fn asset(Path(path): Path<String>) -> Response {
    match assets::STATIC_FILES.iter().find(|(name, _)| *name == path) {
        Some((_, bytes)) => (
            [
                (header::CONTENT_TYPE, content_type(&path)),
                (header::CACHE_CONTROL, "public, max-age=300"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            *bytes,
        )
            .into_response(),
        None => ApiError::NotFound("file").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn renders_placeholders_escaped() {
        assert_eq!(
            render("<b>{{user}}</b>{{user}}", &[("user", "<x>")]),
            "<b>&lt;x&gt;</b>&lt;x&gt;"
        );
    }

    #[test]
    fn the_page_and_its_files_are_compiled_in() {
        for placeholder in ["{{team_slug}}", "{{team_name}}", "{{csrf_token}}", "{{user}}"] {
            assert!(assets::DASHBOARD_HTML.contains(placeholder), "{placeholder}");
        }
        for file in ["dashboard.js", "dashboard.css", "vendor/chart.umd.min.js"] {
            assert!(assets::STATIC_FILES.iter().any(|(n, _)| *n == file), "{file}");
        }
    }
}
