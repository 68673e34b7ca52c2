//! jammi-server: one jammi-db engine served to other processes and languages over HTTP
//! (JSON and Arrow IPC, server-sent events for topics), the Postgres wire protocol and
//! Arrow Flight SQL.
//!
//! [`Server::start`] binds every listener, checks that an unauthenticated server listens on
//! loopback only, and serves until [`Server::shutdown`] (or SIGINT/SIGTERM through
//! [`shutdown_signal`]), after which in-flight requests drain. Every request authenticates
//! ([`auth`]), then runs in its own tenant scope on its own session handle, under the
//! limits of [`limits::Gate`], and is counted in [`metrics`].

pub mod auth;
pub mod error;
mod flight;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod pg;
mod query;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use jammi_db::Session;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use error::{Result, ServerError};
pub use limits::Limits;
pub use tls::TlsFiles;

/// What to serve, and where.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// HTTP API address (port 0 picks a free port).
    pub http: Option<SocketAddr>,
    /// Postgres wire protocol address.
    pub pg: Option<SocketAddr>,
    /// Arrow Flight SQL address.
    pub flight: Option<SocketAddr>,
    /// Limits applied to every protocol.
    pub limits: Limits,
    /// How long in-flight requests may take to finish after shutdown begins.
    pub drain_timeout: Duration,
    /// TLS for every listener (HTTP, Postgres `sslmode`, Flight SQL `grpc+tls`).
    pub tls: Option<TlsFiles>,
    /// Serve non-loopback addresses without TLS (a trusted network, or a TLS proxy on this
    /// host); refused otherwise.
    pub allow_insecure_transport: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions { http: None, pg: None, flight: None, limits: Limits::default(), drain_timeout: Duration::from_secs(30), tls: None, allow_insecure_transport: false }
    }
}

/// The addresses a started server listens on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BoundAddresses {
    /// HTTP API.
    pub http: Option<SocketAddr>,
    /// Postgres wire protocol.
    pub pg: Option<SocketAddr>,
    /// Arrow Flight SQL.
    pub flight: Option<SocketAddr>,
}

impl BoundAddresses {
    /// The one machine-readable line printed at start:
    /// `{"listening":{"http":"127.0.0.1:41234","pg":"127.0.0.1:5433"},"auth":true}`.
    pub fn to_json_line(&self, auth: bool) -> String {
        self.to_json_line_with_tls(auth, false)
    }

    /// [`BoundAddresses::to_json_line`] with `"tls": true|false`.
    pub fn to_json_line_with_tls(&self, auth: bool, tls: bool) -> String {
        let mut listening = serde_json::Map::new();
        for (name, addr) in [("http", self.http), ("pg", self.pg), ("flight", self.flight)] {
            if let Some(addr) = addr {
                listening.insert(name.to_string(), serde_json::Value::String(addr.to_string()));
            }
        }
        let mut line = serde_json::json!({ "listening": listening, "auth": auth });
        if tls {
            line["tls"] = serde_json::Value::Bool(true);
        }
        line.to_string()
    }
}

/// What every protocol handler shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) session: Session,
    pub(crate) auth: auth::Auth,
    pub(crate) gate: limits::Gate,
    pub(crate) metrics: Arc<metrics::Metrics>,
    /// TLS for every listener, when configured.
    pub(crate) tls: Option<tls::Tls>,
    /// Flips to true when shutdown begins: long-lived streams (topic subscriptions) end.
    pub(crate) stopping: watch::Receiver<bool>,
    /// Ephemeral sessions opened over HTTP (`POST /v1/sessions`).
    pub(crate) ephemeral: http::sessions::Registry,
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    addresses: BoundAddresses,
    auth_required: bool,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    drain_timeout: Duration,
}

impl Server {
    /// Bind and start serving `session` as `options` say.
    pub async fn start(session: Session, options: ServeOptions) -> Result<Server> {
        if options.http.is_none() && options.pg.is_none() && options.flight.is_none() {
            return Err(ServerError::Start("nothing to serve: give at least one of --http, --pg or --flight".into()));
        }
        let auth = auth::Auth::load(&session).await?;
        let auth_required = auth.required();
        let tls = options.tls.as_ref().map(tls::Tls::load).transpose()?;
        for (addr, protocol) in [(options.http, "HTTP"), (options.pg, "the Postgres protocol"), (options.flight, "Flight SQL")] {
            if let Some(addr) = addr {
                auth::check_bind(&addr, auth_required, protocol)?;
                tls::check_transport(&addr, tls.is_some(), options.allow_insecure_transport, protocol)?;
            }
        }
        let bind = |addr: SocketAddr| async move {
            tokio::net::TcpListener::bind(addr).await.map_err(|e| ServerError::Start(format!("cannot listen on {addr}: {e}")))
        };
        let http_listener = match options.http {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let pg_listener = match options.pg {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let flight_listener = match options.flight {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let (stop, stopping) = watch::channel(false);
        let shared = Arc::new(Shared {
            session,
            auth,
            gate: limits::Gate::new(options.limits),
            metrics: Arc::new(metrics::Metrics::default()),
            tls,
            stopping,
            ephemeral: Default::default(),
        });
        let local = |l: &Option<tokio::net::TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
        let addresses = BoundAddresses { http: local(&http_listener), pg: local(&pg_listener), flight: local(&flight_listener) };
        let mut tasks = JoinSet::new();
        if let Some(listener) = http_listener {
            tasks.spawn(http::serve(Arc::clone(&shared), listener));
        }
        if let Some(listener) = pg_listener {
            tasks.spawn(pg::serve(Arc::clone(&shared), listener));
        }
        if let Some(listener) = flight_listener {
            tasks.spawn(flight::serve(Arc::clone(&shared), listener));
        }
        Ok(Server { addresses, auth_required, stop, tasks, drain_timeout: options.drain_timeout })
    }

    /// Where the server listens.
    pub fn addresses(&self) -> BoundAddresses {
        self.addresses
    }

    /// Whether requests must carry a token.
    pub fn auth_required(&self) -> bool {
        self.auth_required
    }

    /// Stop accepting new connections and requests; in-flight ones finish.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Wait until every listener has stopped and its in-flight requests have drained (at
    /// most the drain timeout after shutdown began).
    pub async fn wait(mut self) {
        let mut stopped = self.stop.subscribe();
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let overdue = async move {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                joined = self.tasks.join_next() => {
                    if joined.is_none() {
                        return;
                    }
                }
                _ = stopped.wait_for(|s| *s), if deadline.is_none() => {
                    deadline = Some(tokio::time::Instant::now() + self.drain_timeout);
                }
                _ = overdue => {
                    tracing::warn!("in-flight requests did not finish within the drain timeout; stopping anyway");
                    self.tasks.abort_all();
                    while self.tasks.join_next().await.is_some() {}
                    return;
                }
            }
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
