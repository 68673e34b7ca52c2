//! Topics: one suite on the SQLite catalog and on a real PostgreSQL catalog. Offsets are
//! contiguous from 0; replay switches to live delivery with no gap and no duplicate; filters
//! apply per row and refuse what they do not support; consumer groups split a topic and
//! redeliver unacknowledged events; change feeds commit with their writes; retention and
//! tenancy hold.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use jammi_db::datafusion::arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use jammi_db::datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use jammi_db::topic::{Retention, StartAt, SubscribeOptions, Subscription, TopicDefinition, TopicSpec};
use jammi_db::config::{BrokerConfig, BrokerKind};
use jammi_db::{Config, Session, TenantId};

use crate::support::*;

async fn backend_session(pg: bool, jetstream: bool) -> (Session, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded(dir.path().join("home"));
    if pg {
        config.catalog.url = Some(fresh_pg_database().await);
    }
    if jetstream {
        config.broker = BrokerConfig { kind: BrokerKind::Jetstream, url: Some(require_env("JAMMI_TEST_NATS_URL")), ..Default::default() };
    }
    (Session::open(config).await.expect("open session"), dir)
}

fn definition(name: &str, schema: &str) -> TopicDefinition {
    TopicDefinition { name: name.into(), columns: TopicSpec::parse_schema(schema).unwrap(), source_table: None, retention: Retention::default() }
}

fn events(ids: std::ops::Range<i64>) -> RecordBatch {
    let schema = Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("kind", DataType::Utf8, true)]);
    let kinds: Vec<Option<String>> = ids.clone().map(|i| if i % 3 == 0 { None } else { Some(if i % 2 == 0 { "even" } else { "odd" }.to_string()) }).collect();
    RecordBatch::try_new(Arc::new(schema), vec![Arc::new(Int64Array::from(ids.collect::<Vec<_>>())), Arc::new(StringArray::from(kinds))]).unwrap()
}

fn offsets(batch: &RecordBatch) -> Vec<i64> {
    batch.column_by_name("_offset").unwrap().as_primitive::<Int64Type>().values().to_vec()
}

/// Offsets delivered until `n` have arrived (or the timeout, which fails the test).
async fn collect(sub: &mut Subscription, n: usize, ack: bool) -> Vec<i64> {
    let mut out = Vec::new();
    while out.len() < n {
        let batch = tokio::time::timeout(Duration::from_secs(20), sub.next()).await.expect("events in time").expect("subscription open").unwrap();
        if ack {
            sub.ack(&batch).await.unwrap();
        }
        out.extend(offsets(&batch));
    }
    out
}

async fn offsets_and_replay(session: &Session) {
    let topics = session.topics();
    topics.create(definition("ev", "id:int64,kind:string:nullable")).await.unwrap();
    assert!(topics.create(definition("ev", "id:int64")).await.unwrap_err().to_string().contains("already exists"));
    let p = topics.publish("ev", &events(0..5)).await.unwrap();
    assert_eq!((p.first_offset, p.count), (0, 5));
    // A batch that does not fit is refused whole.
    let bad = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)])),
        vec![Arc::new(StringArray::from(vec!["5", "six"]))],
    )
    .unwrap();
    let err = topics.publish("ev", &bad).await.unwrap_err().to_string();
    assert!(err.contains("'id'") && err.contains("nothing was published"), "{err}");
    let err = topics.publish_json("ev", r#"{"id": 1, "extra": true}"#).await.unwrap_err().to_string();
    assert!(err.contains("extra"), "{err}");
    assert_eq!(topics.list().await.unwrap()[0].next_offset, 5);

    // Live-only subscribers miss earlier events; replaying ones get everything, then live
    // events, while a publisher keeps going: exactly 0..N, in order.
    let mut live = topics.subscribe("ev", SubscribeOptions::default()).await.unwrap();
    let mut replay = topics.subscribe("ev", SubscribeOptions { from: StartAt::Offset(2), batch_size: 7, ..Default::default() }).await.unwrap();
    let publisher = {
        let s = session.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                s.topics().publish("ev", &events(100 + i * 5..105 + i * 5)).await.unwrap();
            }
        })
    };
    let got = collect(&mut replay, 103, false).await;
    assert_eq!(got, (2..105).collect::<Vec<_>>());
    publisher.await.unwrap();
    let got = collect(&mut live, 100, false).await;
    assert_eq!(got, (5..105).collect::<Vec<_>>());

    // Filters: per row, and only the supported subset.
    let mut odd = topics
        .subscribe("ev", SubscribeOptions { from: StartAt::Beginning, filter: Some("kind = 'odd' AND id BETWEEN 1 AND 50 OR upper(kind) LIKE 'EV%' AND id < 4".into()), ..Default::default() })
        .await
        .unwrap();
    let batch = tokio::time::timeout(Duration::from_secs(20), odd.next()).await.unwrap().unwrap().unwrap();
    let ids: Vec<i64> = batch.column(0).as_primitive::<Int64Type>().values().to_vec();
    assert_eq!(ids, vec![1, 2]);
    for bad in ["id IN (SELECT 1)", "random() > 0.5", "nope = 1", "id + 1"] {
        let err = topics.subscribe("ev", SubscribeOptions { filter: Some(bad.into()), ..Default::default() }).await.unwrap_err().to_string();
        assert!(err.contains(bad), "{bad}: {err}");
    }
    // SQL sees the log.
    assert_eq!(scalar(session, "SELECT count(*) FROM topics.public.ev WHERE _offset >= 5").await, "100");
    assert_eq!(scalar(session, "SELECT max(id) FROM topics.public.ev").await, "199");
}

async fn consumer_groups(session: &Session) {
    let topics = session.topics();
    topics.create(definition("jobs", "id:int64,kind:string:nullable")).await.unwrap();
    let group = |ack_ms| SubscribeOptions { from: StartAt::Beginning, group: Some("workers".into()), ack_timeout: Duration::from_millis(ack_ms), batch_size: 10, ..Default::default() };
    let mut a = topics.subscribe("jobs", group(60_000)).await.unwrap();
    let mut b = topics.subscribe("jobs", group(60_000)).await.unwrap();
    topics.publish("jobs", &events(0..60)).await.unwrap();
    // Two members split the events; together they get each exactly once.
    let (mut got_a, mut got_b) = (BTreeSet::new(), BTreeSet::new());
    while got_a.len() + got_b.len() < 60 {
        tokio::select! {
            Some(batch) = a.next() => { let batch = batch.unwrap(); a.ack(&batch).await.unwrap(); got_a.extend(offsets(&batch)); }
            Some(batch) = b.next() => { let batch = batch.unwrap(); b.ack(&batch).await.unwrap(); got_b.extend(offsets(&batch)); }
            _ = tokio::time::sleep(Duration::from_secs(20)) => panic!("group delivery stalled at {} events", got_a.len() + got_b.len()),
        }
    }
    assert!(got_a.is_disjoint(&got_b));
    assert_eq!(got_a.union(&got_b).copied().collect::<Vec<_>>(), (0..60).collect::<Vec<_>>());
    drop(a);
    drop(b);

    // A member that does not acknowledge: its events go to another member after the timeout.
    let mut lazy = topics.subscribe("jobs", group(300)).await.unwrap();
    topics.publish("jobs", &events(60..65)).await.unwrap();
    let first = collect(&mut lazy, 5, false).await;
    assert_eq!(first, (60..65).collect::<Vec<_>>());
    let info = topics.list().await.unwrap().into_iter().find(|t| t.name == "jobs").unwrap();
    assert_eq!(info.groups.len(), 1);
    assert_eq!((info.groups[0].lag, info.groups[0].pending), (0, 5));
    drop(lazy);
    let mut again = topics.subscribe("jobs", group(60_000)).await.unwrap();
    let redelivered = collect(&mut again, 5, true).await;
    assert_eq!(redelivered, (60..65).collect::<Vec<_>>());
    // A restarted member resumes after the acknowledged events.
    drop(again);
    topics.publish("jobs", &events(65..67)).await.unwrap();
    let mut restarted = topics.subscribe("jobs", group(60_000)).await.unwrap();
    assert_eq!(collect(&mut restarted, 2, true).await, vec![65, 66]);
    let info = topics.list().await.unwrap().into_iter().find(|t| t.name == "jobs").unwrap();
    assert_eq!((info.groups[0].lag, info.groups[0].pending), (0, 0));
}

async fn change_feeds(session: &Session) {
    session.sql("CREATE TABLE mutable.public.labels (doc BIGINT PRIMARY KEY, label TEXT NOT NULL)").await.unwrap().collect().await.unwrap();
    let topics = session.topics();
    topics
        .create(TopicDefinition { name: "label_changes".into(), columns: vec![], source_table: Some("mutable.public.labels".into()), retention: Retention::default() })
        .await
        .unwrap();
    let mut feed = topics.subscribe("label_changes", SubscribeOptions { from: StartAt::Beginning, ..Default::default() }).await.unwrap();
    for sql in [
        "INSERT INTO mutable.public.labels VALUES (1, 'cat'), (2, 'dog')",
        "UPDATE mutable.public.labels SET label = 'bird' WHERE doc = 2",
        "INSERT INTO mutable.public.labels VALUES (1, 'x') ON CONFLICT (doc) DO UPDATE SET label = excluded.label",
        "DELETE FROM mutable.public.labels WHERE doc = 1",
    ] {
        session.sql(sql).await.unwrap().collect().await.unwrap();
    }
    // A failed statement and a rolled-back transaction leave no event.
    assert!(sql_error(session, "INSERT INTO mutable.public.labels VALUES (3, 'a'), (2, 'dup')").await.contains("duplicate"));
    session.sql("BEGIN; INSERT INTO mutable.public.labels VALUES (9, 'z'); ROLLBACK").await.unwrap().collect().await.unwrap();
    session.sql("INSERT INTO mutable.public.labels VALUES (4, 'last')").await.unwrap().collect().await.unwrap();
    let mut rows = Vec::new();
    while rows.len() < 6 {
        let batch = tokio::time::timeout(Duration::from_secs(20), feed.next()).await.unwrap().unwrap().unwrap();
        for r in 0..batch.num_rows() {
            let text = |c: &str| {
                let a = batch.column_by_name(c).unwrap().as_string::<i32>();
                if a.is_null(r) { "-".to_string() } else { a.value(r).to_string() }
            };
            rows.push(format!("{} {} {} {}", text("op"), text("key"), text("new"), text("old")));
        }
    }
    assert_eq!(
        rows,
        vec![
            r#"insert {"doc":1} {"doc":1,"label":"cat"} -"#,
            r#"insert {"doc":2} {"doc":2,"label":"dog"} -"#,
            r#"update {"doc":2} {"doc":2,"label":"bird"} {"doc":2,"label":"dog"}"#,
            r#"update {"doc":1} {"doc":1,"label":"x"} {"doc":1,"label":"cat"}"#,
            r#"delete {"doc":1} - {"doc":1,"label":"x"}"#,
            r#"insert {"doc":4} {"doc":4,"label":"last"} -"#,
        ]
    );
    assert!(topics.publish_json("label_changes", r#"{"op":"insert","key":"{}"}"#).await.unwrap_err().to_string().contains("change feed"));
}

async fn retention_and_tenancy(session: &Session) {
    let topics = session.topics();
    topics
        .create(TopicDefinition { retention: Retention { max_events: Some(5), max_age_ms: None }, ..definition("recent", "id:int64,kind:string:nullable") })
        .await
        .unwrap();
    topics.publish("recent", &events(0..12)).await.unwrap();
    let info = topics.list().await.unwrap().into_iter().find(|t| t.name == "recent").unwrap();
    assert_eq!((info.low_offset, info.next_offset), (7, 12));
    let err = topics.subscribe("recent", SubscribeOptions { from: StartAt::Offset(3), ..Default::default() }).await.unwrap_err().to_string();
    assert!(err.contains("offset 3") && err.contains("lowest available offset is 7"), "{err}");

    let a: TenantId = "0b7e8a52-1c59-4a39-8d7e-6a1b2c3d4e5f".parse().unwrap();
    let b: TenantId = "7f000000-0000-4000-8000-000000000002".parse().unwrap();
    let (as_a, as_b) = (session.with_tenant(Some(a)), session.with_tenant(Some(b)));
    topics.create(definition("shared_ev", "id:int64,kind:string:nullable")).await.unwrap();
    as_a.topics().publish("shared_ev", &events(0..3)).await.unwrap();
    as_b.topics().publish("shared_ev", &events(3..5)).await.unwrap();
    topics.publish("shared_ev", &events(5..6)).await.unwrap();
    let mut sub_b = as_b.topics().subscribe("shared_ev", SubscribeOptions { from: StartAt::Beginning, ..Default::default() }).await.unwrap();
    assert_eq!(collect(&mut sub_b, 3, false).await, vec![3, 4, 5], "B sees its own and shared events only");
    assert_eq!(scalar(&as_a, "SELECT count(*) FROM topics.public.shared_ev").await, "4");
    // Live delivery from this process's recent commits keeps the same visibility.
    let mut live_b = as_b.topics().subscribe("shared_ev", SubscribeOptions::default()).await.unwrap();
    as_a.topics().publish("shared_ev", &events(6..8)).await.unwrap();
    topics.publish("shared_ev", &events(8..9)).await.unwrap();
    assert_eq!(collect(&mut live_b, 1, false).await, vec![8], "live: A's events never reach B");
    // Acknowledging through another channel with a member id: only in the member's own
    // tenant (group names are per tenant), and only what the member still holds.
    let mut member_a = as_a.topics().subscribe("shared_ev", SubscribeOptions { from: StartAt::Beginning, group: Some("g".into()), ..Default::default() }).await.unwrap();
    let held = collect(&mut member_a, 7, false).await;
    assert_eq!(held, vec![0, 1, 2, 5, 6, 7, 8]);
    let id = member_a.member().unwrap().to_string();
    let outcome = as_b.topics().ack("shared_ev", "g", &id, &held).await.unwrap();
    assert_eq!((outcome.acknowledged, outcome.not_held), (0, 7), "B cannot acknowledge A's events");
    let outcome = as_a.topics().ack("shared_ev", "g", &id, &[0, 1, 1, 99]).await.unwrap();
    assert_eq!((outcome.acknowledged, outcome.not_held), (2, 1));
    let outcome = as_a.topics().ack("shared_ev", "g", &id, &held).await.unwrap();
    assert_eq!((outcome.acknowledged, outcome.not_held), (5, 2), "0 and 1 were done already");
    assert!(matches!(as_a.topics().ack("nope", "g", &id, &[1]).await, Err(jammi_db::Error::Unknown { kind: jammi_db::error::ObjectKind::Topic, .. })));
    drop(member_a);
    as_a.topics().create(definition("private_ev", "id:int64")).await.unwrap();
    assert!(as_b.topics().publish("private_ev", &events(0..1)).await.is_err(), "B cannot even see A's topic");
    let err = session.topics().publish_json("private_ev", r#"{"id": 1}"#).await.unwrap_err().to_string();
    assert!(err.contains("private_ev"), "{err}");
    let all = session.admin(|s| async move { s.topics().publish_json("private_ev", r#"{"id": 1}"#).await }).await;
    assert!(all.is_ok());
    topics.drop("recent").await.unwrap();
    assert!(topics.subscribe("recent", SubscribeOptions::default()).await.is_err());
}

async fn suite(pg: bool, jetstream: bool) {
    let (session, _dir) = backend_session(pg, jetstream).await;
    offsets_and_replay(&session).await;
    consumer_groups(&session).await;
    change_feeds(&session).await;
    retention_and_tenancy(&session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn topics_on_sqlite() {
    suite(false, false).await;
}

/// The same suite with the JetStream broker carrying the wake-ups.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn topics_on_sqlite_with_jetstream() {
    suite(false, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn topics_on_postgres() {
    suite(true, false).await;
}
