//! Change feeds: a topic created `--from-table mutable.public.T` receives one event per row
//! that a committed statement inserted, updated or deleted in T, appended by the writing
//! statement in its own transaction — no write without its event, no event without its
//! write.

use std::sync::Arc;

use super::{log, TopicEntry};
use crate::error::Result;
use crate::mutable::txn::WriteTxn;

/// One row's change.
#[derive(Debug, Clone)]
pub struct Change {
    /// `insert`, `update` or `delete`.
    pub op: &'static str,
    /// The primary key as a JSON object.
    pub key: String,
    /// The row after the change (inserts and updates), a JSON object.
    pub new: Option<String>,
    /// The row before the change (updates and deletes), a JSON object.
    pub old: Option<String>,
}

/// Append `changes` to every feed inside `txn`. Returns each feed's (topic id, next offset)
/// for the wake-up after commit.
pub(crate) async fn append(txn: &WriteTxn, feeds: &[Arc<TopicEntry>], tenant: Option<String>, changes: &[Change]) -> Result<Vec<(String, i64)>> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let payloads: Vec<String> = changes
        .iter()
        .map(|c| serde_json::json!({"op": c.op, "key": c.key, "new": c.new, "old": c.old}).to_string())
        .collect();
    let mut out = Vec::with_capacity(feeds.len());
    for feed in feeds {
        let (id, retention, tenant, payloads) = (feed.record.id.clone(), feed.spec.retention, tenant.clone(), payloads.clone());
        let n = payloads.len() as i64;
        let kind = txn.kind();
        let appended = txn.with(move |conn| Box::pin(async move { log::append(conn, kind, &id, &retention, tenant, payloads).await })).await?;
        out.push((feed.record.id.clone(), appended.first_offset + n));
    }
    Ok(out)
}
