//! How a scope reaches a query: task-local bindings and the DataFusion config extension.

use std::any::Any;
use std::future::Future;

use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::error::{DataFusionError, Result as DfResult};

use super::{TenantId, TenantScope};

tokio::task_local! {
    static TASK_SCOPE: TenantScope;
}

/// Run `fut` with every query it plans bound to `tenant`, whatever the session's sticky
/// binding says. Concurrent tasks sharing one session each keep their own tenant.
pub async fn with_tenant<F: Future>(tenant: TenantId, fut: F) -> F::Output {
    TASK_SCOPE.scope(TenantScope::Tenant(tenant), fut).await
}

/// Run `fut` under an explicit scope (crate-internal: `Admin` must only come from
/// [`crate::Session::admin`]).
pub(crate) async fn with_scope<F: Future>(scope: TenantScope, fut: F) -> F::Output {
    TASK_SCOPE.scope(scope, fut).await
}

/// The scope set for the current task, if any.
pub fn current_task_scope() -> Option<TenantScope> {
    TASK_SCOPE.try_with(|s| *s).ok()
}

/// The tenant scope stored in a query's DataFusion config, read by the analyzer rule.
///
/// It cannot be changed from SQL: `SET jammi.tenant = ...` is refused, so a query cannot
/// widen its own scope.
#[derive(Debug, Clone, Default)]
pub struct TenantScopeOption {
    /// The scope the query was planned in.
    pub scope: TenantScope,
}

impl ConfigExtension for TenantScopeOption {
    const PREFIX: &'static str = "jammi";
}

impl ExtensionOptions for TenantScopeOption {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, _value: &str) -> DfResult<()> {
        Err(DataFusionError::Plan(format!(
            "setting 'jammi.{key}' is not allowed: the tenant scope comes from the session binding (--tenant), not from SQL"
        )))
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        let value = match self.scope {
            TenantScope::Unbound => "unbound".to_string(),
            TenantScope::Tenant(t) => t.to_string(),
            TenantScope::Admin => "admin".to_string(),
        };
        vec![ConfigEntry {
            key: "jammi.tenant".to_string(),
            value: Some(value),
            description: "tenant scope of this query (read-only)",
        }]
    }
}
