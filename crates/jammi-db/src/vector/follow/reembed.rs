//! Changing a table's model: the table is re-embedded in the background from the text it
//! carries, and the new vectors, the new spec (model, dimensions) and the end of the job
//! are one commit — searches answer from the old vectors until then, from the new after.

use std::sync::Arc;

use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema};

use super::super::loaded::read_manifest;
use super::super::spec::VectorTableSpec;
use super::super::{write, Progress, VectorEntry, VectorState, Vectors};
use super::worker::{embed_rows, Lease, WorkReport};
use crate::context::EngineContext;
use crate::embed::EmbeddingSource;
use crate::error::{Error, Result};

/// Attempts before a re-embedding that keeps losing to other writers fails (and is retried
/// later with back-off).
const ATTEMPTS: usize = 3;

/// `spec` made by `target`: its dimensions, its embedding column's type, its model.
fn spec_for(spec: &VectorTableSpec, target: &EmbeddingSource, dims: usize) -> VectorTableSpec {
    let mut next = spec.clone();
    next.dims = dims;
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let fields: Vec<Arc<Field>> = spec
        .schema
        .fields()
        .iter()
        .map(|f| if f.name() == "embedding" { Arc::new(Field::new("embedding", DataType::FixedSizeList(Arc::clone(&item), dims as i32), false)) } else { Arc::clone(f) })
        .collect();
    next.schema = Schema::new(fields);
    next.embedding = Some(target.clone());
    next
}

/// Re-embed every live row of the table with `target` (JSON of an [`EmbeddingSource`]) and
/// switch to it in one commit.
pub(super) async fn reembed(ctx: &dyn EngineContext, state: &Arc<VectorState>, entry: &Arc<VectorEntry>, lease: &Lease, target: &str, report: &mut WorkReport, progress: &dyn Progress) -> Result<()> {
    let target: EmbeddingSource = serde_json::from_str(target).map_err(Error::internal)?;
    let label = format!("{}:{}", target.model, target.version);
    let model = state.embed.load(&label, &target.artifact_prefix, &target.metadata, None).await?;
    let next_spec = spec_for(&entry.spec, &target, model.dimensions());
    for _ in 0..ATTEMPTS {
        let Some(record) = ctx.catalog().vector_tables().get(&entry.record.id).await? else {
            return Err(Error::LeaseLost { job: format!("re-embedding of vector table {} (dropped)", entry.record.name) });
        };
        let manifest = read_manifest(&entry.files, &record.manifest).await?;
        let table = state.loaded_at(&record, &entry.spec, &entry.files, &manifest).await?;
        let mut batches = Vec::with_capacity(table.segments.len());
        for seg in &table.segments {
            let keep: Vec<bool> = (0..seg.rows.num_rows()).map(|r| !table.deleted[(seg.meta.base_key + r as u64) as usize]).collect();
            batches.push(filter_record_batch(&seg.rows, &BooleanArray::from(keep)).map_err(Error::internal)?);
        }
        let rows = embed_rows(&model, entry, &next_spec, "id", batches, progress).await?;
        let mut commit = lease.progress();
        commit.target_done = true;
        commit.rows = rows.as_ref().map_or(0, |r| r.rows as i64);
        if write::rewrite(state, entry, record.generation, &next_spec, rows.as_ref(), &commit, progress).await? {
            report.embedded += commit.rows as u64;
            return Ok(());
        }
    }
    Err(Error::conflict(format!("vector table '{}' kept changing while it was re-embedded with {label}; it will be tried again", entry.record.name)))
}

impl Vectors<'_> {
    /// Re-embed table `name` with model `model` at `version` (a version or an alias): a
    /// background job that workers run; until it commits, searches use the old vectors. With
    /// `wait`, this call does the work itself and returns when the table has switched.
    /// Refused for a table of imported vectors (no text column recorded) and for a model
    /// that is not an embedding model.
    pub async fn set_model(&self, name: &str, model: &str, version: &str, wait: bool, progress: &dyn Progress) -> Result<super::FollowStatus> {
        self.ctx.sync_catalog().await?;
        let entry = self.resolve(name)?;
        let scope = self.ctx.scope();
        if !super::super::may_write(scope, &entry) {
            return Err(super::super::write_denied(scope, &entry));
        }
        let Some(current) = &entry.spec.embedding else {
            return Err(Error::invalid(
                "table",
                format!("vector table '{name}' holds imported vectors and records no text column, so it cannot be re-embedded; import it again with --embed COLUMN --model NAME"),
            ));
        };
        let embeddings = crate::embed::Embeddings::new(self.ctx, &self.state().embed);
        let (info, prefix) = embeddings.describe(model, version).await?;
        let target = EmbeddingSource { model: info.name, version: info.version, column: current.column.clone(), artifact_prefix: prefix, metadata: info.metadata };
        // Load it now: a model whose files are broken is refused here, not in a worker.
        self.state().embed.load(&format!("{}:{}", target.model, target.version), &target.artifact_prefix, &target.metadata, info.dimensions).await?;
        let follows = self.ctx.catalog().follows();
        if follows.get(&entry.record.id).await?.is_none() {
            follows.create_done(&entry.record.id, entry.record.tenant).await?;
        }
        follows.set_target(&entry.record.id, &serde_json::to_string(&target).map_err(Error::internal)?).await?;
        self.state().work_ready.notify_waiters();
        if wait {
            self.work_until(&entry.record.id, "set-model", |r| r.target_model.is_none(), progress)
                .await
                .map_err(|error| Error::conflict(format!("re-embedding vector table '{name}' failed: {error}; workers retry it with back-off")))?;
        }
        self.ctx.sync_catalog().await?;
        self.status(name).await
    }
}
