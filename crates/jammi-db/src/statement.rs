//! [`SqlStatement`]: one parsed statement, and what a server needs to know of it — whether
//! it returns rows, the command tag a Postgres client expects, and the statement with `$n`
//! parameters replaced by literals (for statements that cannot be prepared, such as DML on
//! mutable tables). Which part runs a statement is decided in `mutable/classify.rs` (the one place statements are classified).

use datafusion::common::ScalarValue;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, Expr, Statement, Value, VisitMut, VisitorMut};
use std::ops::ControlFlow;

use crate::error::{Error, Result};
use std::fmt;

/// One parsed SQL statement, ready to run with [`Session::run`](crate::Session::run).
#[derive(Debug, Clone)]
pub struct SqlStatement(pub(crate) DfStatement);

impl SqlStatement {
    pub(crate) fn inner(&self) -> &DfStatement {
        &self.0
    }

    pub(crate) fn from_inner(statement: DfStatement) -> Self {
        SqlStatement(statement)
    }
}

impl fmt::Display for SqlStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl SqlStatement {
    /// Whether the statement answers with rows of its own (a query, `EXPLAIN`, `SHOW`),
    /// rather than a command status.
    pub fn returns_rows(&self) -> bool {
        match self.inner() {
            DfStatement::Statement(s) => matches!(
                s.as_ref(),
                Statement::Query(_) | Statement::Explain { .. } | Statement::ExplainTable { .. } | Statement::ShowVariable { .. } | Statement::ShowColumns { .. } | Statement::ShowTables { .. }
            ) || matches!(s.as_ref(), Statement::Insert(i) if i.returning.is_some())
                || matches!(s.as_ref(), Statement::Update(u) if u.returning.is_some())
                || matches!(s.as_ref(), Statement::Delete(d) if d.returning.is_some()),
            DfStatement::Explain(_) => true,
            _ => false,
        }
    }

    /// The command tag a Postgres client expects for this statement (`INSERT`, `UPDATE`,
    /// `CREATE TABLE`, `BEGIN`, …; `SELECT` for anything returning rows).
    pub fn command_tag(&self) -> &'static str {
        let DfStatement::Statement(s) = self.inner() else {
            return if self.returns_rows() { "SELECT" } else { "CREATE TABLE" };
        };
        match s.as_ref() {
            Statement::Insert(_) => "INSERT",
            Statement::Update(_) => "UPDATE",
            Statement::Delete(_) => "DELETE",
            Statement::CreateTable(_) => "CREATE TABLE",
            Statement::CreateView(_) => "CREATE VIEW",
            Statement::Drop { .. } => "DROP",
            Statement::StartTransaction { .. } => "BEGIN",
            Statement::Commit { .. } => "COMMIT",
            Statement::Rollback { .. } => "ROLLBACK",
            Statement::Savepoint { .. } => "SAVEPOINT",
            Statement::ReleaseSavepoint { .. } => "RELEASE",
            Statement::Set(_) => "SET",
            Statement::AlterTable(_) => "ALTER TABLE",
            Statement::Truncate(_) => "TRUNCATE",
            _ => "SELECT",
        }
    }

    /// Whether this is `COMMIT` or a whole `ROLLBACK` (not `ROLLBACK TO SAVEPOINT`), which
    /// end the transaction.
    pub fn ends_transaction(&self) -> bool {
        matches!(self.inner(), DfStatement::Statement(s) if matches!(s.as_ref(), Statement::Commit { .. } | Statement::Rollback { savepoint: None, .. }))
    }

    /// The statement with each `$n` replaced by the literal of `params[n - 1]` (in the AST,
    /// so values are quoted as SQL quotes them, never spliced as text).
    pub fn with_literals(&self, params: &[ScalarValue]) -> Result<SqlStatement> {
        let mut statement = self.inner().clone();
        let mut binder = Binder { params, error: None };
        match &mut statement {
            DfStatement::Statement(s) => {
                let _ = s.visit(&mut binder);
            }
            DfStatement::Explain(e) => {
                if let DfStatement::Statement(s) = e.statement.as_mut() {
                    let _ = s.visit(&mut binder);
                }
            }
            _ => {}
        }
        match binder.error {
            Some(e) => Err(e),
            None => Ok(SqlStatement::from_inner(statement)),
        }
    }
}

struct Binder<'a> {
    params: &'a [ScalarValue],
    error: Option<Error>,
}

impl VisitorMut for Binder<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Self::Break> {
        let Expr::Value(value) = expr else { return ControlFlow::Continue(()) };
        let Value::Placeholder(id) = &value.value else { return ControlFlow::Continue(()) };
        let index = id.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()).filter(|n| *n >= 1);
        let Some(param) = index.and_then(|n| self.params.get(n - 1)) else {
            self.error = Some(Error::invalid("parameters", format!("parameter {id} has no value ({} given)", self.params.len())));
            return ControlFlow::Break(());
        };
        match literal(param) {
            Ok(literal) => {
                *expr = literal;
                ControlFlow::Continue(())
            }
            Err(e) => {
                self.error = Some(e);
                ControlFlow::Break(())
            }
        }
    }
}

/// A SQL literal for `value`.
fn literal(value: &ScalarValue) -> Result<Expr> {
    let number = |text: String| Ok(Expr::value(Value::Number(text, false)));
    if value.is_null() {
        return Ok(Expr::value(Value::Null));
    }
    match value {
        ScalarValue::Boolean(Some(b)) => Ok(Expr::value(Value::Boolean(*b))),
        ScalarValue::Int8(Some(v)) => number(v.to_string()),
        ScalarValue::Int16(Some(v)) => number(v.to_string()),
        ScalarValue::Int32(Some(v)) => number(v.to_string()),
        ScalarValue::Int64(Some(v)) => number(v.to_string()),
        ScalarValue::UInt8(Some(v)) => number(v.to_string()),
        ScalarValue::UInt16(Some(v)) => number(v.to_string()),
        ScalarValue::UInt32(Some(v)) => number(v.to_string()),
        ScalarValue::UInt64(Some(v)) => number(v.to_string()),
        ScalarValue::Float32(Some(v)) if v.is_finite() => number(format!("{v:?}")),
        ScalarValue::Float64(Some(v)) if v.is_finite() => number(format!("{v:?}")),
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            Ok(Expr::value(Value::SingleQuotedString(s.clone())))
        }
        ScalarValue::List(_) | ScalarValue::LargeList(_) | ScalarValue::FixedSizeList(_) => {
            // Vectors: `[0.1, 0.2]` in DataFusion's array literal syntax.
            let text = value.to_string();
            let parsed = datafusion::sql::sqlparser::parser::Parser::new(&datafusion::sql::sqlparser::dialect::GenericDialect {})
                .try_with_sql(&text)
                .and_then(|mut p| p.parse_expr())
                .map_err(|e| Error::invalid("parameters", format!("cannot use {text} as a literal: {e}")))?;
            Ok(parsed)
        }
        other => {
            // Dates, timestamps, decimals: their text, cast back to their type.
            Ok(Expr::Cast {
                kind: ast::CastKind::Cast,
                expr: Box::new(Expr::value(Value::SingleQuotedString(other.to_string()))),
                data_type: sql_type(other)?,
                format: None,
                array: false,
            })
        }
    }
}

fn sql_type(value: &ScalarValue) -> Result<ast::DataType> {
    Ok(match value {
        ScalarValue::Date32(_) | ScalarValue::Date64(_) => ast::DataType::Date,
        ScalarValue::TimestampSecond(..) | ScalarValue::TimestampMillisecond(..) | ScalarValue::TimestampMicrosecond(..) | ScalarValue::TimestampNanosecond(..) => {
            ast::DataType::Timestamp(None, ast::TimezoneInfo::None)
        }
        ScalarValue::Decimal128(_, p, s) => ast::DataType::Decimal(ast::ExactNumberInfo::PrecisionAndScale(u64::from(*p), i64::from(*s))),
        other => return Err(Error::invalid("parameters", format!("a parameter of type {} cannot be bound here", other.data_type()))),
    })
}
