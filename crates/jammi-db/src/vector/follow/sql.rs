//! The SQL form of a following vector table:
//!
//! ```sql
//! CREATE TABLE vectors.public.docs_vec WITH (follows = 'mutable.public.docs', embed = 'body', model = 'minilm:v1')
//! ```
//!
//! with optional `metric`, `precision`, `m`, `ef_construction` and `oversample`, as for
//! `jammi vectors follow`.

use datafusion::sql::sqlparser::ast::{self, CreateTableOptions, Expr, SqlOption, Value};

use super::FollowSpec;
use crate::error::{Error, Result};

const KEYS: &str = "follows, embed, model, metric, precision, m, ef_construction, oversample";

fn bad(name: &str, message: impl std::fmt::Display) -> Error {
    Error::invalid("CREATE TABLE", format!("CREATE TABLE vectors.public.{name}: {message}"))
}

/// The option's value as text ('quoted' strings and bare numbers or identifiers).
fn text_of(name: &str, key: &str, value: &Expr) -> Result<String> {
    match value {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Ok(s.clone()),
            Value::Number(n, _) => Ok(n.clone()),
            other => Err(bad(name, format!("option {key} = {other}: give a 'quoted' value"))),
        },
        Expr::Identifier(id) => Ok(id.value.clone()),
        other => Err(bad(name, format!("option {key} = {other}: give a 'quoted' value"))),
    }
}

fn number(name: &str, key: &str, text: &str) -> Result<usize> {
    text.parse().map_err(|_| bad(name, format!("option {key} = '{text}' is not a whole number")))
}

/// What `CREATE TABLE vectors.public.NAME WITH (...)` asks for.
pub(crate) fn spec_from_sql(create: &ast::CreateTable, name: &str) -> Result<FollowSpec> {
    if !create.columns.is_empty() || create.query.is_some() {
        return Err(bad(name, "a vector table's columns come from the table it follows; write CREATE TABLE vectors.public.NAME WITH (follows = 'mutable.public.T', embed = 'COLUMN', model = 'NAME:VERSION')"));
    }
    let options: &[SqlOption] = match &create.table_options {
        CreateTableOptions::With(o) | CreateTableOptions::Options(o) => o,
        _ => &[],
    };
    let (mut follows, mut embed, mut model) = (None, None, None);
    let mut rest = Vec::new();
    for option in options {
        let SqlOption::KeyValue { key, value } = option else {
            return Err(bad(name, format!("option {option} is not KEY = 'value'; the options are {KEYS}")));
        };
        let key = key.value.to_lowercase();
        let value = text_of(name, &key, value)?;
        match key.as_str() {
            "follows" => follows = Some(value),
            "embed" => embed = Some(value),
            "model" => model = Some(value),
            "metric" | "precision" | "m" | "ef_construction" | "oversample" => rest.push((key, value)),
            other => return Err(bad(name, format!("unknown option '{other}'; the options are {KEYS}"))),
        }
    }
    let (Some(follows), Some(embed), Some(model)) = (follows, embed, model) else {
        return Err(bad(name, "give follows = 'mutable.public.T', embed = 'COLUMN' and model = 'NAME:VERSION' (vector tables from files are imported with `jammi vectors import`)"));
    };
    let (model, version) = model.split_once([':', '@']).ok_or_else(|| bad(name, format!("model = '{model}': give NAME:VERSION or NAME@ALIAS")))?;
    let mut spec = FollowSpec::new(name, follows, embed, model, version);
    for (key, value) in rest {
        match key.as_str() {
            "metric" => spec.metric = value.parse()?,
            "precision" => spec.precision = value.parse()?,
            "m" => spec.m = number(name, &key, &value)?,
            "ef_construction" => spec.ef_construction = number(name, &key, &value)?,
            _ => spec.oversample = Some(number(name, &key, &value)?),
        }
    }
    Ok(spec)
}
