//! `POST /v1/sql` and `POST /v1/search`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use jammi_db::vector::SearchRequest;
use serde::Deserialize;

use super::encode::result_response;
use super::principal;
use crate::error::{Result, ServerError};
use crate::metrics::Protocol;
use crate::query::run_sql;
use crate::Shared;

/// `{"sql": "...", "params": [1, "a", [0.1, 0.2], null]}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SqlRequest {
    sql: String,
    #[serde(default)]
    params: Vec<serde_json::Value>,
}

pub(crate) async fn sql(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: axum::body::Bytes) -> Result<Response> {
    let principal = principal(&shared, &headers).await?;
    let request: SqlRequest = parse_body(&body, r#"{"sql": "SELECT 1", "params": []}"#)?;
    let params = request.params.iter().enumerate().map(|(i, v)| json_param(i, v)).collect::<Result<Vec<_>>>()?;
    let session = shared.session_for(principal);
    let result = shared.run_as(principal, Protocol::Http, "sql", run_sql(&session, &request.sql, params)).await?;
    result_response(&headers, &result.schema, &result.batches)
}

/// `{"table": "docs", "vector": [0.1, ...], "k": 10, "filter": "lang = 'en'", "ef": 64, "exact": false}`,
/// or `"text": "a query"` instead of `"vector"` on a table with an embedding model.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchBody {
    table: String,
    #[serde(default)]
    vector: Option<Vec<f32>>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default = "default_k")]
    k: usize,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    ef: Option<usize>,
    #[serde(default)]
    exact: bool,
}

fn default_k() -> usize {
    10
}

pub(crate) async fn search(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: axum::body::Bytes) -> Result<Response> {
    let principal = principal(&shared, &headers).await?;
    let request: SearchBody = parse_body(&body, r#"{"table": "docs", "vector": [0.1, 0.2], "k": 10}"#)?;
    let session = shared.session_for(principal);
    let query = match (request.vector, request.text) {
        (Some(vector), None) => SearchRequest::new(vector, request.k),
        (None, Some(text)) => SearchRequest::text(text, request.k),
        _ => return Err(ServerError::BadRequest("give exactly one of \"vector\" (a list of numbers) and \"text\" (a text query, for tables with an embedding model)".into())),
    };
    let search = SearchRequest { filter: request.filter, ef: request.ef, exact: request.exact, ..query };
    let result = shared
        .run_as(principal, Protocol::Http, "search", async {
            Ok(session.vectors().search(&request.table, &search).await?)
        })
        .await?;
    result_response(&headers, &result.batch.schema(), std::slice::from_ref(&result.batch))
}

/// The JSON body as `T`, or a 400 naming the problem and showing the expected shape.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8], example: &str) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| ServerError::BadRequest(format!("the body is not the expected JSON ({e}); expected e.g. {example}")))
}

/// A JSON parameter as a SQL value: integers → BIGINT, other numbers → DOUBLE, strings →
/// VARCHAR, booleans, null, and arrays of numbers → a list of DOUBLE (vectors).
fn json_param(index: usize, value: &serde_json::Value) -> Result<ScalarValue> {
    use serde_json::Value;
    Ok(match value {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(Some(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => ScalarValue::Int64(Some(i)),
            None => ScalarValue::Float64(n.as_f64()),
        },
        Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
        Value::Array(items) => {
            let numbers = items
                .iter()
                .map(|v| v.as_f64().map(ScalarValue::from))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| ServerError::BadRequest(format!("parameter ${}: an array parameter holds numbers only", index + 1)))?;
            ScalarValue::List(ScalarValue::new_list_nullable(&numbers, &DataType::Float64))
        }
        Value::Object(_) => return Err(ServerError::BadRequest(format!("parameter ${}: objects are not SQL values; pass a JSON string", index + 1))),
    })
}
