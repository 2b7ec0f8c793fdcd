//! Where the engine's queries run: in this process, or on an Apache
//! DataFusion Ballista cluster (cargo feature `ballista`). Everything above
//! the [`SessionContext`] (team scopes, chart SQL, bound parameters, the
//! result cache) is the same for both.

use std::sync::Arc;

use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::SessionContext;

use crate::error::Result;
use crate::scope::session;

/// Where queries run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Backend {
    /// DataFusion in this process.
    #[default]
    Local,
    /// A Ballista scheduler and its executors.
    #[cfg(feature = "ballista")]
    Ballista(crate::ballista::Cluster),
}

impl Backend {
    /// A fresh, empty context with the engine's settings. A local one runs
    /// on `runtime` (shared caches of listings and footers); a Ballista one
    /// plans here and runs on the cluster's executors.
    pub async fn context(&self, runtime: &Arc<RuntimeEnv>) -> Result<SessionContext> {
        match self {
            Backend::Local => Ok(session(runtime)),
            #[cfg(feature = "ballista")]
            Backend::Ballista(cluster) => cluster.context().await,
        }
    }
}
