//! The SQL forms of a new vector table, `CREATE TABLE vectors.public.NAME WITH (...)`:
//!
//! ```sql
//! -- from a query's rows, embedding a text column with a registered model
//! CREATE TABLE vectors.public.docs WITH (id_column = 'id', embed = 'description', model = 'minilm:v1')
//!   AS SELECT id, description, section FROM files.public.packages;
//! -- from a query's rows that carry their vectors
//! CREATE TABLE vectors.public.docs WITH (id_column = 'id', vector_column = 'embedding')
//!   AS SELECT * FROM files.public.embedded;
//! -- following a mutable table, kept current by workers
//! CREATE TABLE vectors.public.docs_vec WITH (follows = 'mutable.public.docs', embed = 'body', model = 'minilm:v1');
//! ```
//!
//! with the optional `metric`, `precision`, `m`, `ef_construction`, `oversample` and
//! `text_columns` (`'description, tag:raw'`: full-text indexes) of `jammi vectors import` /
//! `vectors follow`.

use datafusion::sql::sqlparser::ast::{self, CreateTableOptions, Expr, SqlOption, Value};

use super::follow::FollowSpec;
use super::{EmbedColumn, ImportSpec};
use crate::error::{Error, Result};

const KEYS: &str = "follows, id_column, vector_column, embed, model, text_columns, metric, precision, m, ef_construction, oversample";

/// What `CREATE TABLE vectors.public.NAME WITH (...) [AS query]` asks for.
#[derive(Debug)]
pub(crate) enum CreateVectorTable<'a> {
    /// `WITH (follows = …)`: a table that follows a mutable table.
    Follow(FollowSpec),
    /// `WITH (...) AS query`: a table imported from the query's rows (the spec's `url` is
    /// unused).
    FromQuery(ImportSpec, &'a ast::Query),
}

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

/// The index options both forms share.
#[derive(Default)]
struct IndexOptions(Vec<(String, String)>);

impl IndexOptions {
    /// Set the fields the options name (both specs have the same index fields).
    fn apply(self, name: &str, metric: &mut super::Metric, precision: &mut super::Precision, m: &mut usize, ef_construction: &mut usize, oversample: &mut Option<usize>) -> Result<()> {
        // Without a precision, the metric's default (int8 for cosine, f32 otherwise).
        if !self.0.iter().any(|(k, _)| k == "precision") {
            if let Some((_, value)) = self.0.iter().find(|(k, _)| k == "metric") {
                *precision = super::Precision::default_for(value.parse()?);
            }
        }
        for (key, value) in self.0 {
            match key.as_str() {
                "metric" => *metric = value.parse()?,
                "precision" => *precision = value.parse()?,
                "m" => *m = number(name, &key, &value)?,
                "ef_construction" => *ef_construction = number(name, &key, &value)?,
                _ => *oversample = Some(number(name, &key, &value)?),
            }
        }
        Ok(())
    }
}

/// Read the statement; nothing is created here, and every refusal names the fix.
pub(crate) fn parse<'a>(create: &'a ast::CreateTable, name: &str) -> Result<CreateVectorTable<'a>> {
    if !create.columns.is_empty() {
        return Err(bad(name, "a vector table's columns come from its rows; write CREATE TABLE vectors.public.NAME WITH (id_column = 'id', embed = 'COLUMN', model = 'NAME:VERSION') AS SELECT …, or WITH (follows = 'mutable.public.T', embed = 'COLUMN', model = 'NAME:VERSION')"));
    }
    let options: &[SqlOption] = match &create.table_options {
        CreateTableOptions::With(o) | CreateTableOptions::Options(o) => o,
        _ => &[],
    };
    let (mut follows, mut id_column, mut vector_column, mut embed, mut model) = (None, None, None, None, None);
    let mut text_columns = Vec::new();
    let mut index = IndexOptions::default();
    for option in options {
        let SqlOption::KeyValue { key, value } = option else {
            return Err(bad(name, format!("option {option} is not KEY = 'value'; the options are {KEYS}")));
        };
        let key = key.value.to_lowercase();
        let value = text_of(name, &key, value)?;
        match key.as_str() {
            "follows" => follows = Some(value),
            "id_column" => id_column = Some(value),
            "vector_column" => vector_column = Some(value),
            "embed" => embed = Some(value),
            "model" => model = Some(value),
            "text_columns" => {
                text_columns = value.split(',').map(super::TextIndexColumn::parse).collect::<Result<Vec<_>>>()?;
            }
            "metric" | "precision" | "m" | "ef_construction" | "oversample" => index.0.push((key, value)),
            other => return Err(bad(name, format!("unknown option '{other}'; the options are {KEYS}"))),
        }
    }
    let embed = match (embed, model) {
        (None, None) => None,
        (Some(column), Some(model)) => {
            let (model, version) = model.split_once([':', '@']).ok_or_else(|| bad(name, format!("model = '{model}': give NAME:VERSION or NAME@ALIAS")))?;
            Some(EmbedColumn { column, model: model.into(), version: version.into() })
        }
        (Some(_), None) => return Err(bad(name, "embed = '…' needs model = 'NAME:VERSION', the registered embedding model to embed it with")),
        (None, Some(_)) => return Err(bad(name, "model = '…' needs embed = 'COLUMN', the text column to embed")),
    };
    match (follows, create.query.as_deref()) {
        (Some(_), Some(_)) => Err(bad(name, "a following table takes its rows from the table it follows; drop the AS SELECT …")),
        (Some(follows), None) => {
            if let Some(key) = [("id_column", &id_column), ("vector_column", &vector_column)].iter().find(|(_, v)| v.is_some()).map(|(k, _)| k) {
                return Err(bad(name, format!("{key} does not apply to a following table: its ids are the key of the table it follows and its vectors are the embedded column")));
            }
            let embed = embed.ok_or_else(|| bad(name, "a following table embeds a text column: give embed = 'COLUMN' and model = 'NAME:VERSION'"))?;
            let mut spec = FollowSpec::new(name, follows, embed.column, embed.model, embed.version);
            spec.text_columns = text_columns;
            index.apply(name, &mut spec.metric, &mut spec.precision, &mut spec.m, &mut spec.ef_construction, &mut spec.oversample)?;
            Ok(CreateVectorTable::Follow(spec))
        }
        (None, Some(query)) => {
            let mut spec = ImportSpec::new(name, "", id_column.unwrap_or_else(|| "id".into()), vector_column.unwrap_or_else(|| "embedding".into()));
            spec.embed = embed;
            spec.text_columns = text_columns;
            index.apply(name, &mut spec.metric, &mut spec.precision, &mut spec.m, &mut spec.ef_construction, &mut spec.oversample)?;
            Ok(CreateVectorTable::FromQuery(spec, query))
        }
        (None, None) => Err(bad(
            name,
            "give the rows: WITH (id_column = 'id', embed = 'COLUMN', model = 'NAME:VERSION') AS SELECT … (or vector_column = 'COLUMN' for rows that carry vectors), or follow a mutable table: WITH (follows = 'mutable.public.T', embed = 'COLUMN', model = 'NAME:VERSION')",
        )),
    }
}
