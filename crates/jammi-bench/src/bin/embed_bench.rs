//! Embedding benchmark: texts/s of jammi-db's in-process encoder (jammi-encoder) on every core, and
//! freshness — how long after a committed `INSERT` into a mutable table the row is findable
//! by `vector_search` on the vector table that follows it, with one worker, under a steady
//! insert load.
//!
//! ```sh
//! bash crates/jammi-bench/run_embeddings.sh   # runs the onnxruntime peers too, prints Markdown
//! ```
//!
//! Throughput: the first `--texts` descriptions of the shared dataset, truncated to 128
//! tokens, through the registered model's embedder (tokenise, encode, pool, normalise);
//! best of `--repeats` runs after a warm-up. Same texts, truncation, batching and thread
//! count as `peers/embed_peers.py`.
//!
//! Freshness: a writer inserts one row per statement at `--rate` rows/s (descriptions from
//! the dataset, in order) for `--seconds`; each commit time is noted when the statement
//! returns. A checker asks `vector_search` with a filter naming every pending id, every
//! `--check-ms`; a row's freshness is the time from its commit until the first check that
//! found it returned (an upper bound, by at most one check). One worker, in the same
//! process, as `jammi serve --workers 1` runs it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use jammi_db::artifact::ModelDefinition;
use jammi_db::storage::{StorageOptions, StorageUrl};
use jammi_db::vector::follow::{FollowSpec, WorkerOptions};
use jammi_db::vector::NoProgress;
use jammi_db::{Config, Session};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;
use tokio::sync::mpsc;

struct Args {
    model_dir: PathBuf,
    dataset: PathBuf,
    texts: usize,
    repeats: usize,
    rate: f64,
    seconds: f64,
    check_ms: u64,
    peers: Option<PathBuf>,
    out: Option<PathBuf>,
}

const USAGE: &str = "--model-dir DIR [--dataset DIR] [--texts N] [--repeats N] [--rate ROWS_PER_S] [--seconds S] [--check-ms MS] [--peers FILE] [--out FILE]";

fn parse_args() -> Result<Args> {
    let default_dataset = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets/debian-packages");
    let mut args = Args { model_dir: PathBuf::new(), dataset: default_dataset, texts: 2000, repeats: 3, rate: 100.0, seconds: 30.0, check_ms: 10, peers: None, out: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--model-dir" => args.model_dir = value()?.into(),
            "--dataset" => args.dataset = value()?.into(),
            "--texts" => args.texts = value()?.parse()?,
            "--repeats" => args.repeats = value()?.parse()?,
            "--rate" => args.rate = value()?.parse()?,
            "--seconds" => args.seconds = value()?.parse()?,
            "--check-ms" => args.check_ms = value()?.parse()?,
            "--peers" => args.peers = Some(value()?.into()),
            "--out" => args.out = Some(value()?.into()),
            "--help" | "-h" => {
                println!("embed-bench {USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown flag {other}; flags: {USAGE}"),
        }
    }
    if args.model_dir.as_os_str().is_empty() {
        bail!("--model-dir DIR is required: all-MiniLM-L6-v2's files (config.json, tokenizer.json, model.safetensors)");
    }
    Ok(args)
}

/// The first `n` descriptions of the dataset, in order.
fn descriptions(dataset: &std::path::Path, n: usize) -> Result<Vec<String>> {
    let path = dataset.join("packages.parquet");
    let file = std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    let mut out = Vec::with_capacity(n);
    for batch in reader {
        let batch: RecordBatch = batch?;
        let column = batch.column_by_name("description").ok_or_else(|| anyhow!("{} has no description column", path.display()))?;
        let strings = column.as_string::<i32>();
        out.extend((0..strings.len()).take(n - out.len()).map(|i| strings.value(i).to_string()));
        if out.len() == n {
            break;
        }
    }
    Ok(out)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn open(dir: &std::path::Path, model_dir: &std::path::Path) -> Result<Session> {
    let session = Session::open(Config::embedded(dir)).await?;
    let root = StorageUrl::parse(&session.config().storage_root())?;
    // The dataset truncated descriptions to 128 tokens; both sides of the comparison do too.
    let definition = ModelDefinition { name: "minilm".into(), version: "v1".into(), task: "embedding".into(), dimensions: Some(384), metadata: json!({"max_tokens": 128}) };
    session.models().register_files(definition, model_dir, &root, &session.artifacts(StorageOptions::new())).await?;
    Ok(session)
}

async fn throughput(session: &Session, texts: &[String], repeats: usize) -> Result<f64> {
    let model = session.embeddings().model("minilm", "v1").await?;
    let warm: Vec<&str> = texts.iter().take(32).map(String::as_str).collect();
    model.embed(&warm)?;
    let all: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut best = f64::INFINITY;
    for _ in 0..repeats {
        let start = Instant::now();
        let vectors = model.embed(&all)?;
        best = best.min(start.elapsed().as_secs_f64());
        if vectors.len() != texts.len() {
            bail!("{} vectors for {} texts", vectors.len(), texts.len());
        }
    }
    let rate = texts.len() as f64 / best;
    eprintln!("jammi encoder: {rate:.1} texts/s ({} texts, best of {repeats})", texts.len());
    Ok(rate)
}

struct Freshness {
    rows: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    achieved_rate: f64,
}

async fn exec(session: &Session, sql: &str) -> Result<()> {
    session.sql(sql).await.with_context(|| sql.to_string())?.collect().await.with_context(|| sql.to_string())?;
    Ok(())
}

async fn freshness(session: &Session, texts: &[String], args: &Args) -> Result<Freshness> {
    exec(session, "CREATE TABLE mutable.public.docs (id BIGINT PRIMARY KEY, body TEXT)").await?;
    session.vectors().follow(FollowSpec::new("docs_vec", "mutable.public.docs", "body", "minilm", "v1"), &NoProgress).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = {
        let session = session.clone();
        tokio::spawn(async move {
            let options = WorkerOptions { worker: "bench-worker".into(), ..WorkerOptions::default() };
            session.vectors().run_worker(&options, async { stop_rx.await.ok(); }).await
        })
    };

    let rows = ((args.rate * args.seconds) as usize).max(1);
    let (commits_tx, mut commits_rx) = mpsc::unbounded_channel::<(i64, Instant)>();
    let writer = {
        let session = session.clone();
        let texts: Vec<String> = (0..rows).map(|i| texts[i % texts.len()].replace('\'', "''")).collect();
        let period = Duration::from_secs_f64(1.0 / args.rate);
        tokio::spawn(async move {
            let started = Instant::now();
            let mut tick = tokio::time::interval(period);
            for (i, text) in texts.iter().enumerate() {
                tick.tick().await;
                exec(&session, &format!("INSERT INTO mutable.public.docs VALUES ({i}, '{text}')")).await?;
                commits_tx.send((i as i64, Instant::now())).ok();
            }
            Ok::<f64, anyhow::Error>(texts.len() as f64 / started.elapsed().as_secs_f64())
        })
    };

    // Any unit vector serves: the filter names the pending ids and k is their count, so
    // vector_search returns every pending row that is findable.
    let probe = format!("[{}]", vec!["0.05103"; 384].join(","));
    let mut pending: BTreeMap<i64, Instant> = BTreeMap::new();
    let mut latencies = Vec::with_capacity(rows);
    let mut writer_done = false;
    let deadline_after_writes = Duration::from_secs(120);
    let mut last_commit = Instant::now();
    while latencies.len() < rows {
        while let Ok((id, at)) = commits_rx.try_recv() {
            pending.insert(id, at);
            last_commit = at;
        }
        if !pending.is_empty() {
            let ids: Vec<String> = pending.keys().map(i64::to_string).collect();
            let sql = format!("SELECT id FROM vector_search('docs_vec', '{probe}', {}, 'id IN ({})')", ids.len(), ids.join(","));
            let batches = session.sql(&sql).await?.collect().await?;
            let found_at = Instant::now();
            for batch in &batches {
                let column = batch.column(0).as_primitive::<Int64Type>();
                for id in column.iter().flatten() {
                    if let Some(at) = pending.remove(&id) {
                        latencies.push(found_at.duration_since(at).as_secs_f64() * 1000.0);
                    }
                }
            }
        }
        if !writer_done && writer.is_finished() {
            writer_done = true;
        }
        if writer_done && last_commit.elapsed() > deadline_after_writes {
            bail!("{} rows still not findable {}s after the last insert", pending.len(), deadline_after_writes.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(args.check_ms)).await;
    }
    let achieved_rate = writer.await??;
    stop_tx.send(()).ok();
    worker.await??;
    latencies.sort_by(f64::total_cmp);
    let result = Freshness { rows, p50_ms: percentile(&latencies, 0.5), p99_ms: percentile(&latencies, 0.99), max_ms: *latencies.last().unwrap_or(&0.0), achieved_rate };
    eprintln!("freshness: {} rows at {:.1} rows/s: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms", result.rows, result.achieved_rate, result.p50_ms, result.p99_ms, result.max_ms);
    Ok(result)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let texts = descriptions(&args.dataset, args.texts.max((args.rate * args.seconds) as usize))?;
    let scratch = tempfile::tempdir()?;
    let session = open(&scratch.path().join("home"), &args.model_dir).await?;
    let rate = throughput(&session, &texts[..args.texts.min(texts.len())], args.repeats).await?;
    let fresh = freshness(&session, &texts, &args).await?;

    let peers: serde_json::Value = match &args.peers {
        Some(path) => serde_json::from_str(&std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?)?,
        None => json!({"results": []}),
    };
    println!("### Embedding throughput\n");
    println!("{} descriptions, truncated to 128 tokens, batches of 32 sorted by length, {threads} threads.\n", args.texts);
    println!("| system | texts/s | jammi ÷ system |\n|---|---:|---:|");
    println!("| jammi-db (jammi-encoder, in-process) | {rate:.1} | 1.00 |");
    for peer in peers["results"].as_array().into_iter().flatten() {
        let peer_rate = peer["texts_per_s"].as_f64().unwrap_or(f64::NAN);
        println!("| {} | {peer_rate:.1} | {:.2} |", peer["system"].as_str().unwrap_or("?"), rate / peer_rate);
    }
    println!("\n### Freshness\n");
    println!("One worker; one INSERT per statement at {:.1} rows/s achieved (target {}), {} rows.\n", fresh.achieved_rate, args.rate, fresh.rows);
    println!("| commit → findable by vector_search | ms |\n|---|---:|");
    println!("| p50 | {:.0} |\n| p99 | {:.0} |\n| max | {:.0} |", fresh.p50_ms, fresh.p99_ms, fresh.max_ms);
    if let Some(out) = &args.out {
        let report = json!({"threads": threads, "texts": args.texts, "jammi_texts_per_s": rate, "peers": peers,
            "freshness": {"rows": fresh.rows, "rate": fresh.achieved_rate, "p50_ms": fresh.p50_ms, "p99_ms": fresh.p99_ms, "max_ms": fresh.max_ms}});
        std::fs::write(out, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}
