//! The catalog conformance suite on both backends, plus sessions on a Postgres catalog.

use jammi_db::catalog::{conformance, Catalog};
use jammi_db::config::CatalogConfig;
use jammi_db::source::SourceSpec;
use jammi_db::{Config, Session};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_catalog_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("catalog.db").display());
    conformance::run_all(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_catalog_conformance() {
    let url = fresh_pg_database().await;
    conformance::run_all(&url).await;
}

#[tokio::test]
async fn sqlite_catalog_uses_wal_and_full_sync() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    let catalog = Catalog::open(&url, &CatalogConfig::default()).await.unwrap();
    let mode: (String,) = sqlx::query_as("PRAGMA journal_mode").fetch_one(catalog.pool()).await.unwrap();
    assert_eq!(mode.0.to_lowercase(), "wal");
    let sync: (i64,) = sqlx::query_as("PRAGMA synchronous").fetch_one(catalog.pool()).await.unwrap();
    assert_eq!(sync.0, 2, "synchronous must be FULL (2)");
}

#[tokio::test]
async fn every_catalog_table_carries_a_tenant_id() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    let catalog = Catalog::open(&url, &CatalogConfig::default()).await.unwrap();
    // The engine's own bookkeeping holds no tenant's data: the migration ledger, the change
    // counter, and leases (which process does a piece of background work; never listed).
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'jammi_%' \
         AND name NOT IN ('jammi_migrations', 'jammi_change_counter', 'jammi_leases')",
    )
    .fetch_all(catalog.pool())
    .await
    .unwrap();
    assert!(!tables.is_empty());
    for (table,) in tables {
        let cols: Vec<(i64, String, String, i64)> =
            sqlx::query_as(&format!("SELECT cid, name, type, \"notnull\" FROM pragma_table_info('{table}')"))
                .fetch_all(catalog.pool())
                .await
                .unwrap();
        let tenant = cols.iter().find(|c| c.1 == "tenant_id").unwrap_or_else(|| panic!("{table} lacks tenant_id"));
        assert_eq!(tenant.3, 0, "{table}.tenant_id must be nullable");
    }
}

#[tokio::test]
async fn sessions_on_a_postgres_catalog_share_sources() {
    let url = fresh_pg_database().await;
    let data = tempfile::tempdir().unwrap();
    let file = write_items(data.path(), "things.parquet", &items(30, &[]));

    let mut config = Config::embedded(data.path().join("a"));
    config.catalog.url = Some(url.clone());
    let first = Session::open(config).await.unwrap();
    first.sources().add(SourceSpec::new("things", file.display().to_string())).await.unwrap();

    // A second engine (another process in production) on the same catalog sees it at once.
    let mut config = Config::embedded(data.path().join("b"));
    config.catalog.url = Some(url);
    let second = Session::open(config).await.unwrap();
    assert_eq!(scalar(&second, "SELECT count(*) FROM things.public.things").await, "30");

    first.sources().remove("things").await.unwrap();
    let err = sql_error(&second, "SELECT count(*) FROM things.public.things").await;
    assert!(err.contains("things"), "{err}");
}

#[tokio::test]
async fn bad_catalog_urls_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded(dir.path());
    config.catalog.url = Some("postgres://nobody:secret@127.0.0.1:1/none".into());
    let err = Session::open(config).await.unwrap_err().to_string();
    assert!(err.contains("cannot connect") && !err.contains("secret"), "{err}");
    assert!(err.contains("***"), "{err}");
}
