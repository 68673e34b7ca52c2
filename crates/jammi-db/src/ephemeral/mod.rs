//! Ephemeral sessions: a session whose tables are mutable tables private to it, dropped
//! **exactly once** when it ends — by an explicit close, by the drop of its last handle
//! (a client disconnecting), by its idle timeout, or, after a crash, by whichever process
//! next finds it expired.
//!
//! Parts: [`names`] (how the session's tables are named and reached), [`lifecycle`] (the
//! signed events on `jammi.audit.session_lifecycle.v1`). The session is recorded in the
//! catalog when it opens (`jammi_ephemeral_sessions`); ending it is one catalog transaction
//! that moves the record out of `open`, drops the tables and appends the event — so of all
//! the ways it can end, the first to commit does the work and the others find nothing.

pub mod lifecycle;
pub mod names;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use datafusion::execution::context::SessionContext;

use crate::audit::Auditor;
use crate::catalog::{now_millis, Catalog, EphemeralSessionRecord};
use crate::config::EphemeralConfig;
use crate::error::{Error, Result};
use crate::tenant::{TenantId, TenantScope};
use crate::txn::WriteTxn;
use lifecycle::{LifecycleRecord, TableRows};
pub use lifecycle::LIFECYCLE_TOPIC;

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Closed explicitly (`EphemeralSession::close`, `END EPHEMERAL`, HTTP `DELETE`).
    Closed,
    /// Its last handle was dropped (in a server: the client disconnected).
    Dropped,
    /// Idle longer than its timeout.
    TimedOut,
    /// Found expired by a later process (its own process died).
    Recovered,
}

impl Ending {
    /// The event (and the catalog state) it ends with.
    fn event(self) -> &'static str {
        match self {
            Ending::Closed | Ending::Dropped => "closed",
            Ending::TimedOut => "timed_out",
            Ending::Recovered => "recovered",
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Ending::Closed => "close",
            Ending::Dropped => "drop",
            Ending::TimedOut => "timeout",
            Ending::Recovered => "recovery",
        }
    }
}

/// What ending a session did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// Each table dropped, with its rows.
    pub tables: Vec<TableRows>,
    /// Rows in all of them.
    pub rows_deleted: i64,
}

/// The engine's side of ephemeral sessions: what ending one needs, and how many are open.
#[derive(Debug)]
pub(crate) struct EphemeralState {
    catalog: Catalog,
    audit: Option<Arc<Auditor>>,
    config: EphemeralConfig,
    open: AtomicUsize,
}

impl EphemeralState {
    pub(crate) fn new(catalog: Catalog, audit: Option<Arc<Auditor>>, config: EphemeralConfig) -> Self {
        EphemeralState { catalog, audit, config, open: AtomicUsize::new(0) }
    }

    /// End every open session whose expiry has passed (their processes are gone); returns
    /// how many this call ended.
    pub(crate) async fn recover_expired(&self) -> Result<usize> {
        let mut recovered = 0;
        loop {
            let expired = self.catalog.ephemeral_sessions().expired(now_millis(), 100).await?;
            let n = expired.len();
            for record in expired {
                let timeout = Duration::from_millis(record.timeout_ms.max(0) as u64);
                if end_in_catalog(self, &record.id, record.tenant, timeout, Ending::Recovered).await?.is_some() {
                    tracing::info!(session = %record.id, "recovered an expired ephemeral session: its tables are dropped");
                    recovered += 1;
                }
            }
            if n < 100 {
                return Ok(recovered);
            }
        }
    }

    /// Look for expired sessions every `sweep_interval_ms` while the engine lives.
    pub(crate) fn spawn_sweeper(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let interval = Duration::from_millis(self.config.sweep_interval_ms);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(state) = weak.upgrade() else { return };
                if state.catalog.pool().is_closed() {
                    return;
                }
                if let Err(e) = state.recover_expired().await {
                    tracing::warn!(error = %e, "could not look for expired ephemeral sessions");
                }
            }
        });
    }
}

/// One open ephemeral session, shared by its handles (a [`crate::Session`] and its clones).
pub(crate) struct EphemeralScope {
    id: Arc<str>,
    tenant: Option<TenantId>,
    timeout: Duration,
    state: Arc<EphemeralState>,
    last_active: Mutex<Instant>,
    /// When the catalog's expiry was last pushed forward.
    extended: Mutex<Instant>,
    /// Set once, by whichever ending comes first.
    ended: Mutex<Option<Ending>>,
    /// The handles' transaction slot: an open transaction is rolled back before the tables
    /// are dropped (it may hold the locks the drop needs).
    txn: Arc<Mutex<Option<Arc<WriteTxn>>>>,
    /// Query contexts that reach this session's tables, by scope.
    pub(crate) contexts: Mutex<HashMap<TenantScope, SessionContext>>,
}

impl std::fmt::Debug for EphemeralScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EphemeralScope").field("id", &self.id).field("tenant", &self.tenant).field("timeout", &self.timeout).finish()
    }
}

/// The catalog's expiry of a session used now: twice its timeout on, and pushed forward
/// while it is used, so no other process takes a live session for a dead one.
fn expiry(timeout: Duration) -> i64 {
    now_millis().saturating_add(timeout.as_millis().saturating_mul(2).min(i64::MAX as u128) as i64)
}

impl EphemeralScope {
    /// Open a session for `tenant` with idle `timeout` (the configured default when `None`).
    pub(crate) async fn open(state: &Arc<EphemeralState>, tenant: Option<TenantId>, timeout: Option<Duration>, txn: Arc<Mutex<Option<Arc<WriteTxn>>>>) -> Result<Arc<EphemeralScope>> {
        let config = &state.config;
        let timeout = timeout.unwrap_or(Duration::from_millis(config.default_timeout_ms));
        if timeout.is_zero() || timeout > Duration::from_millis(config.max_timeout_ms) {
            return Err(Error::invalid("ephemeral session timeout", format!("{} ms is not allowed: give 1 ms to {} ms (ephemeral.max_timeout_ms)", timeout.as_millis(), config.max_timeout_ms)));
        }
        if state.open.fetch_add(1, Ordering::AcqRel) >= config.max_open {
            state.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::LimitExceeded { argument: "open ephemeral sessions on this engine".into(), value: "one more".into(), limit: format!("{} (ephemeral.max_open); close one, then retry", config.max_open) });
        }
        let opened = async {
            crate::audit::ensure_topic(&state.catalog, LIFECYCLE_TOPIC, lifecycle::LIFECYCLE_COLUMNS).await?;
            let id = uuid::Uuid::new_v4().simple().to_string();
            let record = EphemeralSessionRecord {
                id: id.clone(),
                tenant,
                opened_at_ms: now_millis(),
                timeout_ms: timeout.as_millis() as i64,
                expires_at_ms: expiry(timeout),
                state: "open".into(),
                rows_deleted: None,
            };
            let catalog = &state.catalog;
            let mut tx = catalog.begin_serialized().await?;
            catalog.ephemeral_sessions().insert_in(&mut tx, &record).await?;
            let tenant_text = tenant.map(|t| t.to_string()).unwrap_or_default();
            let event = LifecycleRecord { event: "opened", session: &id, tenant: &tenant_text, time: crate::audit::now_rfc3339(), reason: "open", timeout_ms: timeout.as_millis() as u64, tables: &[], rows_deleted: 0, key_version: 0 };
            lifecycle::append(&mut tx, catalog, state.audit.as_deref(), event).await?;
            tx.commit().await.map_err(|e| catalog.error(e))?;
            Ok::<_, Error>(id)
        }
        .await;
        let id = match opened {
            Ok(id) => id,
            Err(e) => {
                state.open.fetch_sub(1, Ordering::AcqRel);
                return Err(e);
            }
        };
        let scope = Arc::new(EphemeralScope {
            id: id.into(),
            tenant,
            timeout,
            state: Arc::clone(state),
            last_active: Mutex::new(Instant::now()),
            extended: Mutex::new(Instant::now()),
            ended: Mutex::new(None),
            txn,
            contexts: Mutex::new(HashMap::new()),
        });
        watch_idle(&scope);
        Ok(scope)
    }

    /// The session id (its tables' names carry it).
    pub(crate) fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// The idle timeout.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether no ending has come yet.
    pub(crate) fn is_open(&self) -> bool {
        self.ending().is_none()
    }

    fn ending(&self) -> Option<Ending> {
        *self.ended.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A statement is about to run in the session: refuse it if the session has ended, else
    /// note the activity (pushing the catalog's expiry forward now and then).
    pub(crate) async fn touch(&self) -> Result<()> {
        if let Some(ending) = self.ending() {
            return Err(Error::transaction_state(format!(
                "this ephemeral session has ended ({}) and its tables are gone; start another with BEGIN EPHEMERAL (or Session::ephemeral)",
                match ending {
                    Ending::TimedOut => format!("idle for more than its timeout of {} ms", self.timeout.as_millis()),
                    Ending::Closed | Ending::Dropped => "closed".to_string(),
                    Ending::Recovered => "recovered after its expiry".to_string(),
                }
            )));
        }
        *self.last_active.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        let due = {
            let mut extended = self.extended.lock().unwrap_or_else(|p| p.into_inner());
            let due = extended.elapsed() > self.timeout / 2;
            if due {
                *extended = Instant::now();
            }
            due
        };
        if due {
            self.state.catalog.ephemeral_sessions().extend(&self.id, expiry(self.timeout)).await?;
        }
        Ok(())
    }

    /// End the session with `ending` (a no-op when it already ended): roll back its open
    /// transaction, then drop its tables — unless another process ended it first.
    pub(crate) async fn end(&self, ending: Ending) -> Result<Option<Ended>> {
        {
            let mut ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
            if ended.is_some() {
                return Ok(None);
            }
            *ended = Some(ending);
        }
        self.state.open.fetch_sub(1, Ordering::AcqRel);
        let txn = self.txn.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(txn) = txn {
            let _ = txn.rollback().await;
        }
        end_in_catalog(&self.state, &self.id, self.tenant, self.timeout, ending).await
    }
}

impl Drop for EphemeralScope {
    fn drop(&mut self) {
        {
            let mut ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
            if ended.is_some() {
                return;
            }
            *ended = Some(Ending::Dropped);
        }
        self.state.open.fetch_sub(1, Ordering::AcqRel);
        // Dropping it closes the connection, which rolls the transaction back.
        drop(self.txn.lock().unwrap_or_else(|p| p.into_inner()).take());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to end it on: its catalog record expires and a sweep recovers it.
            return;
        };
        let (state, id, tenant, timeout) = (Arc::clone(&self.state), Arc::clone(&self.id), self.tenant, self.timeout);
        runtime.spawn(async move {
            if let Err(e) = end_in_catalog(&state, &id, tenant, timeout, Ending::Dropped).await {
                tracing::warn!(session = %id, error = %e, "could not end a dropped ephemeral session; it is recovered once it expires");
            }
        });
    }
}

/// End the session when it has been idle for its timeout.
fn watch_idle(scope: &Arc<EphemeralScope>) {
    let weak: Weak<EphemeralScope> = Arc::downgrade(scope);
    tokio::spawn(async move {
        loop {
            let wait = {
                let Some(scope) = weak.upgrade() else { return };
                if scope.ending().is_some() {
                    return;
                }
                let idle = scope.last_active.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
                if idle >= scope.timeout {
                    if let Err(e) = scope.end(Ending::TimedOut).await {
                        tracing::warn!(session = %scope.id, error = %e, "could not end a timed-out ephemeral session; it is recovered once it expires");
                    }
                    return;
                }
                scope.timeout - idle
            };
            tokio::time::sleep(wait).await;
        }
    });
}

/// End session `id` in the catalog: move it out of `open`, drop its tables and append its
/// event, in one transaction. `None` when it was no longer open (ended elsewhere).
async fn end_in_catalog(state: &EphemeralState, id: &str, tenant: Option<TenantId>, timeout: Duration, ending: Ending) -> Result<Option<Ended>> {
    let catalog = &state.catalog;
    let mut tx = catalog.begin_serialized().await?;
    if !catalog.ephemeral_sessions().close_in(&mut tx, id, ending.event()).await? {
        tx.rollback().await.map_err(|e| catalog.error(e))?;
        return Ok(None);
    }
    let records: Vec<_> = catalog.mutable_tables().list_all_in(&mut tx).await?.into_iter().filter(|r| names::session_of(&r.name) == Some(id)).collect();
    let mut tables = Vec::with_capacity(records.len());
    for record in &records {
        let rows: i64 = sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) FROM {}", crate::names::quote_ident(&record.storage)))
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| catalog.error(e))?;
        crate::mutable::ddl::drop_record(catalog, &mut tx, record).await?;
        tables.push(TableRows { name: names::user_name(&record.name).to_string(), rows });
    }
    let rows_deleted = tables.iter().map(|t| t.rows).sum();
    catalog.ephemeral_sessions().set_rows_deleted_in(&mut tx, id, rows_deleted).await?;
    let tenant_text = tenant.map(|t| t.to_string()).unwrap_or_default();
    let event = LifecycleRecord {
        event: ending.event(),
        session: id,
        tenant: &tenant_text,
        time: crate::audit::now_rfc3339(),
        reason: ending.reason(),
        timeout_ms: timeout.as_millis() as u64,
        tables: &tables,
        rows_deleted,
        key_version: 0,
    };
    lifecycle::append(&mut tx, catalog, state.audit.as_deref(), event).await?;
    tx.commit().await.map_err(|e| catalog.error(e))?;
    Ok(Some(Ended { tables, rows_deleted }))
}
