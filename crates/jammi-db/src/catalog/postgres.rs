//! PostgreSQL catalog backend, for deployments where several processes share metadata.

use async_trait::async_trait;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use sqlx::{Any, Executor, Transaction};

use super::{BackendKind, CatalogBackend};
use crate::redact::redact_url;
use crate::config::CatalogConfig;
use crate::error::{Error, Result};

/// Advisory-lock key that serialises catalog writers ("jammi" in ASCII).
const WRITER_LOCK_KEY: i64 = 0x6a_61_6d_6d_69;

/// A catalog in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresBackend {
    url: String,
}

impl PostgresBackend {
    /// A backend for `postgres://user:pass@host:port/db`.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresBackend { url: url.into() }
    }
}

#[async_trait]
impl CatalogBackend for PostgresBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Postgres
    }

    fn display_url(&self) -> String {
        redact_url(&self.url)
    }

    async fn connect(&self, config: &CatalogConfig) -> Result<AnyPool> {
        let lock_timeout = config.busy_timeout_ms;
        AnyPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(std::time::Duration::from_millis(config.connect_timeout_ms))
            .after_release(super::release_only_clean)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    conn.execute(format!("SET lock_timeout = {lock_timeout}").as_str()).await?;
                    // Commits wait for the WAL flush (the server default, stated explicitly).
                    conn.execute("SET synchronous_commit = on").await?;
                    Ok(())
                })
            })
            .connect(&self.url)
            .await
            .map_err(|e| Error::Catalog {
                backend: self.display_url(),
                message: format!("cannot connect: {}", crate::error::one_line(&e.to_string())),
            })
    }

    async fn begin_serialized<'c>(&self, pool: &'c AnyPool) -> Result<Transaction<'c, Any>> {
        let err = |e: sqlx::Error| Error::Catalog {
            backend: self.display_url(),
            message: crate::error::one_line(&e.to_string()),
        };
        let mut tx = pool.begin().await.map_err(err)?;
        self.serialize_in(&mut tx).await?;
        Ok(tx)
    }

    async fn serialize_in(&self, conn: &mut sqlx::AnyConnection) -> Result<()> {
        // The function sits in FROM so the statement returns an int, a type every driver decodes.
        sqlx::query(&format!("SELECT 1 AS locked FROM pg_advisory_xact_lock({WRITER_LOCK_KEY})"))
            .execute(conn)
            .await
            .map(|_| ())
            .map_err(|e| Error::Catalog { backend: self.display_url(), message: crate::error::one_line(&e.to_string()) })
    }
}
