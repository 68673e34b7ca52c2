//! What auditing costs a search (issue 21): QPS of a prepared `vector_search` with the audit
//! log off, on with batched durability (the default) and on with synchronous durability, on
//! `shared/datasets/debian-packages` (62,663 MiniLM vectors; its held-out queries), one
//! query at a time, one client — three engines on one data directory whose blocks of queries
//! alternate over eight rounds; then `audit verify` throughput over the records written.
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

/// Run `queries` through a prepared search on `session`; the seconds the searches took. The
/// audit writer works on the same thread meanwhile (its CPU is in the time); the records
/// still pending when the block ends are committed before the next block starts, untimed —
/// a commit's wait is durability latency, which searches do not wait for.
async fn block(session: &Session, statement: &jammi_db::PreparedStatement, queries: &[Vec<f32>]) -> Result<f64> {
    let started = Instant::now();
    for q in queries {
        statement.query(vec![param(q)]).await?;
    }
    let searched = started.elapsed().as_secs_f64();
    // Records are committed before `records` reads (an empty read past the end).
    session.admin(|s| async move { s.audit().records(None, u64::MAX / 2, 1).await.map(|_| ()).or(Ok::<(), jammi_db::Error>(())) }).await?;
    let total = started.elapsed().as_secs_f64();
    if std::env::var_os("AUDIT_BENCH_DEBUG").is_some() {
        eprintln!("block: searches {:.1} ms, then commit wait {:.1} ms", searched * 1e3, (total - searched) * 1e3);
    }
    Ok(searched)
}

fn param(q: &[f32]) -> ScalarValue {
    ScalarValue::List(Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>([Some(q.iter().map(|v| Some(*v)))])))
}

const SEARCH: &str = "SELECT id, _distance FROM vector_search('deb', $1, 10)";

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
    // Three engines on the one data directory: auditing off, batched, synchronous. Their
    // blocks of queries alternate, round after round, so drift on the machine (other
    // processes, CPU frequency) falls on all three alike.
    let engines = [("off", open(&home, None).await?), ("on, batched (default)", open(&home, Some(AuditDurability::Batched)).await?), ("on, synchronous", open(&home, Some(AuditDurability::Synchronous)).await?)];
    // Diagnostic (AUDIT_BENCH_DEBUG): an audited engine whose caller's chain is set off.
    let skipped = if std::env::var_os("AUDIT_BENCH_DEBUG").is_some() {
        let tenant = jammi_db::TenantId::random();
        let engine = open(&home, Some(AuditDurability::Batched)).await?;
        engine.admin(|s| async move { s.audit().set_enabled(&tenant.to_string(), Some(false)).await }).await?;
        Some(engine.with_tenant(Some(tenant)))
    } else {
        None
    };
    let mut queries = engines[0].1.vectors().read_query_vectors(&args.dataset.join("queries.parquet").display().to_string(), "embedding", &StorageOptions::new()).await?;
    while queries.len() < args.queries {
        let again = queries.clone();
        queries.extend(again);
    }
    queries.truncate(args.queries);
    let mut statements = Vec::new();
    for (_, session) in &engines {
        let statement = session.prepare(SEARCH).await?;
        for q in queries.iter().take(200) {
            statement.query(vec![param(q)]).await?;
        }
        statements.push(statement);
    }
    const ROUNDS: usize = 8;
    let per_round = queries.len().div_ceil(ROUNDS);
    let mut seconds = [0.0f64; 3];
    let mut ratios = Vec::new();
    for round in queries.chunks(per_round) {
        let mut this = [0.0f64; 3];
        for (i, (_, session)) in engines.iter().enumerate() {
            this[i] = block(session, &statements[i], round).await?;
            seconds[i] += this[i];
        }
        ratios.push(this[0] / this[1]);
    }
    if let Some(engine) = &skipped {
        let statement = engine.prepare(SEARCH).await?;
        for round in queries.chunks(per_round) {
            block(engine, &statement, round).await?;
        }
    }
    ratios.sort_by(f64::total_cmp);
    let rows: Vec<(&str, f64)> = engines.iter().zip(seconds).map(|((label, _), s)| (*label, queries.len() as f64 / s)).collect();
    for (label, q) in &rows {
        eprintln!("audit {label}: {q:.0} QPS");
    }
    let off = rows[0].1;
    drop(statements);
    for (_, session) in &engines {
        session.close().await;
    }
    drop(engines);
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
    println!("\nbatched vs off per round ({ROUNDS} rounds): min {:.2}×, median {:.2}×, max {:.2}×", ratios[0], ratios[ratios.len() / 2], ratios[ratios.len() - 1]);
    println!("\n`audit verify`: {records} records in {seconds:.2} s = {:.0} records/s", records as f64 / seconds);
    Ok(())
}
