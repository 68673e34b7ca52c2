//! Query pushdown to database sources: an optimizer rule that finds the largest parts of a
//! plan that read one database source only and that its dialect can run, and replaces each
//! with a [`RemoteQuery`] leaf holding the SQL to send. Whatever the remote cannot run
//! (engine-only functions, window functions, other sources, values it cannot compare
//! faithfully) stays in DataFusion above those leaves, so no query that works locally
//! fails because of federation.

use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::common::tree_node::Transformed;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, DFSchemaRef, Result as DfResult, ScalarValue, TableReference};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::expr::{AggregateFunction, Alias, InList, Like};
use datafusion::logical_expr::{BinaryExpr, Distinct, Expr, Extension, JoinType, LogicalPlan, Operator, TableScan, UserDefinedLogicalNodeCore};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::sql::unparser::dialect::{MySqlDialect, PostgreSqlDialect};
use datafusion::sql::unparser::Unparser;

use super::table::RemoteTable;
use super::types::{transport, RemoteKind};
use super::RemoteSource;
use crate::tenant::TenantScopedTable;

/// A part of a plan that one database source runs: the SQL and the schema it returns.
#[derive(Clone)]
pub struct RemoteQuery {
    /// The source that runs it.
    pub source: Arc<RemoteSource>,
    /// The SQL sent (outermost select converts values to their wire types).
    pub sql: String,
    /// The statement's parameters: `$1, $2, …` of `sql` are these placeholders of the
    /// jammi statement (see [`RemoteSql`]).
    pub params: Vec<RemoteParam>,
    /// Output schema (the replaced plan's).
    pub schema: DFSchemaRef,
}

impl fmt::Debug for RemoteQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteQuery").field("source", &self.source.name).field("sql", &self.sql).finish()
    }
}

impl PartialEq for RemoteQuery {
    fn eq(&self, other: &Self) -> bool {
        self.source.name == other.source.name && self.sql == other.sql && self.params == other.params && self.schema == other.schema
    }
}

impl Eq for RemoteQuery {}

impl Hash for RemoteQuery {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.source.name.hash(state);
        self.sql.hash(state);
    }
}

impl PartialOrd for RemoteQuery {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        (&self.source.name, &self.sql).partial_cmp(&(&other.source.name, &other.sql))
    }
}

impl UserDefinedLogicalNodeCore for RemoteQuery {
    fn name(&self) -> &str {
        "RemoteQuery"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "RemoteQuery: source={} sql={}{}", self.source.name, self.sql, super::exec::show_params(&self.params))
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, _inputs: Vec<LogicalPlan>) -> DfResult<Self> {
        Ok(self.clone())
    }
}

/// The optimizer rule (runs after DataFusion's own, so filters and projections already sit
/// as low as they go).
#[derive(Debug, Default)]
pub struct RemotePushdown;

impl OptimizerRule for RemotePushdown {
    fn name(&self) -> &str {
        "jammi_remote_pushdown"
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> DfResult<Transformed<LogicalPlan>> {
        if !contains_remote(&plan) {
            return Ok(Transformed::no(plan));
        }
        let (plan, remote) = federate(plan)?;
        let plan = match remote {
            Some(part) => wrap(plan, &part)?,
            None => plan,
        };
        Ok(Transformed::yes(plan))
    }
}

/// What a pushable subtree reads: its source, and the columns that may only be selected.
#[derive(Clone)]
struct Part {
    source: Arc<RemoteSource>,
    opaque: HashSet<Column>,
}

fn contains_remote(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::TableScan(scan) => remote_table(scan).is_some(),
        other => other.inputs().iter().any(|p| contains_remote(p)),
    }
}

/// What the pushdown needs to know of a database table.
struct Target {
    source: Arc<RemoteSource>,
    remote: TableReference,
    opaque: HashSet<Column>,
}

/// The database table behind a scan, through the wrappers sources put around it.
fn remote_table(scan: &TableScan) -> Option<Target> {
    let provider = source_as_provider(&scan.source).ok()?;
    let inner = match provider.downcast_ref::<TenantScopedTable>() {
        Some(scoped) => Arc::clone(scoped.inner()),
        None => provider,
    };
    let table = inner.downcast_ref::<RemoteTable>()?;
    Some(Target { source: Arc::clone(table.source()), remote: table.remote_reference(), opaque: table.opaque_columns(&scan.table_name) })
}

/// Bottom-up: returns the plan with every maximal pushable subtree that cannot grow further
/// already wrapped, and `Some(part)` when the whole returned plan is still pushable.
fn federate(plan: LogicalPlan) -> DfResult<(LogicalPlan, Option<Part>)> {
    if let LogicalPlan::TableScan(scan) = &plan {
        let Some(target) = remote_table(scan) else { return Ok((plan, None)) };
        let part = Part { source: target.source, opaque: target.opaque };
        let filters_ok = scan.filters.iter().all(|f| expr_ok(f, &part, false));
        return Ok(if filters_ok { (plan, Some(part)) } else { (plan, None) });
    }
    if matches!(plan, LogicalPlan::Extension(_)) || plan.inputs().is_empty() {
        return Ok((plan, None));
    }
    let inputs: Vec<LogicalPlan> = plan.inputs().into_iter().cloned().collect();
    let mut children = Vec::with_capacity(inputs.len());
    for input in inputs {
        children.push(federate(input)?);
    }
    let same_source = children.iter().all(|(_, p)| p.as_ref().is_some_and(|p| Arc::ptr_eq(&p.source, &children[0].1.as_ref().expect("some").source)));
    if same_source {
        let mut part = children[0].1.clone().expect("some");
        for (_, p) in &children[1..] {
            part.opaque.extend(p.as_ref().expect("some").opaque.iter().cloned());
        }
        if let Some(opaque) = node_ok(&plan, &part) {
            part.opaque = opaque;
            let rebuilt = plan.with_new_exprs(plan.expressions(), children.into_iter().map(|(p, _)| p).collect())?;
            return Ok((rebuilt, Some(part)));
        }
    }
    // This node runs locally: each pushable child becomes a remote query.
    let mut new_inputs = Vec::with_capacity(children.len());
    for (child, part) in children {
        new_inputs.push(match part {
            Some(part) => wrap(child, &part)?,
            None => child,
        });
    }
    Ok((plan.with_new_exprs(plan.expressions(), new_inputs)?, None))
}

/// Whether `plan` (whose inputs are pushable to `part`'s source) is pushable too; returns
/// the opaque columns of its output.
fn node_ok(plan: &LogicalPlan, part: &Part) -> Option<HashSet<Column>> {
    let mysql = part.source.kind == RemoteKind::Mysql;
    match plan {
        LogicalPlan::Projection(p) => {
            let mut opaque = HashSet::new();
            for (expr, (qualifier, field)) in p.expr.iter().zip(p.schema.iter()) {
                let bare = match expr {
                    Expr::Column(c) => Some(c),
                    Expr::Alias(Alias { expr, .. }) => match expr.as_ref() {
                        Expr::Column(c) => Some(c),
                        _ => None,
                    },
                    _ => None,
                };
                match bare {
                    Some(c) if part.opaque.contains(c) => {
                        opaque.insert(Column::new(qualifier.cloned(), field.name()));
                    }
                    _ if !expr_ok(expr, part, false) => return None,
                    _ => {}
                }
            }
            Some(opaque)
        }
        LogicalPlan::Filter(f) => expr_ok(&f.predicate, part, false).then(|| part.opaque.clone()),
        LogicalPlan::Sort(s) => s.expr.iter().all(|e| expr_ok(&e.expr, part, false)).then(|| part.opaque.clone()),
        LogicalPlan::Limit(l) => {
            let literal = |e: &Option<Box<Expr>>| e.as_deref().is_none_or(|e| matches!(e, Expr::Literal(ScalarValue::Int64(Some(_)), _)));
            (literal(&l.skip) && literal(&l.fetch)).then(|| part.opaque.clone())
        }
        LogicalPlan::Aggregate(a) => {
            let ok = a.group_expr.iter().all(|e| expr_ok(e, part, false)) && a.aggr_expr.iter().all(|e| expr_ok(e, part, true));
            ok.then(HashSet::new)
        }
        LogicalPlan::Join(j) => {
            let kinds = matches!(j.join_type, JoinType::Inner | JoinType::Left | JoinType::Right) || (j.join_type == JoinType::Full && !mysql);
            let keys = j.on.iter().all(|(l, r)| expr_ok(l, part, false) && expr_ok(r, part, false));
            let filter = j.filter.as_ref().is_none_or(|f| expr_ok(f, part, false));
            let distinct_names = !ambiguous_tables(plan);
            (kinds && keys && filter && distinct_names && j.null_equality == datafusion::common::NullEquality::NullEqualsNothing).then(|| part.opaque.clone())
        }
        LogicalPlan::SubqueryAlias(a) => {
            let opaque = part
                .opaque
                .iter()
                .filter_map(|c| a.input.schema().index_of_column(c).ok().map(|i| Column::new(Some(a.alias.clone()), a.schema.field(i).name())))
                .collect();
            Some(opaque)
        }
        LogicalPlan::Distinct(Distinct::All(_)) => part.opaque.is_empty().then(HashSet::new),
        _ => None,
    }
}

/// Two scans in one pushed join whose table names differ only by schema would be
/// ambiguous in SQL where columns are qualified by the table name alone.
fn ambiguous_tables(plan: &LogicalPlan) -> bool {
    fn scans(plan: &LogicalPlan, out: &mut Vec<TableReference>) {
        match plan {
            LogicalPlan::TableScan(s) => out.push(s.table_name.clone()),
            LogicalPlan::SubqueryAlias(_) => {}
            other => other.inputs().into_iter().for_each(|p| scans(p, out)),
        }
    }
    let mut names = Vec::new();
    scans(plan, &mut names);
    let mut seen = HashSet::new();
    names.iter().any(|n| !seen.insert(n.table().to_string()))
}

/// Whether the cast DataFusion put around the argument of aggregate `func` changes nothing
/// the remote's own aggregate would not (the output is converted to DataFusion's type).
fn needless_cast(func: &str, to: &DataType, arg: &Expr, input: &DFSchemaRef) -> bool {
    use datafusion::logical_expr::ExprSchemable;
    let Ok(from) = arg.get_type(input.as_ref()) else { return false };
    match func {
        "avg" => to == &DataType::Float64,
        "sum" => to == &DataType::Int64 && matches!(from, DataType::Int8 | DataType::Int16 | DataType::Int32),
        _ => false,
    }
}

/// Types a parameter may have to be bound into a remote statement.
pub(crate) fn param_type_ok(t: &DataType) -> bool {
    matches!(t, DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::Float64 | DataType::Utf8 | DataType::Boolean)
}

fn literal_ok(v: &ScalarValue) -> bool {
    match v {
        ScalarValue::Float32(Some(f)) => f.is_finite(),
        ScalarValue::Float64(Some(f)) => f.is_finite(),
        ScalarValue::Null
        | ScalarValue::Boolean(_)
        | ScalarValue::Int8(_)
        | ScalarValue::Int16(_)
        | ScalarValue::Int32(_)
        | ScalarValue::Int64(_)
        | ScalarValue::UInt8(_)
        | ScalarValue::UInt16(_)
        | ScalarValue::UInt32(_)
        | ScalarValue::Float32(None)
        | ScalarValue::Float64(None)
        | ScalarValue::Utf8(_)
        | ScalarValue::LargeUtf8(_)
        | ScalarValue::Utf8View(_)
        | ScalarValue::Decimal128(_, _, _)
        | ScalarValue::Date32(_) => true,
        _ => false,
    }
}

/// Functions whose meaning is the same in DataFusion and in the dialect.
fn function_ok(name: &str, kind: RemoteKind) -> bool {
    let common = ["lower", "upper", "abs", "coalesce", "nullif", "ceil", "floor"];
    common.contains(&name) || (kind == RemoteKind::Postgres && ["sqrt", "btrim", "ltrim", "rtrim"].contains(&name))
}

/// Whether a filter on one table (no opaque columns) can run remotely.
pub(crate) fn filter_ok(filter: &Expr, kind: RemoteKind) -> bool {
    computes_same(filter, kind, &HashSet::new(), false)
}

fn expr_ok(expr: &Expr, part: &Part, aggregate_position: bool) -> bool {
    computes_same(expr, part.source.kind, &part.opaque, aggregate_position)
}

/// Whether the dialect `kind` computes `expr` exactly as DataFusion does (`opaque`: columns
/// it may not compute on).
fn computes_same(expr: &Expr, kind: RemoteKind, opaque: &HashSet<Column>, aggregate_position: bool) -> bool {
    let ok = |e: &Expr| computes_same(e, kind, opaque, false);
    match expr {
        Expr::Column(c) => !opaque.contains(c),
        Expr::Literal(v, _) => literal_ok(v),
        // A prepared statement's parameter travels as a bound value of the remote
        // statement (Postgres numbers them as jammi does; MySQL's `?` is left for later).
        Expr::Placeholder(p) => kind == RemoteKind::Postgres && p.field.as_ref().is_some_and(|f| param_type_ok(f.data_type())),
        Expr::Alias(Alias { expr, .. }) => computes_same(expr, kind, opaque, aggregate_position),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let op_ok = match op {
                Operator::Eq | Operator::NotEq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq | Operator::And | Operator::Or => true,
                Operator::Plus | Operator::Minus | Operator::Multiply | Operator::Modulo => true,
                // MySQL's `/` divides integers into decimals, `||` is OR.
                Operator::Divide | Operator::StringConcat => kind == RemoteKind::Postgres,
                _ => false,
            };
            op_ok && ok(left) && ok(right)
        }
        Expr::Not(e) | Expr::IsNull(e) | Expr::IsNotNull(e) | Expr::Negative(e) => ok(e),
        Expr::Between(b) => ok(&b.expr) && ok(&b.low) && ok(&b.high),
        Expr::InList(InList { expr, list, .. }) => ok(expr) && list.iter().all(|e| matches!(e, Expr::Literal(v, _) if literal_ok(v))),
        Expr::Like(Like { expr, pattern, escape_char, case_insensitive, .. }) => {
            escape_char.is_none() && (!case_insensitive || kind == RemoteKind::Postgres) && ok(expr) && ok(pattern)
        }
        Expr::Cast(c) if kind == RemoteKind::Postgres => {
            use datafusion::arrow::datatypes::DataType::*;
            matches!(c.field.data_type(), Int16 | Int32 | Int64 | Float32 | Float64 | Utf8 | Boolean | Date32) && ok(&c.expr)
        }
        Expr::ScalarFunction(f) => function_ok(f.name(), kind) && f.args.iter().all(ok),
        Expr::AggregateFunction(AggregateFunction { func, params }) if aggregate_position => {
            ["count", "sum", "min", "max", "avg"].contains(&func.name())
                && params.filter.is_none()
                && params.order_by.is_empty()
                && params.args.iter().all(|a| matches!(a, Expr::Literal(_, _)) || ok(a))
        }
        _ => false,
    }
}

/// Replace `plan` (pushable to `part.source`) with a remote query leaf. A plan the
/// unparser cannot write as SQL stays as it is: its scans still read the database, and the
/// rest runs locally.
fn wrap(plan: LogicalPlan, part: &Part) -> DfResult<LogicalPlan> {
    let schema = Arc::clone(plan.schema());
    match to_remote_sql(&plan, part.source.kind) {
        Ok(RemoteSql { sql, params }) => {
            Ok(LogicalPlan::Extension(Extension { node: Arc::new(RemoteQuery { source: Arc::clone(&part.source), sql, params, schema }) }))
        }
        Err(e) => {
            tracing::debug!(source = %part.source.name, error = %e, "not pushed down: cannot write the plan as SQL");
            Ok(plan)
        }
    }
}

/// A parameter of a remote statement: the jammi placeholder (`$2`) whose value it takes,
/// and the type it is bound as.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteParam {
    /// The placeholder's id in the jammi statement.
    pub id: String,
    /// The type the value is converted to before it is bound.
    pub data_type: DataType,
}

/// The statement a remote runs: its SQL and the parameters `$1, $2, …` it refers to, in
/// that order.
pub(crate) struct RemoteSql {
    pub(crate) sql: String,
    pub(crate) params: Vec<RemoteParam>,
}

/// The SQL the remote runs for `plan`: the plan unparsed in the remote dialect with its
/// tables renamed to their remote names, its outputs renamed by position to `c0, c1, …` (a
/// CTE column list, so duplicate or computed names never matter), each output converted
/// to its wire type, and its placeholders numbered `$1, $2, …` in the order they appear.
pub(crate) fn to_remote_sql(plan: &LogicalPlan, kind: RemoteKind) -> DfResult<RemoteSql> {
    let fields = plan.schema().fields();
    if fields.is_empty() {
        return datafusion::common::plan_err!("nothing to select remotely");
    }
    let (renamed, params) = number_params(for_remote(with_output_list(plan.clone())?)?)?;
    let inner = match kind {
        RemoteKind::Postgres => Unparser::new(&PostgreSqlDialect {}).plan_to_sql(&renamed)?,
        RemoteKind::Mysql => Unparser::new(&MySqlDialect {}).plan_to_sql(&renamed)?,
    };
    let names: Vec<String> = (0..fields.len()).map(|i| format!("c{i}")).collect();
    let converted: Vec<String> = fields.iter().enumerate().map(|(i, f)| format!("{} AS c{i}", transport(kind, &format!("q.c{i}"), f.data_type()))).collect();
    let sql = format!("WITH q ({}) AS ({inner}) SELECT {} FROM q", names.join(", "), converted.join(", "));
    Ok(RemoteSql { sql, params })
}

/// `plan` with an explicit select list in its schema's order. The optimizer drops a
/// projection that only repeats its input's columns, and the unparser writes a bare
/// `Aggregate` with its aggregates before its group keys — the opposite of the plan's
/// schema — so without this the columns of `SELECT k, sum(v) … GROUP BY k` came back swapped.
fn with_output_list(plan: LogicalPlan) -> DfResult<LogicalPlan> {
    match plan {
        LogicalPlan::Aggregate(_) => {
            let columns: Vec<Expr> = plan.schema().iter().map(|(qualifier, field)| Expr::Column(Column::new(qualifier.cloned(), field.name()))).collect();
            datafusion::logical_expr::LogicalPlanBuilder::from(plan).project(columns)?.build()
        }
        // The unparser folds ORDER BY and LIMIT into the SELECT below them.
        LogicalPlan::Sort(_) | LogicalPlan::Limit(_) => {
            let input = with_output_list(plan.inputs()[0].clone())?;
            plan.with_new_exprs(plan.expressions(), vec![input])
        }
        other => Ok(other),
    }
}

/// Renumber the placeholders of `plan` `$1, $2, …` in order of first appearance (the
/// remote must see every number it is given a value for), returning which jammi
/// placeholder each number stands for.
fn number_params(plan: LogicalPlan) -> DfResult<(LogicalPlan, Vec<RemoteParam>)> {
    use datafusion::common::tree_node::TreeNode;
    use datafusion::logical_expr::expr::Placeholder;
    let mut params: Vec<RemoteParam> = Vec::new();
    let plan = plan
        .transform_up(|node| {
            node.map_expressions(|e| {
                e.transform_up(|e| match e {
                    Expr::Placeholder(p) => {
                        let Some(data_type) = p.field.as_ref().map(|f| f.data_type().clone()) else {
                            return datafusion::common::plan_err!("parameter {} has no known type", p.id);
                        };
                        let position = match params.iter().position(|q| q.id == p.id) {
                            Some(i) => i,
                            None => {
                                params.push(RemoteParam { id: p.id.clone(), data_type });
                                params.len() - 1
                            }
                        };
                        Ok(Transformed::yes(Expr::Placeholder(Placeholder { id: format!("${}", position + 1), field: p.field })))
                    }
                    other => Ok(Transformed::no(other)),
                })
            })
        })?
        .data;
    Ok((plan, params))
}

/// `plan` as the remote sees it: every scan named as the remote database names the table,
/// and `avg` over integers without DataFusion's per-row cast to double.
fn for_remote(plan: LogicalPlan) -> DfResult<LogicalPlan> {
    use datafusion::common::tree_node::TreeNode;
    plan.transform_up(|p| match p {
        LogicalPlan::TableScan(scan) => match remote_table(&scan).map(|t| t.remote) {
            Some(remote) => Ok(Transformed::yes(LogicalPlan::TableScan(TableScan { table_name: remote, ..scan }))),
            None => Ok(Transformed::no(LogicalPlan::TableScan(scan))),
        },
        // DataFusion averages integers as doubles (`avg(CAST(x AS DOUBLE))`) and sums small
        // integers as 64-bit ones (`sum(CAST(x AS BIGINT))`); the remote does both without a
        // per-row cast (its `avg` is exact, its `sum` of smaller integers is 64-bit or
        // decimal), and the result is converted to DataFusion's type on the way out.
        LogicalPlan::Aggregate(aggregate) => {
            let input = Arc::clone(aggregate.input.schema());
            LogicalPlan::Aggregate(aggregate).map_expressions(|e| {
                e.transform_up(|e| match e {
                    Expr::AggregateFunction(mut f) if f.params.args.len() == 1 => match f.params.args[0].clone() {
                        Expr::Cast(c) if needless_cast(f.func.name(), c.field.data_type(), &c.expr, &input) => {
                            f.params.args[0] = *c.expr;
                            Ok(Transformed::yes(Expr::AggregateFunction(f)))
                        }
                        _ => Ok(Transformed::no(Expr::AggregateFunction(f))),
                    },
                    other => Ok(Transformed::no(other)),
                })
            })
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}
