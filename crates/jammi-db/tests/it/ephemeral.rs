//! Ephemeral sessions: their tables are private to them and dropped exactly once, whichever
//! ending comes first — an explicit close, the drop of the last handle, the idle timeout —
//! each with one signed lifecycle event. (A killed process's sessions are recovered by the
//! next process: the CLI's `ephemeral_sessions_of_a_killed_process_are_recovered_once`.)

use std::path::Path;
use std::time::Duration;

use jammi_db::{Config, Session, TenantId};
use sqlx::Connection;

use crate::support::*;

const KEY: &str = "4444444444444444444444444444444444444444444444444444444444444444";

async fn audited(home: &Path) -> Session {
    std::fs::create_dir_all(home).unwrap();
    std::fs::write(home.join("audit.keys"), KEY).unwrap();
    let mut config = Config::embedded(home);
    config.audit.enabled = Some(true);
    config.audit.key_file = Some(home.join("audit.keys"));
    Session::open(config).await.expect("open an audited session")
}

/// The catalog rows of mutable tables and their storage tables, read directly.
async fn stored_tables(home: &Path) -> (Vec<String>, Vec<String>) {
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(&format!("sqlite://{}", home.join("catalog.db").display())).await.unwrap();
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM jammi_mutable_tables ORDER BY name").fetch_all(&mut db).await.unwrap();
    let storage: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'jammi_m_*' ORDER BY name").fetch_all(&mut db).await.unwrap();
    (names, storage)
}

/// (event, reason, rows_deleted, record, signature) of session `id`, in order.
async fn events(session: &Session, id: &str) -> Vec<(String, String, String, String, String)> {
    let sql = format!("SELECT event, reason, rows_deleted, record, signature FROM topics.public.\"jammi.audit.session_lifecycle.v1\" WHERE session_id = '{id}' ORDER BY _offset");
    let admin = session.admin(|s| async move { rows(&s, &sql).await }).await;
    admin.into_iter().map(|r| (r[0].clone(), r[1].clone(), r[2].clone(), r[3].clone(), r[4].clone())).collect()
}

/// Wait until session `id` has an event `event` (the drop of a handle ends it in the background).
async fn wait_for_event(session: &Session, id: &str, event: &str) -> Vec<(String, String, String, String, String)> {
    for _ in 0..100 {
        let found = events(session, id).await;
        if found.iter().any(|e| e.0 == event) {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("session {id} never had a {event} event: {:?}", events(session, id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_drops_the_session_s_private_tables_once() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let session = audited(&home).await;
    rows(&session, "CREATE TABLE mutable.public.scratch (id BIGINT PRIMARY KEY, note TEXT)").await;
    rows(&session, "INSERT INTO mutable.public.scratch VALUES (100, 'permanent')").await;

    let eph = session.ephemeral(Some(Duration::from_secs(60))).await.unwrap();
    let other = session.ephemeral(None).await.unwrap();
    // Same name in both sessions and as a permanent table: three tables, no collision.
    rows(&eph, "CREATE TABLE mutable.public.scratch (id BIGINT PRIMARY KEY, note TEXT)").await;
    rows(&other, "CREATE TABLE mutable.public.scratch (id BIGINT PRIMARY KEY, note TEXT)").await;
    rows(&eph, "INSERT INTO mutable.public.scratch VALUES (1, 'a'), (2, 'b'), (3, 'c')").await;
    rows(&eph, "CREATE TABLE mutable.public.pairs (id BIGINT PRIMARY KEY)").await;
    rows(&eph, "INSERT INTO mutable.public.pairs SELECT id FROM mutable.public.scratch WHERE id < 3").await;
    rows(&other, "INSERT INTO mutable.public.scratch VALUES (7, 'x')").await;
    assert_eq!(rows(&eph, "SELECT count(*) FROM mutable.public.scratch").await, vec![vec!["3"]]);
    assert_eq!(rows(&other, "SELECT count(*) FROM mutable.public.scratch").await, vec![vec!["1"]]);
    assert_eq!(rows(&session, "SELECT note FROM mutable.public.scratch").await, vec![vec!["permanent"]]);
    // Usable like any table: updates, joins with permanent tables, transactions.
    rows(&eph, "UPDATE mutable.public.scratch SET note = 'z' WHERE id = 3").await;
    assert_eq!(rows(&eph, "SELECT s.id FROM mutable.public.scratch s JOIN mutable.public.pairs p ON s.id = p.id ORDER BY s.id").await, vec![vec!["1"], vec!["2"]]);
    rows(&eph, "BEGIN").await;
    rows(&eph, "DELETE FROM mutable.public.scratch WHERE id = 1").await;
    rows(&eph, "ROLLBACK").await;
    assert_eq!(rows(&eph, "SELECT count(*) FROM mutable.public.scratch").await, vec![vec!["3"]]);

    // Private: another session neither lists nor reaches them, by any name.
    let listed = rows(&session, "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'mutable' AND table_schema = 'public' ORDER BY table_name").await;
    assert_eq!(listed, vec![vec!["scratch"]], "only the permanent table is listed");
    let (names, _) = stored_tables(&home).await;
    let hidden = names.iter().find(|n| n.starts_with("scratch$")).unwrap().clone();
    for sql in [
        format!("SELECT * FROM mutable.public.\"{hidden}\""),
        format!("INSERT INTO mutable.public.\"{hidden}\" VALUES (9, 'x')"),
        format!("DROP TABLE mutable.public.\"{hidden}\""),
        format!("CREATE TABLE mutable.public.\"{hidden}x\" (id BIGINT PRIMARY KEY)"),
    ] {
        let err = session.sql(&sql).await.err().map(|e| e.to_string()).unwrap_or_else(|| panic!("{sql} must fail"));
        assert!(err.contains("not found") || err.contains("does not exist") || err.contains("no table") || err.contains("Unknown") || err.contains("not exist"), "{sql}: {err}");
    }

    let id = eph.id();
    let ended = eph.close().await.unwrap().expect("the close ended it");
    assert_eq!(ended.rows_deleted, 5);
    let mut dropped: Vec<(String, i64)> = ended.tables.iter().map(|t| (t.name.clone(), t.rows)).collect();
    dropped.sort();
    assert_eq!(dropped, vec![("pairs".to_string(), 2), ("scratch".to_string(), 3)]);
    let (names, storage) = stored_tables(&home).await;
    assert_eq!(names.len(), 2, "the permanent table and the other session's remain: {names:?}");
    assert_eq!(storage.len(), 2, "their storage tables are gone: {storage:?}");

    let found = events(&session, &id).await;
    assert_eq!(found.iter().map(|e| (e.0.as_str(), e.1.as_str(), e.2.as_str())).collect::<Vec<_>>(), vec![("opened", "open", "0"), ("closed", "close", "5")]);
    for (_, _, _, record, signature) in &found {
        assert!(session.admin(|s| async move { s.audit().verify_session_event(record, signature) }).await.unwrap(), "{record}");
        let forged = record.replace("\"rows_deleted\":5", "\"rows_deleted\":0");
        if forged != *record {
            assert!(!session.admin(|s| async move { s.audit().verify_session_event(&forged, signature) }).await.unwrap());
        }
    }
    // The other session is untouched until it ends.
    assert_eq!(rows(&other, "SELECT note FROM mutable.public.scratch").await, vec![vec!["x"]]);
    let other_id = other.id();
    other.close().await.unwrap();
    assert_eq!(events(&session, &other_id).await.len(), 2);
    assert_eq!(stored_tables(&home).await.0, vec!["scratch".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_ends_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let session = audited(&home).await;
    let tenant = TenantId::random();
    let eph = session.with_tenant(Some(tenant)).restricted().ephemeral(None).await.unwrap();
    rows(&eph, "CREATE TABLE mutable.public.t (id BIGINT PRIMARY KEY)").await;
    rows(&eph, "INSERT INTO mutable.public.t VALUES (1), (2)").await;
    let id = eph.id();
    let clone = (*eph).clone();
    drop(eph);
    // A clone keeps it open.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rows(&clone, "SELECT count(*) FROM mutable.public.t").await, vec![vec!["2"]]);
    // A transaction left open does not block the drop: it is rolled back first.
    rows(&clone, "BEGIN").await;
    rows(&clone, "INSERT INTO mutable.public.t VALUES (3)").await;
    drop(clone);
    let found = wait_for_event(&session, &id, "closed").await;
    assert_eq!(found.iter().map(|e| (e.0.as_str(), e.1.as_str(), e.2.as_str())).collect::<Vec<_>>(), vec![("opened", "open", "0"), ("closed", "drop", "2")]);
    assert!(stored_tables(&home).await.0.is_empty());
    // The tenant sees its own events; another tenant sees none.
    let own = session.with_tenant(Some(tenant));
    assert_eq!(rows(&own, &format!("SELECT count(*) FROM topics.public.\"jammi.audit.session_lifecycle.v1\" WHERE session_id = '{id}'")).await, vec![vec!["2"]]);
    let stranger = session.with_tenant(Some(TenantId::random()));
    assert_eq!(rows(&stranger, &format!("SELECT count(*) FROM topics.public.\"jammi.audit.session_lifecycle.v1\" WHERE session_id = '{id}'")).await, vec![vec!["0"]]);
    // Nobody writes the lifecycle topic but the engine.
    let forged = r#"[{"session_id": "x", "tenant": "", "event": "closed", "reason": "close", "rows_deleted": 0, "record": "{}", "signature": ""}]"#;
    let err = session.topics().publish_json(jammi_db::ephemeral::LIFECYCLE_TOPIC, forged).await.unwrap_err().to_string();
    assert!(err.contains("engine"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_times_out_and_its_handle_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let session = audited(&home).await;
    // Through SQL, as a Postgres client would: BEGIN EPHEMERAL on a plain handle.
    let handle = session.with_tenant(None);
    rows(&handle, "BEGIN EPHEMERAL TIMEOUT '400ms'").await;
    rows(&handle, "CREATE TABLE mutable.public.t (id BIGINT PRIMARY KEY)").await;
    rows(&handle, "INSERT INTO mutable.public.t VALUES (1)").await;
    // Activity keeps it alive past its timeout.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(rows(&handle, "SELECT count(*) FROM mutable.public.t").await, vec![vec!["1"]]);
    }
    let (names, _) = stored_tables(&home).await;
    let id = names[0].rsplit("$eph_").next().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(900)).await;
    let found = wait_for_event(&session, &id, "timed_out").await;
    assert_eq!(found.iter().map(|e| (e.0.as_str(), e.2.as_str())).collect::<Vec<_>>(), vec![("opened", "0"), ("timed_out", "1")]);
    assert!(stored_tables(&home).await.0.is_empty());
    let err = handle.sql("SELECT count(*) FROM mutable.public.t").await.unwrap_err().to_string();
    assert!(err.contains("ephemeral session has ended") && err.contains("400 ms"), "{err}");
    // END EPHEMERAL after the timeout: nothing more is dropped, no second event.
    let _ = handle.sql("END EPHEMERAL").await;
    assert_eq!(events(&session, &id).await.len(), 2);
    // A new one can start on the same handle.
    rows(&handle, "BEGIN EPHEMERAL").await;
    rows(&handle, "CREATE TABLE mutable.public.t (id BIGINT PRIMARY KEY)").await;
    rows(&handle, "END EPHEMERAL").await;
    assert!(stored_tables(&home).await.0.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ephemeral_requests_are_refused_clearly() {
    let (session, _dir) = temp_session().await;
    let err = session.sql("SET ephemeral_session = 'soon'").await.unwrap_err().to_string();
    assert!(err.contains("ephemeral_session") && err.contains("'10min'"), "{err}");
    let err = session.ephemeral(Some(Duration::from_secs(365 * 86_400))).await.unwrap_err().to_string();
    assert!(err.contains("max_timeout_ms"), "{err}");
    let err = session.sql("END EPHEMERAL").await.unwrap_err().to_string();
    assert!(err.contains("not ephemeral"), "{err}");
    let eph = session.ephemeral(None).await.unwrap();
    let err = eph.sql("CREATE TABLE vectors.public.v (id BIGINT)").await.unwrap_err().to_string();
    assert!(err.contains("mutable tables only"), "{err}");
    let err = eph.sql("BEGIN EPHEMERAL").await.unwrap_err().to_string();
    assert!(err.contains("already ephemeral"), "{err}");
    // Unaudited engines still publish (unsigned) lifecycle events.
    eph.close().await.unwrap();
    let signed = rows(&session, "SELECT event, signature FROM topics.public.\"jammi.audit.session_lifecycle.v1\" ORDER BY _offset").await;
    assert_eq!(signed, vec![vec!["opened", ""], vec!["closed", ""]]);
}

/// The same on a Postgres catalog: two engines (replicas) share it; a session opened on one
/// is private there, ends once, and its record and tables are gone for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_sessions_on_a_postgres_catalog() {
    let url = fresh_pg_database().await;
    let dir = tempfile::tempdir().unwrap();
    let open = |name: &str| {
        let mut config = Config::embedded(dir.path().join(name));
        config.catalog.url = Some(url.clone());
        Session::open(config)
    };
    let (first, second) = (open("a").await.unwrap(), open("b").await.unwrap());
    let eph = first.ephemeral(Some(Duration::from_secs(60))).await.unwrap();
    rows(&eph, "CREATE TABLE mutable.public.scratch (id BIGINT PRIMARY KEY, note TEXT)").await;
    rows(&eph, "INSERT INTO mutable.public.scratch VALUES (1, 'a'), (2, 'b')").await;
    assert_eq!(rows(&eph, "SELECT count(*) FROM mutable.public.scratch").await, vec![vec!["2"]]);
    assert!(second.sql("SELECT * FROM mutable.public.scratch").await.is_err(), "the other replica does not reach it");
    assert_eq!(second.catalog().mutable_tables().list_all().await.unwrap().len(), 1);
    // Nothing is expired: the other replica's sweep leaves it alone.
    let id = eph.id();
    let ended = eph.close().await.unwrap().unwrap();
    assert_eq!(ended.rows_deleted, 2);
    assert!(second.catalog().mutable_tables().list_all().await.unwrap().is_empty());
    let record = second.catalog().ephemeral_sessions().get(&id).await.unwrap().unwrap();
    assert_eq!((record.state.as_str(), record.rows_deleted), ("closed", Some(2)));
    assert_eq!(events(&second, &id).await.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), vec!["opened", "closed"]);
}
