//! Imports: the input is read as a stream and validated batch by batch into segments of at
//! most `vectors.segment_mb` of vectors each, every segment written (data, index, vectors
//! file) as soon as it is full. An import therefore holds about one segment's rows at a
//! time, whatever the input's size (plus its ids, to refuse duplicates across segments).
//!
//! The table is registered as `building` once the first rows show its dimensions, before
//! its first file is written, and turns `ready` in one catalog update after its manifest is
//! written: until then no reader sees it, and a failure anywhere (a bad row in the last
//! segment included) removes every file written so far, or leaves them for recovery.

use std::collections::HashSet;

use datafusion::arrow::array::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::SessionContext;

use super::spec::{Manifest, VectorTableSpec, MANIFEST_VERSION, SPEC_VERSION};
use super::write;
use super::{info_of, input, lock_path, pause_point, text, ImportSpec, Progress, VectorTableInfo, Vectors};
use crate::error::{Error, Result};
use crate::security::limits;
use crate::source::{file as source_file, FileFormatKind};
use crate::storage::{StorageOptions, StorageUrl};

impl Vectors<'_> {
    /// Import a Parquet file or directory as a new vector table, streamed segment by
    /// segment. The table becomes visible only when complete; on any error nothing of it
    /// stays.
    pub async fn import(&self, spec: ImportSpec, progress: &dyn Progress) -> Result<super::VectorTableInfo> {
        self.check_new_table(&spec.name, spec.m, spec.ef_construction, spec.oversample).await?;
        let input = self.input_stream(&spec.url, &spec.options, &spec.name).await?;
        if spec.embed.is_some() {
            // Embedding runs over the whole input with its own checkpoints.
            let batches = datafusion::physical_plan::common::collect(input).await?;
            return self.import_checked(spec, batches, progress).await;
        }
        self.import_stream(spec, input, None, progress).await
    }

    /// Create a table from rows already in hand (a query's, for `CREATE TABLE vectors.public.T
    /// WITH (...) AS SELECT …`), as [`Vectors::import`] does from its file; `spec.url` and
    /// `spec.options` are not used.
    pub(crate) async fn import_rows(&self, spec: ImportSpec, batches: Vec<RecordBatch>, progress: &dyn Progress) -> Result<VectorTableInfo> {
        self.check_new_table(&spec.name, spec.m, spec.ef_construction, spec.oversample).await?;
        self.import_checked(spec, batches, progress).await
    }

    /// Embed (when asked) and import `batches` as the new table `spec.name`, whose name and
    /// index options were checked.
    async fn import_checked(&self, spec: ImportSpec, batches: Vec<RecordBatch>, progress: &dyn Progress) -> Result<VectorTableInfo> {
        let (batches, embedding) = match &spec.embed {
            None => (batches, None),
            Some(embed) => {
                let embeddings = crate::embed::Embeddings::new(self.ctx, &self.state().embed);
                let (batches, source, checkpoints) = embeddings.embed_column(&spec.name, batches, &embed.column, &spec.vector_column, (&embed.model, &embed.version), progress).await?;
                (batches, Some((source, checkpoints)))
            }
        };
        let stream = input::stream_of(&spec.name, batches)?;
        self.import_stream(spec, stream, embedding, progress).await
    }

    /// Validate `input` and write it as the new table's segments, then commit.
    async fn import_stream(
        &self,
        spec: ImportSpec,
        mut input: SendableRecordBatchStream,
        embedding: Option<(crate::embed::EmbeddingSource, crate::embed::resume::Checkpoints)>,
        progress: &dyn Progress,
    ) -> Result<VectorTableInfo> {
        let no_ids = HashSet::new();
        let mut preparer = input::Preparer::new(&spec.name, &input.schema(), &spec.id_column, &spec.vector_column, None, &no_ids)?;
        // Nothing is registered or written before the first row shows the dimensions.
        let first = input::first_rows(&mut preparer, &mut input).await?;
        let (dims, schema) = match (preparer.dims(), preparer.schema()) {
            (Some(dims), Some(schema)) => (dims, schema.as_ref().clone()),
            _ => return Err(Error::internal("prepared rows without dimensions")),
        };
        limits::at_most("vector dimensions", dims, limits::MAX_DIMENSIONS)?;
        text::check_columns(&spec.name, &schema, &spec.text_columns)?;
        let (embedding, checkpoints) = match embedding {
            Some((source, checkpoints)) => (Some(source), Some(checkpoints)),
            None => (None, None),
        };
        let table_spec = VectorTableSpec {
            version: SPEC_VERSION,
            dims,
            metric: spec.metric,
            precision: spec.precision,
            m: spec.m,
            ef_construction: spec.ef_construction,
            oversample: spec.oversample.unwrap_or_else(|| spec.precision.default_oversample()),
            schema,
            source_columns: Some((spec.id_column.clone(), spec.vector_column.clone())),
            embedding,
            follows: None,
            text_columns: spec.text_columns.clone(),
        };
        let (record, files) = self.new_record(&spec.name, &table_spec)?;
        let table_id = record.id.clone();

        // The lock file tells recovery in other processes that this import is alive.
        let lock = self.lock_file(&table_id)?;
        self.ctx.catalog().vector_tables().insert_building(&record).await?;
        pause_point("vectors.import.registered");
        let mut manifest = Manifest { version: MANIFEST_VERSION, generation: 1, next_key: 0, segments: Vec::new(), tombstones: Vec::new() };
        let segment_rows = self.state().policy.segment_rows(dims);
        let written = async {
            manifest.next_key = write::write_streamed(&files, &table_spec, segment_rows, &mut preparer, &mut input, first, 0, &mut manifest.segments, Some((self.ctx.catalog(), &table_id)), progress).await?;
            write::write_manifest(&files, &manifest).await
        }
        .await;
        let manifest_name = match written {
            Ok(name) => name,
            Err(e) => {
                // Best effort: leave nothing behind; recovery finishes the job if this fails.
                let _ = files.delete_all().await;
                let _ = self.ctx.catalog().vector_tables().delete(&table_id).await;
                return Err(e);
            }
        };
        pause_point("vectors.import.before_commit");
        if !self.ctx.catalog().vector_tables().mark_ready(&table_id, &record.spec, manifest.generation, &manifest_name).await? {
            // Recovery elsewhere removed this import as abandoned (its files may be half
            // gone): nothing of it may become visible.
            let _ = files.delete_all().await;
            return Err(write::abandoned(&spec.name));
        }
        if let Some(checkpoints) = checkpoints {
            checkpoints.discard().await;
        }
        drop(lock);
        let _ = std::fs::remove_file(lock_path(self.ctx.config(), &table_id));
        self.ctx.sync_catalog().await?;
        Ok(info_of(&record, &table_spec, &manifest))
    }

    /// The rows of a Parquet file or directory at `url`, as a stream of batches.
    pub(super) async fn input_stream(&self, url: &str, options: &StorageOptions, name: &str) -> Result<SendableRecordBatchStream> {
        let url = StorageUrl::parse(url)?;
        let store = self.ctx.register_store(&url, options)?;
        let state = self.ctx.base_state();
        let table_spec = source_file::inspect(&state, &store, &url, Some(FileFormatKind::Parquet), &Default::default(), name).await?;
        let provider = source_file::build_table(&table_spec, &url)?;
        let ctx = SessionContext::new_with_state(state);
        Ok(ctx.read_table(provider)?.execute_stream().await?)
    }
}
