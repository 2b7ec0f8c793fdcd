//! ocs-dash engine: the snapshot format and the queries over it.
//!
//! A *snapshot* is one consistent export of an Open Chat Studio database,
//! already resolved into the shape the dashboard needs (counted sessions,
//! effective platforms, turns with their session's chatbot and participant).
//! [`snapshot`] defines its tables and columns (the contract between the ETL,
//! which writes them, and everything that reads them) and the versioned data
//! directory; [`storage`] keeps the versions on a local disk or in an object
//! store and publishes each one atomically.

pub mod backend;
#[cfg(feature = "ballista")]
pub mod ballista;
pub mod buckets;
pub mod charts;
pub mod engine;
pub mod error;
pub mod filters;
pub mod scope;
pub mod snapshot;
pub mod sql;
pub mod storage;

pub use backend::Backend;
pub use engine::{CacheConfig, CacheCounts, ChartResponse, Engine, Snapshot, Team};
pub use error::{Error, Result};
