//! Mutable tables: one suite, run on the SQLite catalog and on a real PostgreSQL catalog.
//! Types round-trip exactly, DML returns counts, statements and transactions are atomic,
//! errors name the table and column, tenancy stamps and scopes rows, reads push down, and
//! concurrent read-modify-write never loses an update.

use std::sync::Arc;

use jammi_db::datafusion::arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, FixedSizeListArray, Float32Array, Float64Array,
    Int16Array, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use jammi_db::datafusion::arrow::datatypes::{DataType, Field, Schema};
use jammi_db::datafusion::parquet::arrow::ArrowWriter;
use jammi_db::source::SourceSpec;
use jammi_db::{Session, TenantId};

use crate::support::*;


async fn exec(session: &Session, sql: &str) -> u64 {
    let r = rows(session, sql).await;
    r.first().and_then(|row| row.first()).and_then(|c| c.parse().ok()).unwrap_or(0)
}

async fn batches(session: &Session, sql: &str) -> Vec<RecordBatch> {
    session.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).collect().await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Every supported type, with NULLs and extreme values, as an Arrow batch.
fn every_type() -> RecordBatch {
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2, 3]))),
        ("b", Arc::new(BooleanArray::from(vec![Some(true), Some(false), None]))),
        ("s", Arc::new(Int16Array::from(vec![Some(i16::MIN), Some(i16::MAX), None]))),
        ("i", Arc::new(Int32Array::from(vec![Some(i32::MIN), Some(i32::MAX), None]))),
        ("l", Arc::new(Int64Array::from(vec![Some(i64::MIN), Some(i64::MAX), None]))),
        ("r", Arc::new(Float32Array::from(vec![Some(f32::MAX), Some(-f32::MIN_POSITIVE), None]))),
        ("d", Arc::new(Float64Array::from(vec![Some(f64::MAX), Some(f64::NEG_INFINITY), None]))),
        (
            "m",
            Arc::new(
                Decimal128Array::from(vec![Some(99_999_999_999_999_999_999_999_999_999_999_999_999i128), Some(-1), None])
                    .with_precision_and_scale(38, 10)
                    .unwrap(),
            ),
        ),
        ("t", Arc::new(StringArray::from(vec![Some("héllo 'quoted' \"x\" ✓"), Some(""), None]))),
        ("y", Arc::new(BinaryArray::from(vec![Some(&[0u8, 255, 7][..]), Some(&[][..]), None]))),
        ("dt", Arc::new(Date32Array::from(vec![Some(-719_162), Some(2_932_896), None]))),
        ("ts", Arc::new(TimestampMicrosecondArray::from(vec![Some(i64::MIN + 1), Some(1), None]))),
        ("tz", Arc::new(TimestampMicrosecondArray::from(vec![Some(1_709_251_199_999_999), Some(-1), None]).with_timezone("UTC"))),
        ("j", Arc::new(StringArray::from(vec![Some(r#"{"a":[1,2,{"b":null}]}"#), Some("[]"), None]))),
        (
            "v",
            Arc::new(
                FixedSizeListArray::try_new(
                    item,
                    3,
                    Arc::new(Float32Array::from(vec![1.5, -2.0, 3e-5, f32::MAX, 0.0, -0.0, 0.0, 0.0, 0.0])),
                    Some(vec![true, true, false].into()),
                )
                .unwrap(),
            ),
        ),
    ];
    let schema = Schema::new(columns.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), *n != "id")).collect::<Vec<_>>());
    RecordBatch::try_new(Arc::new(schema), columns.into_iter().map(|(_, a)| a).collect()).unwrap()
}

const EVERY_TYPE_TABLE: &str = "CREATE TABLE mutable.public.all_types (
    id BIGINT PRIMARY KEY, b BOOLEAN, s SMALLINT, i INT, l BIGINT, r REAL, d DOUBLE, m DECIMAL(38,10),
    t TEXT, y BYTEA, dt DATE, ts TIMESTAMP, tz TIMESTAMPTZ, j JSON, v VECTOR(3))";

async fn types_round_trip(session: &Session, dir: &std::path::Path) {
    exec(session, EVERY_TYPE_TABLE).await;
    let batch = every_type();
    let file = dir.join("every_type.parquet");
    let mut writer = ArrowWriter::try_new(std::fs::File::create(&file).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    session.sources().add(SourceSpec::new("src", file.display().to_string())).await.unwrap();
    assert_eq!(exec(session, "INSERT INTO mutable.public.all_types SELECT * FROM src.public.every_type").await, 3);
    let got = batches(session, "SELECT * FROM mutable.public.all_types ORDER BY id").await;
    assert_eq!(got.len(), 1);
    for (i, field) in batch.schema().fields().iter().enumerate() {
        assert_eq!(got[0].column(i).as_ref(), batch.column(i).as_ref(), "column {} did not round-trip", field.name());
    }
    // Literals in SQL land as the same values.
    exec(
        session,
        "INSERT INTO mutable.public.all_types (id, b, s, m, t, y, dt, ts, tz, j, v) VALUES \
         (4, true, -32768, CAST('-12.5' AS DECIMAL(38,10)), 'it''s', X'00ff', DATE '9999-12-31', \
          TIMESTAMP '2024-02-29 23:59:59.123456', TIMESTAMP '2024-01-01T00:00:00Z', '{\"k\": 1}', '[1, 2, 3]')",
    )
    .await;
    let r = rows(session, "SELECT b, s, m, t, y, dt, ts, j, v, i FROM mutable.public.all_types WHERE id = 4").await;
    assert_eq!(
        r,
        vec![vec!["true", "-32768", "-12.5000000000", "it's", "00ff", "9999-12-31", "2024-02-29T23:59:59.123456", "{\"k\": 1}", "[1.0, 2.0, 3.0]", "NULL"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()]
    );
}

async fn dml_counts_subqueries_and_upserts(session: &Session, dir: &std::path::Path) {
    exec(session, "CREATE TABLE mutable.public.labels (doc BIGINT PRIMARY KEY, label TEXT NOT NULL, votes INT DEFAULT 0, note TEXT)").await;
    assert_eq!(exec(session, "INSERT INTO mutable.public.labels (doc, label) VALUES (1, 'cat'), (2, 'dog'), (3, 'cat')").await, 3);
    assert_eq!(rows(session, "SELECT votes, note FROM mutable.public.labels WHERE doc = 2").await, vec![vec!["0".to_string(), "NULL".to_string()]]);
    // A source to reference from DML.
    let file = dir.join("docs.csv");
    std::fs::write(&file, "doc,flagged\n1,true\n3,true\n4,false\n5,true\n").unwrap();
    session.sources().add(SourceSpec::new("docs", file.display().to_string())).await.unwrap();
    assert_eq!(exec(session, "INSERT INTO mutable.public.labels (doc, label) SELECT doc, 'new' FROM docs.public.docs WHERE doc > 3").await, 2);
    assert_eq!(
        exec(session, "UPDATE mutable.public.labels SET votes = votes + 10, note = 'flagged' WHERE doc IN (SELECT doc FROM docs.public.docs WHERE flagged)").await,
        3
    );
    assert_eq!(
        exec(
            session,
            "DELETE FROM mutable.public.labels l WHERE EXISTS (SELECT 1 FROM docs.public.docs d WHERE d.doc = l.doc AND NOT d.flagged)"
        )
        .await,
        1
    );
    assert_eq!(exec(session, "INSERT INTO mutable.public.labels (doc, label) VALUES (1, 'x'), (9, 'y') ON CONFLICT (doc) DO NOTHING").await, 1);
    assert_eq!(
        exec(
            session,
            "INSERT INTO mutable.public.labels (doc, label, votes) VALUES (1, 'bird', 5), (10, 'fish', 1) \
             ON CONFLICT (doc) DO UPDATE SET votes = votes + excluded.votes, label = excluded.label"
        )
        .await,
        2
    );
    // INSERT ... SELECT from a vector search.
    let vectors = crate::vectors::rows_from(crate::vectors::clustered(50, 4, 5), 1);
    let file = dir.join("v.parquet");
    crate::vectors::write_rows(&file, &vectors, true);
    crate::vectors::import(session, "v", &file, jammi_db::vector::Metric::L2, jammi_db::vector::Precision::F32).await;
    exec(session, "CREATE TABLE mutable.public.hits (id BIGINT PRIMARY KEY, distance REAL NOT NULL, rank BIGINT)").await;
    let q = format!("[{}]", vectors[7].vector.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(","));
    assert_eq!(exec(session, &format!("INSERT INTO mutable.public.hits SELECT id, _distance, _rank FROM vector_search('v', '{q}', 3)")).await, 3);
    assert_eq!(rows(session, "SELECT id, distance FROM mutable.public.hits WHERE rank = 1").await, vec![vec![vectors[7].id.to_string(), "0.0".to_string()]]);
    // Update then read back: INSERT ... SELECT from a mutable table into another.
    exec(session, "CREATE TABLE mutable.public.copy (doc BIGINT PRIMARY KEY, label TEXT)").await;
    assert_eq!(exec(session, "INSERT INTO mutable.public.copy SELECT doc, label FROM mutable.public.labels WHERE votes > 0").await, 4);
    let got = rows(session, "SELECT doc, label, votes, note FROM mutable.public.labels ORDER BY doc").await;
    let want = [
        ["1", "bird", "15", "flagged"],
        ["2", "dog", "0", "NULL"],
        ["3", "cat", "10", "flagged"],
        ["5", "new", "10", "flagged"],
        ["9", "y", "0", "NULL"],
        ["10", "fish", "1", "NULL"],
    ];
    assert_eq!(got, want.iter().map(|r| r.iter().map(|s| s.to_string()).collect::<Vec<_>>()).collect::<Vec<_>>());
    // Joins with other tables in one plan.
    assert_eq!(
        scalar(session, "SELECT count(*) FROM mutable.public.labels l JOIN docs.public.docs d ON d.doc = l.doc JOIN mutable.public.copy c ON c.doc = l.doc").await,
        "3"
    );
    // DDL: ADD COLUMN fills existing rows with its default; a unique index is enforced.
    exec(session, "ALTER TABLE mutable.public.labels ADD COLUMN reviewed BOOLEAN NOT NULL DEFAULT false").await;
    assert_eq!(scalar(session, "SELECT count(*) FROM mutable.public.labels WHERE NOT reviewed").await, "6");
    exec(session, "CREATE UNIQUE INDEX labels_note ON mutable.public.copy (label)").await;
    let err = sql_error(session, "INSERT INTO mutable.public.copy VALUES (100, 'bird')").await;
    assert!(err.contains("mutable.public.copy") && err.contains("label"), "{err}");
    exec(session, "DROP TABLE mutable.public.copy").await;
    exec(session, "DROP TABLE IF EXISTS mutable.public.copy").await;
    assert!(sql_error(session, "SELECT * FROM mutable.public.copy").await.contains("copy"));
}

async fn errors_name_the_problem_and_write_nothing(session: &Session) {
    exec(session, "CREATE TABLE mutable.public.e (id INT PRIMARY KEY, name TEXT NOT NULL, n INT)").await;
    exec(session, "INSERT INTO mutable.public.e VALUES (1, 'a', 1)").await;
    let cases = [
        ("INSERT INTO mutable.public.e VALUES (2, 'b', 2), (3, NULL, 3)", vec!["mutable.public.e", "'name'", "NOT NULL"]),
        ("INSERT INTO mutable.public.e VALUES (4, 'c', 4), (1, 'dup', 1)", vec!["mutable.public.e", "id", "duplicate key"]),
        ("INSERT INTO mutable.public.e VALUES (5, 'd', 'not a number')", vec!["mutable.public.e", "'n'", "INT"]),
        ("INSERT INTO mutable.public.e (id, nope) VALUES (6, 1)", vec!["mutable.public.e", "nope"]),
        ("INSERT INTO mutable.public.ghost VALUES (1)", vec!["mutable.public.ghost", "does not exist"]),
        ("UPDATE mutable.public.e SET name = NULL WHERE id = 1", vec!["'name'", "NOT NULL"]),
        ("UPDATE mutable.public.e SET missing = 1", vec!["missing"]),
        ("CREATE TABLE mutable.public.nokey (a INT)", vec!["PRIMARY KEY"]),
        ("CREATE TABLE mutable.public.badtype (a INTERVAL PRIMARY KEY)", vec!["'a'", "not supported"]),
        ("CREATE TABLE mutable.public.e (id INT PRIMARY KEY)", vec!["already exists"]),
    ];
    for (sql, needles) in cases {
        let err = sql_error(session, sql).await;
        for needle in needles {
            assert!(err.contains(needle), "{sql}: expected '{needle}' in: {err}");
        }
    }
    assert_eq!(rows(session, "SELECT id, name, n FROM mutable.public.e").await, vec![vec!["1".to_string(), "a".to_string(), "1".to_string()]]);
}

async fn transactions_group_statements(session: &Session) {
    exec(session, "CREATE TABLE mutable.public.acct (id INT PRIMARY KEY, balance BIGINT NOT NULL)").await;
    exec(session, "INSERT INTO mutable.public.acct VALUES (1, 100), (2, 0)").await;
    // Rolled back: nothing of it remains; inside, the transaction saw its own writes.
    session.sql("BEGIN").await.unwrap().collect().await.unwrap();
    exec(session, "INSERT INTO mutable.public.acct VALUES (3, 7)").await;
    assert_eq!(exec(session, "UPDATE mutable.public.acct SET balance = balance + 1 WHERE id = 3").await, 1);
    assert_eq!(scalar(session, "SELECT balance FROM mutable.public.acct WHERE id = 3").await, "8");
    session.sql("ROLLBACK").await.unwrap().collect().await.unwrap();
    assert_eq!(scalar(session, "SELECT count(*) FROM mutable.public.acct").await, "2");
    // Committed: both statements; a failed statement in between leaves the others.
    let script = "BEGIN; UPDATE mutable.public.acct SET balance = balance - 30 WHERE id = 1; \
                  UPDATE mutable.public.acct SET balance = balance + 30 WHERE id = 2";
    session.sql(script).await.unwrap().collect().await.unwrap();
    assert!(sql_error(session, "INSERT INTO mutable.public.acct VALUES (2, 1)").await.contains("duplicate"));
    session.sql("COMMIT").await.unwrap().collect().await.unwrap();
    assert_eq!(rows(session, "SELECT balance FROM mutable.public.acct ORDER BY id").await, vec![vec!["70".to_string()], vec!["30".to_string()]]);
    assert!(sql_error(session, "COMMIT").await.contains("no transaction"));
}

async fn run(session: &Session, sql: &str) {
    session.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).collect().await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Drivers (psycopg, SQLAlchemy, JDBC) open a transaction before the first statement, DDL
/// included: definitions change with the transaction and only it sees them until COMMIT.
async fn ddl_commits_and_rolls_back_with_the_transaction(session: &Session, pg: bool) {
    let other = session.with_tenant(None);
    // Created, used and rolled back: nothing remains, the name is free again.
    run(session, "BEGIN").await;
    run(session, "CREATE TABLE mutable.public.draft (id INT PRIMARY KEY, note TEXT)").await;
    assert_eq!(exec(session, "INSERT INTO mutable.public.draft VALUES (1, 'a'), (2, 'b')").await, 2);
    assert_eq!(scalar(session, "SELECT count(*) FROM mutable.public.draft").await, "2");
    assert!(sql_error(&other, "SELECT * FROM mutable.public.draft").await.contains("not found"), "uncommitted DDL is private to its transaction");
    run(session, "ROLLBACK").await;
    assert!(sql_error(session, "SELECT * FROM mutable.public.draft").await.contains("not found"));

    // Create, alter, index, fill and commit: every session sees all of it.
    run(session, "BEGIN").await;
    run(session, "CREATE TABLE mutable.public.draft (id INT PRIMARY KEY, note TEXT)").await;
    run(session, "INSERT INTO mutable.public.draft VALUES (1, 'a')").await;
    run(session, "ALTER TABLE mutable.public.draft ADD COLUMN score DOUBLE DEFAULT 0.5").await;
    assert_eq!(rows(session, "SELECT id, note, score FROM mutable.public.draft").await, vec![vec!["1", "a", "0.5"]]);
    run(session, "CREATE UNIQUE INDEX ON mutable.public.draft (note)").await;
    // A failed statement (here a DDL one) leaves the transaction and its earlier work.
    assert!(sql_error(session, "CREATE TABLE mutable.public.draft (x INT PRIMARY KEY)").await.contains("already exists"));
    assert!(sql_error(session, "INSERT INTO mutable.public.draft (id, note) VALUES (2, 'a')").await.contains("duplicate"), "the index is in force inside the transaction");
    run(session, "INSERT INTO mutable.public.draft (id, note, score) VALUES (2, 'b', 2.0)").await;
    run(session, "COMMIT").await;
    assert_eq!(rows(&other, "SELECT id, note, score FROM mutable.public.draft ORDER BY id").await, vec![vec!["1", "a", "0.5"], vec!["2", "b", "2.0"]]);
    assert!(sql_error(&other, "INSERT INTO mutable.public.draft (id, note) VALUES (3, 'b')").await.contains("duplicate"));

    // Dropped and rolled back: the table and its rows are back.
    run(session, "BEGIN").await;
    run(session, "DROP TABLE mutable.public.draft").await;
    assert!(sql_error(session, "SELECT * FROM mutable.public.draft").await.contains("not found"));
    if !pg {
        // (On Postgres the DROP holds the table's lock: other readers wait for the outcome.)
        assert_eq!(scalar(&other, "SELECT count(*) FROM mutable.public.draft").await, "2", "the drop is private until COMMIT");
    }
    run(session, "ROLLBACK").await;
    assert_eq!(scalar(&other, "SELECT count(*) FROM mutable.public.draft").await, "2");
    assert_eq!(scalar(session, "SELECT count(*) FROM mutable.public.draft").await, "2");

    // Dropped and committed.
    run(session, "BEGIN; DROP TABLE mutable.public.draft; COMMIT").await;
    assert!(sql_error(&other, "SELECT * FROM mutable.public.draft").await.contains("not found"));
}

/// Savepoints (psycopg's nested `transaction()` blocks) undo part of a transaction, DDL
/// included; unknown names are refused without harming the transaction.
async fn savepoints_undo_part_of_a_transaction(session: &Session) {
    run(session, "CREATE TABLE mutable.public.sp (id INT PRIMARY KEY, v TEXT)").await;
    run(session, "BEGIN").await;
    run(session, "INSERT INTO mutable.public.sp VALUES (1, 'kept')").await;
    run(session, "SAVEPOINT before_more").await;
    run(session, "INSERT INTO mutable.public.sp VALUES (2, 'undone')").await;
    run(session, "CREATE TABLE mutable.public.sp_extra (id INT PRIMARY KEY)").await;
    run(session, "ROLLBACK TO SAVEPOINT before_more").await;
    assert!(sql_error(session, "SELECT * FROM mutable.public.sp_extra").await.contains("not found"), "DDL after the savepoint is undone");
    assert!(sql_error(session, "ROLLBACK TO SAVEPOINT never_made").await.contains("does not exist"));
    assert!(sql_error(session, "SAVEPOINT jammi_statement").await.contains("not allowed"));
    run(session, "SAVEPOINT inner_one").await;
    run(session, "UPDATE mutable.public.sp SET v = 'changed' WHERE id = 1").await;
    run(session, "RELEASE SAVEPOINT before_more").await;
    assert!(sql_error(session, "ROLLBACK TO inner_one").await.contains("does not exist"), "RELEASE ends later savepoints too");
    run(session, "INSERT INTO mutable.public.sp VALUES (3, 'after')").await;
    run(session, "COMMIT").await;
    assert_eq!(rows(session, "SELECT id, v FROM mutable.public.sp ORDER BY id").await, vec![vec!["1", "changed"], vec!["3", "after"]]);
    assert!(sql_error(session, "SAVEPOINT outside").await.contains("only inside BEGIN"));
}

async fn tenants_see_and_change_only_their_rows(session: &Session) {
    let a: TenantId = "0b7e8a52-1c59-4a39-8d7e-6a1b2c3d4e5f".parse().unwrap();
    let b: TenantId = "7f000000-0000-4000-8000-000000000002".parse().unwrap();
    let (as_a, as_b) = (session.with_tenant(Some(a)), session.with_tenant(Some(b)));
    exec(session, "CREATE TABLE mutable.public.flags (k TEXT PRIMARY KEY, v INT)").await;
    exec(session, "INSERT INTO mutable.public.flags VALUES ('shared', 0)").await;
    exec(&as_a, "INSERT INTO mutable.public.flags VALUES ('x', 1)").await;
    exec(&as_b, "INSERT INTO mutable.public.flags VALUES ('x', 2)").await;
    let cols: Vec<String> = batches(&as_a, "SELECT * FROM mutable.public.flags").await[0].schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(cols, vec!["k", "v"], "SELECT * never shows tenant_id");
    assert_eq!(rows(&as_a, "SELECT k, v FROM mutable.public.flags ORDER BY k").await, vec![vec!["shared", "0"], vec!["x", "1"]]);
    assert_eq!(rows(session, "SELECT k, v FROM mutable.public.flags").await, vec![vec!["shared", "0"]]);
    assert_eq!(exec(&as_a, "UPDATE mutable.public.flags SET v = v + 100").await, 1, "only its own row");
    assert_eq!(exec(&as_a, "DELETE FROM mutable.public.flags WHERE k = 'shared'").await, 0, "shared rows are read-only to tenants");
    assert_eq!(rows(&as_b, "SELECT v FROM mutable.public.flags WHERE k = 'x'").await, vec![vec!["2"]]);
    let all = session.admin(|s| async move { rows(&s, "SELECT k, v FROM mutable.public.flags ORDER BY k, v").await }).await;
    assert_eq!(all, vec![vec!["shared", "0"], vec!["x", "2"], vec!["x", "101"]]);
    // Only the creator changes the definition.
    assert!(sql_error(&as_a, "DROP TABLE mutable.public.flags").await.contains("permission denied"));
}

async fn reads_push_down_filters_and_limits(session: &Session, pg: bool) {
    exec(session, "CREATE TABLE mutable.public.big (id BIGINT PRIMARY KEY, grp INT, name TEXT)").await;
    let values: Vec<String> = (0..2000).map(|i| format!("({i}, {}, 'n{i}')", i % 7)).collect();
    assert_eq!(exec(session, &format!("INSERT INTO mutable.public.big VALUES {}", values.join(", "))).await, 2000);
    let plan = rows(session, "EXPLAIN ANALYZE SELECT name FROM mutable.public.big WHERE id = 1234").await;
    let text = plan.iter().map(|r| r.join(" ")).collect::<Vec<_>>().join("\n");
    assert!(text.contains("MutableScanExec") && text.contains("\"id\" = $") && text.contains("output_rows=1"), "{text}");
    let plan = rows(session, "EXPLAIN SELECT id FROM mutable.public.big WHERE grp IN (1, 2) AND id >= 10 LIMIT 5").await;
    let text = plan.iter().map(|r| r.join(" ")).collect::<Vec<_>>().join("\n");
    assert!(text.contains("\"grp\" = $") && text.contains("\"id\" >= $") && text.contains("LIMIT 5"), "{text}");
    assert_eq!(scalar(session, "SELECT name FROM mutable.public.big WHERE id = 1234").await, "n1234");
    assert_eq!(scalar(session, "SELECT count(*) FROM mutable.public.big WHERE grp = 3 AND name LIKE 'n1%'").await, ((0..2000).filter(|i| i % 7 == 3 && format!("n{i}").starts_with("n1")).count()).to_string());
    if !pg {
        // SQLite: the pushed-down lookup is an index search, not a scan.
        let storage: (String,) = sqlx::query_as("SELECT storage FROM jammi_mutable_tables WHERE name = 'big'").fetch_one(session.catalog().pool()).await.unwrap();
        let sql = format!("EXPLAIN QUERY PLAN SELECT \"name\" FROM \"{}\" WHERE (\"tenant_id\" = '') AND (\"id\" = 1234)", storage.0);
        let detail: Vec<(i64, i64, i64, String)> = sqlx::query_as(&sql).fetch_all(session.catalog().pool()).await.unwrap();
        assert!(detail.iter().any(|d| d.3.contains("SEARCH") && (d.3.contains("PRIMARY KEY") || d.3.contains("INDEX"))), "{detail:?}");
    }
}

async fn concurrent_increments_lose_nothing(session: &Session) {
    exec(session, "CREATE TABLE mutable.public.counter (id INT PRIMARY KEY, n BIGINT NOT NULL)").await;
    exec(session, "INSERT INTO mutable.public.counter VALUES (1, 0)").await;
    let mut tasks = Vec::new();
    for t in 0..6 {
        let s = session.with_tenant(None);
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                if t % 2 == 0 {
                    // One statement.
                    s.sql("UPDATE mutable.public.counter SET n = n + 1 WHERE id = 1").await.unwrap().collect().await.unwrap();
                } else {
                    // Read, then write what was read plus one, in a transaction.
                    s.sql("BEGIN").await.unwrap().collect().await.unwrap();
                    let n: i64 = scalar(&s, "SELECT n FROM mutable.public.counter WHERE id = 1").await.parse().unwrap();
                    s.sql(&format!("UPDATE mutable.public.counter SET n = {} WHERE id = 1", n + 1)).await.unwrap().collect().await.unwrap();
                    s.sql("COMMIT").await.unwrap().collect().await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(scalar(session, "SELECT n FROM mutable.public.counter").await, "60");
}

async fn suite(pg: bool) {
    let (session, dir) = backend_session(pg).await;
    types_round_trip(&session, dir.path()).await;
    dml_counts_subqueries_and_upserts(&session, dir.path()).await;
    errors_name_the_problem_and_write_nothing(&session).await;
    transactions_group_statements(&session).await;
    ddl_commits_and_rolls_back_with_the_transaction(&session, pg).await;
    savepoints_undo_part_of_a_transaction(&session).await;
    tenants_see_and_change_only_their_rows(&session).await;
    reads_push_down_filters_and_limits(&session, pg).await;
    concurrent_increments_lose_nothing(&session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutable_tables_on_sqlite() {
    suite(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutable_tables_on_postgres() {
    suite(true).await;
}
