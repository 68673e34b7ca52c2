//! Forwarding of the read side of `TableProvider`, shared by wrapper tables (read-only
//! sources, tenant-scoped tables) that change only one aspect of the table they wrap.

/// Inside an `impl TableProvider for W` where `W` has a field `inner: Arc<dyn TableProvider>`,
/// expands to the forwarding read methods (schema, constraints, type, logical plan, filter
/// pushdown, statistics). `scan` stays in each impl: `#[async_trait]` rewrites `async fn`
/// before macros expand, so an `async fn` cannot come from a macro.
macro_rules! forward_table_reads {
    () => {
        fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
            self.inner.schema()
        }

        fn constraints(&self) -> Option<&datafusion::common::Constraints> {
            self.inner.constraints()
        }

        fn table_type(&self) -> datafusion::logical_expr::TableType {
            self.inner.table_type()
        }

        fn get_logical_plan(&self) -> Option<std::borrow::Cow<'_, datafusion::logical_expr::LogicalPlan>> {
            self.inner.get_logical_plan()
        }

        fn supports_filters_pushdown(
            &self,
            filters: &[&datafusion::logical_expr::Expr],
        ) -> datafusion::common::Result<Vec<datafusion::logical_expr::TableProviderFilterPushDown>> {
            self.inner.supports_filters_pushdown(filters)
        }

        fn statistics(&self) -> Option<datafusion::common::Statistics> {
            self.inner.statistics()
        }
    };
}

pub(crate) use forward_table_reads;
