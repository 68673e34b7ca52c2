//! The search table functions — `vector_search`, `text_search`, `hybrid_search` — their
//! provider and the execution plan that runs the search (arguments: [`super::search_args`]).
//!
//! The search runs when the plan executes, not when it is planned, so a planned query can
//! run again. Arguments may be parameters (`$1`): a prepared statement plans once and binds
//! new values into the physical plan ([`SearchExec::bind`]) on every execution, which is
//! what makes a repeated search cost about as much as the search itself.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session as DfSession, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{exec_datafusion_err, DataFusionError, ParamValues, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};

use super::search_args::{Query, SearchArgs, SearchKind};
use super::{text_search, VectorState};
use crate::mutable::{fulltext, MutableState};
use crate::tenant::{scope_of, TenantScope};

/// One of the search table functions, e.g. `vector_search('NAME', [0.1, ...], k [, 'payload
/// predicate' [, ef]])`.
#[derive(Debug)]
pub struct SearchFunction {
    state: Arc<VectorState>,
    /// Mutable tables, for `text_search` over their full-text indexes.
    mutable: Arc<MutableState>,
    kind: SearchKind,
}

impl SearchFunction {
    /// `vector_search`.
    pub(crate) fn vector(state: Arc<VectorState>, mutable: Arc<MutableState>) -> Self {
        SearchFunction { state, mutable, kind: SearchKind::Vector }
    }

    /// `text_search`.
    pub(crate) fn text(state: Arc<VectorState>, mutable: Arc<MutableState>) -> Self {
        SearchFunction { state, mutable, kind: SearchKind::Text }
    }

    /// `hybrid_search`.
    pub(crate) fn hybrid(state: Arc<VectorState>, mutable: Arc<MutableState>) -> Self {
        SearchFunction { state, mutable, kind: SearchKind::Hybrid }
    }

    /// `text_search('mutable.public.T', …)`: the table's full-text index.
    fn mutable_call(&self, scope: TenantScope, name: String, short: &str, exprs: &[Expr]) -> DfResult<Arc<dyn TableProvider>> {
        let external = |e: crate::error::Error| DataFusionError::External(Box::new(e));
        if self.kind != SearchKind::Text {
            return Err(super::search_args::invalid(self.kind, format!(
                "{}: {name} is a mutable table; {} searches vector tables (text_search searches a mutable table's full-text index)",
                self.kind.function(),
                self.kind.function()
            )));
        }
        let table = self.mutable.get(scope, short).ok_or_else(|| external(crate::error::Error::Unknown { kind: crate::error::ObjectKind::MutableTable, name: name.clone(), scope: scope.describe() }))?;
        let index = fulltext::index_of(&table.spec).ok_or_else(|| {
            external(crate::error::Error::invalid("text_search", format!("{name} has no full-text index; add one with CREATE INDEX {short}_text ON {name} USING fulltext (COLUMN)")))
        })?;
        let args = SearchArgs { kind: self.kind, name, dims: 0, has_model: false, text_columns: fulltext::columns_of(index), exprs: exprs.to_vec() };
        let request = if args.has_parameters() { None } else { Some(args.request()?) };
        let schema = crate::evidence::columns::with_evidence_columns(self.kind.result_schema(&table.spec.schema()), false, self.state.audits(scope));
        Ok(Arc::new(SearchTable { state: Arc::clone(&self.state), mutable: Some((Arc::clone(&self.mutable), short.to_string())), scope, schema, args: Arc::new(args), request }))
    }
}

/// `T` of `mutable.public.T` or `mutable.T`.
fn mutable_name(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(crate::mutable::CATALOG)?.strip_prefix('.')?;
    Some(rest.strip_prefix("public.").unwrap_or(rest))
}

impl TableFunctionImpl for SearchFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let name = SearchArgs::table_name(self.kind, exprs)?;
        let scope = scope_of(args.session());
        if let Some(short) = mutable_name(&name) {
            let short = short.to_string();
            return self.mutable_call(scope, name, &short, exprs);
        }
        let entry = self
            .state
            .resolve(scope, &name)
            .ok_or_else(|| DataFusionError::External(Box::new(crate::error::Error::Unknown { kind: crate::error::ObjectKind::VectorTable, name: name.clone(), scope: scope.describe() })))?;
        let text_columns = super::text::columns_of(&entry.spec).map_err(|e| DataFusionError::External(Box::new(e)))?;
        let args = SearchArgs { kind: self.kind, name, dims: entry.spec.dims, has_model: entry.spec.embedding.is_some(), text_columns, exprs: exprs.to_vec() };
        // Without parameters every argument is checked now, so mistakes surface at planning.
        let request = if args.has_parameters() { None } else { Some(args.request()?) };
        let row_schema = super::loaded::without_embedding(&entry.spec.schema);
        let schema = crate::evidence::columns::with_evidence_columns(self.kind.result_schema(&row_schema), entry.spec.embedding.is_some(), self.state.audits(scope));
        Ok(Arc::new(SearchTable { state: Arc::clone(&self.state), mutable: None, scope, schema, args: Arc::new(args), request }))
    }
}

/// The result of one search call.
#[derive(Debug)]
struct SearchTable {
    state: Arc<VectorState>,
    /// A mutable table's full-text index (its state and name) instead of a vector table.
    mutable: Option<(Arc<MutableState>, String)>,
    scope: TenantScope,
    args: Arc<SearchArgs>,
    /// None while some argument is an unbound parameter.
    request: Option<Query>,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for SearchTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => Arc::clone(&self.schema),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        // A mutable table is read through the session's open transaction, as its scans are.
        let txn = state.config_options().extensions.get::<crate::txn::TxnOption>().and_then(|o| o.txn.clone());
        Ok(Arc::new(SearchExec {
            state: Arc::clone(&self.state),
            mutable: self.mutable.clone(),
            txn,
            scope: self.scope,
            args: Arc::clone(&self.args),
            request: self.request.clone(),
            full_schema: Arc::clone(&self.schema),
            projection: projection.cloned(),
            properties: Arc::new(properties),
        }))
    }
}

/// Runs one search when executed; a leaf of the physical plan.
#[derive(Debug, Clone)]
pub(crate) struct SearchExec {
    state: Arc<VectorState>,
    mutable: Option<(Arc<MutableState>, String)>,
    txn: Option<Arc<crate::txn::WriteTxn>>,
    scope: TenantScope,
    args: Arc<SearchArgs>,
    request: Option<Query>,
    /// The planned result schema before projection: the table must still have it.
    full_schema: SchemaRef,
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for SearchExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SearchExec: {}, table={}", self.args.kind.function(), self.args.name)?;
        if let Some(r) = &self.request {
            write!(f, ", k={}", r.k())?;
            if let Some(filter) = r.filter() {
                write!(f, ", filter={filter}")?;
            }
            if let Query::Vector(super::SearchRequest { ef: Some(ef), .. }) = r {
                write!(f, ", ef={ef}")?;
            }
        } else {
            write!(f, ", parameters unbound")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for SearchExec {
    fn name(&self) -> &str {
        "SearchExec"
    }

    fn apply_expressions(&self, _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal("SearchExec has no children".to_string()))
        }
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!("SearchExec has one partition, not {partition}")));
        }
        let request = self.request.clone().ok_or_else(|| {
            exec_datafusion_err!("{} on '{}': a parameter has no value; run it as a prepared statement with values", self.args.kind.function(), self.args.name)
        })?;
        let this = self.clone();
        let schema = Arc::clone(self.properties.eq_properties.schema());
        let search = async move {
            let name = &this.args.name;
            let result = match (&this.mutable, &request) {
                (Some((mutable, short)), Query::Text(r)) => {
                    let table = mutable.get(this.scope, short).ok_or_else(|| exec_datafusion_err!("{name} does not exist{}", this.scope.describe()))?;
                    let batch = crate::mutable::fulltext::search(&this.state.catalog, this.txn.clone(), this.scope, table, r.query.clone(), r.k, r.filter.clone())
                        .await
                        .map_err(|e| DataFusionError::External(Box::new(e)))?;
                    let mut query_id = None;
                    if let Some(audit) = &this.state.audit {
                        let lineage = serde_json::json!({"table": name, "k": r.k, "filter": r.filter, "query": {"text": r.query}});
                        query_id = audit.record(this.scope, crate::audit::SearchAudit { kind: "text", model: None, lineage }, &batch).await.map_err(|e| DataFusionError::External(Box::new(e)))?;
                    }
                    super::SearchResult { batch, path: super::SearchPath::Text, query_id, model: None }
                }
                _ => {
                    let entry = this.state.resolve(this.scope, name).ok_or_else(|| exec_datafusion_err!("vector table '{name}' does not exist{}", this.scope.describe()))?;
                    text_search::run_query(&this.state, this.scope, &entry, &request).await.map_err(|e| DataFusionError::External(Box::new(e)))?
                }
            };
            let own = result.batch.num_columns();
            if own > this.full_schema.fields().len() || result.batch.schema().fields()[..] != this.full_schema.fields()[..own] {
                return Err(exec_datafusion_err!("table '{name}' changed its columns since this query was planned; plan it again"));
            }
            let batch = crate::evidence::columns::extend(result.batch, &this.full_schema, result.model.as_ref(), result.query_id.as_deref()).map_err(|e| DataFusionError::External(Box::new(e)))?;
            match &this.projection {
                Some(p) => Ok(batch.project(p)?),
                None => Ok(batch),
            }
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, futures::stream::once(search))))
    }
}

impl SearchExec {
    /// A copy with `params` bound into its arguments, or `None` when they have no
    /// placeholders.
    pub(crate) fn bind(&self, params: &ParamValues) -> DfResult<Option<Self>> {
        if !self.args.has_parameters() {
            return Ok(None);
        }
        let mut bound = self.clone();
        bound.request = Some(self.args.bind(params)?);
        Ok(Some(bound))
    }
}
