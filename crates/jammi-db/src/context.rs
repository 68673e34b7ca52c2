//! What an engine part needs from the engine it runs in, for one caller.
//!
//! The session implements [`EngineContext`] and passes it *down* to the parts (mutable
//! tables, topics, vector tables, sources, artifacts), together with the part's own state;
//! the parts never name the session, so calls go one way: session → part → engine-wide
//! modules (catalog, storage, tenant, transactions).

use std::sync::Arc;

use datafusion::execution::context::{SessionContext, SessionState};
use object_store::ObjectStore;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::error::Result;
use crate::storage::{StorageOptions, StorageUrl};
use crate::tenant::TenantScope;
use crate::txn::WriteTxn;

/// The engine as one caller (a session handle: its tenant scope, its open transaction)
/// sees it.
#[async_trait::async_trait]
pub(crate) trait EngineContext: Send + Sync + std::fmt::Debug {
    /// The engine's configuration.
    fn config(&self) -> &Config;

    /// The catalog database.
    fn catalog(&self) -> &Catalog;

    /// The caller's tenant scope.
    fn scope(&self) -> TenantScope;

    /// Bring every part's view of the catalog up to date (cheap when nothing changed).
    async fn sync_catalog(&self) -> Result<()>;

    /// A DataFusion context bound to `scope` (and to the caller's open transaction).
    fn query_context(&self, scope: TenantScope) -> SessionContext;

    /// The context that plans a write inside `txn`.
    fn write_context(&self, scope: TenantScope, txn: &Arc<WriteTxn>) -> SessionContext;

    /// The transaction `BEGIN` opened for the caller, while it is open.
    fn open_transaction(&self) -> Option<Arc<WriteTxn>>;

    /// The object store for `url`, made available to queries too.
    fn register_store(&self, url: &StorageUrl, options: &StorageOptions) -> Result<Arc<dyn ObjectStore>>;

    /// The engine's template DataFusion state (functions, rules, runtime).
    fn base_state(&self) -> SessionState;

    /// The ephemeral session the caller is in, if any (its tables resolve for it alone).
    fn ephemeral_id(&self) -> Option<Arc<str>> {
        None
    }
}
