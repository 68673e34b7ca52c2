//! Repository of following vector tables (`jammi_vector_follows`,
//! `jammi_vector_follow_changes`): the change log a mutable table's writes append to, and the
//! lease and progress of the work that embeds it.
//!
//! Offsets: an append moves the follow row's `next_offset` in the writing transaction, so
//! (as for topics) the row lock on Postgres, or SQLite's write lock, makes committed offsets
//! a gap-free prefix. Progress (`embedded_offset`, the backfill cursor) moves only in the
//! same catalog transaction that commits the vector table's new generation, and only for
//! the holder of an unexpired lease: a batch is applied exactly once, whoever ran it.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{now_millis, BackendKind, Catalog};
use crate::error::{Error, Result};
use crate::tenant::TenantId;

/// Where a following table stands.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowRecord {
    /// The vector table.
    pub table_id: String,
    /// Offset the next logged change gets (changes logged so far).
    pub next_offset: i64,
    /// Changes before this offset are in the vector table.
    pub embedded_offset: i64,
    /// Whether the rows that were in the source when the table was created are all in.
    pub backfill_done: bool,
    /// The id (JSON) of the last source row the backfill committed, to resume after.
    pub backfill_cursor: Option<String>,
    /// The worker holding the lease, while it is unexpired.
    pub lease_worker: Option<String>,
    /// Lease end, ms since the epoch.
    pub lease_expires_ms: Option<i64>,
    /// The last failure's message (cleared by the next success).
    pub last_error: Option<String>,
    /// Failures in a row.
    pub failures: i64,
    /// No worker claims the table before this time (back-off after failures), ms.
    pub retry_at_ms: i64,
    /// Rows embedded into the table since it was created.
    pub rows_embedded: i64,
    /// The model the table is being re-embedded with (JSON), while that runs.
    pub target_model: Option<String>,
    /// When the oldest change not yet embedded was logged (ms), if any is pending.
    pub oldest_pending_ms: Option<i64>,
    /// The last commit of embedded rows, ms since the epoch.
    pub applied_at_ms: Option<i64>,
}

/// What a lease holder commits together with a new generation of the vector table.
#[derive(Debug, Clone, Default)]
pub struct FollowProgress {
    /// The vector table.
    pub table_id: String,
    /// The lease token that must still hold.
    pub token: String,
    /// Changes before this offset are now applied.
    pub embedded_offset: Option<i64>,
    /// The backfill moved to this cursor (id as JSON).
    pub backfill_cursor: Option<String>,
    /// The backfill is complete.
    pub backfill_done: bool,
    /// Rows embedded by this commit.
    pub rows: i64,
    /// The re-embedding with `target_model` is complete (the spec was switched).
    pub target_done: bool,
}

const COLUMNS: &str = "f.table_id, f.next_offset, f.embedded_offset, f.backfill_done, f.backfill_cursor, f.lease_worker, f.lease_expires_ms, \
    f.last_error, f.failures, f.retry_at_ms, f.rows_embedded, f.target_model, f.applied_at_ms, \
    (SELECT MIN(c.logged_at_ms) FROM jammi_vector_follow_changes c WHERE c.table_id = f.table_id AND c.change_offset >= f.embedded_offset)";

fn lease_lost(table_id: &str) -> Error {
    Error::LeaseLost { job: format!("embedding work of vector table {table_id}") }
}

/// Reads and writes the follow rows.
#[derive(Debug)]
pub struct FollowRepo<'a> {
    catalog: &'a Catalog,
}

impl<'a> FollowRepo<'a> {
    pub(super) fn new(catalog: &'a Catalog) -> Self {
        FollowRepo { catalog }
    }

    fn err(&self) -> impl Fn(sqlx::Error) -> Error + '_ {
        |e| self.catalog.error(e)
    }

    /// Start following for `table_id` (before the table becomes ready, so no change is
    /// logged without its row).
    pub async fn create(&self, table_id: &str, tenant: Option<TenantId>) -> Result<()> {
        sqlx::query("INSERT INTO jammi_vector_follows (table_id, tenant_id) VALUES ($1, $2)")
            .bind(table_id)
            .bind(tenant.map(|t| t.to_string()))
            .execute(self.catalog.pool())
            .await
            .map_err(self.err())?;
        Ok(())
    }

    /// A work row for an imported table (nothing to backfill, no source): it carries a
    /// re-embedding with a new model.
    pub async fn create_done(&self, table_id: &str, tenant: Option<TenantId>) -> Result<()> {
        sqlx::query("INSERT INTO jammi_vector_follows (table_id, tenant_id, backfill_done) VALUES ($1, $2, 1)")
            .bind(table_id)
            .bind(tenant.map(|t| t.to_string()))
            .execute(self.catalog.pool())
            .await
            .map_err(self.err())?;
        Ok(())
    }

    /// The follow row of `table_id`.
    pub async fn get(&self, table_id: &str) -> Result<Option<FollowRecord>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM jammi_vector_follows f WHERE f.table_id = $1"))
            .bind(table_id)
            .fetch_optional(self.catalog.pool())
            .await
            .map_err(self.err())?;
        row.map(|r| decode(&r).map_err(self.err())).transpose()
    }

    /// Every follow row with work that no unexpired lease holds and whose back-off is over.
    pub async fn claimable(&self) -> Result<Vec<FollowRecord>> {
        let now = now_millis();
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM jammi_vector_follows f \
             WHERE (f.backfill_done = 0 OR f.next_offset > f.embedded_offset OR f.target_model IS NOT NULL) \
             AND (f.lease_expires_ms IS NULL OR f.lease_expires_ms < $1) AND f.retry_at_ms <= $1 ORDER BY f.table_id"
        ))
        .bind(now)
        .fetch_all(self.catalog.pool())
        .await
        .map_err(self.err())?;
        rows.iter().map(|r| decode(r).map_err(self.err())).collect()
    }

    /// Take the lease of `table_id` for `lease_ms` if nobody holds it. One conditional
    /// update: of two workers racing, exactly one gets it.
    pub async fn claim(&self, table_id: &str, worker: &str, token: &str, lease_ms: i64) -> Result<bool> {
        let now = now_millis();
        let done = sqlx::query(
            "UPDATE jammi_vector_follows SET lease_token = $1, lease_worker = $2, lease_expires_ms = $3 \
             WHERE table_id = $4 AND (lease_expires_ms IS NULL OR lease_expires_ms < $5)",
        )
        .bind(token)
        .bind(worker)
        .bind(now + lease_ms)
        .bind(table_id)
        .bind(now)
        .execute(self.catalog.pool())
        .await
        .map_err(self.err())?;
        Ok(done.rows_affected() == 1)
    }

    /// Extend the lease; [`Error::LeaseLost`] when it expired or was taken over.
    pub async fn heartbeat(&self, table_id: &str, token: &str, lease_ms: i64) -> Result<()> {
        let now = now_millis();
        let done = sqlx::query("UPDATE jammi_vector_follows SET lease_expires_ms = $1 WHERE table_id = $2 AND lease_token = $3 AND lease_expires_ms >= $4")
            .bind(now + lease_ms)
            .bind(table_id)
            .bind(token)
            .bind(now)
            .execute(self.catalog.pool())
            .await
            .map_err(self.err())?;
        if done.rows_affected() == 0 {
            return Err(lease_lost(table_id));
        }
        Ok(())
    }

    /// Give the lease back (work done, or nothing left).
    pub async fn release(&self, table_id: &str, token: &str) -> Result<()> {
        sqlx::query("UPDATE jammi_vector_follows SET lease_token = NULL, lease_worker = NULL, lease_expires_ms = NULL WHERE table_id = $1 AND lease_token = $2")
            .bind(table_id)
            .bind(token)
            .execute(self.catalog.pool())
            .await
            .map_err(self.err())?;
        Ok(())
    }

    /// Record a failed attempt: the error, the failure count, when to retry; the lease goes
    /// back so any worker may retry then.
    pub async fn fail(&self, table_id: &str, token: &str, error: &str, retry_at_ms: i64) -> Result<()> {
        sqlx::query(
            "UPDATE jammi_vector_follows SET last_error = $1, failures = failures + 1, retry_at_ms = $2, \
             lease_token = NULL, lease_worker = NULL, lease_expires_ms = NULL WHERE table_id = $3 AND lease_token = $4",
        )
        .bind(error)
        .bind(retry_at_ms)
        .bind(table_id)
        .bind(token)
        .execute(self.catalog.pool())
        .await
        .map_err(self.err())?;
        Ok(())
    }

    /// Ask for the table to be re-embedded with `model` (JSON of the new embedding source).
    pub async fn set_target(&self, table_id: &str, model: &str) -> Result<()> {
        sqlx::query("UPDATE jammi_vector_follows SET target_model = $1, retry_at_ms = 0, failures = 0, last_error = NULL WHERE table_id = $2")
            .bind(model)
            .bind(table_id)
            .execute(self.catalog.pool())
            .await
            .map_err(self.err())?;
        Ok(())
    }

    /// Up to `limit` logged changes from `from` on: (offset, row id as JSON).
    pub async fn changes(&self, table_id: &str, from: i64, limit: i64) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query("SELECT change_offset, row_key FROM jammi_vector_follow_changes WHERE table_id = $1 AND change_offset >= $2 ORDER BY change_offset LIMIT $3")
            .bind(table_id)
            .bind(from)
            .bind(limit)
            .fetch_all(self.catalog.pool())
            .await
            .map_err(self.err())?;
        rows.iter().map(|r| Ok((r.try_get(0).map_err(self.err())?, r.try_get(1).map_err(self.err())?))).collect()
    }

    /// Commit `progress` on its own (a batch that changed no vectors).
    pub async fn commit(&self, progress: &FollowProgress) -> Result<()> {
        let c = self.catalog;
        let mut tx = c.pool().begin().await.map_err(|e| c.error(e))?;
        if !commit_progress(&mut tx, progress).await.map_err(|e| c.error(e))? {
            tx.rollback().await.map_err(|e| c.error(e))?;
            return Err(lease_lost(&progress.table_id));
        }
        tx.commit().await.map_err(|e| c.error(e))
    }

    /// Forget `table_id` (the table was dropped).
    pub async fn delete(&self, table_id: &str) -> Result<()> {
        for sql in ["DELETE FROM jammi_vector_follow_changes WHERE table_id = $1", "DELETE FROM jammi_vector_follows WHERE table_id = $1"] {
            sqlx::query(sql).bind(table_id).execute(self.catalog.pool()).await.map_err(self.err())?;
        }
        Ok(())
    }
}

/// Log `keys` (row ids as JSON) as changed, inside the writing transaction on `conn`.
/// Returns false when the table no longer follows (dropped meanwhile): nothing is logged.
pub(crate) async fn log_changes(conn: &mut AnyConnection, kind: BackendKind, table_id: &str, tenant: Option<String>, keys: &[String]) -> std::result::Result<bool, sqlx::Error> {
    let n = keys.len() as i64;
    let Some(row) = sqlx::query("UPDATE jammi_vector_follows SET next_offset = next_offset + $1 WHERE table_id = $2 RETURNING next_offset")
        .bind(n)
        .bind(table_id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(false);
    };
    let first = row.try_get::<i64, _>(0)? - n;
    let now = now_millis();
    for (chunk_index, chunk) in keys.chunks(1000).enumerate() {
        let tuples: Vec<String> = (0..chunk.len())
            .map(|i| format!("({})", (1..=5).map(|j| kind.placeholder(i * 5 + j)).collect::<Vec<_>>().join(", ")))
            .collect();
        let sql = format!("INSERT INTO jammi_vector_follow_changes (table_id, tenant_id, change_offset, row_key, logged_at_ms) VALUES {}", tuples.join(", "));
        let mut query = sqlx::query(&sql);
        for (i, key) in chunk.iter().enumerate() {
            query = query.bind(table_id).bind(tenant.clone()).bind(first + (chunk_index * 1000 + i) as i64).bind(key.clone()).bind(now);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(true)
}

/// Apply `progress` inside the transaction on `conn` if its lease still holds; returns false
/// (and changes nothing) otherwise. Applied changes are removed from the log.
pub(crate) async fn commit_progress(conn: &mut AnyConnection, progress: &FollowProgress) -> std::result::Result<bool, sqlx::Error> {
    let now = now_millis();
    let held = sqlx::query(
        "UPDATE jammi_vector_follows SET \
           embedded_offset = COALESCE($1, embedded_offset), \
           backfill_cursor = COALESCE($2, backfill_cursor), \
           backfill_done = CASE WHEN $3 = 1 THEN 1 ELSE backfill_done END, \
           target_model = CASE WHEN $4 = 1 THEN NULL ELSE target_model END, \
           rows_embedded = rows_embedded + $5, applied_at_ms = $6, last_error = NULL, failures = 0 \
         WHERE table_id = $7 AND lease_token = $8 AND lease_expires_ms >= $6",
    )
    .bind(progress.embedded_offset)
    .bind(progress.backfill_cursor.clone())
    .bind(i64::from(progress.backfill_done))
    .bind(i64::from(progress.target_done))
    .bind(progress.rows)
    .bind(now)
    .bind(&progress.table_id)
    .bind(&progress.token)
    .execute(&mut *conn)
    .await?;
    if held.rows_affected() == 0 {
        return Ok(false);
    }
    if let Some(offset) = progress.embedded_offset {
        sqlx::query("DELETE FROM jammi_vector_follow_changes WHERE table_id = $1 AND change_offset < $2")
            .bind(&progress.table_id)
            .bind(offset)
            .execute(&mut *conn)
            .await?;
    }
    Ok(true)
}

fn decode(row: &AnyRow) -> std::result::Result<FollowRecord, sqlx::Error> {
    Ok(FollowRecord {
        table_id: row.try_get(0)?,
        next_offset: row.try_get(1)?,
        embedded_offset: row.try_get(2)?,
        backfill_done: row.try_get::<i64, _>(3)? != 0,
        backfill_cursor: row.try_get(4)?,
        lease_worker: row.try_get(5)?,
        lease_expires_ms: row.try_get(6)?,
        last_error: row.try_get(7)?,
        failures: row.try_get(8)?,
        retry_at_ms: row.try_get(9)?,
        rows_embedded: row.try_get(10)?,
        target_model: row.try_get(11)?,
        applied_at_ms: row.try_get(12)?,
        oldest_pending_ms: row.try_get(13)?,
    })
}
