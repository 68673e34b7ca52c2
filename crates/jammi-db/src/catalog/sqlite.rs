//! SQLite catalog backend: one file in the data directory, WAL, fully synchronous commits.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use sqlx::{Any, Executor, Transaction};

use super::{BackendKind, CatalogBackend};
use crate::config::CatalogConfig;
use crate::error::{Error, Result};

/// The embedded catalog.
#[derive(Debug)]
pub struct SqliteBackend {
    path: PathBuf,
    /// A read-only connection of its own for the change counter, opened on first use.
    counter: Mutex<Option<rusqlite::Connection>>,
}

impl SqliteBackend {
    /// A backend for the database file at `path` (created on first connect).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteBackend { path: path.into(), counter: Mutex::new(None) }
    }

    fn counter_connection(&self) -> rusqlite::Result<rusqlite::Connection> {
        use rusqlite::OpenFlags;
        let connection = rusqlite::Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        // Never wait here: a busy file sends the caller to the pool, which retries.
        connection.busy_timeout(std::time::Duration::ZERO)?;
        Ok(connection)
    }

    /// Parse `sqlite:///abs/path.db`, `sqlite://rel/path.db` or `sqlite:path.db`.
    pub fn from_url(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            return Err(Error::config(
                "catalog.url",
                format!("'{url}' does not name a database file; use sqlite:///path/to/catalog.db"),
            ));
        }
        Ok(SqliteBackend::new(path))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl SqliteBackend {
    /// The catalog file and its directory (where SQLite keeps its `-wal` and `-shm` files)
    /// must be writable. Checked first because the pool would otherwise retry the failing
    /// open until its timeout and then report only that it timed out.
    fn check_writable(&self) -> Result<()> {
        let unwritable = |path: &Path, e: std::io::Error| Error::Catalog {
            backend: self.display_url(),
            message: format!(
                "cannot write {}: {e}; the catalog's file and directory must be writable (check permissions, free space, and that the disk is not mounted read-only)",
                path.display()
            ),
        };
        let dir = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let probe = dir.join(format!(".jammi-write-probe-{}", std::process::id()));
        std::fs::File::create(&probe).map_err(|e| unwritable(dir, e))?;
        let _ = std::fs::remove_file(&probe);
        if self.path.exists() {
            std::fs::OpenOptions::new().write(true).open(&self.path).map_err(|e| unwritable(&self.path, e))?;
        }
        Ok(())
    }
}

#[async_trait]
impl CatalogBackend for SqliteBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Sqlite
    }

    fn display_url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    async fn connect(&self, config: &CatalogConfig) -> Result<AnyPool> {
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        self.check_writable()?;
        let busy_ms = config.busy_timeout_ms;
        let url = format!("sqlite://{}?mode=rwc", self.path.display());
        AnyPoolOptions::new()
            .max_connections(config.max_connections)
            // A local file has no connection to go stale; the default ping before every
            // acquire is one more trip to the connection's worker thread on every statement.
            .test_before_acquire(false)
            // Opening a connection runs pragmas that wait (up to the busy timeout) while
            // another process holds the write lock.
            .acquire_timeout(std::time::Duration::from_millis(config.connect_timeout_ms + busy_ms))
            .after_release(super::release_only_clean)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    // busy_timeout first: the other pragmas may wait on another process.
                    conn.execute(format!("PRAGMA busy_timeout = {busy_ms}").as_str()).await?;
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    // FULL: a commit that returned is on disk even if the machine loses power.
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|e| Error::Catalog {
                backend: self.display_url(),
                message: format!("cannot open: {}", crate::error::one_line(&e.to_string())),
            })
    }

    /// Every statement reads the counter first. Through the pool that read is a trip to a
    /// connection's worker thread and back (35–130 µs, much of a point lookup); on a
    /// connection of our own, on the calling thread, it is a few microseconds: the read
    /// finds the page in SQLite's cache unless a commit happened since.
    fn read_change_counter(&self) -> Option<i64> {
        let mut slot = self.counter.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(self.counter_connection().ok()?);
        }
        let connection = slot.as_ref()?;
        let read = connection
            .prepare_cached("SELECT counter FROM jammi_change_counter WHERE id = 1")
            .and_then(|mut statement| statement.query_row([], |row| row.get::<_, i64>(0)));
        match read {
            Ok(counter) => Some(counter),
            Err(_) => {
                // Busy, or the connection went bad: the pool answers this time (and says
                // why if it cannot either); a new connection is opened next time.
                *slot = None;
                None
            }
        }
    }

    async fn begin_serialized<'c>(&self, pool: &'c AnyPool) -> Result<Transaction<'c, Any>> {
        // IMMEDIATE takes the write lock up front, so two processes cannot both read
        // "name is free" and then both insert.
        pool.begin_with("BEGIN IMMEDIATE").await.map_err(|e| Error::Catalog {
            backend: self.display_url(),
            message: crate::error::one_line(&e.to_string()),
        })
    }

    async fn serialize_in(&self, _conn: &mut sqlx::AnyConnection) -> Result<()> {
        // Every write transaction on SQLite already holds the database's write lock.
        Ok(())
    }
}
