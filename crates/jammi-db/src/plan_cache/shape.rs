//! Shapes: a query with its constants turned into `$n` parameters, so queries that differ
//! only in their constants share one plan (see the module docs of [`super`]).

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{visit_relations, BinaryOperator, Expr, ObjectName, Statement, Value, VisitMut, VisitorMut};

use crate::statement::SqlStatement;

/// A query with its comparison constants turned into parameters.
pub(super) struct Shape {
    pub(super) statement: SqlStatement,
    pub(super) text: String,
    pub(super) values: Vec<ScalarValue>,
    /// The values are search arguments, which the search checks when they are bound.
    pub(super) checked_when_bound: bool,
}


/// sources for which `is_database` holds and nothing else, with each constant compared
/// with a column replaced by the next `$n`.
pub(super) fn shape_of(statement: &SqlStatement, is_database: impl Fn(&str) -> bool) -> Option<Shape> {
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
pub(super) fn search_shape_of(statement: &SqlStatement) -> Option<Shape> {
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
}
