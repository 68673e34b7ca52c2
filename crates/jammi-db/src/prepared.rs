//! Prepared statements: parse and plan once, run many times with parameters (`$1`, `$2`).
//!
//! What a run reuses depends on the plan:
//! - every leaf re-executable (`vector_search` calls, statements pushed down whole to a
//!   database source, constant rows): the physical plan itself, with the new values bound
//!   into it and its operators' state reset — a repeated vector query or pushed-down lookup
//!   skips parsing and planning;
//! - other queries: the logical plan, with the values substituted and the physical plan
//!   made afresh (file listings and pushed-down scans then see current data);
//! - DDL, DML and other statements: the logical plan, run through the session's statement
//!   path each time.
//!
//! A plan is made again when the catalog has changed since (a source or vector table was
//! added, changed or dropped), the statement runs in a different tenant scope, or a
//! transaction began or ended on the session since.

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::execution::context::{SessionContext, SessionState};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::{execute_stream, ExecutionPlan};
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::session::Session;
use crate::statement::SqlStatement;
use crate::tenant::TenantScope;
use crate::source::remote::exec::RemoteQueryExec;
use crate::vector::search_fn::SearchExec;

/// One statement planned ahead; see the module docs. Cheap to share behind an `Arc`.
pub struct PreparedStatement {
    session: Session,
    statement: SqlStatement,
    planned: Mutex<Option<Arc<Planned>>>,
}

impl std::fmt::Debug for PreparedStatement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedStatement").field("sql", &self.sql()).field("session", &self.session).finish()
    }
}

pub(crate) struct Planned {
    pub(crate) generation: i64,
    scope: TenantScope,
    /// The transaction open when it was planned (its scans read through it) and the table
    /// definitions it saw (by address, and how many times DDL inside it changed them).
    txn: (usize, usize),
    ctx: SessionContext,
    pub(crate) state: SessionState,
    pub(crate) logical: LogicalPlan,
    kind: PlanKind,
}

impl Planned {
    /// The physical plan each run reuses and the task context it runs in, for plans whose
    /// every leaf reads current data (see the module docs).
    pub(crate) fn reusable(&self) -> Option<(&Arc<dyn ExecutionPlan>, &Arc<TaskContext>)> {
        match &self.kind {
            PlanKind::Reusable { physical, task } => Some((physical, task)),
            _ => None,
        }
    }
}

enum PlanKind {
    /// The physical plan runs again with new values bound into it.
    Reusable { physical: Arc<dyn ExecutionPlan>, task: Arc<TaskContext> },
    /// A query: physical plan per run, from the logical plan with values substituted.
    Query { task: Arc<TaskContext> },
    /// DDL, DML, SET and the like: through [`Session::execute_plan`].
    Statement,
}

/// Plan one SQL statement with `$n` parameters for repeated runs. Unknown tables,
/// syntax errors and bad constant arguments are reported here, before any run.
pub(crate) async fn prepare(session: &Session, sql: &str) -> Result<PreparedStatement> {
    let mut statements = session.parse(sql)?;
    if statements.len() != 1 {
        return Err(Error::invalid("SQL", format!("a prepared statement is one SQL statement; got {}", statements.len())));
    }
    crate::security::check_statement(statements[0].inner(), session.access())?;
    if let Some(rewritten) = session.ephemeral_rewrite(&statements[0]).await? {
        statements[0] = rewritten;
    }
    if crate::mutable::classify::claim(statements[0].inner())?.is_some() {
        return Err(Error::unsupported("statements on mutable tables and transaction control cannot be prepared yet; run them with sql()"));
    }
    let prepared = PreparedStatement { session: session.clone(), statement: statements.remove(0), planned: Mutex::new(None) };
    prepared.planned().await?;
    Ok(prepared)
}

/// Plan `statement` in `scope` (at catalog `generation`, inside transaction `txn`).
pub(crate) async fn plan_statement(session: &Session, statement: &SqlStatement, generation: i64, scope: TenantScope, txn: (usize, usize)) -> Result<Planned> {
    let ctx = session.query_context(scope);
    let state = ctx.state();
    let logical = state.statement_to_plan(statement.inner().clone()).await?;
    crate::security::check_plan(&logical, session.access())?;
    // EXPLAIN too: its text is made (and, for restricted callers, redacted) by the
    // session's statement path.
    let is_statement = matches!(logical, LogicalPlan::Ddl(_) | LogicalPlan::Dml(_) | LogicalPlan::Statement(_) | LogicalPlan::Copy(_) | LogicalPlan::Explain(_) | LogicalPlan::Analyze(_));
    let kind = if is_statement {
        PlanKind::Statement
    } else {
        let task = Arc::new(TaskContext::from(&state));
        // Placeholders in `vector_search` arguments and in statements sent to a database
        // source are bound into the physical plan; anywhere else (a local filter, say)
        // the physical plan cannot be made until they have values, so those plans take
        // the logical substitution.
        let physical = if logical.get_parameter_types()?.is_empty() {
            Some(state.create_physical_plan(&logical).await?)
        } else {
            state.create_physical_plan(&logical).await.ok()
        };
        match physical {
            Some(physical) if reusable_plan(&physical) => PlanKind::Reusable { physical, task },
            _ => PlanKind::Query { task },
        }
    };
    Ok(Planned { generation, scope, txn, ctx, state, logical, kind })
}

impl PreparedStatement {
    /// The statement's SQL text (normalised).
    pub fn sql(&self) -> String {
        self.statement.to_string()
    }

    /// Run with `params` (`vec![ScalarValue::…]` for `$1, $2, …`) and stream the result.
    pub async fn execute(&self, params: impl Into<ParamValues>) -> Result<SendableRecordBatchStream> {
        let params = params.into();
        if let Some(stream) = self.run_optimistically(&params).await? {
            return Ok(stream);
        }
        let planned = self.planned().await?;
        match &planned.kind {
            PlanKind::Reusable { physical, task } => {
                let plan = bind_parameters(Arc::clone(physical), &params)?;
                Ok(execute_stream(plan, Arc::clone(task))?)
            }
            PlanKind::Query { task } => {
                let logical = planned.logical.clone().with_param_values(params.clone())?;
                let physical = planned.state.create_physical_plan(&logical).await?;
                let plan = bind_parameters(physical, &params)?;
                Ok(execute_stream(plan, Arc::clone(task))?)
            }
            PlanKind::Statement => {
                let logical = planned.logical.clone().with_param_values(params)?;
                let frame = self.session.execute_plan(planned.scope, &planned.ctx, logical).await?;
                Ok(frame.execute_stream().await?)
            }
        }
    }

    /// Run with `params` and collect every batch.
    pub async fn query(&self, params: impl Into<ParamValues>) -> Result<Vec<RecordBatch>> {
        use futures::TryStreamExt;
        let stream = self.execute(params).await?;
        Ok(stream.try_collect().await?)
    }

    /// Start the reusable plan made at this handle's current catalog generation, and check
    /// the catalog for changes by other processes *while* it runs rather than before: on a
    /// Postgres catalog the check is a round trip as long as a point lookup's, and a read
    /// started on a plan that turns out stale is simply dropped (`None`: the caller plans
    /// afresh). Plans that are not reusable, or not current in-process, take the ordinary
    /// path.
    async fn run_optimistically(&self, params: &ParamValues) -> Result<Option<SendableRecordBatchStream>> {
        let Some(planned) = self.current_plan() else { return Ok(None) };
        let Some((physical, task)) = planned.reusable() else { return Ok(None) };
        let plan = bind_parameters(Arc::clone(physical), params)?;
        let mut stream = execute_stream(plan, Arc::clone(task))?;
        // The first batch (all of a point lookup) is awaited together with the check.
        let (synced, first) = futures::join!(self.session.sync_catalog(), stream.next());
        synced?;
        if !self.current_plan().is_some_and(|now| Arc::ptr_eq(&now, &planned)) {
            return Ok(None);
        }
        let schema = stream.schema();
        let rest = futures::stream::iter(first).chain(stream);
        Ok(Some(Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, rest))))
    }

    /// The plan kept from an earlier run, if it is still good for the generation this
    /// handle has synced to, its scope and its transaction (no catalog read).
    fn current_plan(&self) -> Option<Arc<Planned>> {
        let (generation, scope, txn) = self.plan_key();
        let planned = self.planned.lock().unwrap_or_else(|p| p.into_inner());
        planned.as_ref().filter(|p| p.generation == generation && p.scope == scope && p.txn == txn).cloned()
    }

    /// What a plan is good for: the catalog generation this handle has synced to, its
    /// scope, and its open transaction with the definitions it sees (by address; 0 for none).
    fn plan_key(&self) -> (i64, TenantScope, (usize, usize)) {
        let txn = self.session.open_transaction().map_or((0, 0), |t| {
            (Arc::as_ptr(&t) as usize, t.definitions_changed() as usize)
        });
        (self.session.catalog_generation(), self.session.scope(), txn)
    }

    /// The types inferred for `$1, $2, …`, in order (`None` where the statement does not
    /// tell; the value's own type is used then).
    pub async fn parameter_types(&self) -> Result<Vec<Option<datafusion::arrow::datatypes::DataType>>> {
        let planned = self.planned().await?;
        parameter_types(&planned.logical)
    }

    /// The schema of the rows each run returns.
    pub async fn schema(&self) -> Result<datafusion::arrow::datatypes::SchemaRef> {
        let planned = self.planned().await?;
        Ok(Arc::new(planned.logical.schema().as_arrow().clone()))
    }

    /// The physical plan each run reuses (with new values bound), as `EXPLAIN` would show
    /// it, or `None` when every run plans afresh (see the module docs).
    pub async fn reused_plan(&self) -> Result<Option<String>> {
        let planned = self.planned().await?;
        Ok(match &planned.kind {
            PlanKind::Reusable { physical, .. } => {
                Some(datafusion::physical_plan::displayable(physical.as_ref()).indent(true).to_string())
            }
            PlanKind::Query { .. } | PlanKind::Statement => None,
        })
    }

    /// The current plan, made again if the catalog or the scope changed since.
    async fn planned(&self) -> Result<Arc<Planned>> {
        self.session.sync_catalog().await?;
        if let Some(planned) = self.current_plan() {
            return Ok(planned);
        }
        let (generation, scope, txn) = self.plan_key();
        let planned = Arc::new(plan_statement(&self.session, &self.statement, generation, scope, txn).await?);
        *self.planned.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&planned));
        Ok(planned)
    }
}

/// The types inferred for `$1, $2, …` of `logical`, in order (`None` where it does not
/// tell).
pub(crate) fn parameter_types(logical: &LogicalPlan) -> Result<Vec<Option<datafusion::arrow::datatypes::DataType>>> {
    let types = logical.get_parameter_types()?;
    let count = types.keys().filter_map(|k| k.strip_prefix('$')?.parse::<usize>().ok()).max().unwrap_or(0);
    Ok((1..=count).map(|i| types.get(&format!("${i}")).cloned().flatten()).collect())
}

/// Whether every leaf of `plan` reads current data each time it runs — a vector search, a
/// statement sent to a database source, a constant row — so the physical plan can run
/// again with new parameters. Other leaves (file listings, for one) capture state at
/// planning and must be planned afresh.
fn reusable_plan(plan: &Arc<dyn ExecutionPlan>) -> bool {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut reusable = true;
    let _ = plan.apply(|node| {
        if node.children().is_empty() {
            let constant = node.is::<datafusion::physical_plan::placeholder_row::PlaceholderRowExec>()
                || node.is::<datafusion::physical_plan::empty::EmptyExec>();
            if !(node.is::<SearchExec>() || node.is::<RemoteQueryExec>() || constant) {
                reusable = false;
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    reusable
}

/// `plan` ready to run again: `params` bound into every leaf that has placeholders, and
/// the state operators keep between runs (a hash join's build side, a top-k's filter)
/// reset.
pub(crate) fn bind_parameters(plan: Arc<dyn ExecutionPlan>, params: &ParamValues) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    let bound = plan
        .transform_up(|node| {
            if let Some(search) = node.downcast_ref::<SearchExec>() {
                if let Some(bound) = search.bind(params)? {
                    return Ok(Transformed::yes(Arc::new(bound) as Arc<dyn ExecutionPlan>));
                }
            } else if let Some(remote) = node.downcast_ref::<RemoteQueryExec>() {
                if remote.has_parameters() {
                    return Ok(Transformed::yes(Arc::new(remote.bind(params)?) as Arc<dyn ExecutionPlan>));
                }
            }
            Ok(Transformed::no(node))
        })?
        .data;
    datafusion::physical_plan::execution_plan::reset_plan_states(bound)
}
