//! Results as HTTP bodies: JSON (`{"columns": [...], "rows": [{...}], "row_count": n}`) or,
//! when the client accepts it, an Arrow IPC stream.

use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::json::writer::{JsonArray, WriterBuilder};

use crate::error::{Result, ServerError};

/// The media type of an Arrow IPC stream.
pub(crate) const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// `schema` + `batches` in the format `headers` ask for.
pub(crate) fn result_response(headers: &HeaderMap, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Response> {
    let wants_arrow = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains(ARROW_STREAM));
    if wants_arrow {
        let mut body = Vec::new();
        let mut writer = StreamWriter::try_new(&mut body, schema).map_err(encode_error)?;
        for batch in batches {
            writer.write(batch).map_err(encode_error)?;
        }
        writer.finish().map_err(encode_error)?;
        drop(writer);
        return Ok(([(header::CONTENT_TYPE, ARROW_STREAM)], body).into_response());
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], json_body(schema, batches)?).into_response())
}

fn json_body(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let columns: Vec<serde_json::Value> = schema
        .fields()
        .iter()
        .map(|f| serde_json::json!({ "name": f.name(), "type": f.data_type().to_string(), "nullable": f.is_nullable() }))
        .collect();
    let mut rows = Vec::new();
    {
        let mut writer = WriterBuilder::new().with_explicit_nulls(true).build::<_, JsonArray>(&mut rows);
        for batch in batches {
            writer.write(batch).map_err(encode_error)?;
        }
        writer.finish().map_err(encode_error)?;
    }
    if rows.is_empty() {
        rows.extend_from_slice(b"[]");
    }
    let row_count: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut body = Vec::with_capacity(rows.len() + 128);
    body.extend_from_slice(b"{\"columns\":");
    body.extend_from_slice(serde_json::to_string(&columns).unwrap_or_default().as_bytes());
    body.extend_from_slice(b",\"rows\":");
    body.extend_from_slice(&rows);
    body.extend_from_slice(format!(",\"row_count\":{row_count}}}").as_bytes());
    Ok(body)
}

/// Each row of `batch` as one JSON object (topic events).
pub(crate) fn json_rows(batch: &RecordBatch) -> Result<Vec<String>> {
    let mut out = Vec::new();
    {
        let mut writer = WriterBuilder::new().with_explicit_nulls(true).build::<_, datafusion::arrow::json::writer::LineDelimited>(&mut out);
        writer.write(batch).map_err(encode_error)?;
        writer.finish().map_err(encode_error)?;
    }
    Ok(String::from_utf8_lossy(&out).lines().map(str::to_string).collect())
}

fn encode_error(e: datafusion::arrow::error::ArrowError) -> ServerError {
    ServerError::Engine(jammi_db::Error::Internal { message: format!("cannot encode the result: {e}") })
}
