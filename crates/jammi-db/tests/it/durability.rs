//! A Postgres catalog that crashes mid-workload: the durable test server (fsync=on) is
//! stopped at once (`pg_ctl -m immediate`, no checkpoint: what a crash leaves) while writers
//! run, then started again. Writers get clear errors during the outage, the engine
//! reconnects by itself, and every write acknowledged before, during or after is there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jammi_db::{Config, Session};

use crate::support::*;

fn ctl(action: &str) {
    let script = require_env("JAMMI_TEST_PG_DURABLE_CTL");
    let status = std::process::Command::new(&script).arg(action).status().expect("run the durable PostgreSQL's control script");
    assert!(status.success(), "{script} {action} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_crash_mid_workload_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded(dir.path().join("home"));
    config.catalog.url = Some(fresh_database_on("JAMMI_TEST_PG_DURABLE_URL").await);
    config.catalog.connect_timeout_ms = 2_000;
    let session = Session::open(config).await.unwrap();
    session.sql("CREATE TABLE mutable.public.ledger (id BIGINT PRIMARY KEY, note TEXT)").await.unwrap().collect().await.unwrap();

    let acknowledged = Arc::new(Mutex::new(Vec::<i64>::new()));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3i64 {
        let (session, acknowledged, errors, stop) = (session.with_tenant(None), Arc::clone(&acknowledged), Arc::clone(&errors), Arc::clone(&stop));
        writers.push(tokio::spawn(async move {
            let mut i = 0i64;
            while !stop.load(Ordering::Acquire) {
                let id = w * 1_000_000 + i;
                i += 1;
                let sql = format!("INSERT INTO mutable.public.ledger VALUES ({id}, 'w{w}')");
                let written = async { session.sql(&sql).await?.collect().await.map_err(jammi_db::Error::from) };
                match tokio::time::timeout(Duration::from_secs(15), written).await {
                    Ok(Ok(_)) => acknowledged.lock().unwrap().push(id),
                    Ok(Err(e)) => {
                        errors.lock().unwrap().push(e.to_string());
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(_) => errors.lock().unwrap().push("timed out".into()),
                }
            }
        }));
    }
    let count = |v: &Arc<Mutex<Vec<i64>>>| v.lock().unwrap().len();
    let wait_for_more = |than: usize| {
        let acknowledged = Arc::clone(&acknowledged);
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while acknowledged.lock().unwrap().len() < than + 20 {
                assert!(Instant::now() < deadline, "writes did not resume ({} acknowledged)", acknowledged.lock().unwrap().len());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    wait_for_more(0).await;
    ctl("crash");
    // Down until the writers notice (on a loaded machine a writer may not reach the
    // database for a while), at most 10 s.
    let down = Instant::now();
    tokio::time::sleep(Duration::from_millis(800)).await;
    while errors.lock().unwrap().is_empty() && down.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let during = count(&acknowledged);
    ctl("start");
    wait_for_more(during).await;
    stop.store(true, Ordering::Release);
    for w in writers {
        w.await.unwrap();
    }

    let errors = errors.lock().unwrap().clone();
    assert!(!errors.is_empty(), "the crash must have been noticed by the writers");
    assert!(errors.iter().all(|e| !e.is_empty() && !e.contains("panicked")), "{errors:?}");
    let acknowledged = acknowledged.lock().unwrap().clone();
    let stored: std::collections::HashSet<i64> =
        rows(&session, "SELECT id FROM mutable.public.ledger").await.into_iter().map(|r| r[0].parse().unwrap()).collect();
    let lost: Vec<&i64> = acknowledged.iter().filter(|id| !stored.contains(id)).collect();
    assert!(lost.is_empty(), "{} acknowledged writes lost after the crash: {:?}", lost.len(), &lost[..lost.len().min(10)]);
    // Nothing unacknowledged beyond the statements in flight at the crash (one per writer).
    assert!(stored.len() <= acknowledged.len() + 3, "{} stored, {} acknowledged", stored.len(), acknowledged.len());
}
