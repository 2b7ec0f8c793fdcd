//! The engine's error type.

/// Everything that can go wrong inside the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request parameter is missing or malformed (a 400 for the API).
    #[error("{message}")]
    InvalidParameter { parameter: String, message: String },
    /// The data directory has no current snapshot yet.
    #[error("no snapshot in {0}: run `ocs-dash etl` or `ocs-dash demo` first")]
    NoSnapshot(String),
    /// A snapshot's manifest is missing or unreadable.
    #[error("snapshot {version} is incomplete or damaged: {reason}")]
    BadSnapshot { version: String, reason: String },
    /// `--data` names no usable place (bad URL, unknown scheme, bad S3 settings).
    #[error("cannot use the data directory {0}")]
    Location(String),
    /// The object store (or local disk) refused or failed a request.
    #[error("{context}: {source}")]
    Storage {
        context: String,
        #[source]
        source: object_store::Error,
    },
    /// Another writer published a snapshot while this one was being built.
    #[error("{0}")]
    Conflict(String),
    /// Filesystem trouble in the data directory.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A query failed inside DataFusion.
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// An Arrow error while reading query results.
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// A query a user wrote is wrong (bad SQL, unknown table or column,
    /// refused statement); the message says what.
    #[error("{0}")]
    Query(String),
    /// An error another request's identical query met (cache coalescing).
    #[error("{0}")]
    Shared(String),
    /// A setting is malformed (e.g. the `--ballista` URL).
    #[error("{0}")]
    Config(String),
    /// The Ballista cluster failed (start-up, connection, a job).
    #[error("ballista: {0}")]
    Ballista(String),
    /// A manifest could not be (de)serialised.
    #[error("manifest: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// The engine's result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The one place DataFusion errors are sorted into the user's mistakes
/// (parse, plan, schema, refused statements, bad casts at run time) and
/// internal failures (I/O, corrupt files, resources, bugs).
pub fn user_query_error(e: datafusion::error::DataFusionError) -> Error {
    use datafusion::error::DataFusionError as D;
    match e.find_root() {
        D::SQL(..) | D::Plan(_) | D::SchemaError(..) | D::NotImplemented(_) | D::Execution(_) => {
            Error::Query(e.find_root().message().into_owned())
        }
        D::ArrowError(a, _) if !matches!(**a, datafusion::arrow::error::ArrowError::IoError(..)) => {
            Error::Query(e.find_root().message().into_owned())
        }
        _ => Error::DataFusion(e),
    }
}
