//! Server load test (bounded, loopback only): `--clients` concurrent clients for
//! `--seconds` against `jammi serve` in this process — half over HTTP (`/v1/search`, the
//! debian-packages query vectors), half over the Postgres protocol (sqlx, prepared
//! statements: a point lookup, a filtered aggregate and `vector_search` joined with the
//! package table). Prints QPS, p50 and p99 per kind and the error count as Markdown.
//!
//! ```sh
//! bash crates/jammi-bench/run_server_load.sh            # 32 clients, 60 s
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use arrow::array::{Array, AsArray};
use arrow::datatypes::Float32Type;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use jammi_db::source::SourceSpec;
use jammi_db::vector::{ImportSpec, NoProgress};
use jammi_db::{Config, Session};
use jammi_server::{Limits, ServeOptions, Server};
use sqlx::Connection;

struct Args {
    dataset: PathBuf,
    clients: usize,
    seconds: u64,
}

fn parse_args() -> Result<Args> {
    let mut args = Args { dataset: PathBuf::from("../shared/datasets/debian-packages"), clients: 32, seconds: 60 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--dataset" => args.dataset = PathBuf::from(value()?),
            "--clients" => args.clients = value()?.parse()?,
            "--seconds" => args.seconds = value()?.parse()?,
            other => return Err(anyhow!("unknown flag {other}; flags: --dataset DIR --clients N --seconds N")),
        }
    }
    Ok(args)
}

/// Query vectors of queries.parquet.
fn query_vectors(dataset: &std::path::Path) -> Result<Vec<Vec<f32>>> {
    let file = std::fs::File::open(dataset.join("queries.parquet")).context("queries.parquet")?;
    let mut vectors = Vec::new();
    for batch in ParquetRecordBatchReaderBuilder::try_new(file)?.build()? {
        let batch = batch?;
        let list = batch.column_by_name("embedding").ok_or_else(|| anyhow!("no embedding column"))?.as_fixed_size_list();
        let values = list.values().as_primitive::<Float32Type>();
        let dims = list.value_length() as usize;
        for i in 0..list.len() {
            vectors.push(values.values()[i * dims..(i + 1) * dims].to_vec());
        }
    }
    Ok(vectors)
}

/// Latencies and errors of one kind of request.
#[derive(Default)]
struct Samples {
    latencies: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
}

impl Samples {
    fn record(&mut self, started: Instant, result: Result<()>) {
        match result {
            Ok(()) => self.latencies.push(started.elapsed()),
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

const KINDS: [&str; 4] = ["HTTP /v1/search (k=10)", "pg: point lookup", "pg: filtered aggregate", "pg: vector_search ⋈ packages"];

fn main() -> Result<()> {
    let args = parse_args()?;
    let scratch = tempfile::tempdir()?;
    // The server gets its own runtime (2 workers, as on the machine's 2 cores); the
    // clients another, so neither starves the other's scheduler.
    let server_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (server, queries) = server_rt.block_on(async {
        let session = Session::open(Config::embedded(scratch.path())).await?;
        eprintln!("importing the debian-packages vectors");
        let embeddings = args.dataset.join("embeddings.parquet");
        session.vectors().import(ImportSpec::new("deb", embeddings.display().to_string(), "id", "embedding"), &NoProgress).await?;
        session.sources().add(SourceSpec::new("deb", args.dataset.join("packages.parquet").display().to_string())).await?;
        let loopback = "127.0.0.1:0".parse()?;
        let options = ServeOptions { http: Some(loopback), pg: Some(loopback), flight: None, limits: Limits::default(), drain_timeout: Duration::from_secs(10), ..ServeOptions::default() };
        let server = Server::start(session, options).await?;
        anyhow::Ok((server, query_vectors(&args.dataset)?))
    })?;
    let http = format!("http://{}/v1/search", server.addresses().http.expect("http"));
    let pg = format!("postgres://load:x@{}/jammi", server.addresses().pg.expect("pg"));
    let queries = Arc::new(queries);

    let client_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (samples, elapsed) = client_rt.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        let started = Instant::now();
        for client in 0..args.clients {
            let (stop, queries, http, pg) = (Arc::clone(&stop), Arc::clone(&queries), http.clone(), pg.clone());
            tasks.push(tokio::spawn(async move { run_client(client, &http, &pg, &queries, &stop).await }));
        }
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let mut all: Vec<Samples> = KINDS.iter().map(|_| Samples::default()).collect();
        for task in tasks {
            for (kind, s) in task.await??.into_iter().enumerate() {
                all[kind].latencies.extend(s.latencies);
                all[kind].errors += s.errors;
                if all[kind].first_error.is_none() {
                    all[kind].first_error = s.first_error;
                }
            }
        }
        anyhow::Ok((all, started.elapsed()))
    })?;
    server.shutdown();
    server_rt.block_on(server.wait());

    let seconds = elapsed.as_secs_f64();
    println!("{} clients for {:.0} s on loopback (server: 2 worker threads; clients: 2 worker threads; one 2-core machine); debian-packages, 62,663 × 384-d vectors.\n", args.clients, seconds);
    println!("| request | count | QPS | p50 | p99 | errors |\n|---|---:|---:|---:|---:|---:|");
    let (mut total, mut errors) = (0usize, 0u64);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (kind, mut s) in KINDS.iter().zip(samples) {
        s.latencies.sort();
        let pick = |q: f64| s.latencies.get(((s.latencies.len() as f64 * q) as usize).min(s.latencies.len().saturating_sub(1))).copied().unwrap_or_default();
        println!("| {kind} | {} | {:.0} | {:.2} ms | {:.2} ms | {} |", s.latencies.len(), s.latencies.len() as f64 / seconds, ms(pick(0.5)), ms(pick(0.99)), s.errors);
        total += s.latencies.len();
        errors += s.errors;
        if let Some(e) = s.first_error {
            eprintln!("{kind}: first error: {e}");
        }
    }
    println!("| **all** | {total} | {:.0} | | | {errors} |", total as f64 / seconds);
    if errors > 0 {
        return Err(anyhow!("{errors} requests failed"));
    }
    Ok(())
}

/// One client: even clients search over HTTP, odd ones run the SQL mix over Postgres.
async fn run_client(client: usize, http: &str, pg: &str, queries: &[Vec<f32>], stop: &AtomicBool) -> Result<Vec<Samples>> {
    let mut samples: Vec<Samples> = KINDS.iter().map(|_| Samples::default()).collect();
    let mut i = client * 31;
    if client % 2 == 0 {
        let http_client = reqwest::Client::new();
        while !stop.load(Ordering::Relaxed) {
            let vector = &queries[i % queries.len()];
            let body = serde_json::json!({"table": "deb", "vector": vector, "k": 10}).to_string();
            let started = Instant::now();
            let result = async {
                let response = http_client.post(http).body(body).send().await?;
                let status = response.status();
                let bytes = response.bytes().await?;
                if !status.is_success() {
                    return Err(anyhow!("HTTP {status}: {}", String::from_utf8_lossy(&bytes)));
                }
                let answer: serde_json::Value = serde_json::from_slice(&bytes)?;
                if answer["row_count"] != 10 {
                    return Err(anyhow!("expected 10 rows: {answer}"));
                }
                Ok(())
            }
            .await;
            samples[0].record(started, result);
            i += 1;
        }
        return Ok(samples);
    }
    let mut conn = sqlx::PgConnection::connect(pg).await?;
    while !stop.load(Ordering::Relaxed) {
        let kind = 1 + i % 3;
        let started = Instant::now();
        let result: Result<()> = match kind {
            1 => sqlx::query_scalar::<_, String>("SELECT package FROM deb.public.packages WHERE id = $1")
                .bind((i * 7919 % 62_663) as i64)
                .fetch_one(&mut conn)
                .await
                .map(|_| ())
                .map_err(Into::into),
            2 => sqlx::query("SELECT section, count(*) AS n FROM deb.public.packages WHERE installed_size_kb > $1 GROUP BY section ORDER BY n DESC LIMIT 5")
                .bind((i % 5000) as i64)
                .fetch_all(&mut conn)
                .await
                .map(|_| ())
                .map_err(Into::into),
            _ => {
                let vector = &queries[i % queries.len()];
                sqlx::query_scalar::<_, String>("SELECT p.package FROM vector_search('deb', $1, 5) v JOIN deb.public.packages p ON p.id = v.id ORDER BY v._rank")
                    .bind(vector.clone())
                    .fetch_all(&mut conn)
                    .await
                    .map_err(anyhow::Error::from)
                    .and_then(|rows| if rows.len() == 5 { Ok(()) } else { Err(anyhow!("expected 5 rows, got {}", rows.len())) })
            }
        };
        samples[kind].record(started, result);
        i += 1;
    }
    Ok(samples)
}
