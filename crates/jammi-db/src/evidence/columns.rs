//! The evidence columns of search results in SQL: beside `_retrieved_by` and the vector and
//! text channels' columns, the model channel's (`_model`, `_model_version`,
//! `_model_confidence`) on tables with an embedding model — set on the rows of a search whose
//! query a model embedded — and `_query_id`, the search's audit record, on audited searches,
//! which keys the evidence a user attaches to rows (`evidence.public.CHANNEL`).
//!
//! Which columns a result has is decided when the query is planned (a table function's
//! schema is fixed then); their values when it runs.

use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::{Error, Result};

/// The model channel's columns, in order.
const MODEL_COLUMNS: [(&str, DataType); 3] = [("_model", DataType::Utf8), ("_model_version", DataType::Utf8), ("_model_confidence", DataType::Float32)];

/// The audit record's id.
pub const QUERY_ID_COLUMN: &str = "_query_id";

/// `base` with the model channel's columns (`model`: the table has an embedding model) and
/// `_query_id` (`audited`).
pub(crate) fn with_evidence_columns(base: SchemaRef, model: bool, audited: bool) -> SchemaRef {
    if !model && !audited {
        return base;
    }
    let mut fields: Vec<Field> = base.fields().iter().map(|f| f.as_ref().clone()).collect();
    if model {
        fields.extend(MODEL_COLUMNS.iter().map(|(name, ty)| Field::new(*name, ty.clone(), true)));
    }
    if audited {
        fields.push(Field::new(QUERY_ID_COLUMN, DataType::Utf8, true));
    }
    Arc::new(Schema::new_with_metadata(fields, base.metadata().clone()))
}

/// `batch` (the search's own columns) with the evidence columns `full` adds after them.
pub(crate) fn extend(batch: RecordBatch, full: &SchemaRef, model: Option<&(String, String)>, query_id: Option<&str>) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for field in full.fields().iter().skip(batch.num_columns()) {
        let text = |value: Option<&str>| -> ArrayRef {
            match value {
                Some(v) => Arc::new(StringArray::from(vec![v; rows])),
                None => new_null_array(&DataType::Utf8, rows),
            }
        };
        columns.push(match field.name().as_str() {
            "_model" => text(model.map(|m| m.0.as_str())),
            "_model_version" => text(model.map(|m| m.1.as_str())),
            QUERY_ID_COLUMN => text(query_id),
            _ => new_null_array(field.data_type(), rows),
        });
    }
    RecordBatch::try_new(Arc::clone(full), columns).map_err(|e| Error::Query(format!("the search's columns changed since this query was planned; plan it again ({e})")))
}
