//! `mutable.public.NAME` as a DataFusion table: filters, projections and limits become the
//! storage table's own `SELECT`, so a primary-key lookup is an index lookup in the backend.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session as DfSession, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};

use super::spec::TENANT_COLUMN;
use super::store::Select;
use crate::names::quote_ident as quote;
use crate::txn::TxnOption;
use super::types::Stored;
use super::MutableTable;
use crate::catalog::Catalog;
use crate::tenant::TenantScope;
use crate::tenant::scope_of;

/// Which rows and columns a provider shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Queries: the scope's rows plus shared rows; no tenant column.
    Read,
    /// Planning a write: only rows the scope may change, with the tenant column last.
    Write,
}

/// One mutable table in one mode.
#[derive(Debug)]
pub struct MutableProvider {
    catalog: Catalog,
    table: Arc<MutableTable>,
    mode: Mode,
    schema: SchemaRef,
}

impl MutableProvider {
    pub(crate) fn new(catalog: Catalog, table: Arc<MutableTable>, mode: Mode) -> Self {
        let base = table.spec.schema();
        let schema = match mode {
            Mode::Read => base,
            Mode::Write => {
                let mut fields: Vec<_> = base.fields().iter().cloned().collect();
                fields.push(Arc::new(Field::new(TENANT_COLUMN, DataType::Utf8, false)));
                Arc::new(Schema::new(fields))
            }
        };
        MutableProvider { catalog, table, mode, schema }
    }

    /// The tenant condition of `scope` in this mode.
    fn tenant_condition(&self, scope: TenantScope) -> Option<(String, Vec<Stored>)> {
        let column = quote(TENANT_COLUMN);
        match (scope, self.mode) {
            (TenantScope::Admin, _) => None,
            (TenantScope::Unbound, _) => Some((format!("{column} = ''"), vec![])),
            (TenantScope::Tenant(t), Mode::Read) => Some((format!("{column} IN ($?, '')"), vec![Stored::Text(t.to_string())])),
            (TenantScope::Tenant(t), Mode::Write) => Some((format!("{column} = $?"), vec![Stored::Text(t.to_string())])),
        }
    }

    /// `expr` as a condition on the storage table, when the backend computes exactly what
    /// DataFusion would.
    fn translate(&self, expr: &Expr) -> Option<(String, Vec<Stored>)> {
        match expr {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
                Operator::And | Operator::Or => {
                    let (l, mut lb) = self.translate(left)?;
                    let (r, rb) = self.translate(right)?;
                    lb.extend(rb);
                    Some((format!("({l}) {} ({r})", if *op == Operator::And { "AND" } else { "OR" }), lb))
                }
                Operator::Eq | Operator::NotEq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => {
                    let (column, value, op) = match (left.as_ref(), right.as_ref()) {
                        (Expr::Column(c), Expr::Literal(v, _)) => (c, v, *op),
                        (Expr::Literal(v, _), Expr::Column(c)) => (c, v, op.swap()?),
                        _ => return None,
                    };
                    let (_, spec) = self.table.spec.column(&column.name)?;
                    let ordered = matches!(op, Operator::Eq | Operator::NotEq) || spec.ty.orders_in_storage();
                    if !ordered || value.is_null() {
                        return None;
                    }
                    let stored = self.stored(&column.name, value)?;
                    Some((format!("{} {op} $?", quote(&column.name)), vec![stored]))
                }
                _ => None,
            },
            Expr::IsNull(inner) | Expr::IsNotNull(inner) => match inner.as_ref() {
                Expr::Column(c) if self.table.spec.column(&c.name).is_some() => {
                    let not = if matches!(expr, Expr::IsNotNull(_)) { " NOT" } else { "" };
                    Some((format!("{} IS{not} NULL", quote(&c.name)), vec![]))
                }
                _ => None,
            },
            Expr::InList(list) => {
                let Expr::Column(c) = list.expr.as_ref() else { return None };
                if list.list.is_empty() {
                    return None;
                }
                let mut binds = Vec::new();
                for item in &list.list {
                    let Expr::Literal(v, _) = item else { return None };
                    if v.is_null() {
                        return None;
                    }
                    binds.push(self.stored(&c.name, v)?);
                }
                let marks = vec!["$?"; binds.len()].join(", ");
                Some((format!("{} {}IN ({marks})", quote(&c.name), if list.negated { "NOT " } else { "" }), binds))
            }
            Expr::Not(inner) => self.translate(inner).map(|(s, b)| (format!("NOT ({s})"), b)),
            _ => None,
        }
    }

    /// A literal as the stored value of column `name` (only when its type is the column's).
    fn stored(&self, name: &str, value: &ScalarValue) -> Option<Stored> {
        let (_, spec) = self.table.spec.column(name)?;
        if value.data_type() != spec.ty.arrow_type() {
            return None;
        }
        let array: ArrayRef = value.to_array().ok()?;
        spec.ty.encode(&array, 0).ok()
    }
}

#[async_trait]
impl TableProvider for MutableProvider {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| if self.translate(f).is_some() { TableProviderFilterPushDown::Exact } else { TableProviderFilterPushDown::Unsupported })
            .collect())
    }

    async fn scan(&self, state: &dyn DfSession, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let scope = scope_of(state);
        let mut select = Select { columns: Vec::new(), conditions: Vec::new(), binds: Vec::new(), limit };
        let width = self.table.spec.columns.len();
        let positions: Vec<usize> = projection.cloned().unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        select.columns = positions.iter().map(|&i| (i < width).then_some(i)).collect();
        for (sql, binds) in self.tenant_condition(scope).into_iter().chain(filters.iter().filter_map(|f| self.translate(f))) {
            select.conditions.push(sql);
            select.binds.extend(binds);
        }
        let schema = Arc::new(self.schema.project(&positions)?);
        let txn = state.config_options().extensions.get::<TxnOption>().and_then(|o| o.txn.clone());
        let properties = PlanProperties::new(EquivalenceProperties::new(Arc::clone(&schema)), Partitioning::UnknownPartitioning(1), EmissionType::Final, Boundedness::Bounded);
        Ok(Arc::new(MutableScanExec {
            catalog: self.catalog.clone(),
            table: Arc::clone(&self.table),
            select,
            schema,
            txn,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }
}

/// Reads rows with one `SELECT` on the storage table when executed.
#[derive(Debug)]
pub struct MutableScanExec {
    catalog: Catalog,
    table: Arc<MutableTable>,
    select: Select,
    schema: SchemaRef,
    txn: Option<Arc<crate::txn::WriteTxn>>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl DisplayAs for MutableScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MutableScanExec: table=mutable.public.{}, sql={}", self.table.name, self.select.sql(&self.table.storage, &self.table.spec))
    }
}

impl ExecutionPlan for MutableScanExec {
    fn name(&self) -> &str {
        "MutableScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(&self, _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal("MutableScanExec has no children".to_string()))
        }
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let (catalog, table, select, schema, txn) =
            (self.catalog.clone(), Arc::clone(&self.table), self.select.clone(), Arc::clone(&self.schema), self.txn.clone());
        let fetch = async move {
            let timer = baseline.elapsed_compute().timer();
            let batch = fetch(&catalog, txn, &table, &select, &schema).await.map_err(|e| DataFusionError::External(Box::new(e)))?;
            timer.done();
            baseline.record_output(batch.num_rows());
            baseline.done();
            Ok(batch)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&self.schema), futures::stream::once(fetch))))
    }
}

/// Run `select` through the open transaction if there is one, else on a pooled connection.
async fn fetch(
    catalog: &Catalog,
    txn: Option<Arc<crate::txn::WriteTxn>>,
    table: &Arc<MutableTable>,
    select: &Select,
    schema: &SchemaRef,
) -> crate::error::Result<datafusion::arrow::array::RecordBatch> {
    match txn {
        Some(txn) => {
            // Postgres: reads inside a transaction lock the table like its writes do, so a
            // read-modify-write never works from a value another transaction is changing.
            txn.lock_table(&table.storage).await?;
            let (t, s, sc) = (Arc::clone(table), select.clone(), Arc::clone(schema));
            txn.with(move |conn| Box::pin(async move { s.fetch(conn, &t.storage, &t.spec, &sc).await })).await
        }
        None => {
            let mut conn = catalog.pool().acquire().await.map_err(|e| catalog.error(e))?;
            select.fetch(&mut conn, &table.storage, &table.spec, schema).await
        }
    }
}
