//! The HTTP API: SQL (JSON and Arrow), parameters, DML, vector search, topics over
//! server-sent events, errors, limits, metrics, authentication, tenancy under concurrency,
//! and graceful shutdown.

use std::time::{Duration, Instant};

use jammi_db::topic::TopicDefinition;
use jammi_db::TenantId;
use jammi_server::{Limits, ServeOptions, Server};
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sql_search_topics_errors_and_metrics() {
    let (session, dir) = session().await;
    docs(&session, dir.path(), 40).await;
    let served = serve(session, dir, Limits { max_request_bytes: 4096, ..Limits::default() }).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", served.http);

    assert_eq!(client.get(url("/healthz")).send().await.unwrap().text().await.unwrap(), "ok\n");
    assert_eq!(client.get(url("/readyz")).send().await.unwrap().status(), 200);

    // DDL, DML with parameters, a query as JSON.
    let (status, _) = post(&client, &url("/v1/sql"), None, json!({"sql": "CREATE TABLE mutable.public.notes (id BIGINT PRIMARY KEY, body VARCHAR)"})).await;
    assert_eq!(status, 200);
    let (status, answer) = post(&client, &url("/v1/sql"), None, json!({"sql": "INSERT INTO mutable.public.notes VALUES ($1, $2), (2, 'two')", "params": [1, "it's one"]})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rows"][0]["count"], 2);
    let (status, answer) = post(&client, &url("/v1/sql"), None, json!({"sql": "SELECT id, body FROM mutable.public.notes WHERE id >= $1 ORDER BY id", "params": [1]})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rows"], json!([{"id": 1, "body": "it's one"}, {"id": 2, "body": "two"}]));
    assert_eq!(answer["columns"][1], json!({"name": "body", "type": "Utf8", "nullable": true}));
    assert_eq!(answer["row_count"], 2);

    // The same as an Arrow IPC stream.
    let bytes = client
        .post(url("/v1/sql"))
        .header("accept", "application/vnd.apache.arrow.stream")
        .body(json!({"sql": "SELECT count(*) AS n FROM mutable.public.notes"}).to_string())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let reader = jammi_db::datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
    let batches: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
    assert_eq!(batches[0].num_rows(), 1);

    // Vector search: the endpoint, and vector_search in SQL with the vector as a parameter.
    let (status, answer) = post(&client, &url("/v1/search"), None, json!({"table": "docs", "vector": [0.1, 0.1, 1.4, 0.1], "k": 3, "filter": "lang = 'en'"})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["row_count"], 3);
    assert!(answer["rows"].as_array().unwrap().iter().all(|r| r["lang"] == "en" && r["id"].as_i64().unwrap() % 4 == 2), "{answer}");
    let (status, answer) = post(&client, &url("/v1/sql"), None, json!({"sql": "SELECT id FROM vector_search('docs', $1, 2) ORDER BY _rank", "params": [[1.3, 0.1, 0.1, 0.1]]})).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["rows"].as_array().unwrap().iter().all(|r| r["id"].as_i64().unwrap() % 4 == 0), "{answer}");

    // Clear errors with the right status.
    let (status, answer) = post(&client, &url("/v1/sql"), None, json!({"query": "SELECT 1"})).await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("expected e.g."), "{answer}");
    // An unknown table is a missing object like any other: 404 / 42P01.
    let (status, answer) = post(&client, &url("/v1/sql"), None, json!({"sql": "SELECT * FROM nowhere.public.nothing"})).await;
    assert_eq!(status, 404);
    assert!(answer["error"].as_str().unwrap().contains("nothing"), "{answer}");
    assert_eq!(answer["sqlstate"], "42P01", "{answer}");
    let (status, answer) = post(&client, &url("/v1/search"), None, json!({"table": "missing", "vector": [1.0, 0.0, 0.0, 0.0]})).await;
    assert_eq!(status, 404, "{answer}");
    let big = "x".repeat(8192);
    let (status, _) = post(&client, &url("/v1/sql"), None, json!({"sql": format!("SELECT '{big}'")})).await;
    assert_eq!(status, 413, "a body over --max-request-bytes is refused");

    // Topics: publish over HTTP, read back as server-sent events.
    served.session.topics().create(TopicDefinition { name: "clicks".into(), columns: jammi_db::topic::TopicSpec::parse_schema("user:string,n:int64").unwrap(), source_table: None, retention: Default::default() }).await.unwrap();
    let published = client.post(url("/v1/topics/clicks/events")).body(r#"{"user": "ada", "n": 1}
{"user": "bob", "n": 2}
{"user": "cy", "n": 3}"#).send().await.unwrap();
    assert_eq!(published.status(), 200);
    let events = client.get(url("/v1/topics/clicks/events?from_beginning=true&limit=2&filter=n%20%3E%3D%202")).send().await.unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let text = tokio::time::timeout(Duration::from_secs(10), events.text()).await.expect("the stream ends at the limit").unwrap();
    let data: Vec<serde_json::Value> = text.lines().filter_map(|l| l.strip_prefix("data: ")).map(|d| serde_json::from_str(d).unwrap()).collect();
    assert_eq!(data.iter().map(|e| e["user"].as_str().unwrap()).collect::<Vec<_>>(), ["bob", "cy"]);
    assert!(text.lines().any(|l| l == "id: 1"), "{text}");

    // Metrics count what happened.
    let metrics = client.get(url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("jammi_requests_total{protocol=\"http\",kind=\"sql\"}"), "{metrics}");
    assert!(metrics.contains("jammi_request_errors_total{protocol=\"http\",kind=\"search\"} 1"), "{metrics}");
    assert!(metrics.contains("jammi_request_duration_seconds_bucket{protocol=\"http\",kind=\"search\",le=\"+Inf\"} 2"), "{metrics}");
    assert!(metrics.contains("jammi_open_connections{protocol=\"http\"}"), "{metrics}");
    served.server.shutdown();
    served.server.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_tenants_and_loopback_rule() {
    let (session, dir) = session().await;
    // Without tokens: loopback only.
    let options = ServeOptions { http: Some("0.0.0.0:0".parse().unwrap()), ..ServeOptions::default() };
    let refused = Server::start(session.clone(), options.clone()).await.unwrap_err().to_string();
    assert!(refused.contains("without authentication") && refused.contains("jammi token create"), "{refused}");

    let (a, b) = (TenantId::random(), TenantId::random());
    tenant_people(&session, dir.path(), a, b, 50).await;
    let (_, token_a) = jammi_server::auth::create_token(&session, Some(a), "a").await.unwrap();
    let (record_b, token_b) = jammi_server::auth::create_token(&session, Some(b), "b").await.unwrap();
    // With tokens, any address may be used — over TLS, or when the operator says the
    // network is trusted.
    let clear = Server::start(session.clone(), options.clone()).await.unwrap_err().to_string();
    assert!(clear.contains("without TLS") && clear.contains("--tls-cert"), "{clear}");
    let options = ServeOptions { allow_insecure_transport: true, ..options };
    let open = Server::start(session.clone(), options).await.unwrap();
    assert!(open.auth_required());
    open.shutdown();
    open.wait().await;

    let served = serve(session, dir, Limits::default()).await;
    let client = reqwest::Client::new();
    let sql = format!("{}/v1/sql", served.http);
    let people = json!({"sql": "SELECT name FROM files.public.people ORDER BY id"});
    let (status, answer) = post(&client, &sql, None, people.clone()).await;
    assert_eq!(status, 401);
    assert!(answer["error"].as_str().unwrap().contains("Bearer"), "{answer}");
    let (status, _) = post(&client, &sql, Some("jammi_not-a-token"), people.clone()).await;
    assert_eq!(status, 401);

    // 32 concurrent clients, alternating tenants, each only ever sees its own rows.
    let mut clients = Vec::new();
    for i in 0..32 {
        let (client, sql, people) = (client.clone(), sql.clone(), people.clone());
        let (token, letter) = if i % 2 == 0 { (token_a.clone(), "a") } else { (token_b.clone(), "b") };
        clients.push(tokio::spawn(async move {
            for _ in 0..10 {
                let (status, answer) = post(&client, &sql, Some(&token), people.clone()).await;
                assert_eq!(status, 200, "{answer}");
                let rows = answer["rows"].as_array().unwrap();
                assert_eq!(rows.len(), 50);
                assert!(rows.iter().all(|r| r["name"].as_str().unwrap().starts_with(letter)), "tenant {letter} saw {answer}");
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }

    // A revoked token stops working (after the verification cache expires).
    served.session.catalog().tokens().revoke(&record_b.id).await.unwrap();
    tokio::time::sleep(jammi_server::auth::CACHE_FOR + Duration::from_millis(200)).await;
    let (status, _) = post(&client, &sql, Some(&token_b), people.clone()).await;
    assert_eq!(status, 401);
    let (status, _) = post(&client, &sql, Some(&token_a), people).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timeouts_busy_slots_and_graceful_shutdown() {
    let (session, dir) = session().await;
    let limits = Limits { max_concurrent_queries: 1, query_timeout: Duration::from_millis(1500), queue_timeout: Duration::from_millis(300), ..Limits::default() };
    let served = serve(session, dir, limits).await;
    let client = reqwest::Client::new();
    let sql = format!("{}/v1/sql", served.http);
    // Far more work than the timeout allows: cancelled with a clear error.
    let slow = json!({"sql": "SELECT count(*) FROM range(1, 20000000000) a"});
    let started = Instant::now();
    let (status, answer) = post(&client, &sql, None, slow.clone()).await;
    assert_eq!(status, 504, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("--query-timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // One slot: while a slow query holds it, another waits, then gives up as busy.
    let holder = tokio::spawn({
        let (client, sql, slow) = (client.clone(), sql.clone(), slow.clone());
        async move { post(&client, &sql, None, slow).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, answer) = post(&client, &sql, None, json!({"sql": "SELECT 1"})).await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("busy"), "{answer}");
    assert_eq!(holder.await.unwrap().0, 504);

    served.server.shutdown();
    served.server.wait().await;

    // Shutdown lets the query in flight finish, then stops listening (a server without the
    // tight timeout above, so the query's own speed does not matter).
    let (fresh, dir) = crate::support::session().await;
    let served = serve(fresh, dir, Limits::default()).await;
    let sql = format!("{}/v1/sql", served.http);
    let in_flight = tokio::spawn({
        let (client, sql) = (client.clone(), sql.clone());
        async move { post(&client, &sql, None, json!({"sql": "SELECT count(*) AS n FROM range(1, 30000000) a"})).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    served.server.shutdown();
    let (status, answer) = in_flight.await.unwrap();
    assert_eq!(status, 200, "the query in flight completes: {answer}");
    assert_eq!(answer["rows"][0]["n"], 29_999_999);
    served.server.wait().await;
    assert!(client.post(&sql).body("{}").send().await.is_err(), "no longer listening");
}

/// The offsets (`id:` lines) in server-sent-event text.
fn event_ids(text: &str) -> Vec<i64> {
    text.lines().filter_map(|l| l.strip_prefix("id: ")).map(|id| id.parse().unwrap()).collect()
}

/// A consumer-group member over HTTP that reaches its `limit` hands the events it claimed but
/// did not send back at once: the next member gets them without waiting out the 60 s ack
/// timeout. (A client that disconnects mid-stream hands back what was not yet written to its
/// connection; what sat unread in TCP buffers counts as delivered — see docs/topics.md.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_members_over_sse_hand_over_at_once() {
    let (session, dir) = session().await;
    let served = serve(session, dir, Limits::default()).await;
    let client = reqwest::Client::new();
    let events = format!("{}/v1/topics/work/events", served.http);
    served.session.topics().create(TopicDefinition { name: "work".into(), columns: jammi_db::topic::TopicSpec::parse_schema("n:int64").unwrap(), source_table: None, retention: Default::default() }).await.unwrap();
    let body: Vec<String> = (0..30).map(|n| format!(r#"{{"n": {n}}}"#)).collect();
    assert_eq!(client.post(&events).body(body.join("\n")).send().await.unwrap().status(), 200);
    let member = |limit: &str| format!("{events}?from_beginning=true&group=g&ack_timeout_seconds=60{limit}");

    // The first member claims all 30 and stops at 10: what it sent is acknowledged, the
    // rest handed back.
    let started = Instant::now();
    let first = client.get(member("&limit=10")).send().await.unwrap().text().await.unwrap();
    assert_eq!(event_ids(&first), (0..10).collect::<Vec<_>>());
    let rest = tokio::time::timeout(Duration::from_secs(20), async { client.get(member("&limit=20")).send().await.unwrap().text().await.unwrap() })
        .await
        .expect("handed over well before the 60 s ack timeout");
    assert_eq!(event_ids(&rest), (10..30).collect::<Vec<_>>());
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    served.server.shutdown();
    served.server.wait().await;
}

/// Read server-sent events from `response` until `enough` holds for the text so far.
async fn read_until(response: &mut reqwest::Response, enough: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    while !enough(&text) {
        let chunk = tokio::time::timeout(Duration::from_secs(20), response.chunk()).await.expect("events within 20 s").unwrap();
        text.push_str(std::str::from_utf8(&chunk.expect("the stream ended early")).unwrap());
    }
    text
}

/// With `ack=explicit` nothing counts as done until the client acknowledges it: a member
/// that disconnects after reading (and partly acknowledging) events loses none of them —
/// the next member gets every unacknowledged one at once, including those that sat in the
/// first one's connection. Acknowledgements after a lease moved on report `not_held`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn explicit_acknowledgement_over_sse_loses_nothing_on_disconnect() {
    let (session, dir) = session().await;
    let served = serve(session, dir, Limits::default()).await;
    let client = reqwest::Client::new();
    let events = format!("{}/v1/topics/work/events", served.http);
    let ack_url = format!("{}/v1/topics/work/ack", served.http);
    served.session.topics().create(TopicDefinition { name: "work".into(), columns: jammi_db::topic::TopicSpec::parse_schema("n:int64").unwrap(), source_table: None, retention: Default::default() }).await.unwrap();
    let body: Vec<String> = (0..30).map(|n| format!(r#"{{"n": {n}}}"#)).collect();
    assert_eq!(client.post(&events).body(body.join("\n")).send().await.unwrap().status(), 200);
    let member = |extra: &str| format!("{events}?from_beginning=true&group=g&ack=explicit&ack_timeout_seconds=60{extra}");
    let member_id = |text: &str| -> String {
        let line = text.lines().skip_while(|l| *l != "event: member").nth(1).expect("a member event first");
        let data: serde_json::Value = serde_json::from_str(line.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["group"], "g");
        data["member"].as_str().unwrap().to_string()
    };
    let ack = |member: String, offsets: Vec<i64>| {
        let (client, url) = (client.clone(), ack_url.clone());
        async move {
            let response = client.post(&url).body(json!({"group": "g", "member": member, "offsets": offsets}).to_string()).send().await.unwrap();
            assert_eq!(response.status(), 200);
            let answer: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
            (answer["acknowledged"].as_u64().unwrap(), answer["not_held"].as_u64().unwrap())
        }
    };

    // The first member reads at least ten events, acknowledges 0..5 and goes away.
    let started = Instant::now();
    let mut first = client.get(member("")).send().await.unwrap();
    let text = read_until(&mut first, |t| event_ids(t).len() >= 10).await;
    assert!(text.starts_with("event: member\n"), "{text}");
    let first_member = member_id(&text);
    assert_eq!(ack(first_member.clone(), (0..5).chain([0, 2]).collect()).await, (5, 0), "duplicates count once");
    drop(first);

    // The next member gets exactly the 25 unacknowledged events, well before the timeout.
    let mut second = client.get(member("&limit=25")).send().await.unwrap();
    let text = read_until(&mut second, |t| event_ids(t).len() >= 25).await;
    assert_eq!(event_ids(&text), (5..30).collect::<Vec<_>>());
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    let second_member = member_id(&text);
    // The first member's late acknowledgement no longer counts: the second holds them.
    assert_eq!(ack(first_member, vec![5, 6]).await, (0, 2));
    assert_eq!(ack(second_member.clone(), (5..30).collect()).await, (25, 0));
    drop(second);

    // All acknowledged: a new member receives nothing.
    let mut third = client.get(member("")).send().await.unwrap();
    let text = read_until(&mut third, |t| t.contains("event: member")).await;
    let more = tokio::time::timeout(Duration::from_secs(2), third.chunk()).await;
    assert!(more.is_err() || event_ids(std::str::from_utf8(&more.unwrap().unwrap().unwrap_or_default()).unwrap()).is_empty(), "{text}");

    // Misuse is a clear 400.
    let refused = client.get(format!("{events}?ack=explicit")).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("group"));
    let refused = client.post(&ack_url).body(json!({"group": "g", "member": second_member, "offsets": [1], "extra": 1}).to_string()).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    let refused = client.post(&ack_url).body(json!({"group": "g", "member": second_member, "offsets": vec![1; 10_001]}).to_string()).send().await.unwrap();
    assert!(refused.status().is_client_error(), "{}", refused.status());
    assert!(refused.text().await.unwrap().contains("offsets"));
    let missing = client.post(format!("{}/v1/topics/nope/ack", served.http)).body(json!({"group": "g", "member": second_member, "offsets": [1]}).to_string()).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    served.server.shutdown();
    served.server.wait().await;
}

/// `POST /v1/search` by words and by both: the mode, the fusion fields, provenance columns,
/// and 400s that name the problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn text_and_hybrid_search_over_http() {
    let (session, dir) = session().await;
    docs(&session, dir.path(), 40).await;
    let served = serve(session, dir, Limits::default()).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", served.http);
    // The mode follows what is given (a text alone on a table with a
    // text index: BM25), or is named; fusion options are checked like the SQL ones.
    let (status, answer) = post(&client, &url("/v1/search"), None, json!({"table": "docs", "text": "fr", "k": 3})).await;
    assert_eq!(status, 200, "{answer}");
    let rows = answer["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r["lang"] == "fr" && r["_retrieved_by"] == json!(["text"]) && r["_score"].as_f64().unwrap() > 0.0), "{answer}");
    let (status, answer) = post(&client, &url("/v1/search"), None, json!({"table": "docs", "text": "fr", "vector": [1.3, 0.1, 0.1, 0.1], "k": 6, "candidates": 3, "fusion": "rrf"})).await;
    assert_eq!(status, 200, "{answer}");
    let rows = answer["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6, "{answer}");
    for row in rows {
        let legs: Vec<&str> = row["_retrieved_by"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
        assert_eq!(legs.contains(&"vector"), !row["_vector_rank"].is_null(), "{row}");
        assert_eq!(legs.contains(&"text"), !row["_text_rank"].is_null(), "{row}");
        // Vector-leg rows point along the first axis (even ids are en); text-leg rows are fr.
        assert!(!legs.contains(&"text") || row["lang"] == "fr", "{row}");
    }
    assert!(rows.iter().any(|r| r["_retrieved_by"] == json!(["vector"])) && rows.iter().any(|r| r["_retrieved_by"] == json!(["text"])), "{answer}");
    let (status, answer) = post(&client, &url("/v1/search"), None, json!({"table": "docs", "text": "fr", "vector": [1.3, 0.1, 0.1, 0.1], "mode": "hybrid", "fusion": "weighted", "weights": [1.0, 0.0], "k": 2})).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["rows"].as_array().unwrap().iter().all(|r| r["id"].as_i64().unwrap() % 4 == 0), "the vector leg decides: {answer}");
    for (body, needle) in [
        (json!({"table": "docs", "text": "fr", "mode": "sideways"}), "vector, text or hybrid"),
        (json!({"table": "docs", "text": "fr", "vector": [1.0, 0.0, 0.0, 0.0], "fusion": "magic"}), "rrf or weighted"),
        (json!({"table": "docs", "text": "\"fr"}), "malformed"),
        (json!({"table": "docs", "text": ""}), "empty"),
        (json!({"table": "docs", "k": 3}), "\"text\""),
    ] {
        let (status, answer) = post(&client, &url("/v1/search"), None, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(needle), "{body}: {answer}");
    }

}

/// `POST /v1/search` with `"text"`: the table's embedding model (the real all-MiniLM-L6-v2
/// that scripts/test.sh installs) embeds the query on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn text_search_embeds_the_query_with_the_tables_model() {
    use jammi_db::artifact::ModelDefinition;
    use jammi_db::vector::{EmbedColumn, ImportSpec, NoProgress};
    let model_dir = std::path::PathBuf::from(std::env::var("JAMMI_TEST_MINILM_DIR").expect("JAMMI_TEST_MINILM_DIR: run through scripts/test.sh"));
    let (session, dir) = session().await;
    let root = jammi_db::storage::StorageUrl::parse(&session.config().storage_root()).unwrap();
    let definition = ModelDefinition { name: "minilm".into(), version: "v1".into(), task: "embedding".into(), dimensions: Some(384), metadata: json!({}) };
    session.models().register_files(definition, &model_dir, &root, &session.artifacts(Default::default())).await.unwrap();
    let file = dir.path().join("notes.parquet");
    session
        .sql(&format!(
            "COPY (SELECT column1 AS id, column2 AS body FROM (VALUES (1, 'A man is playing a guitar.'), (2, 'The stock market fell sharply on Tuesday.'))) TO '{}' STORED AS PARQUET",
            file.display()
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut spec = ImportSpec::new("notes", file.display().to_string(), "id", "embedding");
    spec.embed = Some(EmbedColumn { column: "body".into(), model: "minilm".into(), version: "v1".into() });
    session.vectors().import(spec, &NoProgress).await.unwrap();
    docs(&session, dir.path(), 8).await;
    let served = serve(session, dir, Limits::default()).await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/search", served.http);
    let (status, answer) = post(&client, &url, None, json!({"table": "notes", "text": "shares and prices dropped", "k": 1})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rows"][0]["id"], 2, "{answer}");
    // A table without a model searched by meaning, a hybrid search of a table without a
    // text index, neither vector nor text: 400 with the reason.
    let (status, answer) = post(&client, &url, None, json!({"table": "docs", "text": "x", "mode": "vector"})).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("no embedding model"), "{answer}");
    let (status, answer) = post(&client, &url, None, json!({"table": "notes", "text": "x", "vector": [1.0]})).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("no text index"), "{answer}");
    let (status, answer) = post(&client, &url, None, json!({"table": "notes", "k": 1})).await;
    assert_eq!(status, 400, "{answer}");
    // A table with a model and no text index: a text alone is searched by meaning.
    let (status, answer) = post(&client, &url, None, json!({"table": "notes", "text": "shares and prices dropped", "mode": "vector", "k": 1})).await;
    assert_eq!((status, &answer["rows"][0]["id"]), (200, &json!(2)), "{answer}");
}

/// With auditing on, every `/v1/search` answer names its record (`jammi-query-id`), which
/// `GET /v1/audit/{id}` shows and `POST /v1/audit/verify` verifies with the whole chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn searches_are_audited_and_verified_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("audit.keys");
    std::fs::write(&keys, "cd".repeat(32)).unwrap();
    let mut config = jammi_db::Config::embedded(dir.path().join("home"));
    config.audit.enabled = Some(true);
    config.audit.key_file = Some(keys);
    let session = jammi_db::Session::open(config).await.unwrap();
    docs(&session, dir.path(), 20).await;
    let served = serve(session, dir, Limits::default()).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", served.http);
    let mut ids = Vec::new();
    for body in [json!({"table": "docs", "vector": [1.0, 0.1, 0.1, 0.1], "k": 2}), json!({"table": "docs", "text": "fr", "k": 3})] {
        let response = client.post(url("/v1/search")).body(body.to_string()).send().await.unwrap();
        assert_eq!(response.status(), 200);
        ids.push(response.headers().get("jammi-query-id").expect("the audit id of the search").to_str().unwrap().to_string());
    }
    let get_json = |path: String| {
        let client = client.clone();
        async move { serde_json::from_slice::<serde_json::Value>(&client.get(path).send().await.unwrap().bytes().await.unwrap()).unwrap() }
    };
    let shown = get_json(url(&format!("/v1/audit/{}", ids[1]))).await;
    assert_eq!((shown["seq"].as_i64(), shown["record"]["kind"].as_str()), (Some(2), Some("text")), "{shown}");
    assert_eq!(shown["record"]["results"].as_array().unwrap().len(), 3);
    assert_eq!(shown["record"]["prev"], get_json(url(&format!("/v1/audit/{}", ids[0]))).await["signature"]);
    let (status, verified) = post(&client, &url("/v1/audit/verify"), None, json!({"from": 1})).await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!((verified["ok"].as_bool(), verified["chains"][0]["checked"].as_u64()), (Some(true), Some(2)), "{verified}");
    assert_eq!(client.get(url("/v1/audit/no-such-search")).send().await.unwrap().status(), 404);
    let (status, _) = post(&client, &url("/v1/audit/verify"), None, json!({"from": "one"})).await;
    assert_eq!(status, 400);
}

/// Ephemeral sessions through the server: over HTTP a client opens one, runs statements in
/// it with the `jammi-session` header and closes it; over Postgres, `BEGIN EPHEMERAL` makes
/// the connection's session ephemeral and disconnecting ends it. Either way the tables are
/// the session's alone and are gone, with one `closed` event, when it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ephemeral_sessions_end_with_their_client() {
    use sqlx::Connection;
    let (session, dir) = session().await;
    let served = serve(session, dir, Limits::default()).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", served.http);
    let sql_in = |id: Option<String>, sql: &str| {
        let mut request = client.post(url("/v1/sql")).body(json!({"sql": sql}).to_string());
        if let Some(id) = id {
            request = request.header("jammi-session", id);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, serde_json::from_slice::<serde_json::Value>(&response.bytes().await.unwrap()).unwrap_or_default())
        }
    };
    let (status, opened) = post(&client, &url("/v1/sessions"), None, json!({"timeout_ms": 60000})).await;
    assert_eq!(status, 201, "{opened}");
    let id = opened["session"].as_str().unwrap().to_string();
    assert_eq!(opened["timeout_ms"], 60000);
    for sql in ["CREATE TABLE mutable.public.scratch (id BIGINT PRIMARY KEY)", "INSERT INTO mutable.public.scratch VALUES (1), (2)"] {
        let (status, body) = sql_in(Some(id.clone()), sql).await;
        assert_eq!(status, 200, "{sql}: {body}");
    }
    let (_, counted) = sql_in(Some(id.clone()), "SELECT count(*) AS n FROM mutable.public.scratch").await;
    assert_eq!(counted["rows"][0]["n"], 2, "{counted}");
    // Without the header the table is not there.
    let (status, _) = sql_in(None, "SELECT count(*) FROM mutable.public.scratch").await;
    assert_ne!(status, 200);
    // An unknown session is a 404, not a silent fresh session.
    let (status, _) = sql_in(Some("0".repeat(32)), "SELECT 1").await;
    assert_eq!(status, 404);
    let closed = client.delete(url(&format!("/v1/sessions/{id}"))).send().await.unwrap();
    assert_eq!(closed.status(), 200);
    let closed: serde_json::Value = serde_json::from_slice(&closed.bytes().await.unwrap()).unwrap();
    assert_eq!((closed["rows_deleted"].as_i64(), closed["tables"][0]["name"].as_str()), (Some(2), Some("scratch")), "{closed}");
    let (status, _) = sql_in(Some(id.clone()), "SELECT 1").await;
    assert_eq!(status, 404, "a closed session is gone");
    assert_eq!(client.delete(url(&format!("/v1/sessions/{id}"))).send().await.unwrap().status(), 404);

    // Postgres: the connection is the session; a disconnect ends it.
    let pg = format!("postgres://jammi:any@127.0.0.1:{}/jammi", served.pg_port);
    let mut conn = sqlx::PgConnection::connect(&pg).await.unwrap();
    sqlx::raw_sql("BEGIN EPHEMERAL TIMEOUT '10min'").execute(&mut conn).await.unwrap();
    sqlx::raw_sql("CREATE TABLE mutable.public.scratch (id BIGINT PRIMARY KEY)").execute(&mut conn).await.unwrap();
    sqlx::query("INSERT INTO mutable.public.scratch VALUES ($1), ($2), ($3)").bind(1i64).bind(2i64).bind(3i64).execute(&mut conn).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM mutable.public.scratch").fetch_one(&mut conn).await.unwrap();
    assert_eq!(n, 3);
    let mut other = sqlx::PgConnection::connect(&pg).await.unwrap();
    assert!(sqlx::query("SELECT count(*) FROM mutable.public.scratch").fetch_one(&mut other).await.is_err(), "another connection does not see it");
    conn.close().await.unwrap();
    let events = "SELECT event, reason, rows_deleted FROM topics.public.\"jammi.audit.session_lifecycle.v1\" WHERE event <> 'opened' ORDER BY _offset";
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = sqlx::query_as::<_, (String, String, i64)>(events).fetch_all(&mut other).await.unwrap();
        if seen.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(seen, vec![("closed".to_string(), "close".to_string(), 2), ("closed".to_string(), "drop".to_string(), 3)]);
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM information_schema.tables WHERE table_catalog = 'mutable' AND table_schema = 'public'").fetch_one(&mut other).await.unwrap();
    assert_eq!(tables, 0);
}
