//! Repository of mutable tables (`jammi_mutable_tables`). The rows themselves live in one
//! storage table per mutable table, in the same database; DDL changes the catalog row and
//! the storage table in one transaction.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{bump_change_counter, now_millis, Catalog};
use crate::error::Result;
use crate::tenant::TenantId;

/// One mutable table as stored in the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct MutableTableRecord {
    /// Stable identifier.
    pub id: String,
    /// The tenant that created the table (`None`: shared, created by the operator); see
    /// [`crate::tenant`] for who may see and change it.
    pub owner: Option<TenantId>,
    /// SQL name (`mutable.public.NAME`).
    pub name: String,
    /// Name of the storage table holding the rows.
    pub storage: String,
    /// JSON owned by the mutable module (columns, key, indexes).
    pub spec: String,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
}

/// Reads and writes `jammi_mutable_tables`.
#[derive(Debug)]
pub struct MutableTableRepo<'a> {
    catalog: &'a Catalog,
}

fn record(row: &AnyRow) -> std::result::Result<MutableTableRecord, sqlx::Error> {
    Ok(MutableTableRecord {
        id: row.try_get("id")?,
        owner: row
            .try_get::<Option<String>, _>("tenant_id")?
            .map(|t| t.parse::<TenantId>().map_err(|e| sqlx::Error::Decode(Box::new(e))))
            .transpose()?,
        name: row.try_get("name")?,
        storage: row.try_get("storage")?,
        spec: row.try_get("spec")?,
        created_at: row.try_get("created_at")?,
    })
}

impl<'a> MutableTableRepo<'a> {
    pub(super) fn new(catalog: &'a Catalog) -> Self {
        MutableTableRepo { catalog }
    }

    /// Every table.
    pub async fn list_all(&self) -> Result<Vec<MutableTableRecord>> {
        let c = self.catalog;
        let rows = sqlx::query("SELECT id, tenant_id, name, storage, spec, created_at FROM jammi_mutable_tables ORDER BY name")
            .fetch_all(c.pool())
            .await
            .map_err(|e| c.error(e))?;
        rows.iter().map(record).collect::<std::result::Result<_, _>>().map_err(|e| c.error(e))
    }

    /// Every table, as seen inside the transaction open on `conn`.
    pub async fn list_all_in(&self, conn: &mut AnyConnection) -> Result<Vec<MutableTableRecord>> {
        let c = self.catalog;
        let rows = sqlx::query("SELECT id, tenant_id, name, storage, spec, created_at FROM jammi_mutable_tables ORDER BY name")
            .fetch_all(conn)
            .await
            .map_err(|e| c.error(e))?;
        rows.iter().map(record).collect::<std::result::Result<_, _>>().map_err(|e| c.error(e))
    }

    /// Every owner's table named `name`, as seen inside the transaction open on `conn` (callers pick the one their
    /// scope resolves, see [`crate::tenant::pick_scoped`]).
    pub async fn named_in(&self, conn: &mut AnyConnection, name: &str) -> Result<Vec<MutableTableRecord>> {
        let c = self.catalog;
        let rows = sqlx::query("SELECT id, tenant_id, name, storage, spec, created_at FROM jammi_mutable_tables WHERE name = $1")
            .bind(name)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| c.error(e))?;
        rows.iter().map(record).collect::<std::result::Result<_, _>>().map_err(|e| c.error(e))
    }

    /// Register a table inside the transaction open on `conn` (which also creates its storage table).
    pub async fn insert_in(&self, conn: &mut AnyConnection, record: &MutableTableRecord) -> Result<()> {
        let c = self.catalog;
        sqlx::query("INSERT INTO jammi_mutable_tables (id, tenant_id, name, storage, spec, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&record.id)
            .bind(record.owner.map(|t| t.to_string()))
            .bind(&record.name)
            .bind(&record.storage)
            .bind(&record.spec)
            .bind(now_millis())
            .execute(&mut *conn)
            .await
            .map_err(|e| c.error(e))?;
        bump_change_counter(conn).await.map_err(|e| c.error(e))
    }

    /// Replace a table's spec inside the transaction open on `conn`.
    pub async fn update_spec_in(&self, conn: &mut AnyConnection, id: &str, spec: &str) -> Result<()> {
        let c = self.catalog;
        sqlx::query("UPDATE jammi_mutable_tables SET spec = $1 WHERE id = $2").bind(spec).bind(id).execute(&mut *conn).await.map_err(|e| c.error(e))?;
        bump_change_counter(conn).await.map_err(|e| c.error(e))
    }

    /// Remove a table's row inside the transaction open on `conn`.
    pub async fn delete_in(&self, conn: &mut AnyConnection, id: &str) -> Result<()> {
        let c = self.catalog;
        sqlx::query("DELETE FROM jammi_mutable_tables WHERE id = $1").bind(id).execute(&mut *conn).await.map_err(|e| c.error(e))?;
        bump_change_counter(conn).await.map_err(|e| c.error(e))
    }
}
