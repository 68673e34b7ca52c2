//! The full-text side of a vector table: which columns are indexed, each segment's
//! `text.index` (built with the segment, listed in the manifest with its digest, rebuilt
//! from the data file when missing), and the table-wide [`TextTable`] a generation
//! searches.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Schema};
use jammi_text::{SegmentTextIndex, TextColumn, TextError, TextTable};

use super::files::TableFiles;
use super::spec::{SegmentMeta, TextIndexColumn, VectorTableSpec};
use crate::error::{Error, Result};

/// The file of a segment's text index.
pub(crate) fn text_file(segment: &str) -> String {
    format!("{segment}/text.index")
}

/// The table's text columns as the index sees them.
pub(crate) fn columns_of(spec: &VectorTableSpec) -> Result<Vec<TextColumn>> {
    spec.text_columns
        .iter()
        .map(|c| {
            let analyzer = c.analyzer.parse().map_err(|e: String| Error::invalid("text column", e))?;
            Ok(TextColumn { name: c.name.clone(), analyzer })
        })
        .collect()
}

/// Refuse text columns that are not text payload columns of `schema` (the table's
/// canonical schema: `id`, payload, `embedding`), before anything is written.
pub(crate) fn check_columns(table: &str, schema: &Schema, columns: &[TextIndexColumn]) -> Result<()> {
    let bad = |message: String| Error::InvalidVectors { table: table.to_string(), message };
    let mut seen = std::collections::HashSet::new();
    for column in columns {
        if !seen.insert(column.name.as_str()) {
            return Err(bad(format!("text column '{}' is named twice", column.name)));
        }
        let field = schema.field_with_name(&column.name).map_err(|_| {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).filter(|n| *n != "embedding").collect();
            bad(format!("text column '{}' does not exist; columns are: {}", column.name, names.join(", ")))
        })?;
        if column.name == "embedding" || !matches!(field.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
            return Err(bad(format!("text column '{}' has type {}; a text index needs a text (VARCHAR) column", column.name, field.data_type())));
        }
    }
    Ok(())
}

/// A text-index failure as the engine reports it.
pub(crate) fn text_error(table: &str, error: TextError) -> Error {
    match error {
        TextError::Query { .. } | TextError::Invalid(_) => Error::invalid("text query", format!("'{table}': {error}")),
        TextError::Damaged(message) => Error::UnreadableData { location: table.to_string(), format: "text index".into(), message },
        TextError::Tantivy(e) => Error::Storage(format!("text index of '{table}': {e}")),
    }
}

/// Build the packed text index of the rows in `batches` (any layout holding the text
/// columns); row `i` gets key `base_key + i`. CPU-bound: call it on a blocking thread.
pub(crate) fn build_index(table: &str, spec: &VectorTableSpec, batches: &[RecordBatch], base_key: u64) -> Result<Vec<u8>> {
    let columns = columns_of(spec)?;
    let mut texts = Vec::with_capacity(batches.len());
    for batch in batches {
        let mut per_column = Vec::with_capacity(columns.len());
        for column in &columns {
            let array = batch.column_by_name(&column.name).ok_or_else(|| Error::internal(format!("text column '{}' missing from a segment of '{table}'", column.name)))?;
            per_column.push(cast(array, &DataType::Utf8).map_err(Error::internal)?);
        }
        texts.push(per_column);
    }
    let rows = batches
        .iter()
        .zip(&texts)
        .flat_map(|(batch, per_column)| {
            (0..batch.num_rows()).map(move |row| {
                per_column
                    .iter()
                    .map(|array| {
                        let strings = array.as_string::<i32>();
                        strings.is_valid(row).then(|| strings.value(row))
                    })
                    .collect::<Vec<Option<&str>>>()
            })
        })
        .enumerate()
        .map(|(i, values)| (base_key + i as u64, values));
    jammi_text::build(&columns, rows).map_err(|e| text_error(table, e))
}

/// The segment's text index: read from storage, or rebuilt from `rows` (the segment's
/// data) and written back when the file is missing or unusable — the data file is the
/// source of truth, as for the vector index. `None` for tables without text columns.
pub(crate) async fn segment_index(files: &TableFiles, spec: &VectorTableSpec, meta: &SegmentMeta, rows: &RecordBatch) -> Result<Option<Arc<SegmentTextIndex>>> {
    if spec.text_columns.is_empty() {
        return Ok(None);
    }
    let columns = columns_of(spec)?;
    let name = text_file(&meta.name);
    if files.exists(&name).await? {
        let bytes = files.get(&name, None).await?;
        match SegmentTextIndex::open(&bytes, &columns) {
            Ok(index) if index.documents() == meta.rows => return Ok(Some(Arc::new(index))),
            Ok(_) => tracing::warn!(segment = %meta.name, "text index does not hold every row; rebuilding from data"),
            Err(e) => tracing::warn!(segment = %meta.name, error = %e, "text index unusable; rebuilding from data"),
        }
    } else {
        tracing::warn!(segment = %meta.name, "text index missing; rebuilding from data");
    }
    let table = files.url_of("");
    let (spec_owned, rows_owned, base_key) = (spec.clone(), rows.clone(), meta.base_key);
    let bytes = tokio::task::spawn_blocking(move || build_index(&table, &spec_owned, &[rows_owned], base_key))
        .await
        .map_err(|e| Error::Storage(format!("text index build failed: {e}")))??;
    let index = SegmentTextIndex::open(&bytes, &columns).map_err(|e| text_error(&files.url_of(""), e))?;
    files.put_verified(&name, bytes).await?;
    Ok(Some(Arc::new(index)))
}

/// The text side of one generation: its segments' indexes with its tombstones.
pub(crate) fn table_index(spec: &VectorTableSpec, segments: Vec<Arc<SegmentTextIndex>>, deleted: &Arc<Vec<bool>>, table_id: &str) -> Result<Option<TextTable>> {
    if spec.text_columns.is_empty() {
        return Ok(None);
    }
    let columns = columns_of(spec)?;
    let deleted = Arc::clone(deleted);
    let is_deleted: jammi_text::KeyPredicate = Arc::new(move |key| deleted.get(key as usize).copied().unwrap_or(true));
    TextTable::new(&columns, segments, Some(is_deleted)).map(Some).map_err(|e| text_error(table_id, e))
}
