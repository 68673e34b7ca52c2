//! `INSERT`, `UPDATE` and `DELETE` on mutable tables.
//!
//! Each statement takes the table's write lock, lets DataFusion compute what to write (the
//! rows of an `INSERT`'s `VALUES` or `SELECT` over any table; the key and new values of
//! every row an `UPDATE` or `DELETE` touches, `WHERE` subqueries included), and writes it in
//! the same transaction. Reads of mutable tables inside the statement go through the
//! transaction, so they see its own earlier writes and no one else's uncommitted ones.

use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array, RecordBatch};
use datafusion::arrow::compute::{cast_with_options, concat_batches, CastOptions};
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion::execution::context::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, AssignmentTarget, OnConflictAction, OnInsert, Statement, TableFactor};

use super::spec::TENANT_COLUMN;
use super::store::{self, WriteError};
use crate::names::quote_ident as quote;
use super::types::Stored;
use crate::txn::WriteTxn;
use super::types::ColumnType;
use super::{MutableTable, WRITE_CATALOG};
use crate::change::{self, Change};
use crate::change::rows_to_json;
use crate::error::{Error, Result};
use crate::context::EngineContext;
use super::MutableState;
use crate::tenant::TenantScope;

/// A write statement on one mutable table.
#[derive(Debug)]
pub enum Write<'a> {
    /// INSERT
    Insert(&'a ast::Insert),
    /// UPDATE
    Update(&'a ast::Update),
    /// DELETE
    Delete(&'a ast::Delete),
}

/// Run `write` on `mutable.public.NAME`: atomically, in the session's open transaction if
/// there is one (behind a savepoint, so a failed statement leaves the earlier ones), else in
/// its own. Returns the number of rows affected.
pub(crate) async fn run(engine: &dyn EngineContext, tables: &MutableState, scope: TenantScope, name: &str, write: Write<'_>) -> Result<u64> {
    let explicit = engine.open_transaction();
    let table = tables.require_in(scope, name, explicit.as_deref(), engine.ephemeral_id().as_deref())?;
    let txn = match &explicit {
        Some(t) => Arc::clone(t),
        None => tables.begin().await?,
    };
    if explicit.is_some() {
        execute(&txn, "SAVEPOINT jammi_statement").await?;
    }
    // Change feeds of this table get their events in the statement's own transaction.
    let feeds = tables.feeds_of(&table);
    // A full-text index is kept in step from the same row images.
    let fulltext = super::fulltext::index_of(&table.spec).is_some();
    let track = !feeds.is_empty() || fulltext;
    let result = async {
        txn.lock_table(&table.storage).await?;
        let ctx = engine.write_context(scope, &txn);
        let (count, changes) = match write {
            Write::Insert(i) => insert(engine, scope, &ctx, &txn, &table, i, track).await?,
            Write::Update(u) => update(&ctx, &txn, &table, u, track).await?,
            Write::Delete(d) => delete(&ctx, &txn, &table, d, track).await?,
        };
        if fulltext {
            super::fulltext::apply(&txn, &table, &changes).await?;
        }
        let woken = change::append(&txn, &feeds, &changes).await?;
        Ok::<_, Error>((count, woken))
    }
    .await;
    let wake = |woken: Vec<(Arc<dyn change::ChangeFeed>, i64)>| {
        for (feed, next) in woken {
            feed.wake(next);
        }
    };
    match (result, explicit.is_some()) {
        (Ok((n, woken)), false) => {
            txn.commit().await?;
            wake(woken);
            Ok(n)
        }
        (Err(e), false) => {
            let _ = txn.rollback().await;
            Err(e)
        }
        // Subscribers see these events once the transaction commits (their next poll).
        (Ok((n, _)), true) => execute(&txn, "RELEASE SAVEPOINT jammi_statement").await.map(|_| n),
        (Err(e), true) => {
            execute(&txn, "ROLLBACK TO SAVEPOINT jammi_statement").await?;
            Err(e)
        }
    }
}

async fn execute(txn: &WriteTxn, sql: &'static str) -> Result<()> {
    txn.with(move |conn| {
        Box::pin(async move { sqlx::query(sql).execute(conn).await.map(|_| ()).map_err(|e| Error::from_sqlx("the catalog database", &e)) })
    })
    .await
}

fn display(table: &MutableTable) -> String {
    format!("mutable.public.{}", table.name)
}

/// The tenant stamped on rows written in `scope` ('' = shared).
fn tenant_of(scope: TenantScope) -> String {
    scope.owner().map(|t| t.to_string()).unwrap_or_default()
}

/// Run a query through DataFusion and return its rows as one batch.
async fn query(ctx: &SessionContext, statement: Statement) -> Result<RecordBatch> {
    let plan = ctx.state().statement_to_plan(DfStatement::Statement(Box::new(statement))).await?;
    let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
    let batches = ctx.execute_logical_plan(plan).await?.collect().await?;
    concat_batches(&schema, &batches).map_err(Error::internal)
}

async fn query_sql(ctx: &SessionContext, sql: &str) -> Result<RecordBatch> {
    let statement = datafusion::sql::parser::DFParser::parse_sql(sql).map_err(|e| Error::Query(format!("SQL syntax error: {e}")))?;
    match statement.into_iter().next() {
        Some(DfStatement::Statement(s)) => query(ctx, *s).await,
        _ => Err(Error::invalid("SQL", format!("not a query: {sql}"))),
    }
}

/// Convert `array` to column `column`'s type, or say which value does not fit.
pub fn conform(array: &ArrayRef, ty: ColumnType, column: &str, table: &str) -> Result<ArrayRef> {
    let target = ty.arrow_type();
    let bad = |m: String| Error::invalid(column, format!("{table}: column '{column}' ({}): {m}", ty.sql_name()));
    if let (ColumnType::Vector { dims }, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) = (ty, array.data_type()) {
        let text = cast_with_options(array, &DataType::Utf8, &CastOptions::default()).map_err(|e| bad(e.to_string()))?;
        let text = text.as_string::<i32>();
        let mut flat = Vec::with_capacity(text.len() * dims as usize);
        let mut valid = Vec::with_capacity(text.len());
        for i in 0..text.len() {
            if text.is_null(i) {
                flat.extend(std::iter::repeat_n(0.0, dims as usize));
                valid.push(false);
                continue;
            }
            let v = crate::literal::parse_vector_text(text.value(i)).ok_or_else(|| bad(format!("'{}' is not a vector like [0.1, 0.2]", text.value(i))))?;
            if v.len() != dims as usize {
                return Err(bad(format!("the vector has {} dimensions, the column {dims}", v.len())));
            }
            flat.extend(v);
            valid.push(true);
        }
        let item = Arc::new(Field::new("item", DataType::Float32, true));
        let nulls = valid.iter().any(|v| !v).then(|| valid.into());
        return Ok(Arc::new(FixedSizeListArray::try_new(item, dims as i32, Arc::new(Float32Array::from(flat)), nulls).map_err(|e| bad(e.to_string()))?));
    }
    let out = if array.data_type() == &target {
        Arc::clone(array)
    } else {
        cast_with_options(array, &target, &CastOptions { safe: false, ..Default::default() }).map_err(|e| bad(format!("cannot store {} values: {e}", array.data_type())))?
    };
    if ty == ColumnType::Json {
        let text = out.as_string::<i32>();
        for i in 0..text.len() {
            if !text.is_null(i) {
                serde_json::from_str::<serde_json::Value>(text.value(i)).map_err(|e| bad(format!("'{}' is not valid JSON: {e}", text.value(i))))?;
            }
        }
    }
    Ok(out)
}

/// Evaluate a constant expression (a DEFAULT) as a stored value of `ty`.
pub(crate) async fn evaluate_constant(engine: &dyn EngineContext, scope: TenantScope, sql: &str, ty: ColumnType, column: &str) -> Result<Stored> {
    let ctx = engine.query_context(scope);
    let batch = query_sql(&ctx, &format!("SELECT {sql}")).await.map_err(|e| Error::invalid(column, format!("column '{column}': DEFAULT {sql}: {e}")))?;
    if batch.num_rows() != 1 {
        return Err(Error::invalid(column, format!("column '{column}': DEFAULT {sql} is not one value")));
    }
    let array = conform(batch.column(0), ty, column, "DEFAULT")?;
    ty.encode(&array, 0).map_err(|m| Error::invalid(column, format!("column '{column}': DEFAULT {sql}: {m}")))
}

/// Rows of `columns` (each conformed to its column) as stored values; NOT NULL enforced.
fn encode_rows(table: &MutableTable, columns: &[ArrayRef], column_ids: &[usize], rows: usize) -> Result<Vec<Vec<Stored>>> {
    for (array, &c) in columns.iter().zip(column_ids) {
        let spec = &table.spec.columns[c];
        if !spec.nullable && array.null_count() > 0 {
            let row = (0..array.len()).find(|r| array.is_null(*r)).unwrap_or(0);
            return Err(Error::invalid(spec.name.clone(), format!(
                "{}: column '{}' is NOT NULL, but row {} of the statement has NULL there; nothing was written",
                display(table),
                spec.name,
                row + 1
            )));
        }
    }
    let mut out = Vec::with_capacity(rows);
    for r in 0..rows {
        let mut row = Vec::with_capacity(columns.len());
        for (array, &c) in columns.iter().zip(column_ids) {
            let spec = &table.spec.columns[c];
            row.push(spec.ty.encode(array, r).map_err(|m| Error::invalid(spec.name.clone(), format!("{}: column '{}', row {}: {m}", display(table), spec.name, r + 1)))?);
        }
        out.push(row);
    }
    Ok(out)
}

fn duplicate(table: &MutableTable, e: WriteError) -> Error {
    match e {
        WriteError::Duplicate(columns) => {
            let what = if columns == table.spec.primary_key { "primary key".to_string() } else { "unique index".to_string() };
            Error::UniqueViolation { table: display(table), message: format!(
                "{}: duplicate key: another row already has this ({}) — {what}; nothing was written{}",
                display(table),
                columns.join(", "),
                if what == "primary key" { "; use INSERT ... ON CONFLICT to update or skip it" } else { "" }
            ) }
        }
        WriteError::Other(Error::Catalog { backend, message }) => Error::Catalog { backend, message: format!("{}: {message}; nothing was written", display(table)) },
        WriteError::Other(other) => other,
    }
}

fn column_position(table: &MutableTable, name: &str) -> Result<usize> {
    table
        .spec
        .column(name)
        .map(|(i, _)| i)
        .ok_or_else(|| Error::invalid(name, format!("{}: no column '{name}'; columns: {}", display(table), table.spec.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "))))
}

fn last_ident(name: &ast::ObjectName) -> String {
    name.0.last().and_then(|p| p.as_ident()).map(|i| i.value.clone()).unwrap_or_default()
}

/// Each row of `columns` (all of the table's, in order) and its key as JSON objects.
pub(super) fn row_images(table: &MutableTable, columns: Vec<ArrayRef>) -> Result<(Vec<String>, Vec<String>)> {
    let batch = RecordBatch::try_new(table.spec.schema(), columns).map_err(Error::internal)?;
    let key = batch.project(&table.spec.key_positions()).map_err(Error::internal)?;
    Ok((rows_to_json(&batch)?, rows_to_json(&key)?))
}

#[allow(clippy::too_many_arguments)]
async fn insert(
    engine: &dyn EngineContext,
    scope: TenantScope,
    ctx: &SessionContext,
    txn: &WriteTxn,
    table: &Arc<MutableTable>,
    insert: &ast::Insert,
    track: bool,
) -> Result<(u64, Vec<Change>)> {
    let source = insert
        .source
        .as_ref()
        .ok_or_else(|| Error::invalid("INSERT", format!("INSERT INTO {}: give VALUES (...) or a SELECT", display(table))))?;
    let batch = query(ctx, Statement::Query(source.clone())).await?;
    let targets: Vec<usize> = if insert.columns.is_empty() {
        (0..table.spec.columns.len()).collect()
    } else {
        insert.columns.iter().map(|c| column_position(table, &last_ident(c))).collect::<Result<_>>()?
    };
    if batch.num_columns() != targets.len() {
        return Err(Error::invalid("INSERT", format!(
            "INSERT INTO {}: {} values per row for {} columns",
            display(table),
            batch.num_columns(),
            targets.len()
        )));
    }
    let rows = batch.num_rows();
    let mut columns = Vec::with_capacity(table.spec.columns.len());
    for (i, spec) in table.spec.columns.iter().enumerate() {
        let array = match targets.iter().position(|t| *t == i) {
            Some(pos) => conform(batch.column(pos), spec.ty, &spec.name, &display(table))?,
            None => match &spec.default {
                Some(default) => {
                    let value = evaluate_constant(engine, scope, default, spec.ty, &spec.name).await?;
                    let one = spec.ty.decode(vec![value]).map_err(Error::Query)?;
                    let indices = datafusion::arrow::array::UInt32Array::from(vec![0u32; rows]);
                    datafusion::arrow::compute::take(&one, &indices, None).map_err(Error::internal)?
                }
                None => new_null_array(&spec.ty.arrow_type(), rows),
            },
        };
        columns.push(array);
    }
    let all: Vec<usize> = (0..table.spec.columns.len()).collect();
    let stored = encode_rows(table, &columns, &all, rows)?;
    let tenant = tenant_of(scope);
    let images = if track { Some(row_images(table, columns.clone())?) } else { None };
    let row_tenant = tenant.clone();
    let inserted = |rows: &[usize]| -> Vec<Change> {
        images
            .as_ref()
            .map(|(new, keys)| rows.iter().map(|&r| Change { op: "insert", tenant: row_tenant.clone(), key: keys[r].clone(), new: Some(new[r].clone()), old: None }).collect())
            .unwrap_or_default()
    };
    match &insert.on {
        None => {
            let n = write_insert(txn, table, tenant, stored, false).await?;
            Ok((n, inserted(&(0..rows).collect::<Vec<_>>())))
        }
        Some(OnInsert::OnConflict(on)) => {
            if let Some(ast::ConflictTarget::Columns(cols)) = &on.conflict_target {
                let named: Vec<String> = cols.iter().map(|c| c.value.clone()).collect();
                if named != table.spec.primary_key {
                    return Err(Error::invalid("ON CONFLICT", format!(
                        "INSERT INTO {}: ON CONFLICT must name the primary key ({})",
                        display(table),
                        table.spec.primary_key.join(", ")
                    )));
                }
            }
            match &on.action {
                OnConflictAction::DoNothing if !track => Ok((write_insert(txn, table, tenant, stored, true).await?, Vec::new())),
                OnConflictAction::DoNothing => {
                    // Row by row, so the feed knows which rows went in.
                    let mut written = Vec::new();
                    for (r, row) in stored.into_iter().enumerate() {
                        if write_insert(txn, table, tenant.clone(), vec![row], true).await? == 1 {
                            written.push(r);
                        }
                    }
                    Ok((written.len() as u64, inserted(&written)))
                }
                OnConflictAction::DoUpdate(update) => {
                    let (n, new_rows, mut changes) = super::upsert::run(ctx, engine.catalog(), txn, table, tenant, &columns, stored, update, track).await?;
                    let mut all = inserted(&new_rows);
                    all.append(&mut changes);
                    Ok((n, all))
                }
            }
        }
        Some(other) => Err(Error::unsupported(format!("INSERT INTO {}: '{other}' is not supported; use ON CONFLICT (key) DO ...", display(table)))),
    }
}

pub(super) async fn write_insert(txn: &WriteTxn, table: &Arc<MutableTable>, tenant: String, rows: Vec<Vec<Stored>>, skip_conflicts: bool) -> Result<u64> {
    let (t, kind) = (Arc::clone(table), txn.kind());
    txn.with(move |conn| {
        Box::pin(async move { store::insert(conn, kind, &t.storage, &t.spec, &tenant, &rows, skip_conflicts).await.map_err(|e| duplicate(&t, e)) })
    })
    .await
}

/// What an UPDATE or DELETE touches: `SELECT tenant, key..., extra... FROM <writable rows>
/// AS alias WHERE selection`, planned by DataFusion.
/// With `old`, every column of the row follows, as it was before the statement.
async fn touched(ctx: &SessionContext, table: &MutableTable, relation: &TableFactor, extra: &[String], selection: Option<&ast::Expr>, old: bool) -> Result<RecordBatch> {
    let alias = match relation {
        TableFactor::Table { alias: Some(a), .. } => a.name.to_string(),
        _ => quote(&table.name),
    };
    let mut items = vec![quote(TENANT_COLUMN)];
    items.extend(table.spec.primary_key.iter().map(|k| format!("{alias}.{}", quote(k))));
    items.extend(extra.iter().cloned());
    if old {
        items.extend(table.spec.columns.iter().enumerate().map(|(i, c)| format!("{alias}.{} AS jammi_old_{i}", quote(&c.name))));
    }
    let mut sql = format!("SELECT {} FROM {WRITE_CATALOG}.public.{} AS {alias}", items.join(", "), quote(&table.name));
    if let Some(selection) = selection {
        sql.push_str(&format!(" WHERE {selection}"));
    }
    query_sql(ctx, &sql).await
}

/// The tenant stamped on row `row` of a batch whose first column is the tenant column.
pub(super) fn row_tenant(batch: &RecordBatch, row: usize) -> String {
    batch.column(0).as_string_opt::<i32>().map(|a| a.value(row).to_string()).unwrap_or_default()
}

fn keys_of(batch: &RecordBatch, table: &MutableTable, row: usize) -> Result<(String, Vec<Stored>)> {
    let tenant = batch.column(0).as_string::<i32>().value(row).to_string();
    let mut key = Vec::with_capacity(table.spec.primary_key.len());
    for (i, k) in table.spec.key_positions().into_iter().enumerate() {
        let spec = &table.spec.columns[k];
        let array = conform(batch.column(1 + i), spec.ty, &spec.name, &display(table))?;
        key.push(spec.ty.encode(&array, row).map_err(Error::Query)?);
    }
    Ok((tenant, key))
}

async fn update(ctx: &SessionContext, txn: &WriteTxn, table: &Arc<MutableTable>, update: &ast::Update, track: bool) -> Result<(u64, Vec<Change>)> {
    if !update.table.joins.is_empty() || update.from.is_some() {
        return Err(Error::unsupported(format!("UPDATE {}: FROM and JOIN are not supported; use a subquery in WHERE", display(table))));
    }
    let mut set_columns = Vec::new();
    let mut values = Vec::new();
    for a in &update.assignments {
        let AssignmentTarget::ColumnName(name) = &a.target else {
            return Err(Error::unsupported(format!("UPDATE {}: assign one column at a time", display(table))));
        };
        set_columns.push(column_position(table, &last_ident(name))?);
        values.push(format!("{} AS jammi_set_{}", a.value, values.len()));
    }
    let batch = touched(ctx, table, &update.table.relation, &values, update.selection.as_ref(), track).await?;
    let first_value = 1 + table.spec.primary_key.len();
    let conformed = set_columns
        .iter()
        .enumerate()
        .map(|(i, &c)| conform(batch.column(first_value + i), table.spec.columns[c].ty, &table.spec.columns[c].name, &display(table)))
        .collect::<Result<Vec<_>>>()?;
    let new_values = encode_rows(table, &conformed, &set_columns, batch.num_rows())?;
    let changes = if track {
        let first_old = first_value + set_columns.len();
        let old: Vec<ArrayRef> = (0..table.spec.columns.len()).map(|i| Arc::clone(batch.column(first_old + i))).collect();
        let mut new = old.clone();
        for (i, &c) in set_columns.iter().enumerate() {
            new[c] = Arc::clone(&conformed[i]);
        }
        let (old_rows, keys) = row_images(table, old)?;
        let (new_rows, _) = row_images(table, new)?;
        (0..batch.num_rows()).map(|r| Change { op: "update", tenant: row_tenant(&batch, r), key: keys[r].clone(), new: Some(new_rows[r].clone()), old: Some(old_rows[r].clone()) }).collect()
    } else {
        Vec::new()
    };
    let mut writes = Vec::with_capacity(batch.num_rows());
    for (row, values) in new_values.into_iter().enumerate() {
        let (tenant, key) = keys_of(&batch, table, row)?;
        writes.push((tenant, key, values));
    }
    Ok((write_updates(txn, table, set_columns, writes).await?, changes))
}

/// Set `set_columns` of each (tenant, key) row to its values; returns rows changed.
pub(super) async fn write_updates(
    txn: &WriteTxn,
    table: &Arc<MutableTable>,
    set_columns: Vec<usize>,
    writes: Vec<(String, Vec<Stored>, Vec<Stored>)>,
) -> Result<u64> {
    let t = Arc::clone(table);
    txn.with(move |conn| {
        Box::pin(async move {
            let mut changed = 0;
            for (tenant, key, values) in writes {
                changed += store::update_row(conn, &t.storage, &t.spec, &set_columns, values, &tenant, key).await.map_err(|e| duplicate(&t, e))?;
            }
            Ok(changed)
        })
    })
    .await
}

async fn delete(ctx: &SessionContext, txn: &WriteTxn, table: &Arc<MutableTable>, delete: &ast::Delete, track: bool) -> Result<(u64, Vec<Change>)> {
    let tables = match &delete.from {
        ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
    };
    if tables.len() != 1 || !tables[0].joins.is_empty() || delete.using.is_some() || delete.limit.is_some() {
        return Err(Error::unsupported(format!("DELETE FROM {}: one table only; use a subquery in WHERE", display(table))));
    }
    let batch = touched(ctx, table, &tables[0].relation, &[], delete.selection.as_ref(), track).await?;
    let changes = if track {
        let first_old = 1 + table.spec.primary_key.len();
        let old: Vec<ArrayRef> = (0..table.spec.columns.len()).map(|i| Arc::clone(batch.column(first_old + i))).collect();
        let (old_rows, keys) = row_images(table, old)?;
        (0..batch.num_rows()).map(|r| Change { op: "delete", tenant: row_tenant(&batch, r), key: keys[r].clone(), new: None, old: Some(old_rows[r].clone()) }).collect()
    } else {
        Vec::new()
    };
    let mut keys = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        keys.push(keys_of(&batch, table, row)?);
    }
    let t = Arc::clone(table);
    let deleted = txn
        .with(move |conn| {
            Box::pin(async move {
                let mut deleted = 0;
                for (tenant, key) in keys {
                    deleted += store::delete_row(conn, &t.storage, &t.spec, &tenant, key).await.map_err(|e| duplicate(&t, e))?;
                }
                Ok(deleted)
            })
        })
        .await?;
    Ok((deleted, changes))
}
