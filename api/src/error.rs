//! Errors. [`Error`] is the library's (store, start-up, key management);
//! [`ApiError`] is what an HTTP request can fail with, turned into a status
//! and the JSON envelope of api.md in one place.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Everything the server's library functions can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The metadata store (keys, sessions, presets, audit log) failed.
    #[error("metadata store: {0}")]
    Store(#[from] sqlx::Error),
    /// The audit log cannot take a row (its writer is failing, full or closed).
    #[error("audit log: {0}")]
    Audit(String),
    /// Its schema could not be brought up to date.
    #[error("metadata store migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The engine failed (no snapshot, damaged snapshot, query failure).
    #[error(transparent)]
    Engine(#[from] ocs_dash_engine::Error),
    /// Filesystem or socket trouble.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A request of the operator that cannot be met (unknown team, bad URL...).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// The library's result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an HTTP request failed. Only [`ApiError::status_code`] decides the
/// status; 5xx details go to the log, never to the client.
#[derive(Debug, Clone)]
pub enum ApiError {
    /// A query parameter or body field is wrong (api.md's 400).
    InvalidParameter { parameter: String, message: String },
    /// The body is not the JSON (or form) the route takes.
    BadRequest(String),
    /// The body is larger than the server accepts.
    PayloadTooLarge,
    /// No credential, or one that is unknown, revoked or expired.
    Unauthorized,
    /// A cookie-authenticated state change without the page's CSRF token.
    CsrfRejected,
    /// Unknown chart, preset or route; a team the credential is not for.
    NotFound(&'static str),
    /// The route exists, but not with this method.
    MethodNotAllowed,
    /// No (usable) snapshot: the message says what to do.
    Unavailable(String),
    /// Anything else; the detail is logged only.
    Internal(String),
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: `invalid_parameter`, `bad_request`, `payload_too_large`,
    /// `unauthorized`, `csrf_rejected`, `not_found`, `method_not_allowed`, `unavailable`, `internal`.
    pub code: &'static str,
    /// The offending parameter (for `invalid_parameter`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    pub message: String,
}

impl ApiError {
    pub(crate) fn invalid(parameter: &str, message: impl Into<String>) -> Self {
        ApiError::InvalidParameter {
            parameter: parameter.to_string(),
            message: message.into(),
        }
    }

    /// The one place a failure becomes an HTTP status.
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidParameter { .. } | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::CsrfRejected => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn detail(self) -> ErrorDetail {
        let (code, parameter, message) = match self {
            ApiError::InvalidParameter { parameter, message } => ("invalid_parameter", Some(parameter), message),
            ApiError::BadRequest(m) => ("bad_request", None, m),
            ApiError::PayloadTooLarge => ("payload_too_large", None, "the request body is too large".into()),
            ApiError::Unauthorized => (
                "unauthorized",
                None,
                "sign in: send `Authorization: Bearer <API key>` or use the session cookie from /login".into(),
            ),
            ApiError::CsrfRejected => (
                "csrf_rejected",
                None,
                "requests made with the session cookie must send the page's X-CSRF-Token header".into(),
            ),
            ApiError::NotFound(what) => ("not_found", None, format!("{what} not found")),
            ApiError::MethodNotAllowed => (
                "method_not_allowed",
                None,
                "this route does not take that method".into(),
            ),
            ApiError::Unavailable(m) => ("unavailable", None, m),
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                (
                    "internal",
                    None,
                    "internal error; the server log has the details".into(),
                )
            }
        };
        ErrorDetail {
            code,
            parameter,
            message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let unauthorized = matches!(self, ApiError::Unauthorized);
        let mut response = (status, axum::Json(ErrorEnvelope { error: self.detail() })).into_response();
        if unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The one place engine (and so DataFusion) errors are sorted into the
/// client's mistakes, an unavailable snapshot, and internal failures.
impl From<ocs_dash_engine::Error> for ApiError {
    fn from(e: ocs_dash_engine::Error) -> Self {
        use datafusion::error::DataFusionError as D;
        use ocs_dash_engine::Error as E;
        match e {
            E::InvalidParameter { parameter, message } => ApiError::InvalidParameter { parameter, message },
            E::NoSnapshot(_) => ApiError::Unavailable(
                "no snapshot has been loaded yet: run `ocs-dash etl` (or `ocs-dash demo`) to create one".into(),
            ),
            E::BadSnapshot { .. } => {
                tracing::error!(error = %e, "current snapshot unusable");
                ApiError::Unavailable("the current snapshot cannot be read; the server log has the details".into())
            }
            E::DataFusion(ref d) if matches!(d.find_root(), D::ResourcesExhausted(_)) => {
                tracing::warn!(error = %e, "query ran out of resources");
                ApiError::Unavailable("the server is too busy to answer this query now; try again".into())
            }
            E::Query(_)
            | E::DataFusion(_)
            | E::Arrow(_)
            | E::Io { .. }
            | E::Storage { .. }
            | E::Location(_)
            | E::Conflict(_)
            | E::Shared(_)
            | E::Json(_)
            | E::Config(_)
            | E::Ballista(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Engine(e) => e.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Error::Store(e).into()
    }
}
