//! The signed audit log of searches: every vector, text and hybrid search appends a record
//! to its tenant's chain; verification passes on an untouched chain and names the sequence
//! number where a tampered one breaks (a changed score, a deleted row, two rows swapped, a
//! row replayed into another tenant's chain); key rotation; tenants read only their chain.

use std::path::Path;

use jammi_db::{Config, Session, TenantId};
use sqlx::Connection;

use crate::support::*;

const KEY_1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const KEY_2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

/// The configuration of an audited engine at `home` whose keys are `keys` (written to
/// `home/audit.keys`).
fn audited_config(home: &Path, keys: &str) -> Config {
    let key_file = home.join("audit.keys");
    std::fs::create_dir_all(home).unwrap();
    std::fs::write(&key_file, keys).unwrap();
    let mut config = Config::embedded(home);
    config.audit.enabled = Some(true);
    config.audit.key_file = Some(key_file);
    config
}

async fn audited_session(home: &Path, keys: &str) -> Session {
    Session::open(audited_config(home, keys)).await.expect("open an audited session")
}

/// `vectors.public.docs`: two rows, vectors [1, 0] and [0, 1].
async fn two_docs(session: &Session) {
    run(session, "CREATE TABLE vectors.public.docs WITH (vector_column = 'v') AS SELECT column1 AS id, make_array(CAST(column2 AS FLOAT), CAST(column3 AS FLOAT)) AS v FROM (VALUES (1, 1.0, 0.0), (2, 0.0, 1.0))").await;
}

async fn run(session: &Session, sql: &str) -> Vec<Vec<String>> {
    rows(session, sql).await
}

/// The catalog database, opened directly: what an attacker with file access could change.
async fn catalog_db(home: &Path) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(&format!("sqlite://{}", home.join("catalog.db").display())).await.unwrap()
}

async fn sql_db(db: &mut sqlx::AnyConnection, sql: &str) {
    sqlx::query(sql).execute(db).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The one chain report of `session`'s scope (or `tenant` for the admin).
async fn verify(session: &Session, tenant: Option<&str>) -> jammi_db::audit::ChainReport {
    let reports = session.audit().verify(tenant, 1).await.unwrap();
    assert_eq!(reports.len(), 1, "{reports:?}");
    reports.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_are_recorded_in_a_chain_that_detects_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let session = audited_session(&home, KEY_1).await;
    run(&session, "CREATE TABLE vectors.public.docs WITH (vector_column = 'v', text_columns = 'body') AS SELECT column1 AS id, column2 AS body, make_array(CAST(column3 AS FLOAT), CAST(column4 AS FLOAT)) AS v FROM (VALUES (1, 'zstd compression tool', 1.0, 0.0), (2, 'http daemon', 0.0, 1.0), (3, 'compression library for http', 0.7, 0.7))").await;
    let (a, b) = (TenantId::random(), TenantId::random());
    let tenant_a = session.with_tenant(Some(a)).restricted();
    let tenant_b = session.with_tenant(Some(b)).restricted();
    // Searches of every kind, through SQL and the Rust API, by two tenants.
    run(&tenant_a, "SELECT id FROM vector_search('docs', '[1, 0]', 2)").await;
    run(&tenant_a, "SELECT id FROM text_search('docs', 'compression', 2)").await;
    run(&tenant_a, "SELECT id FROM hybrid_search('docs', 'http', '[0, 1]', 2)").await;
    tenant_a.vectors().search("docs", &jammi_db::vector::SearchRequest::new(vec![0.0, 1.0], 1)).await.unwrap();
    run(&tenant_b, "SELECT id FROM text_search('docs', 'http', 3)").await;
    // A mutable table's full-text index is searched, and audited, the same way.
    run(&tenant_a, "CREATE TABLE mutable.public.notes (id BIGINT PRIMARY KEY, body TEXT)").await;
    run(&tenant_a, "CREATE INDEX notes_text ON mutable.public.notes USING fulltext (body)").await;
    run(&tenant_a, "INSERT INTO mutable.public.notes VALUES (7, 'audited words')").await;
    run(&tenant_a, "SELECT id FROM text_search('mutable.public.notes', 'words', 3)").await;

    let records = tenant_a.audit().records(None, 1, 100).await.unwrap();
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    let fifth: serde_json::Value = serde_json::from_str(&records[4].record).unwrap();
    assert_eq!((fifth["lineage"]["table"].as_str(), &fifth["results"][0][0]), (Some("mutable.public.notes"), &serde_json::json!(7)), "{fifth}");
    let first: serde_json::Value = serde_json::from_str(&records[0].record).unwrap();
    assert_eq!(first["tenant"], a.to_string());
    assert_eq!(first["kind"], "vector");
    assert_eq!(first["lineage"]["table"], "docs");
    assert_eq!(first["lineage"]["k"], 2);
    assert_eq!(first["results"][0][0], 1, "the nearest row first");
    assert_eq!(first["prev"], "");
    let second: serde_json::Value = serde_json::from_str(&records[1].record).unwrap();
    assert_eq!((second["kind"].as_str(), second["prev"].as_str()), (Some("text"), Some(records[0].signature.as_str())));
    assert!(records[0].record.contains(r#""time":"20"#) && records[0].record.contains(r#"Z","kind""#), "{}", records[0].record);
    // Each tenant reads and verifies its own chain only.
    assert_eq!(tenant_b.audit().records(None, 1, 100).await.unwrap().len(), 1);
    assert!(tenant_b.audit().records(Some(&a.to_string()), 1, 100).await.is_err());
    assert!(tenant_b.audit().verify(Some(&a.to_string()), 1).await.unwrap_err().to_string().contains("own audit chain"));
    assert!(tenant_b.audit().show(&records[0].query_id).await.unwrap().is_none(), "another tenant's record is not shown");
    assert_eq!(tenant_a.audit().show(&records[0].query_id).await.unwrap().unwrap().seq, 1);
    // Each record is also an event on the audit topic, committed with it; a tenant reads its
    // own events.
    let events = run(&tenant_a, "SELECT seq, query_id, signature FROM topics.public.\"jammi.audit.search.v1\" ORDER BY seq").await;
    assert_eq!(events.len(), 5, "{events:?}");
    for (event, record) in events.iter().zip(&records) {
        assert_eq!((event[0].as_str(), event[1].as_str(), event[2].as_str()), (record.seq.to_string().as_str(), record.query_id.as_str(), record.signature.as_str()));
    }
    assert_eq!(run(&tenant_b, "SELECT count(*) FROM topics.public.\"jammi.audit.search.v1\"").await, vec![vec!["1".to_string()]]);
    // Nobody forges events on it or drops it: not a tenant, not the operator.
    for caller in [&tenant_a, &session] {
        let forged = r#"{"query_id": "x", "tenant": "", "seq": 1, "kind": "vector", "record": "{}", "signature": "00"}"#;
        let e = caller.topics().publish_json(jammi_db::audit::SEARCH_TOPIC, forged).await.unwrap_err().to_string();
        assert!(e.contains("written by the engine"), "{e}");
        let e = caller.topics().drop(jammi_db::audit::SEARCH_TOPIC).await.unwrap_err().to_string();
        assert!(e.contains("written by the engine"), "{e}");
    }

    // SQL: audit.public.searches, scoped like the chains, and no statement changes it.
    let mine = run(&tenant_a, "SELECT seq, kind FROM audit.public.searches ORDER BY seq").await;
    assert_eq!(mine.iter().map(|r| r[1].as_str()).collect::<Vec<_>>(), vec!["vector", "text", "hybrid", "vector", "text"]);
    assert_eq!(run(&tenant_b, "SELECT count(*) FROM audit.public.searches").await, vec![vec!["1".to_string()]]);
    let everything = session.admin(|s| async move { rows(&s, "SELECT count(*) FROM audit.public.searches").await }).await;
    assert_eq!(everything, vec![vec!["6".to_string()]]);
    // Filters on seq, query_id and tenant narrow what is read, with the same answers.
    let page = run(&tenant_a, "SELECT seq FROM audit.public.searches WHERE seq >= 2 AND seq < 4 ORDER BY seq").await;
    assert_eq!(page, vec![vec!["2".to_string()], vec!["3".to_string()]]);
    assert_eq!(run(&tenant_a, "SELECT seq FROM audit.public.searches WHERE 4 < seq").await, vec![vec!["5".to_string()]]);
    let by_id = format!("SELECT seq FROM audit.public.searches WHERE query_id = '{}'", records[2].query_id);
    assert_eq!(run(&tenant_a, &by_id).await, vec![vec!["3".to_string()]]);
    assert!(run(&tenant_b, &by_id).await.is_empty(), "another tenant's record is not read by its id");
    let other = format!("SELECT count(*) FROM audit.public.searches WHERE tenant = '{a}'");
    assert_eq!(run(&tenant_b, &other).await, vec![vec!["0".to_string()]]);
    let admin_one = session.admin(|s| async move { rows(&s, &other).await }).await;
    assert_eq!(admin_one, vec![vec!["5".to_string()]]);
    for sql in [
        "DELETE FROM audit.public.searches",
        "UPDATE audit.public.searches SET record = 'x'",
        "INSERT INTO audit.public.searches SELECT * FROM audit.public.searches",
        "DROP TABLE audit.public.searches",
    ] {
        for caller in [&session, &tenant_a] {
            let e = sql_error(caller, sql).await;
            assert!(!e.is_empty(), "{sql}");
        }
    }
    assert_eq!(run(&tenant_a, "SELECT count(*) FROM audit.public.searches").await, vec![vec!["5".to_string()]], "nothing changed");
    let report = verify(&tenant_a, None).await;
    assert!(report.ok() && report.checked == 5 && report.last_seq == 5, "{report:?}");
    assert!(verify(&tenant_b, None).await.ok());
    // The admin scope verifies every chain (the shared one is empty here).
    let all = session.admin(|s| async move { s.audit().verify(None, 1).await }).await.unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all.iter().all(|r| r.ok()));

    let mut db = catalog_db(&home).await;
    let chain = format!("chain = '{a}'");
    let problem = |report: jammi_db::audit::ChainReport| report.first_bad.unwrap_or_else(|| panic!("tampering went unnoticed"));

    // A changed score.
    let original = records[1].record.clone();
    let tampered = original.replacen("],[", "],[", 1).replacen(",1.", ",9.", 1);
    let tampered = if tampered == original { original.replacen("]]", "1]]", 1) } else { tampered };
    assert_ne!(tampered, original);
    sql_db(&mut db, &format!("UPDATE jammi_audit_searches SET record = '{}' WHERE {chain} AND seq = 2", tampered.replace('\'', "''"))).await;
    let bad = problem(verify(&tenant_a, None).await);
    assert_eq!(bad.seq, 2);
    assert!(bad.problem.contains("signature"), "{}", bad.problem);
    sql_db(&mut db, &format!("UPDATE jammi_audit_searches SET record = '{}' WHERE {chain} AND seq = 2", original.replace('\'', "''"))).await;
    assert!(verify(&tenant_a, None).await.ok());

    // A deleted row.
    sql_db(&mut db, &format!("DELETE FROM jammi_audit_searches WHERE {chain} AND seq = 2")).await;
    let bad = problem(verify(&tenant_a, None).await);
    assert_eq!(bad.seq, 2);
    assert!(bad.problem.contains("missing"), "{}", bad.problem);
    let r = &records[1];
    sql_db(&mut db, &format!("INSERT INTO jammi_audit_searches (chain, tenant_id, seq, query_id, key_version, record, signature) VALUES ('{a}', '{a}', 2, '{}', 1, '{}', '{}')", r.query_id, r.record.replace('\'', "''"), r.signature)).await;
    assert!(verify(&tenant_a, None).await.ok());

    // Two rows swapped.
    sql_db(&mut db, &format!("UPDATE jammi_audit_searches SET seq = -3 WHERE {chain} AND seq = 3")).await;
    sql_db(&mut db, &format!("UPDATE jammi_audit_searches SET seq = 3 WHERE {chain} AND seq = 2")).await;
    sql_db(&mut db, &format!("UPDATE jammi_audit_searches SET seq = 2 WHERE {chain} AND seq = -3")).await;
    let bad = problem(verify(&tenant_a, None).await);
    assert_eq!(bad.seq, 2, "{}", bad.problem);
    sql_db(&mut db, &format!("UPDATE jammi_audit_searches SET seq = -3 WHERE {chain} AND seq = 3")).await;
    sql_db(&mut db, &format!("UPDATE jammi_audit_searches SET seq = 3 WHERE {chain} AND seq = 2")).await;
    sql_db(&mut db, &format!("UPDATE jammi_audit_searches SET seq = 2 WHERE {chain} AND seq = -3")).await;
    assert!(verify(&tenant_a, None).await.ok());

    // A row replayed into another tenant's chain.
    let r = &records[0];
    sql_db(&mut db, &format!("INSERT INTO jammi_audit_searches (chain, tenant_id, seq, query_id, key_version, record, signature) VALUES ('{b}', '{b}', 2, 'replayed', 1, '{}', '{}')", r.record.replace('\'', "''"), r.signature)).await;
    let bad = problem(verify(&tenant_b, None).await);
    assert_eq!(bad.seq, 2);
    assert!(bad.problem.contains("another tenant's key") || bad.problem.contains("another place"), "{}", bad.problem);
    // The chain with the bad row verifies up to it: the report says how far it holds.
    assert_eq!(verify(&tenant_b, None).await.last_seq, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_keys_sign_new_records_and_old_ones_still_verify() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    {
        let session = audited_session(&home, KEY_1).await;
        run(&session, "CREATE TABLE vectors.public.t WITH (vector_column = 'v') AS SELECT column1 AS id, make_array(CAST(column2 AS FLOAT), 1.0) AS v FROM (VALUES (1, 0.5), (2, 1.5))").await;
        run(&session, "SELECT id FROM vector_search('t', '[1, 1]', 1)").await;
    }
    {
        let session = audited_session(&home, &format!("1={KEY_1}\n2={KEY_2}\n")).await;
        run(&session, "SELECT id FROM vector_search('t', '[1, 1]', 1)").await;
        let records = session.audit().records(Some(""), 1, 10).await.unwrap();
        assert_eq!(records.iter().map(|r| r.key_version).collect::<Vec<_>>(), vec![1, 2]);
        assert!(verify(&session, Some("")).await.ok());
    }
    // Without the old version, its records cannot be verified — and the report says why.
    let session = audited_session(&home, &format!("2={KEY_2}\n")).await;
    let bad = verify(&session, Some("")).await.first_bad.unwrap();
    assert_eq!(bad.seq, 1);
    assert!(bad.problem.contains("version 1 is not configured"), "{}", bad.problem);
    // A bad key file is refused at open, without echoing the key.
    let err = Session::open(audited_config(&dir.path().join("other"), "abcdef")).await.unwrap_err().to_string();
    assert!(err.contains("3 bytes") && !err.contains("abcdef"), "{err}");
    // Auditing off: the log says how to turn it on.
    let (plain, _d) = temp_session().await;
    assert!(plain.audit().verify(None, 1).await.unwrap_err().to_string().contains("auditing is off"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_searches_from_two_engines_keep_every_chain_whole() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let first = audited_session(&home, KEY_1).await;
    run(&first, "CREATE TABLE vectors.public.t WITH (vector_column = 'v', text_columns = 'body') AS SELECT column1 AS id, column2 AS body, make_array(CAST(column3 AS FLOAT), 1.0) AS v FROM (VALUES (1, 'alpha beta', 0.5), (2, 'beta gamma', 1.5), (3, 'gamma delta', 2.5))").await;
    // A second engine on the same catalog (another process in production), synchronous.
    let second = {
        let mut config = audited_config(&home, KEY_1);
        config.audit.durability = jammi_db::config::AuditDurability::Synchronous;
        Session::open(config).await.unwrap()
    };
    let tenants = [TenantId::random(), TenantId::random()];
    let mut tasks = Vec::new();
    for i in 0..24 {
        let engine = if i % 2 == 0 { first.clone() } else { second.clone() };
        // Both tenants search through both engines.
        let scoped = engine.with_tenant(Some(tenants[(i / 2) % 2])).restricted();
        tasks.push(tokio::spawn(async move {
            for j in 0..5 {
                let sql = if j % 2 == 0 { "SELECT id FROM text_search('t', 'gamma', 2)" } else { "SELECT id FROM vector_search('t', '[1, 1]', 2)" };
                scoped.sql(sql).await.unwrap().collect().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let reports = first.admin(|s| async move { s.audit().verify(None, 1).await }).await.unwrap();
    let total: u64 = reports.iter().map(|r| r.checked).sum();
    assert_eq!(total, 24 * 5, "{reports:?}");
    assert!(reports.iter().all(|r| r.ok()), "{reports:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditing_is_set_per_tenant_and_engines_follow() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let session = audited_session(&home, KEY_1).await;
    two_docs(&session).await;
    let (a, b) = (TenantId::random(), TenantId::random());
    let tenant_a = session.with_tenant(Some(a)).restricted();
    let tenant_b = session.with_tenant(Some(b)).restricted();
    let search = "SELECT id FROM vector_search('docs', '[1, 0]', 1)";
    // A tenant cannot turn its own auditing off.
    let err = tenant_b.audit().set_enabled(&b.to_string(), Some(false)).await.unwrap_err().to_string();
    assert!(err.contains("operator"), "{err}");
    session.admin(|s| async move { s.audit().set_enabled(&b.to_string(), Some(false)).await }).await.unwrap();
    assert_eq!(session.admin(|s| async move { s.audit().settings().await }).await.unwrap(), vec![(b.to_string(), false)]);
    run(&tenant_a, search).await;
    run(&tenant_b, search).await;
    let id = tenant_b.vectors().search("docs", &jammi_db::vector::SearchRequest::new(vec![0.0, 1.0], 1)).await.unwrap().query_id;
    assert_eq!(id, None, "an unaudited search has no audit id");
    assert_eq!(tenant_a.audit().records(None, 1, 10).await.unwrap().len(), 1);
    assert_eq!(tenant_b.audit().records(None, 1, 10).await.unwrap().len(), 0);
    // A second engine on the same catalog follows the setting, and its change back.
    let second = Session::open(audited_config(&home, KEY_1)).await.unwrap();
    run(&second.with_tenant(Some(b)), search).await;
    assert_eq!(second.with_tenant(Some(b)).audit().records(None, 1, 10).await.unwrap().len(), 0);
    session.admin(|s| async move { s.audit().set_enabled(&b.to_string(), None).await }).await.unwrap();
    run(&second.with_tenant(Some(b)), search).await;
    // (Read through the engine that wrote it: its writer commits in batches.)
    assert_eq!(second.with_tenant(Some(b)).audit().records(None, 1, 10).await.unwrap().len(), 1);
    assert!(verify(&tenant_b, None).await.ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_cuts_a_verified_prefix_under_a_signed_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let session = audited_session(&home, KEY_1).await;
    two_docs(&session).await;
    let a = TenantId::random();
    let tenant_a = session.with_tenant(Some(a)).restricted();
    let chain = a.to_string();
    for _ in 0..6 {
        run(&tenant_a, "SELECT id FROM vector_search('docs', '[1, 0]', 1)").await;
    }
    let admin_prune = |through: u64| {
        let (session, chain) = (session.clone(), chain.clone());
        async move { session.admin(|s| async move { s.audit().prune(&chain, through).await }).await }
    };
    assert!(tenant_a.audit().prune(&chain, 3).await.unwrap_err().to_string().contains("operator"));
    let first = admin_prune(3).await.unwrap();
    assert_eq!((first.through_seq, first.removed, first.prev_checkpoint.as_str()), (3, 3, ""));
    let report = verify(&tenant_a, None).await;
    assert!(report.ok(), "{report:?}");
    assert_eq!((report.pruned_through, report.from, report.checked, report.last_seq), (3, 4, 3, 6));
    assert_eq!(tenant_a.audit().records(None, 1, 10).await.unwrap()[0].seq, 4);
    assert!(admin_prune(2).await.unwrap_err().to_string().contains("already removed"));
    assert!(admin_prune(6).await.unwrap_err().to_string().contains("newest record"));
    let second = admin_prune(5).await.unwrap();
    assert_eq!(second.removed, 2);
    // New records go on after the cut, and the chain verifies across it.
    run(&tenant_a, "SELECT id FROM vector_search('docs', '[0, 1]', 1)").await;
    let report = verify(&tenant_a, None).await;
    assert_eq!((report.ok(), report.pruned_through, report.last_seq), (true, 5, 7), "{report:?}");

    // Tampering with the cut is found: a changed checkpoint, or records removed without one.
    let mut db = catalog_db(&home).await;
    sql_db(&mut db, "UPDATE jammi_audit_checkpoints SET record = replace(record, '\"removed\":2', '\"removed\":1') WHERE through_seq = 5").await;
    let report = verify(&tenant_a, None).await;
    assert_eq!(report.first_bad.as_ref().map(|b| b.seq), Some(5), "{report:?}");
    assert!(report.first_bad.unwrap().problem.contains("checkpoint"));
    sql_db(&mut db, "DELETE FROM jammi_audit_checkpoints").await;
    let report = verify(&tenant_a, None).await;
    assert_eq!(report.first_bad.as_ref().map(|b| b.seq), Some(1), "{report:?}");
    assert!(report.first_bad.unwrap().problem.contains("missing"));
}
