//! The engine's wiring: what one open data directory holds — the catalog, DataFusion's
//! template state, and each part's shared state — and how it builds query contexts and
//! follows the catalog. [`Session`](crate::Session) handles own an [`Engine`] and add the
//! per-caller parts (tenant binding, open transaction, settings).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::catalog::{CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList, MemorySchemaProvider};
use datafusion::execution::context::{SessionConfig, SessionContext, SessionState};
use datafusion::execution::session_state::SessionStateBuilder;
use object_store::ObjectStore;

use crate::catalog::{Catalog, VectorTableStatus};
use crate::config::{BrokerKind, Config};
use crate::context::EngineContext;
use crate::engine_catalog::{EngineCatalog, EngineCatalogs};
use crate::error::{Error, Result};
use crate::mutable::{self, provider::Mode, MutableCatalog, MutableState};
use crate::source::{self, ScopedCatalogList, SourceCatalogs};
use crate::storage::{StorageOptions, StorageRegistry, StorageUrl};
use crate::tenant::{TenantFilterRule, TenantScope, TenantScopeOption};
use crate::topic::broker::{Broker, InProcessBroker, JetStreamBroker};
use crate::topic::{sql::TopicsCatalog, TopicState};
use crate::txn::{TxnOption, WriteTxn, Writer};
use crate::vector::search_fn::SearchFunction;
use crate::vector::{CompactionPolicy, VectorState};

/// One open engine, shared by every session handle on it.
pub(crate) struct Engine {
    pub(crate) config: Config,
    pub(crate) catalog: Catalog,
    pub(crate) storage: StorageRegistry,
    /// Template state: functions, rules and the runtime (object stores) every query shares.
    pub(crate) base: SessionState,
    pub(crate) sources: Arc<SourceCatalogs>,
    pub(crate) engine_catalogs: Arc<EngineCatalogs>,
    /// Per-scope scratch catalogs: views made by one tenant never resolve for another.
    pub(crate) scratch: Mutex<HashMap<TenantScope, Arc<MemoryCatalogProviderList>>>,
    /// Query contexts by scope, built once: cloning the base state per statement (every
    /// function registry) was a measurable share of a small query's latency.
    pub(crate) contexts: Mutex<HashMap<TenantScope, SessionContext>>,
    /// Catalog change counter at the last sync with the catalog.
    pub(crate) synced_counter: AtomicI64,
    pub(crate) sync_lock: tokio::sync::Mutex<()>,
    pub(crate) vectors: Arc<VectorState>,
    pub(crate) mutable: Arc<MutableState>,
    pub(crate) topics: Arc<TopicState>,
    /// Embedding models loaded so far.
    pub(crate) embed: Arc<crate::embed::EmbedState>,
    /// Plans shared by SQL text queries of one shape.
    pub(crate) plans: crate::plan_cache::PlanCache,
    /// Ephemeral sessions: ending them, recovering those of dead processes.
    pub(crate) ephemeral: Arc<crate::ephemeral::EphemeralState>,
}

/// The `vectors` catalog, per scope.
#[derive(Debug)]
struct VectorsEngineCatalog(Arc<VectorState>);

impl EngineCatalog for VectorsEngineCatalog {
    fn for_scope(&self, scope: TenantScope) -> Arc<dyn CatalogProvider> {
        Arc::new(crate::vector::sql::vectors_catalog(Arc::clone(&self.0), scope))
    }
}


impl Engine {
    /// Create the data directory, connect and migrate the catalog, build DataFusion's
    /// template state (tenant rule, pushdown, `vector_search`) and each part's state.
    pub(crate) async fn open(config: Config) -> Result<Engine> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| Error::DataDir {
            path: config.data_dir.clone(),
            message: format!("cannot create: {e}"),
        })?;
        let catalog = Catalog::open(&config.catalog_url(), &config.catalog).await?;

        let mut df_config = SessionConfig::new()
            .with_information_schema(true)
            .with_batch_size(config.query.batch_size)
            .with_create_default_catalog_and_schema(false);
        if config.query.target_partitions > 0 {
            df_config = df_config.with_target_partitions(config.query.target_partitions);
        }
        let mut rules = vec![Arc::new(TenantFilterRule::new()) as _];
        rules.extend(datafusion::optimizer::Analyzer::new().rules);
        let mut base = SessionStateBuilder::new()
            .with_config(df_config)
            .with_default_features()
            .with_analyzer_rules(rules)
            // After DataFusion's own rules: hand whole parts of plans to database sources.
            .with_optimizer_rule(Arc::new(crate::source::remote::pushdown::RemotePushdown))
            .with_query_planner(Arc::new(crate::source::remote::FederatedQueryPlanner::new(crate::distributed::engine_for(&config.query)?)))
            .build();
        let policy = CompactionPolicy {
            max_segments: config.vectors.max_segments,
            max_deleted_fraction: config.vectors.max_deleted_fraction,
            max_segment_bytes: config.vectors.segment_mb.saturating_mul(1 << 20),
        };
        let embed = Arc::new(crate::embed::EmbedState::new(&config));
        let audit = crate::audit::auditor_for(&config.audit, &catalog).await?;
        let vectors = Arc::new(VectorState::new(config.vectors.cache_mb.saturating_mul(1 << 20), catalog.clone(), policy, Arc::clone(&embed), audit));
        base.register_udtf("vector_status", Arc::new(crate::vector::follow::VectorStatusFunction::new(Arc::clone(&vectors))));
        let engine_catalogs = Arc::new(EngineCatalogs::default());
        engine_catalogs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert("vectors".to_string(), Arc::new(VectorsEngineCatalog(Arc::clone(&vectors))) as Arc<dyn EngineCatalog>);
        engine_catalogs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(crate::audit::sql::CATALOG.to_string(), Arc::new(crate::audit::sql::AuditCatalog::new(catalog.clone(), vectors.audit.clone())) as Arc<dyn EngineCatalog>);
        let writer = Arc::new(Writer::new(catalog.clone(), config.catalog.max_connections));
        let broker: Arc<dyn Broker> = match config.broker.kind {
            BrokerKind::InProcess => Arc::new(InProcessBroker::default()),
            BrokerKind::Jetstream => Arc::new(JetStreamBroker::connect(config.broker.url.as_deref().unwrap_or_default()).await?),
        };
        let poll = std::time::Duration::from_millis(config.broker.poll_interval_ms);
        let topics = Arc::new(TopicState::new(catalog.clone(), broker, Arc::clone(&writer), poll));
        // Mutable tables hand their row changes to the topics and vector tables that follow them.
        let sinks = crate::change::Sinks(vec![Arc::clone(&topics) as Arc<dyn crate::change::ChangeSink>, Arc::clone(&vectors) as Arc<dyn crate::change::ChangeSink>]);
        let mutable = Arc::new(MutableState::new(catalog.clone(), writer, Arc::new(sinks)));
        engine_catalogs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(crate::evidence::CATALOG.to_string(), Arc::new(crate::evidence::sql::EvidenceCatalog::new(catalog.clone(), Arc::clone(&mutable))) as Arc<dyn EngineCatalog>);
        base.register_udtf("vector_search", Arc::new(SearchFunction::vector(Arc::clone(&vectors), Arc::clone(&mutable))));
        base.register_udtf("text_search", Arc::new(SearchFunction::text(Arc::clone(&vectors), Arc::clone(&mutable))));
        base.register_udtf("hybrid_search", Arc::new(SearchFunction::hybrid(Arc::clone(&vectors), Arc::clone(&mutable))));
        engine_catalogs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert("topics".to_string(), Arc::new(TopicsCatalog::new(Arc::clone(&topics))) as Arc<dyn EngineCatalog>);
        engine_catalogs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(mutable::CATALOG.to_string(), Arc::new(MutableCatalog::new(Arc::clone(&mutable), Mode::Read)) as Arc<dyn EngineCatalog>);

        let ephemeral = Arc::new(crate::ephemeral::EphemeralState::new(catalog.clone(), vectors.audit.clone(), config.ephemeral.clone()));
        Ok(Engine {
            ephemeral,
            config,
            catalog,
            storage: StorageRegistry::new(),
            base,
            sources: Arc::new(SourceCatalogs::default()),
            engine_catalogs,
            scratch: Mutex::new(HashMap::new()),
            contexts: Mutex::new(HashMap::new()),
            synced_counter: AtomicI64::new(i64::MIN),
            sync_lock: tokio::sync::Mutex::new(()),
            vectors,
            mutable,
            topics,
            embed,
            plans: Default::default(),
        })
    }

    /// A DataFusion context bound to `scope` and, when given, to the transaction `txn`
    /// (with the write catalog when `write_catalog`) and the ephemeral session `ephemeral`.
    pub(crate) fn build_context(&self, scope: TenantScope, txn: Option<&Arc<WriteTxn>>, write_catalog: bool, ephemeral: Option<&Arc<str>>) -> SessionContext {
        let mut state = self.base.clone();
        state.config_mut().options_mut().extensions.insert(TenantScopeOption { scope });
        state.config_mut().options_mut().extensions.insert(TxnOption { txn: txn.cloned() });
        // Inside a transaction, mutable tables resolve as it sees them (its own DDL included);
        // in an ephemeral session, its own tables resolve too.
        let engine = if txn.is_some() || ephemeral.is_some() {
            let mut catalogs = self.engine_catalogs.read().unwrap_or_else(|p| p.into_inner()).clone();
            let catalog = |mode| Arc::new(MutableCatalog::for_caller(Arc::clone(&self.mutable), mode, txn.cloned(), ephemeral.cloned())) as Arc<dyn EngineCatalog>;
            catalogs.insert(mutable::CATALOG.to_string(), catalog(Mode::Read));
            if write_catalog {
                catalogs.insert(mutable::WRITE_CATALOG.to_string(), catalog(Mode::Write));
            }
            Arc::new(EngineCatalogs::new(catalogs))
        } else {
            Arc::clone(&self.engine_catalogs)
        };
        let list = ScopedCatalogList::new(scope, Arc::clone(&self.sources), engine, self.scratch_catalogs(scope));
        state.register_catalog_list(Arc::new(list));
        SessionContext::new_with_state(state)
    }


    /// The cached context of `scope` outside any transaction (built on first use).
    pub(crate) fn cached_context(&self, scope: TenantScope) -> SessionContext {
        let mut contexts = self.contexts.lock().unwrap_or_else(|p| p.into_inner());
        contexts.entry(scope).or_insert_with(|| self.build_context(scope, None, false, None)).clone()
    }

    fn scratch_catalogs(&self, scope: TenantScope) -> Arc<MemoryCatalogProviderList> {
        let mut map = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(scope).or_insert_with(|| {
            let list = MemoryCatalogProviderList::new();
            let default = MemoryCatalogProvider::new();
            let _ = default.register_schema("public", Arc::new(MemorySchemaProvider::new()));
            list.register_catalog("datafusion".to_string(), Arc::new(default));
            Arc::new(list)
        }))
    }

    /// Reload every part's view of the catalog if another process (or handle) changed it
    /// since last time; `ctx` is the caller whose sync this is (sources and vector tables
    /// resolve their stores through it).
    pub(crate) async fn sync(&self, ctx: &dyn EngineContext) -> Result<()> {
        let counter = self.catalog.change_counter().await?;
        if counter == self.synced_counter.load(Ordering::Acquire) {
            return Ok(());
        }
        let _guard = self.sync_lock.lock().await;
        if counter == self.synced_counter.load(Ordering::Acquire) {
            return Ok(());
        }
        let records = self.catalog.sources().list_all().await?;
        let mut entries = Vec::with_capacity(records.len());
        for record in &records {
            match source::build_source_catalog(ctx, record) {
                Ok(c) => entries.push((record.tenant, c)),
                // One unusable source must not make the whole engine unusable; `source list`
                // reports it.
                Err(e) => tracing::warn!(source = %record.name, error = %e, "source unavailable"),
            }
        }
        self.sources.replace_all(entries);
        self.sync_vector_tables(ctx).await?;
        self.mutable.sync().await?;
        self.topics.sync().await?;
        if let Some(audit) = &self.vectors.audit {
            audit.reload_overrides().await?;
        }
        self.synced_counter.store(counter, Ordering::Release);
        Ok(())
    }

    async fn sync_vector_tables(&self, ctx: &dyn EngineContext) -> Result<()> {
        let records = self.catalog.vector_tables().list_all().await?;
        let known = self.vectors.tables.read().clone();
        let mut next = HashMap::new();
        for record in records.into_iter().filter(|r| r.status == VectorTableStatus::Ready) {
            let key = (record.tenant, record.name.clone());
            let entry = match known.get(&key) {
                Some(e) if e.record.id == record.id && e.record.generation == record.generation => Arc::clone(e),
                _ => match self.open_vector_entry(ctx, record.clone()).await {
                    Ok(e) => Arc::new(e),
                    Err(e) => {
                        tracing::warn!(table = %record.name, error = %e, "vector table unavailable");
                        continue;
                    }
                },
            };
            next.insert(key, entry);
        }
        *self.vectors.tables.write() = next;
        Ok(())
    }

    async fn open_vector_entry(&self, ctx: &dyn EngineContext, record: crate::catalog::VectorTableRecord) -> Result<crate::vector::VectorEntry> {
        let files = crate::vector::table_files(ctx, &record.location)?;
        crate::vector::build_entry(&self.vectors, record, files).await
    }

    /// The catalog change counter this engine last synced to.
    pub(crate) fn generation(&self) -> i64 {
        self.synced_counter.load(Ordering::Acquire)
    }

    /// Make `url`'s store available to queries (object stores are keyed by scheme+bucket).
    pub(crate) fn register_store(&self, url: &StorageUrl, options: &StorageOptions) -> Result<Arc<dyn ObjectStore>> {
        let store = self.storage.store_for(url, options)?;
        if !url.is_local() {
            self.base.runtime_env().register_object_store(&url.store_root(), Arc::clone(&store));
        }
        Ok(store)
    }

    /// Register an engine catalog (`mutable`, `vectors`, `topics`) visible to every scope.
    pub(crate) fn register_engine_catalog(&self, name: &str, catalog: Arc<dyn EngineCatalog>) {
        self.engine_catalogs.write().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), catalog);
    }
}
