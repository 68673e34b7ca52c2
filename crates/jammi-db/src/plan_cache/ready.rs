//! How a shared plan travels in a [`DataFrame`](datafusion::dataframe::DataFrame): as the
//! scan of a table whose plan is made already, which the frame's own planner hands back
//! as it is.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session as CatalogSession, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::Result as DfResult;
use datafusion::datasource::TableType;
use datafusion::execution::TaskContext;
use datafusion::datasource::source_as_provider;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::{Expr as LogicalExpr, LogicalPlan};
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream};

/// A table whose scan is a plan made already: how a shared plan travels in a
/// [`DataFrame`], so callers use it like any other query.
#[derive(Debug)]
pub(super) struct ReadyPlan {
    pub(super) plan: Arc<ReadyExec>,
}

#[async_trait]
impl TableProvider for ReadyPlan {
    fn schema(&self) -> SchemaRef {
        self.plan.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(&self, _state: &dyn CatalogSession, projection: Option<&Vec<usize>>, _filters: &[LogicalExpr], _limit: Option<usize>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let plan = Arc::clone(&self.plan) as Arc<dyn ExecutionPlan>;
        match projection {
            Some(columns) if columns.len() != self.schema().fields().len() || columns.iter().enumerate().any(|(i, c)| i != *c) => {
                let exprs = columns
                    .iter()
                    .map(|&c| {
                        let field = self.schema().field(c).clone();
                        let column = Arc::new(datafusion::physical_expr::expressions::Column::new(field.name(), c)) as Arc<dyn PhysicalExpr>;
                        (column, field.name().clone())
                    })
                    .collect::<Vec<_>>();
                Ok(Arc::new(datafusion::physical_plan::projection::ProjectionExec::try_new(exprs, plan)?))
            }
            _ => Ok(plan),
        }
    }
}

/// The shared plan with its values bound, as one leaf: the physical optimiser has already
/// seen it (and must not rework it a second time), so it hides its children.
#[derive(Debug)]
pub(super) struct ReadyExec {
    inner: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
}

impl ReadyExec {
    pub(super) fn new(inner: Arc<dyn ExecutionPlan>, task: Arc<TaskContext>) -> Self {
        ReadyExec { inner, task }
    }
}

impl DisplayAs for ReadyExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let inner = datafusion::physical_plan::displayable(self.inner.as_ref()).one_line().to_string();
        write!(f, "SharedPlanExec: {}", inner.trim_end())
    }
}

impl ExecutionPlan for ReadyExec {
    fn name(&self) -> &str {
        "SharedPlanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(&self, _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        // The task context the plan was made with: its session settings, not the caller's
        // default ones.
        self.inner.execute(partition, Arc::clone(&self.task))
    }
}

/// The planner of a shared plan's frame: the frame's plan is the scan of a [`ReadyPlan`],
/// whose physical plan is already made, so it is handed back as it is instead of going
/// through DataFusion's physical planner (a tenth of a search statement's time). Anything
/// a caller builds on the frame (a filter, a limit) is planned as usual.
#[derive(Debug)]
pub(super) struct ReadyPlanner;

#[async_trait]
impl QueryPlanner for ReadyPlanner {
    async fn create_physical_plan(&self, plan: &LogicalPlan, session: &dyn CatalogSession) -> DfResult<Arc<dyn ExecutionPlan>> {
        if let LogicalPlan::TableScan(scan) = plan {
            if scan.projection.is_none() && scan.filters.is_empty() && scan.fetch.is_none() {
                if let Some(ready) = source_as_provider(&scan.source).ok().as_deref().and_then(|p| p.downcast_ref::<ReadyPlan>()) {
                    return Ok(Arc::clone(&ready.plan) as Arc<dyn ExecutionPlan>);
                }
            }
        }
        DefaultPhysicalPlanner::default().create_physical_plan(plan, session).await
    }
}
