//! `POST /v1/sql` and `POST /v1/search`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use jammi_db::vector::{HybridOptions, SearchMode, SearchQuery};
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
    let session = super::sessions::session_of_request(&shared, principal, &headers)?;
    let result = shared.run_as(principal, Protocol::Http, "sql", run_sql(&session, &request.sql, params)).await?;
    result_response(&headers, &result.schema, &result.batches)
}

/// `{"table": "docs", "vector": [0.1, ...], "k": 10, "filter": "lang = 'en'", "ef": 64, "exact": false}`;
/// `"text": "words"` instead of (or beside) `"vector"`; `"mode"`: `vector`, `text` or
/// `hybrid` (default: hybrid with both, text on a table with a text index, else vector);
/// hybrid fusion: `"fusion": "rrf"` with `"rrf_k"`, or `"weighted"` with `"weights": [v, t]`,
/// and `"candidates"` per leg.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchBody {
    table: String,
    #[serde(default)]
    vector: Option<Vec<f32>>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default = "default_k")]
    k: usize,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    ef: Option<usize>,
    #[serde(default)]
    exact: bool,
    #[serde(default)]
    fusion: Option<String>,
    #[serde(default)]
    rrf_k: Option<f64>,
    #[serde(default)]
    weights: Option<[f64; 2]>,
    #[serde(default)]
    candidates: Option<usize>,
}

fn default_k() -> usize {
    10
}

impl SearchBody {
    /// The fusion fields as hybrid options, checked as `hybrid_search`'s options string is.
    fn hybrid_options(&self) -> Result<HybridOptions> {
        let mut parts = Vec::new();
        if let Some(fusion) = &self.fusion {
            parts.push(format!("fusion = {fusion}"));
        }
        if let Some(k) = self.rrf_k {
            parts.push(format!("rrf_k = {k}"));
        }
        if let Some([v, t]) = self.weights {
            parts.push(format!("weights = {v}:{t}"));
        }
        if let Some(n) = self.candidates {
            parts.push(format!("candidates = {n}"));
        }
        if parts.iter().any(|p| p.contains(',')) {
            return Err(ServerError::BadRequest("\"fusion\" is rrf or weighted".into()));
        }
        Ok(HybridOptions::parse(&parts.join(", "))?)
    }
}

pub(crate) async fn search(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: axum::body::Bytes) -> Result<Response> {
    let principal = principal(&shared, &headers).await?;
    let request: SearchBody = parse_body(&body, r#"{"table": "docs", "vector": [0.1, 0.2], "k": 10}"#)?;
    if request.vector.is_none() && request.text.is_none() {
        return Err(ServerError::BadRequest("give \"vector\" (a list of numbers), \"text\" (a text query), or both (hybrid)".into()));
    }
    let query = SearchQuery {
        mode: request.mode.as_deref().map(str::parse::<SearchMode>).transpose()?,
        hybrid: request.hybrid_options()?,
        text: request.text,
        vector: request.vector,
        k: request.k,
        filter: request.filter,
        ef: request.ef,
        exact: request.exact,
        oversample: None,
    };
    let session = super::sessions::session_of_request(&shared, principal, &headers)?;
    let result = shared
        .run_as(principal, Protocol::Http, "search", async {
            Ok(session.vectors().search_any(&request.table, &query).await?)
        })
        .await?;
    let mut response = result_response(&headers, &result.batch.schema(), std::slice::from_ref(&result.batch))?;
    // The search's id in the audit log: `GET /v1/audit/{id}` shows its record.
    if let Some(id) = result.query_id.as_deref().and_then(|id| axum::http::HeaderValue::from_str(id).ok()) {
        response.headers_mut().insert("jammi-query-id", id);
    }
    Ok(response)
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
