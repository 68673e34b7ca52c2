//! Listings of the model registry and the job queue as Arrow record batches, for every
//! front end (CLI output formats, SQL-like printing) to print the same way.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};

use super::{JobRecord, ModelInfo};
use crate::error::{Error, Result};

fn text<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from(values.collect::<Vec<_>>()))
}

/// `model list` as a record batch, so every output format prints it.
pub fn models_to_batch(models: &[ModelInfo]) -> Result<RecordBatch> {
    let fields = ["name", "version", "task", "dimensions", "aliases", "artifact", "metadata"];
    let schema = Schema::new(fields.iter().map(|f| Field::new(*f, if *f == "dimensions" { DataType::Int64 } else { DataType::Utf8 }, true)).collect::<Vec<_>>());
    let aliases: Vec<String> = models.iter().map(|m| m.aliases.join(",")).collect();
    let metadata: Vec<String> = models.iter().map(|m| m.metadata.to_string()).collect();
    let columns: Vec<ArrayRef> = vec![
        text(models.iter().map(|m| Some(m.name.as_str()))),
        text(models.iter().map(|m| Some(m.version.as_str()))),
        text(models.iter().map(|m| Some(m.task.as_str()))),
        Arc::new(Int64Array::from(models.iter().map(|m| m.dimensions.map(i64::from)).collect::<Vec<_>>())),
        text(aliases.iter().map(|a| Some(a.as_str()))),
        text(models.iter().map(|m| m.artifact_prefix.as_deref())),
        text(metadata.iter().map(|m| Some(m.as_str()))),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).map_err(Error::internal)
}

/// `job list` as a record batch.
pub fn jobs_to_batch(jobs: &[JobRecord]) -> Result<RecordBatch> {
    let schema = Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("priority", DataType::Int64, false),
        Field::new("attempts", DataType::Utf8, false),
        Field::new("worker", DataType::Utf8, true),
        Field::new("last_error", DataType::Utf8, true),
        Field::new("artifact", DataType::Utf8, true),
    ]);
    let attempts: Vec<String> = jobs.iter().map(|j| format!("{}/{}", j.attempts, j.max_attempts)).collect();
    let columns: Vec<ArrayRef> = vec![
        text(jobs.iter().map(|j| Some(j.id.as_str()))),
        text(jobs.iter().map(|j| Some(j.state.as_str()))),
        Arc::new(Int64Array::from(jobs.iter().map(|j| j.priority).collect::<Vec<_>>())),
        text(attempts.iter().map(|a| Some(a.as_str()))),
        text(jobs.iter().map(|j| j.worker.as_deref())),
        text(jobs.iter().map(|j| j.last_error.as_deref())),
        text(jobs.iter().map(|j| j.artifact_prefix.as_deref())),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).map_err(Error::internal)
}
