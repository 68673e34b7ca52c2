//! Database sources: live PostgreSQL and MySQL/MariaDB databases read in place.
//!
//! `jammi source add pg postgres://…` reads the database's tables and views from
//! `information_schema` ([`introspect`]) and registers each as `pg.<schema>.<table>`
//! ([`RemoteTable`]). Queries are planned by DataFusion as usual; then the pushdown rule
//! ([`pushdown`]) hands every largest part of the plan that reads one database only, and
//! that its dialect computes exactly as DataFusion would, to that database as one SQL
//! statement ([`exec::RemoteQueryExec`]); everything else runs locally. Values travel in a
//! few wire types and are converted back exactly ([`types`]).

pub mod exec;
pub mod introspect;
pub mod pool;
pub mod pushdown;
pub mod table;
pub mod types;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::{LogicalPlan, UserDefinedLogicalNode};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};

pub use introspect::RemoteTables;
pub use pool::RemotePool;
pub use table::RemoteTable;
pub use types::{RemoteColumn, RemoteKind};

use crate::error::{Error, Result};

/// A connected database source.
pub struct RemoteSource {
    /// Source name (the SQL catalog name).
    pub name: String,
    /// Database family.
    pub kind: RemoteKind,
    /// Connections.
    pub pool: RemotePool,
    /// The URL's password, to scrub from any message.
    pub password: Option<String>,
}

impl fmt::Debug for RemoteSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteSource").field("name", &self.name).field("kind", &self.kind).finish()
    }
}

/// The database family of a source URL, if it names a database.
pub fn kind_of_url(url: &str) -> Option<RemoteKind> {
    let scheme = url.split_once("://")?.0.to_ascii_lowercase();
    match scheme.as_str() {
        "postgres" | "postgresql" => Some(RemoteKind::Postgres),
        "mysql" | "mariadb" => Some(RemoteKind::Mysql),
        _ => None,
    }
}

impl RemoteSource {
    /// Connect (lazily) to the database at `url` as source `name`.
    pub fn connect(name: &str, url: &str, kind: RemoteKind) -> Result<Arc<Self>> {
        let parsed = url::Url::parse(url).map_err(|e| Error::invalid_url(crate::redact::redact_url(url), e.to_string()))?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(Error::invalid_url(crate::redact::redact_url(url), "missing host: write postgres://user:password@host:port/database"));
        }
        let password = parsed.password().map(|p| p.to_string());
        // MariaDB speaks the MySQL protocol; sqlx only knows `mysql://`.
        let driver_url = match kind {
            RemoteKind::Mysql if url.starts_with("mariadb://") => url.replacen("mariadb://", "mysql://", 1),
            _ => url.to_string(),
        };
        Ok(Arc::new(RemoteSource { name: name.to_string(), kind, pool: RemotePool::lazy(kind, &driver_url, 8)?, password }))
    }

    /// A clear error for `e`, without credentials.
    pub fn error(&self, e: &sqlx::Error) -> Error {
        pool::remote_error(e, &self.name, self.password.as_deref())
    }

    /// Read the tables of `schemas` (every user schema when empty).
    pub async fn introspect(&self, schemas: &[String]) -> Result<RemoteTables> {
        let tables = introspect::introspect(&self.pool, self.kind, schemas).await.map_err(|e| self.error(&e))?;
        if tables.schemas.is_empty() {
            let which = if schemas.is_empty() { "any schema".to_string() } else { format!("schemas {}", schemas.join(", ")) };
            return Err(Error::Source { source_name: self.name.clone(), message: format!("source '{}': no tables or views found in {which}", self.name) });
        }
        Ok(tables)
    }

    /// Table providers per schema for `tables`.
    pub fn providers(self: &Arc<Self>, tables: &RemoteTables) -> BTreeMap<String, BTreeMap<String, RemoteTable>> {
        tables
            .schemas
            .iter()
            .map(|(schema, tables)| {
                let providers = tables.iter().map(|(table, columns)| (table.clone(), RemoteTable::new(Arc::clone(self), schema.clone(), table.clone(), columns.clone()))).collect();
                (schema.clone(), providers)
            })
            .collect()
    }
}

/// Plans [`pushdown::RemoteQuery`] leaves.
#[derive(Debug, Default)]
pub struct RemotePlanner;

#[async_trait]
impl ExtensionPlanner for RemotePlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        _physical_inputs: &[Arc<dyn ExecutionPlan>],
        _state: &dyn datafusion::catalog::Session,
        _planning_ctx: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> datafusion::common::Result<Option<Arc<dyn ExecutionPlan>>> {
        Ok(node.as_any().downcast_ref::<pushdown::RemoteQuery>().map(|q| {
            Arc::new(exec::RemoteQueryExec::new(Arc::clone(&q.source), q.sql.clone(), q.params.clone(), Arc::new(q.schema.as_arrow().clone()))) as Arc<dyn ExecutionPlan>
        }))
    }
}

/// The session's query planner: DataFusion's, plus remote queries; a distributed engine,
/// when one is configured, is offered each plan first.
#[derive(Debug, Default)]
pub struct FederatedQueryPlanner {
    distributed: Option<Arc<dyn crate::distributed::DistributedEngine>>,
}

impl FederatedQueryPlanner {
    /// A planner offering plans to `distributed` first.
    pub(crate) fn new(distributed: Option<Arc<dyn crate::distributed::DistributedEngine>>) -> Self {
        FederatedQueryPlanner { distributed }
    }
}

#[async_trait]
impl QueryPlanner for FederatedQueryPlanner {
    async fn create_physical_plan(&self, logical_plan: &LogicalPlan, session_state: &dyn datafusion::catalog::Session) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        if let (Some(engine), Some(state)) = (&self.distributed, session_state.as_any().downcast_ref::<datafusion::execution::context::SessionState>()) {
            if let Some(plan) = engine.plan(logical_plan, state).await? {
                return Ok(plan);
            }
        }
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(RemotePlanner)]).create_physical_plan(logical_plan, session_state).await
    }
}
