//! Write transactions: the one writer every part that writes to the catalog shares
//! (mutable tables, topics), and how queries reach an open transaction.
//!
//! Every write runs in a [`WriteTxn`]: one catalog connection inside a transaction. On
//! SQLite it holds the database's write lock (`BEGIN IMMEDIATE`) and this process's writer
//! mutex (so this process's writers queue in one place instead of spinning on SQLITE_BUSY).
//! On Postgres there is no process-wide lock at all: a transaction locks each mutable table
//! it reads or writes (`SHARE ROW EXCLUSIVE`, which conflicts with itself), so a
//! read-modify-write in one process waits for a concurrent one in any other process and
//! reads its result — nothing is lost, and transactions on other tables run in parallel.
//! Queries planned while a transaction is open carry it in their config ([`TxnOption`]),
//! and scans of mutable tables read through its connection: a statement sees the
//! transaction's own writes.
//!
//! A transaction idle longer than its session's `idle_in_transaction_timeout` is rolled
//! back by a watchdog ([`WriteTxn::watch_idle`]), which releases its locks; the session
//! then answers its next statements with the reason until the client ends it.

use std::any::Any as StdAny;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::error::{DataFusionError, Result as DfResult};
use sqlx::pool::PoolConnection;
use sqlx::{Any, Executor};
use tokio::sync::{Mutex, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

use crate::catalog::{backoff, is_transient, BackendKind, Catalog};
use crate::error::{Error, Result};

/// Starts write transactions on the catalog database; one per engine, shared by every part
/// that writes (mutable tables, topics), so this process's writers queue in one place.
#[derive(Debug)]
pub struct Writer {
    catalog: Catalog,
    mutex: Arc<Mutex<()>>,
    /// Slots for transactions opened with `BEGIN`: each holds a catalog connection until it
    /// ends, so at most half the pool goes to them and clients opening many transactions
    /// cannot starve autocommit statements and catalog reads of connections.
    explicit: Arc<Semaphore>,
    explicit_slots: usize,
}

impl Writer {
    /// A writer for `catalog`, whose pool holds `max_connections`.
    pub fn new(catalog: Catalog, max_connections: u32) -> Self {
        let slots = (max_connections as usize / 2).max(1);
        Writer { catalog, mutex: Arc::new(Mutex::new(())), explicit: Arc::new(Semaphore::new(slots)), explicit_slots: slots }
    }

    /// Begin a write transaction for one statement (see [`WriteTxn`]).
    pub async fn begin(&self) -> Result<Arc<WriteTxn>> {
        WriteTxn::begin(&self.catalog, Arc::clone(&self.mutex), None).await
    }

    /// Begin a transaction opened with `BEGIN`; refused at once, rather than queued, when
    /// every slot for open transactions is taken.
    pub async fn begin_explicit(&self) -> Result<Arc<WriteTxn>> {
        let permit = Arc::clone(&self.explicit).try_acquire_owned().map_err(|_| Error::LimitExceeded {
            argument: "open transactions on this engine".into(),
            value: "one more".into(),
            limit: format!("{} (half of catalog.max_connections); COMMIT or ROLLBACK one, then retry", self.explicit_slots),
        })?;
        WriteTxn::begin(&self.catalog, Arc::clone(&self.mutex), Some(permit)).await
    }
}

/// An open write transaction: a pooled connection inside `BEGIN` that we end ourselves, so
/// that a contended SQLite `COMMIT` can be retried and its outcome known.
#[derive(Debug)]
pub struct WriteTxn {
    conn: Mutex<Option<PoolConnection<Any>>>,
    kind: BackendKind,
    /// Postgres storage tables already locked in this transaction.
    locked: Mutex<Vec<String>>,
    /// This process's writer mutex (SQLite only), held until COMMIT or ROLLBACK (not until
    /// the last reference goes: a prepared statement planned inside the transaction may
    /// outlive it).
    writer: std::sync::Mutex<Option<OwnedMutexGuard<()>>>,
    /// The open-transaction slot of a `BEGIN`, released with the writer mutex.
    slot: std::sync::Mutex<Option<OwnedSemaphorePermit>>,
    /// When a statement last used the transaction.
    last_active: std::sync::Mutex<Instant>,
    /// Set when COMMIT or ROLLBACK began.
    ended: AtomicBool,
    /// The idle timeout (ms) that rolled the transaction back; 0 while it is alive.
    timed_out_ms: AtomicU64,
    /// Table definitions as this transaction sees them, once DDL ran inside it (kept by the
    /// part that owns the definitions — mutable tables — and opaque here)
    /// (`None`: the engine's). Other sessions keep the engine's until it commits.
    definitions: std::sync::Mutex<Option<Arc<dyn StdAny + Send + Sync>>>,
    /// How many DDL statements changed `definitions` (plans made before are stale).
    definitions_changed: AtomicU64,
    /// The client's savepoints, oldest first (checked here, so a bad name cannot abort the
    /// transaction on Postgres).
    savepoints: std::sync::Mutex<Vec<String>>,
}

/// Savepoints one transaction may hold at once: each costs the catalog a subtransaction, and
/// a client could otherwise make them without end.
const MAX_SAVEPOINTS: usize = 1000;

/// What a client does with a savepoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SavepointOp {
    /// `SAVEPOINT name`
    Define,
    /// `RELEASE [SAVEPOINT] name`
    Release,
    /// `ROLLBACK TO [SAVEPOINT] name`
    RollbackTo,
}

impl SavepointOp {
    fn sql(self) -> &'static str {
        match self {
            SavepointOp::Define => "SAVEPOINT",
            SavepointOp::Release => "RELEASE SAVEPOINT",
            SavepointOp::RollbackTo => "ROLLBACK TO SAVEPOINT",
        }
    }
}

/// The connection of an open transaction, held (so no other statement of the transaction
/// uses it) until the guard drops.
pub struct TxnConnection<'a>(tokio::sync::MutexGuard<'a, Option<PoolConnection<Any>>>);

impl std::ops::Deref for TxnConnection<'_> {
    type Target = sqlx::AnyConnection;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("checked present when the guard was made")
    }
}

impl std::ops::DerefMut for TxnConnection<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.0.as_mut().expect("checked present when the guard was made")
    }
}

/// Attempts at a step that failed with a transient SQLite error (busy, locking protocol).
const ATTEMPTS: u32 = 8;


impl WriteTxn {
    /// Begin: wait for this process's writer mutex, then for the database's write lock.
    pub async fn begin(catalog: &Catalog, writer: Arc<Mutex<()>>, slot: Option<OwnedSemaphorePermit>) -> Result<Arc<WriteTxn>> {
        let kind = catalog.backend().kind();
        let guard = match kind.single_writer() {
            true => Some(writer.lock_owned().await),
            false => None,
        };
        let begin = kind.begin_write();
        let mut attempt = 0;
        let conn = loop {
            let result = async {
                let mut conn = InFlight(Some(catalog.pool().acquire().await?));
                conn.get().execute(begin).await?;
                Ok::<_, sqlx::Error>(conn.finish())
            }
            .await;
            match result {
                Ok(conn) => break conn,
                Err(e) if kind.single_writer() && is_transient(&e) && attempt + 1 < ATTEMPTS => {
                    attempt += 1;
                    backoff(attempt).await;
                }
                Err(e) => return Err(catalog.error(e)),
            }
        };
        Ok(Arc::new(WriteTxn {
            conn: Mutex::new(Some(conn)),
            kind,
            locked: Mutex::new(Vec::new()),
            writer: std::sync::Mutex::new(guard),
            slot: std::sync::Mutex::new(slot),
            last_active: std::sync::Mutex::new(Instant::now()),
            ended: AtomicBool::new(false),
            timed_out_ms: AtomicU64::new(0),
            definitions: std::sync::Mutex::new(None),
            definitions_changed: AtomicU64::new(0),
            savepoints: std::sync::Mutex::new(Vec::new()),
        }))
    }

    /// Note that a statement is using the transaction now.
    pub fn touch(&self) {
        *self.last_active.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        self.last_active.lock().unwrap_or_else(|p| p.into_inner()).elapsed()
    }

    /// The idle timeout (ms) that rolled this transaction back, if one did.
    pub fn timed_out(&self) -> Option<u64> {
        match self.timed_out_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(ms),
        }
    }

    /// Roll the transaction back once it has been idle for `timeout` (no statement used it):
    /// a client that opens a transaction and goes quiet cannot hold its locks for longer.
    /// The watchdog holds only a weak reference and ends with the transaction.
    pub fn watch_idle(self: &Arc<Self>, timeout: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let wait = match weak.upgrade() {
                    Some(txn) if !txn.ended.load(Ordering::Acquire) => timeout.saturating_sub(txn.idle_for()),
                    _ => return,
                };
                tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
                let Some(txn) = weak.upgrade() else { return };
                if txn.ended.load(Ordering::Acquire) {
                    return;
                }
                if txn.idle_for() < timeout {
                    continue;
                }
                // A statement holding the connection is not idle: look again shortly.
                let Ok(mut slot) = txn.conn.try_lock() else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let Some(conn) = slot.take() else { return };
                txn.timed_out_ms.store(timeout.as_millis().max(1) as u64, Ordering::Release);
                txn.ended.store(true, Ordering::Release);
                drop(slot);
                let _writer = txn.end();
                let mut conn = InFlight(Some(conn));
                match conn.get().execute("ROLLBACK").await {
                    Ok(_) => drop(conn.finish()),
                    Err(e) => tracing::warn!(error = %e, "rolling back an idle transaction failed; its connection is closed instead"),
                }
                tracing::info!(timeout_ms = timeout.as_millis() as u64, "rolled back a transaction idle past idle_in_transaction_timeout");
                return;
            }
        });
    }

    /// The database family the transaction runs on.
    pub fn kind(&self) -> BackendKind {
        self.kind
    }

    /// The transaction's connection, for steps that borrow their inputs. Statements of the
    /// transaction that need it meanwhile (a scan of a mutable table) wait for the guard.
    pub async fn connection(&self) -> Result<TxnConnection<'_>> {
        let slot = self.conn.lock().await;
        if let Some(timeout_ms) = self.timed_out() {
            return Err(Error::IdleInTransactionTimeout { timeout_ms });
        }
        if slot.is_none() {
            return Err(Error::transaction_state("the transaction has already ended; BEGIN a new one"));
        }
        self.touch();
        Ok(TxnConnection(slot))
    }

    /// Run `f` on the transaction's connection.
    pub async fn with<T>(
        &self,
        f: impl for<'c> FnOnce(&'c mut sqlx::AnyConnection) -> futures::future::BoxFuture<'c, Result<T>>,
    ) -> Result<T> {
        let mut conn = self.connection().await?;
        let result = f(&mut conn).await;
        self.touch();
        result
    }

    /// `SAVEPOINT`, `RELEASE` or `ROLLBACK TO` the client's savepoint `name`.
    pub async fn savepoint(&self, op: SavepointOp, name: &str) -> Result<()> {
        let valid = !name.is_empty() && name.len() <= 63 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid || name.starts_with("jammi_") {
            return Err(Error::invalid("savepoint name", format!(
                "savepoint name '{name}' is not allowed; use letters, digits and '_' (at most 63, not starting with 'jammi_')"
            )));
        }
        let known = {
            let savepoints = self.savepoints.lock().unwrap_or_else(|p| p.into_inner());
            savepoints.iter().rposition(|s| s == name)
        };
        if op == SavepointOp::Define && self.savepoints.lock().unwrap_or_else(|p| p.into_inner()).len() >= MAX_SAVEPOINTS {
            return Err(Error::LimitExceeded {
                argument: "savepoints in one transaction".into(),
                value: "one more".into(),
                limit: format!("{MAX_SAVEPOINTS}; RELEASE the ones no longer needed"),
            });
        }
        if op != SavepointOp::Define && known.is_none() {
            return Err(Error::transaction_state(format!("savepoint '{name}' does not exist in this transaction; define it with SAVEPOINT {name}")));
        }
        let sql = format!("{} {}", op.sql(), crate::names::quote_ident(name));
        self.with(|conn| Box::pin(async move { sqlx::query(&sql).execute(conn).await.map(|_| ()).map_err(|e| Error::from_sqlx("the catalog database", &e)) }))
            .await?;
        let mut savepoints = self.savepoints.lock().unwrap_or_else(|p| p.into_inner());
        match (op, known) {
            (SavepointOp::Define, _) => savepoints.push(name.to_string()),
            // RELEASE ends the savepoint and every later one; ROLLBACK TO keeps it.
            (SavepointOp::Release, Some(at)) => savepoints.truncate(at),
            (SavepointOp::RollbackTo, Some(at)) => savepoints.truncate(at + 1),
            (_, None) => {}
        }
        Ok(())
    }

    /// The definitions this transaction sees, once DDL inside it changed them (the owning
    /// part downcasts them to its own type).
    pub(crate) fn definitions(&self) -> Option<Arc<dyn StdAny + Send + Sync>> {
        self.definitions.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Record the definitions as DDL inside this transaction left them.
    pub(crate) fn set_definitions(&self, definitions: Arc<dyn StdAny + Send + Sync>) {
        *self.definitions.lock().unwrap_or_else(|p| p.into_inner()) = Some(definitions);
        self.definitions_changed.fetch_add(1, Ordering::AcqRel);
    }

    /// How many times DDL inside this transaction changed the definitions it sees.
    pub fn definitions_changed(&self) -> u64 {
        self.definitions_changed.load(Ordering::Acquire)
    }

    /// Make concurrent readers-in-a-transaction and writers of `storage` wait for this
    /// transaction (Postgres; SQLite's write lock already covers the whole database). Taken
    /// at a transaction's first read or write of the table.
    pub async fn lock_table(&self, storage: &str) -> Result<()> {
        if !self.kind.locks_tables() {
            return Ok(());
        }
        let mut locked = self.locked.lock().await;
        if locked.iter().any(|s| s == storage) {
            return Ok(());
        }
        let sql = format!("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE", crate::names::quote_ident(storage));
        self.with(|conn| Box::pin(async move { sqlx::query(&sql).execute(conn).await.map(|_| ()).map_err(|e| Error::from_sqlx("the catalog database", &e)) })).await?;
        locked.push(storage.to_string());
        Ok(())
    }

    /// Commit; the transaction is then over. A contended SQLite `COMMIT` is retried; when a
    /// retry finds no transaction, the earlier attempt had committed.
    pub async fn commit(&self) -> Result<()> {
        self.ended.store(true, Ordering::Release);
        let _writer = self.end();
        let conn = self.conn.lock().await.take().ok_or_else(|| Error::transaction_state("the transaction has already ended; BEGIN a new one"))?;
        let mut conn = InFlight(Some(conn));
        let mut attempt = 0;
        loop {
            match conn.get().execute("COMMIT").await {
                Ok(_) => {
                    conn.finish();
                    return Ok(());
                }
                Err(e) if attempt > 0 && e.to_string().contains("no transaction is active") => {
                    conn.finish();
                    return Ok(());
                }
                Err(e) if self.kind.single_writer() && is_transient(&e) && attempt + 1 < ATTEMPTS => {
                    attempt += 1;
                    backoff(attempt).await;
                }
                // Unknown state: `conn` closes rather than going back to the pool.
                Err(e) => return Err(Error::from_sqlx("the catalog database (COMMIT)", &e)),
            }
        }
    }

    /// The writer mutex, taken out so that it is released when the caller's COMMIT or
    /// ROLLBACK returns, whatever its outcome.
    fn end(&self) -> Option<OwnedMutexGuard<()>> {
        drop(self.slot.lock().unwrap_or_else(|p| p.into_inner()).take());
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Roll back; the transaction is then over.
    pub async fn rollback(&self) -> Result<()> {
        self.ended.store(true, Ordering::Release);
        let _writer = self.end();
        if let Some(conn) = self.conn.lock().await.take() {
            let mut conn = InFlight(Some(conn));
            conn.get().execute("ROLLBACK").await.map_err(|e| Error::from_sqlx("the catalog database (ROLLBACK)", &e))?;
            conn.finish();
        }
        Ok(())
    }
}

/// A connection between `BEGIN` and its end, outside any [`WriteTxn`]: if the task is
/// cancelled (or the step fails) before [`InFlight::finish`], the connection is closed —
/// which ends the transaction — instead of going back to the pool inside it.
struct InFlight(Option<PoolConnection<Any>>);

impl InFlight {
    fn get(&mut self) -> &mut PoolConnection<Any> {
        self.0.as_mut().expect("connection present until finish")
    }

    fn finish(mut self) -> PoolConnection<Any> {
        self.0.take().expect("connection present until finish")
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(conn) = self.0.as_mut() {
            conn.close_on_drop();
        }
    }
}

impl Drop for WriteTxn {
    fn drop(&mut self) {
        // Abandoned without COMMIT or ROLLBACK (a dropped session, a cancelled task): close
        // the connection, which rolls the transaction back, instead of pooling it mid-way.
        if let Some(conn) = self.conn.get_mut().as_mut() {
            conn.close_on_drop();
        }
    }
}

/// The open transaction of the session a query was planned in, if any.
#[derive(Debug, Clone, Default)]
pub struct TxnOption {
    /// The transaction scans must read through.
    pub txn: Option<Arc<WriteTxn>>,
}

impl ConfigExtension for TxnOption {
    const PREFIX: &'static str = "jammi_txn";
}

impl ExtensionOptions for TxnOption {
    fn as_any(&self) -> &dyn StdAny {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn StdAny {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, _value: &str) -> DfResult<()> {
        Err(DataFusionError::Plan(format!("'jammi_txn.{key}' cannot be set; use BEGIN, COMMIT and ROLLBACK")))
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        Vec::new()
    }
}
