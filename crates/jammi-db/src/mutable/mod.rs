//! Mutable companion tables: small changing tables (labels, review state, feedback) kept in
//! the catalog database and changed with plain SQL.
//!
//! Parts: [`types`] (column types and their stored form), [`spec`] (table definitions),
//! [`store`] (the storage tables' SQL, shared by SQLite and Postgres), [`provider`]
//! (`mutable.public.NAME` in queries, with pushdown), [`ddl`] and [`dml`] (the statements), [`classify`] (which statements are ours).
//!
//! Writes: every statement computes its rows with DataFusion (so `INSERT ... SELECT`, `SET`
//! expressions and `WHERE` subqueries may use any table) while holding the table's write
//! lock, then writes them in the same catalog transaction. Registering a table is one
//! transaction covering its catalog row and its storage table.

pub mod ddl;
pub mod dml;
pub mod fulltext;
pub mod provider;
pub mod spec;
pub mod classify;
pub mod store;
pub mod types;
mod upsert;

use std::sync::Arc;

use datafusion::catalog::{CatalogProvider, TableProvider};
use parking_lot::RwLock;

use crate::catalog::Catalog;
use crate::change::{ChangeFeed, ChangeSink};
use crate::txn;
use crate::error::{Error, Result};
use crate::engine_catalog::{EngineCatalog, PartTables, PublicOnlyCatalog};
use crate::tenant::{resolve_scoped, visible, ScopedNames, TenantId, TenantScope};
use provider::{Mode, MutableProvider};
use spec::TableSpec;

/// The SQL catalog name of mutable tables.
pub const CATALOG: &str = crate::names::MUTABLE_CATALOG;
/// The catalog through which writes are planned (writable rows plus the tenant column);
/// registered only in the contexts that plan writes.
pub(crate) const WRITE_CATALOG: &str = "jammi_write";

/// One table as the engine holds it.
#[derive(Debug)]
pub struct MutableTable {
    /// Catalog id.
    pub id: String,
    /// The tenant that owns it (`None`: shared).
    pub owner: Option<TenantId>,
    /// SQL name.
    pub name: String,
    /// Storage table in the catalog database.
    pub storage: String,
    /// Columns, key, indexes.
    pub spec: TableSpec,
}

/// Every mutable table, kept in step with the catalog by the session's sync.
#[derive(Debug)]
pub struct MutableState {
    catalog: Catalog,
    tables: RwLock<ScopedNames<Arc<MutableTable>>>,
    /// This process's writers queue here before they take a connection and the database's
    /// write lock, so waiting writers never starve the pool.
    writer: Arc<txn::Writer>,
    /// Where committed row changes go (topics' change feeds).
    changes: Arc<dyn ChangeSink>,
}

/// Definitions as a transaction sees them after DDL inside it ([`txn::WriteTxn::definitions`]).
type Definitions = ScopedNames<Arc<MutableTable>>;

fn definitions_in(txn: Option<&txn::WriteTxn>) -> Option<Arc<Definitions>> {
    txn.and_then(|t| t.definitions()).and_then(|d| d.downcast::<Definitions>().ok())
}

impl MutableState {
    pub(crate) fn new(catalog: Catalog, writer: Arc<txn::Writer>, changes: Arc<dyn ChangeSink>) -> Self {
        MutableState { catalog, tables: RwLock::new(ScopedNames::new()), writer, changes }
    }

    /// The change feeds following `table`.
    pub(crate) fn feeds_of(&self, table: &MutableTable) -> Vec<Arc<dyn ChangeFeed>> {
        self.changes.feeds_of(&table.name, &|scope| self.get(scope, &table.name).is_some_and(|t| t.id == table.id))
    }

    /// Reload the table list from the catalog.
    pub(crate) async fn sync(&self) -> Result<()> {
        let tables = tables_from(self.catalog.mutable_tables().list_all().await?)?;
        *self.tables.write() = tables;
        Ok(())
    }

    /// The table `scope` resolves `name` to (its own, else a shared one). An ephemeral
    /// session's tables resolve only for that session ([`MutableState::get_for`]).
    pub fn get(&self, scope: TenantScope, name: &str) -> Option<Arc<MutableTable>> {
        self.get_for(scope, name, None, None)
    }


    /// [`MutableState::get_in`] for a caller in ephemeral session `ephemeral`, which also
    /// reaches that session's tables.
    pub(crate) fn get_for(&self, scope: TenantScope, name: &str, txn: Option<&txn::WriteTxn>, ephemeral: Option<&str>) -> Option<Arc<MutableTable>> {
        if !crate::ephemeral::names::visible(name, ephemeral) {
            return None;
        }
        match definitions_in(txn) {
            Some(tables) => resolve_scoped(&tables, scope, name),
            None => resolve_scoped(&self.tables.read(), scope, name),
        }
    }

    /// The table `scope` resolves `name` to, or an error saying it does not exist.
    pub fn require(&self, scope: TenantScope, name: &str) -> Result<Arc<MutableTable>> {
        self.require_in(scope, name, None, None)
    }

    /// [`MutableState::require`] as `txn` sees it, for a caller in ephemeral session
    /// `ephemeral` (if any).
    pub(crate) fn require_in(&self, scope: TenantScope, name: &str, txn: Option<&txn::WriteTxn>, ephemeral: Option<&str>) -> Result<Arc<MutableTable>> {
        self.get_for(scope, name, txn, ephemeral).ok_or_else(|| {
            Error::Unknown { kind: crate::error::ObjectKind::MutableTable, name: crate::ephemeral::names::user_name(name).to_string(), scope: scope.describe() }
        })
    }

    /// Reload the definitions `txn` sees from inside it, after DDL there changed them.
    pub(crate) async fn reload_in(&self, txn: &txn::WriteTxn) -> Result<()> {
        let records = {
            let mut conn = txn.connection().await?;
            self.catalog.mutable_tables().list_all_in(&mut conn).await?
        };
        txn.set_definitions(Arc::new(tables_from(records)?));
        Ok(())
    }

    /// Begin a write transaction for one statement (see [`txn::WriteTxn`]).
    pub(crate) async fn begin(&self) -> Result<Arc<txn::WriteTxn>> {
        self.writer.begin().await
    }

    /// Begin a transaction opened with `BEGIN` (bounded: see [`txn::Writer::begin_explicit`]).
    pub(crate) async fn begin_explicit(&self) -> Result<Arc<txn::WriteTxn>> {
        self.writer.begin_explicit().await
    }

    fn names(&self, scope: TenantScope, txn: Option<&txn::WriteTxn>, ephemeral: Option<&str>) -> Vec<String> {
        let pick = |tables: &ScopedNames<Arc<MutableTable>>| -> Vec<String> {
            // Names with a '$' are the engine's (an ephemeral session's tables, evidence
            // channels' storage): reached by their own names, not listed here.
            tables.keys().filter(|(owner, name)| visible(scope, *owner) && crate::ephemeral::names::visible(name, ephemeral) && !name.contains('$')).map(|(_, n)| n.clone()).collect()
        };
        let mut names = match definitions_in(txn) {
            Some(tables) => pick(&tables),
            None => pick(&self.tables.read()),
        };
        names.sort();
        names.dedup();
        names
    }
}

impl MutableState {
    /// The evidence channels whose storage `scope` sees.
    pub(crate) fn evidence_channels(&self, scope: TenantScope) -> Vec<String> {
        let mut names: Vec<String> = self.tables.read().keys().filter(|(owner, _)| visible(scope, *owner)).filter_map(|(_, n)| crate::evidence::channel_of(n).map(str::to_string)).collect();
        names.sort();
        names.dedup();
        names
    }
}

/// Catalog rows as the engine holds them.
fn tables_from(records: Vec<crate::catalog::MutableTableRecord>) -> Result<ScopedNames<Arc<MutableTable>>> {
    let mut tables = ScopedNames::with_capacity(records.len());
    for r in records {
        let spec: TableSpec = serde_json::from_str(&r.spec)
            .map_err(|e| Error::Catalog { backend: "catalog".into(), message: format!("mutable table '{}' has an unreadable definition: {e}", r.name) })?;
        tables.insert((r.owner, r.name.clone()), Arc::new(MutableTable { id: r.id, owner: r.owner, name: r.name, storage: r.storage, spec }));
    }
    Ok(tables)
}

/// `mutable` (reads) or `jammi_write` (write planning) as a DataFusion catalog.
#[derive(Debug)]
pub(crate) struct MutableCatalog {
    state: Arc<MutableState>,
    mode: Mode,
    /// The open transaction whose view of the definitions to use, for contexts planned in one.
    txn: Option<Arc<txn::WriteTxn>>,
    /// The ephemeral session whose tables this catalog reaches, if any.
    ephemeral: Option<Arc<str>>,
}

impl MutableCatalog {
    pub(crate) fn new(state: Arc<MutableState>, mode: Mode) -> Self {
        MutableCatalog { state, mode, txn: None, ephemeral: None }
    }

    /// The catalog as the open transaction `txn` (if any) of a caller in ephemeral session
    /// `ephemeral` (if any) sees it: its own DDL and its session's tables included.
    pub(crate) fn for_caller(state: Arc<MutableState>, mode: Mode, txn: Option<Arc<txn::WriteTxn>>, ephemeral: Option<Arc<str>>) -> Self {
        MutableCatalog { state, mode, txn, ephemeral }
    }
}

impl EngineCatalog for MutableCatalog {
    fn for_scope(&self, scope: TenantScope) -> Arc<dyn CatalogProvider> {
        Arc::new(PublicOnlyCatalog::new(MutableTables { state: Arc::clone(&self.state), mode: self.mode, scope, txn: self.txn.clone(), ephemeral: self.ephemeral.clone() }))
    }
}

#[derive(Debug)]
struct MutableTables {
    state: Arc<MutableState>,
    mode: Mode,
    scope: TenantScope,
    txn: Option<Arc<txn::WriteTxn>>,
    ephemeral: Option<Arc<str>>,
}

#[async_trait::async_trait]
impl PartTables for MutableTables {
    fn names(&self) -> Vec<String> {
        self.state.names(self.scope, self.txn.as_deref(), self.ephemeral.as_deref())
    }

    async fn table(&self, name: &str) -> Option<Arc<dyn TableProvider>> {
        self.state.get_for(self.scope, name, self.txn.as_deref(), self.ephemeral.as_deref()).map(|t| Arc::new(MutableProvider::new(self.state.catalog.clone(), t, self.mode)) as Arc<dyn TableProvider>)
    }

    fn exists(&self, name: &str) -> bool {
        self.state.get_for(self.scope, name, self.txn.as_deref(), self.ephemeral.as_deref()).is_some()
    }

    fn create_instead(&self, name: &str) -> String {
        format!("create mutable tables with CREATE TABLE mutable.public.{name} (column type, ..., PRIMARY KEY (...))")
    }

    fn drop_instead(&self, name: &str) -> String {
        format!("drop mutable tables with DROP TABLE mutable.public.{name}")
    }
}
