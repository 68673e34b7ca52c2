//! `topics.public.NAME`: a topic's retained events as a table (its columns, `_offset`,
//! `_produced_at`), the scope's events only.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{CatalogProvider, SchemaProvider, Session as DfSession, TableProvider};
use datafusion::common::{exec_err, DataFusionError, Result as DfResult};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;

use super::{log, TopicEntry, TopicState};
use crate::source::naming::DEFAULT_SCHEMA;
use crate::source::EngineCatalog;
use crate::tenant::TenantScope;

/// The `topics` catalog.
#[derive(Debug)]
pub(crate) struct TopicsCatalog {
    state: Arc<TopicState>,
    scope: TenantScope,
}

impl TopicsCatalog {
    pub(crate) fn new(state: Arc<TopicState>) -> Self {
        TopicsCatalog { state, scope: TenantScope::Unbound }
    }
}

impl EngineCatalog for TopicsCatalog {
    fn for_scope(&self, scope: TenantScope) -> Arc<dyn CatalogProvider> {
        Arc::new(TopicsCatalog { state: Arc::clone(&self.state), scope })
    }
}

impl CatalogProvider for TopicsCatalog {
    fn schema_names(&self) -> Vec<String> {
        vec![DEFAULT_SCHEMA.to_string()]
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        (name == DEFAULT_SCHEMA).then(|| Arc::new(TopicsSchema { state: Arc::clone(&self.state), scope: self.scope }) as Arc<dyn SchemaProvider>)
    }
}

#[derive(Debug)]
struct TopicsSchema {
    state: Arc<TopicState>,
    scope: TenantScope,
}

#[async_trait]
impl SchemaProvider for TopicsSchema {
    fn table_names(&self) -> Vec<String> {
        self.state.visible(self.scope).iter().map(|e| e.record.name.clone()).collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Ok(self.state.resolve(self.scope, name).map(|entry| Arc::new(TopicTable { state: Arc::clone(&self.state), entry, scope: self.scope }) as Arc<dyn TableProvider>))
    }

    fn register_table(&self, name: String, _table: Arc<dyn TableProvider>) -> DfResult<Option<Arc<dyn TableProvider>>> {
        exec_err!("create topics with `jammi topic create {name} --schema ...`")
    }

    fn deregister_table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        exec_err!("drop topics with `jammi topic drop {name}`")
    }

    fn table_exist(&self, name: &str) -> bool {
        self.state.resolve(self.scope, name).is_some()
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
