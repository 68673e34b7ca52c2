//! Connection start-up: a cleartext password checked as a server token, or no
//! authentication when the server has no tokens.

use std::fmt::Debug;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use futures::sink::Sink;
use pgwire::api::auth::cleartext::CleartextPasswordAuthStartupHandler;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::{AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler};
use pgwire::api::ClientInfo;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use crate::auth::Principal;
use crate::Shared;

/// Checks the password of one connection as a token and keeps the principal it maps to.
#[derive(Debug)]
pub(crate) struct TokenSource {
    pub(crate) shared: Arc<Shared>,
    pub(crate) principal: Arc<OnceLock<Principal>>,
}

#[async_trait]
impl AuthSource for TokenSource {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        // Never used: `verify_password` checks the token itself.
        Err(PgWireError::ApiError("passwords are checked as tokens, not looked up".into()))
    }

    async fn verify_password(&self, login: &LoginInfo, presented: &[u8]) -> PgWireResult<Option<()>> {
        let token = std::str::from_utf8(presented).unwrap_or_default();
        match self.shared.auth.authenticate(Some(token)).await {
            Ok(principal) => {
                let _ = self.principal.set(principal);
                Ok(None)
            }
            Err(_) => Err(PgWireError::InvalidPassword(login.user().unwrap_or_default().to_owned())),
        }
    }
}

/// Start-up without authentication (a server without tokens, on loopback only).
#[derive(Debug)]
pub(crate) struct Open;

impl NoopStartupHandler for Open {}

/// The start-up handler of one connection.
pub(crate) struct Startup {
    kind: StartupKind,
    /// The server has TLS: a connection that did not negotiate it is refused before any
    /// password (token) is sent in clear text.
    tls_required: bool,
}

enum StartupKind {
    Token(CleartextPasswordAuthStartupHandler<TokenSource, DefaultServerParameterProvider>),
    Open(Open),
}

impl Startup {
    pub(crate) fn new(shared: &Arc<Shared>, principal: &Arc<OnceLock<Principal>>) -> Self {
        let kind = if shared.auth.required() {
            let source = TokenSource { shared: Arc::clone(shared), principal: Arc::clone(principal) };
            StartupKind::Token(CleartextPasswordAuthStartupHandler::new(source, parameters()))
        } else {
            let _ = principal.set(Principal { tenant: None });
            StartupKind::Open(Open)
        };
        Startup { kind, tls_required: shared.tls.is_some() }
    }
}

fn parameters() -> DefaultServerParameterProvider {
    let mut parameters = DefaultServerParameterProvider::default();
    parameters.server_version = format!("16.0 (jammi-db {})", env!("CARGO_PKG_VERSION"));
    parameters
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.tls_required && !client.is_secure() {
            return Err(PgWireError::UserError(Box::new(pgwire::error::ErrorInfo::new(
                "FATAL".to_owned(),
                "28000".to_owned(),
                "this server requires TLS: connect with sslmode=require (or verify-ca / verify-full with the server's certificate)".to_owned(),
            ))));
        }
        match &self.kind {
            StartupKind::Token(handler) => handler.on_startup(client, message).await,
            StartupKind::Open(handler) => handler.on_startup(client, message).await,
        }
    }
}
