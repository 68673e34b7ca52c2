//! Write transactions on mutable tables and how queries reach them.
//!
//! Every write runs in a [`WriteTxn`]: one catalog connection holding the database's write
//! lock (SQLite `BEGIN IMMEDIATE`; a table lock on Postgres), plus this process's writer
//! mutex, so read-modify-write statements never lose updates. Queries planned while a
//! transaction is open carry it in their config ([`TxnOption`]), and scans of mutable
//! tables read through its connection: a statement sees the transaction's own writes.

use std::any::Any as StdAny;
use std::sync::Arc;

use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::error::{DataFusionError, Result as DfResult};
use sqlx::pool::PoolConnection;
use sqlx::{Any, Executor};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::catalog::{backoff, is_transient, BackendKind, Catalog};
use crate::error::{Error, Result};

/// Starts write transactions on the catalog database; one per engine, shared by every part
/// that writes (mutable tables, topics), so this process's writers queue in one place.
#[derive(Debug)]
pub struct Writer {
    catalog: Catalog,
    mutex: Arc<Mutex<()>>,
}

impl Writer {
    /// A writer for `catalog`.
    pub fn new(catalog: Catalog) -> Self {
        Writer { catalog, mutex: Arc::new(Mutex::new(())) }
    }

    /// Begin a write transaction (see [`WriteTxn`]).
    pub async fn begin(&self) -> Result<Arc<WriteTxn>> {
        WriteTxn::begin(&self.catalog, Arc::clone(&self.mutex)).await
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
    /// This process's writer mutex, held until COMMIT or ROLLBACK (not until the last
    /// reference goes: a prepared statement planned inside the transaction may outlive it).
    writer: std::sync::Mutex<Option<OwnedMutexGuard<()>>>,
}

/// Attempts at a step that failed with a transient SQLite error (busy, locking protocol).
const ATTEMPTS: u32 = 8;


impl WriteTxn {
    /// Begin: wait for this process's writer mutex, then for the database's write lock.
    pub async fn begin(catalog: &Catalog, writer: Arc<Mutex<()>>) -> Result<Arc<WriteTxn>> {
        let guard = writer.lock_owned().await;
        let kind = catalog.backend().kind();
        let begin = match kind {
            BackendKind::Sqlite => "BEGIN IMMEDIATE",
            BackendKind::Postgres => "BEGIN",
        };
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
                Err(e) if kind == BackendKind::Sqlite && is_transient(&e) && attempt + 1 < ATTEMPTS => {
                    attempt += 1;
                    backoff(attempt).await;
                }
                Err(e) => return Err(catalog.error(e)),
            }
        };
        Ok(Arc::new(WriteTxn { conn: Mutex::new(Some(conn)), kind, locked: Mutex::new(Vec::new()), writer: std::sync::Mutex::new(Some(guard)) }))
    }

    /// The database family the transaction runs on.
    pub fn kind(&self) -> BackendKind {
        self.kind
    }

    /// Run `f` on the transaction's connection.
    pub async fn with<T>(
        &self,
        f: impl for<'c> FnOnce(&'c mut sqlx::AnyConnection) -> futures::future::BoxFuture<'c, Result<T>>,
    ) -> Result<T> {
        let mut slot = self.conn.lock().await;
        let conn = slot.as_mut().ok_or_else(|| Error::Query("the transaction has already ended".to_string()))?;
        f(conn).await
    }

    /// Make concurrent writers of `storage` wait for this transaction (Postgres; SQLite's
    /// write lock already covers the whole database).
    pub async fn lock_table(&self, storage: &str) -> Result<()> {
        if self.kind != BackendKind::Postgres {
            return Ok(());
        }
        let mut locked = self.locked.lock().await;
        if locked.iter().any(|s| s == storage) {
            return Ok(());
        }
        let sql = format!("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE", super::store::quote(storage));
        self.with(|conn| Box::pin(async move { sqlx::query(&sql).execute(conn).await.map(|_| ()).map_err(|e| Error::Query(e.to_string())) })).await?;
        locked.push(storage.to_string());
        Ok(())
    }

    /// Commit; the transaction is then over. A contended SQLite `COMMIT` is retried; when a
    /// retry finds no transaction, the earlier attempt had committed.
    pub async fn commit(&self) -> Result<()> {
        let _writer = self.end();
        let conn = self.conn.lock().await.take().ok_or_else(|| Error::Query("the transaction has already ended".to_string()))?;
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
                Err(e) if self.kind == BackendKind::Sqlite && is_transient(&e) && attempt + 1 < ATTEMPTS => {
                    attempt += 1;
                    backoff(attempt).await;
                }
                // Unknown state: `conn` closes rather than going back to the pool.
                Err(e) => return Err(Error::Query(format!("commit failed: {}", crate::error::one_line(&e.to_string())))),
            }
        }
    }

    /// The writer mutex, taken out so that it is released when the caller's COMMIT or
    /// ROLLBACK returns, whatever its outcome.
    fn end(&self) -> Option<OwnedMutexGuard<()>> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Roll back; the transaction is then over.
    pub async fn rollback(&self) -> Result<()> {
        let _writer = self.end();
        if let Some(conn) = self.conn.lock().await.take() {
            let mut conn = InFlight(Some(conn));
            conn.get().execute("ROLLBACK").await.map_err(|e| Error::Query(format!("rollback failed: {}", crate::error::one_line(&e.to_string()))))?;
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
