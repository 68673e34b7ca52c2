//! The metadata catalog: which sources, tables and topics exist, and who owns them.
//!
//! One [`CatalogBackend`] trait, one module per backend ([`sqlite`], [`postgres`]). Every
//! repository (e.g. [`SourceRepo`]) writes its SQL once, with `$1`-style parameters that
//! both backends accept, and asks the backend only for what truly differs: how to connect
//! and how to serialise writers. The shared [`conformance`] suite runs against both.

mod audit;
mod ephemeral;
mod evidence;
pub mod conformance;
mod follows;
mod jobs;
mod leases;
mod migrations;
mod models;
mod tokens;
mod mutable;
mod postgres;
mod sources;
mod sqlite;
mod topics;
mod vectors;

use std::fmt;
use std::sync::{Arc, Once};

use async_trait::async_trait;
use sqlx::AnyPool;
use sqlx::{Any, Transaction};

use crate::config::CatalogConfig;
use crate::error::{Error, Result};
use crate::tenant::{TenantId, TenantScope};

pub use audit::{AuditRepo, AuditRow, CheckpointRow};
pub use ephemeral::{EphemeralRepo, EphemeralSessionRecord};
pub use evidence::{ChannelRecord, EvidenceRepo};
pub use follows::{FollowProgress, FollowRecord, FollowRepo};
pub(crate) use follows::{commit_progress, log_changes};
pub use jobs::{state as job_state, ClaimRecord, JobRecord, JobRepo, JobState, LosingAttempt};
pub use leases::LeaseRepo;
pub use migrations::{Migration, MIGRATIONS};
pub use models::{AliasRecord, ModelRecord, ModelRepo};
pub(crate) use models::already_registered;
pub use tokens::{TokenRecord, TokenRepo};
pub use mutable::{MutableTableRecord, MutableTableRepo};
pub use postgres::PostgresBackend;
pub use sources::{SourceRecord, SourceRepo};
pub use sqlite::SqliteBackend;
pub use topics::{GroupRecord, TopicRecord, TopicRepo};
pub use vectors::{VectorTableRecord, VectorTableRepo, VectorTableStatus};

/// Which database family a backend talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Embedded SQLite file (the default).
    Sqlite,
    /// A PostgreSQL server shared by several processes.
    Postgres,
}

/// The storage classes of values in the catalog database (mutable-table columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageClass {
    /// 64-bit integer.
    Integer,
    /// 64-bit float.
    Real,
    /// UTF-8 text.
    Text,
    /// Bytes.
    Blob,
}

impl BackendKind {
    /// The column type that holds `class`.
    pub(crate) fn column_type(self, class: StorageClass) -> &'static str {
        match (self, class) {
            (BackendKind::Sqlite, StorageClass::Integer) => "INTEGER",
            (BackendKind::Sqlite, StorageClass::Real) => "REAL",
            (BackendKind::Sqlite, StorageClass::Text) => "TEXT",
            (BackendKind::Sqlite, StorageClass::Blob) => "BLOB",
            (BackendKind::Postgres, StorageClass::Integer) => "BIGINT",
            (BackendKind::Postgres, StorageClass::Real) => "DOUBLE PRECISION",
            (BackendKind::Postgres, StorageClass::Text) => "TEXT",
            (BackendKind::Postgres, StorageClass::Blob) => "BYTEA",
        }
    }

    /// The `n`th (1-based) bind parameter of a statement with many parameters: `?` on
    /// SQLite, `$n` on Postgres. (sqlx binds SQLite's `$n` by looking each name up in a
    /// list, which is quadratic in the number of parameters: most of a 1,000-row insert's
    /// time.)
    pub(crate) fn placeholder(self, n: usize) -> String {
        match self {
            BackendKind::Sqlite => "?".to_string(),
            BackendKind::Postgres => format!("${n}"),
        }
    }

    /// The statement that opens a write transaction: SQLite takes the database's write
    /// lock at once (`BEGIN IMMEDIATE`), so a transaction never fails to upgrade later.
    pub(crate) fn begin_write(self) -> &'static str {
        match self {
            BackendKind::Sqlite => "BEGIN IMMEDIATE",
            BackendKind::Postgres => "BEGIN",
        }
    }

    /// Whether the database admits one writer at a time, so this process's writers should
    /// queue on a mutex instead of spinning on busy errors (SQLite) — and whether its busy
    /// errors are worth retrying.
    pub(crate) fn single_writer(self) -> bool {
        self == BackendKind::Sqlite
    }

    /// Whether a write transaction must lock each table it reads or writes to be
    /// serializable (Postgres, without a database-wide write lock).
    pub(crate) fn locks_tables(self) -> bool {
        self == BackendKind::Postgres
    }

    /// The row-lock clause that lets queue claims from several processes pass each other
    /// (`FOR UPDATE [OF t] SKIP LOCKED` on Postgres; SQLite's write lock already serialises
    /// them). `of` names the table to lock in a join.
    pub(crate) fn skip_locked(self, of: Option<&str>) -> String {
        match (self, of) {
            (BackendKind::Postgres, Some(t)) => format!(" FOR UPDATE OF {t} SKIP LOCKED"),
            (BackendKind::Postgres, None) => " FOR UPDATE SKIP LOCKED".to_string(),
            (BackendKind::Sqlite, _) => String::new(),
        }
    }
}

/// What differs between catalog databases. Everything else is shared SQL.
#[async_trait]
pub trait CatalogBackend: Send + Sync + fmt::Debug {
    /// The database family.
    fn kind(&self) -> BackendKind;

    /// The connection URL with any password replaced by `***`, for messages and logs.
    fn display_url(&self) -> String;

    /// Open a connection pool with the backend's session settings (durability, lock waits).
    async fn connect(&self, config: &CatalogConfig) -> Result<AnyPool>;

    /// Begin a transaction that excludes every other catalog writer until it ends, so
    /// read-check-write sequences (migrations, name uniqueness) are race-free across
    /// processes.
    async fn begin_serialized<'c>(&self, pool: &'c AnyPool) -> Result<Transaction<'c, Any>>;

    /// Join the writer serialisation of [`CatalogBackend::begin_serialized`] from inside a
    /// transaction already open on `conn` (DDL inside a client's `BEGIN`); held until it ends.
    async fn serialize_in(&self, conn: &mut sqlx::AnyConnection) -> Result<()>;

    /// The change counter read without the pool, where the backend can do that much
    /// faster; `None` sends the read through the pool.
    fn read_change_counter(&self) -> Option<i64> {
        None
    }
}

/// An open catalog: a backend plus its connection pool, migrated to the latest version.
#[derive(Debug, Clone)]
pub struct Catalog {
    backend: Arc<dyn CatalogBackend>,
    pool: AnyPool,
}

impl Catalog {
    /// Connect to `url` (`sqlite://...` or `postgres://...`) and apply pending migrations.
    pub async fn open(url: &str, config: &CatalogConfig) -> Result<Self> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        let backend: Arc<dyn CatalogBackend> = if url.starts_with("sqlite:") {
            Arc::new(SqliteBackend::from_url(url)?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Arc::new(PostgresBackend::new(url))
        } else {
            return Err(Error::config(
                "catalog.url",
                format!("'{}' is not a sqlite:// or postgres:// URL", crate::redact::redact_url(url)),
            ));
        };
        let pool = backend.connect(config).await?;
        let catalog = Catalog { backend, pool };
        migrations::apply_all(&catalog).await?;
        Ok(catalog)
    }

    /// The backend in use.
    pub fn backend(&self) -> &dyn CatalogBackend {
        self.backend.as_ref()
    }

    /// The connection pool (shared SQL with `$n` parameters runs on both backends).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Begin a writer-serialising transaction (see [`CatalogBackend::begin_serialized`]).
    pub async fn begin_serialized(&self) -> Result<Transaction<'_, Any>> {
        self.backend.begin_serialized(&self.pool).await
    }

    /// Serialise with other catalog writers from inside the transaction open on `conn`
    /// (see [`CatalogBackend::serialize_in`]).
    pub async fn serialize_in(&self, conn: &mut sqlx::AnyConnection) -> Result<()> {
        self.backend.serialize_in(conn).await
    }

    /// Repository of registered sources.
    pub fn sources(&self) -> SourceRepo<'_> {
        SourceRepo::new(self)
    }

    /// Repository of vector tables.
    pub fn vector_tables(&self) -> VectorTableRepo<'_> {
        VectorTableRepo::new(self)
    }

    /// Repository of topics.
    pub fn topics(&self) -> TopicRepo<'_> {
        TopicRepo::new(self)
    }

    /// Registered models and aliases.
    pub fn models(&self) -> ModelRepo<'_> {
        ModelRepo::new(self)
    }

    /// Following vector tables: change log, leases, progress.
    pub fn follows(&self) -> FollowRepo<'_> {
        FollowRepo::new(self)
    }

    /// The training-job queue.
    pub fn jobs(&self) -> JobRepo<'_> {
        JobRepo::new(self)
    }

    /// Evidence channels (`jammi_evidence_channels`).
    pub fn evidence(&self) -> EvidenceRepo<'_> {
        EvidenceRepo::new(self)
    }

    /// Ephemeral sessions (`jammi_ephemeral_sessions`).
    pub fn ephemeral_sessions(&self) -> EphemeralRepo<'_> {
        EphemeralRepo::new(self)
    }

    /// Audit records (`jammi_audit_searches`).
    pub fn audit(&self) -> AuditRepo<'_> {
        AuditRepo::new(self)
    }

    /// Server bearer tokens.
    pub fn tokens(&self) -> TokenRepo<'_> {
        TokenRepo::new(self)
    }

    /// Repository of mutable tables.
    pub fn mutable_tables(&self) -> MutableTableRepo<'_> {
        MutableTableRepo::new(self)
    }

    /// Leases on background work shared by the processes of a deployment.
    pub fn leases(&self) -> LeaseRepo<'_> {
        LeaseRepo::new(self)
    }

    /// Version numbers of the migrations recorded in the ledger, in order.
    pub async fn applied_migrations(&self) -> Result<Vec<i64>> {
        migrations::applied(self).await
    }

    /// A counter bumped by every change to registered objects; sessions compare it to decide
    /// whether another process changed the catalog since they last looked.
    pub async fn change_counter(&self) -> Result<i64> {
        if let Some(counter) = self.backend.read_change_counter() {
            return Ok(counter);
        }
        let mut attempt = 0;
        loop {
            match sqlx::query_as::<_, (i64,)>("SELECT counter FROM jammi_change_counter WHERE id = 1").fetch_one(&self.pool).await {
                Ok(row) => return Ok(row.0),
                // Another process rebuilding SQLite's WAL index makes a read fail for a moment.
                Err(e) if is_transient(&e) && attempt < 7 => {
                    attempt += 1;
                    backoff(attempt).await;
                }
                Err(e) => return Err(self.error(e)),
            }
        }
    }

    /// Close the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Turn a driver error into an engine error naming this catalog.
    pub(crate) fn error(&self, e: sqlx::Error) -> Error {
        Error::from_sqlx(&self.backend.display_url(), &e)
    }
}

/// SQLite errors that say "try again": the database was busy or its WAL index was being
/// rebuilt by another process (`SQLITE_BUSY`, `SQLITE_LOCKED`, `SQLITE_PROTOCOL` and their
/// extended codes), or no pooled connection came free in time.
pub(crate) fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => {
            let code: i64 = db.code().and_then(|c| c.parse().ok()).unwrap_or(0);
            matches!(code & 0xff, 5 | 6 | 15)
        }
        _ => false,
    }
}

/// Wait before retry `attempt` (exponential, 10 ms to 640 ms).
pub(crate) async fn backoff(attempt: u32) {
    tokio::time::sleep(std::time::Duration::from_millis(5u64 << attempt.clamp(1, 7))).await;
}

/// Whether `owner` (`None`: shared) already has a row named `name` in `table` (a table with
/// `tenant_id` and `name` columns), as seen inside `tx`.
pub(crate) async fn name_taken(tx: &mut Transaction<'_, Any>, table: &str, owner: Option<&str>, name: &str) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(&format!("SELECT id FROM {table} WHERE COALESCE(tenant_id, '') = $1 AND name = $2"))
        .bind(owner.unwrap_or_default().to_string())
        .bind(name.to_string())
        .fetch_optional(&mut **tx)
        .await?
        .is_some())
}

/// The nullable `tenant_id` column of a row.
pub(crate) fn tenant_of(row: &sqlx::any::AnyRow) -> Result<Option<TenantId>, sqlx::Error> {
    use sqlx::Row;
    row.try_get::<Option<String>, _>("tenant_id")?
        .map(|t| t.parse::<TenantId>().map_err(|e| sqlx::Error::Decode(Box::new(e))))
        .transpose()
}

/// The condition (` AND …`, on table alias `table`) for rows `scope` may see — its own and
/// shared rows — and the tenant to bind as parameter `$n` when the condition has one.
pub(crate) fn visible_rows(table: &str, scope: TenantScope, n: usize) -> (String, Option<String>) {
    match scope {
        TenantScope::Admin => (String::new(), None),
        TenantScope::Unbound => (format!(" AND {table}.tenant_id IS NULL"), None),
        TenantScope::Tenant(t) => (format!(" AND ({table}.tenant_id = ${n} OR {table}.tenant_id IS NULL)"), Some(t.to_string())),
    }
}

/// Bind `value` when present (the tenant of [`visible_rows`]).
pub(crate) fn bind_opt<'q>(query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>, value: Option<String>) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    match value {
        Some(v) => query.bind(v),
        None => query,
    }
}

/// Bump the change counter inside a write transaction.
/// The pool's check of a connection given back: one still inside a transaction is closed,
/// not pooled. A `COMMIT` that fails (a full disk) can leave SQLite's transaction rolled back
/// but sqlx still counting it open, so every later `BEGIN` on that connection would fail.
pub(crate) fn release_only_clean(
    conn: &mut sqlx::AnyConnection,
    _meta: sqlx::pool::PoolConnectionMetadata,
) -> futures::future::BoxFuture<'_, Result<bool, sqlx::Error>> {
    use sqlx::Connection;
    Box::pin(async move {
        if !conn.is_in_transaction() {
            return Ok(true);
        }
        // A dropped transaction queues its rollback; the ping runs it.
        conn.ping().await?;
        Ok(!conn.is_in_transaction())
    })
}

pub(crate) async fn bump_change_counter(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE jammi_change_counter SET counter = counter + 1 WHERE id = 1")
        .execute(conn)
        .await
        .map(|_| ())
}

/// Milliseconds since the Unix epoch, for `created_at` columns.
pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
