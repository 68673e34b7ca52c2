//! Full-text indexes on mutable tables: `CREATE INDEX … ON mutable.public.T USING fulltext
//! (col, …)`, searched with `text_search('mutable.public.T', 'words', k [, filter])`.
//!
//! The index lives in the table's own database, beside its storage table, in two tables:
//! each row's distinct terms per column (`…__fts_terms`) and each row's length per column
//! (`…__fts_docs`). Every `INSERT`, `UPDATE` and `DELETE` rewrites the terms of the rows it
//! changes **in the same transaction** as the rows, so the index commits and rolls back with
//! them and a transaction's searches see its own writes. A search reads the BM25 statistics
//! of the rows the caller may see (the tenant's and the shared ones) from those tables,
//! fetches the rows holding a query term, and scores them with those statistics
//! (`jammi_text::search_with_statistics`): the scores are those of a full-text index over
//! the whole visible table.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float32Array, Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::sql::sqlparser::ast;
use jammi_text::{Analyzer, TextColumn};
use sqlx::{AnyConnection, Row};

use super::spec::{IndexSpec, TableSpec};
use super::store::Select;
use super::types::{ColumnType, StorageClass, Stored};
use super::MutableTable;
use crate::catalog::{BackendKind, Catalog};
use crate::change::Change;
use crate::error::{Error, Result};
use crate::names::quote_ident as quote;
use crate::tenant::TenantScope;
use crate::txn::WriteTxn;

/// The index method name in `CREATE INDEX … USING fulltext`.
pub const METHOD: &str = "fulltext";

/// Most candidate rows one search scores: mutable tables are small; a query matching more
/// is refused with the fix rather than loaded whole.
const MAX_CANDIDATES: usize = 200_000;

/// Bind parameters per statement (under both backends' limits).
const BINDS_PER_STATEMENT: usize = 2_000;

fn terms_table(storage: &str) -> String {
    format!("{storage}__fts_terms")
}

fn docs_table(storage: &str) -> String {
    format!("{storage}__fts_docs")
}

fn db_error(e: sqlx::Error) -> Error {
    Error::from_sqlx("the catalog database", &e)
}

/// The table's full-text index, if it has one.
pub fn index_of(spec: &TableSpec) -> Option<&IndexSpec> {
    spec.indexes.iter().find(|i| i.fulltext.is_some())
}

/// The index's columns as the text analyzer sees them.
pub fn columns_of(index: &IndexSpec) -> Vec<TextColumn> {
    let analyzers = index.fulltext.clone().unwrap_or_default();
    index
        .columns
        .iter()
        .enumerate()
        .map(|(i, name)| TextColumn { name: name.clone(), analyzer: analyzers.get(i).and_then(|a| a.parse().ok()).unwrap_or_default() })
        .collect()
}

/// Check `CREATE INDEX … USING fulltext` against the table and give the index it makes.
pub(crate) fn plan(display: &str, spec: &TableSpec, create: &ast::CreateIndex, name: String, columns: Vec<String>) -> Result<IndexSpec> {
    let refuse = |message: String| Error::invalid("CREATE INDEX", format!("CREATE INDEX {name} ON {display} USING fulltext: {message}"));
    if create.unique {
        return Err(refuse("a full-text index cannot be UNIQUE".into()));
    }
    if let Some(existing) = index_of(spec) {
        return Err(refuse(format!("the table already has a full-text index, '{}'; one index covers several columns: USING fulltext (a, b)", existing.name)));
    }
    if spec.primary_key.len() != 1 || !matches!(spec.column(&spec.primary_key[0]).map(|(_, c)| c.ty), Some(ColumnType::SmallInt | ColumnType::Int | ColumnType::BigInt | ColumnType::Text)) {
        return Err(refuse("the table needs a one-column integer or text PRIMARY KEY (the index names rows by it)".into()));
    }
    for column in &columns {
        if spec.column(column).map(|(_, c)| c.ty) != Some(ColumnType::Text) {
            return Err(refuse(format!("'{column}' is not a text column")));
        }
    }
    let mut analyzer = Analyzer::default();
    for option in &create.with {
        let ast::Expr::BinaryOp { left, op: ast::BinaryOperator::Eq, right } = option else {
            return Err(refuse(format!("option {option} is not analyzer = 'NAME'")));
        };
        let value = match right.as_ref() {
            ast::Expr::Value(v) => match &v.value {
                ast::Value::SingleQuotedString(s) => s.clone(),
                other => other.to_string(),
            },
            ast::Expr::Identifier(id) => id.value.clone(),
            other => other.to_string(),
        };
        match left.to_string().to_lowercase().as_str() {
            "analyzer" => analyzer = value.parse().map_err(refuse)?,
            other => return Err(refuse(format!("unknown option '{other}'; the option is analyzer = 'english' (default), 'simple', 'raw' or a language"))),
        }
    }
    let analyzers = vec![analyzer.to_string(); columns.len()];
    Ok(IndexSpec { name, columns, unique: false, fulltext: Some(analyzers) })
}

/// Create the index's tables and index the rows already there, on `conn` (inside the
/// `CREATE INDEX` transaction).
pub(crate) async fn create(conn: &mut AnyConnection, kind: BackendKind, storage: &str, spec: &TableSpec, index: &IndexSpec) -> Result<()> {
    let integer = kind.column_type(StorageClass::Integer);
    let (terms, docs) = (terms_table(storage), docs_table(storage));
    for sql in [
        format!("CREATE TABLE {} (tenant TEXT NOT NULL, row_key TEXT NOT NULL, field {integer} NOT NULL, term TEXT NOT NULL, PRIMARY KEY (tenant, row_key, field, term))", quote(&terms)),
        format!("CREATE INDEX {} ON {} (term, tenant)", quote(&format!("{terms}_by_term")), quote(&terms)),
        format!("CREATE TABLE {} (tenant TEXT NOT NULL, row_key TEXT NOT NULL, field {integer} NOT NULL, length {integer} NOT NULL, PRIMARY KEY (tenant, row_key, field))", quote(&docs)),
    ] {
        sqlx::query(&sql).execute(&mut *conn).await.map_err(db_error)?;
    }
    // Every row there now: tenant, key, the indexed columns.
    let key = spec.key_positions()[0];
    let text_positions: Vec<usize> = index.columns.iter().filter_map(|c| spec.column(c).map(|(i, _)| i)).collect();
    let mut select = Select { columns: vec![None, Some(key)], conditions: Vec::new(), binds: Vec::new(), limit: None };
    select.columns.extend(text_positions.iter().map(|&i| Some(i)));
    let mut fields = vec![Field::new("tenant", DataType::Utf8, false), Field::new("key", spec.columns[key].ty.arrow_type(), true)];
    fields.extend(text_positions.iter().map(|&i| Field::new(&spec.columns[i].name, DataType::Utf8, true)));
    let rows = select.fetch(conn, storage, spec, &Arc::new(Schema::new(fields))).await?;
    let keys = cast(rows.column(1), &DataType::Utf8).map_err(Error::internal)?;
    let columns = columns_of(index);
    for row in 0..rows.num_rows() {
        let texts: Vec<Option<String>> = (2..rows.num_columns()).map(|c| text_at(rows.column(c), row)).collect();
        write_row(conn, storage, &columns, &rows.column(0).as_string::<i32>().value(row).to_string(), keys.as_string::<i32>().value(row), &texts).await?;
    }
    Ok(())
}

fn text_at(array: &ArrayRef, row: usize) -> Option<String> {
    array.is_valid(row).then(|| array.as_string::<i32>().value(row).to_string())
}

/// Drop the index's tables (with their table).
pub(crate) async fn drop(conn: &mut AnyConnection, storage: &str) -> Result<()> {
    for table in [terms_table(storage), docs_table(storage)] {
        sqlx::query(&format!("DROP TABLE IF EXISTS {}", quote(&table))).execute(&mut *conn).await.map_err(db_error)?;
    }
    Ok(())
}

/// Index one row: its length and distinct terms per column.
async fn write_row(conn: &mut AnyConnection, storage: &str, columns: &[TextColumn], tenant: &str, key: &str, texts: &[Option<String>]) -> Result<()> {
    let mut terms: Vec<(i64, String)> = Vec::new();
    for (field, (column, text)) in columns.iter().zip(texts).enumerate() {
        let (column_terms, length) = jammi_text::analyze(&column.analyzer, text.as_deref().unwrap_or(""));
        sqlx::query(&format!("INSERT INTO {} (tenant, row_key, field, length) VALUES ($1, $2, $3, $4)", quote(&docs_table(storage))))
            .bind(tenant.to_string())
            .bind(key.to_string())
            .bind(field as i64)
            .bind(length as i64)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        terms.extend(column_terms.into_iter().map(|t| (field as i64, t)));
    }
    for chunk in terms.chunks(BINDS_PER_STATEMENT / 4) {
        let values: Vec<String> = (0..chunk.len()).map(|i| format!("(${}, ${}, ${}, ${})", 4 * i + 1, 4 * i + 2, 4 * i + 3, 4 * i + 4)).collect();
        let sql = format!("INSERT INTO {} (tenant, row_key, field, term) VALUES {}", quote(&terms_table(storage)), values.join(", "));
        let mut query = sqlx::query(&sql);
        for (field, term) in chunk {
            query = query.bind(tenant.to_string()).bind(key.to_string()).bind(*field).bind(term.clone());
        }
        query.execute(&mut *conn).await.map_err(db_error)?;
    }
    Ok(())
}

async fn remove_row(conn: &mut AnyConnection, storage: &str, tenant: &str, key: &str) -> Result<()> {
    for table in [terms_table(storage), docs_table(storage)] {
        sqlx::query(&format!("DELETE FROM {} WHERE tenant = $1 AND row_key = $2", quote(&table))).bind(tenant.to_string()).bind(key.to_string()).execute(&mut *conn).await.map_err(db_error)?;
    }
    Ok(())
}

/// The key of a row image (a JSON object) as the index names it.
fn key_text(row: &serde_json::Value, key_column: &str) -> Option<String> {
    match row.get(key_column)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Bring the index in step with a statement's `changes`, inside its transaction.
pub(crate) async fn apply(txn: &WriteTxn, table: &Arc<MutableTable>, changes: &[Change]) -> Result<()> {
    let Some(index) = index_of(&table.spec) else { return Ok(()) };
    if changes.is_empty() {
        return Ok(());
    }
    let columns = columns_of(index);
    let key_column = table.spec.primary_key[0].clone();
    let parse = |image: &Option<String>| -> Result<Option<serde_json::Value>> {
        image.as_deref().map(|text| serde_json::from_str(text).map_err(Error::internal)).transpose()
    };
    let mut work = Vec::with_capacity(changes.len());
    for change in changes {
        let (old, new) = (parse(&change.old)?, parse(&change.new)?);
        let old_key = old.as_ref().and_then(|o| key_text(o, &key_column));
        let new_row = new.as_ref().and_then(|n| {
            let key = key_text(n, &key_column)?;
            let texts: Vec<Option<String>> = columns.iter().map(|c| n.get(&c.name).and_then(|v| v.as_str().map(str::to_string))).collect();
            Some((key, texts))
        });
        work.push((change.tenant.clone(), old_key, new_row));
    }
    let storage = table.storage.clone();
    txn.with(move |conn| {
        Box::pin(async move {
            for (tenant, old_key, new_row) in work {
                if let Some(key) = old_key {
                    remove_row(conn, &storage, &tenant, &key).await?;
                }
                if let Some((key, texts)) = new_row {
                    remove_row(conn, &storage, &tenant, &key).await?;
                    write_row(conn, &storage, &columns, &tenant, &key, &texts).await?;
                }
            }
            Ok(())
        })
    })
    .await
}

/// The rows a search in `scope` may read, as a condition on tenant column `column` with
/// `mark` for its placeholder: the tenant's own and the shared ones.
fn tenant_condition(scope: TenantScope, column: &str, mark: &str) -> (Option<String>, Vec<String>) {
    match scope {
        TenantScope::Admin => (None, vec![]),
        TenantScope::Unbound => (Some(format!("{column} = ''")), vec![]),
        TenantScope::Tenant(t) => (Some(format!("{column} IN ({mark}, '')")), vec![t.to_string()]),
    }
}

/// A search of `table`'s full-text index, as the caller in `scope` sees the table (inside
/// `txn` when one is open: its own writes included).
pub(crate) async fn search(catalog: &Catalog, txn: Option<Arc<WriteTxn>>, scope: TenantScope, table: Arc<MutableTable>, query: String, k: usize, filter: Option<String>) -> Result<RecordBatch> {
    let index = index_of(&table.spec).ok_or_else(|| no_index(&table.name))?;
    let columns = columns_of(index);
    let terms = jammi_text::query_terms(&columns, &query).map_err(|e| crate::vector::text_error(&format!("mutable.public.{}", table.name), e))?;
    let found = match txn {
        Some(txn) => {
            let (table, columns, terms) = (Arc::clone(&table), columns.clone(), terms.clone());
            txn.with(move |conn| Box::pin(async move { candidates(conn, scope, &table, &columns, &terms).await })).await?
        }
        None => {
            let mut conn = catalog.pool().acquire().await.map_err(db_error)?;
            candidates(&mut conn, scope, &table, &columns, &terms).await?
        }
    };
    let (rows, statistics) = found;
    score(&table, &columns, rows, statistics, &query, k, filter.as_deref()).await
}

fn no_index(name: &str) -> Error {
    Error::invalid(
        "text_search",
        format!("mutable.public.{name} has no full-text index; add one with CREATE INDEX {name}_text ON mutable.public.{name} USING fulltext (COLUMN)"),
    )
}

/// `sql` with the tenant's value, then `terms`, bound.
fn bound<'q>(sql: &'q str, tenant: &[String], terms: &[String]) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let mut query = sqlx::query(sql);
    for value in tenant.iter().chain(terms) {
        query = query.bind(value.clone());
    }
    query
}

/// The statistics of the visible rows and the visible rows holding a query term.
async fn candidates(conn: &mut AnyConnection, scope: TenantScope, table: &MutableTable, columns: &[TextColumn], terms: &[(usize, String)]) -> Result<(RecordBatch, jammi_text::Statistics)> {
    // The tenant's placeholder is $1 where there is one; the terms follow it.
    let (condition, tenant_binds) = tenant_condition(scope, "tenant", "$1");
    let (terms_t, docs_t) = (quote(&terms_table(&table.storage)), quote(&docs_table(&table.storage)));
    let mut statistics = jammi_text::Statistics { documents: 0, tokens: vec![0; columns.len()], doc_freq: HashMap::new() };
    let sql = format!(
        "SELECT field, count(*), CAST(sum(length) AS BIGINT) FROM {docs_t}{} GROUP BY field",
        condition.as_ref().map(|c| format!(" WHERE {c}")).unwrap_or_default()
    );
    let mut q = sqlx::query(&sql);
    for t in &tenant_binds {
        q = q.bind(t.clone());
    }
    for row in q.fetch_all(&mut *conn).await.map_err(db_error)? {
        let (field, count, tokens): (i64, i64, Option<i64>) = (row.try_get(0).map_err(db_error)?, row.try_get(1).map_err(db_error)?, row.try_get(2).map_err(db_error)?);
        if field == 0 {
            statistics.documents = count as u64;
        }
        if let Some(slot) = statistics.tokens.get_mut(field as usize) {
            *slot = tokens.unwrap_or(0) as u64;
        }
    }
    let mut keys: Vec<String> = Vec::new();
    let distinct_terms: Vec<String> = {
        let mut t: Vec<String> = terms.iter().map(|(_, t)| t.clone()).collect();
        t.sort();
        t.dedup();
        t
    };
    for chunk in distinct_terms.chunks(BINDS_PER_STATEMENT) {
        let offset = tenant_binds.len();
        let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", offset + i + 1)).collect();
        let tenant = condition.as_ref().map(|c| format!(" AND {c}")).unwrap_or_default();
        let sql = format!("SELECT field, term, count(*) FROM {terms_t} WHERE term IN ({}){tenant} GROUP BY field, term", marks.join(", "));
        for row in bound(&sql, &tenant_binds, chunk).fetch_all(&mut *conn).await.map_err(db_error)? {
            let (field, term, count): (i64, String, i64) = (row.try_get(0).map_err(db_error)?, row.try_get(1).map_err(db_error)?, row.try_get(2).map_err(db_error)?);
            *statistics.doc_freq.entry((field as usize, term)).or_default() += count as u64;
        }
        let sql = format!("SELECT DISTINCT row_key FROM {terms_t} WHERE term IN ({}){tenant}", marks.join(", "));
        for row in bound(&sql, &tenant_binds, chunk).fetch_all(&mut *conn).await.map_err(db_error)? {
            keys.push(row.try_get(0).map_err(db_error)?);
        }
    }
    keys.sort();
    keys.dedup();
    if keys.len() > MAX_CANDIDATES {
        return Err(Error::invalid("text_search", format!("the query matches {} rows of mutable.public.{}, more than the {MAX_CANDIDATES} a search of a mutable table scores; use rarer words or +required ones", keys.len(), table.name)));
    }
    // The candidate rows, every column (the tenant's and shared ones).
    let spec = &table.spec;
    let key_position = spec.key_positions()[0];
    let key_type = spec.columns[key_position].ty;
    let schema = spec.schema();
    let mut batches = Vec::new();
    for chunk in keys.chunks(BINDS_PER_STATEMENT) {
        let mut select = Select { columns: (0..spec.columns.len()).map(Some).collect(), conditions: Vec::new(), binds: Vec::new(), limit: None };
        let (stored_condition, binds) = tenant_condition(scope, &quote(super::spec::TENANT_COLUMN), "$?");
        if let Some(c) = stored_condition {
            select.conditions.push(c);
            select.binds.extend(binds.into_iter().map(Stored::Text));
        }
        let mut binds = Vec::with_capacity(chunk.len());
        for key in chunk {
            binds.push(match key_type {
                ColumnType::SmallInt | ColumnType::Int | ColumnType::BigInt => Stored::Int(key.parse().map_err(|_| Error::internal(format!("full-text key '{key}' of an integer key")))?),
                _ => Stored::Text(key.clone()),
            });
        }
        select.conditions.push(format!("{} IN ({})", quote(&spec.columns[key_position].name), vec!["$?"; binds.len()].join(", ")));
        select.binds.extend(binds);
        batches.push(select.fetch(conn, &table.storage, spec, &schema).await?);
    }
    let rows = datafusion::arrow::compute::concat_batches(&schema, &batches).map_err(Error::internal)?;
    Ok((rows, statistics))
}

/// Apply the filter to the candidate rows, score them and build the result.
async fn score(table: &MutableTable, columns: &[TextColumn], rows: RecordBatch, statistics: jammi_text::Statistics, query: &str, k: usize, filter: Option<&str>) -> Result<RecordBatch> {
    let schema = crate::vector::text_search::text_result_schema(&table.spec.schema());
    let mut keep: Vec<u32> = (0..rows.num_rows() as u32).collect();
    if let (Some(filter), true) = (filter, rows.num_rows() > 0) {
        keep = filtered(&rows, filter).await?;
    }
    let texts: Vec<ArrayRef> = columns
        .iter()
        .map(|c| rows.column_by_name(&c.name).cloned().ok_or_else(|| Error::internal(format!("column {} missing", c.name))))
        .collect::<Result<_>>()?;
    let documents = keep.iter().map(|&row| {
        let values: Vec<Option<&str>> = texts.iter().map(|a| a.is_valid(row as usize).then(|| a.as_string::<i32>().value(row as usize))).collect();
        (u64::from(row), values)
    });
    let hits = jammi_text::search_with_statistics(columns, documents, query, k, &statistics).map_err(|e| crate::vector::text_error(&format!("mutable.public.{}", table.name), e))?;
    // Ties in score go to the smaller key, as for vector tables.
    let mut hits = hits;
    let key = rows.column(table.spec.key_positions()[0]).clone();
    hits.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| compare_keys(&key, a.0 as usize, b.0 as usize)));
    if hits.is_empty() {
        return Ok(RecordBatch::new_empty(schema));
    }
    let indices = UInt32Array::from_iter_values(hits.iter().map(|h| h.0 as u32));
    let mut out: Vec<ArrayRef> = rows.columns().iter().map(|c| take(c.as_ref(), &indices, None).map_err(Error::internal)).collect::<Result<_>>()?;
    out.push(Arc::new(Float32Array::from_iter_values(hits.iter().map(|h| h.1))));
    out.push(Arc::new(Int64Array::from_iter_values(1..=hits.len() as i64)));
    out.push(crate::vector::search::retrieved_by(hits.iter().map(|_| &["text"][..])));
    RecordBatch::try_new(schema, out).map_err(Error::internal)
}

fn compare_keys(keys: &ArrayRef, a: usize, b: usize) -> std::cmp::Ordering {
    if keys.data_type().is_integer() {
        if let Ok(ints) = cast(keys, &DataType::Int64) {
            let k = ints.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            return k.value(a).cmp(&k.value(b));
        }
    }
    match cast(keys, &DataType::Utf8) {
        Ok(text) => {
            let k = text.as_string::<i32>();
            k.value(a).cmp(k.value(b))
        }
        Err(_) => std::cmp::Ordering::Equal,
    }
}

/// Positions of the rows of `rows` that `filter` (a SQL predicate) accepts.
async fn filtered(rows: &RecordBatch, filter: &str) -> Result<Vec<u32>> {
    crate::security::limits::check_filter("filter", filter)?;
    let mut fields: Vec<Arc<Field>> = rows.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new("__jammi_row", DataType::UInt32, false)));
    let mut columns = rows.columns().to_vec();
    columns.push(Arc::new(UInt32Array::from_iter_values(0..rows.num_rows() as u32)));
    let with_rows = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(Error::internal)?;
    let ctx = datafusion::prelude::SessionContext::new();
    let frame = ctx.read_batch(with_rows)?;
    let predicate = frame.parse_sql_expr(filter).map_err(|e| Error::invalid("filter", format!("the filter '{filter}' is not a predicate over the table's columns: {e}")))?;
    let batches = frame.filter(predicate)?.select_columns(&["__jammi_row"])?.collect().await?;
    Ok(batches.iter().flat_map(|b| b.column(0).as_primitive::<datafusion::arrow::datatypes::UInt32Type>().values().to_vec()).collect())
}
