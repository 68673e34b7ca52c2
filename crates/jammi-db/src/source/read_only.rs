//! [`ReadOnlyTable`]: a source table that can be queried but never written through SQL.
//!
//! DataFusion's `ListingTable` would happily append new files to a source directory on
//! `INSERT INTO`; source data is owned by whoever produced the files, so writes are refused.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{Session as DfSession, TableProvider};
use datafusion::common::{plan_err, Result as DfResult};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::physical_plan::ExecutionPlan;

/// Wraps a provider, forwarding reads and refusing writes with a message naming the table.
#[derive(Debug)]
pub struct ReadOnlyTable {
    inner: Arc<dyn TableProvider>,
    display_name: String,
}

impl ReadOnlyTable {
    /// Wrap `inner`, known to users as `display_name` (`source.public.table`).
    pub fn new(inner: Arc<dyn TableProvider>, display_name: impl Into<String>) -> Self {
        ReadOnlyTable { inner, display_name: display_name.into() }
    }

    /// The provider that reads (a distributed engine ships the files' own table).
    pub fn inner(&self) -> &Arc<dyn TableProvider> {
        &self.inner
    }
}

#[async_trait]
impl TableProvider for ReadOnlyTable {
    crate::delegate::forward_table_reads!();

    async fn scan(
        &self,
        state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::logical_expr::Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.inner.scan(state, projection, filters, limit).await
    }

    async fn insert_into(
        &self,
        _state: &dyn DfSession,
        _input: Arc<dyn ExecutionPlan>,
        _insert_op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan_err!(
            "table {} is a read-only source; write to a mutable table (mutable.public.T) instead",
            self.display_name
        )
    }
}
