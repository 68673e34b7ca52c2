//! The HTTP API (axum): health, readiness, Prometheus metrics, and a JSON API for SQL,
//! vector search, topic publish and topic subscribe (server-sent events). See
//! docs/server.md for the request and response shapes.

mod audit;
mod encode;
pub(crate) mod sessions;
mod sql;
mod topics;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;

use crate::auth::Principal;
use crate::error::{Result, ServerError};
use crate::metrics::{ConnectionGuard, Protocol};
use crate::tls::MaybeTls;
use crate::Shared;

type AppState = State<Arc<Shared>>;

/// Serve the HTTP API on `listener` until shutdown begins, then drain.
pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/sql", post(sql::sql))
        .route("/v1/search", post(sql::search))
        .route("/v1/audit/verify", post(audit::verify))
        .route("/v1/sessions", post(sessions::open))
        .route("/v1/sessions/{id}", axum::routing::delete(sessions::close))
        .route("/v1/audit/{query_id}", get(audit::show))
        .route("/v1/topics/{name}/events", post(topics::publish).get(topics::subscribe))
        .route("/v1/topics/{name}/ack", post(topics::ack))
        .layer(DefaultBodyLimit::max(shared.gate.limits().max_request_bytes))
        .with_state(Arc::clone(&shared));
    let mut stopping = shared.stopping.clone();
    let listener = match CountingListener::start(listener, &shared) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "the HTTP listener has no address");
            return;
        }
    };
    let stopped = async move {
        let _ = stopping.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(stopped).await {
        tracing::error!(error = %e, "the HTTP server stopped");
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the catalog answers.
async fn readyz(State(shared): AppState) -> Response {
    match shared.session.sync_catalog().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response(),
    }
}

async fn metrics(State(shared): AppState) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], shared.metrics.render()).into_response()
}

/// The principal of a request, from its `Authorization: Bearer` header.
async fn principal(shared: &Shared, headers: &HeaderMap) -> Result<Principal> {
    let token = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let text = value.to_str().map_err(|_| ServerError::Unauthenticated("the Authorization header is not text".into()))?;
            match text.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Some(token.to_string()),
                _ => return Err(ServerError::Unauthenticated("use `Authorization: Bearer <token>`".into())),
            }
        }
    };
    shared.auth.authenticate(token.as_deref()).await
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({ "error": self.to_string(), "sqlstate": self.sqlstate() });
        (status, axum::Json(body)).into_response()
    }
}

/// A listener whose connections count in `jammi_open_connections{protocol="http"}`, with
/// TLS when the server has it. Connections are accepted (and their TLS handshakes run) in a
/// task of their own, each handshake in its own task under a deadline, so a client that
/// stalls its handshake holds up no one else.
struct CountingListener {
    accepted: tokio::sync::mpsc::Receiver<(CountedStream, std::net::SocketAddr)>,
    local: std::net::SocketAddr,
}

impl CountingListener {
    fn start(listener: TcpListener, shared: &Arc<Shared>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, accepted) = tokio::sync::mpsc::channel(64);
        let (metrics, tls, mut stopping) = (Arc::clone(&shared.metrics), shared.tls.as_ref().map(|t| t.http.clone()), shared.stopping.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stopping.wait_for(|s| *s) => return,
                    accepted = listener.accept() => accepted,
                };
                let (stream, addr) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting an HTTP connection failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (tx, metrics) = (tx.clone(), Arc::clone(&metrics));
                match &tls {
                    None => {
                        let counted = CountedStream { inner: MaybeTls::Plain(stream), _guard: metrics.connection(Protocol::Http) };
                        if tx.send((counted, addr)).await.is_err() {
                            return;
                        }
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            match tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => {
                                    let counted = CountedStream { inner: MaybeTls::Tls(Box::new(tls)), _guard: metrics.connection(Protocol::Http) };
                                    let _ = tx.send((counted, addr)).await;
                                }
                                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                                Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                            }
                        });
                    }
                }
            }
        });
        Ok(CountingListener { accepted, local })
    }
}

impl axum::serve::Listener for CountingListener {
    type Io = CountedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // Shutting down: no more connections.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// A connection that holds its connection-count guard.
struct CountedStream {
    inner: MaybeTls,
    _guard: ConnectionGuard,
}

impl AsyncRead for CountedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
