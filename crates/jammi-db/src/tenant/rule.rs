//! The analyzer rule that confines every scan of a tenant-aware table to the query's scope.
//!
//! It works on the logical plan, so joins, subqueries, CTEs, views and UNIONs need no
//! special handling: each `TableScan` of a [`TenantScopedTable`] gets a `Filter` above it.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{Session as DfSession, TableProvider};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, Result as DfResult};
use datafusion::datasource::source_as_provider;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{lit, Expr, LogicalPlan, LogicalPlanBuilder, TableScan};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_plan::ExecutionPlan;

use super::{TenantScope, TenantScopeOption};

/// A table whose rows belong to tenants: `tenant_column` holds the owner's UUID (as text),
/// NULL for shared rows. Wrapping a provider in this type is what makes the
/// [`TenantFilterRule`] filter it.
#[derive(Debug)]
pub struct TenantScopedTable {
    inner: Arc<dyn TableProvider>,
    tenant_column: String,
}

impl TenantScopedTable {
    /// Mark `inner` as tenant-aware through `tenant_column`.
    pub fn new(inner: Arc<dyn TableProvider>, tenant_column: impl Into<String>) -> Self {
        TenantScopedTable { inner, tenant_column: tenant_column.into() }
    }

    /// The table whose rows are filtered.
    pub fn inner(&self) -> &Arc<dyn TableProvider> {
        &self.inner
    }

    /// The column holding the owning tenant.
    pub fn tenant_column(&self) -> &str {
        &self.tenant_column
    }
}

#[async_trait]
impl TableProvider for TenantScopedTable {
    crate::delegate::forward_table_reads!();

    async fn scan(
        &self,
        state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::logical_expr::Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.inner.scan(state, projection, filters, limit).await
    }

    async fn insert_into(
        &self,
        state: &dyn DfSession,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.inner.insert_into(state, input, insert_op).await
    }
}

/// Adds `tenant_column = <T> OR tenant_column IS NULL` (bound to T), `tenant_column IS NULL`
/// (unbound) or nothing (admin) above every scan of a [`TenantScopedTable`].
///
/// A query whose config carries no [`TenantScopeOption`] is treated as unbound: the rule
/// fails closed.
#[derive(Debug, Default)]
pub struct TenantFilterRule;

impl TenantFilterRule {
    /// A new rule.
    pub fn new() -> Self {
        TenantFilterRule
    }
}

impl AnalyzerRule for TenantFilterRule {
    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> DfResult<LogicalPlan> {
        let scope = config
            .extensions
            .get::<TenantScopeOption>()
            .map(|o| o.scope)
            .unwrap_or(TenantScope::Unbound);
        if scope == TenantScope::Admin {
            return Ok(plan);
        }
        plan.transform_up_with_subqueries(|node| match node {
            LogicalPlan::TableScan(scan) => filter_scan(scan, scope),
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "jammi_tenant_filter"
    }
}

fn filter_scan(scan: TableScan, scope: TenantScope) -> DfResult<Transformed<LogicalPlan>> {
    let Ok(provider) = source_as_provider(&scan.source) else {
        return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
    };
    let Some(scoped) = provider.downcast_ref::<TenantScopedTable>() else {
        return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
    };
    let full_schema = scoped.schema();
    let tenant_idx = full_schema.index_of(scoped.tenant_column()).map_err(|_| {
        DataFusionError::Plan(format!(
            "table {} has no tenant column '{}'",
            scan.table_name,
            scoped.tenant_column()
        ))
    })?;

    // The scan may already be projected without the tenant column (DataFrame API); widen it,
    // filter, then narrow back to the original columns.
    let original_columns: Option<Vec<Expr>> = match &scan.projection {
        Some(p) if !p.contains(&tenant_idx) => Some(
            scan.projected_schema
                .iter()
                .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
                .collect(),
        ),
        _ => None,
    };
    let projection = scan.projection.clone().map(|mut p| {
        if !p.contains(&tenant_idx) {
            p.push(tenant_idx);
        }
        p
    });
    let table_name = scan.table_name.clone();
    let widened = LogicalPlanBuilder::scan_with_filters(
        table_name.clone(),
        Arc::clone(&scan.source),
        projection,
        scan.filters.clone(),
    )?;

    let tenant_col = Expr::Column(Column::new(Some(table_name), scoped.tenant_column()));
    let predicate = match scope {
        TenantScope::Tenant(t) => tenant_col.clone().eq(lit(t.to_string())).or(tenant_col.is_null()),
        _ => tenant_col.is_null(),
    };
    let mut builder = widened.filter(predicate)?;
    // A limit pushed into the scan must apply after the tenant filter, not before it.
    if let Some(fetch) = scan.fetch {
        builder = builder.limit(0, Some(fetch))?;
    }
    if let Some(columns) = original_columns {
        builder = builder.project(columns)?;
    }
    Ok(Transformed::yes(builder.build()?))
}
