//! The arguments of the search table functions, checked and turned into requests:
//!
//! - `vector_search('t', vector_or_text, k [, filter [, ef]])`
//! - `text_search('t', 'words', k [, filter])`
//! - `hybrid_search('t', 'words', vector_or_text_or_NULL, k [, filter [, 'options']])`
//!
//! They are kept as expressions, so a prepared statement can bind `$n` parameters into
//! them at each execution; without parameters they are checked when the query is planned.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type, Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DataFusionError, ParamValues, Result as DfResult, ScalarValue};
use datafusion::logical_expr::Expr;

use super::fusion::HybridOptions;
use super::search::{result_schema, SearchRequest};
use super::text_search::{hybrid_result_schema, text_result_schema, HybridRequest, TextSearchRequest};

/// Which search function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SearchKind {
    Vector,
    Text,
    Hybrid,
}

impl SearchKind {
    pub(crate) fn function(self) -> &'static str {
        match self {
            SearchKind::Vector => "vector_search",
            SearchKind::Text => "text_search",
            SearchKind::Hybrid => "hybrid_search",
        }
    }

    fn usage(self) -> &'static str {
        match self {
            SearchKind::Vector => "vector_search takes (table name, query vector, k [, filter [, ef]])",
            SearchKind::Text => "text_search takes (table name, 'query words', k [, filter])",
            SearchKind::Hybrid => "hybrid_search takes (table name, 'query words', query vector or text or NULL, k [, filter [, 'options']])",
        }
    }

    fn arity(self) -> std::ops::RangeInclusive<usize> {
        match self {
            SearchKind::Vector => 3..=5,
            SearchKind::Text => 3..=4,
            SearchKind::Hybrid => 4..=6,
        }
    }

    /// The result schema for a table whose rows have `row_schema`.
    pub(crate) fn result_schema(self, row_schema: &Schema) -> SchemaRef {
        match self {
            SearchKind::Vector => result_schema(row_schema),
            SearchKind::Text => text_result_schema(row_schema),
            SearchKind::Hybrid => hybrid_result_schema(row_schema),
        }
    }
}

/// A checked request of any of the three functions.
#[derive(Debug, Clone)]
pub(crate) enum Query {
    Vector(SearchRequest),
    Text(TextSearchRequest),
    Hybrid(HybridRequest),
}

impl Query {
    pub(crate) fn k(&self) -> usize {
        match self {
            Query::Vector(r) => r.k,
            Query::Text(r) => r.k,
            Query::Hybrid(r) => r.k,
        }
    }

    pub(crate) fn filter(&self) -> Option<&str> {
        match self {
            Query::Vector(r) => r.filter.as_deref(),
            Query::Text(r) => r.filter.as_deref(),
            Query::Hybrid(r) => r.filter.as_deref(),
        }
    }
}

/// A bad argument, typed so that clients get SQLSTATE 22023 / HTTP 400.
pub(crate) fn invalid(kind: SearchKind, message: String) -> DataFusionError {
    DataFusionError::External(Box::new(crate::error::Error::invalid(kind.function(), message)))
}

/// What the arguments are checked against: the table as it was when the call was planned.
#[derive(Debug)]
pub(crate) struct SearchArgs {
    pub(crate) kind: SearchKind,
    pub(crate) name: String,
    pub(crate) dims: usize,
    /// The table records an embedding model, so a text may stand for the query vector.
    pub(crate) has_model: bool,
    /// The table's text columns (empty: no text index).
    pub(crate) text_columns: Vec<jammi_text::TextColumn>,
    pub(crate) exprs: Vec<Expr>,
}

impl SearchArgs {
    /// Check the argument count; the table name is the first argument.
    pub(crate) fn table_name(kind: SearchKind, exprs: &[Expr]) -> DfResult<String> {
        if !kind.arity().contains(&exprs.len()) {
            return Err(invalid(kind, format!("{}; got {} arguments", kind.usage(), exprs.len())));
        }
        const_string(&exprs[0]).ok_or_else(|| invalid(kind, format!("{}: the first argument is the table name as a string", kind.function())))
    }

    pub(crate) fn has_parameters(&self) -> bool {
        self.exprs.iter().any(contains_placeholder)
    }

    fn fail(&self, message: impl std::fmt::Display) -> DataFusionError {
        invalid(self.kind, format!("{}: {message}", self.kind.function()))
    }

    fn positive(&self, expr: &Expr, what: &str) -> DfResult<usize> {
        const_f64(expr).filter(|v| *v >= 1.0 && v.fract() == 0.0).map(|v| v as usize).ok_or_else(|| self.fail(format!("{what} must be a positive integer")))
    }

    /// An optional string argument: absent, NULL or '' mean none.
    fn optional_text(&self, index: usize, what: &str) -> DfResult<Option<String>> {
        let text = match self.exprs.get(index) {
            Some(Expr::Literal(v, _)) if v.is_null() => None,
            Some(e) => Some(const_string(e).ok_or_else(|| self.fail(format!("the {what} is a string")))?),
            None => None,
        };
        Ok(text.filter(|t| !t.trim().is_empty()))
    }

    fn text_query(&self, index: usize) -> DfResult<String> {
        let text = const_string(&self.exprs[index]).ok_or_else(|| self.fail("the text query is a string of words, e.g. 'fast compression'"))?;
        if self.text_columns.is_empty() {
            return Err(self.fail(format!(
                "'{}' has no text index; import it with --text-column COLUMN (SQL: CREATE TABLE vectors.public.NAME WITH (..., text_columns = 'COLUMN') AS SELECT …)",
                self.name
            )));
        }
        if text.len() <= crate::security::limits::MAX_QUERY_TEXT_BYTES {
            jammi_text::check_query(&self.text_columns, &text).map_err(|e| DataFusionError::External(Box::new(super::text::text_error(&self.name, e))))?;
        }
        Ok(text)
    }

    /// The vector argument: a vector, or a text to embed (`None` for NULL where allowed).
    fn vector_or_text(&self, index: usize) -> DfResult<(Option<Vec<f32>>, Option<String>)> {
        let expr = &self.exprs[index];
        if let Some(vector) = const_vector(expr) {
            if vector.len() != self.dims {
                return Err(self.fail(format!("the query vector has {} dimensions; '{}' has {}", vector.len(), self.name, self.dims)));
            }
            return Ok((Some(vector), None));
        }
        let text = match expr {
            Expr::Literal(v, _) if v.is_null() && self.kind == SearchKind::Hybrid => None,
            _ => match const_string(expr) {
                Some(text) if !text.trim_start().starts_with('[') => Some(text),
                _ => return Err(self.fail("the query vector is e.g. [0.1, 0.2] or '[0.1, 0.2]', or a text on a table with an embedding model")),
            },
        };
        if !self.has_model {
            return Err(self.fail(format!(
                "'{}' has no embedding model, so the query must be a vector such as [0.1, 0.2]; import the table with --embed COLUMN --model NAME to search it by meaning from text",
                self.name
            )));
        }
        Ok((None, text))
    }

    /// The request these arguments (all constants by now) describe.
    pub(crate) fn request(&self) -> DfResult<Query> {
        let query = match self.kind {
            SearchKind::Vector => {
                let k = self.positive(&self.exprs[2], "k")?;
                let mut request = match self.vector_or_text(1)? {
                    (Some(vector), _) => SearchRequest::new(vector, k),
                    (None, text) => SearchRequest::text(text.unwrap_or_default(), k),
                };
                request.filter = self.optional_text(3, "filter (a SQL predicate)")?;
                request.ef = match self.exprs.get(4) {
                    Some(Expr::Literal(v, _)) if v.is_null() => None,
                    Some(e) => Some(self.positive(e, "ef")?),
                    None => None,
                };
                request.check_limits().map_err(|e| DataFusionError::External(Box::new(e)))?;
                Query::Vector(request)
            }
            SearchKind::Text => {
                let mut request = TextSearchRequest::new(self.text_query(1)?, self.positive(&self.exprs[2], "k")?);
                request.filter = self.optional_text(3, "filter (a SQL predicate)")?;
                Query::Text(request)
            }
            SearchKind::Hybrid => {
                let mut request = HybridRequest::new(self.text_query(1)?, self.positive(&self.exprs[3], "k")?);
                (request.vector, request.semantic_text) = self.vector_or_text(2)?;
                request.filter = self.optional_text(4, "filter (a SQL predicate)")?;
                if let Some(options) = self.optional_text(5, "options")? {
                    request.options = HybridOptions::parse(&options).map_err(|e| DataFusionError::External(Box::new(e)))?;
                }
                Query::Hybrid(request)
            }
        };
        Ok(query)
    }

    /// The request with `params` in place of the placeholders.
    pub(crate) fn bind(&self, params: &ParamValues) -> DfResult<Query> {
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
        SearchArgs { kind: self.kind, name: self.name.clone(), dims: self.dims, has_model: self.has_model, text_columns: self.text_columns.clone(), exprs }.request()
    }
}

fn contains_placeholder(expr: &Expr) -> bool {
    expr.exists(|e| Ok(matches!(e, Expr::Placeholder(_)))).unwrap_or(false)
}

pub(crate) fn const_string(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)), _) => Some(s.clone()),
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
        Expr::ScalarFunction(f) if f.name() == "make_array" => f.args.iter().map(|a| const_f64(a).map(|v| v as f32)).collect(),
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
