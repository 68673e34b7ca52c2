//! Vector tables that follow a mutable table: created over `mutable.public.T` with a text
//! column and an embedding model, they hold one vector per source row and stay current by
//! themselves.
//!
//! How: every committed write to T logs the ids of the rows it changed in the follow log
//! ([`feed`], inside the writing transaction — writers never wait for a model). Workers
//! ([`worker`]: in `jammi serve`, `jammi worker`, or the creating call itself) claim a
//! table's work under a lease, read the changed rows' current values from T, embed them,
//! and commit tombstones, a new segment and the log offset they cover as one catalog
//! transaction. A crashed worker's lease expires and the next one redoes the batch; since
//! the offset moves only with the vectors, nothing is applied twice or lost.

mod feed;
mod reembed;
mod status;
mod worker;

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};

use super::spec::{Manifest, Metric, Precision, VectorTableSpec, MANIFEST_VERSION, SPEC_VERSION};
use super::{info_of, EmbedColumn, Progress, VectorEntry, VectorTableInfo, Vectors};
use crate::error::{Error, Result};
use crate::mutable::types::ColumnType;

pub use worker::{WorkReport, WorkerOptions};
pub use status::status_to_batch;
pub(crate) use status::VectorStatusFunction;
pub(crate) use worker::work_once;

/// What a following vector table follows (kept in its spec).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowSource {
    /// The mutable table's name (`mutable.public.NAME`).
    pub table: String,
    /// Its primary-key column: the vector table's ids.
    pub key_column: String,
}

/// What `vectors follow` asks for.
#[derive(Debug, Clone)]
pub struct FollowSpec {
    /// Vector table name (`vectors.public.NAME`).
    pub name: String,
    /// The mutable table to follow (`docs` or `mutable.public.docs`).
    pub source: String,
    /// The text column to embed and the model to embed it with.
    pub embed: EmbedColumn,
    /// Index precision.
    pub precision: Precision,
    /// Distance function.
    pub metric: Metric,
    /// HNSW connectivity.
    pub m: usize,
    /// HNSW build beam width.
    pub ef_construction: usize,
    /// Candidates per result before exact rescoring (default by precision).
    pub oversample: Option<usize>,
    /// Columns of the followed table to index for full-text search.
    pub text_columns: Vec<super::TextIndexColumn>,
}

impl FollowSpec {
    /// Defaults: cosine at int8 (see [`Precision::default_for`]), m = 16, ef_construction = 128.
    pub fn new(name: impl Into<String>, source: impl Into<String>, column: impl Into<String>, model: impl Into<String>, version: impl Into<String>) -> Self {
        FollowSpec {
            name: name.into(),
            source: source.into(),
            embed: EmbedColumn { column: column.into(), model: model.into(), version: version.into() },
            precision: Precision::default_for(Metric::Cosine),
            metric: Metric::Cosine,
            m: 16,
            ef_construction: 128,
            oversample: None,
            text_columns: Vec::new(),
        }
    }
}

/// How far a following table is behind its source (`vectors status`).
#[derive(Debug, Clone, PartialEq)]
pub struct FollowStatus {
    /// Vector table name.
    pub name: String,
    /// `mutable.public.T` (`None` for an imported table being re-embedded).
    pub source: Option<String>,
    /// The model that made the vectors, `name:version`.
    pub model: String,
    /// Live rows in the vector table.
    pub rows: u64,
    /// Changes logged from the source so far.
    pub source_offset: i64,
    /// Changes applied to the vector table.
    pub embedded_offset: i64,
    /// Changes logged but not yet applied.
    pub pending: i64,
    /// Whether the rows present at creation are all embedded.
    pub backfill_done: bool,
    /// Age of the oldest pending change, ms (0 when none is pending).
    pub lag_ms: i64,
    /// The worker holding the table's lease, if any.
    pub worker: Option<String>,
    /// The last failure, while it has not been followed by a success.
    pub last_error: Option<String>,
    /// Failures in a row.
    pub failures: i64,
    /// The model the table is being re-embedded with (`name:version`), while that runs.
    pub reembedding: Option<String>,
    /// Rows embedded since creation.
    pub rows_embedded: i64,
}

/// Refuse direct writes to a following table: its rows come from its source only.
pub(crate) fn refuse_direct_write(entry: &VectorEntry) -> Result<()> {
    match &entry.spec.follows {
        Some(f) => Err(Error::unsupported(format!(
            "vector table '{}' follows mutable.public.{}; change the rows there and the table's workers keep its vectors in step",
            entry.record.name, f.table
        ))),
        None => Ok(()),
    }
}

/// The arrow type a key column of `ty` has in the vector table, or why it cannot be a key.
fn key_type(ty: &ColumnType) -> Option<DataType> {
    match ty {
        ColumnType::SmallInt | ColumnType::Int | ColumnType::BigInt => Some(DataType::Int64),
        ColumnType::Text => Some(DataType::Utf8),
        _ => None,
    }
}

impl Vectors<'_> {
    /// Create vector table `spec.name` over a mutable table: one vector per source row, made
    /// by embedding `spec.embed.column` with the model, kept current by workers as the
    /// source changes. The rows already in the source are embedded before this returns
    /// (this call works as the table's first worker; if it stops, any worker resumes from
    /// the last committed chunk).
    pub async fn follow(&self, spec: FollowSpec, progress: &dyn Progress) -> Result<VectorTableInfo> {
        let invalid = |message: String| Error::InvalidVectors { table: spec.name.clone(), message };
        self.check_new_table(&spec.name, spec.m, spec.ef_construction, spec.oversample).await?;
        let scope = self.ctx.scope();
        let source_name = spec.source.strip_prefix("mutable.public.").unwrap_or(&spec.source).to_string();
        let source = self.mutable.require(scope, &source_name)?;
        let [key_column] = source.spec.primary_key.as_slice() else {
            return Err(invalid(format!(
                "mutable.public.{source_name} has a primary key of {} columns; a vector table can follow a table with a one-column key",
                source.spec.primary_key.len()
            )));
        };
        let (_, key_spec) = source.spec.column(key_column).ok_or_else(|| Error::internal(format!("primary key column {key_column} is missing")))?;
        let id_type = key_type(&key_spec.ty).ok_or_else(|| invalid(format!("the key column '{key_column}' is {:?}; a following table needs an integer or text key", key_spec.ty)))?;
        let column = &spec.embed.column;
        match source.spec.column(column) {
            None => {
                let names: Vec<&str> = source.spec.columns.iter().map(|c| c.name.as_str()).collect();
                return Err(invalid(format!("mutable.public.{source_name} has no column '{column}' to embed; columns are: {}", names.join(", "))));
            }
            Some((_, c)) if c.ty != ColumnType::Text => {
                return Err(invalid(format!("column '{column}' is {:?}, not text; name a text column to embed", c.ty)));
            }
            Some(_) => {}
        }
        let embeddings = crate::embed::Embeddings::new(self.ctx, &self.state().embed);
        let (info, prefix) = embeddings.describe(&spec.embed.model, &spec.embed.version).await?;
        let model = self.state().embed.load(&format!("{}:{}", info.name, info.version), &prefix, &info.metadata, info.dimensions).await?;
        let dims = model.dimensions();
        crate::security::limits::at_most("vector dimensions", dims, crate::security::limits::MAX_DIMENSIONS)?;

        // The data files' layout: id, the source's other columns, the embedding.
        let source_schema = source.spec.schema();
        let mut fields = vec![Arc::new(Field::new("id", id_type, false))];
        for f in source_schema.fields().iter().filter(|f| f.name() != key_column) {
            if ["id", "embedding", "_distance", "_rank", "_key"].contains(&f.name().as_str()) {
                return Err(invalid(format!("column '{}' of the source clashes with a vector-table column; a following table cannot carry it", f.name())));
            }
            fields.push(Arc::clone(f));
        }
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        fields.push(Arc::new(Field::new("embedding", DataType::FixedSizeList(item, dims as i32), false)));
        let schema = Schema::new(fields);
        super::text::check_columns(&spec.name, &schema, &spec.text_columns)?;
        let table_spec = VectorTableSpec {
            version: SPEC_VERSION,
            dims,
            metric: spec.metric,
            precision: spec.precision,
            m: spec.m,
            ef_construction: spec.ef_construction,
            oversample: spec.oversample.unwrap_or_else(|| spec.precision.default_oversample()),
            schema,
            source_columns: Some((key_column.clone(), "embedding".to_string())),
            embedding: Some(crate::embed::EmbeddingSource { model: info.name, version: info.version, column: column.clone(), artifact_prefix: prefix, metadata: info.metadata }),
            follows: Some(FollowSource { table: source_name, key_column: key_column.clone() }),
            text_columns: spec.text_columns.clone(),
        };

        // An empty table, registered as following before it becomes visible: from the
        // moment writers can see it, their changes are logged.
        let (record, files) = self.new_record(&spec.name, &table_spec)?;
        let table_id = record.id.clone();
        let catalog = self.ctx.catalog();
        catalog.vector_tables().insert_building(&record).await?;
        let manifest = Manifest { version: MANIFEST_VERSION, generation: 1, next_key: 0, segments: vec![], tombstones: vec![] };
        let created = async {
            let manifest_name = super::write::write_manifest(&files, &manifest).await?;
            catalog.follows().create(&table_id, scope.owner()).await?;
            match catalog.vector_tables().mark_ready(&table_id, &record.spec, manifest.generation, &manifest_name).await? {
                true => Ok(()),
                false => Err(super::write::abandoned(&spec.name)),
            }
        }
        .await;
        if let Err(e) = created {
            let _ = files.delete_all().await;
            let _ = catalog.follows().delete(&table_id).await;
            let _ = catalog.vector_tables().delete(&table_id).await;
            return Err(e);
        }
        self.ctx.sync_catalog().await?;

        // Embed what is there now, as this table's worker.
        self.work_until(&table_id, "create", |r| r.backfill_done, progress).await.map_err(|error| {
            Error::conflict(format!(
                "vector table '{}' was created, but embedding its rows failed: {error}; workers (`jammi worker` or `jammi serve`) retry with back-off, and `jammi vectors status {}` shows how far they are",
                spec.name, spec.name
            ))
        })?;
        self.ctx.sync_catalog().await?;
        let entry = self.resolve(&spec.name)?;
        Ok(info_of(&entry.record, &entry.spec, &entry.manifest))
    }

    /// Work on table `table_id` as its worker (named `role`-PID) until `done` holds for its
    /// follow row; when another worker holds the lease, wait for that one (or for its lease
    /// to expire, then take over). The error is the failed attempt's message.
    async fn work_until(&self, table_id: &str, role: &str, done: impl Fn(&crate::catalog::FollowRecord) -> bool, progress: &dyn Progress) -> std::result::Result<(), String> {
        let options = WorkerOptions { worker: format!("{role}-{}", std::process::id()), ..WorkerOptions::default() };
        let follows = self.ctx.catalog().follows();
        loop {
            let report = work_once(self.ctx, self.state(), &options, Some(table_id), progress).await.map_err(|e| e.to_string())?;
            if let Some(error) = report.as_ref().and_then(|r| r.error.clone()) {
                return Err(error);
            }
            match follows.get(table_id).await.map_err(|e| e.to_string())? {
                Some(record) if !done(&record) => {
                    if report.is_none() {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// How far table `name` is behind its source, and any re-embedding under way. Tables
    /// that neither follow a mutable table nor ever changed model have no lag to report.
    pub async fn status(&self, name: &str) -> Result<FollowStatus> {
        self.ctx.sync_catalog().await?;
        let entry = self.resolve(name)?;
        status::status_of(self.ctx.catalog(), &entry).await
    }

    /// Claim and do one table's pending embedding work (any following table visible to
    /// the operator); `None` when no table has work that no other worker holds.
    pub async fn work(&self, options: &WorkerOptions) -> Result<Option<WorkReport>> {
        work_once(self.ctx, self.state(), options, None, &super::NoProgress).await
    }

    /// Work until `stop` resolves: claim tables with pending work, and between claims wait
    /// for this process's writes (woken at once) or `options.poll` (writes of other
    /// processes).
    pub async fn run_worker(&self, options: &WorkerOptions, stop: impl std::future::Future<Output = ()>) -> Result<()> {
        tokio::pin!(stop);
        loop {
            let woken = self.state().work_ready.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match self.work(options).await {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "embedding worker"),
            }
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = woken => {}
                _ = tokio::time::sleep(options.poll) => {}
            }
        }
    }
}
