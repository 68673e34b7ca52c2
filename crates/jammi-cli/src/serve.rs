//! `jammi serve` and `jammi token ...`.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use clap::{Args, Subcommand};
use jammi_db::catalog::TokenRecord;
use jammi_db::Session;
use jammi_server::{Limits, ServeOptions, Server};

use crate::cli::OutputFormat;
use crate::print;

/// Where and how to serve.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// HTTP API address (JSON, Arrow IPC, server-sent events, /metrics). Port 0 picks a
    /// free port. Default (when no address is given): 127.0.0.1:8080.
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// Postgres wire protocol address. Default (when no address is given): 127.0.0.1:5433.
    #[arg(long)]
    pub pg: Option<SocketAddr>,
    /// Arrow Flight SQL address (ADBC / JDBC Flight SQL drivers). Default (when no address
    /// is given): 127.0.0.1:50051.
    #[arg(long)]
    pub flight: Option<SocketAddr>,
    /// Largest request accepted, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_request_bytes: usize,
    /// Queries running at once; more wait for a slot.
    #[arg(long, default_value_t = 64)]
    pub max_concurrent_queries: usize,
    /// Longest a query waits for a slot before it is refused as busy, in seconds.
    #[arg(long, default_value_t = 10)]
    pub queue_timeout: u64,
    /// Longest a query may run before it is cancelled, in seconds.
    #[arg(long, default_value_t = 300)]
    pub query_timeout: u64,
    /// After SIGINT/SIGTERM, how long in-flight requests may take to finish, in seconds.
    #[arg(long, default_value_t = 30)]
    pub drain_timeout: u64,
    /// TLS certificate chain (PEM) for every listener; needs --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// TLS private key (PEM) for every listener; needs --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Serve non-loopback addresses without TLS (only behind a TLS proxy on this host or on
    /// a trusted network: tokens and rows travel in clear text).
    #[arg(long)]
    pub allow_insecure_transport: bool,
    /// Embedding workers that keep following vector tables current (0: leave it to
    /// `jammi worker` processes).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Seconds an embedding worker's claim on a table holds without a heartbeat: when this
    /// replica dies, another replica's workers take its tables over after this.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub worker_lease_secs: u64,
}

/// Run the server until SIGINT or SIGTERM, then drain.
pub async fn serve(session: &Session, args: ServeArgs, out: &mut dyn Write) -> Result<()> {
    let (http, pg, flight) = match (args.http, args.pg, args.flight) {
        (None, None, None) => (
            Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            Some(SocketAddr::from(([127, 0, 0, 1], 5433))),
            Some(SocketAddr::from(([127, 0, 0, 1], 50051))),
        ),
        given => given,
    };
    if args.max_concurrent_queries == 0 || args.query_timeout == 0 {
        return Err(anyhow!("--max-concurrent-queries and --query-timeout must be at least 1"));
    }
    let options = ServeOptions {
        http,
        pg,
        flight,
        limits: Limits {
            max_request_bytes: args.max_request_bytes,
            max_concurrent_queries: args.max_concurrent_queries,
            queue_timeout: Duration::from_secs(args.queue_timeout),
            query_timeout: Duration::from_secs(args.query_timeout),
        },
        drain_timeout: Duration::from_secs(args.drain_timeout),
        tls: match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(jammi_server::TlsFiles { cert, key }),
            _ => None,
        },
        allow_insecure_transport: args.allow_insecure_transport,
    };
    let tls = options.tls.is_some();
    let server = Server::start(session.with_tenant(None), options).await?;
    writeln!(out, "{}", server.addresses().to_json_line_with_tls(server.auth_required(), tls))?;
    out.flush()?;
    // Embedding workers run as the operator (every tenant's following tables) and stop
    // with the server.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut workers = tokio::task::JoinSet::new();
    for i in 0..args.workers {
        let (worker, mut stopped) = (session.with_tenant(None), stopped.clone());
        let options = jammi_db::vector::follow::WorkerOptions {
            worker: format!("serve-{}-{i}", std::process::id()),
            lease: std::time::Duration::from_secs(args.worker_lease_secs),
            ..Default::default()
        };
        workers.spawn(async move {
            let stop = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = worker.admin(|s| async move { s.vectors().run_worker(&options, stop).await }).await {
                eprintln!("embedding worker stopped: {e}");
            }
        });
    }
    jammi_server::shutdown_signal().await;
    eprintln!("shutting down: finishing in-flight requests");
    let _ = stop.send(true);
    server.shutdown();
    server.wait().await;
    while workers.join_next().await.is_some() {}
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token for the tenant given with `--tenant` (without it, the token sees
    /// shared rows only, like the CLI without --tenant); it is printed once and only its
    /// hash is kept.
    Create {
        /// A label for people.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id; a running server stops accepting it within 5 s.
    Revoke {
        /// Token id (from `token list`).
        id: String,
    },
}

/// `jammi token ...`.
pub async fn token(session: &Session, command: TokenCommand, format: OutputFormat, out: &mut dyn Write) -> Result<()> {
    match command {
        TokenCommand::Create { name } => {
            let tenant = session.scope().owner();
            let (record, secret) = jammi_server::auth::create_token(session, tenant, &name).await?;
            if format == OutputFormat::Table {
                let whom = record.tenant.map(|t| format!("tenant {t}")).unwrap_or_else(|| "no tenant (shared rows only)".into());
                writeln!(out, "created token {} for {whom}; it is shown only now:", record.id)?;
                writeln!(out, "{secret}")?;
                return Ok(());
            }
            let batch = tokens_batch(std::slice::from_ref(&record), Some(&secret))?;
            print::print_batch(&batch, format, out)
        }
        TokenCommand::List => {
            let scope = token_scope(session);
            let tokens: Vec<TokenRecord> = session.catalog().tokens().list().await?.into_iter().filter(|t| jammi_db::tenant::visible(scope, t.tenant)).collect();
            print::print_batch(&tokens_batch(&tokens, None)?, format, out)
        }
        TokenCommand::Revoke { id } => {
            let scope = token_scope(session);
            let owner = session.catalog().tokens().list().await?.into_iter().find(|t| t.id == id && jammi_db::tenant::visible(scope, t.tenant));
            match owner {
                None => return Err(anyhow!("token '{id}' does not exist; see `jammi token list`")),
                Some(t) if !jammi_db::tenant::may_change(scope, t.tenant) => {
                    return Err(anyhow!("permission denied: token '{id}' belongs to the operator; only the operator (no --tenant) may revoke it"))
                }
                Some(_) => {}
            }
            let record = session.catalog().tokens().revoke(&id).await?;
            print::print_batch(&tokens_batch(&[record], None)?, format, out)
        }
    }
}

/// Tokens are owned like every other object — a tenant lists and revokes its own (and sees
/// shared ones) — except that the operator (no `--tenant`) administers every token, since
/// it is who creates and revokes them for tenants.
fn token_scope(session: &Session) -> jammi_db::TenantScope {
    match session.scope() {
        jammi_db::TenantScope::Unbound => jammi_db::TenantScope::Admin,
        other => other,
    }
}

fn tokens_batch(tokens: &[TokenRecord], secret: Option<&str>) -> Result<RecordBatch> {
    let mut fields = vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("tenant", DataType::Utf8, true),
        Field::new("name", DataType::Utf8, false),
        Field::new("created_at_ms", DataType::Int64, false),
        Field::new("revoked_at_ms", DataType::Int64, true),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(tokens.iter().map(|t| t.id.as_str()))),
        Arc::new(StringArray::from(tokens.iter().map(|t| t.tenant.map(|x| x.to_string())).collect::<Vec<_>>())),
        Arc::new(StringArray::from_iter_values(tokens.iter().map(|t| t.name.as_str()))),
        Arc::new(Int64Array::from_iter_values(tokens.iter().map(|t| t.created_at))),
        Arc::new(Int64Array::from(tokens.iter().map(|t| t.revoked_at).collect::<Vec<_>>())),
    ];
    if let Some(secret) = secret {
        fields.push(Field::new("token", DataType::Utf8, false));
        columns.push(Arc::new(StringArray::from_iter_values(tokens.iter().map(|_| secret))));
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

/// `jammi serve` audits every search unless the configuration says otherwise; with no key
/// configured, it uses (and first creates) `<data-dir>/audit.key`.
pub fn audit_on_by_default(config: &mut jammi_db::Config) -> Result<()> {
    if config.audit.enabled.is_none() {
        config.audit.enabled = Some(true);
    }
    if config.audit.enabled == Some(true) && config.audit.key_file.is_none() && std::env::var(&config.audit.key_env).is_err() {
        config.audit.key_file = Some(jammi_db::audit::keys::local_key_file(&config.data_dir)?);
    }
    Ok(())
}
