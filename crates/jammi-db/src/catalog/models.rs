//! Repository of registered models (`jammi_models`) and their aliases
//! (`jammi_model_aliases`). A model's served artifact pointer is written only by the job
//! queue's finalize ([`super::JobRepo`]), never here.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{bump_change_counter, now_millis, Catalog};
use crate::error::{Error, Result};
use crate::tenant::{TenantId, TenantScope};

/// One model version as stored in the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRecord {
    /// Stable identifier.
    pub id: String,
    /// Owning tenant; `None` when shared.
    pub tenant: Option<TenantId>,
    /// Model name.
    pub name: String,
    /// Version label (unique per name and owner).
    pub version: String,
    /// What the model does (`embedding`, `classification`, …).
    pub task: String,
    /// Output dimensions, when meaningful.
    pub dimensions: Option<i64>,
    /// Free-form JSON object.
    pub metadata: String,
    /// The served artifact prefix, set by a job's finalize.
    pub artifact_prefix: Option<String>,
    /// The job whose finalize set the pointer.
    pub job_id: Option<String>,
    /// Registration time, ms since the epoch.
    pub created_at: i64,
    /// Last change (registration or finalize), ms since the epoch.
    pub updated_at: i64,
}

/// One alias: `name@alias` → a version.
#[derive(Debug, Clone, PartialEq)]
pub struct AliasRecord {
    /// Model name.
    pub name: String,
    /// Alias (`champion`).
    pub alias: String,
    /// The model version row it names.
    pub model_id: String,
}

/// Reads and writes `jammi_models` and `jammi_model_aliases`.
#[derive(Debug)]
pub struct ModelRepo<'a> {
    catalog: &'a Catalog,
}

const COLUMNS: &str = "m.id, m.tenant_id, m.name, m.version, m.task, m.dimensions, m.metadata, m.artifact_prefix, m.job_id, m.created_at, m.updated_at";

fn record(row: &AnyRow) -> std::result::Result<ModelRecord, sqlx::Error> {
    Ok(ModelRecord {
        id: row.try_get("id")?,
        tenant: super::tenant_of(row)?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        task: row.try_get("task")?,
        dimensions: row.try_get("dimensions")?,
        metadata: row.try_get("metadata")?,
        artifact_prefix: row.try_get("artifact_prefix")?,
        job_id: row.try_get("job_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl<'a> ModelRepo<'a> {
    pub(super) fn new(catalog: &'a Catalog) -> Self {
        ModelRepo { catalog }
    }

    /// Register a model version for its owner.
    pub async fn insert(&self, record: &ModelRecord) -> Result<()> {
        let c = self.catalog;
        let owner = record.tenant.map(|t| t.to_string());
        let mut tx = c.begin_serialized().await?;
        let taken = sqlx::query("SELECT id FROM jammi_models WHERE COALESCE(tenant_id, '') = $1 AND name = $2 AND version = $3")
            .bind(owner.clone().unwrap_or_default())
            .bind(&record.name)
            .bind(&record.version)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| c.error(e))?
            .is_some();
        if taken {
            return Err(already_registered(&record.name, &record.version));
        }
        sqlx::query(
            "INSERT INTO jammi_models (id, tenant_id, name, version, task, dimensions, metadata, artifact_prefix, job_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $9)",
        )
        .bind(&record.id)
        .bind(owner)
        .bind(&record.name)
        .bind(&record.version)
        .bind(&record.task)
        .bind(record.dimensions)
        .bind(&record.metadata)
        .bind(&record.artifact_prefix)
        .bind(now_millis())
        .execute(&mut *tx)
        .await
        .map_err(|e| c.error(e))?;
        bump_change_counter(&mut tx).await.map_err(|e| c.error(e))?;
        tx.commit().await.map_err(|e| c.error(e))
    }

    /// Every model version `scope` may see, by name then registration.
    pub async fn list(&self, scope: TenantScope) -> Result<Vec<ModelRecord>> {
        let c = self.catalog;
        let (condition, tenant) = super::visible_rows("m", scope, 1);
        let sql = format!("SELECT {COLUMNS} FROM jammi_models m WHERE 1 = 1{condition} ORDER BY m.name, m.created_at, m.version");
        let rows = super::bind_opt(sqlx::query(&sql), tenant).fetch_all(c.pool()).await.map_err(|e| c.error(e))?;
        rows.iter().map(record).collect::<std::result::Result<_, _>>().map_err(|e| c.error(e))
    }

    /// One version of `name` as `scope` resolves it (its own first, then a shared one).
    pub async fn get(&self, scope: TenantScope, name: &str, version: &str) -> Result<Option<ModelRecord>> {
        let c = self.catalog;
        let (condition, tenant) = super::visible_rows("m", scope, 3);
        let sql = format!("SELECT {COLUMNS} FROM jammi_models m WHERE m.name = $1 AND m.version = $2{condition} ORDER BY m.tenant_id IS NULL LIMIT 1");
        let row = super::bind_opt(sqlx::query(&sql).bind(name).bind(version), tenant).fetch_optional(c.pool()).await.map_err(|e| c.error(e))?;
        row.as_ref().map(record).transpose().map_err(|e| c.error(e))
    }

    /// The version `name@alias` names, in one read.
    pub async fn resolve_alias(&self, scope: TenantScope, name: &str, alias: &str) -> Result<Option<ModelRecord>> {
        let c = self.catalog;
        let (condition, tenant) = super::visible_rows("a", scope, 3);
        let sql = format!(
            "SELECT {COLUMNS} FROM jammi_model_aliases a JOIN jammi_models m ON m.id = a.model_id \
             WHERE a.name = $1 AND a.alias = $2{condition} ORDER BY a.tenant_id IS NULL LIMIT 1"
        );
        let row = super::bind_opt(sqlx::query(&sql).bind(name).bind(alias), tenant).fetch_optional(c.pool()).await.map_err(|e| c.error(e))?;
        row.as_ref().map(record).transpose().map_err(|e| c.error(e))
    }

    /// Every alias `scope` may see.
    pub async fn aliases(&self, scope: TenantScope) -> Result<Vec<AliasRecord>> {
        let c = self.catalog;
        let (condition, tenant) = super::visible_rows("a", scope, 1);
        let sql = format!("SELECT a.name, a.alias, a.model_id FROM jammi_model_aliases a WHERE 1 = 1{condition} ORDER BY a.name, a.alias");
        let rows = super::bind_opt(sqlx::query(&sql), tenant).fetch_all(c.pool()).await.map_err(|e| c.error(e))?;
        rows.iter()
            .map(|r| Ok(AliasRecord { name: r.try_get(0)?, alias: r.try_get(1)?, model_id: r.try_get(2)? }))
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(|e| c.error(e))
    }

    /// Point `owner`'s alias `name@alias` at `model_id` (replacing where it pointed).
    pub async fn set_alias(&self, owner: Option<TenantId>, name: &str, alias: &str, model_id: &str) -> Result<()> {
        let c = self.catalog;
        let owner = owner.map(|t| t.to_string());
        let mut tx = c.begin_serialized().await?;
        sqlx::query("DELETE FROM jammi_model_aliases WHERE COALESCE(tenant_id, '') = $1 AND name = $2 AND alias = $3")
            .bind(owner.clone().unwrap_or_default())
            .bind(name)
            .bind(alias)
            .execute(&mut *tx)
            .await
            .map_err(|e| c.error(e))?;
        sqlx::query("INSERT INTO jammi_model_aliases (tenant_id, name, alias, model_id, updated_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(owner)
            .bind(name)
            .bind(alias)
            .bind(model_id)
            .bind(now_millis())
            .execute(&mut *tx)
            .await
            .map_err(|e| c.error(e))?;
        tx.commit().await.map_err(|e| c.error(e))
    }

    /// Remove a model version with its aliases. Refused while a job for it is queued or
    /// running.
    pub async fn delete(&self, record: &ModelRecord) -> Result<()> {
        let c = self.catalog;
        let mut tx = c.begin_serialized().await?;
        let active: i64 = sqlx::query("SELECT COUNT(*) FROM jammi_jobs WHERE model_id = $1 AND state IN ('queued', 'running')")
            .bind(&record.id)
            .fetch_one(&mut *tx)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(|e| c.error(e))?;
        if active > 0 {
            return Err(Error::conflict(format!(
                "model {}:{} has {active} queued or running job(s); let them finish (or fail) before deleting it",
                record.name, record.version
            )));
        }
        sqlx::query("DELETE FROM jammi_model_aliases WHERE model_id = $1").bind(&record.id).execute(&mut *tx).await.map_err(|e| c.error(e))?;
        sqlx::query("DELETE FROM jammi_models WHERE id = $1").bind(&record.id).execute(&mut *tx).await.map_err(|e| c.error(e))?;
        bump_change_counter(&mut tx).await.map_err(|e| c.error(e))?;
        tx.commit().await.map_err(|e| c.error(e))
    }
}

/// A model version that its owner already registered (a conflict with what exists, not a
/// bad name: HTTP 409, `jammi.Conflict`).
pub(crate) fn already_registered(name: &str, version: &str) -> Error {
    Error::AlreadyExists { kind: crate::error::ObjectKind::Model, name: format!("{name}:{version}"), scope: String::new() }
}
