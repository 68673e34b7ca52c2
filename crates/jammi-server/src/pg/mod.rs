//! The Postgres wire protocol (pgwire): psql and ordinary Postgres drivers connect with the
//! simple and the extended query protocol (prepared statements with parameters, text and
//! binary results). The password is a server token (any user name); without tokens the
//! server accepts any password on loopback.
//!
//! Each connection has its own session handle, so `BEGIN … COMMIT` spans the statements of
//! that connection only, and every statement runs in the connection's tenant scope through
//! the server's limits gate.

mod auth;
mod catalog;
mod encode;
mod handler;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::metrics::Protocol;
use crate::Shared;

/// Serve the Postgres protocol on `listener` until shutdown begins; then each connection
/// closes once its statement in flight (if any) has finished.
pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let mut stopping = shared.stopping.clone();
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stopping.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        let socket = match accepted {
            Ok((socket, _)) => socket,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a Postgres connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let connection = Arc::new(handler::Connection::new(Arc::clone(&shared)));
        let busy = connection.busy();
        let guard = shared.metrics.connection(Protocol::Pg);
        let mut stop = shared.stopping.clone();
        // pgwire answers a client's SSLRequest with TLS when it has an acceptor.
        let tls = shared.tls.as_ref().map(|t| t.plain.clone());
        connections.spawn(async move {
            let _guard = guard;
            let serving = pgwire::tokio::process_socket(socket, tls, connection);
            tokio::pin!(serving);
            tokio::select! {
                _ = &mut serving => return,
                _ = stop.wait_for(|s| *s) => {}
            }
            // Shutting down: let the statement in flight finish, then close.
            loop {
                if busy.load(Ordering::Acquire) == 0 {
                    return;
                }
                tokio::select! {
                    _ = &mut serving => return,
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
            }
        });
    }
    while connections.join_next().await.is_some() {}
}

/// Statements in flight on one connection.
pub(crate) type Busy = Arc<AtomicUsize>;
