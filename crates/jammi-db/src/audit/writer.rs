//! The audit writer: one task per engine appends records to their chains in batches, one
//! catalog transaction per batch (group commit). Searches hand their record over and go on
//! (`durability = "batched"`, the default) or wait for the commit (`"synchronous"`).
//!
//! Sequence numbers and the previous signature are assigned here, inside the transaction
//! that writes the rows, so a chain never has a gap: a batch that fails to commit consumes no
//! sequence numbers. Heads of chains are cached; another process appending to the same
//! chain makes an insert conflict, and the batch is retried from the database's heads.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use super::keys::{KeyStore, SEARCH_KEY_INFO};
use super::record::SearchRecord;
use crate::catalog::Catalog;
use crate::error::{Error, Result};

/// Records written in one transaction at most.
const MAX_BATCH: usize = 1024;

/// Records per INSERT statement (7 parameters each, under SQLite's and Postgres's limits).
const ROWS_PER_INSERT: usize = 256;

/// Attempts of a batch that meets another process's appends.
const MAX_ATTEMPTS: usize = 16;

/// The topic every audit record is also published on, in the record's own transaction.
pub const SEARCH_TOPIC: &str = "jammi.audit.search.v1";

/// Its columns.
pub(super) const SEARCH_TOPIC_COLUMNS: &str = "query_id:string,tenant:string,seq:int64,kind:string,record:string,signature:string";

/// Create the engine topic `name` with `columns` (shared; each event carries its tenant,
/// so a subscriber reads its own tenant's) unless it exists.
pub(crate) async fn ensure_topic(catalog: &Catalog, name: &str, columns: &str) -> Result<()> {
    let exists = sqlx::query("SELECT id FROM jammi_topics WHERE name = $1 AND tenant_id IS NULL").bind(name).fetch_optional(catalog.pool()).await.map_err(|e| catalog.error(e))?;
    if exists.is_some() {
        return Ok(());
    }
    let spec = crate::topic::spec::TopicSpec { columns: crate::topic::spec::TopicSpec::parse_schema(columns)?, source_table: None, retention: Default::default() };
    let record = crate::catalog::TopicRecord { id: uuid::Uuid::new_v4().to_string(), tenant: None, name: name.into(), spec: serde_json::to_string(&spec).map_err(Error::internal)?, next_offset: 0, low_offset: 0 };
    match catalog.topics().insert(&record).await {
        // Another engine created it first.
        Ok(()) | Err(Error::InvalidName { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The id of engine topic `name`, read inside the transaction open on `conn` (`None` when
/// it does not exist).
pub(crate) async fn topic_id_in(conn: &mut sqlx::AnyConnection, catalog: &Catalog, name: &str) -> Result<Option<String>> {
    sqlx::query("SELECT id FROM jammi_topics WHERE name = $1 AND tenant_id IS NULL")
        .bind(name)
        .fetch_optional(conn)
        .await
        .map_err(|e| catalog.error(e))?
        .map(|r| r.try_get::<String, _>(0))
        .transpose()
        .map_err(|e| catalog.error(e))
}

/// Records waiting for the writer at most: past this, searches wait for room (backpressure)
/// instead of the queue growing without bound.
pub(super) const QUEUE: usize = 65_536;

/// What the writer is asked to do.
pub(super) enum Message {
    /// Append a record (its `seq` and `prev` are filled in here); `ack` hears the outcome.
    Append { record: SearchRecord, ack: Option<oneshot::Sender<Result<()>>> },
    /// Answer once everything sent before is committed (or has failed).
    Flush(oneshot::Sender<()>),
}

/// Start the writer for `catalog`; it ends when every sender is gone, after writing what
/// it was sent. After the first record of a batch it waits up to `window` for more, so a
/// steady stream of searches costs a commit per window, not one per search (fewer turns
/// of the catalog's write lock, which mutable-table writes share).
pub(super) fn spawn(catalog: Catalog, keys: Arc<dyn KeyStore>, window: std::time::Duration) -> mpsc::Sender<Message> {
    let (tx, mut rx) = mpsc::channel::<Message>(QUEUE);
    tokio::spawn(async move {
        let mut heads: HashMap<String, (i64, String)> = HashMap::new();
        while let Some(first) = rx.recv().await {
            // Everything already queued joins this batch: while one batch commits, the next
            // gathers, so the commit cost is shared by every search that came meanwhile.
            let mut batch = vec![first];
            // Let the batch gather for `window` (a flush is answered at once). The queue is
            // not watched meanwhile, so arriving records cost no wake-ups; they are drained
            // after.
            if !window.is_zero() && !matches!(batch[0], Message::Flush(_)) {
                tokio::time::sleep(window).await;
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(message) => batch.push(message),
                    Err(_) => break,
                }
            }
            let (mut appends, mut flushes) = (Vec::new(), Vec::new());
            for message in batch {
                match message {
                    Message::Append { record, ack } => appends.push((record, ack)),
                    Message::Flush(done) => flushes.push(done),
                }
            }
            if !appends.is_empty() {
                let outcome = write_batch(&catalog, keys.as_ref(), &mut heads, &mut appends).await;
                if let Err(e) = &outcome {
                    tracing::error!(error = %e, records = appends.len(), "audit records could not be written");
                }
                for (_, ack) in appends {
                    if let Some(ack) = ack {
                        let _ = ack.send(outcome.as_ref().map(|_| ()).map_err(|e| Error::Catalog { backend: "audit log".into(), message: e.to_string() }));
                    }
                }
            }
            for done in flushes {
                let _ = done.send(());
            }
        }
    });
    tx
}

/// Append `appends` in one transaction, retrying from the database's chain heads when
/// another process appended meanwhile.
async fn write_batch(catalog: &Catalog, keys: &dyn KeyStore, heads: &mut HashMap<String, (i64, String)>, appends: &mut [(SearchRecord, Option<oneshot::Sender<Result<()>>>)]) -> Result<()> {
    for _ in 0..MAX_ATTEMPTS {
        match try_batch(catalog, keys, heads, appends).await {
            Ok(true) => return Ok(()),
            Ok(false) => heads.clear(),
            Err(e) => {
                heads.clear();
                return Err(e);
            }
        }
    }
    Err(Error::Conflict { message: format!("the audit chains kept moving under this process's appends ({MAX_ATTEMPTS} attempts)") })
}

/// One attempt: `false` when a (chain, seq) was taken by another writer (nothing is kept).
async fn try_batch(catalog: &Catalog, keys: &dyn KeyStore, heads: &mut HashMap<String, (i64, String)>, appends: &mut [(SearchRecord, Option<oneshot::Sender<Result<()>>>)]) -> Result<bool> {
    // Writer-serialised (SQLite: BEGIN IMMEDIATE): the head is read and the rows written
    // under one write lock, so engines sharing the catalog take turns instead of failing.
    let mut tx = catalog.begin_serialized().await?;
    let mut next = heads.clone();
    let mut signers = HashMap::new();
    let topic = topic_id_in(&mut tx, catalog, SEARCH_TOPIC).await?;
    // Events in runs of one tenant, in append order.
    let mut events: Vec<(Option<String>, Vec<String>)> = Vec::new();
    let mut rows: Vec<(&SearchRecord, String, String)> = Vec::with_capacity(appends.len());
    for (record, _) in appends.iter_mut() {
        let head = match next.get(&record.tenant) {
            Some(head) => head.clone(),
            None => {
                let row = sqlx::query("SELECT seq, signature FROM jammi_audit_searches WHERE chain = $1 ORDER BY seq DESC LIMIT 1")
                    .bind(&record.tenant)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| catalog.error(e))?;
                match row {
                    Some(r) => (r.try_get::<i64, _>(0).map_err(|e| catalog.error(e))?, r.try_get::<String, _>(1).map_err(|e| catalog.error(e))?),
                    None => (0, String::new()),
                }
            }
        };
        record.seq = head.0 as u64 + 1;
        record.prev = head.1;
        let key = match signers.get(&(record.tenant.clone(), record.key_version)) {
            Some(key) => key,
            None => {
                let key = keys.key(record.key_version)?.derive(&record.tenant, SEARCH_KEY_INFO);
                signers.entry((record.tenant.clone(), record.key_version)).or_insert(key)
            }
        };
        let text = record.canonical();
        let signature = key.sign(text.as_bytes());
        let tenant = (!record.tenant.is_empty()).then(|| record.tenant.clone());
        let event = serde_json::json!({"query_id": record.query_id, "tenant": record.tenant, "seq": record.seq, "kind": record.kind, "record": text, "signature": signature}).to_string();
        match events.last_mut() {
            Some((t, payloads)) if *t == tenant => payloads.push(event),
            _ => events.push((tenant, vec![event])),
        }
        next.insert(record.tenant.clone(), (record.seq as i64, signature.clone()));
        rows.push((record, text, signature));
    }
    // Many rows per statement: a batch costs a few round trips to the database, not one per
    // record (the write lock is held for less time).
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut sql = String::from("INSERT INTO jammi_audit_searches (chain, tenant_id, seq, query_id, key_version, record, signature) VALUES ");
        for i in 0..chunk.len() {
            let n = i * 7;
            sql.push_str(&format!("{}(${}, ${}, ${}, ${}, ${}, ${}, ${})", if i > 0 { ", " } else { "" }, n + 1, n + 2, n + 3, n + 4, n + 5, n + 6, n + 7));
        }
        sql.push_str(" ON CONFLICT (chain, seq) DO NOTHING");
        let mut insert = sqlx::query(&sql);
        for (record, text, signature) in chunk {
            insert = insert
                .bind(record.tenant.as_str())
                .bind((!record.tenant.is_empty()).then(|| record.tenant.as_str()))
                .bind(record.seq as i64)
                .bind(record.query_id.as_str())
                .bind(i64::from(record.key_version))
                .bind(text.as_str())
                .bind(signature.as_str());
        }
        let inserted = insert.execute(&mut *tx).await.map_err(|e| catalog.error(e))?;
        // A (chain, seq) another writer took: nothing of this attempt is kept.
        if inserted.rows_affected() != chunk.len() as u64 {
            tx.rollback().await.map_err(|e| catalog.error(e))?;
            return Ok(false);
        }
    }
    // The events commit with the records: a subscriber never misses a record and never sees
    // one that was rolled back.
    if let Some(topic) = topic {
        let kind = catalog.backend().kind();
        for (tenant, payloads) in events {
            crate::topic::log::append(&mut tx, kind, &topic, &Default::default(), tenant, payloads).await?;
        }
    }
    tx.commit().await.map_err(|e| catalog.error(e))?;
    *heads = next;
    Ok(true)
}
