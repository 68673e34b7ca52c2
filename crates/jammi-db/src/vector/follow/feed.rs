//! The follow log as a change feed: a write to a followed mutable table logs the ids of the
//! rows it changed, in the writing transaction (no write without its log entry, no entry
//! without its write), and wakes this process's workers after the commit.

use std::sync::Arc;

use super::super::VectorState;
use crate::change::{Change, ChangeFeed, ChangeSink};
use crate::error::{Error, Result};
use crate::tenant::{TenantId, TenantScope};
use crate::txn::WriteTxn;

/// One following vector table, as a feed of its source.
#[derive(Debug)]
struct FollowFeed {
    table_id: String,
    key_column: String,
    owner: Option<TenantId>,
    wake: Arc<tokio::sync::Notify>,
}

impl FollowFeed {
    /// The id (JSON) of each changed row the table's owner can see: rows of other tenants
    /// in a shared source are not the owner's to embed.
    fn keys(&self, changes: &[Change]) -> Result<Vec<String>> {
        let owner = self.owner.map(|t| t.to_string()).unwrap_or_default();
        let mut keys = Vec::with_capacity(changes.len());
        for change in changes.iter().filter(|c| c.tenant.is_empty() || c.tenant == owner) {
            let key: serde_json::Value = serde_json::from_str(&change.key).map_err(Error::internal)?;
            let value = key.get(&self.key_column).ok_or_else(|| Error::internal(format!("change without key column {}", self.key_column)))?;
            keys.push(value.to_string());
            // An update that changed the key: the row now lives under its new id too.
            if let Some(new) = &change.new {
                let new: serde_json::Value = serde_json::from_str(new).map_err(Error::internal)?;
                if let Some(moved) = new.get(&self.key_column).filter(|v| *v != value) {
                    keys.push(moved.to_string());
                }
            }
        }
        Ok(keys)
    }
}

#[async_trait::async_trait]
impl ChangeFeed for FollowFeed {
    async fn append(&self, txn: &WriteTxn, changes: &[Change]) -> Result<i64> {
        let keys = self.keys(changes)?;
        if keys.is_empty() {
            return Ok(0);
        }
        let (kind, table_id, tenant) = (txn.kind(), self.table_id.clone(), self.owner.map(|t| t.to_string()));
        txn.with(move |conn| {
            Box::pin(async move {
                crate::catalog::log_changes(conn, kind, &table_id, tenant, &keys).await.map_err(|e| Error::from_sqlx("the follow log", &e))?;
                Ok(0)
            })
        })
        .await
    }

    fn wake(&self, _next: i64) {
        self.wake.notify_waiters();
    }
}

impl ChangeSink for VectorState {
    fn feeds_of(&self, name: &str, resolves_here: &dyn Fn(TenantScope) -> bool) -> Vec<Arc<dyn ChangeFeed>> {
        self.tables
            .read()
            .values()
            .filter_map(|e| e.spec.follows.as_ref().map(|f| (e, f)))
            .filter(|(_, f)| f.table == name)
            .filter(|(e, _)| resolves_here(e.record.tenant.map(TenantScope::Tenant).unwrap_or(TenantScope::Unbound)))
            .map(|(e, f)| {
                Arc::new(FollowFeed { table_id: e.record.id.clone(), key_column: f.key_column.clone(), owner: e.record.tenant, wake: Arc::clone(&self.work_ready) })
                    as Arc<dyn ChangeFeed>
            })
            .collect()
    }
}
