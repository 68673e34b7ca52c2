//! Connections to a database source: one pool per source, transient failures (refused,
//! reset, timed out) retried with bounded exponential backoff, permanent ones (bad
//! password, unknown database) reported at once; rows streamed into Arrow batches.

use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use futures::StreamExt;
use sqlx::mysql::{MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use tokio::sync::mpsc;

use super::types::{wire_of, RemoteKind, Wire, WireColumn};
use crate::error::{Error, Result};

/// Attempts for an operation that fails transiently (with the pool's 2 s wait for a
/// connection and the backoff between attempts, about 10 s at most).
const ATTEMPTS: u32 = 4;

/// A pool of connections to one database source.
#[derive(Debug, Clone)]
pub enum RemotePool {
    /// PostgreSQL.
    Postgres(PgPool),
    /// MySQL / MariaDB.
    Mysql(MySqlPool),
}

/// Whether `e` may go away by trying again.
fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            // Postgres: too many connections, the server starting up or shutting down.
            matches!(db.code().as_deref(), Some("53300" | "57P03" | "57P01" | "08006" | "08001" | "08004" | "1040" | "1053"))
        }
        _ => false,
    }
}

/// The engine error for `e` from source `source`: unreachable or out of connections is
/// [`Error::Unavailable`], anything else the database said is [`Error::Source`]; neither
/// ever contains the connection URL or its password.
pub(crate) fn remote_error(e: &sqlx::Error, source: &str, password: Option<&str>) -> crate::error::Error {
    let message = describe(e, source, password);
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            crate::error::Error::Unavailable { backend: format!("source '{source}'"), message }
        }
        _ => crate::error::Error::Source { source_name: source.to_string(), message },
    }
}

/// A message for `e` that never contains the connection URL or its password.
pub(crate) fn describe(e: &sqlx::Error, source: &str, password: Option<&str>) -> String {
    let text = match e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            match code.as_str() {
                "28P01" | "28000" | "1045" => format!("authentication failed for source '{source}': check the user name and password in its URL"),
                "3D000" | "1049" => format!("source '{source}': the database does not exist: {}", db.message()),
                _ => format!("source '{source}': {}", db.message()),
            }
        }
        sqlx::Error::Io(io) => format!("source '{source}': cannot reach the database ({io}); is it running and reachable?"),
        sqlx::Error::PoolTimedOut => format!("source '{source}': timed out waiting for a connection to the database"),
        other => format!("source '{source}': {other}"),
    };
    let text = crate::error::one_line(&text);
    match password {
        Some(p) if !p.is_empty() => text.replace(p, "***"),
        _ => text,
    }
}

impl RemotePool {
    /// A pool that connects on first use.
    pub fn lazy(kind: RemoteKind, url: &str, max_connections: u32) -> Result<Self> {
        let bad = |e: sqlx::Error| Error::invalid_url(crate::redact::redact_url(url), crate::error::one_line(&e.to_string()));
        Ok(match kind {
            RemoteKind::Postgres => RemotePool::Postgres(
                PgPoolOptions::new().max_connections(max_connections).acquire_timeout(Duration::from_secs(2)).connect_lazy(url).map_err(bad)?,
            ),
            RemoteKind::Mysql => RemotePool::Mysql(
                MySqlPoolOptions::new().max_connections(max_connections).acquire_timeout(Duration::from_secs(2)).connect_lazy(url).map_err(bad)?,
            ),
        })
    }

    /// Open one connection outside the pool: the pool reports every failure to connect as
    /// a timeout, this says why (refused, bad password, unknown database).
    async fn probe(&self) -> std::result::Result<(), sqlx::Error> {
        use sqlx::{ConnectOptions, Connection};
        match self {
            RemotePool::Postgres(pool) => pool.connect_options().connect().await?.close().await,
            RemotePool::Mysql(pool) => pool.connect_options().connect().await?.close().await,
        }
    }

    /// Run `op` until it succeeds, fails permanently, or the attempts run out.
    async fn retrying<T, F, Fut>(&self, mut op: F) -> std::result::Result<T, sqlx::Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, sqlx::Error>>,
    {
        let mut attempt = 0;
        loop {
            let error = match op().await {
                Ok(v) => return Ok(v),
                Err(sqlx::Error::PoolTimedOut) => match self.probe().await {
                    // The database answers now: try the pool again.
                    Ok(()) => sqlx::Error::PoolTimedOut,
                    Err(e) => e,
                },
                Err(e) => e,
            };
            if !is_transient(&error) || attempt + 1 >= ATTEMPTS {
                return Err(error);
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
    }

    /// Text rows of a metadata query (every selected column read as text or NULL).
    pub async fn text_rows(&self, sql: &str) -> std::result::Result<Vec<Vec<Option<String>>>, sqlx::Error> {
        match self {
            RemotePool::Postgres(pool) => {
                let rows = self.retrying(|| sqlx::query(sql).fetch_all(pool)).await?;
                Ok(rows.iter().map(|r| (0..r.len()).map(|i| r.try_get::<Option<String>, _>(i).ok().flatten()).collect()).collect())
            }
            RemotePool::Mysql(pool) => {
                let rows = self.retrying(|| sqlx::query(sql).fetch_all(pool)).await?;
                Ok(rows.iter().map(|r| (0..r.len()).map(|i| r.try_get::<Option<String>, _>(i).ok().flatten()).collect()).collect())
            }
        }
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> std::result::Result<(), sqlx::Error> {
        match self {
            RemotePool::Postgres(pool) => self.retrying(|| sqlx::query("SELECT 1").execute(pool)).await.map(|_| ()),
            RemotePool::Mysql(pool) => self.retrying(|| sqlx::query("SELECT 1").execute(pool)).await.map(|_| ()),
        }
    }

    /// An idle pooled connection, if one is ready now (no waiting, no connecting).
    pub fn idle_connection(&self) -> Option<RemoteConnection> {
        match self {
            RemotePool::Postgres(pool) => pool.try_acquire().map(RemoteConnection::Postgres),
            RemotePool::Mysql(pool) => pool.try_acquire().map(RemoteConnection::Mysql),
        }
    }

    /// Run `sql` with `params` bound to its `$1, $2, …` on `conn` (or on a connection from
    /// the pool, acquiring with retries) and send its rows, as batches of `schema`
    /// (`batch_size` rows each), to `tx`. Once rows flow, an error ends the stream.
    pub async fn stream(
        &self,
        conn: Option<RemoteConnection>,
        sql: String,
        params: Vec<ScalarValue>,
        schema: SchemaRef,
        batch_size: usize,
        tx: mpsc::Sender<std::result::Result<RecordBatch, sqlx::Error>>,
    ) {
        let conn = match (conn, self) {
            (Some(conn), _) => Ok(conn),
            (None, RemotePool::Postgres(pool)) => self.retrying(|| pool.acquire()).await.map(RemoteConnection::Postgres),
            (None, RemotePool::Mysql(pool)) => self.retrying(|| pool.acquire()).await.map(RemoteConnection::Mysql),
        };
        let result = match conn {
            Ok(RemoteConnection::Postgres(mut conn)) => {
                let rows = params.iter().fold(sqlx::query(&sql), bind_pg).fetch(&mut *conn);
                pump(rows, &schema, batch_size, &tx, decode_pg).await
            }
            Ok(RemoteConnection::Mysql(mut conn)) => {
                let rows = sqlx::query(&sql).fetch(&mut *conn);
                pump(rows, &schema, batch_size, &tx, decode_mysql).await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            let _ = tx.send(Err(e)).await;
        }
    }
}

/// A connection taken from a [`RemotePool`].
pub enum RemoteConnection {
    /// PostgreSQL.
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
    /// MySQL / MariaDB.
    Mysql(sqlx::pool::PoolConnection<sqlx::MySql>),
}

/// Bind one parameter value (of a type `pushdown::param_type_ok` accepts).
fn bind_pg<'q>(query: PgQuery<'q>, value: &ScalarValue) -> PgQuery<'q> {
    match value {
        ScalarValue::Int16(v) => query.bind(*v),
        ScalarValue::Int32(v) => query.bind(*v),
        ScalarValue::Int64(v) => query.bind(*v),
        ScalarValue::Float64(v) => query.bind(*v),
        ScalarValue::Boolean(v) => query.bind(*v),
        ScalarValue::Utf8(v) => query.bind(v.clone()),
        other => query.bind((!other.is_null()).then(|| other.to_string())),
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Rows → batches.
async fn pump<R>(
    mut rows: futures::stream::BoxStream<'_, std::result::Result<R, sqlx::Error>>,
    schema: &SchemaRef,
    batch_size: usize,
    tx: &mpsc::Sender<std::result::Result<RecordBatch, sqlx::Error>>,
    decode: fn(&R, usize, &mut WireColumn) -> std::result::Result<(), sqlx::Error>,
) -> std::result::Result<(), sqlx::Error> {
    let wires: Vec<Wire> = schema.fields().iter().map(|f| wire_of(f.data_type())).collect();
    let fresh = || wires.iter().map(|w| WireColumn::new(*w)).collect::<Vec<_>>();
    let mut columns = fresh();
    let mut n = 0;
    while let Some(row) = rows.next().await {
        let row = row?;
        for (i, column) in columns.iter_mut().enumerate() {
            decode(&row, i, column)?;
        }
        n += 1;
        if n == batch_size {
            if tx.send(Ok(finish(&mut columns, schema, n)?)).await.is_err() {
                return Ok(()); // the consumer went away (LIMIT satisfied, query cancelled)
            }
            columns = fresh();
            n = 0;
        }
    }
    if n > 0 || schema.fields().is_empty() {
        let _ = tx.send(Ok(finish(&mut columns, schema, n)?)).await;
    }
    Ok(())
}

fn finish(columns: &mut [WireColumn], schema: &SchemaRef, rows: usize) -> std::result::Result<RecordBatch, sqlx::Error> {
    let arrays = columns
        .iter_mut()
        .zip(schema.fields())
        .map(|(c, f)| c.finish_as(f.data_type(), rows))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let options = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(SchemaRef::clone(schema), arrays, &options).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn decode_pg(row: &PgRow, i: usize, column: &mut WireColumn) -> std::result::Result<(), sqlx::Error> {
    match column {
        WireColumn::Int(b) => b.append_option(row.try_get::<Option<i64>, _>(i)?),
        WireColumn::Float(b) => b.append_option(row.try_get::<Option<f64>, _>(i)?),
        WireColumn::Text(b) => b.append_option(row.try_get::<Option<String>, _>(i)?),
        WireColumn::Bytes(b) => b.append_option(row.try_get::<Option<Vec<u8>>, _>(i)?),
        WireColumn::Bool(b) => b.append_option(row.try_get::<Option<bool>, _>(i)?),
        other => return list_value(row, i, other),
    }
    Ok(())
}

fn list_value(row: &PgRow, i: usize, column: &mut WireColumn) -> std::result::Result<(), sqlx::Error> {
    macro_rules! list {
        ($b:expr, $t:ty) => {{
            match row.try_get::<Option<Vec<Option<$t>>>, _>(i)? {
                Some(items) => {
                    $b.values().extend(items);
                    $b.append(true);
                }
                None => $b.append(false),
            }
        }};
    }
    match column {
        WireColumn::IntList(b) => list!(b, i64),
        WireColumn::FloatList(b) => list!(b, f64),
        WireColumn::TextList(b) => list!(b, String),
        WireColumn::BoolList(b) => list!(b, bool),
        _ => unreachable!("scalar wires are decoded by the caller"),
    }
    Ok(())
}

fn decode_mysql(row: &MySqlRow, i: usize, column: &mut WireColumn) -> std::result::Result<(), sqlx::Error> {
    match column {
        WireColumn::Int(b) => b.append_option(row.try_get::<Option<i64>, _>(i)?),
        WireColumn::Float(b) => b.append_option(row.try_get::<Option<f64>, _>(i)?),
        WireColumn::Text(b) => b.append_option(row.try_get::<Option<String>, _>(i)?),
        WireColumn::Bytes(b) => b.append_option(row.try_get::<Option<Vec<u8>>, _>(i)?),
        WireColumn::Bool(b) => b.append_option(row.try_get::<Option<i64>, _>(i)?.map(|v| v != 0)),
        // MySQL has no arrays; such columns never exist on a MySQL source.
        _ => return Err(sqlx::Error::Decode("MySQL sources have no array columns".into())),
    }
    Ok(())
}
