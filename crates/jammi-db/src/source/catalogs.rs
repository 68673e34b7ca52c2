//! Sources as DataFusion catalogs, and the per-query view that shows each tenant its own.
//!
//! [`SourceCatalogs`] holds every registered source of every tenant. A query never sees it
//! directly: it plans against a [`ScopedCatalogList`] built for its scope, which resolves a
//! source name to the tenant's own source first, then to a shared one, and never to another
//! tenant's. Engine catalogs (`mutable`, `vectors`, `topics`) and the scope's own scratch
//! catalog (`datafusion`, where `CREATE VIEW` puts views) sit beside them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProviderList, SchemaProvider, TableProvider,
};
use datafusion::common::{exec_err, Result as DfResult};

use crate::engine_catalog::EngineCatalogs;
use crate::names::DEFAULT_SCHEMA;
use crate::tenant::{TenantId, TenantScope};

/// One source seen as a catalog: file sources have one schema, `public`; database sources
/// keep their database's schema names.
#[derive(Debug)]
pub struct SourceCatalog {
    name: String,
    schemas: BTreeMap<String, Arc<SourceSchema>>,
    /// Reads a live database (each query asks it afresh) rather than files.
    database: bool,
}

impl SourceCatalog {
    /// A catalog for source `name` with `tables` in schema `public`.
    pub fn new(name: impl Into<String>, tables: BTreeMap<String, Arc<dyn TableProvider>>) -> Self {
        Self::with_schemas(name, BTreeMap::from([(DEFAULT_SCHEMA.to_string(), tables)]))
    }

    /// A catalog for source `name` with these schemas and their tables.
    pub fn with_schemas(name: impl Into<String>, schemas: BTreeMap<String, BTreeMap<String, Arc<dyn TableProvider>>>) -> Self {
        let name = name.into();
        let schemas = schemas.into_iter().map(|(schema, tables)| (schema, Arc::new(SourceSchema { source: name.clone(), tables }))).collect();
        SourceCatalog { schemas, name, database: false }
    }

    /// The same catalog, marked as reading a live database.
    pub fn reading_database(self) -> Self {
        SourceCatalog { database: true, ..self }
    }

    /// Whether the source is a live database (its queries may share plans: see
    /// `plan_cache`).
    pub fn reads_database(&self) -> bool {
        self.database
    }

    /// `schema.table` of every table.
    pub fn table_names(&self) -> Vec<String> {
        self.schemas.iter().flat_map(|(schema, s)| s.tables.keys().map(move |t| format!("{schema}.{t}"))).collect()
    }
}

impl CatalogProvider for SourceCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.schemas.keys().cloned().collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.schemas.get(name).map(|s| Arc::clone(s) as Arc<dyn SchemaProvider>)
    }

    fn register_schema(&self, name: &str, _schema: Arc<dyn SchemaProvider>) -> DfResult<Option<Arc<dyn SchemaProvider>>> {
        exec_err!("cannot create schema '{name}' in source '{}': sources are read-only", self.name)
    }
}

/// One schema of a source.
#[derive(Debug)]
struct SourceSchema {
    source: String,
    tables: BTreeMap<String, Arc<dyn TableProvider>>,
}

#[async_trait]
impl SchemaProvider for SourceSchema {
    fn table_names(&self) -> Vec<String> {
        self.tables.keys().cloned().collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Ok(self.tables.get(name).cloned())
    }

    fn register_table(&self, name: String, _table: Arc<dyn TableProvider>) -> DfResult<Option<Arc<dyn TableProvider>>> {
        exec_err!(
            "cannot create table '{name}' in source '{}': sources are read-only (use `jammi source add`, or a mutable table)",
            self.source
        )
    }

    fn deregister_table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        exec_err!("cannot drop table '{name}' of source '{}': use `jammi source remove {}`", self.source, self.source)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.contains_key(name)
    }
}

/// Every registered source, keyed by owner and name.
#[derive(Debug, Default)]
pub struct SourceCatalogs {
    by_owner: RwLock<HashMap<(Option<TenantId>, String), Arc<SourceCatalog>>>,
}

impl SourceCatalogs {
    /// Replace the whole set (after reading the catalog).
    pub fn replace_all(&self, entries: Vec<(Option<TenantId>, Arc<SourceCatalog>)>) {
        let map = entries.into_iter().map(|(owner, c)| ((owner, c.name.clone()), c)).collect();
        *self.by_owner.write().unwrap_or_else(|p| p.into_inner()) = map;
    }

    /// Add or replace one source.
    pub fn insert(&self, owner: Option<TenantId>, catalog: Arc<SourceCatalog>) {
        self.by_owner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((owner, catalog.name.clone()), catalog);
    }

    /// Forget one source.
    pub fn remove(&self, owner: Option<TenantId>, name: &str) {
        self.by_owner.write().unwrap_or_else(|p| p.into_inner()).remove(&(owner, name.to_string()));
    }

    /// The source `name` as `scope` resolves it: own first, then shared.
    pub fn resolve(&self, scope: TenantScope, name: &str) -> Option<Arc<SourceCatalog>> {
        let map = self.by_owner.read().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = scope.owner() {
            if let Some(c) = map.get(&(Some(t), name.to_string())) {
                return Some(Arc::clone(c));
            }
        }
        map.get(&(None, name.to_string())).cloned()
    }

    /// Names visible to `scope`.
    pub fn visible_names(&self, scope: TenantScope) -> Vec<String> {
        let map = self.by_owner.read().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<String> = map
            .keys()
            .filter(|(owner, _)| owner.is_none() || *owner == scope.owner())
            .map(|(_, name)| name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// What one query sees: engine catalogs, then the scope's sources, then the scope's own
/// scratch catalogs (views and in-memory tables created with SQL).
#[derive(Debug)]
pub struct ScopedCatalogList {
    scope: TenantScope,
    sources: Arc<SourceCatalogs>,
    engine: Arc<EngineCatalogs>,
    scratch: Arc<MemoryCatalogProviderList>,
}

impl ScopedCatalogList {
    /// A view of `sources` for `scope`.
    pub fn new(
        scope: TenantScope,
        sources: Arc<SourceCatalogs>,
        engine: Arc<EngineCatalogs>,
        scratch: Arc<MemoryCatalogProviderList>,
    ) -> Self {
        ScopedCatalogList { scope, sources, engine, scratch }
    }
}

impl CatalogProviderList for ScopedCatalogList {
    fn register_catalog(&self, name: String, catalog: Arc<dyn CatalogProvider>) -> Option<Arc<dyn CatalogProvider>> {
        // `CREATE DATABASE` lands in the scope's scratch space; a reserved or source name
        // would be shadowed and unreachable, which `catalog()` below makes explicit.
        self.scratch.register_catalog(name, catalog)
    }

    fn catalog_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.engine.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        names.extend(self.sources.visible_names(self.scope));
        names.extend(self.scratch.catalog_names());
        names.sort();
        names.dedup();
        names
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        if let Some(c) = self.engine.read().unwrap_or_else(|p| p.into_inner()).get(name) {
            return Some(c.for_scope(self.scope));
        }
        if let Some(c) = self.sources.resolve(self.scope, name) {
            return Some(c as Arc<dyn CatalogProvider>);
        }
        self.scratch.catalog(name)
    }
}
