//! Batches this process committed recently, so a live subscriber in the same process takes
//! new events straight from memory instead of reading back what was just written.
//!
//! Only committed events enter (the publisher records them after its commit, with the
//! offsets the commit assigned), so serving from here delivers exactly what the log holds.
//! A subscriber that finds nothing here for its next offset reads the log as before; the
//! log stays the source of truth.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, TimestampMillisecondArray};
use parking_lot::Mutex;

use super::spec::TopicSpec;
use crate::error::{Error, Result};
use crate::tenant::TenantScope;

/// Kept per topic: enough for subscribers that are a few publishes behind, small enough
/// that memory stays bounded however large the batches.
const KEEP_BATCHES: usize = 32;
const KEEP_ROWS: usize = 64 * 1024;

/// One committed publish.
#[derive(Debug)]
pub(super) struct Committed {
    /// Offset of the first row.
    pub(super) first_offset: i64,
    /// Commit time, ms since the epoch (the log's `produced_at`).
    pub(super) produced_at: i64,
    /// The publisher's tenant (`None`: shared events).
    pub(super) tenant: Option<String>,
    /// The rows, in the topic's payload columns.
    pub(super) payload: RecordBatch,
}

impl Committed {
    fn end(&self) -> i64 {
        self.first_offset + self.payload.num_rows() as i64
    }

    /// Up to `limit` events from offset `from` as a batch of the topic's event schema.
    pub(super) fn events_from(&self, spec: &TopicSpec, from: i64, limit: usize) -> Result<RecordBatch> {
        let skip = (from - self.first_offset) as usize;
        let take = (self.payload.num_rows() - skip).min(limit);
        let rows = self.payload.slice(skip, take);
        let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
        columns.push(Arc::new(Int64Array::from_iter_values(from..from + take as i64)));
        columns.push(Arc::new(TimestampMillisecondArray::from(vec![self.produced_at; take]).with_timezone("UTC")));
        RecordBatch::try_new(spec.event_schema(), columns).map_err(Error::internal)
    }

    /// Whether `scope` may see these events (the log's visibility rule).
    pub(super) fn visible_to(&self, scope: TenantScope) -> bool {
        match scope {
            TenantScope::Admin => true,
            TenantScope::Unbound => self.tenant.is_none(),
            TenantScope::Tenant(t) => self.tenant.as_deref().is_none_or(|owner| owner == t.to_string()),
        }
    }
}

/// Recent commits per topic id.
#[derive(Debug, Default)]
pub(super) struct RecentBatches {
    by_topic: Mutex<HashMap<String, VecDeque<Arc<Committed>>>>,
}

impl RecentBatches {
    /// Remember a committed publish.
    pub(super) fn record(&self, topic_id: &str, committed: Committed) {
        let mut topics = self.by_topic.lock();
        let recent = topics.entry(topic_id.to_string()).or_default();
        recent.push_back(Arc::new(committed));
        let mut rows: usize = recent.iter().map(|c| c.payload.num_rows()).sum();
        while recent.len() > KEEP_BATCHES || (rows > KEEP_ROWS && recent.len() > 1) {
            if let Some(old) = recent.pop_front() {
                rows -= old.payload.num_rows();
            }
        }
    }

    /// The remembered publish holding `offset`, if any.
    pub(super) fn holding(&self, topic_id: &str, offset: i64) -> Option<Arc<Committed>> {
        let topics = self.by_topic.lock();
        topics.get(topic_id)?.iter().find(|c| c.first_offset <= offset && offset < c.end()).cloned()
    }

    /// Forget a dropped topic.
    pub(super) fn forget(&self, topic_id: &str) {
        self.by_topic.lock().remove(topic_id);
    }
}
