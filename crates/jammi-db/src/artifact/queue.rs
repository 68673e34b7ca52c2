//! The training-job queue: workers claim jobs under leases, write their artifact under an
//! attempt-unique prefix, and finalize — one catalog transaction that completes the job and
//! points the model at the artifact. The catalog pointer is the commit; everything an
//! attempt wrote that did not win is collected afterwards.

use std::time::Duration;

use super::registry::Models;
use super::ArtifactStore;
use crate::catalog::{JobRecord, JobRepo, JobState};
use crate::error::{Error, Result};
use crate::context::EngineContext;
use crate::storage::StorageUrl;
use crate::tenant::TenantId;

/// What to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    /// Model name.
    pub model: String,
    /// Model version the job produces an artifact for.
    pub version: String,
    /// Storage root under which every attempt writes its own prefix.
    pub artifact_root: String,
    /// Higher runs first (default 0).
    pub priority: i64,
    /// Claims allowed before the job fails for good (default 3).
    pub max_attempts: u32,
    /// Free-form JSON handed to the worker.
    pub payload: serde_json::Value,
}

impl JobRequest {
    /// A job for `model:version` writing under `artifact_root`, priority 0, 3 attempts.
    pub fn new(model: impl Into<String>, version: impl Into<String>, artifact_root: impl Into<String>) -> Self {
        JobRequest { model: model.into(), version: version.into(), artifact_root: artifact_root.into(), priority: 0, max_attempts: 3, payload: serde_json::json!({}) }
    }
}

/// A claimed job: what the worker needs to do it and to report back.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// The job.
    pub job_id: String,
    /// Attempt number (1-based).
    pub attempt: u32,
    /// Secret of this lease; heartbeat, fail and finalize present it.
    pub token: String,
    /// The claiming worker.
    pub worker: String,
    /// Payload given at enqueue.
    pub payload: serde_json::Value,
    /// Where attempts write.
    pub artifact_root: String,
    /// This attempt's own prefix: write the artifact here (see [`Lease::segments`]).
    pub artifact_prefix: String,
    /// Lease end, ms since the epoch; heartbeat before it.
    pub expires_at_ms: i64,
    /// The job's tenant (`None`: shared); its artifacts sit under the tenant's own segment.
    pub tenant: Option<TenantId>,
    /// The tenant of the session that claimed it (`None`: the operator). A tenant's worker
    /// writes under its own segment even for a shared job, as its artifact store requires.
    pub claimed_by: Option<TenantId>,
}

impl Lease {
    /// The segments under `artifact_root` that make this attempt's prefix, for
    /// [`ArtifactStore::put_artifact`].
    pub fn segments(&self) -> Vec<String> {
        attempt_segments(self.claimed_by, self.tenant, &self.job_id, &self.worker, self.attempt as i64)
    }

    /// What a worker outside this process needs, as JSON: `job_id`, `attempt`, `token`,
    /// `worker`, `artifact_root`, `segments` (joined with `/`), `artifact_prefix`,
    /// `expires_at_ms`, `payload`. `jammi job claim` prints it; the Python module hands it over.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "job_id": self.job_id,
            "attempt": self.attempt,
            "token": self.token,
            "worker": self.worker,
            "artifact_root": self.artifact_root,
            "segments": self.segments().join("/"),
            "artifact_prefix": self.artifact_prefix,
            "expires_at_ms": self.expires_at_ms,
            "payload": self.payload,
        })
    }
}

/// tenant / job / worker / attempt-N: unique per attempt, so no attempt overwrites
/// another's files, and each tenant's artifacts under their own segment — the claiming
/// tenant's first when a tenant's worker runs a shared job.
fn attempt_segments(claimer: Option<TenantId>, tenant: Option<TenantId>, job_id: &str, worker: &str, attempt: i64) -> Vec<String> {
    let owner = crate::artifact::prefix::owner_segment(tenant);
    let attempt = format!("attempt-{attempt}");
    let segments = [owner.as_str(), job_id, worker, attempt.as_str()];
    crate::artifact::prefix::owned_segments(claimer, &segments).into_iter().map(|s| s.into_owned()).collect()
}

/// The job queue of a session, in its tenant scope. Get one with [`Session::jobs`](crate::Session::jobs).
#[derive(Debug)]
pub struct Jobs<'a> {
    ctx: &'a dyn EngineContext,
}

fn lease_ms(lease: Duration) -> Result<i64> {
    let ms = lease.as_millis() as i64;
    if ms <= 0 {
        return Err(Error::invalid("lease", "a lease must last at least 1 ms"));
    }
    Ok(ms)
}

impl<'a> Jobs<'a> {
    pub(crate) fn new(ctx: &'a dyn EngineContext) -> Self {
        Jobs { ctx }
    }

    fn repo(&self) -> JobRepo<'a> {
        self.ctx.catalog().jobs()
    }

    /// Queue a job for a registered model version.
    pub async fn enqueue(&self, request: JobRequest) -> Result<JobRecord> {
        let model = Models::new(self.ctx).record(&request.model, &request.version).await?;
        let root = StorageUrl::parse(&request.artifact_root)?;
        if request.max_attempts == 0 {
            return Err(Error::invalid("max attempts", "max attempts must be at least 1"));
        }
        let record = JobRecord {
            id: uuid::Uuid::new_v4().to_string(),
            tenant: self.ctx.scope().owner(),
            model_id: model.id,
            artifact_root: root.to_string(),
            payload: request.payload,
            priority: request.priority,
            state: JobState::Queued,
            attempts: 0,
            max_attempts: request.max_attempts,
            worker: None,
            lease_expires_at_ms: None,
            last_error: None,
            artifact_prefix: None,
            enqueued_at: 0,
            finished_at: None,
        };
        self.repo().enqueue(&record).await?;
        self.get(&record.id).await
    }

    /// One job.
    pub async fn get(&self, id: &str) -> Result<JobRecord> {
        self.repo().get(self.ctx.scope(), id).await?.ok_or_else(|| Error::Unknown { kind: crate::error::ObjectKind::Job, name: id.to_string(), scope: self.ctx.scope().describe() })
    }

    /// Every job the session may see, newest first.
    pub async fn list(&self) -> Result<Vec<JobRecord>> {
        self.repo().list(self.ctx.scope()).await
    }

    /// Claim the next job (highest priority, then oldest) for `worker`, leased for `lease`.
    /// Jobs whose lease expired come back here while attempts remain; those out of
    /// attempts fail. `None` when nothing is waiting.
    pub async fn claim(&self, worker: &str, lease: Duration) -> Result<Option<Lease>> {
        super::registry::check_label("worker name", worker)?;
        let ms = lease_ms(lease)?;
        self.repo().expire_exhausted().await?;
        let claimer = self.ctx.scope().owner();
        let claimed = self
            .repo()
            .claim(self.ctx.scope(), worker, ms, |job, attempt| {
                let root = StorageUrl::parse(&job.artifact_root)?;
                let segments = attempt_segments(claimer, job.tenant, &job.id, worker, attempt);
                let refs: Vec<&str> = segments.iter().map(String::as_str).collect();
                Ok(super::prefix_url(&root, &refs)?.to_string())
            })
            .await?;
        Ok(claimed.map(|c| Lease {
            job_id: c.job.id,
            attempt: c.attempt as u32,
            token: c.token,
            worker: worker.to_string(),
            payload: c.job.payload,
            artifact_root: c.job.artifact_root,
            artifact_prefix: c.artifact_prefix,
            expires_at_ms: c.job.lease_expires_at_ms.unwrap_or_default(),
            tenant: c.job.tenant,
            claimed_by: claimer,
        }))
    }

    /// Extend the lease of `job_id` held with `token` to `lease` from now; returns the new
    /// end (ms since the epoch). Fails with [`Error::LeaseLost`] for anyone else.
    pub async fn heartbeat(&self, job_id: &str, token: &str, lease: Duration) -> Result<i64> {
        self.repo().heartbeat(job_id, token, lease_ms(lease)?).await
    }

    /// Give up the attempt: the job is queued again while attempts remain, failed
    /// otherwise. Whatever the attempt wrote is collected.
    pub async fn fail(&self, job_id: &str, token: &str, error: &str, store: &ArtifactStore) -> Result<JobState> {
        let state = self.repo().fail(job_id, token, error).await?;
        self.collect(store).await?;
        Ok(JobState::parse(&state))
    }

    /// Complete the job: check that the attempt's artifact is complete (manifest present,
    /// every file matching its digest), then in one transaction mark the job succeeded and
    /// point its model at the artifact. Afterwards, the other attempts' artifacts are
    /// collected. Returns the served prefix.
    pub async fn finalize(&self, job_id: &str, token: &str, store: &ArtifactStore) -> Result<String> {
        let (_, prefix) = self.repo().attempt_of(job_id, token).await?;
        let url = StorageUrl::parse(&prefix)?;
        store.verify_artifact(&url).await.map_err(|e| Error::conflict(format!("job {job_id}: cannot finalize: the attempt's artifact at {prefix} is not complete: {e}")))?;
        self.repo().finalize(job_id, token, &prefix).await?;
        if let Err(e) = self.collect(store).await {
            // The job is done; leftovers are collected by the next finalize or `collect`.
            tracing::warn!(job = job_id, error = %e, "collecting losing attempts failed");
        }
        Ok(prefix)
    }

    /// Delete the artifacts of attempts that can no longer win (failed attempts, and every
    /// non-winning attempt of a finished job). Idempotent; returns how many were collected.
    pub async fn collect(&self, store: &ArtifactStore) -> Result<usize> {
        let repo = self.repo();
        let losers = repo.uncollected().await?;
        for loser in &losers {
            store.delete_artifact_prefix(&StorageUrl::parse(&loser.artifact_prefix)?).await?;
            repo.mark_collected(&loser.job_id, loser.attempt).await?;
        }
        Ok(losers.len())
    }
}
