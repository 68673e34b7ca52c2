//! Reads of audit records (`jammi_audit_searches`): one row per audited search, a chain per
//! tenant keyed by (chain, seq). Rows are only ever inserted, by the audit writer
//! (`audit::writer`); nothing updates or deletes them, and no SQL statement reaches this
//! table.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::Catalog;
use crate::error::Result;

/// One stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// The chain (`""`: the shared one).
    pub tenant: String,
    /// Position in the chain.
    pub seq: i64,
    /// The search's id.
    pub query_id: String,
    /// The key version that signed it.
    pub key_version: i64,
    /// The canonical record text (what is signed).
    pub record: String,
    /// HMAC-SHA256 of `record`, hex.
    pub signature: String,
}

/// A retention checkpoint: records 1..=`through_seq` of a chain were removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    /// The chain (`""`: the shared one).
    pub tenant: String,
    /// The last removed sequence number.
    pub through_seq: i64,
    /// The key version that signed it.
    pub key_version: i64,
    /// The canonical checkpoint text (what is signed).
    pub record: String,
    /// HMAC-SHA256 of `record`, hex.
    pub signature: String,
}

fn row(r: &AnyRow) -> std::result::Result<AuditRow, sqlx::Error> {
    Ok(AuditRow {
        tenant: r.try_get("chain")?,
        seq: r.try_get("seq")?,
        query_id: r.try_get("query_id")?,
        key_version: r.try_get("key_version")?,
        record: r.try_get("record")?,
        signature: r.try_get("signature")?,
    })
}

const COLUMNS: &str = "chain, seq, query_id, key_version, record, signature";

/// Reads and appends `jammi_audit_searches`.
#[derive(Debug)]
pub struct AuditRepo<'a> {
    catalog: &'a Catalog,
}

impl<'a> AuditRepo<'a> {
    pub(super) fn new(catalog: &'a Catalog) -> Self {
        AuditRepo { catalog }
    }

    /// `tenant`'s records from `from_seq` on, in order, at most `limit`.
    pub async fn chain(&self, tenant: &str, from_seq: i64, limit: i64) -> Result<Vec<AuditRow>> {
        let c = self.catalog;
        let sql = format!("SELECT {COLUMNS} FROM jammi_audit_searches WHERE chain = $1 AND seq >= $2 ORDER BY seq LIMIT $3");
        let rows = sqlx::query(&sql).bind(tenant).bind(from_seq).bind(limit).fetch_all(c.pool()).await.map_err(|e| c.error(e))?;
        rows.iter().map(row).collect::<std::result::Result<_, _>>().map_err(|e| c.error(e))
    }

    /// `tenant`'s records with `from_seq <= seq <= to_seq`, in order.
    pub async fn range(&self, tenant: &str, from_seq: i64, to_seq: i64) -> Result<Vec<AuditRow>> {
        let c = self.catalog;
        let sql = format!("SELECT {COLUMNS} FROM jammi_audit_searches WHERE chain = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq");
        let rows = sqlx::query(&sql).bind(tenant).bind(from_seq).bind(to_seq).fetch_all(c.pool()).await.map_err(|e| c.error(e))?;
        rows.iter().map(row).collect::<std::result::Result<_, _>>().map_err(|e| c.error(e))
    }

    /// The record of `tenant`'s chain at `seq`.
    pub async fn at(&self, tenant: &str, seq: i64) -> Result<Option<AuditRow>> {
        Ok(self.chain(tenant, seq, 1).await?.into_iter().find(|r| r.seq == seq))
    }

    /// The record of search `query_id`.
    pub async fn by_query_id(&self, query_id: &str) -> Result<Option<AuditRow>> {
        let c = self.catalog;
        let sql = format!("SELECT {COLUMNS} FROM jammi_audit_searches WHERE query_id = $1");
        let found = sqlx::query(&sql).bind(query_id).fetch_optional(c.pool()).await.map_err(|e| c.error(e))?;
        found.as_ref().map(row).transpose().map_err(|e| c.error(e))
    }

    /// Every chain's tenant (chains whose records were all pruned included).
    pub async fn tenants(&self) -> Result<Vec<String>> {
        let c = self.catalog;
        let rows = sqlx::query("SELECT chain FROM jammi_audit_searches UNION SELECT chain FROM jammi_audit_checkpoints ORDER BY chain").fetch_all(c.pool()).await.map_err(|e| c.error(e))?;
        rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<std::result::Result<_, _>>().map_err(|e| c.error(e))
    }

    /// `tenant`'s retention checkpoints, oldest first.
    pub async fn checkpoints(&self, tenant: &str) -> Result<Vec<CheckpointRow>> {
        let c = self.catalog;
        let rows = sqlx::query("SELECT chain, through_seq, key_version, record, signature FROM jammi_audit_checkpoints WHERE chain = $1 ORDER BY through_seq")
            .bind(tenant)
            .fetch_all(c.pool())
            .await
            .map_err(|e| c.error(e))?;
        rows.iter()
            .map(|r| Ok(CheckpointRow { tenant: r.try_get("chain")?, through_seq: r.try_get("through_seq")?, key_version: r.try_get("key_version")?, record: r.try_get("record")?, signature: r.try_get("signature")? }))
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(|e| c.error(e))
    }

    /// Per-chain auditing overrides: (chain, enabled).
    pub async fn overrides(&self) -> Result<Vec<(String, bool)>> {
        let c = self.catalog;
        let rows = sqlx::query("SELECT chain, enabled FROM jammi_audit_tenants ORDER BY chain").fetch_all(c.pool()).await.map_err(|e| c.error(e))?;
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)? != 0)))
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(|e| c.error(e))
    }

    /// Turn auditing of `chain` on or off (`None`: back to the configured default). Every
    /// engine on the catalog follows at its next sync.
    pub async fn set_override(&self, chain: &str, enabled: Option<bool>) -> Result<()> {
        let c = self.catalog;
        let mut tx = c.begin_serialized().await?;
        sqlx::query("DELETE FROM jammi_audit_tenants WHERE chain = $1").bind(chain).execute(&mut *tx).await.map_err(|e| c.error(e))?;
        if let Some(enabled) = enabled {
            sqlx::query("INSERT INTO jammi_audit_tenants (chain, tenant_id, enabled, updated_at_ms) VALUES ($1, $2, $3, $4)")
                .bind(chain)
                .bind((!chain.is_empty()).then(|| chain.to_string()))
                .bind(i64::from(enabled))
                .bind(super::now_millis())
                .execute(&mut *tx)
                .await
                .map_err(|e| c.error(e))?;
        }
        super::bump_change_counter(&mut tx).await.map_err(|e| c.error(e))?;
        tx.commit().await.map_err(|e| c.error(e))
    }
}
