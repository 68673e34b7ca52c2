//! Ephemeral sessions over HTTP: `POST /v1/sessions` opens one for the caller's token
//! (`{"timeout_ms": 60000}`, optional) and answers its id; requests carrying the header
//! `jammi-session: <id>` run in it (`/v1/sql`, `/v1/search`); `DELETE /v1/sessions/{id}`
//! closes it, dropping its tables. HTTP has no connection to lose, so a session a client
//! forgets ends at its idle timeout.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jammi_db::{EphemeralSession, Session};
use serde::Deserialize;
use serde_json::json;

use super::principal;
use super::sql::parse_body;
use crate::auth::Principal;
use crate::error::{Result, ServerError};
use crate::metrics::Protocol;
use crate::Shared;

/// The request header naming the ephemeral session a request runs in.
pub(crate) const SESSION_HEADER: &str = "jammi-session";

/// `{"timeout_ms": 60000}` (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OpenBody {
    #[serde(default)]
    timeout_ms: Option<u64>,
}

fn unknown(id: &str) -> ServerError {
    ServerError::Engine(jammi_db::Error::NotFound { location: format!("ephemeral session {id} (it may have ended: closed or idle past its timeout)") })
}

pub(crate) async fn open(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: axum::body::Bytes) -> Result<Response> {
    let principal = principal(&shared, &headers).await?;
    let body: OpenBody = if body.is_empty() { OpenBody::default() } else { parse_body(&body, r#"{"timeout_ms": 60000}"#)? };
    let session = shared.session_for(principal);
    let timeout = body.timeout_ms.map(std::time::Duration::from_millis);
    let ephemeral = shared.run_as(principal, Protocol::Http, "session", async { Ok(session.ephemeral(timeout).await?) }).await?;
    let (id, timeout_ms) = (ephemeral.id(), ephemeral.timeout().as_millis() as u64);
    let mut sessions = shared.ephemeral.lock().unwrap_or_else(|p| p.into_inner());
    // Sessions that ended on their own (timeouts) leave the registry here.
    sessions.retain(|_, (_, s)| s.is_open());
    sessions.insert(id.clone(), (principal, Arc::new(ephemeral)));
    Ok((StatusCode::CREATED, Json(json!({"session": id, "timeout_ms": timeout_ms}))).into_response())
}

pub(crate) async fn close(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response> {
    let principal = principal(&shared, &headers).await?;
    let ephemeral = {
        let mut sessions = shared.ephemeral.lock().unwrap_or_else(|p| p.into_inner());
        match sessions.get(&id) {
            Some((owner, _)) if *owner == principal => sessions.remove(&id).map(|(_, s)| s),
            _ => None,
        }
    }
    .ok_or_else(|| unknown(&id))?;
    let ended = shared.run_as(principal, Protocol::Http, "session", async { Ok(ephemeral.close().await?) }).await?;
    let (tables, rows) = match ended {
        Some(ended) => (ended.tables.iter().map(|t| json!({"name": t.name, "rows": t.rows})).collect::<Vec<_>>(), ended.rows_deleted),
        None => (Vec::new(), 0),
    };
    Ok(Json(json!({"session": id, "closed": true, "tables": tables, "rows_deleted": rows})).into_response())
}

/// The session a request runs in: the ephemeral session its `jammi-session` header names
/// (which must be the caller's and still open), else a fresh handle for the caller.
pub(crate) fn session_of_request(shared: &Shared, principal: Principal, headers: &HeaderMap) -> Result<Session> {
    let Some(value) = headers.get(SESSION_HEADER) else { return Ok(shared.session_for(principal)) };
    let id = value.to_str().unwrap_or_default();
    let sessions = shared.ephemeral.lock().unwrap_or_else(|p| p.into_inner());
    match sessions.get(id) {
        Some((owner, ephemeral)) if *owner == principal && ephemeral.is_open() => Ok((**ephemeral).clone()),
        _ => Err(unknown(id)),
    }
}

/// Ephemeral sessions the server holds for HTTP clients, by id.
pub(crate) type Registry = std::sync::Mutex<std::collections::HashMap<String, (Principal, Arc<EphemeralSession>)>>;
