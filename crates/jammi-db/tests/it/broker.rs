//! Brokers: one conformance check for the in-process and the JetStream broker (a real
//! nats-server), cross-engine wake-ups through JetStream, and a nats-server restart in the
//! middle of a stream with no event lost.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jammi_db::config::{BrokerConfig, BrokerKind};
use jammi_db::datafusion::arrow::array::AsArray;
use jammi_db::datafusion::arrow::datatypes::Int64Type;
use jammi_db::topic::broker::{Broker, InProcessBroker, JetStreamBroker};
use jammi_db::topic::{Retention, StartAt, SubscribeOptions, TopicDefinition, TopicSpec};
use jammi_db::{Config, Session};

use crate::support::*;

/// `watcher` sees every wake-up `notifier` sends for a topic, in order of value.
async fn conformance(watcher: &dyn Broker, notifier: &dyn Broker) {
    let topic = uuid::Uuid::new_v4().to_string();
    let mut rx = watcher.watch(&topic);
    for n in 1..=5i64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        // A consumer that is still starting misses a wake-up sent before it: send again,
        // as the poll interval would cover it in real use.
        while *rx.borrow_and_update() < n * 10 {
            notifier.notify(&topic, n * 10);
            assert!(Instant::now() < deadline, "wake-up {n} never arrived");
            let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_broker_conformance() {
    let broker = InProcessBroker::default();
    conformance(&broker, &broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_broker_conformance_across_engines() {
    let url = require_env("JAMMI_TEST_NATS_URL");
    let a = JetStreamBroker::connect(&url).await.unwrap();
    let b = JetStreamBroker::connect(&url).await.unwrap();
    conformance(&a, &a).await;
    conformance(&a, &b).await; // another engine's publish wakes this one
    let err = JetStreamBroker::connect("nats://127.0.0.1:1").await.unwrap_err().to_string();
    assert!(err.contains("broker.url"), "{err}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_nats(port: u16, store: &std::path::Path) -> Child {
    let binary = require_env("JAMMI_TEST_NATS_SERVER");
    let child = Command::new(binary)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd", &store.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nats-server");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nats_restart_mid_stream_loses_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut nats = start_nats(port, &dir.path().join("nats"));
    // The subscriber never polls the log within this test's deadline: every event it gets
    // came after a wake-up through NATS, so the test fails if NATS (or its restart) does
    // not carry them.
    let config = |poll_ms: u64| {
        let mut c = Config::embedded(dir.path().join("home"));
        c.broker = BrokerConfig { kind: BrokerKind::Jetstream, url: Some(format!("nats://127.0.0.1:{port}")), poll_interval_ms: poll_ms };
        c
    };
    // Two engines on one catalog: the publisher's wake-ups reach the subscriber via NATS.
    let publisher = Session::open(config(100)).await.unwrap();
    let subscriber = Session::open(config(3_600_000)).await.unwrap();
    let columns = TopicSpec::parse_schema("n:int64").unwrap();
    publisher.topics().create(TopicDefinition { name: "stream".into(), columns, source_table: None, retention: Retention::default() }).await.unwrap();
    let mut sub = subscriber.topics().subscribe("stream", SubscribeOptions { from: StartAt::Offset(0), ..Default::default() }).await.unwrap();
    let mut got = Vec::new();
    for i in 0..30 {
        if i == 10 {
            // Before the outage, events arrived through NATS wake-ups alone.
            let deadline = Instant::now() + Duration::from_secs(10);
            while got.len() < 10 {
                assert!(Instant::now() < deadline, "only {} of the first 10 events arrived through NATS", got.len());
                if let Ok(Some(batch)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
                    got.extend(batch.unwrap().column(0).as_primitive::<Int64Type>().values().iter().copied());
                }
            }
            nats.kill().unwrap();
            nats.wait().unwrap();
        }
        if i == 20 {
            nats = start_nats(port, &dir.path().join("nats"));
        }
        publisher.topics().publish_json("stream", &format!("{{\"n\": {i}}}")).await.unwrap();
        // Drain what has arrived so far, so delivery happens during the outage too.
        while let Ok(Some(batch)) = tokio::time::timeout(Duration::from_millis(20), sub.next()).await {
            got.extend(batch.unwrap().column(0).as_primitive::<Int64Type>().values().iter().copied());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < 30 {
        assert!(Instant::now() < deadline, "only {} of 30 events arrived", got.len());
        if let Ok(Some(batch)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
            got.extend(batch.unwrap().column(0).as_primitive::<Int64Type>().values().iter().copied());
        }
    }
    assert_eq!(got, (0..30).collect::<Vec<_>>(), "every event once, in order, across the restart");
    nats.kill().unwrap();
    nats.wait().unwrap();
    assert_eq!(scalar(&subscriber, "SELECT count(*) FROM topics.public.stream").await, "30");
}
