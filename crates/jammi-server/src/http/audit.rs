//! `GET /v1/audit/{query_id}` and `POST /v1/audit/verify`: the caller's audit chain (a
//! tenant's token: its own; a token without a tenant: the shared chain).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::principal;
use super::sql::parse_body;
use crate::error::{Result, ServerError};
use crate::metrics::Protocol;
use crate::Shared;

pub(crate) async fn show(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(query_id): Path<String>) -> Result<Response> {
    let principal = principal(&shared, &headers).await?;
    let session = shared.session_for(principal);
    let found = shared.run_as(principal, Protocol::Http, "audit", async { Ok(session.audit().show(&query_id).await?) }).await?;
    let row = found.ok_or_else(|| ServerError::Engine(jammi_db::Error::NotFound { location: format!("the audit record of search {query_id}") }))?;
    let record: serde_json::Value = serde_json::from_str(&row.record).unwrap_or(serde_json::Value::Null);
    Ok(Json(json!({
        "tenant": row.tenant, "seq": row.seq, "query_id": row.query_id, "key_version": row.key_version,
        "record": record, "canonical": row.record, "signature": row.signature,
    }))
    .into_response())
}

/// `{"from": 1}` (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyBody {
    #[serde(default)]
    from: Option<u64>,
}

pub(crate) async fn verify(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: axum::body::Bytes) -> Result<Response> {
    let principal = principal(&shared, &headers).await?;
    let request: VerifyBody = if body.is_empty() { VerifyBody::default() } else { parse_body(&body, r#"{"from": 1}"#)? };
    let session = shared.session_for(principal);
    let reports = shared.run_as(principal, Protocol::Http, "audit", async { Ok(session.audit().verify(None, request.from.unwrap_or(1)).await?) }).await?;
    let chains: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| {
            json!({
                "tenant": r.tenant, "from": r.from, "checked": r.checked, "last_good": r.last_seq, "ok": r.ok(),
                "broken_at": r.first_bad.as_ref().map(|b| b.seq), "problem": r.first_bad.as_ref().map(|b| b.problem.clone()),
            })
        })
        .collect();
    Ok(Json(json!({"ok": reports.iter().all(|r| r.ok()), "chains": chains})).into_response())
}
