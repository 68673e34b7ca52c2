//! Row changes of mutable tables and where they go: mutable tables describe each committed
//! row change as a [`Change`] and hand it to the [`ChangeFeed`]s a [`ChangeSink`] names
//! (topics created `--from-table`), inside the writing statement's own transaction. The
//! traits keep the two parts apart: mutable tables know nothing of topics, and topics
//! implement the sink.

use std::fmt::Debug;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::json::LineDelimitedWriter;

use crate::error::{Error, Result};
use crate::tenant::TenantScope;
use crate::txn::WriteTxn;

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

/// One feed following a table's writes.
#[async_trait::async_trait]
pub(crate) trait ChangeFeed: Send + Sync + Debug {
    /// Append `changes` inside `txn`; returns the feed's next position, for [`wake`](Self::wake).
    async fn append(&self, txn: &WriteTxn, changes: &[Change]) -> Result<i64>;

    /// Tell the feed's readers that positions before `next` are committed.
    fn wake(&self, next: i64);
}

/// Finds the feeds that follow a table.
pub(crate) trait ChangeSink: Send + Sync + Debug {
    /// The feeds following `mutable.public.{name}`: those whose owner's scope resolves the
    /// name to this very table (`resolves_here`), so a tenant's feed never follows another
    /// tenant's table of the same name.
    fn feeds_of(&self, name: &str, resolves_here: &dyn Fn(TenantScope) -> bool) -> Vec<Arc<dyn ChangeFeed>>;
}

/// Every sink's feeds: topics created `--from-table` and vector tables that follow a table.
#[derive(Debug)]
pub(crate) struct Sinks(pub Vec<Arc<dyn ChangeSink>>);

impl ChangeSink for Sinks {
    fn feeds_of(&self, name: &str, resolves_here: &dyn Fn(TenantScope) -> bool) -> Vec<Arc<dyn ChangeFeed>> {
        self.0.iter().flat_map(|sink| sink.feeds_of(name, resolves_here)).collect()
    }
}

/// Append `changes` to every feed inside `txn`; returns each feed with its next position.
pub(crate) async fn append(txn: &WriteTxn, feeds: &[Arc<dyn ChangeFeed>], changes: &[Change]) -> Result<Vec<(Arc<dyn ChangeFeed>, i64)>> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::with_capacity(feeds.len());
    for feed in feeds {
        out.push((Arc::clone(feed), feed.append(txn, changes).await?));
    }
    Ok(out)
}

/// Each row of `batch` as one JSON object.
pub fn rows_to_json(batch: &RecordBatch) -> Result<Vec<String>> {
    let mut buf = Vec::new();
    {
        let mut writer = LineDelimitedWriter::new(&mut buf);
        writer.write(batch).map_err(Error::internal)?;
        writer.finish().map_err(Error::internal)?;
    }
    let text = String::from_utf8(buf).map_err(Error::internal)?;
    Ok(text.lines().map(str::to_string).collect())
}
