//! Repository of server bearer tokens (`jammi_tokens`). Only a SHA-256 of each secret is
//! stored; the secret itself is shown once, when the token is created, and never again.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{now_millis, Catalog};
use crate::error::{Error, Result};
use crate::tenant::TenantId;

/// One token as stored (without its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Stable identifier (shown by `token list`, used to revoke).
    pub id: String,
    /// The tenant the token acts for; `None`: no tenant.
    pub tenant: Option<TenantId>,
    /// A label for people.
    pub name: String,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
    /// Revocation time, when revoked.
    pub revoked_at: Option<i64>,
}

/// Reads and writes `jammi_tokens`.
#[derive(Debug)]
pub struct TokenRepo<'a> {
    catalog: &'a Catalog,
}

const COLUMNS: &str = "id, tenant_id, name, created_at, revoked_at";

fn record(row: &AnyRow) -> std::result::Result<TokenRecord, sqlx::Error> {
    Ok(TokenRecord {
        id: row.try_get("id")?,
        tenant: super::tenant_of(row)?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

impl<'a> TokenRepo<'a> {
    pub(super) fn new(catalog: &'a Catalog) -> Self {
        TokenRepo { catalog }
    }

    /// Store a new token whose secret hashes to `secret_sha256` (hex).
    pub async fn insert(&self, record: &TokenRecord, secret_sha256: &str) -> Result<()> {
        let c = self.catalog;
        sqlx::query("INSERT INTO jammi_tokens (id, tenant_id, name, secret_sha256, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, NULL)")
            .bind(&record.id)
            .bind(record.tenant.map(|t| t.to_string()))
            .bind(&record.name)
            .bind(secret_sha256)
            .bind(record.created_at)
            .execute(c.pool())
            .await
            .map_err(|e| c.error(e))?;
        Ok(())
    }

    /// The live (not revoked) token whose secret hashes to `secret_sha256`.
    pub async fn find_live(&self, secret_sha256: &str) -> Result<Option<TokenRecord>> {
        let c = self.catalog;
        let sql = format!("SELECT {COLUMNS} FROM jammi_tokens WHERE secret_sha256 = $1 AND revoked_at IS NULL");
        let row = sqlx::query(&sql).bind(secret_sha256).fetch_optional(c.pool()).await.map_err(|e| c.error(e))?;
        row.as_ref().map(record).transpose().map_err(|e| c.error(e))
    }

    /// Every token, oldest first.
    pub async fn list(&self) -> Result<Vec<TokenRecord>> {
        let c = self.catalog;
        let sql = format!("SELECT {COLUMNS} FROM jammi_tokens ORDER BY created_at, id");
        let rows = sqlx::query(&sql).fetch_all(c.pool()).await.map_err(|e| c.error(e))?;
        rows.iter().map(record).collect::<std::result::Result<_, _>>().map_err(|e| c.error(e))
    }

    /// Whether any token is live: then the server requires one on every request.
    pub async fn any_live(&self) -> Result<bool> {
        let c = self.catalog;
        let row = sqlx::query("SELECT id FROM jammi_tokens WHERE revoked_at IS NULL LIMIT 1").fetch_optional(c.pool()).await.map_err(|e| c.error(e))?;
        Ok(row.is_some())
    }

    /// Revoke token `id`; revoking it again changes nothing.
    pub async fn revoke(&self, id: &str) -> Result<TokenRecord> {
        let c = self.catalog;
        sqlx::query("UPDATE jammi_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_millis())
            .bind(id)
            .execute(c.pool())
            .await
            .map_err(|e| c.error(e))?;
        let sql = format!("SELECT {COLUMNS} FROM jammi_tokens WHERE id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(c.pool()).await.map_err(|e| c.error(e))?;
        match row {
            Some(row) => record(&row).map_err(|e| c.error(e)),
            None => Err(Error::InvalidName { name: id.to_string(), message: "no token has this id; run `jammi token list` to see them".into() }),
        }
    }
}
