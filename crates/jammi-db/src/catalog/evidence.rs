//! The evidence channel registry (`jammi_evidence_channels`): append-only — a channel is
//! registered once and never changed or removed. Seeded with the built-in channels
//! (`vector`, `text`, `model`); a user channel's row is written in the transaction that
//! creates its storage.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{now_millis, Catalog};
use crate::error::Result;
use crate::tenant::TenantId;

/// One registered channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRecord {
    /// Stable identifier.
    pub id: String,
    /// The tenant that registered it (`None`: shared — the built-ins, or the operator's).
    pub tenant: Option<TenantId>,
    /// The channel's name.
    pub name: String,
    /// Its typed columns: JSON `[{"name": …, "type": …}]`.
    pub columns: String,
    /// A built-in channel, whose values come with search results.
    pub builtin: bool,
}

fn record(row: &AnyRow) -> std::result::Result<ChannelRecord, sqlx::Error> {
    Ok(ChannelRecord {
        id: row.try_get("id")?,
        tenant: super::tenant_of(row)?,
        name: row.try_get("name")?,
        columns: row.try_get("columns")?,
        builtin: row.try_get::<i64, _>("builtin")? != 0,
    })
}

/// Reads and appends `jammi_evidence_channels`.
#[derive(Debug)]
pub struct EvidenceRepo<'a> {
    catalog: &'a Catalog,
}

impl<'a> EvidenceRepo<'a> {
    pub(super) fn new(catalog: &'a Catalog) -> Self {
        EvidenceRepo { catalog }
    }

    /// Every channel, by name.
    pub async fn list_all(&self) -> Result<Vec<ChannelRecord>> {
        let c = self.catalog;
        let rows = sqlx::query("SELECT id, tenant_id, name, columns, builtin FROM jammi_evidence_channels ORDER BY name").fetch_all(c.pool()).await.map_err(|e| c.error(e))?;
        rows.iter().map(record).collect::<std::result::Result<_, _>>().map_err(|e| c.error(e))
    }

    /// Register a channel inside the transaction open on `conn`.
    pub async fn insert_in(&self, conn: &mut AnyConnection, record: &ChannelRecord) -> Result<()> {
        let c = self.catalog;
        sqlx::query("INSERT INTO jammi_evidence_channels (id, tenant_id, name, columns, builtin, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&record.id)
            .bind(record.tenant.map(|t| t.to_string()))
            .bind(&record.name)
            .bind(&record.columns)
            .bind(i64::from(record.builtin))
            .bind(now_millis())
            .execute(conn)
            .await
            .map(|_| ())
            .map_err(|e| c.error(e))
    }
}
