//! The engine's side of the adversarial suite: the statement policy, objects owned per
//! tenant, transactions that cannot hold the engine hostage, change-feed tenancy and bounded
//! search arguments. Each test checks the refusal *and* that the victim's data is intact.
//! The server's side (two tokens over HTTP and the Postgres protocol) is in jammi-server.

use std::time::{Duration, Instant};

use jammi_db::topic::{Retention, TopicDefinition};
use jammi_db::vector::{ImportSpec, NoProgress, SearchRequest};
use jammi_db::{Config, Error, Session, TenantId};

use crate::support::*;

fn tenants() -> (TenantId, TenantId) {
    ("0b7e8a52-1c59-4a39-8d7e-6a1b2c3d4e5f".parse().unwrap(), "7f000000-0000-4000-8000-000000000002".parse().unwrap())
}

async fn exec(session: &Session, sql: &str) {
    session.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).collect().await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_and_server_handles_cannot_name_locations() {
    let (session, dir) = temp_session().await;
    let (a, _) = tenants();
    let secret = write_items(dir.path(), "secret.parquet", &items(5, &[]));
    let target = dir.path().join("stolen.csv");
    let as_a = session.with_tenant(Some(a));
    let server_handle = session.with_tenant(None).restricted();
    let attacks = [
        format!("CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '{}'", secret.display()),
        format!("CREATE EXTERNAL TABLE cfg STORED AS CSV LOCATION '{}'", dir.path().join("catalog.db").display()),
        format!("COPY (SELECT 1 AS a) TO '{}' STORED AS CSV", target.display()),
        format!("EXPLAIN COPY (SELECT 1 AS a) TO '{}' STORED AS CSV", target.display()),
        format!("SELECT * FROM (SELECT 1) t, read_parquet('{}')", secret.display()),
        "CREATE TABLE mem AS SELECT 1 AS a".to_string(),
        "SET datafusion.execution.target_partitions = 100000".to_string(),
        "CREATE SCHEMA evil".to_string(),
    ];
    for handle in [&as_a, &server_handle] {
        for sql in &attacks {
            let err = sql_error(handle, sql).await;
            assert!(err.starts_with("permission denied:") && err.contains("refused"), "{sql}: {err}");
        }
        // Prepared statements are checked the same way.
        let err = handle.prepare(&attacks[2]).await.unwrap_err().to_string();
        assert!(err.contains("refused"), "{err}");
    }
    assert!(!target.exists(), "no COPY may have written the file");

    // The operator keeps these abilities ...
    exec(&session, &format!("CREATE EXTERNAL TABLE datafusion.public.mine STORED AS PARQUET LOCATION '{}'", secret.display())).await;
    assert_eq!(scalar(&session, "SELECT count(*) FROM datafusion.public.mine").await, "5");
    // ... unless the configuration takes them away.
    let locked = tempfile::tempdir().unwrap();
    let mut config = Config::embedded(locked.path());
    config.security.operator_locations = false;
    let strict = Session::open(config).await.unwrap();
    let err = sql_error(&strict, &attacks[0]).await;
    assert!(err.contains("refused") && err.contains("jammi source add"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_no_storage_paths_to_tenants() {
    let (session, dir) = temp_session().await;
    let (a, _) = tenants();
    let path = write_items(dir.path(), "private_items.parquet", &items(20, &[]));
    session.sources().add(jammi_db::source::SourceSpec::new("shop", path.display().to_string())).await.unwrap();
    let sql = "EXPLAIN SELECT category, sum(amount) FROM shop.public.private_items GROUP BY category";
    let text = |rows: Vec<Vec<String>>| rows.into_iter().flatten().collect::<Vec<_>>().join("\n");
    let operator = text(rows(&session, sql).await);
    assert!(operator.contains("private_items.parquet"), "the operator sees the file list: {operator}");
    for handle in [session.with_tenant(Some(a)), session.with_tenant(None).restricted()] {
        let shown = text(rows(&handle, sql).await);
        assert!(!shown.contains("private_items.parquet") && !shown.contains(&dir.path().display().to_string()), "{shown}");
        assert!(shown.contains("<redacted>") && shown.contains("Aggregate"), "still a plan: {shown}");
        // The extended-protocol path (prepared) is redacted too.
        let prepared = handle.prepare(sql).await.unwrap().query(Vec::<jammi_db::datafusion::common::ScalarValue>::new()).await.unwrap();
        let shown = text(render(&prepared));
        assert!(!shown.contains("private_items.parquet"), "{shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutable_tables_belong_to_their_tenant() {
    let (session, _dir) = temp_session().await;
    let (a, b) = tenants();
    let (as_a, as_b) = (session.with_tenant(Some(a)), session.with_tenant(Some(b)));
    exec(&as_a, "CREATE TABLE mutable.public.labels (id BIGINT PRIMARY KEY, secret TEXT)").await;
    exec(&as_a, "INSERT INTO mutable.public.labels VALUES (1, 'a-only')").await;

    // B sees neither the name nor the columns, and cannot write, alter or drop it.
    let listed = "SELECT count(*) FROM information_schema.tables WHERE table_catalog = 'mutable' AND table_name = 'labels'";
    assert_eq!(scalar(&as_b, listed).await, "0");
    assert_eq!(scalar(&as_b, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'secret'").await, "0");
    assert_eq!(scalar(&session, listed).await, "0", "the unbound operator sees shared tables only");
    assert_eq!(scalar(&as_a, listed).await, "1");
    for sql in [
        "SELECT * FROM mutable.public.labels",
        "INSERT INTO mutable.public.labels VALUES (2, 'from b')",
        "UPDATE mutable.public.labels SET secret = 'x'",
        "DELETE FROM mutable.public.labels",
        "ALTER TABLE mutable.public.labels ADD COLUMN extra TEXT",
        "DROP TABLE mutable.public.labels",
    ] {
        let err = sql_error(&as_b, sql).await;
        assert!(err.contains("labels") && (err.contains("does not exist") || err.contains("not found")), "{sql}: {err}");
    }
    // B may have its own table of the same name; the two never mix.
    exec(&as_b, "CREATE TABLE mutable.public.labels (id BIGINT PRIMARY KEY, note TEXT)").await;
    exec(&as_b, "INSERT INTO mutable.public.labels VALUES (1, 'b-only')").await;
    assert_eq!(rows(&as_a, "SELECT id, secret FROM mutable.public.labels").await, vec![vec!["1", "a-only"]]);
    assert_eq!(rows(&as_b, "SELECT id, note FROM mutable.public.labels").await, vec![vec!["1", "b-only"]]);
    exec(&as_b, "DROP TABLE mutable.public.labels").await;
    assert_eq!(rows(&as_a, "SELECT secret FROM mutable.public.labels").await, vec![vec!["a-only"]], "A's table survives B's drop");
    // The admin scope sees every tenant's table.
    let all = session.admin(|s| async move { scalar(&s, "SELECT count(*) FROM information_schema.tables WHERE table_catalog = 'mutable' AND table_schema = 'public'").await }).await;
    assert_eq!(all, "1");
    // A shared (operator) table is visible to tenants, who may not drop it.
    exec(&session, "CREATE TABLE mutable.public.shared_flags (k TEXT PRIMARY KEY)").await;
    assert!(sql_error(&as_a, "DROP TABLE mutable.public.shared_flags").await.contains("permission denied"));
    assert_eq!(scalar(&as_a, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'shared_flags'").await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_feed_events_carry_the_rows_tenant() {
    let (session, _dir) = temp_session().await;
    let (a, b) = tenants();
    exec(&session, "CREATE TABLE mutable.public.notes (id BIGINT PRIMARY KEY, body TEXT)").await;
    session
        .topics()
        .create(TopicDefinition { name: "note_changes".into(), columns: vec![], source_table: Some("mutable.public.notes".into()), retention: Retention::default() })
        .await
        .unwrap();
    let (as_a, as_b) = (session.with_tenant(Some(a)), session.with_tenant(Some(b)));
    exec(&as_a, "INSERT INTO mutable.public.notes VALUES (1, 'private to a')").await;
    // The admin scope edits A's row: the event still belongs to A, not to everyone.
    session.admin(|s| async move { exec(&s, "UPDATE mutable.public.notes SET body = 'edited by admin' WHERE id = 1").await }).await;
    exec(&session, "INSERT INTO mutable.public.notes VALUES (2, 'shared')").await;
    assert_eq!(scalar(&as_a, "SELECT count(*) FROM topics.public.note_changes").await, "3");
    assert_eq!(rows(&as_b, "SELECT op FROM topics.public.note_changes").await, vec![vec!["insert"]], "B sees only the shared row's event");
    assert_eq!(scalar(&session, "SELECT count(*) FROM topics.public.note_changes WHERE new LIKE '%private%' OR new LIKE '%admin%'").await, "0");

    // A tenant's change feed follows its own table, never another tenant's of that name.
    exec(&as_b, "CREATE TABLE mutable.public.mine (id BIGINT PRIMARY KEY)").await;
    as_b.topics()
        .create(TopicDefinition { name: "mine_changes".into(), columns: vec![], source_table: Some("mutable.public.mine".into()), retention: Retention::default() })
        .await
        .unwrap();
    exec(&as_a, "CREATE TABLE mutable.public.mine (id BIGINT PRIMARY KEY)").await;
    exec(&as_a, "INSERT INTO mutable.public.mine VALUES (7)").await;
    exec(&as_b, "INSERT INTO mutable.public.mine VALUES (8)").await;
    assert_eq!(rows(&as_b, "SELECT key FROM topics.public.mine_changes").await, vec![vec![r#"{"id":8}"#]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_transactions_are_rolled_back_and_release_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded(dir.path());
    config.security.idle_in_transaction_timeout_ms = 400;
    let session = Session::open(config).await.unwrap();
    exec(&session, "CREATE TABLE mutable.public.t (id BIGINT PRIMARY KEY)").await;
    let quiet = session.with_tenant(None);
    exec(&quiet, "BEGIN").await;
    exec(&quiet, "INSERT INTO mutable.public.t VALUES (1)").await;
    // The quiet client holds the writer; another writer gets through once it times out.
    let started = Instant::now();
    let other = session.with_tenant(None);
    tokio::time::timeout(Duration::from_secs(10), exec(&other, "INSERT INTO mutable.public.t VALUES (2)")).await.expect("the idle transaction must not stall other writers");
    assert!(started.elapsed() >= Duration::from_millis(300), "the writer waited for the timeout, not less: {:?}", started.elapsed());
    // The quiet client is told why on its next statement, until it ends the transaction.
    let err = quiet.sql("SELECT count(*) FROM mutable.public.t").await.map(|_| ()).unwrap_err();
    assert!(matches!(err, Error::IdleInTransactionTimeout { timeout_ms: 400 }), "{err}");
    assert!(sql_error(&quiet, "INSERT INTO mutable.public.t VALUES (3)").await.contains("idle_in_transaction_timeout"));
    exec(&quiet, "ROLLBACK").await;
    assert_eq!(rows(&quiet, "SELECT id FROM mutable.public.t ORDER BY id").await, vec![vec!["2"]], "nothing of the rolled-back transaction was kept");

    // A busy transaction is not idle: statements keep it alive past the timeout.
    exec(&quiet, "BEGIN").await;
    for i in 10..16 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        exec(&quiet, &format!("INSERT INTO mutable.public.t VALUES ({i})")).await;
    }
    exec(&quiet, "COMMIT").await;
    assert_eq!(scalar(&session, "SELECT count(*) FROM mutable.public.t").await, "7");

    // COMMIT of a timed-out transaction reports it and commits nothing.
    exec(&quiet, "SET idle_in_transaction_timeout = '100ms'").await;
    exec(&quiet, "BEGIN").await;
    exec(&quiet, "INSERT INTO mutable.public.t VALUES (99)").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(sql_error(&quiet, "COMMIT").await.contains("rolled back"));
    assert_eq!(scalar(&session, "SELECT count(*) FROM mutable.public.t WHERE id = 99").await, "0");

    // Server clients and tenants may shorten the timeout, never lengthen or disable it.
    let restricted = session.with_tenant(None).restricted();
    for sql in ["SET idle_in_transaction_timeout = 0", "SET idle_in_transaction_timeout = '1h'"] {
        assert!(sql_error(&restricted, sql).await.contains("at most 400 ms"), "{sql}");
    }
    exec(&restricted, "SET idle_in_transaction_timeout = 50").await;
    assert!(sql_error(&restricted, "SET idle_in_transaction_timeout = 'soon'").await.contains("invalid value"));
}

/// Two engines on one catalog, as two processes would be: explicit read-modify-write
/// transactions from both lose no update.
async fn read_modify_write_across_engines(pg: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded(dir.path().join("home"));
    if pg {
        config.catalog.url = Some(fresh_pg_database().await);
    }
    let first = Session::open(config.clone()).await.unwrap();
    let second = Session::open(config).await.unwrap();
    exec(&first, "CREATE TABLE mutable.public.counter (id INT PRIMARY KEY, n BIGINT NOT NULL)").await;
    exec(&first, "INSERT INTO mutable.public.counter VALUES (1, 0)").await;
    let mut tasks = Vec::new();
    for t in 0..4 {
        let engine = if t % 2 == 0 { first.with_tenant(None) } else { second.with_tenant(None) };
        tasks.push(tokio::spawn(async move {
            for _ in 0..8 {
                exec(&engine, "BEGIN").await;
                let n: i64 = scalar(&engine, "SELECT n FROM mutable.public.counter WHERE id = 1").await.parse().unwrap();
                tokio::task::yield_now().await;
                exec(&engine, &format!("UPDATE mutable.public.counter SET n = {} WHERE id = 1", n + 1)).await;
                exec(&engine, "COMMIT").await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(scalar(&second, "SELECT n FROM mutable.public.counter").await, "32", "every read-modify-write counted once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_modify_write_across_engines_on_sqlite() {
    read_modify_write_across_engines(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_modify_write_across_engines_on_postgres() {
    read_modify_write_across_engines(true).await;
}

/// A vector table of `n` rows of `dims` dimensions (deterministic pseudo-random values).
async fn vector_table(session: &Session, dir: &std::path::Path, n: usize, dims: usize) {
    use jammi_db::datafusion::arrow::array::{Array, FixedSizeListArray, Float32Array, Int64Array, RecordBatch};
    use jammi_db::datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let mut state = 0x9e3779b97f4a7c15u64;
    let values: Vec<f32> = (0..n * dims)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 2000) as f32 / 1000.0 - 1.0
        })
        .collect();
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let vectors = FixedSizeListArray::try_new(item, dims as i32, Arc::new(Float32Array::from(values)), None).unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("embedding", vectors.data_type().clone(), false)]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())), Arc::new(vectors)]).unwrap();
    let path = dir.join("vectors.parquet");
    let file = std::fs::File::create(&path).unwrap();
    let mut writer = jammi_db::datafusion::parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    session.vectors().import(ImportSpec::new("v", path.display().to_string(), "id", "embedding"), &NoProgress).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn search_arguments_are_bounded_and_per_call() {
    let (session, dir) = temp_session().await;
    vector_table(&session, dir.path(), 3000, 8).await;
    let q = "[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]";
    for (sql, argument) in [
        (format!("SELECT * FROM vector_search('v', '{q}', 9223372036854775807)"), "k"),
        (format!("SELECT * FROM vector_search('v', '{q}', 10001)"), "k"),
        (format!("SELECT * FROM vector_search('v', '{q}', 5, NULL, 9223372036854775807)"), "ef"),
        (format!("SELECT * FROM vector_search('v', '{q}', 5, NULL, 1000000)"), "ef"),
        (format!("SELECT * FROM vector_search('v', '{q}', 5, '{}')", "(".repeat(200) + "id > 1" + &")".repeat(200)), "nesting depth"),
        (format!("SELECT * FROM vector_search('v', '{q}', 5, 'id > {}')", "1".repeat(20_000)), "filter (bytes)"),
    ] {
        let err = sql_error(&session, &sql).await;
        assert!(err.contains(argument) && (err.contains("over the limit") || err.contains("positive integer")), "{argument}: {err}");
    }
    // The API refuses the same values with the typed error.
    let vector: Vec<f32> = (1..=8).map(|i| i as f32 / 10.0).collect();
    let err = session.vectors().search("v", &SearchRequest::new(vector.clone(), usize::MAX)).await.unwrap_err();
    assert!(matches!(err, Error::LimitExceeded { ref argument, .. } if argument == "k"), "{err}");
    let mut wide = SearchRequest::new(vector.clone(), 5);
    wide.ef = Some(usize::MAX);
    assert!(matches!(session.vectors().search("v", &wide).await.unwrap_err(), Error::LimitExceeded { .. }));

    // Concurrent searches with different ef each get exactly the answer they get alone.
    let alone = |ef: usize| {
        let (session, vector) = (session.clone(), vector.clone());
        async move {
            let mut request = SearchRequest::new(vector, 20);
            request.ef = Some(ef);
            session.vectors().search("v", &request).await.unwrap().batch
        }
    };
    let (narrow, broad) = (alone(20).await, alone(800).await);
    let mut tasks = Vec::new();
    for i in 0..24 {
        let run = alone(if i % 2 == 0 { 20 } else { 800 });
        tasks.push(tokio::spawn(run));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let got = t.await.unwrap();
        assert_eq!(render(&[got]), render(&[if i % 2 == 0 { narrow.clone() } else { broad.clone() }]), "search {i}");
    }
}

/// Each open transaction holds a catalog connection: clients opening many cannot take the
/// whole pool. At most half of it goes to `BEGIN`; one more is refused at once, and
/// autocommit statements keep working meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn open_transactions_cannot_take_the_whole_pool() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded(dir.path().join("home"));
    config.catalog.url = Some(fresh_pg_database().await);
    config.catalog.max_connections = 4;
    let session = Session::open(config).await.unwrap();
    exec(&session, "CREATE TABLE mutable.public.a (id BIGINT PRIMARY KEY)").await;
    exec(&session, "CREATE TABLE mutable.public.b (id BIGINT PRIMARY KEY)").await;
    let (first, second, third) = (session.with_tenant(None), session.with_tenant(None), session.with_tenant(None));
    exec(&first, "BEGIN").await;
    exec(&first, "INSERT INTO mutable.public.a VALUES (1)").await;
    exec(&second, "BEGIN").await;
    let err = third.sql("BEGIN").await.map(|_| ()).unwrap_err();
    assert!(matches!(&err, Error::LimitExceeded { argument, .. } if argument.contains("open transactions")), "{err}");
    assert!(err.to_string().contains("COMMIT or ROLLBACK"), "{err}");
    // Autocommit work still gets connections.
    tokio::time::timeout(Duration::from_secs(10), exec(&third, "INSERT INTO mutable.public.b VALUES (7)")).await.expect("autocommit writes are not starved");
    exec(&first, "COMMIT").await;
    exec(&third, "BEGIN").await;
    exec(&third, "ROLLBACK").await;
    exec(&second, "ROLLBACK").await;
    assert_eq!(scalar(&session, "SELECT count(*) FROM mutable.public.a").await, "1");
}
