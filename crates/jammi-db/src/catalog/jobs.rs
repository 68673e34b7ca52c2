//! Repository of the training-job queue (`jammi_jobs`, `jammi_job_attempts`).
//!
//! A job is `queued`, `running` (under a lease), `succeeded` or `failed`. Each claim is an
//! attempt with a fresh lease token; heartbeat, fail and finalize match on the token *and*
//! an unexpired lease, so only the current holder changes a job. Claims pick the highest
//! priority, then the oldest; on Postgres with `FOR UPDATE SKIP LOCKED`, so workers skip
//! each other's rows instead of waiting; on SQLite the claim takes the database's write
//! lock (`BEGIN IMMEDIATE`), which is held for a few statements only.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{now_millis, BackendKind, Catalog};
use crate::error::{Error, Result};
use crate::tenant::{TenantId, TenantScope};

/// Job states as stored.
pub mod state {
    /// Waiting for a worker.
    pub const QUEUED: &str = "queued";
    /// Claimed; the lease may have expired.
    pub const RUNNING: &str = "running";
    /// Finalized: the model points at the job's artifact.
    pub const SUCCEEDED: &str = "succeeded";
    /// Failed on its last attempt.
    pub const FAILED: &str = "failed";
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for a worker.
    Queued,
    /// Claimed (the lease may have expired; the next claim takes it over).
    Running,
    /// Finalized.
    Succeeded,
    /// Failed on its last attempt.
    Failed,
}

impl JobState {
    pub(crate) fn parse(s: &str) -> JobState {
        match s {
            state::RUNNING => JobState::Running,
            state::SUCCEEDED => JobState::Succeeded,
            state::FAILED => JobState::Failed,
            _ => JobState::Queued,
        }
    }

    /// The stored name.
    pub fn as_str(&self) -> &'static str {
        match self {
            JobState::Queued => state::QUEUED,
            JobState::Running => state::RUNNING,
            JobState::Succeeded => state::SUCCEEDED,
            JobState::Failed => state::FAILED,
        }
    }
}

/// One job: what the catalog stores of it, as every caller sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// Identifier.
    pub id: String,
    /// Owning tenant; `None` when shared.
    pub tenant: Option<TenantId>,
    /// The model version the job produces an artifact for.
    pub model_id: String,
    /// Where attempts write their artifacts (each under its own prefix).
    pub artifact_root: String,
    /// Free-form JSON handed to the worker.
    pub payload: serde_json::Value,
    /// Higher runs first.
    pub priority: i64,
    /// Where the job stands.
    pub state: JobState,
    /// Claims so far.
    pub attempts: u32,
    /// Claims allowed.
    pub max_attempts: u32,
    /// Current or last lease holder.
    pub worker: Option<String>,
    /// Lease end, ms since the epoch (running jobs).
    pub lease_expires_at_ms: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The winning attempt's prefix (succeeded jobs).
    pub artifact_prefix: Option<String>,
    /// Enqueue time, µs since the epoch.
    pub enqueued_at: i64,
    /// When the job succeeded or failed for good, ms since the epoch.
    pub finished_at: Option<i64>,
}

/// A successful claim.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRecord {
    /// The job, as updated by the claim.
    pub job: JobRecord,
    /// Attempt number (1-based).
    pub attempt: i64,
    /// The lease token; required by heartbeat, fail and finalize.
    pub token: String,
    /// The attempt's own artifact prefix.
    pub artifact_prefix: String,
}

/// An attempt whose artifact prefix should be collected.
#[derive(Debug, Clone, PartialEq)]
pub struct LosingAttempt {
    /// Job.
    pub job_id: String,
    /// Attempt number.
    pub attempt: i64,
    /// The attempt's artifact prefix.
    pub artifact_prefix: String,
}

/// Reads and writes the job queue.
#[derive(Debug)]
pub struct JobRepo<'a> {
    catalog: &'a Catalog,
}

const COLUMNS: &str = "j.id, j.tenant_id, j.model_id, j.artifact_root, j.payload, j.priority, j.state, j.attempts, j.max_attempts, \
                       j.worker, j.lease_expires_at, j.last_error, j.artifact_prefix, j.enqueued_at, j.finished_at";

fn record(row: &AnyRow) -> std::result::Result<JobRecord, sqlx::Error> {
    Ok(JobRecord {
        id: row.try_get("id")?,
        tenant: super::tenant_of(row)?,
        model_id: row.try_get("model_id")?,
        artifact_root: row.try_get("artifact_root")?,
        payload: serde_json::from_str(&row.try_get::<String, _>("payload")?).unwrap_or(serde_json::Value::Null),
        priority: row.try_get("priority")?,
        state: JobState::parse(&row.try_get::<String, _>("state")?),
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        max_attempts: row.try_get::<i64, _>("max_attempts")? as u32,
        worker: row.try_get("worker")?,
        lease_expires_at_ms: row.try_get("lease_expires_at")?,
        last_error: row.try_get("last_error")?,
        artifact_prefix: row.try_get("artifact_prefix")?,
        enqueued_at: row.try_get("enqueued_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

fn lease_lost(job_id: &str) -> Error {
    Error::LeaseLost { job: job_id.to_string() }
}

/// The guard every lease-holder operation matches on.
const HOLDER: &str = "id = $1 AND lease_token = $2 AND state = 'running' AND lease_expires_at >= $3";

impl<'a> JobRepo<'a> {
    pub(super) fn new(catalog: &'a Catalog) -> Self {
        JobRepo { catalog }
    }

    /// Transactions that change jobs: Postgres relies on row locks (`SKIP LOCKED` in
    /// claims), SQLite takes its write lock up front.
    async fn begin(&self) -> Result<Transaction<'_, Any>> {
        let c = self.catalog;
        match c.backend().kind() {
            BackendKind::Postgres => c.pool().begin().await.map_err(|e| c.error(e)),
            BackendKind::Sqlite => c.begin_serialized().await,
        }
    }

    /// Add a queued job.
    pub async fn enqueue(&self, job: &JobRecord) -> Result<()> {
        let c = self.catalog;
        sqlx::query(
            "INSERT INTO jammi_jobs (id, tenant_id, model_id, artifact_root, payload, priority, state, attempts, max_attempts, enqueued_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'queued', 0, $7, $8)",
        )
        .bind(&job.id)
        .bind(job.tenant.map(|t| t.to_string()))
        .bind(&job.model_id)
        .bind(&job.artifact_root)
        .bind(job.payload.to_string())
        .bind(job.priority)
        .bind(i64::from(job.max_attempts))
        .bind(now_micros())
        .execute(c.pool())
        .await
        .map_err(|e| c.error(e))?;
        Ok(())
    }

    /// Every job `scope` may see, newest first.
    pub async fn list(&self, scope: TenantScope) -> Result<Vec<JobRecord>> {
        let c = self.catalog;
        let (condition, tenant) = super::visible_rows("j", scope, 1);
        let sql = format!("SELECT {COLUMNS} FROM jammi_jobs j WHERE 1 = 1{condition} ORDER BY j.enqueued_at DESC, j.id");
        let rows = super::bind_opt(sqlx::query(&sql), tenant).fetch_all(c.pool()).await.map_err(|e| c.error(e))?;
        rows.iter().map(record).collect::<std::result::Result<_, _>>().map_err(|e| c.error(e))
    }

    /// One job by id, if `scope` may see it.
    pub async fn get(&self, scope: TenantScope, id: &str) -> Result<Option<JobRecord>> {
        let c = self.catalog;
        let (condition, tenant) = super::visible_rows("j", scope, 2);
        let sql = format!("SELECT {COLUMNS} FROM jammi_jobs j WHERE j.id = $1{condition}");
        let row = super::bind_opt(sqlx::query(&sql).bind(id), tenant).fetch_optional(c.pool()).await.map_err(|e| c.error(e))?;
        row.as_ref().map(record).transpose().map_err(|e| c.error(e))
    }

    /// Fail, for good, running jobs whose lease expired on their last allowed attempt.
    /// Returns their ids (their attempts' artifacts can be collected).
    pub async fn expire_exhausted(&self) -> Result<Vec<String>> {
        let c = self.catalog;
        let now = now_millis();
        let mut tx = self.begin().await?;
        let lock = c.backend().kind().skip_locked(None);
        let ids: Vec<String> = sqlx::query(&format!(
            "SELECT id FROM jammi_jobs WHERE state = 'running' AND lease_expires_at < $1 AND attempts >= max_attempts{lock}"
        ))
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| c.error(e))?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| c.error(e))?;
        for id in &ids {
            sqlx::query(
                "UPDATE jammi_jobs SET state = 'failed', lease_token = NULL, finished_at = $1, \
                 last_error = 'the lease expired on the last allowed attempt (' || CAST(attempts AS TEXT) || ' of ' || CAST(max_attempts AS TEXT) || ')' \
                 WHERE id = $2 AND state = 'running' AND lease_expires_at < $1",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| c.error(e))?;
            sqlx::query("UPDATE jammi_job_attempts SET outcome = 'expired' WHERE job_id = $1 AND outcome = 'running'")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(|e| c.error(e))?;
        }
        tx.commit().await.map_err(|e| c.error(e))?;
        Ok(ids)
    }

    /// Claim the next job `scope` may run: queued, or running with an expired lease and
    /// attempts left; highest priority, then oldest. `prefix_of(job, attempt)` names the
    /// attempt's artifact prefix, recorded with the attempt.
    pub async fn claim(
        &self,
        scope: TenantScope,
        worker: &str,
        lease_ms: i64,
        prefix_of: impl Fn(&JobRecord, i64) -> Result<String>,
    ) -> Result<Option<ClaimRecord>> {
        let c = self.catalog;
        let now = now_millis();
        let mut tx = self.begin().await?;
        let lock = c.backend().kind().skip_locked(Some("j"));
        let (condition, tenant) = super::visible_rows("j", scope, 2);
        let sql = format!(
            "SELECT {COLUMNS} FROM jammi_jobs j WHERE (j.state = 'queued' OR (j.state = 'running' AND j.lease_expires_at < $1)) \
             AND j.attempts < j.max_attempts{condition} ORDER BY j.priority DESC, j.enqueued_at, j.id LIMIT 1{lock}"
        );
        let row = super::bind_opt(sqlx::query(&sql).bind(now), tenant).fetch_optional(&mut *tx).await.map_err(|e| c.error(e))?;
        let Some(row) = row else {
            tx.commit().await.map_err(|e| c.error(e))?;
            return Ok(None);
        };
        let mut job = record(&row).map_err(|e| c.error(e))?;
        let attempt = i64::from(job.attempts) + 1;
        let prefix = prefix_of(&job, attempt)?;
        let token = uuid::Uuid::new_v4().to_string();
        let expires = now + lease_ms;
        let moved = sqlx::query(
            "UPDATE jammi_jobs SET state = 'running', attempts = $1, worker = $2, lease_token = $3, lease_expires_at = $4 WHERE id = $5 AND attempts = $6",
        )
        .bind(attempt)
        .bind(worker)
        .bind(&token)
        .bind(expires)
        .bind(&job.id)
        .bind(i64::from(job.attempts))
        .execute(&mut *tx)
        .await
        .map_err(|e| c.error(e))?
        .rows_affected();
        if moved != 1 {
            // Another claimer won this row between our read and write (cannot happen under
            // either backend's locking; kept as a guard): report nothing claimed.
            tx.rollback().await.map_err(|e| c.error(e))?;
            return Ok(None);
        }
        sqlx::query("UPDATE jammi_job_attempts SET outcome = 'expired' WHERE job_id = $1 AND outcome = 'running'")
            .bind(&job.id)
            .execute(&mut *tx)
            .await
            .map_err(|e| c.error(e))?;
        sqlx::query(
            "INSERT INTO jammi_job_attempts (job_id, attempt, worker, lease_token, artifact_prefix, outcome, collected, started_at, tenant_id) \
             VALUES ($1, $2, $3, $4, $5, 'running', 0, $6, $7)",
        )
        .bind(&job.id)
        .bind(attempt)
        .bind(worker)
        .bind(&token)
        .bind(&prefix)
        .bind(now)
        .bind(job.tenant.map(|t| t.to_string()))
        .execute(&mut *tx)
        .await
        .map_err(|e| c.error(e))?;
        tx.commit().await.map_err(|e| c.error(e))?;
        job.state = JobState::Running;
        job.attempts = attempt as u32;
        job.worker = Some(worker.to_string());
        job.lease_expires_at_ms = Some(expires);
        Ok(Some(ClaimRecord { job, attempt, token, artifact_prefix: prefix }))
    }

    /// The attempt holding `token`, with its artifact prefix: (attempt, prefix).
    pub async fn attempt_of(&self, job_id: &str, token: &str) -> Result<(i64, String)> {
        let c = self.catalog;
        let row = sqlx::query("SELECT attempt, artifact_prefix FROM jammi_job_attempts WHERE job_id = $1 AND lease_token = $2")
            .bind(job_id)
            .bind(token)
            .fetch_optional(c.pool())
            .await
            .map_err(|e| c.error(e))?
            .ok_or_else(|| lease_lost(job_id))?;
        Ok((row.try_get(0).map_err(|e| c.error(e))?, row.try_get(1).map_err(|e| c.error(e))?))
    }

    /// `UPDATE jammi_jobs SET {set}` for the current lease holder only (`$1` job, `$2`
    /// token, `$3` now, `$4` = `value`); [`Error::LeaseLost`] when the lease is not held.
    async fn update_as_holder<V>(&self, conn: &mut sqlx::AnyConnection, set: &str, job_id: &str, token: &str, now: i64, value: V) -> Result<()>
    where
        V: for<'q> sqlx::Encode<'q, Any> + sqlx::Type<Any> + Send,
    {
        let c = self.catalog;
        let moved = sqlx::query(&format!("UPDATE jammi_jobs SET {set} WHERE {HOLDER}"))
            .bind(job_id)
            .bind(token)
            .bind(now)
            .bind(value)
            .execute(conn)
            .await
            .map_err(|e| c.error(e))?
            .rows_affected();
        match moved {
            0 => Err(lease_lost(job_id)),
            _ => Ok(()),
        }
    }

    /// Extend the lease to `lease_ms` from now.
    pub async fn heartbeat(&self, job_id: &str, token: &str, lease_ms: i64) -> Result<i64> {
        let c = self.catalog;
        let now = now_millis();
        let mut conn = c.pool().acquire().await.map_err(|e| c.error(e))?;
        self.update_as_holder(&mut conn, "lease_expires_at = $4", job_id, token, now, now + lease_ms).await?;
        Ok(now + lease_ms)
    }

    /// The holder gives up: back to the queue while attempts remain, failed otherwise.
    /// Returns the job's new state.
    pub async fn fail(&self, job_id: &str, token: &str, error: &str) -> Result<String> {
        let c = self.catalog;
        let now = now_millis();
        let mut tx = self.begin().await?;
        let set = "state = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END, \
                   finished_at = CASE WHEN attempts >= max_attempts THEN $3 ELSE NULL END, \
                   last_error = $4, lease_token = NULL, lease_expires_at = NULL";
        self.update_as_holder(&mut tx, set, job_id, token, now, error.to_string()).await?;
        sqlx::query("UPDATE jammi_job_attempts SET outcome = 'failed' WHERE job_id = $1 AND lease_token = $2")
            .bind(job_id)
            .bind(token)
            .execute(&mut *tx)
            .await
            .map_err(|e| c.error(e))?;
        let state: String = sqlx::query("SELECT state FROM jammi_jobs WHERE id = $1")
            .bind(job_id)
            .fetch_one(&mut *tx)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(|e| c.error(e))?;
        tx.commit().await.map_err(|e| c.error(e))?;
        Ok(state)
    }

    /// The single commit point of a job: complete it and point its model at `prefix`, in
    /// one transaction, only for the current lease holder.
    pub async fn finalize(&self, job_id: &str, token: &str, prefix: &str) -> Result<()> {
        let c = self.catalog;
        let now = now_millis();
        let mut tx = self.begin().await?;
        let set = "state = 'succeeded', artifact_prefix = $4, finished_at = $3, lease_token = NULL, lease_expires_at = NULL, last_error = NULL";
        self.update_as_holder(&mut tx, set, job_id, token, now, prefix.to_string()).await?;
        sqlx::query("UPDATE jammi_models SET artifact_prefix = $1, job_id = $2, updated_at = $3 WHERE id = (SELECT model_id FROM jammi_jobs WHERE id = $2)")
            .bind(prefix)
            .bind(job_id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| c.error(e))?;
        sqlx::query("UPDATE jammi_job_attempts SET outcome = CASE WHEN lease_token = $2 THEN 'won' ELSE 'lost' END WHERE job_id = $1")
            .bind(job_id)
            .bind(token)
            .execute(&mut *tx)
            .await
            .map_err(|e| c.error(e))?;
        tx.commit().await.map_err(|e| c.error(e))
    }

    /// Attempts whose artifacts nobody will serve and that were not collected yet: those
    /// that failed, and every non-winning attempt of a finished job.
    pub async fn uncollected(&self) -> Result<Vec<LosingAttempt>> {
        let c = self.catalog;
        let rows = sqlx::query(
            "SELECT a.job_id, a.attempt, a.artifact_prefix FROM jammi_job_attempts a JOIN jammi_jobs j ON j.id = a.job_id \
             WHERE a.collected = 0 AND (a.outcome = 'failed' OR (a.outcome <> 'won' AND j.state IN ('succeeded', 'failed'))) \
             ORDER BY a.job_id, a.attempt",
        )
        .fetch_all(c.pool())
        .await
        .map_err(|e| c.error(e))?;
        rows.iter()
            .map(|r| Ok(LosingAttempt { job_id: r.try_get(0)?, attempt: r.try_get(1)?, artifact_prefix: r.try_get(2)? }))
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(|e| c.error(e))
    }

    /// Record that an attempt's artifacts were deleted.
    pub async fn mark_collected(&self, job_id: &str, attempt: i64) -> Result<()> {
        let c = self.catalog;
        sqlx::query("UPDATE jammi_job_attempts SET collected = 1 WHERE job_id = $1 AND attempt = $2")
            .bind(job_id)
            .bind(attempt)
            .execute(c.pool())
            .await
            .map_err(|e| c.error(e))?;
        Ok(())
    }
}
