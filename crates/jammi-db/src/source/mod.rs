//! Sources: named, registered data that SQL reads as `NAME.public.TABLE`.
//!
//! This sources are files (Parquet, CSV, JSON) on local disk or object storage,
//! one table per source. Registration validates everything (URL, options, readability,
//! schema, tenant column) before writing the catalog row, so a failed `add` leaves no trace.

mod catalogs;
pub mod file;
pub mod naming;
mod read_only;
pub mod remote;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;

pub use catalogs::{ScopedCatalogList, SourceCatalog, SourceCatalogs};
pub use file::{FileFormatKind, TableSpec};
pub use read_only::ReadOnlyTable;

use crate::catalog::SourceRecord;
use crate::error::{Error, Result};
use crate::context::EngineContext;
use crate::storage::{StorageOptions, StorageUrl};
use crate::tenant::{TenantId, TenantScopedTable};

/// What a user asks to register.
#[derive(Debug, Clone, Default)]
pub struct SourceSpec {
    /// Source name (the SQL catalog name).
    pub name: String,
    /// Local path, `file://` URL, directory, or object-store URL.
    pub url: String,
    /// Format; inferred from the file extension when `None`.
    pub format: Option<FileFormatKind>,
    /// Column holding each row's owning tenant (UUID text; NULL = shared row).
    pub tenant_column: Option<String>,
    /// Format options (`table`, `has_header`, `delimiter`, `quote`, `file_extension`) and
    /// storage driver options (`endpoint`, `region`, `access_key_id`, ...).
    pub options: BTreeMap<String, String>,
}

impl SourceSpec {
    /// A spec for `name` at `url` with everything else inferred.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        SourceSpec { name: name.into(), url: url.into(), ..Default::default() }
    }

    /// Set the format.
    pub fn with_format(mut self, format: FileFormatKind) -> Self {
        self.format = Some(format);
        self
    }

    /// Mark the source tenant-aware through `column`.
    pub fn with_tenant_column(mut self, column: impl Into<String>) -> Self {
        self.tenant_column = Some(column.into());
        self
    }

    /// Add an option.
    pub fn with_option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.insert(key.into(), value.into());
        self
    }
}

/// A registered source as `source list` shows it (secrets masked).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    /// Source name.
    pub name: String,
    /// Owning tenant, `None` when shared.
    pub tenant: Option<TenantId>,
    /// Kind (`file`).
    pub kind: String,
    /// Location, credentials hidden.
    pub url: String,
    /// Data format.
    pub format: Option<String>,
    /// SQL tables (`name.public.table`).
    pub tables: Vec<String>,
    /// Tenant column, if tenant-aware.
    pub tenant_column: Option<String>,
    /// Options with secret values replaced by `***`.
    pub options: BTreeMap<String, String>,
    /// `ok`, or why the source cannot be read.
    pub status: String,
}

/// The sources of one session: `session.sources()`.
#[derive(Debug)]
pub struct Sources<'a> {
    ctx: &'a dyn EngineContext,
    catalogs: &'a SourceCatalogs,
}

impl<'a> Sources<'a> {
    pub(crate) fn new(ctx: &'a dyn EngineContext, catalogs: &'a SourceCatalogs) -> Self {
        Sources { ctx, catalogs }
    }

    /// Register a source owned by the current scope's tenant (shared when unbound).
    /// Everything is checked before the catalog is written.
    pub async fn add(&self, spec: SourceSpec) -> Result<SourceInfo> {
        let scope = self.ctx.scope();
        naming::validate_source_name(&spec.name)?;
        if let Some(kind) = remote::kind_of_url(&spec.url) {
            return self.add_database(spec, kind).await;
        }
        let url = StorageUrl::parse(&spec.url)?;
        let (format_options, storage_options) = split_options(&spec.options);
        let store = self.ctx.register_store(&url, &storage_options)?;

        let state = self.ctx.base_state();
        let table_spec = file::inspect(&state, &store, &url, spec.format, &format_options, &spec.name)
            .await
            .map_err(|e| match e {
                Error::UnknownFormat { message, .. } => Error::UnknownFormat { source_name: spec.name.clone(), message },
                other => other,
            })?;
        if let Some(column) = &spec.tenant_column {
            check_tenant_column(&table_spec, column, &spec.name)?;
        }

        let mut record = SourceRecord::new(scope.owner(), &spec.name, "file", url.url().as_str());
        record.format = Some(table_spec.format.to_string());
        record.tenant_column = spec.tenant_column.clone();
        record.options = spec.options.clone();
        record.table_spec = serde_json::to_string(&table_spec).map_err(Error::internal)?;
        // Build before writing: a source that cannot be served is never registered.
        let catalog = build_source_catalog(self.ctx, &record)?;
        self.ctx.catalog().sources().insert(&record).await?;
        self.catalogs.insert(record.tenant, catalog);
        Ok(info(&record, "ok"))
    }

    /// Register a database: read its tables, check the options, then write the catalog.
    async fn add_database(&self, spec: SourceSpec, kind: remote::RemoteKind) -> Result<SourceInfo> {
        if spec.format.is_some() {
            return Err(Error::InvalidOption { source_name: spec.name.clone(), key: "format".into(), message: "database sources have no file format".into() });
        }
        if let Some(key) = spec.options.keys().find(|k| k.as_str() != "schemas") {
            return Err(Error::InvalidOption { source_name: spec.name.clone(), key: key.clone(), message: "database sources take one option: schemas=a,b".into() });
        }
        let source = remote_source(&spec.name, &spec.url, kind)?;
        let tables = source.introspect(&schemas_option(&spec.options)).await?;
        if let Some(column) = &spec.tenant_column {
            check_remote_tenant_column(&tables, column, &spec.name)?;
        }
        let mut record = SourceRecord::new(self.ctx.scope().owner(), &spec.name, kind.as_str(), spec.url.as_str());
        record.tenant_column = spec.tenant_column.clone();
        record.options = spec.options.clone();
        record.table_spec = serde_json::to_string(&tables).map_err(Error::internal)?;
        let catalog = build_catalog(&record)?;
        self.ctx.catalog().sources().insert(&record).await?;
        self.catalogs.insert(record.tenant, catalog);
        Ok(info(&record, "ok"))
    }

    /// Read a database source's tables and columns again (new tables, new columns).
    pub async fn refresh(&self, name: &str) -> Result<SourceInfo> {
        let scope = self.ctx.scope();
        let record = self
            .ctx
            .catalog()
            .sources()
            .get_visible(scope, name)
            .await?
            .ok_or_else(|| Error::Unknown { kind: crate::error::ObjectKind::Source, name: name.to_string(), scope: scope.describe() })?;
        let Some(kind) = remote::kind_of_url(&record.url) else {
            return Err(Error::unsupported(format!("source '{name}' is a file source: its schema is read when it is added; remove and add it again")));
        };
        refresh_record(self.ctx, &record, kind).await?;
        let record = self.ctx.catalog().sources().get_visible(scope, name).await?.unwrap_or(record);
        Ok(info(&record, "ok"))
    }

    /// Sources visible in the current scope, each with its status (a database source is
    /// asked whether it answers).
    pub async fn list(&self) -> Result<Vec<SourceInfo>> {
        let records = self.ctx.catalog().sources().list_visible(self.ctx.scope()).await?;
        let mut out = Vec::with_capacity(records.len());
        for r in &records {
            let status = match build_source_catalog(self.ctx, r) {
                Err(e) => format!("unavailable: {e}"),
                Ok(_) => match remote::kind_of_url(&r.url) {
                    None => "ok".to_string(),
                    Some(kind) => match remote_source(&r.name, &r.url, kind) {
                        Err(e) => format!("unavailable: {e}"),
                        Ok(source) => match tokio::time::timeout(std::time::Duration::from_secs(5), source.pool.ping()).await {
                            Ok(Ok(())) => "ok".to_string(),
                            Ok(Err(e)) => format!("unavailable: {}", source.error(&e)),
                            Err(_) => "unavailable: the database did not answer within 5 s".to_string(),
                        },
                    },
                },
            };
            out.push(info(r, &status));
        }
        Ok(out)
    }

    /// Unregister `name` (the caller's own source; shared ones only when unbound).
    /// The data itself is never touched.
    pub async fn remove(&self, name: &str) -> Result<SourceInfo> {
        let record = self.ctx.catalog().sources().remove(self.ctx.scope(), name).await?;
        self.catalogs.remove(record.tenant, &record.name);
        Ok(info(&record, "removed"))
    }
}

/// `source list` as a record batch, so every output format prints it.
pub fn sources_to_batch(sources: &[SourceInfo]) -> Result<RecordBatch> {
    let text = |f: &dyn Fn(&SourceInfo) -> Option<String>| -> ArrayRef {
        Arc::new(sources.iter().map(f).collect::<StringArray>())
    };
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("name", text(&|s| Some(s.name.clone()))),
        ("tables", text(&|s| Some(s.tables.join(", ")))),
        ("kind", text(&|s| Some(s.kind.clone()))),
        ("format", text(&|s| s.format.clone())),
        ("url", text(&|s| Some(s.url.clone()))),
        ("tenant", text(&|s| s.tenant.map(|t| t.to_string()))),
        ("tenant_column", text(&|s| s.tenant_column.clone())),
        (
            "options",
            text(&|s| Some(s.options.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))),
        ),
        ("status", text(&|s| Some(s.status.clone()))),
    ];
    let schema = Schema::new(columns.iter().map(|(n, _)| Field::new(*n, DataType::Utf8, true)).collect::<Vec<_>>());
    RecordBatch::try_new(Arc::new(schema), columns.into_iter().map(|(_, c)| c).collect())
        .map_err(Error::internal)
}

/// The connection pool of a database source, shared by every catalog built for it in this
/// process (rebuilding catalogs after a sync must not open new connections).
fn remote_source(name: &str, url: &str, kind: remote::RemoteKind) -> Result<Arc<remote::RemoteSource>> {
    use std::sync::{Mutex, OnceLock};
    static SOURCES: OnceLock<Mutex<std::collections::HashMap<(String, String), Arc<remote::RemoteSource>>>> = OnceLock::new();
    let mut sources = SOURCES.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    let key = (name.to_string(), url.to_string());
    if let Some(s) = sources.get(&key) {
        return Ok(Arc::clone(s));
    }
    let source = remote::RemoteSource::connect(name, url, kind)?;
    sources.insert(key, Arc::clone(&source));
    Ok(source)
}

fn schemas_option(options: &BTreeMap<String, String>) -> Vec<String> {
    options.get("schemas").map(|s| s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect()).unwrap_or_default()
}

/// Re-read a database source's tables; the catalog row changes only when they did.
pub(crate) async fn refresh_record(ctx: &dyn EngineContext, record: &SourceRecord, kind: remote::RemoteKind) -> Result<()> {
    let source = remote_source(&record.name, &record.url, kind)?;
    let tables = source.introspect(&schemas_option(&record.options)).await?;
    let spec = serde_json::to_string(&tables).map_err(Error::internal)?;
    if spec != record.table_spec {
        ctx.catalog().sources().update_spec(&record.id, &spec).await?;
        ctx.sync_catalog().await?;
    }
    Ok(())
}

fn check_remote_tenant_column(tables: &remote::RemoteTables, column: &str, source: &str) -> Result<()> {
    let found: Vec<&remote::RemoteColumn> = tables.schemas.values().flat_map(|t| t.values()).flatten().filter(|c| c.name == column).collect();
    if found.is_empty() {
        return Err(Error::InvalidOption { source_name: source.to_string(), key: "tenant-column".into(), message: format!("no table of the database has a column '{column}'") });
    }
    if let Some(bad) = found.iter().find(|c| c.arrow != DataType::Utf8) {
        return Err(Error::InvalidOption {
            source_name: source.to_string(),
            key: "tenant-column".into(),
            message: format!("column '{column}' has type {}; a tenant column holds UUID text", bad.remote_type),
        });
    }
    Ok(())
}

/// The catalog of a database source from its stored tables (no I/O).
fn build_remote_catalog(record: &SourceRecord, kind: remote::RemoteKind) -> Result<Arc<SourceCatalog>> {
    let tables: remote::RemoteTables = serde_json::from_str(&record.table_spec).map_err(|e| Error::Catalog {
        backend: "catalog".to_string(),
        message: format!("source '{}' has an unreadable table list ({e}); run `jammi source refresh {}`", record.name, record.name),
    })?;
    let source = remote_source(&record.name, &record.url, kind)?;
    let schemas = source
        .providers(&tables)
        .into_iter()
        .map(|(schema, tables)| {
            let tables = tables
                .into_iter()
                .map(|(name, table)| {
                    let has_tenant = record.tenant_column.as_ref().is_some_and(|c| table.schema().field_with_name(c).is_ok());
                    let provider: Arc<dyn TableProvider> = Arc::new(table);
                    let provider = match (&record.tenant_column, has_tenant) {
                        (Some(column), true) => Arc::new(TenantScopedTable::new(provider, column.clone())) as Arc<dyn TableProvider>,
                        _ => provider,
                    };
                    (name, provider)
                })
                .collect();
            (schema, tables)
        })
        .collect();
    Ok(Arc::new(SourceCatalog::with_schemas(record.name.clone(), schemas).reading_database()))
}

/// Build the DataFusion catalog for a stored source record (no I/O).
pub(crate) fn build_catalog(record: &SourceRecord) -> Result<Arc<SourceCatalog>> {
    if let Some(kind) = remote::kind_of_url(&record.url) {
        return build_remote_catalog(record, kind);
    }
    let spec: TableSpec = serde_json::from_str(&record.table_spec).map_err(|e| Error::Catalog {
        backend: "catalog".to_string(),
        message: format!("source '{}' has an unreadable table spec ({e}); remove and add it again", record.name),
    })?;
    let url = StorageUrl::parse(&record.url)?;
    let table = file::build_table(&spec, &url)?;
    let display = format!("{}.{}.{}", record.name, crate::names::DEFAULT_SCHEMA, spec.table);
    let mut provider: Arc<dyn TableProvider> = Arc::new(ReadOnlyTable::new(table, display));
    if let Some(column) = &record.tenant_column {
        provider = Arc::new(TenantScopedTable::new(provider, column.clone()));
    }
    let tables = BTreeMap::from([(spec.table.clone(), provider)]);
    Ok(Arc::new(SourceCatalog::new(record.name.clone(), tables)))
}

/// DataFusion reports `DROP TABLE` on a read-only schema as "doesn't exist"; say what is
/// really going on instead.
pub(crate) fn refuse_source_ddl(
    plan: &datafusion::logical_expr::LogicalPlan,
    sources: &SourceCatalogs,
    scope: crate::tenant::TenantScope,
) -> Result<()> {
    use datafusion::logical_expr::{DdlStatement, LogicalPlan};
    if let LogicalPlan::Ddl(DdlStatement::DropTable(drop)) = plan {
        if let Some(catalog) = drop.name.catalog() {
            if catalog == "vectors" {
                return Err(Error::unsupported(format!(
                    "cannot drop {} with SQL; use `jammi vectors drop {}`",
                    drop.name,
                    drop.name.table()
                )));
            }
            if sources.resolve(scope, catalog).is_some() {
                return Err(Error::unsupported(format!(
                    "cannot drop table {}: it belongs to source '{catalog}'; use `jammi source remove {catalog}`",
                    drop.name
                )));
            }
        }
    }
    Ok(())
}

/// Split user options into format options and storage-driver options.
pub fn split_options(options: &BTreeMap<String, String>) -> (BTreeMap<String, String>, StorageOptions) {
    options
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .partition(|(k, _)| file::FORMAT_OPTIONS.contains(&k.as_str()))
}

fn check_tenant_column(spec: &TableSpec, column: &str, source: &str) -> Result<()> {
    let schema = spec.table_schema();
    let field = schema.field_with_name(column).map_err(|_| Error::InvalidOption {
        source_name: source.to_string(),
        key: "tenant-column".to_string(),
        message: format!(
            "column '{column}' does not exist; columns are: {}",
            schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
        ),
    })?;
    let texty = matches!(field.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
        || matches!(field.data_type(), DataType::Dictionary(_, v) if v.as_ref() == &DataType::Utf8);
    if !texty {
        return Err(Error::InvalidOption {
            source_name: source.to_string(),
            key: "tenant-column".to_string(),
            message: format!("column '{column}' has type {}; a tenant column holds UUID text", field.data_type()),
        });
    }
    Ok(())
}

fn info(record: &SourceRecord, status: &str) -> SourceInfo {
    let tables = match remote::kind_of_url(&record.url) {
        Some(_) => serde_json::from_str::<remote::RemoteTables>(&record.table_spec)
            .map(|t| t.schemas.iter().flat_map(|(schema, tables)| tables.keys().map(move |table| format!("{}.{schema}.{table}", record.name))).collect())
            .unwrap_or_default(),
        None => serde_json::from_str::<TableSpec>(&record.table_spec)
            .map(|s| vec![format!("{}.{}.{}", record.name, crate::names::DEFAULT_SCHEMA, s.table)])
            .unwrap_or_default(),
    };
    SourceInfo {
        name: record.name.clone(),
        tenant: record.tenant,
        kind: record.kind.clone(),
        url: crate::redact::redact_url(&record.url),
        format: record.format.clone(),
        tables,
        tenant_column: record.tenant_column.clone(),
        options: record.options.iter().map(|(k, v)| (k.clone(), mask_secret(k, v))).collect(),
        status: status.to_string(),
    }
}

/// Hide values of options that look like credentials.
fn mask_secret(key: &str, value: &str) -> String {
    let k = key.to_ascii_lowercase();
    let secret = k.contains("secret")
        || k.contains("password")
        || k.contains("token")
        || k.contains("credential")
        || (k.ends_with("_key") && !k.ends_with("_key_id"));
    if secret { "***".to_string() } else { value.to_string() }
}

/// Build a source's SQL catalog, making its object store available to queries first.
pub(crate) fn build_source_catalog(ctx: &dyn EngineContext, record: &SourceRecord) -> Result<Arc<SourceCatalog>> {
    if remote::kind_of_url(&record.url).is_some() {
        return build_catalog(record);
    }
    let url = StorageUrl::parse(&record.url)?;
    let (_, storage_options) = split_options(&record.options);
    ctx.register_store(&url, &storage_options)?;
    build_catalog(record)
}
