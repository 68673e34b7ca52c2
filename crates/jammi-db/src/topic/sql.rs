//! `topics.public.NAME`: a topic's retained events as a table (its columns, `_offset`,
//! `_produced_at`), the scope's events only.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{CatalogProvider, Session as DfSession, TableProvider};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;

use super::{log, TopicEntry, TopicState};
use crate::engine_catalog::{EngineCatalog, PartTables, PublicOnlyCatalog};
use crate::tenant::TenantScope;

/// The `topics` catalog.
/// The `topics` catalog: each topic as a read-only table of its log.
#[derive(Debug)]
pub(crate) struct TopicsCatalog {
    state: Arc<TopicState>,
}

impl TopicsCatalog {
    pub(crate) fn new(state: Arc<TopicState>) -> Self {
        TopicsCatalog { state }
    }
}

impl EngineCatalog for TopicsCatalog {
    fn for_scope(&self, scope: TenantScope) -> Arc<dyn CatalogProvider> {
        Arc::new(PublicOnlyCatalog::new(TopicTables { state: Arc::clone(&self.state), scope }))
    }
}

#[derive(Debug)]
struct TopicTables {
    state: Arc<TopicState>,
    scope: TenantScope,
}

#[async_trait]
impl PartTables for TopicTables {
    fn names(&self) -> Vec<String> {
        self.state.visible(self.scope).iter().map(|e| e.record.name.clone()).collect()
    }

    async fn table(&self, name: &str) -> Option<Arc<dyn TableProvider>> {
        self.state.resolve(self.scope, name).map(|entry| Arc::new(TopicTable { state: Arc::clone(&self.state), entry, scope: self.scope }) as Arc<dyn TableProvider>)
    }

    fn exists(&self, name: &str) -> bool {
        self.state.resolve(self.scope, name).is_some()
    }

    fn create_instead(&self, name: &str) -> String {
        format!("create topics with `jammi topic create {name} --schema ...`")
    }

    fn drop_instead(&self, name: &str) -> String {
        format!("drop topics with `jammi topic drop {name}`")
    }
}

#[derive(Debug)]
struct TopicTable {
    state: Arc<TopicState>,
    entry: Arc<TopicEntry>,
    scope: TenantScope,
}

#[async_trait]
impl TableProvider for TopicTable {
    fn schema(&self) -> SchemaRef {
        self.entry.spec.event_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(&self, _state: &dyn DfSession, projection: Option<&Vec<usize>>, _filters: &[Expr], _limit: Option<usize>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let external = |e: crate::error::Error| DataFusionError::External(Box::new(e));
        let mut conn = self.state.catalog.pool().acquire().await.map_err(|e| external(self.state.catalog.error(e)))?;
        let mut batches = Vec::new();
        let mut next = 0;
        loop {
            let events = log::read(&mut conn, &self.entry.record.id, next, 10_000, self.scope).await.map_err(external)?;
            let Some(last) = events.last() else { break };
            next = last.offset + 1;
            batches.push(log::events_to_batch(&self.entry.spec, &events).map_err(external)?);
        }
        Ok(MemorySourceConfig::try_new_exec(&[batches], self.entry.spec.event_schema(), projection.cloned())?)
    }
}
