//! [`RemoteTable`]: one table or view of a database source as a DataFusion table. Scans
//! that the pushdown rule did not absorb into a larger remote query (for instance inside a
//! subquery expression) still send their projection, filters and limit to the remote.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{Session as CatalogSession, TableProvider};
use datafusion::common::{Column, DFSchema, Result as DfResult, TableReference};
use datafusion::datasource::{provider_as_source, TableType};
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use super::exec::RemoteQueryExec;
use super::pushdown::to_remote_sql;
use super::types::RemoteColumn;
use super::RemoteSource;

/// A table of a database source.
#[derive(Debug)]
pub struct RemoteTable {
    source: Arc<RemoteSource>,
    remote_schema: String,
    table: String,
    columns: Vec<RemoteColumn>,
    schema: SchemaRef,
}

impl RemoteTable {
    /// Table `schema.table` of `source` with `columns`.
    pub fn new(source: Arc<RemoteSource>, remote_schema: String, table: String, columns: Vec<RemoteColumn>) -> Self {
        let schema = Arc::new(Schema::new(columns.iter().map(|c| Field::new(&c.name, c.arrow.clone(), c.nullable)).collect::<Vec<_>>()));
        RemoteTable { source, remote_schema, table, columns, schema }
    }

    /// The source.
    pub fn source(&self) -> &Arc<RemoteSource> {
        &self.source
    }

    /// `schema.table` as the remote database names it.
    pub fn remote_reference(&self) -> TableReference {
        TableReference::partial(self.remote_schema.clone(), self.table.clone())
    }

    /// Columns read as text that the remote may select but not compute on, qualified
    /// as the scan `qualifier` names them.
    pub fn opaque_columns(&self, qualifier: &TableReference) -> HashSet<Column> {
        self.columns.iter().filter(|c| c.opaque).map(|c| Column::new(Some(qualifier.clone()), &c.name)).collect()
    }

    fn pushable(&self, filter: &Expr) -> bool {
        let opaque: HashSet<&str> = self.columns.iter().filter(|c| c.opaque).map(|c| c.name.as_str()).collect();
        let mut uses_opaque = false;
        let _ = filter.apply(|e| {
            if let Expr::Column(c) = e {
                uses_opaque |= opaque.contains(c.name.as_str());
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        });
        !uses_opaque && super::pushdown::filter_ok(filter, self.source.kind)
    }
}

use datafusion::common::tree_node::TreeNode;

#[async_trait]
impl TableProvider for RemoteTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| if self.pushable(f) { TableProviderFilterPushDown::Exact } else { TableProviderFilterPushDown::Unsupported })
            .collect())
    }

    async fn scan(&self, _state: &dyn CatalogSession, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> DfResult<Arc<dyn ExecutionPlan>> {
        // Build the scan as a plan and let the one SQL generator write it.
        let provider: Arc<dyn TableProvider> = Arc::new(RemoteTable::new(Arc::clone(&self.source), self.remote_schema.clone(), self.table.clone(), self.columns.clone()));
        let plan = LogicalPlanBuilder::scan_with_filters(self.remote_reference(), provider_as_source(provider), projection.cloned(), filters.to_vec())?;
        let plan = match limit {
            Some(n) => plan.limit(0, Some(n))?,
            None => plan,
        }
        .build()?;
        let remote = to_remote_sql(&plan, self.source.kind)?;
        let schema: &DFSchema = plan.schema();
        Ok(Arc::new(RemoteQueryExec::new(Arc::clone(&self.source), remote.sql, remote.params, Arc::new(schema.as_arrow().clone()))))
    }
}
