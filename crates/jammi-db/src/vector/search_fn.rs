//! `vector_search(name, vector, k [, filter [, ef]])`: the table function, its provider and
//! the execution plan that runs the search.
//!
//! The search runs when the plan executes, not when it is planned, so a planned query can
//! run again. Arguments may be parameters (`$1`): a prepared statement plans once and binds
//! new values into the physical plan ([`VectorSearchExec::bind`]) on every execution, which is
//! what makes a repeated vector query cost about as much as the search itself.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type, SchemaRef};
use datafusion::catalog::{Session as DfSession, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{exec_datafusion_err, DataFusionError, ParamValues, Result as DfResult, ScalarValue};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};

use super::search::{result_schema, SearchRequest};
use super::{search_entry, VectorState};
use crate::tenant::{scope_of, TenantScope};

/// `vector_search('NAME', [0.1, ...], k [, 'payload predicate' [, ef]])`.
#[derive(Debug)]
pub struct VectorSearchFunction {
    state: Arc<VectorState>,
}

impl VectorSearchFunction {
    pub(crate) fn new(state: Arc<VectorState>) -> Self {
        VectorSearchFunction { state }
    }
}

/// A bad argument of `vector_search`, typed so that clients get SQLSTATE 22023 / HTTP 400.
fn invalid(message: String) -> DataFusionError {
    DataFusionError::External(Box::new(crate::error::Error::invalid("vector_search", message)))
}

impl TableFunctionImpl for VectorSearchFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        if !(3..=5).contains(&exprs.len()) {
            return Err(invalid(format!(
                "vector_search takes (table name, query vector, k [, filter [, ef]]); got {} arguments",
                exprs.len()
            )));
        }
        let name = const_string(&exprs[0]).ok_or_else(|| invalid(format!("vector_search: the first argument is the table name as a string")))?;
        let scope = scope_of(args.session());
        let entry = self
            .state
            .resolve(scope, &name)
            .ok_or_else(|| DataFusionError::External(Box::new(crate::error::Error::Unknown { kind: crate::error::ObjectKind::VectorTable, name: name.clone(), scope: scope.describe() })))?;
        let args = SearchArgs { name, dims: entry.spec.dims, has_model: entry.spec.embedding.is_some(), exprs: exprs.to_vec() };
        // Without parameters every argument is checked now, so mistakes surface at planning.
        let request = if args.has_parameters() { None } else { Some(args.request()?) };
        let row_schema = super::loaded::without_embedding(&entry.spec.schema);
        Ok(Arc::new(VectorSearchTable { state: Arc::clone(&self.state), scope, args: Arc::new(args), request, schema: result_schema(&row_schema) }))
    }
}

/// The arguments of one call, kept as expressions so parameters can be bound later.
#[derive(Debug)]
struct SearchArgs {
    name: String,
    dims: usize,
    /// The table records an embedding model, so a text may stand for the query vector.
    has_model: bool,
    exprs: Vec<Expr>,
}

impl SearchArgs {
    fn has_parameters(&self) -> bool {
        self.exprs.iter().any(contains_placeholder)
    }

    /// The request these arguments (all constants by now) describe.
    fn request(&self) -> DfResult<SearchRequest> {
        let exprs = &self.exprs;
        let positive = |e: &Expr, what: &str| {
            const_f64(e)
                .filter(|v| *v >= 1.0 && v.fract() == 0.0)
                .map(|v| v as usize)
                .ok_or_else(|| invalid(format!("vector_search: {what} must be a positive integer")))
        };
        let k = positive(&exprs[2], "k")?;
        let mut request = match (const_vector(&exprs[1]), const_string(&exprs[1])) {
            (Some(vector), _) => {
                if vector.len() != self.dims {
                    return Err(invalid(format!("vector_search: the query vector has {} dimensions; '{}' has {}", vector.len(), self.name, self.dims)));
                }
                SearchRequest::new(vector, k)
            }
            // Text that is not a vector literal: a text query, embedded with the table's model.
            (None, Some(text)) if !text.trim_start().starts_with('[') => {
                if !self.has_model {
                    return Err(invalid(format!(
                        "vector_search: '{}' has no embedding model, so the second argument must be a query vector such as [0.1, 0.2]; import the table with --embed COLUMN --model NAME to search it by text",
                        self.name
                    )));
                }
                SearchRequest::text(text, k)
            }
            _ => return Err(invalid("vector_search: the second argument is the query vector, e.g. [0.1, 0.2] or '[0.1, 0.2]', or a text on a table with an embedding model".to_string())),
        };
        // The filter may be NULL or '' (no filter), so that ef can follow it.
        request.filter = match exprs.get(3) {
            Some(Expr::Literal(v, _)) if v.is_null() => None,
            Some(e) => Some(const_string(e).ok_or_else(|| invalid(format!("vector_search: the filter is a SQL predicate in a string")))?),
            None => None,
        }
        .filter(|f| !f.trim().is_empty());
        request.ef = match exprs.get(4) {
            Some(Expr::Literal(v, _)) if v.is_null() => None,
            Some(e) => Some(positive(e, "ef")?),
            None => None,
        };
        request.check_limits().map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(request)
    }

    /// The request with `params` in place of the placeholders.
    fn bind(&self, params: &ParamValues) -> DfResult<SearchRequest> {
        let exprs = self
            .exprs
            .iter()
            .map(|e| {
                e.clone()
                    .transform(|e| match e {
                        Expr::Placeholder(p) => {
                            let value = params.get_placeholders_with_values(&p.id)?.value;
                            Ok(Transformed::yes(Expr::Literal(value, None)))
                        }
                        other => Ok(Transformed::no(other)),
                    })
                    .map(|t| t.data)
            })
            .collect::<DfResult<Vec<_>>>()?;
        SearchArgs { name: self.name.clone(), dims: self.dims, has_model: self.has_model, exprs }.request()
    }
}

fn contains_placeholder(expr: &Expr) -> bool {
    expr.exists(|e| Ok(matches!(e, Expr::Placeholder(_)))).unwrap_or(false)
}

/// The result of one `vector_search` call.
#[derive(Debug)]
struct VectorSearchTable {
    state: Arc<VectorState>,
    scope: TenantScope,
    args: Arc<SearchArgs>,
    /// None while some argument is an unbound parameter.
    request: Option<SearchRequest>,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for VectorSearchTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn DfSession,
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
        Ok(Arc::new(VectorSearchExec {
            state: Arc::clone(&self.state),
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
pub(crate) struct VectorSearchExec {
    state: Arc<VectorState>,
    scope: TenantScope,
    args: Arc<SearchArgs>,
    request: Option<SearchRequest>,
    /// The planned result schema before projection: the table must still have it.
    full_schema: SchemaRef,
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for VectorSearchExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VectorSearchExec: table={}", self.args.name)?;
        if let Some(r) = &self.request {
            write!(f, ", k={}", r.k)?;
            if let Some(filter) = &r.filter {
                write!(f, ", filter={filter}")?;
            }
            if let Some(ef) = r.ef {
                write!(f, ", ef={ef}")?;
            }
        } else {
            write!(f, ", parameters unbound")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for VectorSearchExec {
    fn name(&self) -> &str {
        "VectorSearchExec"
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
            Err(DataFusionError::Internal("VectorSearchExec has no children".to_string()))
        }
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!("VectorSearchExec has one partition, not {partition}")));
        }
        let request = self.request.clone().ok_or_else(|| {
            exec_datafusion_err!("vector_search on '{}': a parameter has no value; run it as a prepared statement with values", self.args.name)
        })?;
        let this = self.clone();
        let schema = Arc::clone(self.properties.eq_properties.schema());
        let search = async move {
            let name = &this.args.name;
            let entry = this
                .state
                .resolve(this.scope, name)
                .ok_or_else(|| exec_datafusion_err!("vector table '{name}' does not exist{}", this.scope.describe()))?;
            let result = search_entry(&this.state, this.scope, &entry, &request).await.map_err(|e| DataFusionError::External(Box::new(e)))?;
            if result.batch.schema().fields() != this.full_schema.fields() {
                return Err(exec_datafusion_err!("vector table '{name}' changed its columns since this query was planned; plan it again"));
            }
            match &this.projection {
                Some(p) => Ok(result.batch.project(p)?),
                None => Ok(result.batch),
            }
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, futures::stream::once(search))))
    }
}

impl VectorSearchExec {
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

pub(crate) fn const_string(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)), _) => {
            Some(s.clone())
        }
        Expr::Cast(c) => const_string(&c.expr),
        _ => None,
    }
}

fn const_f64(expr: &Expr) -> Option<f64> {
    match expr {
        Expr::Literal(v, _) if !v.is_null() => match v.cast_to(&DataType::Float64).ok()? {
            ScalarValue::Float64(Some(f)) => Some(f),
            _ => None,
        },
        Expr::Negative(inner) => const_f64(inner).map(|v| -v),
        Expr::Cast(c) => const_f64(&c.expr),
        Expr::TryCast(c) => const_f64(&c.expr),
        _ => None,
    }
}

/// A query vector written as `[0.1, -0.2]` (an array expression or literal) or as the
/// string `'[0.1, -0.2]'`.
pub(crate) fn const_vector(expr: &Expr) -> Option<Vec<f32>> {
    match expr {
        Expr::ScalarFunction(f) if f.name() == "make_array" => {
            f.args.iter().map(|a| const_f64(a).map(|v| v as f32)).collect()
        }
        Expr::Literal(ScalarValue::List(list), _) => array_values(list.values()),
        Expr::Literal(ScalarValue::LargeList(list), _) => array_values(list.values()),
        Expr::Literal(ScalarValue::FixedSizeList(list), _) => array_values(list.values()),
        Expr::Cast(c) => const_vector(&c.expr),
        other => const_string(other).and_then(|s| crate::literal::parse_vector_text(&s)),
    }
}

fn array_values(values: &Arc<dyn Array>) -> Option<Vec<f32>> {
    if values.null_count() > 0 {
        return None;
    }
    // Parameters usually arrive as f32 already: take them without a round trip.
    if values.data_type() == &DataType::Float32 {
        return Some(values.as_primitive::<Float32Type>().values().to_vec());
    }
    let cast = datafusion::arrow::compute::cast(values, &DataType::Float64).ok()?;
    Some(cast.as_primitive::<Float64Type>().values().iter().map(|v| *v as f32).collect())
}
