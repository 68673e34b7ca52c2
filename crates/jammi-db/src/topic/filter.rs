//! Subscription filters: a subset of SQL `WHERE`, checked when the subscription starts and
//! evaluated on every batch of events by DataFusion's physical expressions.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{filter_record_batch, prep_null_mask_filter};
use datafusion::common::DFSchema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{self, BinaryOperator, UnaryOperator};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::error::{Error, Result};

/// Functions a filter may call.
const FUNCTIONS: &[&str] = &[
    "lower", "upper", "length", "char_length", "character_length", "trim", "ltrim", "rtrim", "substr", "substring", "concat",
    "starts_with", "ends_with", "strpos", "replace", "left", "right", "coalesce", "nullif", "abs", "round", "floor", "ceil",
    "ceiling", "sqrt", "power", "pow", "mod", "sign", "signum", "ln", "log", "log10", "exp", "greatest", "least",
];

/// A checked filter, ready to evaluate.
#[derive(Debug)]
pub struct EventFilter {
    text: String,
    predicate: Arc<dyn PhysicalExpr>,
}

fn refuse(text: &str, what: impl std::fmt::Display) -> Error {
    Error::invalid("filter", format!(
        "subscription filter '{text}': {what} is not allowed; use comparisons, AND/OR/NOT, IS [NOT] NULL, BETWEEN, IN, LIKE, \
         CAST and common string and math functions ({})",
        FUNCTIONS.join(", ")
    ))
}

fn check(text: &str, expr: &ast::Expr) -> Result<()> {
    use ast::Expr as E;
    match expr {
        E::Identifier(_) | E::Value(_) | E::TypedString { .. } => Ok(()),
        E::Nested(e) | E::IsNull(e) | E::IsNotNull(e) | E::IsTrue(e) | E::IsFalse(e) | E::IsNotTrue(e) | E::IsNotFalse(e) => check(text, e),
        E::UnaryOp { op, expr } => match op {
            UnaryOperator::Not | UnaryOperator::Minus | UnaryOperator::Plus => check(text, expr),
            other => Err(refuse(text, format!("the operator {other}"))),
        },
        E::BinaryOp { left, op, right } => {
            let allowed = matches!(
                op,
                BinaryOperator::Eq
                    | BinaryOperator::NotEq
                    | BinaryOperator::Lt
                    | BinaryOperator::LtEq
                    | BinaryOperator::Gt
                    | BinaryOperator::GtEq
                    | BinaryOperator::And
                    | BinaryOperator::Or
                    | BinaryOperator::Plus
                    | BinaryOperator::Minus
                    | BinaryOperator::Multiply
                    | BinaryOperator::Divide
                    | BinaryOperator::Modulo
                    | BinaryOperator::StringConcat
            );
            if !allowed {
                return Err(refuse(text, format!("the operator {op}")));
            }
            check(text, left)?;
            check(text, right)
        }
        E::Between { expr, low, high, .. } => {
            check(text, expr)?;
            check(text, low)?;
            check(text, high)
        }
        E::InList { expr, list, .. } => {
            check(text, expr)?;
            list.iter().try_for_each(|e| check(text, e))
        }
        E::Like { expr, pattern, .. } | E::ILike { expr, pattern, .. } => {
            check(text, expr)?;
            check(text, pattern)
        }
        E::Cast { expr, .. } => check(text, expr),
        E::Function(f) => {
            let name = f.name.to_string().to_lowercase();
            if !FUNCTIONS.contains(&name.as_str()) {
                return Err(refuse(text, format!("the function {name}()")));
            }
            match &f.args {
                ast::FunctionArguments::List(list) if list.duplicate_treatment.is_none() && list.clauses.is_empty() => {
                    for arg in &list.args {
                        match arg {
                            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => check(text, e)?,
                            other => return Err(refuse(text, format!("the argument {other}"))),
                        }
                    }
                    Ok(())
                }
                ast::FunctionArguments::None => Ok(()),
                other => Err(refuse(text, format!("the arguments {other}"))),
            }
        }
        other => Err(refuse(text, format!("'{other}'"))),
    }
}

impl EventFilter {
    /// Check `text` against the subset and plan it over `schema` (the topic's columns).
    pub fn new(ctx: &SessionContext, text: &str, schema: &DFSchema) -> Result<Self> {
        let expr = Parser::new(&GenericDialect {})
            .try_with_sql(text)
            .and_then(|mut p| p.parse_expr())
            .map_err(|e| Error::invalid("filter", format!("subscription filter '{text}': {e}")))?;
        check(text, &expr)?;
        let logical = ctx.parse_sql_expr(text, schema).map_err(|e| Error::invalid("filter", format!("subscription filter '{text}': {e}")))?;
        let predicate = ctx.create_physical_expr(logical, schema).map_err(|e| Error::invalid("filter", format!("subscription filter '{text}': {e}")))?;
        let ty = predicate.data_type(schema.as_arrow()).map_err(|e| Error::invalid("filter", format!("subscription filter '{text}': {e}")))?;
        if ty != datafusion::arrow::datatypes::DataType::Boolean {
            return Err(Error::invalid("filter", format!("subscription filter '{text}' is a {ty} value, not a true/false condition")));
        }
        Ok(EventFilter { text: text.to_string(), predicate })
    }

    /// The rows of `batch` the filter keeps (NULL counts as false).
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let value = self.predicate.evaluate(batch).and_then(|v| v.into_array(batch.num_rows())).map_err(|e| Error::invalid("filter", format!("filter '{}': {e}", self.text)))?;
        let mask = value.as_boolean_opt().ok_or_else(|| Error::invalid("filter", format!("subscription filter '{}' is not a true/false condition", self.text)))?;
        let mask: BooleanArray = if mask.null_count() > 0 { prep_null_mask_filter(mask) } else { mask.clone() };
        filter_record_batch(batch, &mask).map_err(Error::internal)
    }
}
