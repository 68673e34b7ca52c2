//! The embedding worker: claims a following table's lease, then backfills it, re-embeds it
//! with a new model, or applies its logged changes, batch by batch. Each batch reads the
//! changed rows' *current* values from the source, so replaying a batch after a crash
//! gives the same table, and a row changed twice is embedded once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use futures::StreamExt;

use super::super::input::{self, IdValue, PreparedRows};
use super::super::{write, Progress, VectorEntry, VectorState};
use crate::catalog::{now_millis, FollowProgress};
use crate::context::EngineContext;
use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::tenant::TenantScope;

/// How a worker works.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// This worker's name (shown by `vectors status` while it holds a lease).
    pub worker: String,
    /// How long a claim holds without a heartbeat; a crashed worker's table is taken over
    /// after this.
    pub lease: Duration,
    /// Source rows (or logged changes) per committed batch.
    pub batch_rows: usize,
    /// Batches per claim before the lease is handed back (other tables get their turn).
    pub max_batches: usize,
    /// How often an idle worker looks for work written by other processes.
    pub poll: Duration,
}

impl Default for WorkerOptions {
    /// Lease 30 s, 256 rows per batch, 64 batches per claim, polling every 500 ms.
    fn default() -> Self {
        WorkerOptions { worker: format!("worker-{}", std::process::id()), lease: Duration::from_secs(30), batch_rows: 256, max_batches: 64, poll: Duration::from_millis(500) }
    }
}

/// What one claim did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkReport {
    /// The vector table.
    pub table: String,
    /// Rows embedded and written.
    pub embedded: u64,
    /// Rows removed (deleted at the source, or replaced by their new vectors).
    pub removed: u64,
    /// Logged changes applied.
    pub changes: u64,
    /// Whether the table had no work left when the claim ended.
    pub caught_up: bool,
    /// Why the claim failed (recorded on the table; retried with back-off).
    pub error: Option<String>,
}

/// Back-off after `failures` failures in a row: 1 s, doubling, at most 5 minutes.
fn backoff_ms(failures: i64) -> i64 {
    1000i64.saturating_mul(1 << failures.clamp(0, 9)).min(300_000)
}

/// Claim one table with work (only `only` when given) and work on it; `None` when none
/// could be claimed. Tables the caller's scope may not change are left to their owners'
/// workers and the operator's.
pub(crate) async fn work_once(ctx: &dyn EngineContext, state: &Arc<VectorState>, options: &WorkerOptions, only: Option<&str>, progress: &dyn Progress) -> Result<Option<WorkReport>> {
    ctx.sync_catalog().await?;
    let catalog = ctx.catalog();
    let scope = ctx.scope();
    let lease_ms = i64::try_from(options.lease.as_millis()).unwrap_or(i64::MAX / 4);
    for record in catalog.follows().claimable().await? {
        if only.is_some_and(|id| id != record.table_id) {
            continue;
        }
        let entry = state.tables.read().values().find(|e| e.record.id == record.table_id).cloned();
        let Some(entry) = entry else {
            // A table dropped by a process that died before forgetting its log.
            if catalog.vector_tables().get(&record.table_id).await?.is_none() {
                catalog.follows().delete(&record.table_id).await?;
            }
            continue;
        };
        if !(scope == TenantScope::Admin || entry.record.tenant == scope.owner()) {
            continue;
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        if !catalog.follows().claim(&record.table_id, &options.worker, &token, lease_ms).await? {
            continue;
        }
        let lease = Lease { table_id: record.table_id.clone(), token, lease_ms };
        let mut report = WorkReport { table: entry.record.name.clone(), ..WorkReport::default() };
        match run(ctx, state, &entry, &lease, options, &mut report, progress).await {
            Ok(()) => catalog.follows().release(&lease.table_id, &lease.token).await?,
            Err(e @ Error::LeaseLost { .. }) => report.error = Some(e.to_string()),
            Err(e) => {
                let message = crate::error::one_line(&e.to_string());
                tracing::warn!(table = %entry.record.name, error = %message, "embedding work failed; retrying with back-off");
                catalog.follows().fail(&lease.table_id, &lease.token, &message, now_millis() + backoff_ms(record.failures)).await?;
                report.error = Some(message);
            }
        }
        return Ok(Some(report));
    }
    Ok(None)
}

/// A held claim.
#[derive(Debug)]
pub(super) struct Lease {
    pub table_id: String,
    pub token: String,
    pub lease_ms: i64,
}

impl Lease {
    pub(super) fn progress(&self) -> FollowProgress {
        FollowProgress { table_id: self.table_id.clone(), token: self.token.clone(), ..FollowProgress::default() }
    }
}

async fn run(ctx: &dyn EngineContext, state: &Arc<VectorState>, entry: &Arc<VectorEntry>, lease: &Lease, options: &WorkerOptions, report: &mut WorkReport, progress: &dyn Progress) -> Result<()> {
    let follows = ctx.catalog().follows();
    for _ in 0..options.max_batches.max(1) {
        let record = follows.get(&lease.table_id).await?.ok_or_else(|| Error::LeaseLost { job: format!("embedding work of vector table {}", entry.record.name) })?;
        if !record.backfill_done {
            heartbeating(ctx, lease, backfill(ctx, state, entry, lease, record.backfill_cursor.as_deref(), options, report, progress)).await?;
        } else if let Some(target) = &record.target_model {
            heartbeating(ctx, lease, super::reembed::reembed(ctx, state, entry, lease, target, report, progress)).await?;
            // The table's spec changed under this claim: the next claim starts from it.
            return Ok(());
        } else if record.next_offset > record.embedded_offset {
            heartbeating(ctx, lease, apply_changes(ctx, state, entry, lease, record.embedded_offset, options, report)).await?;
        } else {
            report.caught_up = true;
            return Ok(());
        }
        follows.heartbeat(&lease.table_id, &lease.token, lease.lease_ms).await?;
    }
    Ok(())
}

/// Run `work` while renewing `lease` every third of its length. A batch may take longer
/// than the lease — loading the model, a slow model, a loaded machine — and must keep its
/// claim meanwhile (with heartbeats only between batches, a 2 s lease on a busy machine
/// was lost inside every batch, so the table never moved); a lost lease stops the work at
/// once, its commit would be refused anyway.
async fn heartbeating<T>(ctx: &dyn EngineContext, lease: &Lease, work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::pin!(work);
    let every = std::time::Duration::from_millis(u64::try_from(lease.lease_ms / 3).unwrap_or(0).max(50));
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = tokio::time::sleep(every) => ctx.catalog().follows().heartbeat(&lease.table_id, &lease.token, lease.lease_ms).await?,
        }
    }
}

/// Reads a following table's source rows as its owner sees them.
pub(super) struct SourceRows<'a> {
    ctx: &'a dyn EngineContext,
    scope: TenantScope,
    select: String,
    key: String,
    key_column: String,
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A row id (JSON, as the follow log holds it) as a SQL literal and as an [`IdValue`].
fn id_of(json: &str) -> Result<(String, IdValue)> {
    match serde_json::from_str::<serde_json::Value>(json).map_err(Error::internal)? {
        serde_json::Value::Number(n) => {
            let i = n.as_i64().ok_or_else(|| Error::internal(format!("row id {n} is not an integer")))?;
            Ok((i.to_string(), IdValue::Int(i)))
        }
        serde_json::Value::String(s) => Ok((format!("'{}'", s.replace('\'', "''")), IdValue::Text(s))),
        other => Err(Error::internal(format!("row id {other} is neither a number nor text"))),
    }
}

fn id_json(id: &IdValue) -> String {
    match id {
        IdValue::Int(i) => i.to_string(),
        IdValue::Text(s) => serde_json::Value::from(s.as_str()).to_string(),
    }
}

impl<'a> SourceRows<'a> {
    pub(super) fn new(ctx: &'a dyn EngineContext, entry: &VectorEntry) -> Result<Self> {
        let follows = entry.spec.follows.as_ref().ok_or_else(|| Error::internal("not a following table"))?;
        let fields = entry.spec.schema.fields();
        // The source's key, then the payload columns the table carries (not id, not embedding).
        let mut columns = vec![quote(&follows.key_column)];
        columns.extend(fields.iter().skip(1).take(fields.len().saturating_sub(2)).map(|f| quote(f.name())));
        let select = format!("SELECT {} FROM mutable.public.{}", columns.join(", "), quote(&follows.table));
        let scope = entry.record.tenant.map(TenantScope::Tenant).unwrap_or(TenantScope::Unbound);
        Ok(SourceRows { ctx, scope, select, key: quote(&follows.key_column), key_column: follows.key_column.clone() })
    }

    async fn query(&self, sql: &str) -> Result<datafusion::physical_plan::SendableRecordBatchStream> {
        let df = self.ctx.query_context(self.scope).sql(sql).await?;
        Ok(df.execute_stream().await?)
    }

    /// Rows after `cursor` (JSON id) in key order, as a stream.
    pub(super) async fn after(&self, cursor: Option<&str>) -> Result<datafusion::physical_plan::SendableRecordBatchStream> {
        let condition = match cursor {
            Some(c) => format!(" WHERE {} > {}", self.key, id_of(c)?.0),
            None => String::new(),
        };
        self.query(&format!("{}{condition} ORDER BY {}", self.select, self.key)).await
    }

    /// The current rows with these ids (those still there).
    async fn with_ids(&self, ids: &[String]) -> Result<Vec<RecordBatch>> {
        let literals: Vec<String> = ids.iter().map(|id| id_of(id).map(|(lit, _)| lit)).collect::<Result<_>>()?;
        let mut stream = self.query(&format!("{} WHERE {} IN ({})", self.select, self.key, literals.join(", "))).await?;
        let mut out = Vec::new();
        while let Some(batch) = stream.next().await {
            out.push(batch?);
        }
        Ok(out)
    }
}

/// The model that makes the table's vectors, from its recorded files.
pub(super) async fn model_of(state: &VectorState, source: &crate::embed::EmbeddingSource, dims: usize) -> Result<Arc<dyn Embedder>> {
    let label = format!("{}:{}", source.model, source.version);
    state.embed.load(&label, &source.artifact_prefix, &source.metadata, Some(dims as u32)).await
}

/// Embed `batches` (rows with id column `key_column`, the text column and the payload)
/// into rows in the table's layout under `spec` (whose `embedding` names the text column).
pub(super) async fn embed_rows(
    model: &Arc<dyn Embedder>,
    entry: &VectorEntry,
    spec: &super::super::spec::VectorTableSpec,
    key_column: &str,
    batches: Vec<RecordBatch>,
    progress: &dyn Progress,
) -> Result<Option<PreparedRows>> {
    let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
    if batches.is_empty() {
        return Ok(None);
    }
    let source = spec.embedding.as_ref().ok_or_else(|| Error::internal("a table without a model cannot be embedded"))?;
    let name = &entry.record.name;
    let embedded = crate::embed::embed_batches(model, name, batches, &source.column, "embedding", progress).await?;
    let mut rows = input::prepare(name, &embedded, key_column, "embedding", Some(spec.dims), &HashSet::new())?;
    // The data files keep the table's own field definitions (nullability as created).
    let schema = Arc::new(spec.schema.clone());
    rows.batches = rows
        .batches
        .into_iter()
        .map(|b| RecordBatch::try_new(Arc::clone(&schema), b.columns().to_vec()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::InvalidVectors { table: name.clone(), message: format!("the source's rows no longer fit the table: {e}") })?;
    rows.schema = schema;
    Ok(Some(rows))
}

fn ids_of(rows: &PreparedRows) -> Vec<IdValue> {
    rows.batches.iter().flat_map(|b| (0..b.num_rows()).map(|r| IdValue::from_array(b.column(0), r))).collect()
}

/// Embed the rows the source held at creation, in key order, committing a chunk at a time
/// with the cursor it reached: a backfill cut short resumes after its last chunk.
#[allow(clippy::too_many_arguments)]
async fn backfill(
    ctx: &dyn EngineContext,
    state: &Arc<VectorState>,
    entry: &Arc<VectorEntry>,
    lease: &Lease,
    cursor: Option<&str>,
    options: &WorkerOptions,
    report: &mut WorkReport,
    progress: &dyn Progress,
) -> Result<()> {
    let source = entry.spec.embedding.as_ref().ok_or_else(|| Error::internal("a following table without a model"))?;
    let model = model_of(state, source, entry.spec.dims).await?;
    let reader = SourceRows::new(ctx, entry)?;
    let mut stream = reader.after(cursor).await?;
    let mut chunk: Vec<RecordBatch> = Vec::new();
    let mut chunk_rows = 0usize;
    loop {
        let next = stream.next().await.transpose()?;
        if let Some(batch) = &next {
            chunk_rows += batch.num_rows();
            chunk.push(batch.clone());
        }
        if chunk_rows >= options.batch_rows || (next.is_none() && chunk_rows > 0) {
            let rows = embed_rows(&model, entry, &entry.spec, &reader.key_column, std::mem::take(&mut chunk), progress).await?;
            chunk_rows = 0;
            let last = rows.as_ref().and_then(|r| ids_of(r).pop());
            let mut commit = lease.progress();
            commit.backfill_cursor = last.as_ref().map(id_json);
            commit.rows = rows.as_ref().map_or(0, |r| r.rows as i64);
            let (added, removed) = write::replace(state, entry, &[], rows.as_ref(), &commit, &super::super::NoProgress).await?;
            report.embedded += added;
            report.removed += removed;
            merge_segments(state, entry).await;
            ctx.catalog().follows().heartbeat(&lease.table_id, &lease.token, lease.lease_ms).await?;
        }
        if next.is_none() {
            break;
        }
    }
    let mut done = lease.progress();
    done.backfill_done = true;
    ctx.catalog().follows().commit(&done).await
}

/// Apply up to `batch_rows` logged changes from `from` on: the rows still in the source
/// are embedded anew, the others removed; the offset moves with the vectors.
async fn apply_changes(ctx: &dyn EngineContext, state: &Arc<VectorState>, entry: &Arc<VectorEntry>, lease: &Lease, from: i64, options: &WorkerOptions, report: &mut WorkReport) -> Result<()> {
    let changes = ctx.catalog().follows().changes(&lease.table_id, from, options.batch_rows.max(1) as i64).await?;
    let Some(&(last, _)) = changes.last() else {
        return Ok(());
    };
    let mut keys: Vec<String> = changes.iter().map(|(_, k)| k.clone()).collect();
    keys.sort();
    keys.dedup();
    let remove: Vec<IdValue> = keys.iter().map(|k| id_of(k).map(|(_, id)| id)).collect::<Result<_>>()?;
    let source = entry.spec.embedding.as_ref().ok_or_else(|| Error::internal("a following table without a model"))?;
    let model = model_of(state, source, entry.spec.dims).await?;
    let reader = SourceRows::new(ctx, entry)?;
    let batches = reader.with_ids(&keys).await?;
    let rows = embed_rows(&model, entry, &entry.spec, &reader.key_column, batches, &super::super::NoProgress).await?;
    let mut commit = lease.progress();
    commit.embedded_offset = Some(last + 1);
    commit.rows = rows.as_ref().map_or(0, |r| r.rows as i64);
    let (added, removed) = write::replace(state, entry, &remove, rows.as_ref(), &commit, &super::super::NoProgress).await?;
    report.embedded += added;
    report.removed += removed;
    report.changes += changes.len() as u64;
    merge_segments(state, entry).await;
    Ok(())
}

/// After a batch is committed (and findable): merge segments if the table's compaction
/// policy says so, so a table fed by many small batches keeps a bounded number of
/// segments. A failed merge leaves the committed batch as it is and is retried after the
/// next batch.
async fn merge_segments(state: &Arc<VectorState>, entry: &Arc<VectorEntry>) {
    if let Err(e) = write::compact_if_due(state, entry, false, &super::super::NoProgress).await {
        tracing::warn!(table = %entry.record.name, error = %e, "could not merge the segments of a following table");
    }
}
