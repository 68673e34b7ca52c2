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
    /// The tenant of the row ('' = a shared row): the event carries it, whoever wrote it,
    /// so a subscriber sees only changes to rows its scope may read.
    pub tenant: String,
    /// The primary key as a JSON object.
    pub key: String,
    /// The row after the change (inserts and updates), a JSON object.
    pub new: Option<String>,
    /// The row before the change (updates and deletes), a JSON object.
    pub old: Option<String>,
}

/// Append `changes` to every feed inside `txn`. Returns each feed's (topic id, next offset)
/// for the wake-up after commit.
pub(crate) async fn append(txn: &WriteTxn, feeds: &[Arc<TopicEntry>], changes: &[Change]) -> Result<Vec<(String, i64)>> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    // Runs of consecutive changes to rows of one tenant, in statement order: each run is
    // appended with its rows' tenant.
    let mut runs: Vec<(Option<String>, Vec<String>)> = Vec::new();
    for c in changes {
        let tenant = (!c.tenant.is_empty()).then(|| c.tenant.clone());
        let payload = serde_json::json!({"op": c.op, "key": c.key, "new": c.new, "old": c.old}).to_string();
        match runs.last_mut() {
            Some((t, payloads)) if *t == tenant => payloads.push(payload),
            _ => runs.push((tenant, vec![payload])),
        }
    }
    let mut out = Vec::with_capacity(feeds.len());
    for feed in feeds {
        let mut next = 0;
        for (tenant, payloads) in &runs {
            let (id, retention, tenant, payloads) = (feed.record.id.clone(), feed.spec.retention, tenant.clone(), payloads.clone());
            let n = payloads.len() as i64;
            let kind = txn.kind();
            let appended = txn.with(move |conn| Box::pin(async move { log::append(conn, kind, &id, &retention, tenant, payloads).await })).await?;
            next = appended.first_offset + n;
        }
        out.push((feed.record.id.clone(), next));
    }
    Ok(out)
}
