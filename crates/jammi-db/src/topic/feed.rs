//! Change feeds: a topic created `--from-table mutable.public.T` receives one event per row
//! that a committed statement inserted, updated or deleted in T, appended by the writing
//! statement in its own transaction — no write without its event, no event without its
//! write. Topics are the engine's [`ChangeSink`]; mutable tables only see the traits.

use std::sync::Arc;

use super::broker::Broker;
use super::{log, TopicEntry, TopicState};
use crate::change::{Change, ChangeFeed, ChangeSink};
use crate::error::Result;
use crate::tenant::TenantScope;
use crate::txn::WriteTxn;

/// A topic following a mutable table.
#[derive(Debug)]
struct TopicFeed {
    entry: Arc<TopicEntry>,
    broker: Arc<dyn Broker>,
}

#[async_trait::async_trait]
impl ChangeFeed for TopicFeed {
    async fn append(&self, txn: &WriteTxn, changes: &[Change]) -> Result<i64> {
        // Runs of consecutive changes to rows of one tenant, in statement order: each run
        // is appended with its rows' tenant.
        let mut runs: Vec<(Option<String>, Vec<String>)> = Vec::new();
        for c in changes {
            let tenant = (!c.tenant.is_empty()).then(|| c.tenant.clone());
            let payload = serde_json::json!({"op": c.op, "key": c.key, "new": c.new, "old": c.old}).to_string();
            match runs.last_mut() {
                Some((t, payloads)) if *t == tenant => payloads.push(payload),
                _ => runs.push((tenant, vec![payload])),
            }
        }
        let mut next = 0;
        for (tenant, payloads) in runs {
            let (id, retention) = (self.entry.record.id.clone(), self.entry.spec.retention);
            let n = payloads.len() as i64;
            let kind = txn.kind();
            let appended = txn.with(move |conn| Box::pin(async move { log::append(conn, kind, &id, &retention, tenant, payloads).await })).await?;
            next = appended.first_offset + n;
        }
        Ok(next)
    }

    fn wake(&self, next: i64) {
        self.broker.notify(&self.entry.record.id, next);
    }
}

impl ChangeSink for TopicState {
    fn feeds_of(&self, name: &str, resolves_here: &dyn Fn(TenantScope) -> bool) -> Vec<Arc<dyn ChangeFeed>> {
        let source = format!("mutable.public.{name}");
        self.topics
            .read()
            .values()
            .filter(|e| e.spec.source_table.as_deref() == Some(source.as_str()))
            .filter(|e| resolves_here(e.record.tenant.map(TenantScope::Tenant).unwrap_or(TenantScope::Unbound)))
            .map(|e| Arc::new(TopicFeed { entry: Arc::clone(e), broker: Arc::clone(&self.broker) }) as Arc<dyn ChangeFeed>)
            .collect()
    }
}
