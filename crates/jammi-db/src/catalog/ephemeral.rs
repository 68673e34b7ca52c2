//! Ephemeral sessions (`jammi_ephemeral_sessions`): one row per session, written when it
//! opens. Closing moves the row out of `open` in the transaction that drops the session's
//! tables; whoever makes that move (the session, its timeout, or a later process recovering
//! it) is the one that drops them, so they are dropped exactly once.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{now_millis, Catalog};
use crate::error::Result;
use crate::tenant::TenantId;

/// One ephemeral session as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EphemeralSessionRecord {
    /// The session id (32 hexadecimal characters).
    pub id: String,
    /// The tenant it belongs to (`None`: the operator).
    pub tenant: Option<TenantId>,
    /// When it opened, ms since the epoch.
    pub opened_at_ms: i64,
    /// Its idle timeout.
    pub timeout_ms: i64,
    /// After this, any process may recover it (its owner extends it while it is used).
    pub expires_at_ms: i64,
    /// `open`, `closed`, `timed_out` or `recovered`.
    pub state: String,
    /// Rows its tables held when they were dropped.
    pub rows_deleted: Option<i64>,
}

fn record(row: &AnyRow) -> std::result::Result<EphemeralSessionRecord, sqlx::Error> {
    Ok(EphemeralSessionRecord {
        id: row.try_get("id")?,
        tenant: super::tenant_of(row)?,
        opened_at_ms: row.try_get("opened_at_ms")?,
        timeout_ms: row.try_get("timeout_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        state: row.try_get("state")?,
        rows_deleted: row.try_get("rows_deleted")?,
    })
}

const COLUMNS: &str = "id, tenant_id, opened_at_ms, timeout_ms, expires_at_ms, state, rows_deleted";

/// Reads and writes `jammi_ephemeral_sessions`.
#[derive(Debug)]
pub struct EphemeralRepo<'a> {
    catalog: &'a Catalog,
}

impl<'a> EphemeralRepo<'a> {
    pub(super) fn new(catalog: &'a Catalog) -> Self {
        EphemeralRepo { catalog }
    }

    /// Record a session that opens now, inside the transaction open on `conn`.
    pub async fn insert_in(&self, conn: &mut AnyConnection, record: &EphemeralSessionRecord) -> Result<()> {
        let c = self.catalog;
        sqlx::query("INSERT INTO jammi_ephemeral_sessions (id, tenant_id, opened_at_ms, timeout_ms, expires_at_ms, state) VALUES ($1, $2, $3, $4, $5, 'open')")
            .bind(&record.id)
            .bind(record.tenant.map(|t| t.to_string()))
            .bind(record.opened_at_ms)
            .bind(record.timeout_ms)
            .bind(record.expires_at_ms)
            .execute(conn)
            .await
            .map(|_| ())
            .map_err(|e| c.error(e))
    }

    /// Push an open session's expiry to `expires_at_ms` (its owner is still using it).
    pub async fn extend(&self, id: &str, expires_at_ms: i64) -> Result<()> {
        let c = self.catalog;
        sqlx::query("UPDATE jammi_ephemeral_sessions SET expires_at_ms = $1 WHERE id = $2 AND state = 'open' AND expires_at_ms < $1")
            .bind(expires_at_ms)
            .bind(id)
            .execute(c.pool())
            .await
            .map(|_| ())
            .map_err(|e| c.error(e))
    }

    /// Move session `id` from `open` to `state` inside the transaction open on `conn`;
    /// `false` when it was not open (someone else closed it first).
    pub async fn close_in(&self, conn: &mut AnyConnection, id: &str, state: &str) -> Result<bool> {
        let c = self.catalog;
        let done = sqlx::query("UPDATE jammi_ephemeral_sessions SET state = $1, closed_at_ms = $2 WHERE id = $3 AND state = 'open'")
            .bind(state)
            .bind(now_millis())
            .bind(id)
            .execute(conn)
            .await
            .map_err(|e| c.error(e))?;
        Ok(done.rows_affected() == 1)
    }

    /// Note how many rows the session's tables held, inside the closing transaction.
    pub async fn set_rows_deleted_in(&self, conn: &mut AnyConnection, id: &str, rows: i64) -> Result<()> {
        let c = self.catalog;
        sqlx::query("UPDATE jammi_ephemeral_sessions SET rows_deleted = $1 WHERE id = $2").bind(rows).bind(id).execute(conn).await.map(|_| ()).map_err(|e| c.error(e))
    }

    /// Open sessions whose expiry passed before `now_ms`, oldest first, at most `limit`.
    pub async fn expired(&self, now_ms: i64, limit: i64) -> Result<Vec<EphemeralSessionRecord>> {
        let c = self.catalog;
        let sql = format!("SELECT {COLUMNS} FROM jammi_ephemeral_sessions WHERE state = 'open' AND expires_at_ms < $1 ORDER BY expires_at_ms LIMIT $2");
        let rows = sqlx::query(&sql).bind(now_ms).bind(limit).fetch_all(c.pool()).await.map_err(|e| c.error(e))?;
        rows.iter().map(record).collect::<std::result::Result<_, _>>().map_err(|e| c.error(e))
    }

    /// Session `id`'s record.
    pub async fn get(&self, id: &str) -> Result<Option<EphemeralSessionRecord>> {
        let c = self.catalog;
        let sql = format!("SELECT {COLUMNS} FROM jammi_ephemeral_sessions WHERE id = $1");
        let found = sqlx::query(&sql).bind(id).fetch_optional(c.pool()).await.map_err(|e| c.error(e))?;
        found.as_ref().map(record).transpose().map_err(|e| c.error(e))
    }
}
