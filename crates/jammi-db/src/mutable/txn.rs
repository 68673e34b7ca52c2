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

/// An open write transaction: a pooled connection inside `BEGIN` that we end ourselves, so
/// that a contended SQLite `COMMIT` can be retried and its outcome known.
#[derive(Debug)]
pub struct WriteTxn {
    conn: Mutex<Option<PoolConnection<Any>>>,
    kind: BackendKind,
    /// Postgres storage tables already locked in this transaction.
    locked: Mutex<Vec<String>>,
    _writer: OwnedMutexGuard<()>,
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
                let mut conn = catalog.pool().acquire().await?;
                conn.execute(begin).await?;
                Ok::<_, sqlx::Error>(conn)
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
        Ok(Arc::new(WriteTxn { conn: Mutex::new(Some(conn)), kind, locked: Mutex::new(Vec::new()), _writer: guard }))
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
        let mut conn = self.conn.lock().await.take().ok_or_else(|| Error::Query("the transaction has already ended".to_string()))?;
        let mut attempt = 0;
        loop {
            match conn.execute("COMMIT").await {
                Ok(_) => return Ok(()),
                Err(e) if attempt > 0 && e.to_string().contains("no transaction is active") => return Ok(()),
                Err(e) if self.kind == BackendKind::Sqlite && is_transient(&e) && attempt + 1 < ATTEMPTS => {
                    attempt += 1;
                    backoff(attempt).await;
                }
                Err(e) => {
                    // Unknown state: close the connection rather than return it to the pool.
                    conn.close_on_drop();
                    return Err(Error::Query(format!("commit failed: {}", crate::error::one_line(&e.to_string()))));
                }
            }
        }
    }

    /// Roll back; the transaction is then over.
    pub async fn rollback(&self) -> Result<()> {
        if let Some(mut conn) = self.conn.lock().await.take() {
            if let Err(e) = conn.execute("ROLLBACK").await {
                conn.close_on_drop();
                return Err(Error::Query(format!("rollback failed: {}", crate::error::one_line(&e.to_string()))));
            }
        }
        Ok(())
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
