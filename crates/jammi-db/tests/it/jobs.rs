//! Model registry and training-job queue: one suite on the SQLite catalog and on a real
//! PostgreSQL catalog. Leases guard every change; finalize is the single commit point;
//! losing attempts' artifacts are collected; many workers complete every job exactly once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jammi_db::artifact::{ArtifactFile, ArtifactStore, JobRequest, JobState, Lease, ModelDefinition};
use jammi_db::storage::{StorageOptions, StorageUrl};
use jammi_db::{Config, Error, Session, TenantId};
use parking_lot::Mutex;

use crate::support::*;

async fn catalog_config(pg: bool, dir: &std::path::Path) -> Config {
    let mut config = Config::embedded(dir.join("home"));
    if pg {
        config.catalog.url = Some(fresh_pg_database().await);
    }
    config
}

fn model(name: &str, version: &str) -> ModelDefinition {
    ModelDefinition { name: name.into(), version: version.into(), task: "embedding".into(), dimensions: Some(384), metadata: serde_json::json!({"base": "minilm"}) }
}

fn store(session: &Session) -> ArtifactStore {
    session.artifacts(StorageOptions::new())
}

/// Write the attempt's artifact where its lease says.
async fn put_for(store: &ArtifactStore, lease: &Lease, body: &str) {
    let root = StorageUrl::parse(&lease.artifact_root).unwrap();
    let segments = lease.segments();
    let refs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let prefix = store.put_artifact(&root, &refs, &[ArtifactFile::from_bytes("weights.bin", body.as_bytes().to_vec())]).await.unwrap();
    assert_eq!(prefix.to_string(), lease.artifact_prefix, "the lease's segments make its prefix");
}

fn is_lease_lost(e: &Error) -> bool {
    matches!(e, Error::LeaseLost { .. })
}

async fn registry(session: &Session) {
    let models = session.models();
    let v1 = models.register(model("encoder", "v1")).await.unwrap();
    assert_eq!((v1.dimensions, v1.artifact_prefix.clone()), (Some(384), None));
    models.register(model("encoder", "v2")).await.unwrap();
    let dup = models.register(model("encoder", "v1")).await.unwrap_err().to_string();
    assert!(dup.contains("encoder:v1") && dup.contains("already registered"), "{dup}");
    let bad = models.register(model("enc/oder", "v1")).await.unwrap_err().to_string();
    assert!(bad.contains("enc/oder"), "{bad}");
    let listed: Vec<String> = models.list().await.unwrap().iter().map(|m| format!("{}:{}", m.name, m.version)).collect();
    assert_eq!(listed, ["encoder:v1", "encoder:v2"]);

    models.set_alias("encoder", "champion", "v1").await.unwrap();
    assert_eq!(models.resolve("encoder", "champion").await.unwrap().version, "v1");
    models.set_alias("encoder", "champion", "v2").await.unwrap();
    assert_eq!(models.resolve("encoder", "champion").await.unwrap().version, "v2", "an alias moves");
    assert_eq!(models.get("encoder", "v2").await.unwrap().aliases, ["champion"]);
    assert_eq!(models.describe("encoder", "champion").await.unwrap().version, "v2");
    let missing = models.resolve("encoder", "nobody").await.unwrap_err().to_string();
    assert!(missing.contains("encoder:nobody") && missing.contains("jammi model list"), "{missing}");

    // Tenancy: a tenant's models are its own; shared ones are visible to all.
    let (a, b) = (TenantId::random(), TenantId::random());
    let sa = session.with_tenant(Some(a));
    let sb = session.with_tenant(Some(b));
    sa.models().register(model("private", "v1")).await.unwrap();
    assert!(sb.models().get("private", "v1").await.is_err());
    assert!(session.models().get("private", "v1").await.is_err(), "unbound sees shared rows only");
    assert_eq!(sb.models().get("encoder", "v1").await.unwrap().name, "encoder", "shared model visible to a tenant");
    assert!(sb.models().delete("encoder", "v1").await.is_err(), "a tenant cannot delete a shared model");
    // The same name can exist per tenant.
    sb.models().register(model("private", "v1")).await.unwrap();

    // Deleting is refused while a job is queued.
    let root = tempfile::tempdir().unwrap();
    models.register(model("busy", "v1")).await.unwrap();
    session.jobs().enqueue(JobRequest::new("busy", "v1", root.path().display().to_string())).await.unwrap();
    let refused = models.delete("busy", "v1").await.unwrap_err().to_string();
    assert!(refused.contains("queued or running"), "{refused}");
    models.delete("encoder", "v1").await.unwrap();
    assert!(models.get("encoder", "v1").await.is_err());
    // A tenant's worker that claims the shared job writes under the tenant's own segment
    // (its artifact store allows nothing else), and the lease says so.
    let lease = sa.jobs().claim("tenant-worker", Duration::from_secs(5)).await.unwrap().unwrap();
    assert!(lease.artifact_prefix.contains(&format!("/tenant-{a}/shared/")), "{}", lease.artifact_prefix);
    put_for(&store(&sa), &lease, "tenant-trained").await;
    sa.jobs().fail(&lease.job_id, &lease.token, "not this one", &store(&sa)).await.unwrap();
    // Drain the queue for the next part.
    while let Some(l) = session.jobs().claim("drain", Duration::from_secs(5)).await.unwrap() {
        session.jobs().fail(&l.job_id, &l.token, "drained", &store(session)).await.unwrap();
    }
}

async fn leases(session: &Session) {
    let jobs = session.jobs();
    let store = store(session);
    let root = tempfile::tempdir().unwrap();
    let root_url = root.path().display().to_string();
    session.models().register(model("clf", "v1")).await.unwrap();
    let mut low = JobRequest::new("clf", "v1", &root_url);
    low.priority = 1;
    let mut high = low.clone();
    high.priority = 5;
    high.max_attempts = 2;
    let low = jobs.enqueue(low).await.unwrap();
    let high = jobs.enqueue(high).await.unwrap();
    assert_eq!(high.state, JobState::Queued);

    // Highest priority first.
    let a = jobs.claim("worker-a", Duration::from_millis(300)).await.unwrap().unwrap();
    assert_eq!((a.job_id.as_str(), a.attempt), (high.id.as_str(), 1));
    assert!(jobs.heartbeat(&a.job_id, "not-the-token", Duration::from_secs(1)).await.is_err_and(|e| is_lease_lost(&e)));
    let extended = jobs.heartbeat(&a.job_id, &a.token, Duration::from_millis(300)).await.unwrap();
    assert!(extended >= a.expires_at_ms);
    // worker-a writes its artifact, then stalls past its lease.
    put_for(&store, &a, "from a").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The expired job comes back before the lower-priority one, as attempt 2.
    let b = jobs.claim("worker-b", Duration::from_secs(30)).await.unwrap().unwrap();
    assert_eq!((b.job_id.as_str(), b.attempt), (high.id.as_str(), 2));
    assert_ne!(a.artifact_prefix, b.artifact_prefix, "attempts never share a prefix");
    for result in [jobs.heartbeat(&a.job_id, &a.token, Duration::from_secs(1)).await.map(|_| ()), jobs.finalize(&a.job_id, &a.token, &store).await.map(|_| ())] {
        assert!(result.is_err_and(|e| is_lease_lost(&e)), "the former holder can change nothing");
    }
    // Finalize refuses an incomplete artifact and changes nothing.
    let refused = jobs.finalize(&b.job_id, &b.token, &store).await.unwrap_err().to_string();
    assert!(refused.contains("not complete"), "{refused}");
    assert_eq!(session.models().get("clf", "v1").await.unwrap().artifact_prefix, None);
    put_for(&store, &b, "from b").await;
    let served = jobs.finalize(&b.job_id, &b.token, &store).await.unwrap();
    assert_eq!(served, b.artifact_prefix);
    let m = session.models().get("clf", "v1").await.unwrap();
    assert_eq!((m.artifact_prefix.as_deref(), m.job_id.as_deref()), (Some(served.as_str()), Some(high.id.as_str())));
    let fetched = store.fetch_artifact(&StorageUrl::parse(&served).unwrap()).await.unwrap();
    assert_eq!(std::fs::read(fetched.path("weights.bin")).unwrap(), b"from b");
    // The losing attempt's artifact was collected; the winner's is untouched.
    assert!(!store.is_complete(&StorageUrl::parse(&a.artifact_prefix).unwrap()).await.unwrap());
    assert!(std::fs::read_dir(StorageUrl::parse(&a.artifact_prefix).unwrap().local_path().unwrap()).is_err(), "loser's files are gone");
    assert_eq!(jobs.get(&high.id).await.unwrap().state, JobState::Succeeded);
    assert!(jobs.finalize(&b.job_id, &b.token, &store).await.is_err_and(|e| is_lease_lost(&e)), "finalize happens once");

    // fail: back to the queue while attempts remain, then failed for good.
    let c = jobs.claim("worker-c", Duration::from_secs(30)).await.unwrap().unwrap();
    assert_eq!(c.job_id, low.id);
    put_for(&store, &c, "half done").await;
    assert_eq!(jobs.fail(&c.job_id, &c.token, "out of memory", &store).await.unwrap(), JobState::Queued);
    assert!(!store.is_complete(&StorageUrl::parse(&c.artifact_prefix).unwrap()).await.unwrap(), "a failed attempt's artifact is collected");
    let info = jobs.get(&low.id).await.unwrap();
    assert_eq!((info.state, info.last_error.as_deref(), info.attempts), (JobState::Queued, Some("out of memory"), 1));
    // Expiry on the last attempt fails the job.
    let mut last = JobRequest::new("clf", "v1", &root_url);
    last.max_attempts = 1;
    last.priority = 9;
    let last = jobs.enqueue(last).await.unwrap();
    let d = jobs.claim("worker-d", Duration::from_millis(50)).await.unwrap().unwrap();
    assert_eq!(d.job_id, last.id);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let e = jobs.claim("worker-e", Duration::from_secs(30)).await.unwrap().unwrap();
    assert_eq!(e.job_id, low.id, "the exhausted job is not handed out again");
    let failed = jobs.get(&last.id).await.unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert!(failed.last_error.unwrap().contains("lease expired"));
    jobs.fail(&e.job_id, &e.token, "give up", &store).await.unwrap();
    assert!(jobs.claim("worker-f", Duration::from_secs(1)).await.unwrap().is_some());
}

/// Many workers — each its own engine on the shared catalog, like separate processes —
/// claim, sometimes stall past their lease, sometimes fail, otherwise write and finalize.
/// Every job completes exactly once, and every served pointer names a complete artifact.
async fn many_workers(pg: bool) {
    const JOBS: usize = 24;
    const ENGINES: usize = 3;
    const TASKS_PER_ENGINE: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let config = catalog_config(pg, dir.path()).await;
    let root = tempfile::tempdir().unwrap();
    let root_url = root.path().display().to_string();
    let admin = Session::open(config.clone()).await.unwrap();
    for j in 0..JOBS {
        admin.models().register(model("m", &format!("v{j}"))).await.unwrap();
        let mut request = JobRequest::new("m", format!("v{j}"), &root_url);
        request.priority = (j % 3) as i64;
        request.max_attempts = 10;
        admin.jobs().enqueue(request).await.unwrap();
    }
    let wins: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let mut tasks = Vec::new();
    for e in 0..ENGINES {
        let engine = Session::open(config.clone()).await.unwrap();
        for t in 0..TASKS_PER_ENGINE {
            let (session, wins) = (engine.clone(), Arc::clone(&wins));
            tasks.push(tokio::spawn(async move {
                let store = session.artifacts(StorageOptions::new());
                let worker = format!("w{e}-{t}");
                let mut idle = 0;
                while idle < 20 {
                    let Some(lease) = session.jobs().claim(&worker, Duration::from_millis(400)).await.unwrap() else {
                        idle += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    idle = 0;
                    let roll = (lease.job_id.as_bytes()[0] as usize + lease.attempt as usize * 7 + t) % 5;
                    put_for(&store, &lease, &format!("{} attempt {}", lease.job_id, lease.attempt)).await;
                    match (roll, lease.attempt) {
                        // Stall past the lease: another worker takes over; our finalize must fail.
                        (0, 1) => {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            if session.jobs().finalize(&lease.job_id, &lease.token, &store).await.is_ok() {
                                *wins.lock().entry(lease.job_id.clone()).or_default() += 1;
                            }
                        }
                        // On a loaded machine the 400 ms lease can lapse before the
                        // failure is recorded; then another worker already owns the job.
                        (1, 1) => match session.jobs().fail(&lease.job_id, &lease.token, "transient", &store).await {
                            Ok(_) => {}
                            Err(e) => assert!(matches!(e, Error::LeaseLost { .. }), "{e}"),
                        },
                        _ => match session.jobs().finalize(&lease.job_id, &lease.token, &store).await {
                            Ok(_) => *wins.lock().entry(lease.job_id.clone()).or_default() += 1,
                            Err(e) => assert!(matches!(e, Error::LeaseLost { .. }), "{e}"),
                        },
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let jobs = admin.jobs().list().await.unwrap();
    assert_eq!(jobs.len(), JOBS);
    let store = admin.artifacts(StorageOptions::new());
    let wins = wins.lock().clone();
    for job in &jobs {
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        assert_eq!(wins.get(&job.id), Some(&1), "job {} finalized exactly once", job.id);
    }
    for m in admin.models().list().await.unwrap() {
        let prefix = m.artifact_prefix.expect("every model served");
        assert!(store.is_complete(&StorageUrl::parse(&prefix).unwrap()).await.unwrap(), "{prefix} is complete");
    }
    // Late writes of stalled attempts are collected too.
    admin.jobs().collect(&store).await.unwrap();
    let mut complete_prefixes = 0;
    for entry in walk(root.path()) {
        if entry.ends_with("manifest.json") {
            complete_prefixes += 1;
        }
    }
    assert_eq!(complete_prefixes, JOBS, "only the winners' artifacts remain");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

async fn suite(pg: bool) {
    let dir = tempfile::tempdir().unwrap();
    let session = Session::open(catalog_config(pg, dir.path()).await).await.unwrap();
    registry(&session).await;
    leases(&session).await;
    many_workers(pg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn models_and_jobs_on_sqlite() {
    suite(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn models_and_jobs_on_postgres() {
    suite(true).await;
}
