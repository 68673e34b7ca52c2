//! What auditing costs a search (issue 21): QPS of a prepared `vector_search` with the audit
//! log off, on with batched durability (the default) and on with synchronous durability, on
//! `shared/datasets/debian-packages` (62,663 MiniLM vectors; its held-out queries), one
//! query at a time, one client; then `audit verify` throughput over the records written.
//!
//! ```sh
//! cargo run --release -p jammi-bench --bin audit-bench -- [--dataset DIR] [--queries N]
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use arrow::array::ListArray;
use arrow::datatypes::Float32Type;
use datafusion::common::ScalarValue;
use jammi_db::config::AuditDurability;
use jammi_db::storage::StorageOptions;
use jammi_db::vector::{ImportSpec, NoProgress};
use jammi_db::{Config, Session};

const KEY: &str = "5c014bc194214bba8d252f02c871ea08a86bb700a6a08f4c9de54d6e6801ae40";

struct Args {
    dataset: PathBuf,
    queries: usize,
}

fn parse_args() -> Result<Args> {
    let mut args = Args { dataset: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets/debian-packages"), queries: 2000 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--dataset" => args.dataset = it.next().map(PathBuf::from).unwrap_or_default(),
            "--queries" => args.queries = it.next().and_then(|v| v.parse().ok()).unwrap_or(2000),
            "--help" | "-h" => {
                println!("audit-bench [--dataset DIR] [--queries N]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}; usage: audit-bench [--dataset DIR] [--queries N]"),
        }
    }
    Ok(args)
}

/// Open the data directory with auditing as given.
async fn open(home: &std::path::Path, audit: Option<AuditDurability>) -> Result<Session> {
    let mut config = Config::embedded(home);
    if let Some(durability) = audit {
        let keys = home.join("audit.keys");
        std::fs::write(&keys, KEY)?;
        config.audit.enabled = Some(true);
        config.audit.key_file = Some(keys);
        config.audit.durability = durability;
    }
    Ok(Session::open(config).await?)
}

/// QPS of the prepared search over `queries` (after a warm-up pass over 200 of them).
async fn qps(session: &Session, queries: &[Vec<f32>]) -> Result<f64> {
    let statement = session.prepare("SELECT id, _distance FROM vector_search('deb', $1, 10)").await?;
    let param = |q: &Vec<f32>| ScalarValue::List(Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>([Some(q.iter().map(|v| Some(*v)))])));
    for q in queries.iter().take(200) {
        statement.query(vec![param(q)]).await?;
    }
    let started = Instant::now();
    for q in queries {
        statement.query(vec![param(q)]).await?;
    }
    Ok(queries.len() as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let dir = tempfile::tempdir()?;
    let home = dir.path().join("home");
    {
        let session = open(&home, None).await?;
        let started = Instant::now();
        session.vectors().import(ImportSpec::new("deb", args.dataset.join("embeddings.parquet").display().to_string(), "id", "embedding"), &NoProgress).await?;
        eprintln!("imported in {:.1} s", started.elapsed().as_secs_f64());
        session.close().await;
    }
    let session = open(&home, None).await?;
    let mut queries = session.vectors().read_query_vectors(&args.dataset.join("queries.parquet").display().to_string(), "embedding", &StorageOptions::new()).await?;
    while queries.len() < args.queries {
        let again = queries.clone();
        queries.extend(again);
    }
    queries.truncate(args.queries);

    let mut rows = Vec::new();
    // Off, batched, synchronous, off again (the first and last "off" bracket drift).
    for (label, audit) in [("off", None), ("on, batched (default)", Some(AuditDurability::Batched)), ("on, synchronous", Some(AuditDurability::Synchronous)), ("off (again)", None)] {
        let session = open(&home, audit).await?;
        let q = qps(&session, &queries).await?;
        session.close().await;
        eprintln!("audit {label}: {q:.0} QPS");
        rows.push((label, q));
    }
    let off = (rows[0].1 + rows[3].1) / 2.0;

    // Verify everything written above (two audited passes plus their warm-ups).
    let session = open(&home, Some(AuditDurability::Batched)).await?;
    let started = Instant::now();
    let reports = session.admin(|s| async move { s.audit().verify(None, 1).await }).await?;
    let seconds = started.elapsed().as_secs_f64();
    let records: u64 = reports.iter().map(|r| r.checked).sum();
    if reports.iter().any(|r| !r.ok()) {
        bail!("the chain does not verify: {reports:?}");
    }

    println!("| audit | QPS | vs off |\n|---|---:|---:|");
    for (label, q) in &rows {
        println!("| {label} | {q:.0} | {:.2}× |", q / off);
    }
    println!("\n`audit verify`: {records} records in {seconds:.2} s = {:.0} records/s", records as f64 / seconds);
    Ok(())
}
