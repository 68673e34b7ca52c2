//! Authentication: bearer tokens (HTTP, Flight SQL) and passwords (Postgres wire) mapped to
//! tenants.
//!
//! A token is `jammi_` followed by 64 random hex digits; the catalog keeps only its
//! SHA-256 ([`jammi_db::catalog::TokenRepo`]). The server requires a token on every request
//! when the catalog holds at least one live token at start; without one it serves anonymous
//! requests, and then only on loopback addresses (see [`check_bind`]). Verified tokens are
//! remembered for [`CACHE_FOR`], so a revocation reaches a running server within that time.
//!
//! Secrets are never compared as given: each is hashed first, and remembered digests are
//! compared in constant time against every entry (no early exit), so response times say
//! nothing about how much of a guess was right. The catalog looks a digest up by equality;
//! a SHA-256 digest leaks nothing about the secret through that comparison's timing.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jammi_db::catalog::TokenRecord;
use jammi_db::{Session, TenantId};
use sha2::{Digest, Sha256};

use crate::error::{Result, ServerError};

/// How long a verified token is trusted without asking the catalog again.
pub const CACHE_FOR: Duration = Duration::from_secs(5);

/// Who a request runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// The tenant whose rows the request sees; `None`: no tenant (shared rows only).
    pub tenant: Option<TenantId>,
}

/// Checks credentials against the catalog's tokens.
#[derive(Debug)]
pub struct Auth {
    session: Session,
    required: bool,
    verified: Mutex<Vec<Verified>>,
}

/// A token verified recently: its digest, who it acts for, and when it was checked.
#[derive(Debug, Clone)]
struct Verified {
    digest: [u8; 32],
    principal: Principal,
    at: Instant,
}

/// The remembered entry whose digest equals `digest`, found by comparing every entry in
/// constant time.
fn find_verified(entries: &[Verified], digest: &[u8; 32]) -> Option<(Principal, Instant)> {
    use subtle::ConstantTimeEq;
    let mut found = None;
    for entry in entries {
        if bool::from(entry.digest.ct_eq(digest)) {
            found = Some((entry.principal, entry.at));
        }
    }
    found
}

impl Auth {
    /// Auth for `session`'s catalog: required when it holds a live token now.
    pub async fn load(session: &Session) -> Result<Self> {
        let required = session.catalog().tokens().any_live().await?;
        Ok(Auth { session: session.clone(), required, verified: Mutex::new(Vec::new()) })
    }

    /// Whether every request must carry a token.
    pub fn required(&self) -> bool {
        self.required
    }

    /// The principal for `secret` (a bearer token or a Postgres password).
    pub async fn authenticate(&self, secret: Option<&str>) -> Result<Principal> {
        if !self.required {
            return Ok(Principal { tenant: None });
        }
        let Some(secret) = secret.map(str::trim).filter(|s| !s.is_empty()) else {
            return Err(ServerError::Unauthenticated(
                "this server requires a token: send `Authorization: Bearer <token>` (Postgres: the token as the password); create one with `jammi token create`".into(),
            ));
        };
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        {
            let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            verified.retain(|v| v.at.elapsed() < CACHE_FOR);
            if let Some((principal, _)) = find_verified(&verified, &digest) {
                return Ok(principal);
            }
        }
        match self.session.catalog().tokens().find_live(&hex(&digest)).await? {
            Some(record) => {
                let principal = Principal { tenant: record.tenant };
                self.verified.lock().unwrap_or_else(|p| p.into_inner()).push(Verified { digest, principal, at: Instant::now() });
                Ok(principal)
            }
            None => Err(ServerError::Unauthenticated("the token is unknown or revoked; see `jammi token list`".into())),
        }
    }
}

/// Refuse to listen on a non-loopback address when no token protects the server.
pub fn check_bind(addr: &SocketAddr, auth_required: bool, protocol: &str) -> Result<()> {
    if auth_required || addr.ip().is_loopback() {
        return Ok(());
    }
    Err(ServerError::Start(format!(
        "refusing to serve {protocol} on {addr} without authentication: create a token first (`jammi token create --tenant UUID`), then restart, or listen on a loopback address such as 127.0.0.1"
    )))
}

/// Create a token for `tenant`; returns its record and the secret, which is shown only now.
pub async fn create_token(session: &Session, tenant: Option<TenantId>, name: &str) -> Result<(TokenRecord, String)> {
    let secret = format!("jammi_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let record = TokenRecord {
        id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
        tenant,
        name: name.to_string(),
        created_at: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0),
        revoked_at: None,
    };
    session.catalog().tokens().insert(&record, &sha256_hex(&secret)).await?;
    Ok((record, secret))
}

fn sha256_hex(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()).into())
}

fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_tokens_are_found_by_digest_only() {
        let entry = |byte: u8, tenant: Option<TenantId>| Verified { digest: [byte; 32], principal: Principal { tenant }, at: Instant::now() };
        let t = TenantId::random();
        let entries = vec![entry(1, None), entry(2, Some(t))];
        assert_eq!(find_verified(&entries, &[2; 32]).map(|(p, _)| p.tenant), Some(Some(t)));
        assert!(find_verified(&entries, &[3; 32]).is_none());
        let mut near = [2u8; 32];
        near[31] = 3;
        assert!(find_verified(&entries, &near).is_none(), "a digest differing in its last byte must not match");
    }
}
