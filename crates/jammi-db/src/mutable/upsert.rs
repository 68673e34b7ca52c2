//! `INSERT ... ON CONFLICT (key) DO UPDATE SET ...`: rows whose key is new are inserted; for
//! the others DataFusion evaluates the `SET` expressions over the existing row (its columns
//! by name) and the proposed one (`excluded.column`), and the results are written by key.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::{provider_as_source, MemTable};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{col, Expr, JoinType, LogicalPlanBuilder};
use datafusion::sql::sqlparser::ast::{self, AssignmentTarget, Ident};

use super::dml::{conform, row_images, write_insert, write_updates};
use crate::change::Change;
use super::provider::{Mode, MutableProvider};
use super::spec::TENANT_COLUMN;
use crate::txn::WriteTxn;
use super::types::Stored;
use super::MutableTable;
use crate::catalog::Catalog;
use crate::error::{Error, Result};

/// Apply the upsert; returns rows inserted plus rows updated, the positions of the inserted
/// rows, and (with `track`) the updates as change-feed events.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    ctx: &SessionContext,
    catalog: &Catalog,
    txn: &WriteTxn,
    table: &Arc<MutableTable>,
    tenant: String,
    columns: &[ArrayRef],
    rows: Vec<Vec<Stored>>,
    update: &ast::DoUpdate,
    track: bool,
) -> Result<(u64, Vec<usize>, Vec<Change>)> {
    let display = format!("mutable.public.{}", table.name);
    // Insert row by row, skipping existing keys: the skipped ones are the conflicts.
    let mut conflicts = Vec::new();
    let mut new_rows = Vec::new();
    for (i, row) in rows.into_iter().enumerate() {
        if write_insert(txn, table, tenant.clone(), vec![row], true).await? == 0 {
            conflicts.push(i as u32);
        } else {
            new_rows.push(i);
        }
    }
    let inserted = new_rows.len() as u64;
    if conflicts.is_empty() {
        return Ok((inserted, new_rows, Vec::new()));
    }

    // The proposed rows that conflicted, as the relation `excluded`.
    let indices = UInt32Array::from(conflicts);
    let mut fields: Vec<Field> = table.spec.columns.iter().map(|c| Field::new(&c.name, c.ty.arrow_type(), true)).collect();
    fields.push(Field::new(TENANT_COLUMN, DataType::Utf8, false));
    let schema = Arc::new(Schema::new(fields));
    let mut arrays = columns.iter().map(|a| take(a, &indices, None)).collect::<std::result::Result<Vec<_>, _>>().map_err(Error::internal)?;
    arrays.push(Arc::new(StringArray::from(vec![tenant.as_str(); indices.len()])));
    let excluded = RecordBatch::try_new(Arc::clone(&schema), arrays).map_err(Error::internal)?;
    let excluded = MemTable::try_new(schema, vec![vec![excluded]])?;

    let target = MutableProvider::new(catalog.clone(), Arc::clone(table), Mode::Write);
    let alias = table.name.clone();
    let key: Vec<String> = std::iter::once(TENANT_COLUMN.to_string()).chain(table.spec.primary_key.iter().cloned()).collect();
    let left: Vec<datafusion::common::Column> = key.iter().map(|k| datafusion::common::Column::new(Some(alias.clone()), k)).collect();
    let right: Vec<datafusion::common::Column> = key.iter().map(|k| datafusion::common::Column::new(Some("excluded"), k)).collect();
    let joined = LogicalPlanBuilder::scan(alias.clone(), provider_as_source(Arc::new(target)), None)?
        .join(LogicalPlanBuilder::scan("excluded", provider_as_source(Arc::new(excluded)), None)?.build()?, JoinType::Inner, (left, right), None)?
        .build()?;
    let schema = Arc::clone(joined.schema());
    let parse = |e: &ast::Expr| -> Result<Expr> { Ok(ctx.parse_sql_expr(&qualify(e, &alias).to_string(), &schema)?) };

    let mut set_columns = Vec::new();
    let mut projection: Vec<Expr> = key.iter().map(|k| col(datafusion::common::Column::new(Some(alias.clone()), k))).collect();
    for a in &update.assignments {
        let AssignmentTarget::ColumnName(name) = &a.target else {
            return Err(Error::unsupported(format!("INSERT INTO {display} ... DO UPDATE: assign one column at a time")));
        };
        let column = name.0.last().and_then(|p| p.as_ident()).map(|i| i.value.clone()).unwrap_or_default();
        let (pos, _) = table.spec.column(&column).ok_or_else(|| Error::invalid(column.clone(), format!("{display}: no column '{column}'")))?;
        if table.spec.primary_key.contains(&column) {
            return Err(Error::invalid(column.clone(), format!("INSERT INTO {display} ... DO UPDATE cannot change the key column '{column}'")));
        }
        set_columns.push(pos);
        projection.push(parse(&a.value)?.alias(format!("set_{}", set_columns.len())));
    }
    // The existing row, for the change feed's old image.
    projection.extend(table.spec.columns.iter().enumerate().map(|(i, c)| col(datafusion::common::Column::new(Some(alias.clone()), &c.name)).alias(format!("jammi_old_{i}"))));
    let mut builder = LogicalPlanBuilder::from(joined);
    if let Some(selection) = &update.selection {
        builder = builder.filter(parse(selection)?)?;
    }
    let plan = builder.project(projection)?.build()?;
    let out_schema = Arc::new(plan.schema().as_arrow().clone());
    let batches = ctx.execute_logical_plan(plan).await?.collect().await?;
    let batch = concat_batches(&out_schema, &batches).map_err(Error::internal)?;

    let mut writes = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let tenant = batch.column(0).as_any().downcast_ref::<StringArray>().map(|a| a.value(row).to_string()).unwrap_or_default();
        let mut key_values = Vec::new();
        for (i, k) in table.spec.key_positions().into_iter().enumerate() {
            let spec = &table.spec.columns[k];
            key_values.push(spec.ty.encode(batch.column(1 + i), row).map_err(Error::Query)?);
        }
        let mut values = Vec::new();
        for (i, &c) in set_columns.iter().enumerate() {
            let spec = &table.spec.columns[c];
            let array = conform(batch.column(key.len() + i), spec.ty, &spec.name, &display)?;
            if !spec.nullable && array.is_null(row) {
                return Err(Error::invalid(spec.name.clone(), format!("{display}: column '{}' is NOT NULL, but DO UPDATE sets it to NULL; nothing was written", spec.name)));
            }
            values.push(spec.ty.encode(&array, row).map_err(Error::Query)?);
        }
        writes.push((tenant, key_values, values));
    }
    let changes = if track && batch.num_rows() > 0 {
        let first_old = key.len() + set_columns.len();
        let old: Vec<ArrayRef> = (0..table.spec.columns.len()).map(|i| Arc::clone(batch.column(first_old + i))).collect();
        let mut new = old.clone();
        for (i, &c) in set_columns.iter().enumerate() {
            let spec = &table.spec.columns[c];
            new[c] = conform(batch.column(key.len() + i), spec.ty, &spec.name, &display)?;
        }
        let (old_rows, keys) = row_images(table, old)?;
        let (new_rows_json, _) = row_images(table, new)?;
        (0..batch.num_rows()).map(|r| Change { op: "update", tenant: super::dml::row_tenant(&batch, r), key: keys[r].clone(), new: Some(new_rows_json[r].clone()), old: Some(old_rows[r].clone()) }).collect()
    } else {
        Vec::new()
    };
    let updated = write_updates(txn, table, set_columns, writes).await?;
    Ok((inserted + updated, new_rows, changes))
}

/// `expr` with bare column names qualified by `alias` (the existing row), so that they are
/// not ambiguous with `excluded.column`.
fn qualify(expr: &ast::Expr, alias: &str) -> ast::Expr {
    let mut out = expr.clone();
    let _ = ast::visit_expressions_mut(&mut out, |e| {
        if let ast::Expr::Identifier(id) = e {
            *e = ast::Expr::CompoundIdentifier(vec![Ident::with_quote('"', alias), id.clone()]);
        }
        ControlFlow::<()>::Continue(())
    });
    out
}
