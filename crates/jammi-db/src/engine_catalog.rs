//! Catalogs the engine's parts own (`mutable`, `vectors`, `topics`): each part registers
//! one, and every query's catalog list shows it as the query's tenant scope may see it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::common::{exec_err, Result as DfResult};

use crate::names::DEFAULT_SCHEMA;
use crate::tenant::TenantScope;

/// An engine-owned catalog (`mutable`, `vectors`, `topics`) that shows each scope what it
/// may see.
pub trait EngineCatalog: std::fmt::Debug + Send + Sync {
    /// The catalog as `scope` sees it.
    fn for_scope(&self, scope: TenantScope) -> Arc<dyn CatalogProvider>;
}

/// Engine catalogs by name, registered by engine parts.
pub type EngineCatalogs = RwLock<BTreeMap<String, Arc<dyn EngineCatalog>>>;

/// The tables of a part's catalog, in one scope: listed and resolved by the part, never
/// created or dropped through DataFusion's catalog API (each part has its own command).
#[async_trait::async_trait]
pub(crate) trait PartTables: std::fmt::Debug + Send + Sync {
    /// Names visible in this scope.
    fn names(&self) -> Vec<String>;

    /// The table `name`, if visible.
    async fn table(&self, name: &str) -> Option<Arc<dyn TableProvider>>;

    /// Whether `name` is visible.
    fn exists(&self, name: &str) -> bool;

    /// What to do instead of registering `name` through the catalog API.
    fn create_instead(&self, name: &str) -> String;

    /// What to do instead of deregistering `name` through the catalog API.
    fn drop_instead(&self, name: &str) -> String;
}

/// A part's catalog: one schema, [`DEFAULT_SCHEMA`], holding the part's tables.
#[derive(Debug)]
pub(crate) struct PublicOnlyCatalog<T: PartTables>(Arc<PublicSchema<T>>);

impl<T: PartTables + 'static> PublicOnlyCatalog<T> {
    pub(crate) fn new(tables: T) -> Self {
        PublicOnlyCatalog(Arc::new(PublicSchema(tables)))
    }
}

impl<T: PartTables + 'static> CatalogProvider for PublicOnlyCatalog<T> {
    fn schema_names(&self) -> Vec<String> {
        vec![DEFAULT_SCHEMA.to_string()]
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        (name == DEFAULT_SCHEMA).then(|| Arc::clone(&self.0) as Arc<dyn SchemaProvider>)
    }
}

#[derive(Debug)]
pub(crate) struct PublicSchema<T: PartTables>(T);

#[async_trait::async_trait]
impl<T: PartTables + 'static> SchemaProvider for PublicSchema<T> {
    fn table_names(&self) -> Vec<String> {
        self.0.names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Ok(self.0.table(name).await)
    }

    fn register_table(&self, name: String, _table: Arc<dyn TableProvider>) -> DfResult<Option<Arc<dyn TableProvider>>> {
        exec_err!("{}", self.0.create_instead(&name))
    }

    fn deregister_table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        exec_err!("{}", self.0.drop_instead(name))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.0.exists(name)
    }
}
