//! The ETL's error type.

/// Everything that can end an ETL or generator run. Bad *rows* are not
/// errors: they are handled per metrics.md and counted as anomalies.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database could not be reached or refused us.
    #[error(
        "cannot connect to the database: {0}. Check --database-url (postgres://user:password@host:port/dbname) and that the server is running"
    )]
    Connect(#[source] sqlx::Error),
    /// The database lacks OCS tables.
    #[error("the database has no Open Chat Studio tables ({missing}): point --database-url at an OCS database")]
    NotOcs { missing: String },
    /// `generate` refuses a database that already holds OCS data.
    #[error(
        "the database already holds Open Chat Studio rows ({table} is not empty): generate fills only empty databases; use a new database"
    )]
    NotEmpty { table: String },
    /// The data directory cannot be written.
    #[error("cannot write to the data directory {path}: {source}. Pass a writable --data directory")]
    DataDir {
        path: String,
        #[source]
        source: ocs_dash_engine::Error,
    },
    /// A Postgres error while exporting or loading.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// The binary COPY stream was not what we asked for.
    #[error("malformed COPY data from Postgres: {0}")]
    Copy(String),
    /// The previous snapshot cannot be built on.
    #[error("the previous snapshot is unusable: {0}")]
    PrevSnapshot(String),
    /// An error in the snapshot layer.
    #[error(transparent)]
    Engine(#[from] ocs_dash_engine::Error),
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// The ETL's result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
