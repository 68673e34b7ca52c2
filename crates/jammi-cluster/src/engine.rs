//! [`BallistaEngine`]: the distributed engine `[query] engine = "ballista"` names.
//!
//! A query goes to the cluster when it reads at least one file source (Parquet, CSV or
//! JSON, local shared paths or object stores) and everything in it can be described to
//! the cluster: plain query operators, DataFusion's own functions. Parts of the plan that
//! read no files — mutable tables, vector tables and searches, database sources, topics —
//! run here first and travel inside the plan as [`ShippedTable`]s, up to
//! `[query] ship_limit_mb`; past that, or for anything else (writes, DDL, `EXPLAIN`,
//! jammi's own functions, subquery expressions), the whole query runs here.
//!
//! The plan the cluster gets is jammi's after analysis: tenant filters are already in it,
//! views expanded, the statement policy checked. File sources leave as DataFusion's own
//! `ListingTable` (the read-only and tenant wrappers stay behind: their filters are plan
//! nodes by then), which Ballista knows how to send.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use ballista_core::config::BallistaConfig;
use ballista_core::execution_plans::DistributedQueryExec;
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchemaRef, DataFusionError, Result as DfResult};
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::execution::context::SessionState;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{col, Expr, LogicalPlan, LogicalPlanBuilder, TableScan, WindowFunctionDefinition};
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion_proto::protobuf::LogicalPlanNode;
use futures::future::BoxFuture;
use jammi_db::config::QueryConfig;
use jammi_db::distributed::DistributedEngine;
use jammi_db::source::ReadOnlyTable;
use jammi_db::tenant::TenantScopedTable;

use crate::codec::JammiLogicalCodec;
use crate::shipped::ShippedTable;

/// Sends queries over file sources to a Ballista scheduler.
#[derive(Debug)]
pub struct BallistaEngine {
    scheduler_url: String,
    ship_limit_bytes: usize,
}

impl BallistaEngine {
    /// The engine for `[query]` (`scheduler`, `ship_limit_mb`).
    pub fn from_config(config: &QueryConfig) -> jammi_db::Result<Arc<dyn DistributedEngine>> {
        let scheduler = config.scheduler.as_deref().unwrap_or_default();
        let scheduler_url = scheduler_url(scheduler).ok_or_else(|| {
            jammi_db::Error::config("query.scheduler", format!("'{scheduler}' is not a scheduler address; write df://HOST:PORT (e.g. df://127.0.0.1:50050)"))
        })?;
        let ship_limit_bytes = usize::try_from(config.ship_limit_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        Ok(Arc::new(BallistaEngine { scheduler_url, ship_limit_bytes }))
    }
}

/// `df://host:port`, `http://host:port` or `host:port` as the gRPC URL Ballista's client
/// wants.
pub(crate) fn scheduler_url(address: &str) -> Option<String> {
    let rest = address.trim();
    let rest = rest.strip_prefix("df://").or_else(|| rest.strip_prefix("http://")).unwrap_or(rest);
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':')?;
    if host.is_empty() || host.contains('/') || port.parse::<u16>().is_err() {
        return None;
    }
    Some(format!("http://{host}:{port}"))
}

#[async_trait]
impl DistributedEngine for BallistaEngine {
    async fn plan(&self, plan: &LogicalPlan, state: &SessionState) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        if !reads_files(plan) || !cluster_can_run(plan)? {
            return Ok(None);
        }
        let mut shipped_bytes = 0;
        let Some(plan) = for_cluster(plan, state, self.ship_limit_bytes, &mut shipped_bytes).await? else {
            tracing::info!(limit = self.ship_limit_bytes, "query runs here: the rows it would ship to the cluster exceed [query] ship_limit_mb");
            return Ok(None);
        };
        tracing::debug!(shipped_bytes, "query sent to the cluster");
        let exec = DistributedQueryExec::<LogicalPlanNode>::with_extension(self.scheduler_url.clone(), BallistaConfig::default(), plan, JammiLogicalCodec::shared(), state.session_id().to_string());
        Ok(Some(Arc::new(exec)))
    }
}

/// The files' own table behind jammi's wrappers, when `provider` is a file source.
fn listing_table(provider: &Arc<dyn TableProvider>) -> Option<Arc<dyn TableProvider>> {
    let mut current = Arc::clone(provider);
    loop {
        if current.is::<ListingTable>() {
            return Some(current);
        }
        let next = if let Some(scoped) = current.downcast_ref::<TenantScopedTable>() {
            Arc::clone(scoped.inner())
        } else if let Some(read_only) = current.downcast_ref::<ReadOnlyTable>() {
            Arc::clone(read_only.inner())
        } else {
            return None;
        };
        current = next;
    }
}

fn scan_of_files(scan: &TableScan) -> Option<Arc<dyn TableProvider>> {
    source_as_provider(&scan.source).ok().and_then(|p| listing_table(&p))
}

/// Whether `plan` scans a file source anywhere.
fn reads_files(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            found |= scan_of_files(scan).is_some();
        }
        Ok(if found { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    });
    found
}

/// Every operator is a query operator the cluster plans, and every function one it has.
fn cluster_can_run(plan: &LogicalPlan) -> DfResult<bool> {
    let mut ok = true;
    plan.apply(|node| {
        ok &= match node {
            LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::Window(_)
            | LogicalPlan::Aggregate(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Join(_)
            | LogicalPlan::Repartition(_)
            | LogicalPlan::Union(_)
            | LogicalPlan::TableScan(_)
            | LogicalPlan::EmptyRelation(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::Values(_)
            | LogicalPlan::Distinct(_)
            | LogicalPlan::Unnest(_) => true,
            // Database-source queries (pushed down) have no inputs and run here.
            LogicalPlan::Extension(e) => e.node.inputs().is_empty(),
            _ => false,
        };
        if ok {
            node.apply_expressions(|expr| {
                expr.apply(|e| {
                    ok &= cluster_knows(e);
                    Ok(if ok { TreeNodeRecursion::Continue } else { TreeNodeRecursion::Stop })
                })
            })?;
        }
        Ok(if ok { TreeNodeRecursion::Continue } else { TreeNodeRecursion::Stop })
    })?;
    Ok(ok)
}

/// The functions a fresh DataFusion session has: what Ballista's scheduler and executors
/// resolve by name.
struct BuiltinFunctions {
    scalar: HashSet<String>,
    aggregate: HashSet<String>,
    window: HashSet<String>,
}

fn builtin_functions() -> &'static BuiltinFunctions {
    static BUILTIN: OnceLock<BuiltinFunctions> = OnceLock::new();
    BUILTIN.get_or_init(|| {
        let state = SessionStateBuilder::new().with_default_features().build();
        BuiltinFunctions {
            scalar: state.scalar_functions().keys().cloned().collect(),
            aggregate: state.aggregate_functions().keys().cloned().collect(),
            window: state.window_functions().keys().cloned().collect(),
        }
    })
}

fn cluster_knows(expr: &Expr) -> bool {
    let builtin = builtin_functions();
    match expr {
        // A subquery's plan would leave unrewritten (its file scans still wrapped): such
        // queries run here. DataFusion turns most into joins before this point.
        Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_) | Expr::SetComparison(_) => false,
        Expr::ScalarFunction(f) => builtin.scalar.contains(f.func.name()),
        Expr::AggregateFunction(f) => builtin.aggregate.contains(f.func.name()),
        Expr::WindowFunction(w) => match &w.fun {
            WindowFunctionDefinition::AggregateUDF(f) => builtin.aggregate.contains(f.name()),
            WindowFunctionDefinition::WindowUDF(f) => builtin.window.contains(f.name()),
        },
        _ => true,
    }
}

/// `plan` as the cluster gets it: file scans bare, every largest part that reads no files
/// computed here and shipped in. `None` when the shipped rows would pass `limit` bytes.
fn for_cluster<'a>(plan: &'a LogicalPlan, state: &'a SessionState, limit: usize, shipped: &'a mut usize) -> BoxFuture<'a, DfResult<Option<LogicalPlan>>> {
    Box::pin(async move {
        if !reads_files(plan) {
            return ship(plan, state, limit, shipped).await;
        }
        if let LogicalPlan::TableScan(scan) = plan {
            let provider = scan_of_files(scan).ok_or_else(|| DataFusionError::Internal("a file scan lost its table".into()))?;
            return Ok(Some(LogicalPlan::TableScan(TableScan { source: provider_as_source(provider), ..scan.clone() })));
        }
        let mut inputs = Vec::with_capacity(plan.inputs().len());
        for input in plan.inputs() {
            match for_cluster(input, state, limit, shipped).await? {
                Some(input) => inputs.push(input),
                None => return Ok(None),
            }
        }
        plan.with_new_exprs(plan.expressions(), inputs).map(Some)
    })
}

/// Run `plan` here and put its rows in its place, under the same qualified column names.
async fn ship(plan: &LogicalPlan, state: &SessionState, limit: usize, shipped: &mut usize) -> DfResult<Option<LogicalPlan>> {
    if matches!(plan, LogicalPlan::EmptyRelation(_)) {
        return Ok(Some(plan.clone()));
    }
    let physical = state.create_physical_plan(plan).await?;
    let batches = collect(physical, state.task_ctx()).await?;
    *shipped += ShippedTable::data_bytes(&batches);
    if *shipped > limit {
        return Ok(None);
    }
    shipped_scan(plan.schema(), batches).map(Some)
}

/// A scan of `batches` projected back to `schema`'s qualified names. The shipped table's
/// own columns are `c0, c1, …`: a join's output may hold one name twice.
fn shipped_scan(schema: &DFSchemaRef, batches: Vec<RecordBatch>) -> DfResult<LogicalPlan> {
    let fields = schema.fields().iter().enumerate().map(|(i, f)| Field::new(format!("c{i}"), f.data_type().clone(), true)).collect::<Vec<_>>();
    let arrow_schema = Arc::new(Schema::new(fields));
    let batches = batches.into_iter().map(|b| RecordBatch::try_new(Arc::clone(&arrow_schema), b.columns().to_vec())).collect::<Result<Vec<_>, _>>()?;
    let name = format!("jammi_shipped_{}", uuid::Uuid::new_v4().simple());
    let table = Arc::new(ShippedTable::new(Arc::clone(&arrow_schema), batches));
    let projection = schema
        .iter()
        .enumerate()
        .map(|(i, (qualifier, field))| col(Column::new(Some(name.as_str()), format!("c{i}"))).alias_qualified(qualifier.cloned(), field.name()))
        .collect::<Vec<_>>();
    LogicalPlanBuilder::scan(name.as_str(), provider_as_source(table), None)?.project(projection)?.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_addresses_are_read_in_every_usual_spelling_and_nonsense_is_refused() {
        assert_eq!(scheduler_url("df://127.0.0.1:50050").as_deref(), Some("http://127.0.0.1:50050"));
        assert_eq!(scheduler_url("http://sched.internal:7000/").as_deref(), Some("http://sched.internal:7000"));
        assert_eq!(scheduler_url("localhost:1").as_deref(), Some("http://localhost:1"));
        for bad in ["", "df://", "df://host", "host:port", "df://host:99999", "s3://a/b:1"] {
            assert_eq!(scheduler_url(bad), None, "{bad}");
        }
    }
}
