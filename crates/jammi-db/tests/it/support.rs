//! Shared helpers: sessions on temporary directories, generated data with independently
//! computed expectations, and the addresses of the real services `scripts/test.sh` starts.

use std::path::Path;
use std::sync::Arc;

use jammi_db::datafusion::arrow::array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use jammi_db::datafusion::arrow::datatypes::{DataType, Field, Schema};
use jammi_db::datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use jammi_db::datafusion::parquet::arrow::ArrowWriter;
use jammi_db::{Config, Session};

/// A required service address; panics (fails the test) when missing, never skips.
pub fn require_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: this test needs the real service that scripts/test.sh starts; run the tests through scripts/test.sh")
    })
}

/// A fresh Postgres database on the test server; returns its URL.
pub async fn fresh_pg_database() -> String {
    fresh_database_on("JAMMI_TEST_PG_URL").await
}

/// A fresh database on the Postgres server whose admin URL is in `variable`.
pub async fn fresh_database_on(variable: &str) -> String {
    let admin = require_env(variable);
    let name = format!("jammi_{}", uuid::Uuid::new_v4().simple());
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await.expect("connect to test postgres");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create database");
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap();
    format!("{base}/{name}")
}

/// A session on SQLite (`pg == false`) or on a fresh Postgres catalog database.
pub async fn backend_session(pg: bool) -> (Session, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded(dir.path().join("home"));
    if pg {
        config.catalog.url = Some(fresh_pg_database().await);
    }
    (Session::open(config).await.expect("open session"), dir)
}

/// A session on a new temporary data directory (kept alive by the returned guard).
pub async fn temp_session() -> (Session, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let session = Session::open(Config::embedded(dir.path())).await.expect("open session");
    (session, dir)
}

/// One row of the generated `items` data set.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: i64,
    pub category: String,
    pub amount: f64,
    pub tenant: Option<String>,
}

/// `n` items, with categories a/b/c, amounts id*1.5, and tenants cycling through
/// `tenants` plus NULL (shared).
pub fn items(n: i64, tenants: &[String]) -> Vec<Item> {
    (1..=n)
        .map(|id| {
            let slot = (id as usize) % (tenants.len() + 1);
            Item {
                id,
                category: ["a", "b", "c"][(id % 3) as usize].to_string(),
                amount: id as f64 * 1.5,
                tenant: tenants.get(slot).cloned(),
            }
        })
        .collect()
}

pub fn items_batch(items: &[Item]) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, false),
        Field::new("tenant", DataType::Utf8, true),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(items.iter().map(|i| i.id).collect::<Vec<_>>())),
        Arc::new(StringArray::from(items.iter().map(|i| i.category.clone()).collect::<Vec<_>>())),
        Arc::new(Float64Array::from(items.iter().map(|i| i.amount).collect::<Vec<_>>())),
        Arc::new(StringArray::from(items.iter().map(|i| i.tenant.clone()).collect::<Vec<_>>())),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).unwrap()
}

pub fn parquet_bytes(items: &[Item]) -> Vec<u8> {
    let batch = items_batch(items);
    let mut buf = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    buf
}

pub fn csv_text(items: &[Item]) -> String {
    let mut s = String::from("id,category,amount,tenant\n");
    for i in items {
        s.push_str(&format!("{},{},{},{}\n", i.id, i.category, i.amount, i.tenant.clone().unwrap_or_default()));
    }
    s
}

pub fn ndjson_text(items: &[Item]) -> String {
    items
        .iter()
        .map(|i| {
            let tenant = i.tenant.as_ref().map(|t| format!("\"{t}\"")).unwrap_or("null".into());
            format!("{{\"id\":{},\"category\":\"{}\",\"amount\":{},\"tenant\":{}}}\n", i.id, i.category, i.amount, tenant)
        })
        .collect()
}

pub fn write_items(dir: &Path, file: &str, items: &[Item]) -> std::path::PathBuf {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    if file.ends_with(".parquet") {
        std::fs::write(&path, parquet_bytes(items)).unwrap();
    } else if file.ends_with(".csv") {
        std::fs::write(&path, csv_text(items)).unwrap();
    } else {
        std::fs::write(&path, ndjson_text(items)).unwrap();
    }
    path
}

/// Run `sql` and render every cell as text (NULL as "NULL"), row by row.
pub async fn rows(session: &Session, sql: &str) -> Vec<Vec<String>> {
    let batches = session.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).collect().await.unwrap();
    render(&batches)
}

/// Every cell of `batches` as text (NULL as "NULL"), row by row.
pub fn render(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in batches {
        let formatters: Vec<_> =
            batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref() as &dyn Array, &options).unwrap()).collect();
        for row in 0..batch.num_rows() {
            out.push(formatters.iter().map(|f| f.value(row).to_string()).collect());
        }
    }
    out
}

/// First cell of the only row.
pub async fn scalar(session: &Session, sql: &str) -> String {
    let r = rows(session, sql).await;
    assert_eq!(r.len(), 1, "{sql} returned {} rows", r.len());
    r[0][0].clone()
}

/// The SQL error text of `sql` (which must fail).
pub async fn sql_error(session: &Session, sql: &str) -> String {
    match session.sql(sql).await {
        Err(e) => e.to_string(),
        Ok(frame) => match frame.collect().await {
            Err(e) => jammi_db::Error::from(e).to_string(),
            Ok(_) => panic!("expected {sql} to fail"),
        },
    }
}

/// Options for the S3-compatible server scripts/test.sh starts.
pub fn s3_options() -> jammi_db::storage::StorageOptions {
    std::collections::BTreeMap::from([
        ("endpoint".to_string(), require_env("JAMMI_TEST_S3_ENDPOINT")),
        ("allow_http".to_string(), "true".to_string()),
        ("region".to_string(), "us-east-1".to_string()),
        ("access_key_id".to_string(), "test".to_string()),
        ("secret_access_key".to_string(), "test".to_string()),
    ])
}

/// Model-based checking: run `cases` sequences drawn from `strategy` through `run` (given the
/// sequence and a fresh attempt number, for fresh table names), `JAMMI_MODEL_CASES` / `divisor`
/// of them when that is set; on a failure, shrink to a short counterexample and fail with it.
pub async fn check_sequences<T, S, F, Fut>(strategy: S, default_cases: u32, divisor: u32, mut run: F)
where
    T: std::fmt::Debug,
    S: proptest::strategy::Strategy<Value = T>,
    F: FnMut(T, usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config as RunnerConfig, TestRunner};
    let cases: u32 = std::env::var("JAMMI_MODEL_CASES").ok().and_then(|c| c.parse().ok()).map(|c: u32| c / divisor).unwrap_or(default_cases).max(1);
    let mut runner = TestRunner::new(RunnerConfig { cases, failure_persistence: None, ..RunnerConfig::default() });
    let mut attempt = 0;
    for _ in 0..cases {
        let mut tree = strategy.new_tree(&mut runner).unwrap();
        attempt += 1;
        if let Err(failure) = run(tree.current(), attempt).await {
            let mut smallest = failure;
            while tree.simplify() {
                attempt += 1;
                match run(tree.current(), attempt).await {
                    Err(f) => smallest = f,
                    Ok(()) => {
                        if !tree.complicate() {
                            break;
                        }
                    }
                }
            }
            panic!("{smallest}");
        }
    }
}
