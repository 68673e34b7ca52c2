//! Evidence channels: the registry (built-ins seeded, tenant-aware), a user's channel
//! registered and filled through SQL keyed by the audited search's `_query_id`, and
//! evidence that nothing can change or remove.

use std::path::Path;

use jammi_db::{Config, Session, TenantId};

use crate::support::*;

async fn audited(home: &Path) -> Session {
    std::fs::create_dir_all(home).unwrap();
    std::fs::write(home.join("audit.keys"), "66".repeat(32)).unwrap();
    let mut config = Config::embedded(home);
    config.audit.enabled = Some(true);
    config.audit.key_file = Some(home.join("audit.keys"));
    Session::open(config).await.unwrap()
}

async fn error(session: &Session, sql: &str) -> String {
    match session.sql(sql).await {
        Ok(frame) => frame.collect().await.map(|_| ()).map_err(|e| e.to_string()).expect_err(sql),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_are_registered_attached_to_results_and_never_changed() {
    let dir = tempfile::tempdir().unwrap();
    let session = audited(&dir.path().join("home")).await;
    rows(&session, "CREATE TABLE vectors.public.docs WITH (vector_column = 'v', text_columns = 'body') AS SELECT column1 AS id, column2 AS body, make_array(CAST(column3 AS FLOAT), CAST(column4 AS FLOAT)) AS v FROM (VALUES (1, 'zstd compression tool', 1.0, 0.0), (2, 'http daemon', 0.0, 1.0), (3, 'compression library for http', 0.7, 0.7))").await;
    let (a, b) = (TenantId::random(), TenantId::random());
    let tenant_a = session.with_tenant(Some(a)).restricted();
    let tenant_b = session.with_tenant(Some(b)).restricted();

    // The built-ins, seeded, typed.
    let builtins = rows(&tenant_a, "SELECT name, columns FROM evidence.public.channels WHERE builtin ORDER BY name").await;
    assert_eq!(builtins.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(), vec!["model", "text", "vector"]);
    assert!(builtins[2][1].contains("\"distance\"") && builtins[2][1].contains("float32"), "{builtins:?}");

    // A tenant's channel: listed for it alone; another tenant may take the same name.
    rows(&tenant_a, "CREATE TABLE evidence.public.reranker (score DOUBLE, label TEXT)").await;
    rows(&tenant_b, "CREATE TABLE evidence.public.reranker (score DOUBLE)").await;
    let mine = rows(&tenant_a, "SELECT name, tenant, columns FROM evidence.public.channels WHERE NOT builtin").await;
    assert_eq!(mine.len(), 1);
    assert_eq!((mine[0][0].as_str(), mine[0][1].clone()), ("reranker", a.to_string()));
    assert!(mine[0][2].contains("\"score\"") && mine[0][2].contains("\"label\"") && !mine[0][2].contains("query_id"), "{mine:?}");
    let listed = rows(&tenant_a, "SELECT table_name FROM information_schema.tables WHERE table_catalog IN ('evidence', 'mutable') AND table_schema = 'public' ORDER BY table_name").await;
    assert_eq!(listed, vec![vec!["reranker"]], "the storage is not listed as a mutable table");

    // Results carry the channels that found each row and the audit id that keys evidence.
    let found = rows(&tenant_a, "SELECT id, _query_id, _retrieved_by, _vector_rank FROM hybrid_search('docs', 'compression', '[1, 0]', 2) ORDER BY _rank").await;
    assert_eq!(found.len(), 2);
    let query_id = found[0][1].clone();
    assert!(found.iter().all(|r| r[1] == query_id), "one search, one id: {found:?}");
    assert_eq!(found[0][2], "[vector, text]");
    let record = tenant_a.audit().show(&query_id).await.unwrap().expect("the id is the search's audit record");
    assert!(record.record.contains("\"kind\":\"hybrid\""));

    // A reranker attaches its scores to those rows through SQL.
    let attached = rows(&tenant_a, &format!(
        "INSERT INTO evidence.public.reranker SELECT _query_id, CAST(id AS VARCHAR), 1.0 / _rank, 'ok' FROM hybrid_search('docs', 'compression', '[1, 0]', 2)"
    ))
    .await;
    assert_eq!(attached, vec![vec!["2"]]);
    rows(&tenant_a, &format!("INSERT INTO evidence.public.reranker (query_id, row_id, score) VALUES ('{query_id}', '{}', 0.9)", found[0][0])).await;
    let joined = rows(&tenant_a, &format!(
        "SELECT e.row_id, e.score FROM evidence.public.reranker e WHERE e.query_id = '{query_id}' ORDER BY e.row_id"
    ))
    .await;
    assert_eq!(joined, vec![vec![found[0][0].clone(), "0.9".to_string()]]);
    assert_eq!(rows(&tenant_a, "SELECT count(*) FROM evidence.public.reranker").await, vec![vec!["3"]]);
    assert_eq!(rows(&tenant_b, "SELECT count(*) FROM evidence.public.reranker").await, vec![vec!["0"]], "tenant b reads its own channel");

    // Append-only, by any name; the same row twice is a conflict, not an overwrite.
    for sql in [
        "UPDATE evidence.public.reranker SET score = 0".to_string(),
        "DELETE FROM evidence.public.reranker".to_string(),
        "DROP TABLE evidence.public.reranker".to_string(),
        "ALTER TABLE evidence.public.reranker ADD COLUMN x BIGINT".to_string(),
        "UPDATE mutable.public.\"reranker$evidence\" SET score = 0".to_string(),
        "DELETE FROM mutable.public.\"reranker$evidence\"".to_string(),
        "DROP TABLE mutable.public.\"reranker$evidence\"".to_string(),
        "INSERT INTO mutable.public.\"reranker$evidence\" VALUES ('q', 'r', 1.0, 'x')".to_string(),
    ] {
        let e = error(&tenant_a, &sql).await;
        assert!(e.contains("append-only"), "{sql}: {e}");
    }
    let e = error(&tenant_a, &format!("INSERT INTO evidence.public.reranker (query_id, row_id, score) VALUES ('{query_id}', '{}', 0.1)", found[0][0])).await;
    assert!(e.to_lowercase().contains("already") || e.contains("duplicate") || e.contains("exists"), "{e}");
    assert_eq!(rows(&tenant_a, "SELECT count(*) FROM evidence.public.reranker").await, vec![vec!["3"]]);

    // Bad registrations say what is wrong.
    assert!(error(&tenant_a, "CREATE TABLE evidence.public.vector (x DOUBLE)").await.contains("reserved"));
    assert!(error(&tenant_a, "CREATE TABLE evidence.public.channels (x DOUBLE)").await.contains("reserved"));
    assert!(error(&tenant_a, "CREATE TABLE evidence.public.bad (row_id TEXT)").await.contains("key columns"));
    assert!(error(&tenant_a, "CREATE TABLE evidence.public.reranker (x DOUBLE)").await.contains("already exists"));
    // Without auditing there is no audit id on results (nothing to key evidence by).
    let (plain, _dir) = temp_session().await;
    rows(&plain, "CREATE TABLE vectors.public.d WITH (vector_column = 'v') AS SELECT 1 AS id, make_array(CAST(1.0 AS FLOAT), CAST(0.0 AS FLOAT)) AS v").await;
    assert!(error(&plain, "SELECT _query_id FROM vector_search('d', '[1, 0]', 1)").await.contains("_query_id"));
}
