//! Repository of vector tables (`jammi_vector_tables`).

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{bump_change_counter, now_millis, Catalog};
use crate::error::{Error, Result};
use crate::tenant::{TenantId, TenantScope};

/// Lifecycle of a vector table's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorTableStatus {
    /// Files are being written; the table is invisible to queries.
    Building,
    /// Every file is written and verified.
    Ready,
}

impl VectorTableStatus {
    fn as_str(&self) -> &'static str {
        match self {
            VectorTableStatus::Building => "building",
            VectorTableStatus::Ready => "ready",
        }
    }
}

/// One vector table as stored in the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorTableRecord {
    /// Stable identifier (UUID); also names the table's storage folder.
    pub id: String,
    /// Owning tenant; `None` when shared.
    pub tenant: Option<TenantId>,
    /// SQL name (`vectors.public.NAME`).
    pub name: String,
    /// Lifecycle state.
    pub status: VectorTableStatus,
    /// Storage URL of the table's folder.
    pub location: String,
    /// JSON owned by the vector module.
    pub spec: String,
    /// Bumped on every change of the table's segments (append, delete, compaction).
    pub generation: i64,
    /// Name of the manifest file in force (relative to `location`).
    pub manifest: String,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
    /// Last change, ms since the epoch.
    pub updated_at: i64,
}

const COLUMNS: &str = "id, tenant_id, name, status, location, spec, generation, manifest, created_at, updated_at";

/// Reads and writes `jammi_vector_tables`.
#[derive(Debug)]
pub struct VectorTableRepo<'a> {
    catalog: &'a Catalog,
}

impl<'a> VectorTableRepo<'a> {
    pub(super) fn new(catalog: &'a Catalog) -> Self {
        VectorTableRepo { catalog }
    }

    /// Register a table in `building` state, claiming its name for its owner.
    pub async fn insert_building(&self, record: &VectorTableRecord) -> Result<()> {
        let c = self.catalog;
        let owner = record.tenant.map(|t| t.to_string());
        let mut tx = c.begin_serialized().await?;
        if super::name_taken(&mut tx, "jammi_vector_tables", owner.as_deref(), &record.name).await.map_err(|e| c.error(e))? {
            return Err(Error::InvalidName {
                name: record.name.clone(),
                message: "a vector table with this name already exists; drop it first or pick another name".into(),
            });
        }
        sqlx::query(&format!("INSERT INTO jammi_vector_tables ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"))
            .bind(&record.id)
            .bind(owner)
            .bind(&record.name)
            .bind(VectorTableStatus::Building.as_str())
            .bind(&record.location)
            .bind(&record.spec)
            .bind(record.generation)
            .bind(&record.manifest)
            .bind(record.created_at)
            .bind(record.updated_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| c.error(e))?;
        tx.commit().await.map_err(|e| c.error(e))
    }

    /// Record that the import of `building` table `id` is still alive (a long import calls
    /// this after each segment, so recovery elsewhere measures its grace from the last one).
    /// False when the row is gone or no longer building: the import was presumed dead and
    /// removed, and must stop.
    pub async fn touch_building(&self, id: &str) -> Result<bool> {
        let c = self.catalog;
        // No change-counter bump: a building table is invisible to every reader.
        let mut tx = c.begin_serialized().await?;
        let done = sqlx::query("UPDATE jammi_vector_tables SET updated_at = $1 WHERE id = $2 AND status = $3")
            .bind(now_millis())
            .bind(id)
            .bind(VectorTableStatus::Building.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| c.error(e))?;
        tx.commit().await.map_err(|e| c.error(e))?;
        Ok(done.rows_affected() == 1)
    }

    /// Mark the table ready with its final spec, generation and manifest: the commit point
    /// of an import.
    /// Returns false (and changes nothing) when the row is no longer building: recovery
    /// elsewhere presumed the import dead and removed it.
    pub async fn mark_ready(&self, id: &str, spec: &str, generation: i64, manifest: &str) -> Result<bool> {
        let c = self.catalog;
        let mut tx = c.begin_serialized().await?;
        let done = sqlx::query(
            "UPDATE jammi_vector_tables SET status = $1, spec = $2, generation = $3, manifest = $4, updated_at = $5 WHERE id = $6 AND status = $7",
        )
        .bind(VectorTableStatus::Ready.as_str())
        .bind(spec)
        .bind(generation)
        .bind(manifest)
        .bind(now_millis())
        .bind(id)
        .bind(VectorTableStatus::Building.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| c.error(e))?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        bump_change_counter(&mut tx).await.map_err(|e| c.error(e))?;
        tx.commit().await.map_err(|e| c.error(e))?;
        Ok(true)
    }

    /// Move a ready table from generation `from` to `to` with manifest `manifest`: the commit
    /// point of an append, a delete or a compaction. Returns false (and changes nothing) when
    /// another writer moved the table first or it was dropped.
    pub async fn advance(&self, id: &str, from: i64, to: i64, manifest: &str) -> Result<bool> {
        self.advance_with(id, from, to, manifest, None, None).await
    }

    /// [`advance`](Self::advance), also replacing the spec when `spec` is given and
    /// committing a following table's `progress` in the same transaction: the new vectors
    /// and the offsets they cover are one commit. [`Error::LeaseLost`] (nothing changed)
    /// when the progress's lease no longer holds.
    pub async fn advance_with(&self, id: &str, from: i64, to: i64, manifest: &str, spec: Option<&str>, progress: Option<&super::FollowProgress>) -> Result<bool> {
        let c = self.catalog;
        let mut tx = c.begin_serialized().await?;
        let changed = sqlx::query(
            "UPDATE jammi_vector_tables SET generation = $1, manifest = $2, updated_at = $3, spec = COALESCE($6, spec) WHERE id = $4 AND generation = $5 AND status = 'ready'",
        )
        .bind(to)
        .bind(manifest)
        .bind(now_millis())
        .bind(id)
        .bind(from)
        .bind(spec)
        .execute(&mut *tx)
        .await
        .map_err(|e| c.error(e))?
        .rows_affected();
        if changed == 0 {
            tx.rollback().await.map_err(|e| c.error(e))?;
            return Ok(false);
        }
        if let Some(progress) = progress {
            if !super::commit_progress(&mut tx, progress).await.map_err(|e| c.error(e))? {
                tx.rollback().await.map_err(|e| c.error(e))?;
                return Err(Error::LeaseLost { job: format!("embedding work of vector table {id}") });
            }
        }
        bump_change_counter(&mut tx).await.map_err(|e| c.error(e))?;
        tx.commit().await.map_err(|e| c.error(e))?;
        Ok(true)
    }

    /// Every table of every tenant, in any state.
    pub async fn list_all(&self) -> Result<Vec<VectorTableRecord>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM jammi_vector_tables ORDER BY name, tenant_id"))
            .fetch_all(self.catalog.pool())
            .await
            .map_err(|e| self.catalog.error(e))?;
        rows.iter().map(|r| self.decode(r)).collect()
    }

    /// The table with catalog id `id`, in any state.
    pub async fn get(&self, id: &str) -> Result<Option<VectorTableRecord>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM jammi_vector_tables WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.catalog.pool())
            .await
            .map_err(|e| self.catalog.error(e))?;
        row.as_ref().map(|r| self.decode(r)).transpose()
    }

    /// The ready table `name` as `scope` resolves it (own first, then shared).
    pub async fn get_visible(&self, scope: TenantScope, name: &str) -> Result<Option<VectorTableRecord>> {
        let all = self.list_all().await?;
        Ok(resolve(all, scope, name))
    }

    /// Delete the row `id` (drop, or recovery of an abandoned import).
    pub async fn delete(&self, id: &str) -> Result<()> {
        let c = self.catalog;
        let mut tx = c.begin_serialized().await?;
        sqlx::query("DELETE FROM jammi_vector_tables WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| c.error(e))?;
        bump_change_counter(&mut tx).await.map_err(|e| c.error(e))?;
        tx.commit().await.map_err(|e| c.error(e))
    }

    fn decode(&self, row: &AnyRow) -> Result<VectorTableRecord> {
        let err = |e: sqlx::Error| self.catalog.error(e);
        let tenant: Option<String> = row.try_get("tenant_id").map_err(err)?;
        let status: String = row.try_get("status").map_err(err)?;
        Ok(VectorTableRecord {
            id: row.try_get("id").map_err(err)?,
            tenant: tenant.map(|t| t.parse()).transpose()?,
            name: row.try_get("name").map_err(err)?,
            status: if status == "ready" { VectorTableStatus::Ready } else { VectorTableStatus::Building },
            location: row.try_get("location").map_err(err)?,
            spec: row.try_get("spec").map_err(err)?,
            generation: row.try_get("generation").map_err(err)?,
            manifest: row.try_get("manifest").map_err(err)?,
            created_at: row.try_get("created_at").map_err(err)?,
            updated_at: row.try_get("updated_at").map_err(err)?,
        })
    }
}

/// The ready table named `name` visible in `scope`: the tenant's own first, then shared.
pub(crate) fn resolve(records: Vec<VectorTableRecord>, scope: TenantScope, name: &str) -> Option<VectorTableRecord> {
    let candidates: Vec<VectorTableRecord> =
        records.into_iter().filter(|r| r.name == name && r.status == VectorTableStatus::Ready).collect();
    if let Some(t) = scope.owner() {
        if let Some(own) = candidates.iter().find(|r| r.tenant == Some(t)) {
            return Some(own.clone());
        }
    }
    candidates.into_iter().find(|r| r.tenant.is_none() || scope == TenantScope::Admin)
}
