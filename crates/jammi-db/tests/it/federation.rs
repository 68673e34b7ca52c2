//! Database sources: PostgreSQL and MariaDB servers started by scripts/test.sh, read in
//! place. Whole queries on one database are pushed down (EXPLAIN shows one remote query,
//! EXPLAIN ANALYZE counts the rows that crossed the wire); mixed queries push each part;
//! what a dialect cannot run stays local and still answers; types round-trip; credentials
//! never show; refresh picks up new tables and columns; tenant filters are pushed down.

use std::time::{Duration, Instant};

use jammi_db::datafusion::common::ScalarValue;
use jammi_db::source::SourceSpec;
use jammi_db::{PreparedStatement, Session, TenantId};
use sqlx::Connection;

use crate::support::*;

const PG_SETUP: &str = r#"
CREATE SCHEMA shop;
CREATE TYPE shop.mood AS ENUM ('happy', 'sad');
CREATE TABLE shop.customers (id integer PRIMARY KEY, name text NOT NULL, city varchar(20), tenant text);
CREATE TABLE shop.orders (
    id bigint PRIMARY KEY, customer_id integer NOT NULL, amount numeric(10,2), placed date, at timestamptz,
    local_at timestamp, t time, flag boolean, f real, d double precision, s smallint, note char(4),
    data jsonb, uid uuid, tags text[], nums integer[], raw bytea, dur interval, mood shop.mood);
INSERT INTO shop.customers VALUES (1, 'ada', 'paris', NULL), (2, 'bob', 'oslo', '0b7e8a52-1c59-4a39-8d7e-6a1b2c3d4e5f'), (3, 'cy', NULL, '7f000000-0000-4000-8000-000000000002');
INSERT INTO shop.orders VALUES
    (10, 1, 12.50, '2024-02-29', '2024-03-01 12:00:00.123456+00', '2024-03-01 08:30:00', '13:45:10.5', true, 1.5, 2.25, 7, 'ab',
     '{"k": [1, 2]}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{x,y}', '{1,NULL,3}', '\x00ff', '1 day 02:00:00', 'happy'),
    (11, 1, 99999999.99, '1969-12-31', '1970-01-01 00:00:00+00', NULL, NULL, false, -0.5, 1e300, -32768, NULL,
     NULL, NULL, '{}', NULL, NULL, NULL, 'sad'),
    (12, 2, 0.01, NULL, NULL, NULL, NULL, true, NULL, NULL, NULL, NULL, '[]', NULL, NULL, NULL, NULL, NULL, NULL),
    (13, 3, 5.00, '2000-01-01', NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'zz', NULL, NULL, NULL, NULL, NULL, NULL, NULL);
CREATE VIEW shop.big_orders AS SELECT id, customer_id, amount FROM shop.orders WHERE amount > 10;
CREATE TABLE public.big (id bigint PRIMARY KEY, v integer NOT NULL);
INSERT INTO public.big SELECT g, g % 1000 FROM generate_series(1, 1000000) g;
ANALYZE public.big;
"#;

async fn pg_database() -> String {
    let url = fresh_pg_database().await;
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(PG_SETUP).execute(&mut conn).await.unwrap();
    url
}

/// The URL with a password: the test server trusts loopback, so any password is accepted,
/// which lets the test check that it never shows.
fn with_password(url: &str) -> String {
    url.replacen("://jammi@", "://jammi:s3cret-pw@", 1)
}

async fn explain(session: &Session, sql: &str) -> String {
    rows(session, &format!("EXPLAIN {sql}")).await.into_iter().map(|r| r.join(" ")).collect::<Vec<_>>().join("\n")
}

async fn explain_analyze(session: &Session, sql: &str) -> String {
    rows(session, &format!("EXPLAIN ANALYZE {sql}")).await.into_iter().map(|r| r.join(" ")).collect::<Vec<_>>().join("\n")
}

fn physical(plan: &str) -> &str {
    plan.split("physical_plan").nth(1).unwrap_or(plan)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_source() {
    let url = pg_database().await;
    let (session, dir) = temp_session().await;
    let info = session.sources().add(SourceSpec::new("pg", with_password(&url))).await.unwrap();
    assert!(info.url.contains("***") && !info.url.contains("s3cret"), "{}", info.url);
    for table in ["pg.shop.customers", "pg.shop.orders", "pg.shop.big_orders", "pg.public.big"] {
        assert!(info.tables.contains(&table.to_string()), "{table} in {:?}", info.tables);
    }
    let listed = session.sources().list().await.unwrap();
    assert_eq!(listed[0].status, "ok");
    assert!(!format!("{listed:?}").contains("s3cret"));

    // Types round-trip exactly.
    let got = rows(&session, "SELECT id, amount, placed, at, local_at, t, flag, f, d, s, note, data, uid, tags, nums, raw, dur, mood FROM pg.shop.orders ORDER BY id").await;
    assert_eq!(
        got[0],
        [
            "10", "12.50", "2024-02-29", "2024-03-01T12:00:00.123456Z", "2024-03-01T08:30:00", "13:45:10.500", "true", "1.5", "2.25", "7", "ab",
            r#"{"k": [1, 2]}"#, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "[x, y]", "[1, NULL, 3]", "00ff", "1 day 02:00:00", "happy"
        ]
    );
    assert_eq!(got[1][..11], ["11", "99999999.99", "1969-12-31", "1970-01-01T00:00:00Z", "NULL", "NULL", "false", "-0.5", "1e300", "-32768", "NULL"]);
    assert_eq!(got[1][13], "[]");
    let types = rows(&session, "SELECT arrow_typeof(amount), arrow_typeof(at), arrow_typeof(nums), arrow_typeof(placed) FROM pg.shop.orders LIMIT 1").await;
    assert_eq!(types[0], ["Decimal128(10, 2)", "Timestamp(µs, \"UTC\")", "List(Int32)", "Date32"]);

    // A query on one database is pushed down whole: filters, join, aggregate, order, limit.
    let whole = "SELECT c.name, count(*) AS n, sum(o.amount) AS total FROM pg.shop.orders o JOIN pg.shop.customers c ON o.customer_id = c.id \
                 WHERE o.flag GROUP BY c.name ORDER BY total DESC LIMIT 5";
    let plan = explain(&session, whole).await;
    let phys = physical(&plan);
    assert!(phys.contains("RemoteQueryExec") && !phys.contains("HashJoinExec") && !phys.contains("AggregateExec"), "{plan}");
    assert_eq!(rows(&session, whole).await, [["ada", "1", "12.50"], ["bob", "1", "0.01"]]);
    // With no filter or alias the optimizer leaves a bare aggregate on top of the pushed plan;
    // its columns come back in the select list's order (they once came back swapped).
    let bare = "SELECT c.name, count(o.id) FROM pg.shop.orders o JOIN pg.shop.customers c ON o.customer_id = c.id GROUP BY c.name";
    let mut got = rows(&session, bare).await;
    got.sort();
    let mut want = rows(&session, "SELECT c.name, count(o.id) FROM pg.shop.customers c JOIN pg.shop.orders o ON o.customer_id = c.id WHERE o.id > 0 GROUP BY c.name").await;
    want.sort();
    assert_eq!(got, want);
    assert!(got.iter().all(|r| r[0].chars().all(char::is_alphabetic)), "{got:?}");
    assert_eq!(rows(&session, &format!("{bare} ORDER BY count(o.id) DESC, c.name LIMIT 1")).await, [want.iter().max_by_key(|r| (r[1].parse::<i64>().unwrap(), std::cmp::Reverse(r[0].clone()))).unwrap().clone()]);
    // avg over integers runs remotely without a per-row cast and still answers in doubles.
    let plan = explain(&session, "SELECT avg(s) FROM pg.shop.orders").await;
    assert!(plan.contains("avg(\"orders\".\"s\")") && !physical(&plan).contains("AggregateExec"), "{plan}");
    assert_eq!(scalar(&session, "SELECT avg(s) FROM pg.shop.orders").await, "-16380.5");

    // A point lookup on a million-row table transfers one row.
    let analyzed = explain_analyze(&session, "SELECT id, v FROM pg.public.big WHERE id = 123456").await;
    assert!(analyzed.contains("RemoteQueryExec") && analyzed.contains("output_rows=1"), "{analyzed}");
    assert_eq!(rows(&session, "SELECT id, v FROM pg.public.big WHERE id = 123456").await, [["123456", "456"]]);
    let analyzed = explain_analyze(&session, "SELECT count(*) FROM pg.public.big WHERE v < 10").await;
    assert!(analyzed.contains("output_rows=1"), "the count runs remotely: {analyzed}");
    assert_eq!(scalar(&session, "SELECT count(*) FROM pg.public.big WHERE v < 10").await, "10000");

    // Mixed with a Parquet file: the database part is pushed, the join runs locally.
    let files = dir.path().join("files");
    write_items(&files, "items.parquet", &items(5, &[]));
    session.sources().add(SourceSpec::new("files", files.join("items.parquet").display().to_string())).await.unwrap();
    let mixed = "SELECT c.name, i.amount FROM pg.shop.customers c JOIN files.public.items i ON i.id = c.id WHERE c.city IS NOT NULL ORDER BY c.name";
    let plan = explain(&session, mixed).await;
    assert!(physical(&plan).contains("RemoteQueryExec") && physical(&plan).contains("HashJoinExec"), "{plan}");
    assert!(plan.contains("IS NOT NULL"), "the filter went to Postgres: {plan}");
    assert_eq!(rows(&session, mixed).await, [["ada", "1.5"], ["bob", "3.0"]]);

    // Never sent to Postgres, still answered (computed locally).
    let local_only = [
        ("SELECT starts_with(name, 'a') FROM pg.shop.customers ORDER BY id", vec![vec!["true"], vec!["false"], vec!["false"]]),
        ("SELECT id, row_number() OVER (PARTITION BY customer_id ORDER BY id DESC) FROM pg.shop.orders ORDER BY id", vec![vec!["10", "2"], vec!["11", "1"], vec!["12", "1"], vec!["13", "1"]]),
        ("SELECT CAST(amount AS VARCHAR) FROM pg.shop.orders WHERE id = 10", vec![vec!["12.50"]]),
        ("SELECT array_length(nums) FROM pg.shop.orders WHERE id = 10", vec![vec!["3"]]),
        ("SELECT id FROM pg.shop.orders WHERE data LIKE '%k%'", vec![vec!["10"]]),
        ("SELECT id FROM pg.shop.orders WHERE uid = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", vec![vec!["10"]]),
        ("SELECT id FROM pg.shop.orders WHERE mood = 'sad'", vec![vec!["11"]]),
        ("SELECT regexp_like(name, '^[ab]') FROM pg.shop.customers WHERE id = 1", vec![vec!["true"]]),
        ("SELECT id FROM pg.shop.orders WHERE id IN (SELECT id FROM files.public.items) ORDER BY id", vec![]),
        ("SELECT date_part('year', placed) FROM pg.shop.orders WHERE id = 10", vec![vec!["2024"]]),
        ("SELECT named_struct('a', id) FROM pg.shop.customers WHERE id = 1", vec![vec!["{a: 1}"]]),
    ];
    for (sql, expected) in local_only {
        assert_eq!(rows(&session, sql).await, expected, "{sql}");
    }

    // Boxed: each of these futures is large, and the test thread's stack is small.
    Box::pin(prepared_statements(&session, &url)).await;
    Box::pin(shared_plans_for_sql_text(&session, &url)).await;

    // A view reads like a table.
    assert_eq!(rows(&session, "SELECT id FROM pg.shop.big_orders ORDER BY id").await, [["10"], ["11"]]);

    // Refresh picks up new tables and columns.
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE shop.fresh (id int); INSERT INTO shop.fresh VALUES (7); ALTER TABLE shop.customers ADD COLUMN vip boolean DEFAULT true")
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(sql_error(&session, "SELECT * FROM pg.shop.fresh").await.contains("fresh"));
    session.sources().refresh("pg").await.unwrap();
    assert_eq!(scalar(&session, "SELECT id FROM pg.shop.fresh").await, "7");
    assert_eq!(scalar(&session, "SELECT count(*) FROM pg.shop.customers WHERE vip").await, "3");
    // ... and so does reopening.
    sqlx::raw_sql("CREATE TABLE shop.later (x int)").execute(&mut conn).await.unwrap();
    drop(session);
    let reopened = Session::open_dir(dir.path()).await.unwrap();
    assert_eq!(scalar(&reopened, "SELECT count(*) FROM pg.shop.later").await, "0");
}

async fn run(statement: &PreparedStatement, params: Vec<ScalarValue>) -> Vec<Vec<String>> {
    render(&statement.query(params).await.unwrap())
}

/// Prepared statements on a database source: parameters are bound into the remote
/// statement and the physical plan is reused, runs see current data, and a parameter the
/// remote cannot take is substituted locally instead.
async fn prepared_statements(session: &Session, url: &str) {
    let int = |v: i64| ScalarValue::Int64(Some(v));
    let lookup = session.prepare("SELECT id, v FROM pg.public.big WHERE id = $1").await.unwrap();
    let plan = lookup.reused_plan().await.unwrap().expect("a pushed-down lookup reuses its plan");
    assert!(plan.contains("RemoteQueryExec") && plan.contains("= $1") && plan.contains("params=[$1 ← $1]"), "{plan}");
    assert_eq!(run(&lookup, vec![int(123456)]).await, [["123456", "456"]]);
    assert_eq!(run(&lookup, vec![int(7)]).await, [["7", "7"]]);
    assert!(run(&lookup, vec![int(0)]).await.is_empty());
    let wrong = lookup.query(vec![ScalarValue::Utf8(Some("seven".into()))]).await.unwrap_err().to_string();
    assert!(wrong.contains("$1") && wrong.contains("Int64"), "{wrong}");

    // Parameters are numbered for the remote in the order it sees them.
    let two = session.prepare("SELECT id FROM pg.shop.orders WHERE customer_id = $2 AND id >= $1 ORDER BY id").await.unwrap();
    let plan = two.reused_plan().await.unwrap().expect("pushed down whole");
    assert!(plan.contains("params=[$1 ← $2, $2 ← $1]"), "{plan}");
    assert_eq!(run(&two, vec![int(11), int(1)]).await, [["11"]]);
    assert_eq!(run(&two, vec![int(0), int(1)]).await, [["10"], ["11"]]);

    // A parameter in a part that runs locally: values substituted, planned per run.
    let local = session.prepare("SELECT name FROM pg.shop.customers WHERE id > $2 AND starts_with(name, $1) ORDER BY id").await.unwrap();
    assert!(local.reused_plan().await.unwrap().is_none());
    let text = |s: &str| ScalarValue::Utf8(Some(s.into()));
    assert_eq!(run(&local, vec![text("b"), int(1)]).await, [["bob"]]);
    assert_eq!(run(&local, vec![text("a"), int(1)]).await, Vec::<Vec<String>>::new());

    // Reused plans read current data.
    let count = session.prepare("SELECT count(*) FROM pg.shop.customers").await.unwrap();
    assert!(count.reused_plan().await.unwrap().is_some());
    assert_eq!(run(&count, vec![]).await, [["3"]]);
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    sqlx::raw_sql("INSERT INTO shop.customers (id, name) VALUES (4, 'dee'); UPDATE public.big SET v = 999 WHERE id = 7").execute(&mut conn).await.unwrap();
    assert_eq!(run(&count, vec![]).await, [["4"]]);
    assert_eq!(run(&lookup, vec![int(7)]).await, [["7", "999"]]);
    sqlx::raw_sql("DELETE FROM shop.customers WHERE id = 4; UPDATE public.big SET v = 7 WHERE id = 7").execute(&mut conn).await.unwrap();
}

/// Whether the frame runs a plan shared by its shape (see `plan_cache`).
async fn shares_plan(session: &Session, sql: &str) -> bool {
    session.sql(sql).await.unwrap().logical_plan().display_indent().to_string().contains("shared_plan")
}

/// SQL text queries that differ only in constants compared with columns share one plan
/// with the constants bound into the remote statement; constants that would not convert
/// unchanged, queries that also read other tables, and catalog changes plan afresh.
async fn shared_plans_for_sql_text(session: &Session, url: &str) {
    assert_eq!(rows(session, "SELECT id, v FROM pg.public.big WHERE id = 4242").await, [["4242", "242"]]);
    assert!(shares_plan(session, "SELECT id, v FROM pg.public.big WHERE id = 99").await);
    assert_eq!(rows(session, "SELECT id, v FROM pg.public.big WHERE id = 99").await, [["99", "99"]]);
    assert!(rows(session, "SELECT id, v FROM pg.public.big WHERE id = -5").await.is_empty());
    // 7.0 is the integer 7; 7.5 matches no integer and is compared as written.
    assert_eq!(rows(session, "SELECT id FROM pg.public.big WHERE id = 7.0").await, [["7"]]);
    assert!(!shares_plan(session, "SELECT id FROM pg.public.big WHERE id = 7.5").await);
    assert!(rows(session, "SELECT id FROM pg.public.big WHERE id = 7.5").await.is_empty());
    // Beyond the range of the `integer` column: compared as written, nothing matches.
    assert!(!shares_plan(session, "SELECT id FROM pg.public.big WHERE v = 5000000000").await);
    assert!(rows(session, "SELECT id FROM pg.public.big WHERE v = 5000000000").await.is_empty());
    // Several constants, strings, BETWEEN, joins and aggregates pushed down whole.
    let join = |name: &str, low: i64| {
        format!("SELECT c.name, count(*) FROM pg.shop.orders o JOIN pg.shop.customers c ON o.customer_id = c.id WHERE c.name = '{name}' AND o.id BETWEEN {low} AND 13 GROUP BY c.name")
    };
    assert_eq!(rows(session, &join("ada", 10)).await, [["ada", "2"]]);
    assert!(shares_plan(session, &join("ada", 11)).await);
    assert_eq!(rows(session, &join("ada", 11)).await, [["ada", "1"]]);
    assert_eq!(rows(session, &join("bob", 0)).await, [["bob", "1"]]);
    assert!(rows(session, &join("nobody", 0)).await.is_empty());
    // A comparison in the select list keeps its column name.
    let frame = session.sql("SELECT id = 10 FROM pg.shop.orders WHERE id = 10").await.unwrap();
    let name = frame.schema().field(0).name().clone();
    assert!(!name.contains('$'), "{name}");
    assert_eq!(render(&frame.collect().await.unwrap()), [["true"]]);
    // A shape longer than 16 KiB (a long IN list stays in it) is planned per query, so the
    // cache stays small whatever callers send; it still answers.
    let long = |id: i64| format!("SELECT id FROM pg.public.big WHERE id = {id} AND v IN ({})", (0..3000).map(|n| n.to_string()).collect::<Vec<_>>().join(", "));
    assert_eq!(rows(session, &long(7)).await, [["7"]]);
    assert!(!shares_plan(session, &long(8)).await);
    // Reading anything besides database tables: planned per query.
    assert!(!shares_plan(session, "SELECT c.name FROM pg.shop.customers c JOIN files.public.items i ON i.id = c.id WHERE c.id = 1").await);
    // A shared plan reads current rows.
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    sqlx::raw_sql("UPDATE public.big SET v = 1 WHERE id = 99").execute(&mut conn).await.unwrap();
    assert_eq!(rows(session, "SELECT id, v FROM pg.public.big WHERE id = 99").await, [["99", "1"]]);
    sqlx::raw_sql("UPDATE public.big SET v = 99 WHERE id = 99").execute(&mut conn).await.unwrap();
    // Inside a transaction statements plan as usual (and still answer).
    let txn = session.clone();
    txn.sql("BEGIN").await.unwrap().collect().await.unwrap();
    assert!(!shares_plan(&txn, "SELECT id, v FROM pg.public.big WHERE id = 99").await);
    assert_eq!(rows(&txn, "SELECT id, v FROM pg.public.big WHERE id = 99").await, [["99", "99"]]);
    txn.sql("ROLLBACK").await.unwrap().collect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_tenancy_and_errors() {
    let url = pg_database().await;
    let (session, _dir) = temp_session().await;
    session.sources().add(SourceSpec::new("pg", url.clone()).with_tenant_column("tenant").with_option("schemas", "shop")).await.unwrap();
    let tenant: TenantId = "0b7e8a52-1c59-4a39-8d7e-6a1b2c3d4e5f".parse().unwrap();
    let scoped = session.with_tenant(Some(tenant));
    assert_eq!(rows(&scoped, "SELECT name FROM pg.shop.customers ORDER BY id").await, [["ada"], ["bob"]]);
    // Plans shared by SQL text are per tenant: each scope sees its own rows.
    let other = session.with_tenant(Some("7f000000-0000-4000-8000-000000000002".parse().unwrap()));
    for _ in 0..2 {
        assert_eq!(rows(&scoped, "SELECT name FROM pg.shop.customers WHERE id > 0 ORDER BY id").await, [["ada"], ["bob"]]);
        assert_eq!(rows(&other, "SELECT name FROM pg.shop.customers WHERE id > 0 ORDER BY id").await, [["ada"], ["cy"]]);
        assert_eq!(rows(&session, "SELECT name FROM pg.shop.customers WHERE id > 0 ORDER BY id").await, [["ada"]]);
    }
    assert!(shares_plan(&other, "SELECT name FROM pg.shop.customers WHERE id > 1 ORDER BY id").await);
    // A shared plan never outlives its source.
    let probe = session.clone();
    probe.sources().remove("pg").await.unwrap();
    let err = sql_error(&session, "SELECT name FROM pg.shop.customers WHERE id > 0 ORDER BY id").await;
    assert!(err.contains("pg"), "{err}");
    probe.sources().add(SourceSpec::new("pg", url.clone()).with_tenant_column("tenant").with_option("schemas", "shop")).await.unwrap();
    assert_eq!(rows(&other, "SELECT name FROM pg.shop.customers WHERE id > 0 ORDER BY id").await, [["ada"], ["cy"]]);
    let plan = explain(&scoped, "SELECT name FROM pg.shop.customers").await;
    assert!(plan.contains("0b7e8a52-1c59-4a39-8d7e-6a1b2c3d4e5f") && physical(&plan).contains("RemoteQueryExec") && !physical(&plan).contains("FilterExec"), "tenant filter pushed down: {plan}");
    assert!(sql_error(&session, "SELECT * FROM pg.public.big").await.contains("big"), "schemas=shop limits what is registered");

    // Permanent errors fail at once and name the problem; credentials never show.
    let base = url.rsplit_once('/').unwrap().0;
    let started = Instant::now();
    let err = session.sources().add(SourceSpec::new("nodb", with_password(&format!("{base}/no_such_db")))).await.unwrap_err().to_string();
    assert!(err.contains("does not exist") && !err.contains("s3cret"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "not retried: {:?}", started.elapsed());
    // Transient errors (connection refused) are retried with backoff, then reported.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = Instant::now();
    let err = session.sources().add(SourceSpec::new("down", format!("postgres://jammi:s3cret-pw@127.0.0.1:{closed}/x"))).await.unwrap_err().to_string();
    let waited = started.elapsed();
    assert!(err.contains("cannot reach") && !err.contains("s3cret"), "{err}");
    assert!(waited > Duration::from_millis(1000) && waited < Duration::from_secs(20), "bounded retries: {waited:?}");
}

const MYSQL_SETUP: &[&str] = &[
    "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(20) NOT NULL, city VARCHAR(20))",
    "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id INT NOT NULL, amount DECIMAL(10,2), placed DATE, at DATETIME(6), t TIME(3), \
     flag TINYINT(1), f FLOAT, d DOUBLE, s SMALLINT, note CHAR(4), data JSON, raw VARBINARY(8), mood ENUM('happy','sad'), big BIGINT UNSIGNED)",
    "INSERT INTO customers VALUES (1, 'ada', 'paris'), (2, 'bob', 'oslo'), (3, 'cy', NULL)",
    "INSERT INTO orders VALUES (10, 1, 12.50, '2024-02-29', '2024-03-01 12:00:00.123456', '13:45:10.500', 1, 1.5, 2.25, 7, 'ab', '{\"k\": 1}', X'00FF', 'happy', 18446744073709551615), \
     (11, 1, 99999999.99, '1969-12-31', NULL, NULL, 0, NULL, NULL, -32768, NULL, NULL, NULL, 'sad', 0), \
     (12, 2, 0.01, NULL, NULL, NULL, 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_source_and_three_way_join() {
    let admin = require_env("JAMMI_TEST_MYSQL_URL");
    let db = format!("jammi_{}", uuid::Uuid::new_v4().simple());
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&admin).await.expect("connect to test MariaDB");
    sqlx::query(&format!("CREATE DATABASE {db}")).execute(&mut conn).await.unwrap();
    let base = admin.rsplit_once('/').unwrap().0;
    let url = format!("{base}/{db}");
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    for statement in MYSQL_SETUP {
        sqlx::query(statement).execute(&mut conn).await.unwrap();
    }
    let (session, dir) = temp_session().await;
    let info = session.sources().add(SourceSpec::new("my", url.clone())).await.unwrap();
    assert!(info.tables.contains(&format!("my.{db}.orders")), "{:?}", info.tables);
    let orders = format!("my.{db}.orders");
    let got = rows(&session, &format!("SELECT id, amount, placed, at, t, flag, f, d, s, note, data, raw, mood, big FROM {orders} ORDER BY id")).await;
    assert_eq!(got[0], ["10", "12.50", "2024-02-29", "2024-03-01T12:00:00.123456", "13:45:10.500", "true", "1.5", "2.25", "7", "ab", r#"{"k": 1}"#, "00ff", "happy", "18446744073709551615"]);
    assert_eq!(got[1][..3], ["11", "99999999.99", "1969-12-31"]);

    let whole = format!("SELECT customer_id, count(*), sum(amount) FROM {orders} WHERE flag GROUP BY customer_id ORDER BY customer_id");
    let plan = explain(&session, &whole).await;
    assert!(physical(&plan).contains("RemoteQueryExec") && !physical(&plan).contains("AggregateExec"), "{plan}");
    assert_eq!(rows(&session, &whole).await, [["1", "1", "12.50"], ["2", "1", "0.01"]]);
    assert_eq!(scalar(&session, &format!("SELECT avg(s) FROM {orders}")).await, "-16380.5");
    assert_eq!(rows(&session, &format!("SELECT id FROM {orders} WHERE mood = 'sad'")).await, [["11"]], "enum compared locally");

    // Postgres ⋈ Parquet ⋈ MySQL: each database part pushed down, joins local.
    let pg_url = pg_database().await;
    session.sources().add(SourceSpec::new("pg", pg_url)).await.unwrap();
    let files = dir.path().join("files");
    write_items(&files, "items.parquet", &items(5, &[]));
    session.sources().add(SourceSpec::new("files", files.join("items.parquet").display().to_string())).await.unwrap();
    let three = format!(
        "SELECT c.name, i.category, m.amount FROM pg.shop.customers c JOIN files.public.items i ON i.id = c.id \
         JOIN {orders} m ON m.customer_id = c.id WHERE m.flag ORDER BY m.amount"
    );
    let plan = explain(&session, &three).await;
    assert_eq!(physical(&plan).matches("RemoteQueryExec").count(), 2, "{plan}");
    assert_eq!(rows(&session, &three).await, [["bob", "c", "0.01"], ["ada", "b", "12.50"]]);

    // A prepared join of two databases reuses its plan; the local hash join's build side is
    // rebuilt on every run (the customer changes with the parameter; a parameter on the join
    // key would be inferred for the MySQL side too, which takes no parameters, so that plan
    // would be made per run instead).
    let join = session
        .prepare(&format!("SELECT c.name, m.id FROM pg.shop.customers c JOIN {orders} m ON m.customer_id = c.id WHERE c.name = $1 ORDER BY m.id"))
        .await
        .unwrap();
    let plan = join.reused_plan().await.unwrap().expect("both sides are remote statements");
    assert!(plan.contains("HashJoinExec") && plan.matches("RemoteQueryExec").count() == 2, "{plan}");
    let name = |v: &str| vec![ScalarValue::Utf8(Some(v.into()))];
    assert_eq!(render(&join.query(name("ada")).await.unwrap()), [["ada", "10"], ["ada", "11"]]);
    assert_eq!(render(&join.query(name("bob")).await.unwrap()), [["bob", "12"]]);
    assert_eq!(render(&join.query(name("ada")).await.unwrap()), [["ada", "10"], ["ada", "11"]]);
}
