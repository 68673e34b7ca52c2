//! The adversarial suite against a running server: two tenants' tokens, every attack of the
//! threat model over HTTP and the Postgres protocol (Flight SQL through the Python ADBC
//! client in the CLI's server test). Each attack is refused with the right status or
//! SQLSTATE, and the victim's data is intact afterwards.

use std::time::{Duration, Instant};

use jammi_db::{Config, Session, TenantId};
use jammi_server::Limits;
use serde_json::json;
use sqlx::Connection;

use crate::support::*;

fn pg_url(port: u16, token: &str) -> String {
    format!("postgres://jammi:{token}@127.0.0.1:{port}/jammi")
}

/// Run `sql` over the Postgres protocol (simple query); the SQLSTATE and message of its
/// error, or `None` when it succeeded.
async fn pg_error(conn: &mut sqlx::PgConnection, sql: &str) -> Option<(String, String)> {
    match sqlx::raw_sql(sql).execute(&mut *conn).await {
        Ok(_) => None,
        Err(e) => {
            let db = e.as_database_error().unwrap_or_else(|| panic!("{sql}: not a server error: {e}"));
            Some((db.code().map(|c| c.to_string()).unwrap_or_default(), db.message().to_string()))
        }
    }
}

struct Attacked {
    served: Served,
    token_a: String,
    token_b: String,
}

async fn two_tenants(config: Option<Config>) -> Attacked {
    two_tenants_with(config, Limits::default()).await
}

async fn two_tenants_with(config: Option<Config>, limits: Limits) -> Attacked {
    let (session, dir) = match config {
        Some(c) => {
            let dir = tempfile::tempdir().unwrap();
            let config = Config { data_dir: dir.path().to_path_buf(), ..c };
            (Session::open(config).await.unwrap(), dir)
        }
        None => session().await,
    };
    let (a, b) = (TenantId::random(), TenantId::random());
    tenant_people(&session, dir.path(), a, b, 10).await;
    docs(&session, dir.path(), 40).await;
    let (_, token_a) = jammi_server::auth::create_token(&session, Some(a), "a").await.unwrap();
    let (_, token_b) = jammi_server::auth::create_token(&session, Some(b), "b").await.unwrap();
    let served = serve(session, dir, limits).await;
    Attacked { served, token_a, token_b }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_cannot_reach_files_settings_or_other_tenants() {
    let t = two_tenants(None).await;
    let data_dir = t.served.session.config().data_dir.clone();
    let stolen = data_dir.join("stolen.csv");
    let client = reqwest::Client::new();
    let sql_url = format!("{}/v1/sql", t.served.http);
    let mut pg_b = sqlx::PgConnection::connect(&pg_url(t.served.pg_port, &t.token_b)).await.unwrap();

    let location_attacks = [
        format!("CREATE EXTERNAL TABLE loot STORED AS PARQUET LOCATION '{}'", data_dir.join("people.parquet").display()),
        format!("CREATE EXTERNAL TABLE cfg STORED AS CSV LOCATION '{}'", data_dir.join("catalog.db").display()),
        format!("COPY (SELECT name FROM files.public.people) TO '{}' STORED AS CSV", stolen.display()),
        format!("SELECT * FROM read_csv('{}')", data_dir.join("catalog.db").display()),
        "SET datafusion.execution.target_partitions = 100000".to_string(),
        "CREATE TABLE mem AS SELECT * FROM files.public.people".to_string(),
    ];
    for sql in &location_attacks {
        let (status, answer) = post(&client, &sql_url, Some(&t.token_b), json!({ "sql": sql })).await;
        assert_eq!(status, 403, "HTTP {sql}: {answer}");
        assert!(answer["error"].as_str().unwrap_or_default().contains("refused"), "{answer}");
        let (code, message) = pg_error(&mut pg_b, sql).await.unwrap_or_else(|| panic!("pg accepted {sql}"));
        assert_eq!(code, "42501", "pg {sql}: {message}");
    }
    // Through a prepared statement (extended protocol) too.
    let prepared = sqlx::query(&location_attacks[2]).execute(&mut pg_b).await.unwrap_err();
    assert_eq!(prepared.as_database_error().and_then(|d| d.code()).as_deref(), Some("42501"));
    assert!(!stolen.exists(), "no attack may have written a file");

    // EXPLAIN names no storage path.
    let (status, answer) = post(&client, &sql_url, Some(&t.token_b), json!({"sql": "EXPLAIN SELECT * FROM files.public.people"})).await;
    assert_eq!(status, 200, "{answer}");
    let text = answer.to_string();
    assert!(!text.contains("people.parquet") && !text.contains(&data_dir.display().to_string()), "{text}");

    // Tenant A's mutable table: invisible to B, who cannot write it, and may have its own.
    let mut pg_a = sqlx::PgConnection::connect(&pg_url(t.served.pg_port, &t.token_a)).await.unwrap();
    assert!(pg_error(&mut pg_a, "CREATE TABLE mutable.public.secrets (id BIGINT PRIMARY KEY, note TEXT)").await.is_none());
    assert!(pg_error(&mut pg_a, "INSERT INTO mutable.public.secrets VALUES (1, 'a''s secret')").await.is_none());
    let listed: i64 = sqlx::query_scalar("SELECT count(*) FROM information_schema.tables WHERE table_name = 'secrets'").fetch_one(&mut pg_b).await.unwrap();
    assert_eq!(listed, 0);
    let (status, answer) = post(&client, &sql_url, Some(&t.token_b), json!({"sql": "SELECT count(*) AS n FROM information_schema.columns WHERE column_name = 'note'"})).await;
    assert_eq!((status, answer["rows"][0]["n"].as_i64()), (200, Some(0)), "{answer}");
    for sql in ["INSERT INTO mutable.public.secrets VALUES (2, 'b was here')", "DELETE FROM mutable.public.secrets", "DROP TABLE mutable.public.secrets", "SELECT * FROM mutable.public.secrets"] {
        let (_, message) = pg_error(&mut pg_b, sql).await.unwrap_or_else(|| panic!("B ran {sql}"));
        assert!(message.contains("secrets"), "{sql}: {message}");
    }
    // Typed: to B the table does not exist — SQLSTATE 42P01 on the wire, 404 over HTTP.
    let (code, _) = pg_error(&mut pg_b, "INSERT INTO mutable.public.secrets VALUES (2, 'b')").await.unwrap();
    assert_eq!(code, "42P01");
    let (status, answer) = post(&client, &sql_url, Some(&t.token_b), json!({"sql": "INSERT INTO mutable.public.secrets VALUES (2, 'b')"})).await;
    assert_eq!(status, 404, "{answer}");
    assert!(pg_error(&mut pg_b, "CREATE TABLE mutable.public.secrets (id BIGINT PRIMARY KEY)").await.is_none(), "B may use the same name");
    let a_rows: Vec<String> = sqlx::query_scalar("SELECT note FROM mutable.public.secrets").fetch_all(&mut pg_a).await.unwrap();
    assert_eq!(a_rows, vec!["a's secret".to_string()], "A's data is intact");

    // Views, CTEs, subqueries and joins stay inside the tenant's rows.
    assert!(pg_error(&mut pg_b, "CREATE VIEW mine AS SELECT p.name FROM files.public.people p JOIN (SELECT id FROM files.public.people) q ON p.id = q.id").await.is_none());
    let names: Vec<String> = sqlx::query_scalar("WITH v AS (SELECT name FROM mine) SELECT name FROM v WHERE name IN (SELECT name FROM files.public.people)").fetch_all(&mut pg_b).await.unwrap();
    assert_eq!(names.len(), 10);
    assert!(names.iter().all(|n| n.starts_with('b')), "{names:?}");
    assert!(pg_error(&mut pg_a, "SELECT * FROM mine").await.is_some(), "A cannot see B's view");

    // Absurd search arguments are clean errors, not overflows or huge allocations.
    let absurd = "SELECT * FROM vector_search('docs', '[0.1, 0.2, 0.3, 0.4]', 9223372036854775807)";
    let (status, answer) = post(&client, &sql_url, Some(&t.token_b), json!({ "sql": absurd })).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap_or_default().contains("'k'"), "{answer}");
    let (code, _) = pg_error(&mut pg_b, "SELECT * FROM vector_search('docs', '[0.1, 0.2, 0.3, 0.4]', 3, NULL, 9223372036854775807)").await.unwrap();
    assert_eq!(code, "22023");
    let (status, answer) = post(&client, &format!("{}/v1/search", t.served.http), Some(&t.token_b), json!({"table": "docs", "vector": [0.1, 0.2, 0.3, 0.4], "k": 1_000_000_000u64})).await;
    assert_eq!(status, 400, "{answer}");
    // The server still answers.
    let one: i64 = sqlx::query_scalar("SELECT 1::BIGINT").fetch_one(&mut pg_b).await.unwrap();
    assert_eq!(one, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_transaction_cannot_stall_other_tenants() {
    let mut config = Config::embedded("unused");
    config.security.idle_in_transaction_timeout_ms = 500;
    let t = two_tenants(Some(config)).await;
    t.served.session.sql("CREATE TABLE mutable.public.shared_log (id BIGINT PRIMARY KEY, who TEXT)").await.unwrap().collect().await.unwrap();
    let mut pg_a = sqlx::PgConnection::connect(&pg_url(t.served.pg_port, &t.token_a)).await.unwrap();
    let mut pg_b = sqlx::PgConnection::connect(&pg_url(t.served.pg_port, &t.token_b)).await.unwrap();
    // A opens a transaction, writes, and goes quiet.
    assert!(pg_error(&mut pg_a, "BEGIN").await.is_none());
    assert!(pg_error(&mut pg_a, "INSERT INTO mutable.public.shared_log VALUES (1, 'a')").await.is_none());
    // B's write gets through once A's transaction has idled past the timeout.
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), sqlx::raw_sql("INSERT INTO mutable.public.shared_log VALUES (2, 'b')").execute(&mut pg_b))
        .await
        .expect("B must not wait on A's idle transaction for long")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // A hears why, as PostgreSQL says it, and keeps nothing.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (code, message) = pg_error(&mut pg_a, "INSERT INTO mutable.public.shared_log VALUES (3, 'a')").await.expect("refused");
    assert_eq!(code, "25P03", "{message}");
    assert!(pg_error(&mut pg_a, "ROLLBACK").await.is_none());
    let rows: Vec<i64> = sqlx::query_scalar("SELECT id FROM mutable.public.shared_log ORDER BY id").fetch_all(&mut pg_a).await.unwrap();
    assert_eq!(rows, Vec::<i64>::new(), "A sees its own rows and shared ones; B's row is B's and A's insert was rolled back");
    let admin = t.served.session.admin(|s| async move { s.sql("SELECT id FROM mutable.public.shared_log").await.unwrap().collect().await.unwrap() }).await;
    assert_eq!(admin.iter().map(|b| b.num_rows()).sum::<usize>(), 1, "only B's row exists");
    // A client may shorten its own timeout, never lengthen it.
    let (code, _) = pg_error(&mut pg_a, "SET idle_in_transaction_timeout = '1h'").await.expect("refused");
    assert_eq!(code, "42501");
    assert!(pg_error(&mut pg_a, "SET idle_in_transaction_timeout = 100").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disconnect_releases_the_transactions_locks_at_once() {
    // The default idle timeout (10 s) is far longer than this test waits: the release must
    // come from the disconnect itself.
    let t = two_tenants(None).await;
    t.served.session.sql("CREATE TABLE mutable.public.shared_log (id BIGINT PRIMARY KEY)").await.unwrap().collect().await.unwrap();
    let mut pg_a = sqlx::PgConnection::connect(&pg_url(t.served.pg_port, &t.token_a)).await.unwrap();
    assert!(pg_error(&mut pg_a, "BEGIN").await.is_none());
    assert!(pg_error(&mut pg_a, "INSERT INTO mutable.public.shared_log VALUES (1)").await.is_none());
    drop(pg_a);
    let mut pg_b = sqlx::PgConnection::connect(&pg_url(t.served.pg_port, &t.token_b)).await.unwrap();
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), sqlx::raw_sql("INSERT INTO mutable.public.shared_log VALUES (2)").execute(&mut pg_b))
        .await
        .expect("a disconnected client's transaction must not hold the writer")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let ids = t.served.session.admin(|s| async move { s.sql("SELECT id FROM mutable.public.shared_log").await.unwrap().collect().await.unwrap() }).await;
    assert_eq!(ids.iter().map(|b| b.num_rows()).sum::<usize>(), 1, "the disconnected transaction's row was rolled back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_statement_past_the_timeout_writes_nothing_and_releases_its_locks() {
    let limits = Limits { query_timeout: Duration::from_millis(1500), ..Limits::default() };
    let t = two_tenants_with(None, limits).await;
    t.served.session.sql("CREATE TABLE mutable.public.shared_log (id BIGINT PRIMARY KEY, who TEXT)").await.unwrap().collect().await.unwrap();
    let mut pg_a = sqlx::PgConnection::connect(&pg_url(t.served.pg_port, &t.token_a)).await.unwrap();
    let mut pg_b = sqlx::PgConnection::connect(&pg_url(t.served.pg_port, &t.token_b)).await.unwrap();
    // A's write reads far more rows than the timeout allows; B writes while it runs.
    let slow = pg_error(&mut pg_a, "INSERT INTO mutable.public.shared_log SELECT value, 'a' FROM range(1000, 20000000000)");
    let other = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(6), sqlx::raw_sql("INSERT INTO mutable.public.shared_log VALUES (2, 'b')").execute(&mut pg_b))
            .await
            .expect("B must not wait past A's statement timeout")
            .unwrap();
        started.elapsed()
    };
    let (outcome, waited) = tokio::join!(slow, other);
    assert!(waited < Duration::from_secs(6), "{waited:?}");
    let (code, message) = outcome.expect("the slow statement must be cancelled");
    assert_eq!(code, "57014", "{message}");
    // Nothing of the cancelled statement was written, and A's connection works on.
    let all = t.served.session.admin(|s| async move { s.sql("SELECT id FROM mutable.public.shared_log").await.unwrap().collect().await.unwrap() }).await;
    assert_eq!(all.iter().map(|b| b.num_rows()).sum::<usize>(), 1, "only B's row exists");
    assert!(pg_error(&mut pg_a, "INSERT INTO mutable.public.shared_log VALUES (1, 'a')").await.is_none());
}

/// Server-sent events of `path` (with `limit` so the stream ends): each event's JSON.
async fn sse(client: &reqwest::Client, url: &str, token: &str) -> Vec<serde_json::Value> {
    let response = client.get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(10), response.text()).await.expect("the stream ends at its limit").unwrap();
    text.lines().filter_map(|l| l.strip_prefix("data: ")).map(|d| serde_json::from_str(d).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn topics_and_groups_keep_tenants_apart() {
    let t = two_tenants(None).await;
    let schema = jammi_db::topic::TopicSpec::parse_schema("who:string,n:int64").unwrap();
    t.served
        .session
        .topics()
        .create(jammi_db::topic::TopicDefinition { name: "shared_ev".into(), columns: schema, source_table: None, retention: Default::default() })
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let events = format!("{}/v1/topics/shared_ev/events", t.served.http);
    for (token, who) in [(&t.token_a, "a"), (&t.token_b, "b"), (&t.token_a, "a")] {
        let published = client.post(&events).bearer_auth(token).body(format!(r#"{{"who": "{who}", "n": 1}}"#)).send().await.unwrap();
        assert_eq!(published.status(), 200);
    }
    // Each tenant replays only its own events, with or without a filter that names the other.
    let seen_by_b = sse(&client, &format!("{events}?from_beginning=true&limit=1"), &t.token_b).await;
    assert_eq!(seen_by_b.iter().map(|e| e["who"].as_str().unwrap()).collect::<Vec<_>>(), ["b"]);
    let mut filtered = client.get(format!("{events}?from_beginning=true&limit=1&filter=who%20%3D%20'a'")).bearer_auth(&t.token_b).send().await.unwrap();
    assert_eq!(filtered.status(), 200);
    // Whatever arrives within a second (nothing should: the stream waits for B's events).
    let mut text = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Ok(Some(chunk)) = filtered.chunk().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(!text.contains("data:"), "B read A's events through a filter: {text}");
    // A consumer group of the same name is a different group per tenant: B's members never
    // take (and so never swallow) A's events.
    let group_b = sse(&client, &format!("{events}?from_beginning=true&group=workers&limit=1"), &t.token_b).await;
    assert_eq!(group_b.iter().map(|e| e["who"].as_str().unwrap()).collect::<Vec<_>>(), ["b"]);
    let group_a = sse(&client, &format!("{events}?from_beginning=true&group=workers&limit=2"), &t.token_a).await;
    assert_eq!(group_a.iter().map(|e| e["who"].as_str().unwrap()).collect::<Vec<_>>(), ["a", "a"]);
    // A's events are intact for A.
    let all_a = sse(&client, &format!("{events}?from_beginning=true&limit=2"), &t.token_a).await;
    assert_eq!(all_a.len(), 2);
}

/// A token that prepares Flight SQL statements and never closes them is stopped at
/// `MAX_PREPARED_STATEMENTS`; the bound is its own (another tenant still prepares), and
/// closing one makes room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_cannot_pile_up_prepared_statements() {
    use arrow_flight::sql::client::FlightSqlServiceClient;
    use jammi_server::limits::MAX_PREPARED_STATEMENTS;

    let t = two_tenants(None).await;
    let flight = t.served.server.addresses().flight.unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{flight}")).unwrap().connect().await.unwrap();
    let client = |token: &str| {
        let mut client = FlightSqlServiceClient::new(channel.clone());
        client.set_token(token.to_string());
        client
    };
    let (mut a, mut b) = (client(&t.token_a), client(&t.token_b));
    let mut open = Vec::new();
    for _ in 0..MAX_PREPARED_STATEMENTS {
        open.push(a.prepare("SELECT name FROM files.public.people".into(), None).await.unwrap());
    }
    let refused = a.prepare("SELECT 1".into(), None).await.unwrap_err().to_string();
    assert!(refused.contains("resource has been exhausted") && refused.contains("prepared statements are open for this token"), "{refused}");
    b.prepare("SELECT 1".into(), None).await.expect("another tenant's token still prepares");
    open.pop().unwrap().close().await.unwrap();
    let mut again = a.prepare("SELECT name FROM files.public.people".into(), None).await.expect("a closed statement makes room");
    let info = again.execute().await.unwrap();
    assert!(!info.endpoint.is_empty(), "the new statement runs");
}
