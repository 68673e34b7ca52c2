//! Request decoding under fuzzing (proptest, a bounded number of cases per run): random
//! bytes and malformed Postgres messages on the wire, random JSON bodies on every HTTP
//! endpoint. The server answers each with an error or closes the connection — never a 5xx,
//! never a crash — and still serves ordinary clients afterwards.

use std::time::Duration;

use jammi_server::Limits;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() })
}

/// Bytes a hostile Postgres client might send: noise, or a real start-up message followed
/// by messages of random type, length field and body (lengths up to 2^31).
fn pg_bytes() -> impl Strategy<Value = Vec<u8>> {
    let startup = {
        let mut m = Vec::new();
        let body = b"\x00\x03\x00\x00user\x00jammi\x00database\x00jammi\x00\x00";
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        m
    };
    let message = (prop_oneof![Just(b'Q'), Just(b'P'), Just(b'B'), Just(b'E'), Just(b'D'), Just(b'S'), Just(b'X'), any::<u8>()], prop_oneof![0u32..64, Just(0x7fff_fff0), any::<u32>()], prop::collection::vec(any::<u8>(), 0..64))
        .prop_map(|(kind, len, body)| {
            let mut m = vec![kind];
            m.extend_from_slice(&len.to_be_bytes());
            m.extend_from_slice(&body);
            m
        });
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        prop::collection::vec(message, 1..4).prop_map(move |ms| {
            let mut bytes = startup.clone();
            for m in ms {
                bytes.extend_from_slice(&m);
            }
            bytes
        }),
    ]
}

/// JSON a hostile HTTP client might send.
fn json_body() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
        "[ -~]{0,24}".prop_map(serde_json::Value::from),
        prop_oneof![Just("SELECT 1"), Just("docs"), Just("SELECT * FROM vector_search('docs', '[1,2,3,4]', 99999999999)")].prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(prop_oneof![Just("sql".to_string()), Just("table".to_string()), Just("vector".to_string()), Just("k".to_string()), Just("params".to_string()), Just("filter".to_string()), Just("ef".to_string()), "[a-z]{1,6}"], inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_requests_get_errors_not_crashes() {
    let (session, dir) = session().await;
    docs(&session, dir.path(), 20).await;
    session.topics().create(jammi_db::topic::TopicDefinition {
        name: "ev".into(),
        columns: jammi_db::topic::TopicSpec::parse_schema("id:int64").unwrap(),
        source_table: None,
        retention: jammi_db::topic::Retention::default(),
    }).await.unwrap();
    let served = serve(session, dir, Limits::default()).await;

    // The Postgres wire protocol.
    let mut pg = runner(96);
    let bytes = pg_bytes();
    for _ in 0..96 {
        let input = bytes.new_tree(&mut pg).unwrap().current();
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", served.pg_port)).await.unwrap();
        let _ = socket.write_all(&input).await;
        let mut sink = vec![0u8; 4096];
        // The server answers or closes; either way it must not take long.
        let _ = tokio::time::timeout(Duration::from_millis(300), async {
            while let Ok(n) = socket.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }

    // Every HTTP endpoint that takes a body.
    let client = reqwest::Client::new();
    let mut http = runner(96);
    let bodies = json_body();
    for i in 0..96 {
        let body = bodies.new_tree(&mut http).unwrap().current();
        let path = ["/v1/sql", "/v1/search", "/v1/topics/ev/events"][i % 3];
        let (status, answer) = post(&client, &format!("{}{path}", served.http), None, body.clone()).await;
        assert!(status < 500, "{path} {body}: {status} {answer}");
    }
    // Bodies that are not JSON at all.
    for raw in ["", "{", "[]", "\u{0}", "{\"sql\": 1e999}", &"[".repeat(100_000)] {
        let response = client.post(format!("{}/v1/sql", served.http)).header("content-type", "application/json").body(raw.to_string()).send().await.unwrap();
        assert!(response.status().as_u16() < 500, "{raw:?}: {}", response.status());
    }

    // Still serving.
    let (status, answer) = post(&client, &format!("{}/v1/sql", served.http), None, serde_json::json!({"sql": "SELECT 1 AS one"})).await;
    assert_eq!((status, answer["rows"][0]["one"].as_i64()), (200, Some(1)), "{answer}");
    let mut conn = sqlx::PgConnection::connect(&format!("postgres://jammi:x@127.0.0.1:{}/jammi", served.pg_port)).await.unwrap();
    let one: i64 = sqlx::query_scalar("SELECT 1::BIGINT").fetch_one(&mut conn).await.unwrap();
    assert_eq!(one, 1);
}
