//! Shared plans for SQL text: queries on database sources that differ only in their
//! constants reuse one plan, the way a prepared statement does.
//!
//! Applications often send the same query again and again with other constants written in
//! (`… WHERE id = 17`, then `… WHERE id = 42`). Parsing is cheap, but DataFusion's planning
//! of a statement costs far more than a point lookup on the remote database. So
//! [`Session::run`] first puts each query that reads only database sources into its *shape*:
//! every literal compared with a column (`col = 17`, `col BETWEEN 1 AND 9`, `'x' < col`)
//! becomes a parameter (`col = $1`). The shape is planned once per tenant scope and catalog
//! generation, as [`Session::prepare`] would plan it; when that plan is pushed down whole
//! (it can run again with new values bound into the remote statement), later queries of
//! the same shape bind their constants into it and skip planning.
//!
//! A constant is bound only where that cannot change the answer: its type must be the one
//! DataFusion inferred for the parameter, or convert to it and back unchanged (an integer
//! into an `integer` column; not `1.5` into one, nor `'2024-1-1'` into a date). Anything
//! else — a shape whose plan computes locally, a constant that does not fit, a statement
//! inside a transaction, statements with parameters of their own — is planned as usual.
//!
//! Searches written as text get the same treatment: a query that reads nothing but
//! `vector_search`, `text_search` and `hybrid_search` has every argument after the table
//! name (the query vector or text, k, filter, ef, options) turned into a parameter, so a
//! stream of searches with new vectors written into the SQL plans once, as a prepared
//! statement does. Those values are bound without a type check here: the search checks
//! each bound value itself, with the same messages as a literal.

use std::collections::HashMap;
use std::fmt;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{Session as CatalogSession, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{ParamValues, Result as DfResult, ScalarValue};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::{provider_as_source, TableType};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr as LogicalExpr, LogicalPlanBuilder};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{visit_relations, BinaryOperator, Expr, ObjectName, Statement, Value, VisitMut, VisitorMut};

use crate::error::Result;
use crate::prepared::{bind_parameters, parameter_types, Planned};
use crate::session::Session;
use crate::statement::SqlStatement;
use crate::tenant::TenantScope;

/// Shapes kept at most; when full, entries of older catalog generations go first, then all.
const CAPACITY: usize = 512;

/// Planned shapes, by tenant scope and shape text.
#[derive(Default)]
pub(crate) struct PlanCache {
    entries: Mutex<HashMap<(TenantScope, String), Entry>>,
}

impl fmt::Debug for PlanCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlanCache").field("entries", &self.lock().len()).finish()
    }
}

#[derive(Clone)]
enum Entry {
    /// The shape's plan runs again with new values.
    Shared(Arc<SharedPlan>),
    /// The shape's plan must be made per query (planned at this catalog generation).
    Unshared(i64),
}

impl Entry {
    fn generation(&self) -> i64 {
        match self {
            Entry::Shared(shared) => shared.planned.generation,
            Entry::Unshared(generation) => *generation,
        }
    }
}

impl PlanCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(TenantScope, String), Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, key: &(TenantScope, String), generation: i64) -> Option<Entry> {
        self.lock().get(key).filter(|e| e.generation() == generation).cloned()
    }

    fn insert(&self, key: (TenantScope, String), entry: Entry) {
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            let newest = entry.generation();
            entries.retain(|_, e| e.generation() == newest);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(key, entry);
    }
}

/// A shape's plan, and the state its frames are made in.
struct SharedPlan {
    planned: Planned,
    /// The type DataFusion inferred for each `$n`, in order.
    parameter_types: Vec<Option<DataType>>,
    /// A session state with no planning rules and no function registry: a frame of a
    /// ready plan needs neither, and copying the full state for every query (it is copied
    /// into each frame) costs more than a point lookup's planning should.
    frame_state: SessionState,
}

impl SharedPlan {
    fn new(planned: Planned) -> Result<Self> {
        let parameter_types = parameter_types(&planned.logical)?;
        let frame_state = SessionStateBuilder::new()
            .with_config(planned.state.config().clone())
            .with_runtime_env(Arc::clone(planned.state.runtime_env()))
            .with_analyzer_rules(vec![])
            .with_optimizer_rules(vec![])
            .with_physical_optimizer_rules(vec![])
            .build();
        Ok(SharedPlan { planned, parameter_types, frame_state })
    }
}

/// A query with its comparison constants turned into parameters.
struct Shape {
    statement: SqlStatement,
    text: String,
    values: Vec<ScalarValue>,
    /// The values are search arguments, which the search checks when they are bound.
    checked_when_bound: bool,
}

/// Run `statement` on the shared plan of its shape, when it has one (see the module
/// docs); `None` when it must be planned as usual. The catalog is synced by the caller.
pub(crate) async fn run_shared_plan(session: &Session, statement: &SqlStatement, scope: TenantScope) -> Result<Option<DataFrame>> {
    if session.open_transaction().is_some() {
        return Ok(None);
    }
    let sources = session.source_catalogs();
    let shape = shape_of(statement, |name| sources.resolve(scope, name).is_some_and(|c| c.reads_database())).or_else(|| search_shape_of(statement));
    let Some(shape) = shape else {
        return Ok(None);
    };
    let generation = session.catalog_generation();
    let key = (scope, shape.text);
    let shared = match session.plan_cache().get(&key, generation) {
        Some(Entry::Shared(shared)) => shared,
        Some(Entry::Unshared(_)) => return Ok(None),
        None => {
            // A shape that fails to plan (a constant where a parameter cannot stand)
            // is simply not shared; planning the query itself reports any real error.
            let entry = match crate::prepared::plan_statement(session, &shape.statement, generation, scope, (0, 0)).await {
                // A parameter in an output column's name (`SELECT a = 5`) would rename it.
                Ok(planned) if planned.reusable().is_some() && !planned.logical.schema().fields().iter().any(|f| f.name().contains('$')) => {
                    Entry::Shared(Arc::new(SharedPlan::new(planned)?))
                }
                _ => Entry::Unshared(generation),
            };
            session.plan_cache().insert(key, entry.clone());
            match entry {
                Entry::Shared(shared) => shared,
                Entry::Unshared(_) => return Ok(None),
            }
        }
    };
    let Some((physical, task)) = shared.planned.reusable() else { return Ok(None) };
    let values = if shape.checked_when_bound { Some(shape.values) } else { fitted_values(&shared.parameter_types, shape.values) };
    let Some(values) = values else { return Ok(None) };
    let physical = bind_parameters(Arc::clone(physical), &ParamValues::List(values.into_iter().map(Into::into).collect()))?;
    let ready = Arc::new(ReadyPlan { plan: Arc::new(ReadyExec::new(physical, Arc::clone(task))) });
    let plan = LogicalPlanBuilder::scan("shared_plan", provider_as_source(ready), None)?.build()?;
    Ok(Some(DataFrame::new(shared.frame_state.clone(), plan)))
}

/// The shape's values converted to the types inferred for their parameters, or `None`
/// when one would not convert without change.
fn fitted_values(types: &[Option<DataType>], values: Vec<ScalarValue>) -> Option<Vec<ScalarValue>> {
    if types.len() != values.len() {
        return None;
    }
    values.into_iter().zip(types).map(|(value, target)| fit(value, target.as_ref()?)).collect()
}

/// `value` as `target`, when a literal of its kind compares the same as the converted
/// value would: integers into integer or double columns, doubles into double columns,
/// strings into string columns — and only when converting back gives `value` again.
fn fit(value: ScalarValue, target: &DataType) -> Option<ScalarValue> {
    let integer = |t: &DataType| matches!(t, DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64);
    let kind_ok = match (&value, target) {
        (ScalarValue::Int64(_), t) => integer(t) || matches!(t, DataType::Float64),
        (ScalarValue::Float64(_), t) => matches!(t, DataType::Float64),
        (ScalarValue::Utf8(_), t) => matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View),
        _ => false,
    };
    if !kind_ok {
        return None;
    }
    let converted = value.cast_to(target).ok()?;
    let back = converted.cast_to(&value.data_type()).ok()?;
    (back == value && !converted.is_null()).then_some(converted)
}

/// The shape of `statement`: a query (no parameters of its own) that reads tables of
/// sources for which `is_database` holds and nothing else, with each constant compared
/// with a column replaced by the next `$n`.
fn shape_of(statement: &SqlStatement, is_database: impl Fn(&str) -> bool) -> Option<Shape> {
    let DfStatement::Statement(inner) = statement.inner() else { return None };
    if !matches!(inner.as_ref(), Statement::Query(_)) {
        return None;
    }
    // Most queries read no database: find that out before copying the statement.
    let mut any_database = false;
    let _ = visit_relations(inner.as_ref(), |relation: &ObjectName| {
        any_database |= database_of(relation, &is_database).is_some();
        ControlFlow::<()>::Continue(())
    });
    if !any_database {
        return None;
    }
    let mut shaped = inner.as_ref().clone();
    let mut visitor = Shaper { is_database: &is_database, reads_database: false, other_relation: false, values: Vec::new(), has_placeholder: false };
    let _ = shaped.visit(&mut visitor);
    if !visitor.reads_database || visitor.other_relation || visitor.has_placeholder {
        return None;
    }
    let statement = SqlStatement::from_inner(DfStatement::Statement(Box::new(shaped)));
    let text = statement.to_string();
    Some(Shape { statement, text, values: visitor.values, checked_when_bound: false })
}

/// The table functions whose arguments [`search_shape_of`] lifts.
const SEARCH_FUNCTIONS: [&str; 3] = ["vector_search", "text_search", "hybrid_search"];

fn is_search_function(name: &ObjectName) -> bool {
    name.0.len() == 1 && name.0[0].as_ident().is_some_and(|i| SEARCH_FUNCTIONS.iter().any(|f| i.value.eq_ignore_ascii_case(f)))
}

/// The shape of a query (no parameters of its own) that reads only search functions, with
/// every constant argument after the table name replaced by the next `$n`.
fn search_shape_of(statement: &SqlStatement) -> Option<Shape> {
    let DfStatement::Statement(inner) = statement.inner() else { return None };
    if !matches!(inner.as_ref(), Statement::Query(_)) {
        return None;
    }
    let mut only_searches = true;
    let mut any_search = false;
    let _ = visit_relations(inner.as_ref(), |relation: &ObjectName| {
        let search = is_search_function(relation);
        any_search |= search;
        only_searches &= search;
        ControlFlow::<()>::Continue(())
    });
    if !any_search || !only_searches {
        return None;
    }
    // Statements with parameters of their own are prepared statements' business.
    let own_parameter = datafusion::sql::sqlparser::ast::visit_expressions(inner.as_ref(), |e: &Expr| match e {
        Expr::Value(v) if matches!(v.value, Value::Placeholder(_)) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    });
    if own_parameter.is_break() {
        return None;
    }
    let mut shaped = inner.as_ref().clone();
    let mut visitor = SearchShaper { values: Vec::new(), unliftable: false };
    let _ = shaped.visit(&mut visitor);
    if visitor.unliftable || visitor.values.is_empty() {
        return None;
    }
    let statement = SqlStatement::from_inner(DfStatement::Statement(Box::new(shaped)));
    let text = statement.to_string();
    Some(Shape { statement, text, values: visitor.values, checked_when_bound: true })
}

struct SearchShaper {
    values: Vec<ScalarValue>,
    /// An argument that is not a constant (or is named).
    unliftable: bool,
}

/// A constant search argument as a value: a number, a string, NULL, or an array of numbers
/// (a query vector written `[0.1, -0.2]`).
fn search_argument(expr: &Expr) -> Option<ScalarValue> {
    fn number(expr: &Expr) -> Option<ScalarValue> {
        match expr {
            Expr::Value(v) => match &v.value {
                Value::Number(text, false) => match text.parse::<i64>() {
                    Ok(i) => Some(ScalarValue::Int64(Some(i))),
                    Err(_) => text.parse::<f64>().ok().filter(|f| f.is_finite()).map(|f| ScalarValue::Float64(Some(f))),
                },
                _ => None,
            },
            Expr::UnaryOp { op: datafusion::sql::sqlparser::ast::UnaryOperator::Minus, expr } => number(expr)?.arithmetic_negate().ok(),
            Expr::Nested(inner) => number(inner),
            _ => None,
        }
    }
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(ScalarValue::Utf8(Some(s.clone()))),
            Value::Null => Some(ScalarValue::Null),
            _ => number(expr),
        },
        Expr::Array(array) => {
            let floats = array
                .elem
                .iter()
                .map(|e| match number(e)? {
                    ScalarValue::Int64(Some(i)) => Some(i as f64),
                    ScalarValue::Float64(Some(f)) => Some(f),
                    _ => None,
                })
                .collect::<Option<Vec<f64>>>()?;
            let list = datafusion::arrow::array::ListArray::from_iter_primitive::<datafusion::arrow::datatypes::Float64Type, _, _>([Some(floats.into_iter().map(Some))]);
            Some(ScalarValue::List(Arc::new(list)))
        }
        _ => number(expr),
    }
}

impl VisitorMut for SearchShaper {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut datafusion::sql::sqlparser::ast::TableFactor) -> ControlFlow<()> {
        use datafusion::sql::sqlparser::ast::{FunctionArg, FunctionArgExpr, TableFactor};
        let TableFactor::Table { name, args: Some(args), .. } = factor else { return ControlFlow::Continue(()) };
        if !is_search_function(name) {
            return ControlFlow::Continue(());
        }
        // The first argument names the table: it decides the plan, so it stays.
        for arg in args.args.iter_mut().skip(1) {
            let FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) = arg else {
                self.unliftable = true;
                return ControlFlow::Break(());
            };
            match search_argument(expr) {
                Some(value) => {
                    self.values.push(value);
                    *expr = Expr::value(Value::Placeholder(format!("${}", self.values.len())));
                }
                None => {
                    self.unliftable = true;
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    }

}

struct Shaper<'a, F> {
    is_database: &'a F,
    reads_database: bool,
    other_relation: bool,
    values: Vec<ScalarValue>,
    has_placeholder: bool,
}

impl<F: Fn(&str) -> bool> Shaper<'_, F> {
    /// Replace `expr`, a constant, by the next parameter.
    fn parameterize(&mut self, expr: &mut Expr) {
        let Expr::Value(value) = expr else { return };
        let scalar = match &value.value {
            Value::Number(text, false) => match text.parse::<i64>() {
                Ok(i) => ScalarValue::Int64(Some(i)),
                Err(_) => match text.parse::<f64>() {
                    Ok(f) if f.is_finite() => ScalarValue::Float64(Some(f)),
                    _ => return,
                },
            },
            Value::SingleQuotedString(s) => ScalarValue::Utf8(Some(s.clone())),
            _ => return,
        };
        self.values.push(scalar);
        *expr = Expr::value(Value::Placeholder(format!("${}", self.values.len())));
    }
}

/// The database source `relation` (`source.schema.table`) reads, if it names one.
fn database_of<'r>(relation: &'r ObjectName, is_database: &impl Fn(&str) -> bool) -> Option<&'r str> {
    let source = (relation.0.len() == 3).then(|| relation.0[0].as_ident()).flatten()?;
    is_database(&source.value).then_some(source.value.as_str())
}

fn is_column(expr: &Expr) -> bool {
    matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
}

impl<F: Fn(&str) -> bool> VisitorMut for Shaper<'_, F> {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<()> {
        // Only `source.schema.table` of database sources: what other relations resolve to
        // (a view, a file listing, a mutable table) can change without the catalog
        // generation moving, or is read at planning time.
        match database_of(relation, self.is_database) {
            Some(_) => self.reads_database = true,
            None => self.other_relation = true,
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match expr {
            Expr::Value(v) if matches!(v.value, Value::Placeholder(_)) => self.has_placeholder = true,
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq | BinaryOperator::NotEq | BinaryOperator::Lt | BinaryOperator::LtEq | BinaryOperator::Gt | BinaryOperator::GtEq,
                right,
            } => {
                if is_column(left) {
                    self.parameterize(right);
                } else if is_column(right) {
                    self.parameterize(left);
                }
            }
            Expr::Between { expr, low, high, .. } if is_column(expr) => {
                self.parameterize(low);
                self.parameterize(high);
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// A table whose scan is a plan made already: how a shared plan travels in a
/// [`DataFrame`], so callers use it like any other query.
#[derive(Debug)]
struct ReadyPlan {
    plan: Arc<ReadyExec>,
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
struct ReadyExec {
    inner: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
}

impl ReadyExec {
    fn new(inner: Arc<dyn ExecutionPlan>, task: Arc<TaskContext>) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(sql: &str) -> Option<(String, Vec<ScalarValue>)> {
        let parsed = datafusion::sql::parser::DFParser::parse_sql(sql).unwrap().pop_front().unwrap();
        shape_of(&SqlStatement::from_inner(parsed), |s| s == "pg").map(|s| (s.text, s.values))
    }

    #[test]
    fn constants_compared_with_columns_become_parameters() {
        let (text, values) = shape("SELECT a, b FROM pg.public.t WHERE a = 17 AND 'x' < b AND c BETWEEN 1.5 AND 9 LIMIT 10").unwrap();
        assert_eq!(text, "SELECT a, b FROM pg.public.t WHERE a = $1 AND $2 < b AND c BETWEEN $3 AND $4 LIMIT 10");
        assert_eq!(values, [ScalarValue::Int64(Some(17)), ScalarValue::Utf8(Some("x".into())), ScalarValue::Float64(Some(1.5)), ScalarValue::Int64(Some(9))]);
    }

    #[test]
    fn other_constants_stay() {
        let (text, values) = shape("SELECT lower(a) FROM pg.public.t WHERE lower(a) = 'x' AND a + 1 > 2 AND b IN (1, 2)").unwrap();
        assert_eq!(text, "SELECT lower(a) FROM pg.public.t WHERE lower(a) = 'x' AND a + 1 > 2 AND b IN (1, 2)");
        assert!(values.is_empty());
    }

    #[test]
    fn only_queries_on_database_sources_without_parameters() {
        assert!(shape("SELECT * FROM files.public.t WHERE a = 1").is_none());
        assert!(shape("SELECT * FROM pg.public.t WHERE a = $1").is_none());
        assert!(shape("INSERT INTO pg.public.t VALUES (1)").is_none());
        assert!(shape("SELECT * FROM files.public.f JOIN pg.public.t ON f.id = t.id WHERE t.a = 3").is_none());
        assert!(shape("SELECT * FROM pg.public.u JOIN pg.other.t ON u.id = t.id WHERE t.a = 3").is_some());
    }

    fn search_shape(sql: &str) -> Option<(String, Vec<ScalarValue>)> {
        let parsed = datafusion::sql::parser::DFParser::parse_sql(sql).unwrap().pop_front().unwrap();
        search_shape_of(&SqlStatement::from_inner(parsed)).map(|s| (s.text, s.values))
    }

    #[test]
    fn search_arguments_become_parameters() {
        let (text, values) = search_shape("SELECT id, _distance FROM vector_search('docs', '[0.5, -1]', 10, NULL, 64) WHERE id > 3").unwrap();
        assert_eq!(text, "SELECT id, _distance FROM vector_search('docs', $1, $2, $3, $4) WHERE id > 3");
        assert_eq!(values, [ScalarValue::Utf8(Some("[0.5, -1]".into())), ScalarValue::Int64(Some(10)), ScalarValue::Null, ScalarValue::Int64(Some(64))]);
        // Two searches with other vectors have one shape.
        let (other, _) = search_shape("SELECT id, _distance FROM vector_search('docs', '[0.25, 2]', 10, NULL, 64) WHERE id > 3").unwrap();
        assert_eq!(other, text);
        let (text, values) = search_shape("SELECT * FROM vector_search('docs', [0.5, -1, 2], 5, 'lang = ''en''')").unwrap();
        assert_eq!(text, "SELECT * FROM vector_search('docs', $1, $2, $3)");
        let ScalarValue::List(list) = &values[0] else { panic!("{values:?}") };
        assert_eq!(list.value(0).as_any().downcast_ref::<datafusion::arrow::array::Float64Array>().unwrap().values(), &[0.5, -1.0, 2.0]);
        assert_eq!(values[2], ScalarValue::Utf8(Some("lang = 'en'".into())));
    }

    #[test]
    fn only_queries_of_search_functions_with_constant_arguments() {
        assert!(search_shape("SELECT * FROM vector_search('docs', $1, 10)").is_none(), "its own parameters: a prepared statement's job");
        assert!(search_shape("SELECT * FROM vector_search('docs', '[1]', 10) WHERE id = $1").is_none());
        assert!(search_shape("SELECT * FROM vector_search('docs', '[1]', 10) v JOIN files.public.t f ON f.id = v.id").is_none());
        assert!(search_shape("SELECT * FROM vector_search('docs', lower('[1]'), 10)").is_none(), "an expression is not lifted");
        assert!(search_shape("SELECT * FROM files.public.t").is_none());
        assert!(search_shape("SELECT * FROM text_search('docs', 'apple pie', 3)").is_some());
    }

    #[test]
    fn constants_bind_only_when_they_convert_unchanged() {
        assert_eq!(fit(ScalarValue::Int64(Some(5)), &DataType::Int32), Some(ScalarValue::Int32(Some(5))));
        assert_eq!(fit(ScalarValue::Int64(Some(5_000_000_000)), &DataType::Int32), None);
        assert_eq!(fit(ScalarValue::Float64(Some(1.5)), &DataType::Int64), None);
        assert_eq!(fit(ScalarValue::Int64(Some(3)), &DataType::Float64), Some(ScalarValue::Float64(Some(3.0))));
        assert_eq!(fit(ScalarValue::Int64(Some((1 << 53) + 1)), &DataType::Float64), None);
        assert_eq!(fit(ScalarValue::Utf8(Some("2024-01-01".into())), &DataType::Date32), None);
        assert_eq!(fit(ScalarValue::Utf8(Some("12".into())), &DataType::Int64), None);
        assert_eq!(fit(ScalarValue::Utf8(Some("a".into())), &DataType::Utf8), Some(ScalarValue::Utf8(Some("a".into()))));
    }
}
