//! The `evidence` catalog: `evidence.public.channels` (the registry, as the caller's scope
//! sees it) and `evidence.public.NAME` (channel NAME's rows: query_id, row_id, its columns).
//! Rows are attached with `INSERT`; nothing updates, deletes or drops them.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{CatalogProvider, Session as DfSession, TableProvider};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;

use super::{storage_name, CHANNELS_TABLE};
use crate::catalog::Catalog;
use crate::engine_catalog::{EngineCatalog, PartTables, PublicOnlyCatalog};
use crate::mutable::provider::{Mode, MutableProvider};
use crate::mutable::MutableState;
use crate::tenant::{scope_of, TenantScope};

/// The `evidence` catalog.
#[derive(Debug)]
pub(crate) struct EvidenceCatalog {
    catalog: Catalog,
    mutable: Arc<MutableState>,
}

impl EvidenceCatalog {
    pub(crate) fn new(catalog: Catalog, mutable: Arc<MutableState>) -> Self {
        EvidenceCatalog { catalog, mutable }
    }
}

impl EngineCatalog for EvidenceCatalog {
    fn for_scope(&self, scope: TenantScope) -> Arc<dyn CatalogProvider> {
        Arc::new(PublicOnlyCatalog::new(EvidenceTables { catalog: self.catalog.clone(), mutable: Arc::clone(&self.mutable), scope }))
    }
}

#[derive(Debug)]
struct EvidenceTables {
    catalog: Catalog,
    mutable: Arc<MutableState>,
    scope: TenantScope,
}

#[async_trait]
impl PartTables for EvidenceTables {
    /// The caller's channels; the registry (`channels`) is queryable by name but not listed,
    /// so an engine without user channels lists no evidence tables.
    fn names(&self) -> Vec<String> {
        self.mutable.evidence_channels(self.scope)
    }

    async fn table(&self, name: &str) -> Option<Arc<dyn TableProvider>> {
        if name == CHANNELS_TABLE {
            return Some(Arc::new(ChannelsTable { catalog: self.catalog.clone() }));
        }
        let table = self.mutable.get(self.scope, &storage_name(name))?;
        Some(Arc::new(MutableProvider::new(self.catalog.clone(), table, Mode::Read)))
    }

    fn exists(&self, name: &str) -> bool {
        name == CHANNELS_TABLE || self.mutable.get(self.scope, &storage_name(name)).is_some()
    }

    fn create_instead(&self, name: &str) -> String {
        format!("register a channel with CREATE TABLE evidence.public.{name} (column type, ...)")
    }

    fn drop_instead(&self, name: &str) -> String {
        format!("evidence.public.{name} cannot be dropped: evidence is append-only")
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("tenant", DataType::Utf8, true),
        Field::new("columns", DataType::Utf8, false),
        Field::new("builtin", DataType::Boolean, false),
    ]))
}

/// `evidence.public.channels`.
#[derive(Debug)]
struct ChannelsTable {
    catalog: Catalog,
}

#[async_trait]
impl TableProvider for ChannelsTable {
    fn schema(&self) -> SchemaRef {
        schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(&self, state: &dyn DfSession, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let channels = super::channels(&self.catalog, scope_of(state)).await.map_err(|e| DataFusionError::External(Box::new(e)))?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(channels.iter().map(|c| c.name.clone()))),
            Arc::new(StringArray::from(channels.iter().map(|c| c.tenant.map(|t| t.to_string())).collect::<Vec<_>>())),
            Arc::new(StringArray::from_iter_values(channels.iter().map(|c| c.columns.clone()))),
            Arc::new(BooleanArray::from(channels.iter().map(|c| c.builtin).collect::<Vec<_>>())),
        ];
        let batch = RecordBatch::try_new(schema(), columns)?;
        MemTable::try_new(schema(), vec![vec![batch]])?.scan(state, projection, filters, limit).await
    }
}
