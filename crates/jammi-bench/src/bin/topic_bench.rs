//! Topic benchmark: publish→deliver latency (p50/p99) and events/s through jammi-db topics,
//! with the in-process broker and with NATS JetStream, and raw async-nats JetStream
//! publishing and consuming in the same run as the yardstick.
//!
//! ```sh
//! bash crates/jammi-bench/run_topics.sh      # starts a nats-server, runs this, prints Markdown
//! ```
//!
//! Latency: one event per publish, the subscriber (live, same process) timestamps arrival;
//! the publish time travels in the event. Throughput: batches of `--batch` events published
//! back to back while the subscriber drains; events/s = events ÷ time until the last one
//! arrived.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use futures::StreamExt;
use jammi_db::config::{BrokerConfig, BrokerKind};
use jammi_db::topic::{Retention, StartAt, SubscribeOptions, TopicDefinition, TopicSpec};
use jammi_db::{Config, Session};
use serde_json::json;

struct Args {
    nats: Option<String>,
    latency_events: usize,
    batches: usize,
    batch: usize,
}

fn parse_args() -> Result<Args> {
    let mut args = Args { nats: None, latency_events: 3000, batches: 50, batch: 1000 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--nats" => args.nats = Some(value()?),
            "--latency-events" => args.latency_events = value()?.parse()?,
            "--batches" => args.batches = value()?.parse()?,
            "--batch" => args.batch = value()?.parse()?,
            other => return Err(anyhow!("unknown flag {other}; flags: --nats URL --latency-events N --batches N --batch N")),
        }
    }
    Ok(args)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn batch_of(first: i64, n: usize, sent_us: i64) -> RecordBatch {
    let schema = Schema::new(vec![Field::new("n", DataType::Int64, false), Field::new("sent_us", DataType::Int64, false), Field::new("body", DataType::Utf8, false)]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from((first..first + n as i64).collect::<Vec<_>>())),
            Arc::new(Int64Array::from(vec![sent_us; n])),
            Arc::new(StringArray::from(vec!["a label of a typical size for an event"; n])),
        ],
    )
    .unwrap()
}

struct Measured {
    p50_ms: f64,
    p99_ms: f64,
    /// Time until `publish` returned (the durable commit), p50 and p99.
    commit_ms: Option<(f64, f64)>,
    /// One event per publish, each awaited (durable commit / JetStream ack) before the next.
    single_per_s: f64,
    /// Batches: one jammi publish (one commit) of `--batch` events; for NATS, which has no
    /// batch publish, `--batch` publishes pipelined and their acks awaited together.
    events_per_s: f64,
}

async fn bench_jammi(session: &Session, name: &str, args: &Args, clock: Instant) -> Result<Measured> {
    let columns = TopicSpec::parse_schema("n:int64,sent_us:int64,body:string")?;
    session.topics().create(TopicDefinition { name: name.into(), columns, source_table: None, retention: Retention::default() }).await?;
    let now_us = || clock.elapsed().as_micros() as i64;

    // Latency: one event at a time.
    let mut sub = session.topics().subscribe(name, SubscribeOptions { from: StartAt::Live, ..Default::default() }).await?;
    let mut latencies = Vec::with_capacity(args.latency_events);
    let mut commits = Vec::with_capacity(args.latency_events);
    for i in 0..args.latency_events {
        let sent = now_us();
        session.topics().publish(name, &batch_of(i as i64, 1, sent)).await?;
        commits.push((now_us() - sent) as f64 / 1000.0);
        let batch = tokio::time::timeout(Duration::from_secs(10), sub.next()).await.context("delivery timed out")?.ok_or_else(|| anyhow!("ended"))??;
        let arrived = now_us();
        for sent in batch.column(1).as_primitive::<Int64Type>().values() {
            latencies.push((arrived - sent) as f64 / 1000.0);
        }
    }
    latencies.sort_by(f64::total_cmp);
    commits.sort_by(f64::total_cmp);
    let commit_ms = Some((percentile(&commits, 0.5), percentile(&commits, 0.99)));

    // Single-event throughput: publishes back to back, each awaited, the subscriber draining.
    let singles = args.latency_events;
    let started = Instant::now();
    let publisher = {
        let (session, name) = (session.clone(), name.to_string());
        tokio::spawn(async move {
            for i in 0..singles {
                session.topics().publish(&name, &batch_of(i as i64, 1, 0)).await?;
            }
            Ok::<_, jammi_db::Error>(())
        })
    };
    let mut received = 0;
    while received < singles {
        let batch = tokio::time::timeout(Duration::from_secs(60), sub.next()).await.context("single delivery timed out")?.ok_or_else(|| anyhow!("ended"))??;
        received += batch.num_rows();
    }
    let single_per_s = singles as f64 / started.elapsed().as_secs_f64();
    publisher.await??;

    // Throughput: batches back to back, the subscriber draining concurrently.
    let total = args.batches * args.batch;
    let mut sub = session.topics().subscribe(name, SubscribeOptions { from: StartAt::Live, batch_size: 10_000, ..Default::default() }).await?;
    let started = Instant::now();
    let publisher = {
        let (session, name, batches, size) = (session.clone(), name.to_string(), args.batches, args.batch);
        tokio::spawn(async move {
            for b in 0..batches {
                session.topics().publish(&name, &batch_of((b * size) as i64, size, 0)).await?;
            }
            Ok::<_, jammi_db::Error>(())
        })
    };
    let mut received = 0;
    while received < total {
        let batch = tokio::time::timeout(Duration::from_secs(60), sub.next()).await.context("throughput delivery timed out")?.ok_or_else(|| anyhow!("ended"))??;
        received += batch.num_rows();
    }
    let seconds = started.elapsed().as_secs_f64();
    publisher.await??;
    Ok(Measured { p50_ms: percentile(&latencies, 0.5), p99_ms: percentile(&latencies, 0.99), commit_ms, single_per_s, events_per_s: total as f64 / seconds })
}

/// The same two measurements with async-nats alone: JetStream publish (awaiting the ack),
/// an ordered consumer receiving.
async fn bench_raw_nats(url: &str, args: &Args, clock: Instant) -> Result<Measured> {
    use async_nats::jetstream::{self, consumer::pull::OrderedConfig, stream};
    let client = async_nats::connect(url).await?;
    let js = jetstream::new(client);
    let _ = js.delete_stream("BENCH_RAW").await;
    let s = js.create_stream(stream::Config { name: "BENCH_RAW".into(), subjects: vec!["bench.raw".into()], storage: stream::StorageType::File, ..Default::default() }).await?;
    let consumer = s.create_consumer(OrderedConfig { filter_subject: "bench.raw".into(), deliver_policy: jetstream::consumer::DeliverPolicy::New, ..Default::default() }).await?;
    let mut messages = consumer.messages().await?;
    let now_us = || clock.elapsed().as_micros() as i64;
    let event = |n: usize, sent: i64| serde_json::to_vec(&json!({"n": n, "sent_us": sent, "body": "a label of a typical size for an event"})).unwrap();
    let mut latencies = Vec::with_capacity(args.latency_events);
    for i in 0..args.latency_events {
        js.publish("bench.raw", event(i, now_us()).into()).await?.await?;
        let m = tokio::time::timeout(Duration::from_secs(10), messages.next()).await?.ok_or_else(|| anyhow!("ended"))??;
        let v: serde_json::Value = serde_json::from_slice(&m.payload)?;
        latencies.push((now_us() - v["sent_us"].as_i64().unwrap_or(0)) as f64 / 1000.0);
    }
    latencies.sort_by(f64::total_cmp);

    // Single-event throughput: each publish's ack awaited before the next.
    let singles = args.latency_events;
    let started = Instant::now();
    let publisher = {
        let js = js.clone();
        tokio::spawn(async move {
            for i in 0..singles {
                js.publish("bench.raw", event(i, 0).into()).await?.await?;
            }
            Ok::<_, anyhow::Error>(())
        })
    };
    for _ in 0..singles {
        tokio::time::timeout(Duration::from_secs(60), messages.next()).await?.ok_or_else(|| anyhow!("ended"))??;
    }
    let single_per_s = singles as f64 / started.elapsed().as_secs_f64();
    publisher.await??;

    let total = args.batches * args.batch;
    let started = Instant::now();
    let publisher = {
        let js = js.clone();
        let (batches, size) = (args.batches, args.batch);
        tokio::spawn(async move {
            for b in 0..batches {
                // A batch: publish every message, then wait for all acks.
                let mut acks = Vec::with_capacity(size);
                for i in 0..size {
                    acks.push(js.publish("bench.raw", event(b * size + i, 0).into()).await?);
                }
                for ack in acks {
                    ack.await?;
                }
            }
            Ok::<_, anyhow::Error>(())
        })
    };
    let mut received = 0;
    while received < total {
        tokio::time::timeout(Duration::from_secs(60), messages.next()).await?.ok_or_else(|| anyhow!("ended"))??;
        received += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    publisher.await??;
    Ok(Measured { p50_ms: percentile(&latencies, 0.5), p99_ms: percentile(&latencies, 0.99), commit_ms: None, single_per_s, events_per_s: total as f64 / seconds })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let clock = Instant::now();
    let dir = tempfile::tempdir()?;
    let mut rows = Vec::new();
    let session = Session::open(Config::embedded(dir.path().join("in_process"))).await?;
    eprintln!("jammi, in-process broker");
    rows.push(("jammi topics, in-process broker (SQLite log)", bench_jammi(&session, "bench", &args, clock).await?));
    if let Some(url) = &args.nats {
        let mut config = Config::embedded(dir.path().join("jetstream"));
        config.broker = BrokerConfig { kind: BrokerKind::Jetstream, url: Some(url.clone()), ..Default::default() };
        let session = Session::open(config).await?;
        eprintln!("jammi, JetStream broker");
        rows.push(("jammi topics, JetStream broker (SQLite log)", bench_jammi(&session, "bench", &args, clock).await?));
        eprintln!("raw async-nats JetStream");
        rows.push(("async-nats JetStream publish + ordered consumer (raw)", bench_raw_nats(url, &args, clock).await?));
    }
    println!(
        "{} latency events (one per publish), {} batches × {} events for throughput; one machine, loopback.\n",
        args.latency_events, args.batches, args.batch
    );
    println!("| system | publish→deliver p50 | p99 | publish returned p50 / p99 | events/s, one per publish | events/s, batches |\n|---|---:|---:|---:|---:|---:|");
    for (name, m) in &rows {
        let commit = m.commit_ms.map_or("–".to_string(), |(p50, p99)| format!("{p50:.2} / {p99:.2} ms"));
        println!("| {name} | {:.2} ms | {:.2} ms | {commit} | {:.0} | {:.0} |", m.p50_ms, m.p99_ms, m.single_per_s, m.events_per_s);
    }
    if rows.len() == 3 {
        let (jammi, nats) = (&rows[1].1, &rows[2].1);
        println!(
            "\njammi on JetStream ÷ raw async-nats: {:.2}× one event per publish (a durable commit vs an acknowledged publish), {:.2}× batches ({} events in one commit vs {} pipelined publishes).",
            jammi.single_per_s / nats.single_per_s,
            jammi.events_per_s / nats.events_per_s,
            args.batch,
            args.batch
        );
    }
    Ok(())
}
