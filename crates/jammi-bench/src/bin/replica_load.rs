//! Write throughput through several `jammi serve` replicas of one deployment (see
//! `run_replicas.sh`, which starts them with scripts/cluster.sh): `--clients` concurrent
//! HTTP clients, spread round-robin over the `--http` replicas, for `--seconds`, doing one
//! kind of write:
//!
//! - `single`: publish one event per request to `topics.public.load`;
//! - `batch`: publish 100 events per request;
//! - `dml`: one `INSERT` of one row per request into `mutable.public.load`.
//!
//! Prints one JSON line: requests/s, rows/s, p50/p99 latency (ms), errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use serde_json::json;

const BATCH: usize = 100;

struct Args {
    replicas: Vec<String>,
    clients: usize,
    seconds: u64,
    kind: String,
}

fn parse_args() -> Result<Args> {
    let mut args = Args { replicas: Vec::new(), clients: 8, seconds: 10, kind: "single".into() };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--http" => args.replicas.push(value()?),
            "--clients" => args.clients = value()?.parse()?,
            "--seconds" => args.seconds = value()?.parse()?,
            "--kind" => args.kind = value()?,
            other => return Err(anyhow!("unknown flag {other}; flags: --http URL (once per replica) --clients N --seconds N --kind single|batch|dml")),
        }
    }
    if args.replicas.is_empty() {
        return Err(anyhow!("name at least one replica: --http http://127.0.0.1:PORT"));
    }
    if !["single", "batch", "dml"].contains(&args.kind.as_str()) {
        return Err(anyhow!("--kind must be single, batch or dml, not {}", args.kind));
    }
    Ok(args)
}

/// One request of `kind` by client `client`, its `n`-th; the rows it writes.
fn request(http: &reqwest::Client, base: &str, kind: &str, client: usize, n: usize) -> (reqwest::RequestBuilder, usize) {
    let id = client * 1_000_000_000 + n;
    let (path, body, rows) = match kind {
        "single" => ("topics/load/events", json!({"client": client as i64, "n": n as i64}), 1),
        "batch" => ("topics/load/events", (0..BATCH).map(|i| json!({"client": client as i64, "n": (n * BATCH + i) as i64})).collect(), BATCH),
        _ => ("sql", json!({"sql": format!("INSERT INTO mutable.public.load VALUES ({id}, {client}, {n})")}), 1),
    };
    (http.post(format!("{base}/v1/{path}")).header("content-type", "application/json").body(body.to_string()), rows)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Arc::new(parse_args()?);
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for client in 0..args.clients {
        let (args, http) = (Arc::clone(&args), http.clone());
        tasks.push(tokio::spawn(async move {
            let base = &args.replicas[client % args.replicas.len()];
            let (mut latencies, mut rows, mut errors, mut first_error) = (Vec::new(), 0usize, 0usize, None);
            let mut n = 0;
            while Instant::now() < deadline {
                let (builder, count) = request(&http, base, &args.kind, client, n);
                n += 1;
                let started = Instant::now();
                match builder.send().await {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.bytes().await;
                        latencies.push(started.elapsed().as_secs_f64() * 1e3);
                        rows += count;
                    }
                    Ok(response) => {
                        errors += 1;
                        first_error.get_or_insert(format!("{}: {}", response.status(), response.text().await.unwrap_or_default()));
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e.to_string());
                    }
                }
            }
            (latencies, rows, errors, first_error)
        }));
    }
    let (mut latencies, mut rows, mut errors, mut first_error) = (Vec::new(), 0, 0, None);
    for task in tasks {
        let (l, r, e, f) = task.await?;
        latencies.extend(l);
        rows += r;
        errors += e;
        first_error = first_error.or(f);
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1))).copied().unwrap_or(f64::NAN);
    let seconds = args.seconds as f64;
    println!(
        "{}",
        json!({
            "kind": args.kind,
            "replicas": args.replicas.len(),
            "clients": args.clients,
            "seconds": args.seconds,
            "requests_per_s": (latencies.len() as f64 / seconds).round(),
            "rows_per_s": (rows as f64 / seconds).round(),
            "p50_ms": (at(0.5) * 100.0).round() / 100.0,
            "p99_ms": (at(0.99) * 100.0).round() / 100.0,
            "errors": errors,
            "first_error": first_error,
        })
    );
    Ok(())
}
