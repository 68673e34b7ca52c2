//! [`Session`]: the engine's entry point — a thin facade over the [`Engine`] it opened. It
//! binds a tenant, parses and runs SQL (handling `BEGIN`/`COMMIT`/`ROLLBACK` itself), and
//! hands out the parts' handles (`session.sources()`, `vectors()`, …), passing itself down
//! as their [`EngineContext`](crate::context::EngineContext).

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};

use datafusion::dataframe::DataFrame;
use datafusion::execution::context::{SessionContext, SessionState};
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use object_store::ObjectStore;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::engine::Engine;
use crate::engine_catalog::EngineCatalog;
use crate::ephemeral::EphemeralScope;
use crate::error::{Error, Result};
use crate::mutable::{self, classify::{Claimed, Control}};
use crate::security::{self, Access, SessionSettings};
use crate::source::{self, SourceCatalogs, Sources};
use crate::statement::SqlStatement;
use crate::storage::{StorageOptions, StorageRegistry, StorageUrl};
use crate::tenant::{self, TenantId, TenantScope};
use crate::topic::Topics;
use crate::txn::WriteTxn;
use crate::vector::create_sql::CreateVectorTable;
use crate::vector::Vectors;

/// The batches of `rows`, refused with a limit error as soon as they hold more than `limit`
/// bytes (the import needs them all in memory; a client must not be able to ask for more).
async fn collect_bounded(mut rows: datafusion::execution::SendableRecordBatchStream, argument: &str, limit: usize) -> Result<Vec<datafusion::arrow::array::RecordBatch>> {
    use futures::StreamExt;
    let (mut batches, mut bytes) = (Vec::new(), 0usize);
    while let Some(batch) = rows.next().await {
        let batch = batch?;
        bytes += batch.get_array_memory_size();
        security::limits::at_most(argument, bytes, limit)?;
        batches.push(batch);
    }
    Ok(batches)
}

/// `SET` of one of the engine's own session settings.
fn session_setting(statement: &Statement) -> Option<Result<security::SessionSetting>> {
    use datafusion::sql::sqlparser::ast::Statement as Sql;
    match statement {
        Statement::Statement(s) => match s.as_ref() {
            Sql::Set(set) => security::settings::parse_session_setting(set),
            _ => None,
        },
        _ => None,
    }
}

/// An open jammi-db engine. Cheap to clone; clones share everything but the sticky tenant
/// binding, which belongs to each handle.
#[derive(Clone)]
pub struct Session {
    engine: Arc<Engine>,
    sticky: TenantScope,
    /// The transaction opened by `BEGIN` on this handle (and its clones), until `COMMIT`
    /// or `ROLLBACK`.
    txn: Arc<Mutex<Option<Arc<WriteTxn>>>>,
    /// Whether this handle serves a server request (see [`Session::restricted`]).
    restricted: bool,
    /// `SET idle_in_transaction_timeout` and the like, per handle (and its clones).
    settings: Arc<Mutex<SessionSettings>>,
    /// The ephemeral session this handle (and its clones) is in, if any: its tables are
    /// dropped when it ends (see [`crate::ephemeral`]).
    ephemeral: Arc<Mutex<Option<Arc<EphemeralScope>>>>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("data_dir", &self.engine.config.data_dir)
            .field("catalog", &self.engine.catalog.backend().display_url())
            .field("scope", &self.sticky)
            .finish()
    }
}

impl Session {
    /// Open the engine for a data directory with configuration from the environment and
    /// `<data_dir>/jammi.toml`.
    pub async fn open_dir(data_dir: impl AsRef<Path>) -> Result<Self> {
        Self::open(Config::load(data_dir.as_ref(), None)?).await
    }

    /// Open the engine: create the data directory, connect and migrate the catalog, and
    /// restore every registered source.
    pub async fn open(config: Config) -> Result<Self> {
        let engine = Arc::new(Engine::open(config).await?);
        let session = Session {
            sticky: TenantScope::Unbound,
            txn: Arc::new(Mutex::new(None)),
            restricted: false,
            settings: Arc::new(Mutex::new(SessionSettings::from_config(&engine.config.security))),
            ephemeral: Arc::new(Mutex::new(None)),
            engine,
        };
        crate::vector::recover(&session).await?;
        // Sessions of a process that died: their tables go now, not at the first sweep.
        session.engine.ephemeral.recover_expired().await?;
        session.engine.ephemeral.spawn_sweeper();
        session.sync_catalog().await?;
        session.refresh_databases().await;
        Ok(session)
    }

    /// Opening reads database sources' tables again, so new tables and columns appear. A
    /// database that does not answer keeps its last known tables (`source list` says why).
    async fn refresh_databases(&self) {
        let Ok(records) = self.engine.catalog.sources().list_all().await else { return };
        for record in records {
            let Some(kind) = crate::source::remote::kind_of_url(&record.url) else { continue };
            let refreshed = tokio::time::timeout(std::time::Duration::from_secs(5), crate::source::refresh_record(self, &record, kind)).await;
            if !matches!(refreshed, Ok(Ok(()))) {
                tracing::warn!(source = %record.name, "could not refresh the database source's tables at open; serving the last known ones");
            }
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.engine.config
    }

    /// The metadata catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.engine.catalog
    }

    /// Sources: add, list, remove.
    pub fn sources(&self) -> Sources<'_> {
        Sources::new(self, &self.engine.sources)
    }

    /// A handle bound (sticky) to `tenant`, or unbound for `None`, with a transaction and
    /// settings of its own.
    pub fn with_tenant(&self, tenant: Option<TenantId>) -> Session {
        let sticky = tenant.map(TenantScope::Tenant).unwrap_or(TenantScope::Unbound);
        Session {
            engine: Arc::clone(&self.engine),
            sticky,
            txn: Arc::new(Mutex::new(None)),
            restricted: self.restricted,
            settings: Arc::new(Mutex::new(SessionSettings::from_config(&self.engine.config.security))),
            ephemeral: Arc::new(Mutex::new(None)),
        }
    }

    /// A new handle in an ephemeral session of this handle's tenant, idle `timeout` at most
    /// (the configured default when `None`): tables it creates are private to it and
    /// dropped exactly once when it ends — [`EphemeralSession::close`], the drop of its
    /// last handle, the timeout, or (after a crash) the next process's recovery.
    pub async fn ephemeral(&self, timeout: Option<std::time::Duration>) -> Result<EphemeralSession> {
        let session = Session { sticky: self.sticky, ..self.with_tenant(None) };
        session.begin_ephemeral(timeout).await?;
        Ok(EphemeralSession { session })
    }

    /// Make this handle (and its clones) an ephemeral session.
    async fn begin_ephemeral(&self, timeout: Option<std::time::Duration>) -> Result<()> {
        if self.ephemeral_scope().is_some() {
            return Err(Error::transaction_state("this session is already ephemeral; END EPHEMERAL first"));
        }
        if self.open_transaction().is_some() {
            return Err(Error::transaction_state("BEGIN EPHEMERAL cannot run inside a transaction; COMMIT or ROLLBACK first"));
        }
        let scope = EphemeralScope::open(&self.engine.ephemeral, self.scope().owner(), timeout, Arc::clone(&self.txn)).await?;
        *self.ephemeral.lock().unwrap_or_else(|p| p.into_inner()) = Some(scope);
        Ok(())
    }

    /// End this handle's ephemeral session, dropping its tables (an error when it is not in one).
    async fn end_ephemeral(&self) -> Result<Option<crate::ephemeral::Ended>> {
        let scope = self.ephemeral.lock().unwrap_or_else(|p| p.into_inner()).take();
        match scope {
            Some(scope) => scope.end(crate::ephemeral::Ending::Closed).await,
            None => Err(Error::transaction_state("this session is not ephemeral; BEGIN EPHEMERAL starts one")),
        }
    }

    pub(crate) fn is_ephemeral(&self) -> bool {
        self.ephemeral.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    fn ephemeral_scope(&self) -> Option<Arc<EphemeralScope>> {
        self.ephemeral.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// In an ephemeral session: note the activity (refused once it ended) and point the
    /// statement's mutable-table names at the session's own tables.
    pub(crate) async fn ephemeral_rewrite(&self, statement: &SqlStatement) -> Result<Option<SqlStatement>> {
        let Some(scope) = self.ephemeral_scope() else { return Ok(None) };
        scope.touch().await?;
        self.sync_catalog().await?;
        let mut rewritten = statement.clone();
        let (txn, scope_now) = (self.open_transaction(), self.scope());
        crate::ephemeral::names::rewrite(&mut rewritten.0, scope.id(), |name| self.engine.mutable.get_for(scope_now, name, txn.as_deref(), Some(scope.id())).is_some())?;
        Ok(Some(rewritten))
    }

    /// This handle, restricted as every server request is: no statement may name a location
    /// or change engine settings, whatever its tenant (see [`crate::security::policy`]).
    pub fn restricted(mut self) -> Session {
        self.restricted = true;
        self
    }

    /// What statements run on this handle may do: restricted for server requests and
    /// tenant-bound scopes, and for the operator too when `[security] operator_locations`
    /// is false.
    pub fn access(&self) -> Access {
        let tenant_bound = matches!(self.scope(), TenantScope::Tenant(_));
        if self.restricted || tenant_bound || !self.engine.config.security.operator_locations {
            Access::Restricted
        } else {
            Access::Operator
        }
    }

    /// Bind this handle to `tenant` (sticky), or unbind it with `None`.
    pub fn bind_tenant(&mut self, tenant: Option<TenantId>) {
        self.sticky = tenant.map(TenantScope::Tenant).unwrap_or(TenantScope::Unbound);
    }

    /// The scope queries planned now run in: the task-local binding
    /// ([`tenant::with_tenant`]) if set, else this handle's sticky binding.
    pub fn scope(&self) -> TenantScope {
        tenant::current_task_scope().unwrap_or(self.sticky)
    }

    /// Run `f` in the admin scope: queries see every tenant's rows. The scope ends with the
    /// closure's future; nothing outside it is affected.
    pub async fn admin<F, Fut, T>(&self, f: F) -> T
    where
        F: FnOnce(Session) -> Fut,
        Fut: Future<Output = T>,
    {
        tenant::with_scope(TenantScope::Admin, f(self.clone())).await
    }

    /// Split `sql` into statements (`;`-separated). Syntax errors are reported before
    /// anything runs.
    pub fn parse(&self, sql: &str) -> Result<Vec<SqlStatement>> {
        // `BEGIN EPHEMERAL …` / `END EPHEMERAL`: SQL has no syntax for them; they stand for
        // `SET ephemeral_session`.
        let translated = security::settings::ephemeral_statement(sql);
        let sql = translated.as_deref().unwrap_or(sql);
        // Long vector literals skip the tokenizer when the short text parses to the same tree.
        let lifted = crate::vector_literals::lift(sql).and_then(|lifted| {
            let mut statements: Vec<_> = DFParser::parse_sql_with_dialect(&lifted.text, &GenericDialect {}).ok()?.into_iter().collect();
            crate::vector_literals::restore(&mut statements, lifted.literals).then_some(statements)
        });
        let statements = match lifted {
            Some(statements) => statements.into(),
            None => DFParser::parse_sql_with_dialect(sql, &GenericDialect {}).map_err(|e| Error::Query(format!("SQL syntax error: {e}")))?,
        };
        if statements.is_empty() {
            return Err(Error::invalid("SQL", "no SQL statement given"));
        }
        Ok(statements.into_iter().map(SqlStatement).collect())
    }

    /// Plan and start one statement. DDL takes effect now; queries run when the returned
    /// frame is collected or streamed.
    pub async fn run(&self, statement: &SqlStatement) -> Result<DataFrame> {
        let access = self.access();
        security::check_statement(&statement.0, access)?;
        self.check_transaction_alive(&statement.0)?;
        if let Some(setting) = session_setting(&statement.0) {
            match setting? {
                security::SessionSetting::EphemeralSession(Some(timeout)) => self.begin_ephemeral(timeout).await?,
                security::SessionSetting::EphemeralSession(None) => {
                    self.end_ephemeral().await?;
                }
                setting => {
                    let configured = self.engine.config.security.idle_in_transaction_timeout();
                    self.settings.lock().unwrap_or_else(|p| p.into_inner()).apply(setting, access, configured)?;
                }
            }
            return Ok(self.query_context(self.scope()).read_empty()?);
        }
        let rewritten = self.ephemeral_rewrite(statement).await?;
        let ephemeral = rewritten.is_some();
        let statement = rewritten.as_ref().unwrap_or(statement);
        self.sync_catalog().await?;
        let scope = self.scope();
        if let Some(claimed) = mutable::classify::claim(&statement.0)? {
            return match claimed {
                Claimed::Transaction(control) => {
                    self.control_transaction(control).await?;
                    Ok(self.query_context(scope).read_empty()?)
                }
                Claimed::VectorTable(create, name) => {
                    if self.open_transaction().is_some() {
                        return Err(Error::transaction_state(format!("CREATE TABLE vectors.public.{name} cannot run inside a transaction; COMMIT or ROLLBACK first")));
                    }
                    match crate::vector::create_sql::parse(create, &name)? {
                        CreateVectorTable::Follow(spec) => {
                            self.vectors().follow(spec, &crate::vector::NoProgress).await?;
                        }
                        CreateVectorTable::FromQuery(spec, query) => {
                            // The query runs as any statement of this caller would: the same
                            // policy, tenant and limits.
                            let query = SqlStatement(Statement::Statement(Box::new(datafusion::sql::sqlparser::ast::Statement::Query(Box::new(query.clone())))));
                            let rows = Box::pin(self.run(&query)).await?.execute_stream().await?;
                            let batches = collect_bounded(rows, "rows of CREATE TABLE vectors.public.T AS SELECT (bytes)", security::limits::MAX_QUERY_IMPORT_BYTES).await?;
                            self.vectors().import_rows(spec, batches, &crate::vector::NoProgress).await?;
                        }
                    }
                    Ok(self.query_context(scope).read_empty()?)
                }
                other => mutable::classify::run(self, &self.engine.mutable, scope, other).await,
            };
        }
        // Boxed: planning futures are large, and debug builds run tests on small stacks.
        // (Not in an ephemeral session: its plans name tables no other session may reach.)
        if !ephemeral {
            if let Some(frame) = Box::pin(crate::plan_cache::run_shared_plan(self, statement, scope)).await? {
                return Ok(frame);
            }
        }
        let ctx = self.query_context(scope);
        let plan = ctx.state().statement_to_plan(statement.0.clone()).await?;
        self.execute_plan(scope, &ctx, plan).await
    }

    /// An `EXPLAIN` answer without storage locations (file lists, the data directory, the
    /// storage root), for restricted callers.
    async fn redacted(&self, ctx: &SessionContext, frame: DataFrame) -> Result<DataFrame> {
        use datafusion::arrow::array::{ArrayRef, AsArray, StringArray};
        let config = &self.engine.config;
        let root = config.storage_root();
        let secrets = vec![config.data_dir.display().to_string(), root.trim_start_matches("file://").to_string(), root];
        let mut out = Vec::new();
        for batch in frame.collect().await? {
            let columns = batch
                .columns()
                .iter()
                .map(|c| match c.as_string_opt::<i32>() {
                    Some(text) => Arc::new(text.iter().map(|v| v.map(|v| security::redact_plan_text(v, &secrets))).collect::<StringArray>()) as ArrayRef,
                    None => Arc::clone(c),
                })
                .collect();
            out.push(datafusion::arrow::array::RecordBatch::try_new(batch.schema(), columns).map_err(Error::internal)?);
        }
        Ok(ctx.read_batches(out)?)
    }

    /// A transaction rolled back for idling answers every statement but `ROLLBACK` and
    /// `COMMIT` (which end it) with the reason, as PostgreSQL does.
    fn check_transaction_alive(&self, statement: &Statement) -> Result<()> {
        let Some(txn) = self.open_transaction() else { return Ok(()) };
        match txn.timed_out() {
            None => {
                txn.touch();
                Ok(())
            }
            Some(timeout_ms) => match mutable::classify::claim(statement) {
                Ok(Some(Claimed::Transaction(Control::Commit | Control::Rollback))) => Ok(()),
                _ => Err(Error::IdleInTransactionTimeout { timeout_ms }),
            },
        }
    }

    pub(crate) fn plan_cache(&self) -> &crate::plan_cache::PlanCache {
        &self.engine.plans
    }

    /// Plan one SQL statement with `$n` parameters for repeated runs. Unknown tables,
    /// syntax errors and bad constant arguments are reported here, before any run.
    pub async fn prepare(&self, sql: &str) -> Result<crate::PreparedStatement> {
        crate::prepared::prepare(self, sql).await
    }

    /// Start a planned statement in `scope`'s context `ctx`.
    pub(crate) async fn execute_plan(&self, scope: TenantScope, ctx: &SessionContext, plan: LogicalPlan) -> Result<DataFrame> {
        let access = self.access();
        security::check_plan(&plan, access)?;
        source::refuse_source_ddl(&plan, &self.engine.sources, scope)?;
        if access == Access::Restricted && matches!(plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_)) {
            let frame = ctx.execute_logical_plan(plan).await?;
            return self.redacted(ctx, frame).await;
        }
        if matches!(plan, LogicalPlan::Statement(datafusion::logical_expr::Statement::SetVariable(_))) {
            // SET changes its own context's settings; it must not leak into the shared one.
            return Ok(self.new_query_context(scope).execute_logical_plan(plan).await?);
        }
        Ok(ctx.execute_logical_plan(plan).await?)
    }

    /// The catalog change counter this handle last synced to: plans made at an older
    /// generation may name sources or tables that have changed since.
    pub(crate) fn catalog_generation(&self) -> i64 {
        self.engine.generation()
    }

    /// Run every statement of `sql` in order and return the last one's frame (earlier
    /// results are drained).
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        // A search whose text but for its vectors has run before skips parsing.
        if let Some(frame) = crate::plan_cache::run_search_text(self, sql).await? {
            return Ok(frame);
        }
        let statements = self.parse(sql)?;
        let last = statements.len() - 1;
        for statement in &statements[..last] {
            self.run(statement).await?.collect().await?;
        }
        let frame = self.run(&statements[last]).await?;
        if last == 0 {
            crate::plan_cache::learn_search_text(self, sql, &statements[0]);
        }
        Ok(frame)
    }

    /// The DataFusion context whose catalogs and tenant rule are bound to `scope` (and to
    /// this handle's open transaction, if any).
    pub(crate) fn query_context(&self, scope: TenantScope) -> SessionContext {
        if let Some(txn) = self.open_transaction() {
            return self.build_context(scope, Some(&txn), false);
        }
        if let Some(ephemeral) = self.ephemeral_scope() {
            let mut contexts = ephemeral.contexts.lock().unwrap_or_else(|p| p.into_inner());
            return contexts.entry(scope).or_insert_with(|| self.engine.build_context(scope, None, false, Some(ephemeral.id()))).clone();
        }
        self.engine.cached_context(scope)
    }

    fn new_query_context(&self, scope: TenantScope) -> SessionContext {
        self.build_context(scope, self.open_transaction().as_ref(), false)
    }

    /// The context that plans a write on mutable tables inside `txn`: reads go through the
    /// transaction, and the writable rows are reachable through the write catalog.
    pub(crate) fn write_context(&self, scope: TenantScope, txn: &Arc<WriteTxn>) -> SessionContext {
        self.build_context(scope, Some(txn), true)
    }

    fn build_context(&self, scope: TenantScope, txn: Option<&Arc<WriteTxn>>, write_catalog: bool) -> SessionContext {
        let ephemeral = self.ephemeral_scope();
        self.engine.build_context(scope, txn, write_catalog, ephemeral.as_ref().map(|e| e.id()))
    }

    /// The transaction `BEGIN` opened on this handle, if it is still open.
    pub(crate) fn open_transaction(&self) -> Option<Arc<WriteTxn>> {
        self.txn.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Run a transaction control statement on this handle.
    async fn control_transaction(&self, control: Control) -> Result<()> {
        match control {
            Control::Begin => self.begin_transaction().await,
            Control::Commit => self.end_transaction(true).await,
            Control::Rollback => self.end_transaction(false).await,
            Control::Savepoint(op, name) => {
                let txn = self
                    .open_transaction()
                    .ok_or_else(|| Error::transaction_state(format!("savepoint '{name}': savepoints exist only inside BEGIN ... COMMIT")))?;
                txn.savepoint(op, &name).await?;
                // DDL after the savepoint was undone with it.
                if op == crate::txn::SavepointOp::RollbackTo && txn.definitions_changed() > 0 {
                    self.engine.mutable.reload_in(&txn).await?;
                }
                Ok(())
            }
        }
    }

    /// `BEGIN`: statements on this handle share one transaction until `COMMIT`/`ROLLBACK`.
    async fn begin_transaction(&self) -> Result<()> {
        if self.open_transaction().is_some() {
            return Err(Error::transaction_state("a transaction is already open on this session; COMMIT or ROLLBACK it first"));
        }
        let txn = self.engine.mutable.begin_explicit().await?;
        if let Some(timeout) = self.settings.lock().unwrap_or_else(|p| p.into_inner()).idle_in_transaction_timeout {
            txn.watch_idle(timeout);
        }
        *self.txn.lock().unwrap_or_else(|p| p.into_inner()) = Some(txn);
        Ok(())
    }

    /// `COMMIT` (or `ROLLBACK` when `commit` is false) the open transaction.
    async fn end_transaction(&self, commit: bool) -> Result<()> {
        let txn = self.txn.lock().unwrap_or_else(|p| p.into_inner()).take();
        match txn {
            Some(txn) if commit => match txn.timed_out() {
                Some(timeout_ms) => Err(Error::IdleInTransactionTimeout { timeout_ms }),
                None => {
                    txn.commit().await?;
                    // Definitions changed inside it: every session of this engine sees them now.
                    if txn.definitions_changed() > 0 {
                        self.sync_catalog().await?;
                    }
                    Ok(())
                }
            },
            Some(txn) => txn.rollback().await,
            None => Err(Error::transaction_state(format!("no transaction is open; {} needs a BEGIN first", if commit { "COMMIT" } else { "ROLLBACK" }))),
        }
    }

    /// Topics: create, list, drop, publish, subscribe.
    pub fn topics(&self) -> Topics<'_> {
        Topics::new(self, &self.engine.topics, &self.engine.mutable)
    }

    /// Artifacts: put, fetch, verify and delete bundles on object storage with `options`
    /// (endpoint, region, credentials of the cloud store), cached under
    /// `<data_dir>/cache/artifacts`. A tenant-bound session's store writes under the
    /// tenant's own `tenant-<uuid>` segment and cannot reach another tenant's prefixes.
    pub fn artifacts(&self, options: StorageOptions) -> crate::artifact::ArtifactStore {
        let cache = self.engine.config.data_dir.join("cache").join("artifacts");
        crate::artifact::ArtifactStore::new(StorageRegistry::new(), options, cache).for_owner(self.scope().owner())
    }

    /// The model registry, in the session's tenant scope.
    pub fn models(&self) -> crate::artifact::Models<'_> {
        crate::artifact::Models::new(self)
    }

    /// Embedding with registered models (task `embedding`), in the session's tenant scope.
    pub fn embeddings(&self) -> crate::embed::Embeddings<'_> {
        crate::embed::Embeddings::new(self, &self.engine.embed)
    }

    /// The training-job queue, in the session's tenant scope.
    pub fn jobs(&self) -> crate::artifact::Jobs<'_> {
        crate::artifact::Jobs::new(self)
    }

    /// Reload sources, vector tables, mutable tables and topics if another process (or
    /// handle) changed the catalog since last time.
    pub async fn sync_catalog(&self) -> Result<()> {
        self.engine.sync(self).await
    }

    /// The signed audit log of searches (see `docs/audit.md`).
    pub fn audit(&self) -> crate::audit::AuditLog<'_> {
        crate::audit::AuditLog { auditor: self.engine.vectors.audit.as_ref(), scope: self.scope() }
    }

    /// Vector tables: import, list, drop, search.
    pub fn vectors(&self) -> Vectors<'_> {
        Vectors::new(self, &self.engine.vectors, &self.engine.mutable)
    }

    /// Make `url`'s store available to queries (object stores are keyed by scheme+bucket).
    pub(crate) fn register_store(&self, url: &StorageUrl, options: &StorageOptions) -> Result<Arc<dyn ObjectStore>> {
        self.engine.register_store(url, options)
    }

    pub(crate) fn base_state(&self) -> SessionState {
        self.engine.base.clone()
    }

    pub(crate) fn source_catalogs(&self) -> &SourceCatalogs {
        &self.engine.sources
    }

    /// Register an engine catalog (`mutable`, `vectors`, `topics`) visible to every scope.
    pub fn register_engine_catalog(&self, name: &str, catalog: Arc<dyn EngineCatalog>) {
        self.engine.register_engine_catalog(name, catalog)
    }

    /// Close catalog connections.
    pub async fn close(&self) {
        // Audit records still on their way are committed before the catalog closes.
        if let Some(audit) = &self.engine.vectors.audit {
            audit.flush().await;
        }
        self.engine.catalog.close().await;
    }
}

#[async_trait::async_trait]
impl crate::context::EngineContext for Session {
    fn config(&self) -> &Config {
        Session::config(self)
    }

    fn catalog(&self) -> &Catalog {
        Session::catalog(self)
    }

    fn scope(&self) -> TenantScope {
        Session::scope(self)
    }

    async fn sync_catalog(&self) -> Result<()> {
        Session::sync_catalog(self).await
    }

    fn query_context(&self, scope: TenantScope) -> SessionContext {
        Session::query_context(self, scope)
    }

    fn write_context(&self, scope: TenantScope, txn: &Arc<WriteTxn>) -> SessionContext {
        Session::write_context(self, scope, txn)
    }

    fn open_transaction(&self) -> Option<Arc<WriteTxn>> {
        Session::open_transaction(self)
    }

    fn register_store(&self, url: &StorageUrl, options: &StorageOptions) -> Result<Arc<dyn ObjectStore>> {
        Session::register_store(self, url, options)
    }

    fn base_state(&self) -> SessionState {
        Session::base_state(self)
    }

    fn ephemeral_id(&self) -> Option<Arc<str>> {
        self.ephemeral_scope().map(|e| Arc::clone(e.id()))
    }
}

/// A handle in an ephemeral session (see [`Session::ephemeral`]): a [`Session`] in every
/// way (it derefs to one), whose tables are dropped when it ends.
#[derive(Debug)]
pub struct EphemeralSession {
    session: Session,
}

impl std::ops::Deref for EphemeralSession {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.session
    }
}

impl EphemeralSession {
    /// The session's id (the catalog's `jammi_ephemeral_sessions.id`).
    pub fn id(&self) -> String {
        self.session.ephemeral_scope().map(|e| e.id().to_string()).unwrap_or_default()
    }

    /// Its idle timeout.
    pub fn timeout(&self) -> std::time::Duration {
        self.session.ephemeral_scope().map(|e| e.timeout()).unwrap_or_default()
    }

    /// Whether the session is still open (not closed, timed out or recovered).
    pub fn is_open(&self) -> bool {
        self.session.ephemeral_scope().is_some_and(|e| e.is_open())
    }

    /// End the session now, dropping its tables; returns what was dropped (`None` when it
    /// had already ended — timed out, or recovered). Its handles answer every later
    /// statement with an error saying so.
    pub async fn close(&self) -> Result<Option<crate::ephemeral::Ended>> {
        match self.session.ephemeral_scope() {
            Some(scope) => scope.end(crate::ephemeral::Ending::Closed).await,
            None => Ok(None),
        }
    }
}
