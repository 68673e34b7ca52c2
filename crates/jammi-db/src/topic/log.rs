//! The durable log of a topic, in the catalog database: appends that assign offsets at
//! commit, reads by offset, retention, and the JSON form each event's row is stored in.
//!
//! Offsets: an append moves the topic row's `next_offset` forward in the same transaction
//! that inserts the events. The row lock (Postgres) or the database write lock (SQLite)
//! makes appends to one topic commit one after another in offset order, so the committed
//! offsets are always a gap-free prefix: a reader at offset N never finds N+1 before N.

use std::io::Cursor;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::json::ReaderBuilder;
use sqlx::{AnyConnection, AnyPool, Row};

use super::spec::{Retention, TopicSpec};
use crate::catalog::{now_millis, BackendKind};
use crate::error::{Error, Result};
use crate::tenant::TenantScope;

/// One stored event.
#[derive(Debug, Clone)]
pub struct LogEvent {
    /// Offset.
    pub offset: i64,
    /// Commit time, ms since the epoch.
    pub produced_at: i64,
    /// The row as a JSON object.
    pub payload: String,
}

fn sql_err(e: sqlx::Error) -> Error {
    Error::from_sqlx("the topic log", &e)
}

/// Where an append landed.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    /// The first offset assigned.
    pub first_offset: i64,
    /// The `produced_at` stamped on the events.
    pub produced_at: i64,
}

/// Append `payloads` (stamped with `tenant`) inside the caller's transaction and apply the
/// topic's retention. [`Error::TopicGone`] when the topic no longer exists.
pub async fn append(conn: &mut AnyConnection, kind: BackendKind, topic_id: &str, retention: &Retention, tenant: Option<String>, payloads: Vec<String>) -> Result<Appended> {
    let n = payloads.len() as i64;
    // Moving the counter takes the topic row's lock (Postgres) for the rest of the transaction.
    let next: i64 = sqlx::query("UPDATE jammi_topics SET next_offset = next_offset + $1 WHERE id = $2 RETURNING next_offset")
        .bind(n)
        .bind(topic_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(sql_err)?
        .ok_or(Error::TopicGone)?
        .try_get(0)
        .map_err(sql_err)?;
    let first = next - n;
    let now = now_millis();
    for (chunk_index, chunk) in payloads.chunks(1000).enumerate() {
        let tuples: Vec<String> = (0..chunk.len())
            .map(|i| format!("({})", (1..=5).map(|j| kind.placeholder(i * 5 + j)).collect::<Vec<_>>().join(", ")))
            .collect();
        let sql = format!("INSERT INTO jammi_topic_events (topic_id, event_offset, tenant_id, produced_at, payload) VALUES {}", tuples.join(", "));
        let mut query = sqlx::query(&sql);
        for (i, payload) in chunk.iter().enumerate() {
            query = query.bind(topic_id).bind(first + (chunk_index * 1000 + i) as i64).bind(tenant.clone()).bind(now).bind(payload.clone());
        }
        query.execute(&mut *conn).await.map_err(sql_err)?;
    }
    if retention.max_events.is_some() || retention.max_age_ms.is_some() {
        let cuts = [("event_offset", retention.max_events.map(|max| next - max)), ("produced_at", retention.max_age_ms.map(|age| now - age))];
        for (column, bound) in cuts {
            let Some(bound) = bound else { continue };
            sqlx::query(&format!("DELETE FROM jammi_topic_events WHERE topic_id = $1 AND {column} < $2"))
                .bind(topic_id)
                .bind(bound)
                .execute(&mut *conn)
                .await
                .map_err(sql_err)?;
        }
        let low: i64 = sqlx::query("SELECT COALESCE(MIN(event_offset), $1) FROM jammi_topic_events WHERE topic_id = $2")
            .bind(next)
            .bind(topic_id)
            .fetch_one(&mut *conn)
            .await
            .map_err(sql_err)?
            .try_get(0)
            .map_err(sql_err)?;
        sqlx::query("UPDATE jammi_topics SET low_offset = $1 WHERE id = $2 AND low_offset < $1")
            .bind(low)
            .bind(topic_id)
            .execute(&mut *conn)
            .await
            .map_err(sql_err)?;
    }
    Ok(Appended { first_offset: first, produced_at: now })
}

/// `$first, $first+1, …` for `n` values of an `IN` list.
pub(crate) fn in_list(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// A row of `SELECT event_offset, produced_at, payload`.
fn event_of(row: &sqlx::any::AnyRow) -> Result<LogEvent> {
    Ok(LogEvent { offset: row.try_get(0).map_err(sql_err)?, produced_at: row.try_get(1).map_err(sql_err)?, payload: row.try_get(2).map_err(sql_err)? })
}

/// The condition on `tenant_id` for events `scope` may see, and its bind.
fn visibility(scope: TenantScope) -> (&'static str, Option<String>) {
    match scope {
        TenantScope::Admin => ("", None),
        TenantScope::Unbound => (" AND tenant_id IS NULL", None),
        TenantScope::Tenant(t) => (" AND (tenant_id = $3 OR tenant_id IS NULL)", Some(t.to_string())),
    }
}

/// Up to `limit` events with offset ≥ `from` that `scope` may see, in offset order.
pub async fn read(conn: &mut AnyConnection, topic_id: &str, from: i64, limit: i64, scope: TenantScope) -> Result<Vec<LogEvent>> {
    let (condition, tenant) = visibility(scope);
    let sql = format!(
        "SELECT event_offset, produced_at, payload FROM jammi_topic_events WHERE topic_id = $1 AND event_offset >= $2{condition} \
         ORDER BY event_offset LIMIT {limit}"
    );
    let mut query = sqlx::query(&sql).bind(topic_id).bind(from);
    if let Some(t) = tenant {
        query = query.bind(t);
    }
    let rows = query.fetch_all(&mut *conn).await.map_err(sql_err)?;
    rows.iter().map(event_of).collect()
}

/// The events at exactly these offsets that `scope` may see (for consumer groups).
pub async fn read_offsets(pool: &AnyPool, topic_id: &str, offsets: &[i64]) -> Result<Vec<LogEvent>> {
    let mut out = Vec::with_capacity(offsets.len());
    for chunk in offsets.chunks(500) {
        let sql = format!(
            "SELECT event_offset, produced_at, payload FROM jammi_topic_events WHERE topic_id = $1 AND event_offset IN ({}) ORDER BY event_offset",
            in_list(2, chunk.len())
        );
        let mut query = sqlx::query(&sql).bind(topic_id);
        for o in chunk {
            query = query.bind(*o);
        }
        for r in query.fetch_all(pool).await.map_err(sql_err)? {
            out.push(event_of(&r)?);
        }
    }
    Ok(out)
}

/// (lowest retained offset, next offset) of a topic.
pub async fn bounds(pool: &AnyPool, topic_id: &str) -> Result<(i64, i64)> {
    let row = sqlx::query("SELECT low_offset, next_offset FROM jammi_topics WHERE id = $1")
        .bind(topic_id)
        .fetch_optional(pool)
        .await
        .map_err(sql_err)?
        .ok_or_else(|| Error::conflict("the topic was dropped meanwhile; nothing was written"))?;
    Ok((row.try_get(0).map_err(sql_err)?, row.try_get(1).map_err(sql_err)?))
}

/// Stored events as a batch of the topic's event schema (columns, `_offset`, `_produced_at`).
pub fn events_to_batch(spec: &TopicSpec, events: &[LogEvent]) -> Result<RecordBatch> {
    let payload_schema = spec.payload_schema();
    let payloads = decode(&payload_schema, events.iter().map(|e| e.payload.as_str()))?;
    let mut columns: Vec<ArrayRef> = payloads.columns().to_vec();
    columns.push(Arc::new(Int64Array::from(events.iter().map(|e| e.offset).collect::<Vec<_>>())));
    columns.push(Arc::new(TimestampMillisecondArray::from(events.iter().map(|e| e.produced_at).collect::<Vec<_>>()).with_timezone("UTC")));
    RecordBatch::try_new(spec.event_schema(), columns).map_err(Error::internal)
}

/// Parse JSON objects (one per item) into a batch of `schema`.
pub fn decode<'a>(schema: &SchemaRef, rows: impl Iterator<Item = &'a str>) -> Result<RecordBatch> {
    let mut text = String::new();
    for r in rows {
        text.push_str(r);
        text.push('\n');
    }
    let reader = ReaderBuilder::new(SchemaRef::clone(schema))
        .with_batch_size(8192)
        .with_strict_mode(true)
        .build(Cursor::new(text.into_bytes()))
        .map_err(Error::internal)?;
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| Error::invalid("events", format!("events do not match the topic's columns: {e}")))?;
    concat_batches(schema, &batches).map_err(Error::internal)
}
