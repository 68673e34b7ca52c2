//! Vector tables that follow a mutable table: backfill at creation, changes applied by
//! workers (inserts, updates, deletes, key changes), lag reported, leases taken over after
//! a crash with nothing applied twice, and re-embedding with a new model behind one switch.
//! With the real all-MiniLM-L6-v2 (`JAMMI_TEST_MINILM_DIR`).

use std::time::Duration;

use jammi_db::vector::follow::{FollowSpec, WorkerOptions};
use jammi_db::vector::{NoProgress, SearchRequest};
use jammi_db::{Config, Error, Session};

use crate::embed::{ids, register_minilm, register_minilm_with};
use crate::support::*;

/// A session on the SQLite catalog, or on a fresh PostgreSQL catalog.
async fn session_on(pg: bool) -> (Session, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded(dir.path().join("home"));
    if pg {
        config.catalog.url = Some(fresh_pg_database().await);
    }
    (Session::open(config).await.expect("open session"), dir)
}

async fn exec(session: &Session, sql: &str) {
    session.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).collect().await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

const TEXTS: [&str; 4] = [
    "A fast web server and reverse proxy for HTTP traffic.",
    "Tools for reading and writing compressed zip archives.",
    "A library of fonts with Cyrillic and Greek glyphs.",
    "Utilities to manage the system clock and time zones.",
];

async fn top(session: &Session, table: &str, text: &str) -> Vec<i64> {
    let hit = session.vectors().search(table, &SearchRequest::text(text, 2)).await.unwrap_or_else(|e| panic!("search {text}: {e}"));
    ids(std::slice::from_ref(&hit.batch))
}

async fn rows_of(session: &Session, table: &str) -> u64 {
    session.vectors().list().await.unwrap().into_iter().find(|t| t.name == table).map(|t| t.rows).unwrap()
}

/// Work until no table has work left; returns the reports.
async fn drain(session: &Session) -> Vec<jammi_db::vector::follow::WorkReport> {
    let options = WorkerOptions { worker: "test-worker".into(), ..WorkerOptions::default() };
    let mut reports = Vec::new();
    while let Some(report) = session.vectors().work(&options).await.unwrap() {
        assert_eq!(report.error, None, "{report:?}");
        reports.push(report);
    }
    reports
}

async fn docs_following(session: &Session) {
    register_minilm(session, "v1").await;
    exec(session, "CREATE TABLE mutable.public.docs (id BIGINT PRIMARY KEY, body TEXT, lang TEXT)").await;
    for (i, text) in TEXTS.iter().take(3).enumerate() {
        exec(session, &format!("INSERT INTO mutable.public.docs VALUES ({}, '{text}', 'en')", i + 1)).await;
    }
    let info = session.vectors().follow(FollowSpec::new("docs_vec", "mutable.public.docs", "body", "minilm", "v1"), &NoProgress).await.unwrap();
    assert_eq!(info.rows, 3, "the rows already in the source are embedded at creation");
    assert_eq!(info.model.as_deref(), Some("minilm:v1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vector_table_follows_its_source_on_sqlite() {
    follows_inserts_updates_and_deletes(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vector_table_follows_its_source_on_postgres() {
    follows_inserts_updates_and_deletes(true).await
}

async fn follows_inserts_updates_and_deletes(pg: bool) {
    let (session, _dir) = session_on(pg).await;
    docs_following(&session).await;
    assert_eq!(top(&session, "docs_vec", "zip compression tool").await[0], 2);
    let status = session.vectors().status("docs_vec").await.unwrap();
    assert!(status.backfill_done && status.pending == 0, "{status:?}");
    assert_eq!(status.source.as_deref(), Some("mutable.public.docs"));

    // A write returns without waiting for the model; the lag shows until a worker runs.
    exec(&session, &format!("INSERT INTO mutable.public.docs VALUES (4, '{}', 'en')", TEXTS[3])).await;
    let status = session.vectors().status("docs_vec").await.unwrap();
    assert_eq!((status.source_offset - status.embedded_offset, status.pending), (1, 1), "{status:?}");
    // The same in SQL, through a restricted (server) handle too.
    let server = session.with_tenant(None).restricted();
    assert_eq!(scalar(&server, "SELECT pending FROM vector_status('docs_vec')").await, "1");
    assert_eq!(scalar(&session, "SELECT source FROM vector_status('docs_vec')").await, "mutable.public.docs");
    assert_eq!(rows_of(&session, "docs_vec").await, 3);
    let reports = drain(&session).await;
    assert_eq!(reports.iter().map(|r| (r.embedded, r.changes)).collect::<Vec<_>>(), vec![(1, 1)]);
    assert_eq!(top(&session, "docs_vec", "set the clock and timezone").await[0], 4);
    // The payload travels with the vector, and SQL sees it.
    assert_eq!(scalar(&session, "SELECT lang FROM vectors.public.docs_vec WHERE id = 4").await, "en");

    // An update re-embeds the row (one row, not two); a delete removes it; a row changed
    // twice before the worker runs is embedded once, as it is now.
    exec(&session, "UPDATE mutable.public.docs SET body = 'Draw charts and plots of scientific data.' WHERE id = 1").await;
    exec(&session, "DELETE FROM mutable.public.docs WHERE id = 3").await;
    exec(&session, "UPDATE mutable.public.docs SET lang = 'de' WHERE id = 2").await;
    exec(&session, "UPDATE mutable.public.docs SET lang = 'fr' WHERE id = 2").await;
    let reports = drain(&session).await;
    assert_eq!(reports.iter().map(|r| r.changes).sum::<u64>(), 4);
    assert_eq!(reports.iter().map(|r| r.embedded).sum::<u64>(), 2, "rows 1 and 2, once each");
    assert_eq!(rows_of(&session, "docs_vec").await, 3);
    assert_eq!(top(&session, "docs_vec", "plotting scientific charts").await[0], 1);
    assert!(!top(&session, "docs_vec", "fonts with Greek glyphs").await.contains(&3), "a deleted row is not found");
    assert_eq!(scalar(&session, "SELECT lang FROM vectors.public.docs_vec WHERE id = 2").await, "fr");

    // A key that changes moves the vector to the new id.
    exec(&session, "UPDATE mutable.public.docs SET id = 40 WHERE id = 4").await;
    drain(&session).await;
    assert_eq!(top(&session, "docs_vec", "set the clock and timezone").await[0], 40);
    assert_eq!(rows_of(&session, "docs_vec").await, 3);
    let status = session.vectors().status("docs_vec").await.unwrap();
    assert_eq!((status.pending, status.lag_ms, status.last_error.as_deref()), (0, 0, None), "{status:?}");

    // Its rows come from the source only.
    let refused = session.vectors().delete_ids("docs_vec", &["1".into()]).await.unwrap_err().to_string();
    assert!(refused.contains("follows mutable.public.docs"), "{refused}");
    let refused = sql_error(&session, "DELETE FROM vectors.public.docs_vec WHERE id = 1").await;
    assert!(refused.contains("follows mutable.public.docs"), "{refused}");

    // Dropping the vector table stops the logging; the source keeps working.
    session.vectors().drop("docs_vec").await.unwrap();
    exec(&session, "INSERT INTO mutable.public.docs VALUES (5, 'more', 'en')").await;
    assert!(drain(&session).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_workers_batch_is_finished_by_another_exactly_once() {
    let (session, _dir) = session_on(true).await;
    docs_following(&session).await;
    let table = session.catalog().vector_tables().get_visible(session.scope(), "docs_vec").await.unwrap().unwrap();
    exec(&session, &format!("INSERT INTO mutable.public.docs VALUES (4, '{}', 'en')", TEXTS[3])).await;

    // A worker claims the table and dies without a word.
    let follows = session.catalog().follows();
    // 2 s: long enough that a loaded machine still reads the status before it expires.
    let claimed = std::time::Instant::now();
    assert!(follows.claim(&table.id, "doomed", "doomed-token", 2000).await.unwrap());
    assert_eq!(session.vectors().status("docs_vec").await.unwrap().worker.as_deref(), Some("doomed"));
    let options = WorkerOptions { worker: "survivor".into(), ..WorkerOptions::default() };
    assert_eq!(session.vectors().work(&options).await.unwrap(), None, "the lease is held");
    tokio::time::sleep(Duration::from_millis(2100).saturating_sub(claimed.elapsed())).await;
    let report = session.vectors().work(&options).await.unwrap().expect("the expired lease is taken over");
    assert_eq!((report.embedded, report.changes, report.caught_up), (1, 1, true), "{report:?}");
    assert_eq!(top(&session, "docs_vec", "set the clock and timezone").await[0], 4);

    // The dead worker wakes up and tries to commit its batch: refused, nothing applied twice.
    let mut stale = jammi_db::catalog::FollowProgress { table_id: table.id.clone(), token: "doomed-token".into(), ..Default::default() };
    stale.embedded_offset = Some(0);
    assert!(matches!(follows.commit(&stale).await, Err(Error::LeaseLost { .. })));
    let status = session.vectors().status("docs_vec").await.unwrap();
    assert_eq!((status.embedded_offset, status.pending, rows_of(&session, "docs_vec").await), (1, 0, 4), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_model_re_embeds_in_the_background_behind_one_switch() {
    let (session, _dir) = temp_session().await;
    docs_following(&session).await;
    // Another version: CLS pooling makes other vectors from the same files.
    register_minilm_with(&session, "v2", serde_json::json!({"pooling": "cls"})).await;
    let before = session.vectors().search("docs_vec", &SearchRequest::text(TEXTS[0], 1)).await.unwrap();

    let status = session.vectors().set_model("docs_vec", "minilm", "v2", false, &NoProgress).await.unwrap();
    assert_eq!((status.model.as_str(), status.reembedding.as_deref()), ("minilm:v1", Some("minilm:v2")));
    // Until a worker finishes, searches answer from the old vectors with the old model.
    let meanwhile = session.vectors().search("docs_vec", &SearchRequest::text(TEXTS[0], 1)).await.unwrap();
    assert_eq!(format!("{:?}", meanwhile.batch.column_by_name("_distance")), format!("{:?}", before.batch.column_by_name("_distance")));
    exec(&session, &format!("INSERT INTO mutable.public.docs VALUES (4, '{}', 'en')", TEXTS[3])).await;

    drain(&session).await;
    let status = session.vectors().status("docs_vec").await.unwrap();
    assert_eq!((status.model.as_str(), status.reembedding.as_deref(), status.pending), ("minilm:v2", None, 0), "{status:?}");
    assert_eq!(session.vectors().list().await.unwrap()[0].model.as_deref(), Some("minilm:v2"));
    // Every row, the one inserted meanwhile too, is findable by its own text with the new model.
    for (i, text) in TEXTS.iter().enumerate() {
        let hit = session.vectors().search("docs_vec", &SearchRequest::text(*text, 1)).await.unwrap();
        assert_eq!(ids(std::slice::from_ref(&hit.batch)), vec![i as i64 + 1]);
        let distance = hit.batch.column_by_name("_distance").unwrap();
        let distance = jammi_db::datafusion::arrow::array::AsArray::as_primitive::<jammi_db::datafusion::arrow::datatypes::Float32Type>(distance).value(0);
        assert!(distance < 1e-4, "row {} is at distance {distance} from its own text", i + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_that_cannot_work_is_refused_and_creates_nothing() {
    let (session, _dir) = temp_session().await;
    register_minilm(&session, "v1").await;
    exec(&session, "CREATE TABLE mutable.public.docs (id BIGINT PRIMARY KEY, body TEXT, n INT)").await;
    exec(&session, "CREATE TABLE mutable.public.pairs (a BIGINT, b BIGINT, body TEXT, PRIMARY KEY (a, b))").await;
    let attempt = |source: &str, column: &str, model: &str| FollowSpec::new("v", source, column, model, "v1");
    let cases = [
        (attempt("docs", "n", "minilm"), "not text"),
        (attempt("docs", "title", "minilm"), "no column 'title'"),
        (attempt("pairs", "body", "minilm"), "one-column key"),
        (attempt("nothere", "body", "minilm"), "nothere"),
        (attempt("docs", "body", "nomodel"), "nomodel"),
    ];
    for (spec, expected) in cases {
        let e = session.vectors().follow(spec, &NoProgress).await.unwrap_err().to_string();
        assert!(e.contains(expected), "{expected}: {e}");
    }
    assert!(session.vectors().list().await.unwrap().is_empty());
    // A table of imported vectors has no lag to report and no text to re-embed.
    let status = session.vectors().status("v").await.unwrap_err();
    assert!(matches!(status, Error::Unknown { .. }), "{status}");
}

/// A minimal OpenAI-compatible `/v1/embeddings` endpoint on loopback that answers with the
/// real model's vectors (computed by `session`), refuses requests without the bearer key,
/// answers its first request with 429, and answers every request to `/fail` with 500.
/// Returns its base URL and the requests it saw (path, authorization, inputs).
async fn embeddings_endpoint(session: Session, key: &'static str) -> (String, std::sync::Arc<std::sync::Mutex<Vec<(String, String, usize)>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let (session, log) = (session.clone(), std::sync::Arc::clone(&log));
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let (head, body) = loop {
                    let n = socket.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let length: usize = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())).unwrap_or(0);
                        while buf.len() < end + 4 + length {
                            let n = socket.read(&mut chunk).await.unwrap();
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        break (head, buf[end + 4..end + 4 + length].to_vec());
                    }
                };
                let path = head.split_whitespace().nth(1).unwrap_or_default().to_string();
                let auth = head.lines().find_map(|l| l.to_ascii_lowercase().starts_with("authorization:").then(|| l[14..].trim().to_string())).unwrap_or_default();
                let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let texts: Vec<String> = request["input"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
                let first = {
                    let mut log = log.lock().unwrap();
                    log.push((path.clone(), auth.clone(), texts.len()));
                    log.len() == 1
                };
                let (status, extra, answer) = if auth != format!("Bearer {key}") {
                    ("401 Unauthorized", "", r#"{"error":"bad key"}"#.to_string())
                } else if path == "/fail" {
                    ("500 Internal Server Error", "", r#"{"error":"model crashed"}"#.to_string())
                } else if first {
                    ("429 Too Many Requests", "Retry-After: 0\r\n", r#"{"error":"slow down"}"#.to_string())
                } else {
                    let vectors = session.embeddings().embed("minilm", "v1", texts).await.unwrap();
                    let data: Vec<serde_json::Value> = vectors.into_iter().enumerate().map(|(i, v)| serde_json::json!({"index": i, "embedding": v})).collect();
                    ("200 OK", "", serde_json::json!({"data": data}).to_string())
                };
                let response = format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{answer}", answer.len());
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    (base, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_served_over_http_embeds_with_batches_retries_and_a_hidden_key() {
    const KEY: &str = "sk-never-printed-4711";
    std::env::set_var("JAMMI_EMBEDDING_KEY_FOLLOW_TEST", KEY);
    let (session, _dir) = temp_session().await;
    register_minilm(&session, "v1").await;
    let (base, seen) = embeddings_endpoint(session.clone(), KEY).await;
    let remote = |name: &str, path: &str, extra: serde_json::Value| {
        let mut metadata = serde_json::json!({"backend": "http", "url": format!("{base}{path}"), "model": "mini", "api_key_env": "JAMMI_EMBEDDING_KEY_FOLLOW_TEST", "batch_size": 2});
        metadata.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        jammi_db::artifact::ModelDefinition { name: name.into(), version: "v1".into(), task: "embedding".into(), dimensions: Some(384), metadata }
    };
    session.models().register(remote("remote", "/v1/embeddings", serde_json::json!({}))).await.unwrap();

    exec(&session, "CREATE TABLE mutable.public.docs (id BIGINT PRIMARY KEY, body TEXT, lang TEXT)").await;
    for (i, text) in TEXTS.iter().take(3).enumerate() {
        exec(&session, &format!("INSERT INTO mutable.public.docs VALUES ({}, '{text}', 'en')", i + 1)).await;
    }
    let info = session.vectors().follow(FollowSpec::new("docs_vec", "docs", "body", "remote", "v1"), &NoProgress).await.unwrap();
    assert_eq!((info.rows, info.model.as_deref()), (3, Some("remote:v1")));
    // The query is embedded by the endpoint too, and the vectors are the real model's.
    assert_eq!(top(&session, "docs_vec", "zip compression tool").await[0], 2);
    {
        let seen = seen.lock().unwrap();
        // 3 rows in batches of 2 (the first answered 429 and retried), then the query.
        assert_eq!(seen.iter().map(|s| s.2).collect::<Vec<_>>(), vec![2, 2, 1, 1], "{seen:?}");
        assert!(seen.iter().all(|s| s.1 == format!("Bearer {KEY}")), "{seen:?}");
    }

    // An endpoint that fails: the error names the endpoint and the status, never the key;
    // the table exists, records the failure and keeps its vectors.
    session.models().register(remote("broken", "/fail", serde_json::json!({"retries": 1}))).await.unwrap();
    let failed = session.vectors().follow(FollowSpec::new("broken_vec", "docs", "body", "broken", "v1"), &NoProgress).await.unwrap_err().to_string();
    assert!(failed.contains("/fail") && failed.contains("500") && !failed.contains(KEY), "{failed}");
    let status = session.vectors().status("broken_vec").await.unwrap();
    assert_eq!((status.rows, status.failures, status.backfill_done), (0, 1, false), "{status:?}");
    assert!(status.last_error.as_deref().is_some_and(|e| e.contains("500") && !e.contains(KEY)), "{status:?}");
    assert!(!format!("{:?}", session.embeddings().model("remote", "v1").await.unwrap()).contains(KEY));

    // Only variables meant for keys, and only the operator, may point the engine at one.
    let refused = session.models().register(remote("sneaky", "/v1/embeddings", serde_json::json!({"api_key_env": "AWS_SECRET_ACCESS_KEY"}))).await.unwrap_err().to_string();
    assert!(refused.contains("JAMMI_EMBEDDING_KEY_"), "{refused}");
    let tenant = session.with_tenant(Some(jammi_db::TenantId::random()));
    let refused = tenant.models().register(remote("mine", "/v1/embeddings", serde_json::json!({}))).await.unwrap_err();
    assert!(matches!(refused, Error::PermissionDenied { .. }), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_following_table_sees_only_its_own_source_and_workers() {
    let (session, _dir) = temp_session().await;
    register_minilm(&session, "v1").await;
    let (a, b) = (session.with_tenant(Some(jammi_db::TenantId::random())), session.with_tenant(Some(jammi_db::TenantId::random())));
    for (tenant, text) in [(&a, TEXTS[0]), (&b, TEXTS[1])] {
        exec(tenant, "CREATE TABLE mutable.public.docs (id BIGINT PRIMARY KEY, body TEXT)").await;
        exec(tenant, &format!("INSERT INTO mutable.public.docs VALUES (1, '{text}')")).await;
    }
    let info = a.vectors().follow(FollowSpec::new("docs_vec", "docs", "body", "minilm", "v1"), &NoProgress).await.unwrap();
    assert_eq!(info.rows, 1);
    // B's table of the same name is another table: its writes are not A's changes.
    exec(&b, &format!("INSERT INTO mutable.public.docs VALUES (2, '{}')", TEXTS[2])).await;
    assert_eq!(a.vectors().status("docs_vec").await.unwrap().pending, 0);
    assert!(matches!(b.vectors().status("docs_vec").await, Err(Error::Unknown { .. })));
    assert!(sql_error(&b, "SELECT * FROM vector_status('docs_vec')").await.contains("docs_vec"));
    // A's pending work is not B's to do (B's worker would read A's rows); A's worker does it.
    exec(&a, &format!("INSERT INTO mutable.public.docs VALUES (2, '{}')", TEXTS[3])).await;
    let options = WorkerOptions::default();
    assert_eq!(b.vectors().work(&options).await.unwrap(), None);
    assert_eq!(a.vectors().work(&options).await.unwrap().map(|r| r.embedded), Some(1));
    let hit = a.vectors().search("docs_vec", &SearchRequest::text("set the clock and timezone", 1)).await.unwrap();
    assert_eq!(ids(std::slice::from_ref(&hit.batch)), vec![2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_following_table_is_created_in_sql_too() {
    let (session, _dir) = temp_session().await;
    register_minilm(&session, "v1").await;
    exec(&session, "CREATE TABLE mutable.public.docs (id BIGINT PRIMARY KEY, body TEXT)").await;
    exec(&session, &format!("INSERT INTO mutable.public.docs VALUES (1, '{}'), (2, '{}')", TEXTS[0], TEXTS[1])).await;
    // A restricted (server) handle may do it: it names no location.
    let server = session.with_tenant(None).restricted();
    exec(&server, "CREATE TABLE vectors.public.docs_vec WITH (follows = 'mutable.public.docs', embed = 'body', model = 'minilm:v1', precision = 'f16', m = 8)").await;
    let info = session.vectors().list().await.unwrap().into_iter().find(|t| t.name == "docs_vec").unwrap();
    assert_eq!((info.rows, info.precision.to_string(), info.model.as_deref()), (2, "f16".to_string(), Some("minilm:v1")));
    assert_eq!(scalar(&session, "SELECT id FROM vector_search('docs_vec', 'zip compression tool', 1)").await, "2");
    // With a text index: kept current by the same workers, searched by words and by both.
    exec(&server, "CREATE TABLE vectors.public.docs_text WITH (follows = 'mutable.public.docs', embed = 'body', model = 'minilm:v1', text_columns = 'body')").await;
    assert_eq!(scalar(&session, "SELECT id FROM text_search('docs_text', 'archives', 5)").await, "2");
    assert_eq!(scalar(&session, "SELECT id FROM hybrid_search('docs_text', 'proxy', NULL, 1)").await, "1");

    for (sql, expected) in [
        ("CREATE TABLE vectors.public.v2 WITH (follows = 'mutable.public.docs', embed = 'body')", "needs model"),
        ("CREATE TABLE vectors.public.v2 WITH (follows = 'mutable.public.docs', id_column = 'id', embed = 'body', model = 'minilm:v1')", "id_column does not apply"),
        ("CREATE TABLE vectors.public.v2 WITH (follows = 'mutable.public.docs')", "embeds a text column"),
        ("CREATE TABLE vectors.public.v2 WITH (follows = 'mutable.public.docs', embed = 'body', model = 'minilm')", "NAME:VERSION"),
        ("CREATE TABLE vectors.public.v2 WITH (follows = 'mutable.public.docs', embed = 'body', model = 'minilm:v1', colour = 'red')", "unknown option 'colour'"),
        ("CREATE TABLE vectors.public.v2 (id BIGINT) WITH (follows = 'mutable.public.docs', embed = 'body', model = 'minilm:v1')", "columns come from"),
        ("CREATE TABLE vectors.public.v2 WITH (follows = 'mutable.public.docs', embed = 'body', model = 'minilm:v1', metric = 'manhattan')", "manhattan"),
        ("CREATE TABLE vectors.public.docs_vec WITH (follows = 'mutable.public.docs', embed = 'body', model = 'minilm:v1')", "already exists"),
    ] {
        let e = sql_error(&session, sql).await;
        assert!(e.contains(expected), "{sql}: {e}");
    }
    exec(&session, "BEGIN").await;
    let e = sql_error(&session, "CREATE TABLE vectors.public.v2 WITH (follows = 'mutable.public.docs', embed = 'body', model = 'minilm:v1')").await;
    assert!(e.contains("inside a transaction"), "{e}");
    exec(&session, "ROLLBACK").await;
    assert_eq!(session.vectors().list().await.unwrap().len(), 2, "nothing was created by the refused statements");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_following_table_over_an_empty_source_answers_searches_with_no_rows() {
    let (session, _dir) = temp_session().await;
    register_minilm(&session, "v1").await;
    exec(&session, "CREATE TABLE mutable.public.docs (id BIGINT PRIMARY KEY, body TEXT)").await;
    let info = session.vectors().follow(FollowSpec::new("docs_vec", "mutable.public.docs", "body", "minilm", "v1"), &NoProgress).await.unwrap();
    assert_eq!(info.rows, 0);
    // No segment exists yet: every search form answers with no rows, not an error.
    assert!(top(&session, "docs_vec", "zip compression tool").await.is_empty());
    let probe = format!("[{}]", vec!["0.05"; 384].join(","));
    for sql in [
        format!("SELECT id FROM vector_search('docs_vec', '{probe}', 5)"),
        format!("SELECT id FROM vector_search('docs_vec', '{probe}', 5, 'id IN (1, 2)')"),
        "SELECT id FROM vector_search('docs_vec', 'zip compression tool', 5)".to_string(),
        "SELECT id FROM vectors.public.docs_vec".to_string(),
    ] {
        let batches = session.sql(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).collect().await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0, "{sql}");
    }
    // Compacting the empty table is a no-op, not a failure.
    session.vectors().compact("docs_vec", &NoProgress).await.unwrap();
    // The first row written becomes findable once a worker has run.
    exec(&session, &format!("INSERT INTO mutable.public.docs VALUES (7, '{}')", TEXTS[1])).await;
    drain(&session).await;
    assert_eq!(top(&session, "docs_vec", "zip compression tool").await, vec![7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_following_table_fed_many_small_batches_keeps_few_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded(dir.path().join("home"));
    config.vectors.max_segments = 3;
    let session = Session::open(config).await.unwrap();
    register_minilm(&session, "v1").await;
    exec(&session, "CREATE TABLE mutable.public.docs (id BIGINT PRIMARY KEY, body TEXT)").await;
    session.vectors().follow(FollowSpec::new("docs_vec", "mutable.public.docs", "body", "minilm", "v1"), &NoProgress).await.unwrap();
    // Twelve batches of one change each (a segment each, before merging), with an update
    // and a delete among them, so merged runs carry tombstones too.
    for i in 0..12 {
        exec(&session, &format!("INSERT INTO mutable.public.docs VALUES ({i}, '{} (copy {i})')", TEXTS[i % 4])).await;
        if i == 6 {
            exec(&session, "UPDATE mutable.public.docs SET body = 'Draw charts and plots of scientific data.' WHERE id = 2").await;
            exec(&session, "DELETE FROM mutable.public.docs WHERE id = 3").await;
        }
        drain(&session).await;
        let info = session.vectors().list().await.unwrap().into_iter().find(|t| t.name == "docs_vec").unwrap();
        assert!(info.segments <= 3, "after batch {i}: {} segments", info.segments);
    }
    // Every row of the source is in the table once, with its current text, and findable.
    let ids: Vec<i64> = (0..12).filter(|&i| i != 3).collect();
    assert_eq!(scalar(&session, "SELECT count(*) FROM vectors.public.docs_vec").await, ids.len().to_string());
    assert_eq!(scalar(&session, "SELECT count(DISTINCT id) FROM vectors.public.docs_vec").await, ids.len().to_string());
    assert_eq!(scalar(&session, "SELECT body FROM vectors.public.docs_vec WHERE id = 2").await, "Draw charts and plots of scientific data.");
    let probe = format!("[{}]", vec!["0.05"; 384].join(","));
    for id in &ids {
        let found = scalar(&session, &format!("SELECT count(*) FROM vector_search('docs_vec', '{probe}', 3, 'id = {id}')")).await;
        assert_eq!(found, "1", "row {id} is findable");
    }
    assert_eq!(top(&session, "docs_vec", "plotting scientific charts").await[0], 2);
    // Reopened from storage (no loaded segments to share), the table is the same.
    drop(session);
    let mut config = Config::embedded(dir.path().join("home"));
    config.vectors.max_segments = 3;
    let session = Session::open(config).await.unwrap();
    assert_eq!(scalar(&session, "SELECT count(*) FROM vectors.public.docs_vec").await, ids.len().to_string());
    assert_eq!(top(&session, "docs_vec", "plotting scientific charts").await[0], 2);
}
