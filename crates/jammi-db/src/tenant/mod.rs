//! Tenancy: who a query runs for.
//!
//! Every catalog row carries a nullable tenant id; NULL means *shared*. A [`TenantScope`]
//! decides what a query sees:
//!
//! * `Tenant(T)` — T's own rows plus shared rows;
//! * `Unbound`   — shared rows only;
//! * `Admin`     — everything, and only inside [`crate::Session::admin`].
//!
//! The scope of a query is fixed when it is planned: a task-local scope (set with
//! [`with_tenant`], for request handlers sharing one session) wins over the session's sticky
//! binding. The scope then travels inside the query's DataFusion config, where the
//! [`TenantFilterRule`] reads it.

mod binding;
mod rule;

pub(crate) use binding::with_scope;
pub use binding::{current_task_scope, with_tenant, TenantScopeOption};
pub use rule::{TenantFilterRule, TenantScopedTable};

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A tenant identifier (a UUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(uuid::Uuid);

impl TenantId {
    /// Wrap a UUID.
    pub fn new(id: uuid::Uuid) -> Self {
        TenantId(id)
    }

    /// A fresh random tenant id.
    pub fn random() -> Self {
        TenantId(uuid::Uuid::new_v4())
    }

    /// The UUID.
    pub fn uuid(&self) -> uuid::Uuid {
        self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hyphenated lower case: the form stored in the catalog and in tenant columns.
        write!(f, "{}", self.0.hyphenated())
    }
}

impl FromStr for TenantId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s.trim())
            .map(TenantId)
            .map_err(|_| Error::InvalidTenant { input: s.to_string() })
    }
}

/// What a query or catalog operation may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TenantScope {
    /// No tenant: shared rows only.
    #[default]
    Unbound,
    /// One tenant: its rows plus shared rows.
    Tenant(TenantId),
    /// Everything (maintenance); only reachable through [`crate::Session::admin`].
    Admin,
}

impl TenantScope {
    /// The tenant that owns new objects created in this scope (None = shared).
    pub fn owner(&self) -> Option<TenantId> {
        match self {
            TenantScope::Tenant(t) => Some(*t),
            TenantScope::Unbound | TenantScope::Admin => None,
        }
    }

    /// " for tenant <uuid>" (or "") — used in error messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            TenantScope::Tenant(t) => format!(" for tenant {t}"),
            TenantScope::Unbound | TenantScope::Admin => String::new(),
        }
    }
}

// The ownership rule of every object kind (sources, mutable tables, vector tables, topics,
// models, jobs, tokens), written once:
//
// * an object created in a tenant's scope belongs to that tenant; created unbound or in the
//   admin scope, it is shared (owner `None`);
// * a tenant sees its own objects and shared ones — its own first when both have the name;
//   another tenant's objects are invisible to it (not even their names);
// * only the owner's scope changes or drops an object (shared ones: the unbound operator);
//   the admin scope may do anything.

/// Whether `scope` may see an object owned by `owner`.
pub fn visible(scope: TenantScope, owner: Option<TenantId>) -> bool {
    match (scope, owner) {
        (TenantScope::Admin, _) | (_, None) => true,
        (TenantScope::Tenant(t), Some(o)) => t == o,
        (TenantScope::Unbound, Some(_)) => false,
    }
}

/// Whether `scope` may change or drop an object owned by `owner`.
pub fn may_change(scope: TenantScope, owner: Option<TenantId>) -> bool {
    match (scope, owner) {
        (TenantScope::Admin, _) | (TenantScope::Unbound, None) => true,
        (TenantScope::Tenant(t), Some(o)) => t == o,
        _ => false,
    }
}

/// The one of `candidates` (objects of one name, any owners) that `scope` resolves the name
/// to: its own, else a shared one; the admin scope takes any.
pub fn pick_scoped<T>(scope: TenantScope, candidates: Vec<T>, owner: impl Fn(&T) -> Option<TenantId>) -> Option<T> {
    let mut shared = None;
    let mut any = None;
    for c in candidates {
        match owner(&c) {
            Some(o) if scope.owner() == Some(o) => return Some(c),
            None => shared = Some(c),
            Some(_) => any = Some(c),
        }
    }
    shared.or(if scope == TenantScope::Admin { any } else { None })
}

/// Objects keyed by (owner, name); owner `None` = shared.
pub(crate) type ScopedNames<V> = std::collections::HashMap<(Option<TenantId>, String), V>;

/// Objects named per owner (`None` = shared), as `scope` resolves `name`: the tenant's own
/// first, then a shared one; the admin scope takes any owner's.
pub(crate) fn resolve_scoped<V: Clone>(map: &ScopedNames<V>, scope: TenantScope, name: &str) -> Option<V> {
    if let Some(t) = scope.owner() {
        if let Some(v) = map.get(&(Some(t), name.to_string())) {
            return Some(v.clone());
        }
    }
    if let Some(v) = map.get(&(None, name.to_string())) {
        return Some(v.clone());
    }
    if scope == TenantScope::Admin {
        return map.iter().find(|((_, n), _)| n == name).map(|(_, v)| v.clone());
    }
    None
}

/// The tenant scope a DataFusion session (a query's context) was bound to.
pub(crate) fn scope_of(session: &dyn datafusion::catalog::Session) -> TenantScope {
    session.config_options().extensions.get::<TenantScopeOption>().map(|o| o.scope).unwrap_or_default()
}
