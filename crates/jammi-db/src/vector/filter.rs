//! Pre-filtering: a SQL predicate over the payload becomes the set of allowed index keys,
//! evaluated by DataFusion before the search starts.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::Expr;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use super::loaded::LoadedTable;
use crate::error::{Error, Result};

/// Hidden column carrying each row's index key through the filter.
const KEY_COLUMN: &str = "_key";


/// `allowed[key]` for `predicate` (deleted rows are never allowed). Results are cached per
/// table generation, so a repeated filter costs one lookup.
pub async fn allowed_keys(table: &LoadedTable, predicate: &str) -> Result<Arc<Vec<bool>>> {
    if let Some(hit) = table.filter_cache.lock().get(predicate) {
        return Ok(Arc::clone(hit));
    }
    let keys = evaluate(table, predicate, |ctx, schema| ctx.parse_sql_expr(predicate, schema)).await?;
    let mut allowed = vec![false; table.key_space()];
    for k in keys {
        allowed[k as usize] = true;
    }
    let allowed = Arc::new(allowed);
    // Bitmaps and their predicates stay within the share of the memory budget the table
    // was charged for (see `filter_cache_limit`).
    let limit = super::loaded::filter_cache_limit(table.key_space());
    let cost = |p: &str, a: &Vec<bool>| p.len() + a.len();
    let mut cache = table.filter_cache.lock();
    let used: usize = cache.iter().map(|(p, a)| cost(p, a)).sum();
    if used + cost(predicate, &allowed) > limit {
        cache.clear();
    }
    if cost(predicate, &allowed) <= limit {
        cache.insert(predicate.to_string(), Arc::clone(&allowed));
    }
    Ok(allowed)
}

/// Keys of the live rows matching `expr` (columns may be qualified; qualifiers are dropped).
pub async fn matching_keys(table: &LoadedTable, expr: Expr) -> Result<Vec<u64>> {
    let text = expr.to_string();
    let unqualified = expr
        .transform(|e| {
            Ok(match e {
                Expr::Column(c) => Transformed::yes(Expr::Column(Column::new_unqualified(c.name))),
                other => Transformed::no(other),
            })
        })
        .map(|t| t.data)
        .map_err(Error::internal)?;
    evaluate(table, &text, move |_, _| Ok(unqualified)).await
}

/// Evaluate a predicate over the id and payload columns; returns the live matching keys.
async fn evaluate(
    table: &LoadedTable,
    text: &str,
    build: impl FnOnce(&SessionContext, &DFSchema) -> datafusion::error::Result<Expr>,
) -> Result<Vec<u64>> {
    let invalid =
        |e: &dyn std::fmt::Display| Error::invalid("filter", format!("invalid vector filter '{text}': {}", crate::error::one_line(&e.to_string())));
    let row_schema = table.row_schema();
    let mut fields: Vec<Arc<Field>> = row_schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(KEY_COLUMN, DataType::UInt64, false)));
    let schema = Arc::new(Schema::new(fields));
    let mut batches = Vec::with_capacity(table.segments.len());
    for seg in &table.segments {
        let keys: ArrayRef = Arc::new(UInt64Array::from_iter_values(
            (0..seg.rows.num_rows() as u64).map(|r| seg.meta.base_key + r),
        ));
        let mut columns = seg.rows.columns().to_vec();
        columns.push(keys);
        batches.push(RecordBatch::try_new(Arc::clone(&schema), columns).map_err(|e| invalid(&e))?);
    }
    let ctx = SessionContext::new();
    let mem = MemTable::try_new(Arc::clone(&schema), vec![batches]).map_err(|e| invalid(&e))?;
    let df_schema = DFSchema::try_from(schema.as_ref().clone()).map_err(|e| invalid(&e))?;
    let expr = build(&ctx, &df_schema).map_err(|e| invalid(&e))?;
    let frame = ctx
        .read_table(Arc::new(mem))
        .and_then(|f| f.filter(expr))
        .and_then(|f| f.select_columns(&[KEY_COLUMN]))
        .map_err(|e| invalid(&e))?;
    let result = frame.collect().await.map_err(|e| invalid(&e))?;
    let mut keys = Vec::new();
    for batch in result {
        let column = batch.column(0).as_any().downcast_ref::<UInt64Array>().ok_or_else(|| invalid(&"key column"))?;
        keys.extend(column.values().iter().copied().filter(|k| !table.deleted[*k as usize]));
    }
    Ok(keys)
}
