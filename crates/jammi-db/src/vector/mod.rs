//! Vector tables: immutable Parquet data plus HNSW index segments, searched exactly or
//! approximately with pre-filtering, from Rust, the CLI and SQL.
//!
//! Parts, each in its own module: [`spec`] (persistent formats), [`input`] (validation of
//! user data), [`files`] (object-store I/O with digests), [`index`] (usearch segments),
//! [`loaded`] (tables in memory and their LRU cache), [`filter`] (predicate → allowed
//! keys), [`search`] (the planner), [`kernels`] (distances, top-k), [`write`] (append,
//! delete, compaction), [`recover`] (startup recovery), [`search_fn`] (the `vector_search`
//! table function and its execution plan), [`sql`] (the `vectors` catalog).
//!
//! Durability: an import ([`import`]) writes the catalog row as `building`, then each
//! segment's data file, index and vectors file and the manifest, verifies them, and only
//! then flips the row to `ready` (the commit point). Later changes write new files and move the catalog's manifest pointer with a
//! compare-and-swap. Opening a session removes abandoned `building` tables and rebuilds any
//! missing index from the data.

pub mod disk_cache;
pub mod files;
pub mod filter;
pub mod follow;
pub mod index;
pub mod input;
pub mod kernels;
pub mod loaded;
pub mod row_vectors;
mod recover;
pub mod search;
pub mod search_fn;
pub(crate) mod search_args;
pub mod spec;
pub(crate) mod create_sql;
pub mod sql;
mod text;
pub mod text_search;
pub mod fusion;
mod import;
mod write;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use parking_lot::RwLock;

pub use search::{SearchPath, SearchRequest};
pub use crate::embed::EmbeddingSource;
pub use crate::literal::parse_vector_text;
pub use spec::{Metric, Precision, TextIndexColumn};
pub use write::CompactionPolicy;
pub use fusion::{Fusion, HybridOptions};
pub use text_search::{HybridRequest, SearchMode, SearchQuery, TextSearchRequest};
pub(crate) use recover::recover;
pub(crate) use text::text_error;

use crate::catalog::{now_millis, Catalog, VectorTableRecord, VectorTableStatus};
use crate::error::{Error, Result};
use crate::context::EngineContext;
use crate::source::naming;
use crate::storage::{StorageOptions, StorageUrl};
use crate::tenant::{TenantId, TenantScope};
use files::TableFiles;
use loaded::{load_table, read_manifest, LoadedTable, VectorCache};
use spec::{Manifest, VectorTableSpec};
use write::Selection;

pub use crate::progress::{NoProgress, Progress};

/// What `vectors import` asks for.
#[derive(Debug, Clone)]
pub struct ImportSpec {
    /// Table name (`vectors.public.NAME`).
    pub name: String,
    /// Parquet file or directory (any storage URL).
    pub url: String,
    /// Column of unique ids (integer or text).
    pub id_column: String,
    /// Column of vectors (`FixedSizeList<Float32>` or `List<Float32>`).
    pub vector_column: String,
    /// Index precision.
    pub precision: Precision,
    /// Distance function.
    pub metric: Metric,
    /// HNSW connectivity.
    pub m: usize,
    /// HNSW build beam width.
    pub ef_construction: usize,
    /// Candidates per result before exact rescoring (default by precision).
    pub oversample: Option<usize>,
    /// Storage options for reading `url`.
    pub options: StorageOptions,
    /// Compute the vectors inside the engine: embed this text column with a registered
    /// embedding model instead of reading `vector_column` (which then names the new column).
    pub embed: Option<EmbedColumn>,
    /// Payload columns to index for full-text search (`text_search`, `hybrid_search`).
    pub text_columns: Vec<TextIndexColumn>,
}

/// `--embed COLUMN --model NAME[:VERSION]`: which text column to embed with which model.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedColumn {
    /// The text column.
    pub column: String,
    /// Model name.
    pub model: String,
    /// Version label or alias.
    pub version: String,
}

impl ImportSpec {
    /// Defaults: cosine at int8 (an 8-bit graph, candidates rescored in f32: see
    /// [`Precision::default_for`]; set `precision` too when changing `metric`), m = 16,
    /// ef_construction = 128.
    pub fn new(name: impl Into<String>, url: impl Into<String>, id_column: impl Into<String>, vector_column: impl Into<String>) -> Self {
        ImportSpec {
            name: name.into(),
            url: url.into(),
            id_column: id_column.into(),
            vector_column: vector_column.into(),
            precision: Precision::default_for(Metric::Cosine),
            metric: Metric::Cosine,
            m: 16,
            ef_construction: 128,
            oversample: None,
            options: StorageOptions::new(),
            embed: None,
            text_columns: Vec::new(),
        }
    }
}

/// A vector table as `vectors list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorTableInfo {
    /// Name.
    pub name: String,
    /// Owner (None = shared).
    pub tenant: Option<TenantId>,
    /// Live rows.
    pub rows: u64,
    /// Dimensions.
    pub dims: usize,
    /// Metric.
    pub metric: Metric,
    /// Precision.
    pub precision: Precision,
    /// Segments.
    pub segments: usize,
    /// Storage folder.
    pub location: String,
    /// The embedding model that made the vectors (`name:version`), for tables imported with
    /// `--embed`.
    pub model: Option<String>,
    /// Columns with a full-text index (`COLUMN:ANALYZER`).
    pub text_columns: Vec<String>,
}

/// A ready table known to this process.
#[derive(Debug)]
pub(crate) struct VectorEntry {
    pub record: VectorTableRecord,
    pub spec: VectorTableSpec,
    pub manifest: Manifest,
    pub files: TableFiles,
    pub provider: Arc<dyn datafusion::catalog::TableProvider>,
}

/// Process-wide vector state: ready tables by owner and name, loaded tables, and what
/// writes need (the catalog, the compaction policy).
#[derive(Debug)]
pub(crate) struct VectorState {
    pub tables: RwLock<HashMap<(Option<TenantId>, String), Arc<VectorEntry>>>,
    pub cache: VectorCache,
    pub catalog: Catalog,
    pub policy: CompactionPolicy,
    /// Embedding models, for text queries on tables that record their model.
    pub embed: Arc<crate::embed::EmbedState>,
    /// Woken when this process commits a change to a followed mutable table, so its
    /// embedding workers start at once instead of at their next poll.
    pub work_ready: Arc<tokio::sync::Notify>,
    /// The audit log every search is recorded in, when auditing is on.
    pub audit: Option<Arc<crate::audit::Auditor>>,
    /// This process's name as a holder of catalog leases (compactions).
    pub lease_holder: String,
}

impl VectorState {
    pub(crate) fn new(cache_bytes: usize, catalog: Catalog, policy: CompactionPolicy, embed: Arc<crate::embed::EmbedState>, audit: Option<Arc<crate::audit::Auditor>>) -> Self {
        let lease_holder = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        VectorState { tables: RwLock::new(HashMap::new()), cache: VectorCache::new(cache_bytes), catalog, policy, embed, work_ready: Arc::new(tokio::sync::Notify::new()), audit, lease_holder }
    }

    /// Whether searches in `scope` are audited.
    pub(crate) fn audits(&self, scope: TenantScope) -> bool {
        self.audit.as_ref().is_some_and(|a| a.audits(&crate::audit::chain_of(scope)))
    }

    /// The table `name` as `scope` resolves it: the tenant's own first, then shared.
    pub(crate) fn resolve(&self, scope: TenantScope, name: &str) -> Option<Arc<VectorEntry>> {
        crate::tenant::resolve_scoped(&self.tables.read(), scope, name)
    }

    /// Names visible in `scope`.
    pub(crate) fn visible_names(&self, scope: TenantScope) -> Vec<String> {
        let tables = self.tables.read();
        let mut names: Vec<String> = tables
            .keys()
            .filter(|(owner, _)| crate::tenant::visible(scope, *owner))
            .map(|(_, n)| n.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Load (or fetch from cache) the generation `entry` describes.
    pub(crate) async fn loaded(&self, entry: &VectorEntry) -> Result<Arc<LoadedTable>> {
        self.loaded_at(&entry.record, &entry.spec, &entry.files, &entry.manifest).await
    }

    /// Load (or fetch from cache) generation `record.generation`, described by `manifest`.
    pub(crate) async fn loaded_at(
        &self,
        record: &VectorTableRecord,
        spec: &VectorTableSpec,
        files: &TableFiles,
        manifest: &Manifest,
    ) -> Result<Arc<LoadedTable>> {
        if let Some(hit) = self.cache.get(&record.id, record.generation) {
            return Ok(hit);
        }
        let previous = self.cache.latest(&record.id);
        let table = Arc::new(load_table(&record.id, record.generation, spec, files, manifest, previous.as_deref()).await?);
        self.cache.insert(Arc::clone(&table));
        Ok(table)
    }

    /// Re-read `old`'s catalog row after a write and publish the new generation.
    pub(crate) async fn refresh(self: &Arc<Self>, old: &VectorEntry) -> Result<()> {
        let key = (old.record.tenant, old.record.name.clone());
        match self.catalog.vector_tables().get(&old.record.id).await? {
            Some(record) if record.status == VectorTableStatus::Ready => {
                let entry = build_entry(self, record, old.files.clone()).await?;
                self.tables.write().insert(key, Arc::new(entry));
            }
            _ => {
                self.tables.write().remove(&key);
            }
        }
        Ok(())
    }
}

/// True when `scope` may change `entry`: its owner, or the admin scope.
fn may_write(scope: TenantScope, entry: &VectorEntry) -> bool {
    scope == TenantScope::Admin || entry.record.tenant == scope.owner()
}

pub(crate) fn write_denied(scope: TenantScope, entry: &VectorEntry) -> Error {
    let owner = match entry.record.tenant {
        Some(t) => format!("tenant {t}"),
        None => "no tenant (it is shared)".to_string(),
    };
    Error::PermissionDenied {
        message: format!(
            "vector table '{}' belongs to {owner}; only its owner{} may change it",
            entry.record.name,
            if scope.owner().is_some() { " (or the admin scope)" } else { "" }
        ),
    }
}

/// Result of a search.
#[derive(Debug)]
pub struct SearchResult {
    /// id, payload columns, `_distance`, `_rank` — best first.
    pub batch: RecordBatch,
    /// The path the planner chose.
    pub path: SearchPath,
    /// The search's id in the audit log, when auditing is on.
    pub query_id: Option<String>,
    /// The model (name, version) that embedded the query, if one did.
    pub model: Option<(String, String)>,
}

/// Pause point for crash tests: when `JAMMI_PAUSE_AT` names this point, announce it on
/// stderr and wait (the test then kills the process with SIGKILL).
pub(crate) fn pause_point(name: &str) {
    if std::env::var("JAMMI_PAUSE_AT").as_deref() == Ok(name) {
        eprintln!("jammi: paused at {name}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// The vector tables of one session: `session.vectors()`.
#[derive(Debug)]
pub struct Vectors<'a> {
    ctx: &'a dyn EngineContext,
    state: &'a Arc<VectorState>,
    mutable: &'a Arc<crate::mutable::MutableState>,
}

impl<'a> Vectors<'a> {
    pub(crate) fn new(ctx: &'a dyn EngineContext, state: &'a Arc<VectorState>, mutable: &'a Arc<crate::mutable::MutableState>) -> Self {
        Vectors { ctx, state, mutable }
    }

    fn state(&self) -> &Arc<VectorState> {
        self.state
    }

    /// What every new table must satisfy: a valid name its owner does not use yet, and sane
    /// index options.
    async fn check_new_table(&self, name: &str, m: usize, ef_construction: usize, oversample: Option<usize>) -> Result<()> {
        let invalid = |message: &str| Error::InvalidVectors { table: name.to_string(), message: message.to_string() };
        naming::validate_source_name(name).map_err(|e| match e {
            Error::InvalidName { name, message } => Error::InvalidName { name, message: message.replace("source", "vector table") },
            other => other,
        })?;
        if !(2..=256).contains(&m) {
            return Err(invalid("--m must be between 2 and 256"));
        }
        if ef_construction == 0 {
            return Err(invalid("--ef-construction must be at least 1"));
        }
        crate::security::limits::at_most("--ef-construction", ef_construction, crate::security::limits::MAX_EF)?;
        if oversample == Some(0) {
            return Err(invalid("the oversample factor must be at least 1"));
        }
        let scope = self.ctx.scope();
        self.ctx.sync_catalog().await?;
        if self.state().resolve(scope, name).filter(|e| e.record.tenant == scope.owner()).is_some() {
            return Err(Error::InvalidName { name: name.to_string(), message: "a vector table with this name already exists; drop it first or pick another name".into() });
        }
        Ok(())
    }

    /// A `building` record for new table `name` of the caller's owner, under a fresh folder
    /// of the storage root, and that folder's files.
    fn new_record(&self, name: &str, spec: &VectorTableSpec) -> Result<(VectorTableRecord, TableFiles)> {
        let table_id = uuid::Uuid::new_v4().to_string();
        let root = StorageUrl::parse(&self.ctx.config().storage_root())?.as_dir();
        let location = format!("{}vectors/{table_id}/", root.url());
        let files = table_files(self.ctx, &location)?;
        let now = now_millis();
        let record = VectorTableRecord {
            id: table_id,
            tenant: self.ctx.scope().owner(),
            name: name.to_string(),
            status: VectorTableStatus::Building,
            location,
            spec: serde_json::to_string(spec).map_err(Error::internal)?,
            generation: 0,
            manifest: String::new(),
            created_at: now,
            updated_at: now,
        };
        Ok((record, files))
    }

    /// Add the rows of a Parquet file or directory as new segments (several when they
    /// exceed `vectors.segment_mb`, streamed as an import is). The rows are searchable when
    /// this returns. Ids must be new; columns must match the table's. On a table imported
    /// with an embedding model, rows without `vector_column` are embedded from the recorded
    /// text column with the model's recorded files.
    pub async fn append(&self, name: &str, url: &str, id_column: &str, vector_column: &str, options: &StorageOptions, progress: &dyn Progress) -> Result<u64> {
        let entry = self.writable(name).await?;
        follow::refuse_direct_write(&entry)?;
        let input = self.input_stream(url, options, name).await?;
        // A table that records its model embeds appended rows that come without vectors,
        // with the very files that made its other vectors (the whole input, as import does).
        let without_vectors = input.schema().column_with_name(vector_column).is_none();
        let (mut opened, embedded) = match entry.spec.embedding.as_ref().filter(|_| without_vectors) {
            Some(source) => {
                let label = format!("{}:{}", source.model, source.version);
                let model = self.state().embed.load(&label, &source.artifact_prefix, &source.metadata, Some(entry.spec.dims as u32)).await?;
                let batches = datafusion::physical_plan::common::collect(input).await?;
                (None, Some(crate::embed::embed_batches(&model, name, batches, &source.column, vector_column, progress).await?))
            }
            None => (Some(input), None),
        };
        // Another writer committing first costs this one its files and a second read of the
        // input (the keys of the new rows follow the table's newest generation).
        for _ in 0..write::MAX_ATTEMPTS {
            let input = match (&embedded, opened.take()) {
                (Some(batches), _) => input::stream_of(name, batches.clone())?,
                (None, Some(input)) => input,
                (None, None) => self.input_stream(url, options, name).await?,
            };
            if let Some(added) = write::append(self.state(), &entry, input, id_column, vector_column, progress).await? {
                self.after_write(&entry, progress).await?;
                return Ok(added);
            }
        }
        Err(write::conflict(name))
    }

    /// The id and vector column names `append` reads by default: those of the data the table
    /// was imported from (`id` and `embedding` for tables imported before they were recorded).
    pub async fn source_columns(&self, name: &str) -> Result<(String, String)> {
        self.ctx.sync_catalog().await?;
        let entry = self.resolve(name)?;
        Ok(entry.spec.source_columns.clone().unwrap_or_else(|| ("id".to_string(), "embedding".to_string())))
    }

    /// Delete rows by id (tombstones). Returns how many rows were deleted; unknown ids are
    /// ignored.
    pub async fn delete_ids(&self, name: &str, ids: &[String]) -> Result<u64> {
        let entry = self.writable(name).await?;
        follow::refuse_direct_write(&entry)?;
        let deleted = write::delete(self.state(), &entry, &Selection::Ids(ids.to_vec())).await?;
        self.after_write(&entry, &NoProgress).await?;
        Ok(deleted)
    }

    /// Rewrite the table into one segment without its deleted rows, even when the policy
    /// would not yet do it.
    pub async fn compact(&self, name: &str, progress: &dyn Progress) -> Result<()> {
        let entry = self.writable(name).await?;
        write::compact_if_due(self.state(), &entry, true, progress).await?;
        self.ctx.sync_catalog().await
    }

    /// Ready tables visible in the current scope.
    pub async fn list(&self) -> Result<Vec<VectorTableInfo>> {
        self.ctx.sync_catalog().await?;
        let scope = self.ctx.scope();
        let tables = self.state().tables.read();
        let mut out: Vec<VectorTableInfo> = tables
            .values()
            .filter(|e| e.record.tenant.is_none() || e.record.tenant == scope.owner() || scope == TenantScope::Admin)
            .map(|e| info_of(&e.record, &e.spec, &e.manifest))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.tenant.cmp(&b.tenant)));
        Ok(out)
    }

    /// Drop a table: the catalog row first (the commit point), then its files.
    pub async fn drop(&self, name: &str) -> Result<()> {
        let entry = self.writable(name).await?;
        self.ctx.catalog().vector_tables().delete(&entry.record.id).await?;
        self.ctx.catalog().follows().delete(&entry.record.id).await?;
        self.state().cache.remove(&entry.record.id);
        entry.files.delete_all().await?;
        self.ctx.sync_catalog().await
    }

    /// Search `name` for the request's nearest neighbours.
    pub async fn search(&self, name: &str, request: &SearchRequest) -> Result<SearchResult> {
        self.ctx.sync_catalog().await?;
        let entry = self.resolve(name)?;
        search_entry(self.state(), self.ctx.scope(), &entry, request).await
    }

    /// Many vector searches of `name` in one call (a query file, a batch of embeddings):
    /// one catalog check and one table lookup for all of them, and the results in one
    /// batch — a `query` column (each request's position in `requests`) before the columns
    /// of [`Vectors::search`]'s result, each search's rows best first. Every request is
    /// checked as a single search would be; with search auditing on, each is recorded as its
    /// own search.
    pub async fn search_batch(&self, name: &str, requests: &[SearchRequest]) -> Result<RecordBatch> {
        use crate::security::limits::{at_most, MAX_BATCH_QUERIES, MAX_BATCH_RESULT_ROWS};
        at_most("query vectors in one batch", requests.len(), MAX_BATCH_QUERIES)?;
        at_most("result rows of one batched search (the sum of k)", requests.iter().map(|r| r.k).fold(0, usize::saturating_add), MAX_BATCH_RESULT_ROWS)?;
        self.ctx.sync_catalog().await?;
        let entry = self.resolve(name)?;
        let (state, scope) = (self.state(), self.ctx.scope());
        let audited = state.audit.as_ref().is_some_and(|a| a.audits(&crate::audit::chain_of(scope)));
        if audited || requests.iter().any(|r| r.text.is_some()) {
            // Text is embedded per query, and each audited search gets its own record.
            let mut batches = Vec::with_capacity(requests.len());
            for (n, request) in requests.iter().enumerate() {
                batches.push(search::with_query_column(search_entry(state, scope, &entry, request).await?.batch, n)?);
            }
            let table = state.loaded(&entry).await?;
            return datafusion::arrow::compute::concat_batches(&search::batch_schema(&table), &batches).map_err(Error::internal);
        }
        for request in requests {
            request.check_limits()?;
        }
        // Every search of the batch sees this one generation of the table.
        let table = state.loaded(&entry).await?;
        let mut results = Vec::with_capacity(requests.len());
        for request in requests {
            results.push(hits_in(&table, &entry, request).await?.0);
        }
        search::batch_result(&table, &results)
    }

    /// The rows of `name` best matching a full-text query (BM25), on a table with text
    /// columns.
    pub async fn text_search(&self, name: &str, request: &TextSearchRequest) -> Result<SearchResult> {
        self.ctx.sync_catalog().await?;
        let entry = self.resolve(name)?;
        text_search::text_search_entry(self.state(), self.ctx.scope(), &entry, request).await
    }

    /// Vector and text search of `name` fused into one ranking, with provenance columns.
    pub async fn hybrid_search(&self, name: &str, request: &HybridRequest) -> Result<SearchResult> {
        self.ctx.sync_catalog().await?;
        let entry = self.resolve(name)?;
        text_search::hybrid_search_entry(self.state(), self.ctx.scope(), &entry, request).await
    }

    /// A vector, text or hybrid search as the CLI and `/v1/search` describe it (see
    /// [`SearchQuery::mode`] for how the mode is chosen).
    pub async fn search_any(&self, name: &str, query: &SearchQuery) -> Result<SearchResult> {
        self.ctx.sync_catalog().await?;
        let entry = self.resolve(name)?;
        let request = query.resolve(&entry)?;
        text_search::run_query(self.state(), self.ctx.scope(), &entry, &request).await
    }

    /// Query vectors from column `column` of a Parquet file (any storage URL), in file order.
    pub async fn read_query_vectors(&self, url: &str, column: &str, options: &StorageOptions) -> Result<Vec<Vec<f32>>> {
        let batches = self.read_input(url, options, "queries").await?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        crate::security::limits::at_most("query vectors in one batch", rows, crate::security::limits::MAX_BATCH_QUERIES)?;
        input::vectors_of(&batches, column, url)
    }

    /// Number of tables currently held in memory (for tests of the cache).
    pub fn cached_tables(&self) -> usize {
        self.state().cache.len()
    }

    fn resolve(&self, name: &str) -> Result<Arc<VectorEntry>> {
        let scope = self.ctx.scope();
        self.state().resolve(scope, name).ok_or_else(|| Error::Unknown { kind: crate::error::ObjectKind::VectorTable, name: name.to_string(), scope: scope.describe() })
    }

    async fn writable(&self, name: &str) -> Result<Arc<VectorEntry>> {
        self.ctx.sync_catalog().await?;
        let entry = self.resolve(name)?;
        let scope = self.ctx.scope();
        if !may_write(scope, &entry) {
            return Err(write_denied(scope, &entry));
        }
        Ok(entry)
    }

    async fn after_write(&self, entry: &VectorEntry, progress: &dyn Progress) -> Result<()> {
        write::compact_if_due(self.state(), entry, false, progress).await?;
        self.ctx.sync_catalog().await
    }

    async fn read_input(&self, url: &str, options: &StorageOptions, name: &str) -> Result<Vec<RecordBatch>> {
        Ok(datafusion::physical_plan::common::collect(self.input_stream(url, options, name).await?).await?)
    }

    fn lock_file(&self, table_id: &str) -> Result<std::fs::File> {
        let path = lock_path(self.ctx.config(), table_id);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        file.lock().map_err(|e| Error::io(&path, e))?;
        Ok(file)
    }
}

/// The lock file an import holds while it runs.
pub(crate) fn lock_path(config: &crate::config::Config, table_id: &str) -> PathBuf {
    config.data_dir.join("locks").join(format!("vector-{table_id}.lock"))
}

/// The files of a table at `location`, under the storage root (so with its options).
pub(crate) fn table_files(ctx: &dyn EngineContext, location: &str) -> Result<TableFiles> {
    let url = StorageUrl::parse(location)?;
    let store = ctx.register_store(&url, &ctx.config().storage.options)?;
    let cache = if url.is_local() { None } else { disk_cache::DiskCache::for_config(ctx.config()) };
    Ok(TableFiles::new(store, url.object_path()?, url.url().to_string()).with_local_root(url.local_path()).with_disk_cache(cache))
}

/// Search one resolved table.
pub(crate) async fn search_entry(state: &VectorState, scope: TenantScope, entry: &VectorEntry, request: &SearchRequest) -> Result<SearchResult> {
    let (table, scored, path) = vector_hits(state, scope, entry, request).await?;
    let model = request.text.as_ref().and(entry.spec.embedding.as_ref()).map(|e| (e.model.clone(), e.version.clone()));
    let mut result = SearchResult { batch: search::result_batch(&table, &scored)?, path, query_id: None, model };
    if let Some(audit) = state.audit.as_ref().filter(|a| a.audits(&crate::audit::chain_of(scope))) {
        let lineage = serde_json::json!({
            "table": entry.record.name, "k": request.k, "filter": request.filter, "ef": request.ef, "exact": request.exact,
            "query": match &request.text { Some(text) => serde_json::json!({"text": text}), None => serde_json::json!({"vector": crate::audit::record::vector_lineage(&request.vector)}) },
        });
        result.query_id = audit.record(scope, crate::audit::SearchAudit { kind: "vector", model: result.model.clone(), lineage }, &result.batch).await?;
    }
    Ok(result)
}

/// The nearest rows of one resolved table, as scored keys of the generation searched.
pub(crate) async fn vector_hits(state: &VectorState, scope: TenantScope, entry: &VectorEntry, request: &SearchRequest) -> Result<(Arc<LoadedTable>, Vec<kernels::Scored>, SearchPath)> {
    // Before the filter is evaluated or the table loaded.
    request.check_limits()?;
    let embedded;
    let request = match &request.text {
        None => request,
        Some(text) => {
            let source = entry.spec.embedding.as_ref().ok_or_else(|| Error::InvalidVectors {
                table: entry.record.name.clone(),
                message: "this table has no embedding model, so it cannot be searched by text; give a query vector, or import the table with --embed COLUMN --model NAME".into(),
            })?;
            let vector = state.embed.embed_query(scope, source, text).await?;
            embedded = SearchRequest { vector: vector.as_ref().clone(), text: None, ..request.clone() };
            &embedded
        }
    };
    let table = state.loaded(entry).await?;
    let (scored, path) = hits_in(&table, entry, request).await?;
    Ok((table, scored, path))
}

/// The nearest rows of a loaded table for a vector request (limits already checked).
async fn hits_in(table: &LoadedTable, entry: &VectorEntry, request: &SearchRequest) -> Result<(Vec<kernels::Scored>, SearchPath)> {
    let allowed = match &request.filter {
        Some(f) if !f.trim().is_empty() => Some(filter::allowed_keys(table, f).await?),
        _ => None,
    };
    search::search(table, request, allowed.as_deref()).map_err(|e| match e {
        Error::InvalidArgument { message, .. } => Error::InvalidVectors { table: entry.record.name.clone(), message },
        other => other,
    })
}

fn info_of(record: &VectorTableRecord, spec: &VectorTableSpec, manifest: &Manifest) -> VectorTableInfo {
    VectorTableInfo {
        name: record.name.clone(),
        tenant: record.tenant,
        rows: manifest.live_rows(),
        dims: spec.dims,
        metric: spec.metric,
        precision: spec.precision,
        segments: manifest.segments.len(),
        location: record.location.clone(),
        model: spec.embedding.as_ref().map(|e| format!("{}:{}", e.model, e.version)),
        text_columns: spec.text_columns.iter().map(|c| format!("{}:{}", c.name, c.analyzer)).collect(),
    }
}

/// Build the in-memory entry of a ready table: read its manifest, rebuild any missing index
/// from its data (the Parquet files are the source of truth), make its SQL table. Sessions
/// do this once per table generation, starting with their first sync at open.
pub(crate) async fn build_entry(state: &Arc<VectorState>, record: VectorTableRecord, files: TableFiles) -> Result<VectorEntry> {
    let spec = spec::parse_spec(&record.spec, &record.name)?;
    let manifest = read_manifest(&files, &record.manifest).await?;
    for segment in &manifest.segments {
        loaded::repair_segment(&files, &spec, segment).await?;
    }
    let provider = sql::rows_table(state, &record, &spec, &manifest, &files)?;
    Ok(VectorEntry { record, spec, manifest, files, provider })
}

/// `vectors list` as a record batch (name, tenant, rows, dims, metric, precision, segments,
/// location, model, text_index).
pub fn tables_to_batch(tables: &[VectorTableInfo]) -> Result<RecordBatch> {
    use datafusion::arrow::array::{ArrayRef, StringArray, UInt64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let text = |f: &dyn Fn(&VectorTableInfo) -> String| -> ArrayRef { Arc::new(StringArray::from_iter_values(tables.iter().map(f))) };
    let number = |f: &dyn Fn(&VectorTableInfo) -> u64| -> ArrayRef { Arc::new(UInt64Array::from_iter_values(tables.iter().map(f))) };
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("tenant", DataType::Utf8, true),
        Field::new("rows", DataType::UInt64, false),
        Field::new("dims", DataType::UInt64, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("precision", DataType::Utf8, false),
        Field::new("segments", DataType::UInt64, false),
        Field::new("location", DataType::Utf8, false),
        Field::new("model", DataType::Utf8, true),
        Field::new("text_index", DataType::Utf8, true),
    ]));
    let tenants: ArrayRef = Arc::new(StringArray::from(tables.iter().map(|t| t.tenant.map(|x| x.to_string())).collect::<Vec<_>>()));
    RecordBatch::try_new(
        schema,
        vec![
            text(&|t| t.name.clone()),
            tenants,
            number(&|t| t.rows),
            number(&|t| t.dims as u64),
            text(&|t| t.metric.to_string()),
            text(&|t| t.precision.to_string()),
            number(&|t| t.segments as u64),
            text(&|t| t.location.clone()),
            Arc::new(StringArray::from(tables.iter().map(|t| t.model.clone()).collect::<Vec<_>>())),
            Arc::new(StringArray::from(tables.iter().map(|t| (!t.text_columns.is_empty()).then(|| t.text_columns.join(", "))).collect::<Vec<_>>())),
        ],
    )
    .map_err(|e| Error::Storage(e.to_string()))
}
