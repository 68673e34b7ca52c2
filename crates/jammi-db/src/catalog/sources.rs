//! Repository of registered sources (`jammi_sources`).

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{bump_change_counter, now_millis, Catalog};
use crate::error::{Error, Result};
use crate::tenant::{TenantId, TenantScope};

/// One registered source as stored in the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    /// Stable identifier (UUID).
    pub id: String,
    /// Owning tenant; `None` for a shared source.
    pub tenant: Option<TenantId>,
    /// The SQL catalog name (`NAME.public.TABLE`).
    pub name: String,
    /// Kind of source (`file` for files and object-store prefixes).
    pub kind: String,
    /// Where the data lives, as the user gave it (normalised to a URL).
    pub url: String,
    /// Data format (`parquet`, `csv`, `json`).
    pub format: Option<String>,
    /// Column holding the owning tenant of each row, if the source is tenant-aware.
    pub tenant_column: Option<String>,
    /// Format and storage options (`K=V`).
    pub options: BTreeMap<String, String>,
    /// What the engine learned about the data at registration (JSON, owned by the source
    /// kind; the catalog stores it opaquely).
    pub table_spec: String,
    /// Registration time, milliseconds since the Unix epoch.
    pub created_at: i64,
}

impl SourceRecord {
    /// A new record with a fresh id and the current time.
    pub fn new(tenant: Option<TenantId>, name: impl Into<String>, kind: impl Into<String>, url: impl Into<String>) -> Self {
        SourceRecord {
            id: uuid::Uuid::new_v4().to_string(),
            tenant,
            name: name.into(),
            kind: kind.into(),
            url: url.into(),
            format: None,
            tenant_column: None,
            options: BTreeMap::new(),
            table_spec: "{}".to_string(),
            created_at: now_millis(),
        }
    }
}

const COLUMNS: &str = "id, tenant_id, name, kind, url, format, tenant_column, options, table_spec, created_at";

/// Reads and writes `jammi_sources`.
#[derive(Debug)]
pub struct SourceRepo<'a> {
    catalog: &'a Catalog,
}

impl<'a> SourceRepo<'a> {
    pub(super) fn new(catalog: &'a Catalog) -> Self {
        SourceRepo { catalog }
    }

    /// Replace what the engine learned about a source's data (a refresh of a database
    /// source). Other engines pick it up through the change counter.
    pub async fn update_spec(&self, id: &str, table_spec: &str) -> Result<()> {
        let c = self.catalog;
        let mut tx = c.begin_serialized().await?;
        sqlx::query("UPDATE jammi_sources SET table_spec = $1 WHERE id = $2").bind(table_spec).bind(id).execute(&mut *tx).await.map_err(|e| c.error(e))?;
        super::bump_change_counter(&mut tx).await.map_err(|e| c.error(e))?;
        tx.commit().await.map_err(|e| c.error(e))
    }

    /// Register `record`. Fails with [`Error::DuplicateSource`] when its owner already has a
    /// source of that name; nothing is written then.
    pub async fn insert(&self, record: &SourceRecord) -> Result<()> {
        let c = self.catalog;
        let scope_text = match record.tenant {
            Some(t) => format!(" for tenant {t}"),
            None => String::new(),
        };
        let tenant = record.tenant.map(|t| t.to_string());
        let mut tx = c.begin_serialized().await?;
        if super::name_taken(&mut tx, "jammi_sources", tenant.as_deref(), &record.name).await.map_err(|e| c.error(e))? {
            return Err(Error::AlreadyExists { kind: crate::error::ObjectKind::Source, name: record.name.clone(), scope: scope_text });
        }
        let options = serde_json::to_string(&record.options).map_err(Error::internal)?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO jammi_sources ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&record.id)
        .bind(tenant)
        .bind(&record.name)
        .bind(&record.kind)
        .bind(&record.url)
        .bind(record.format.clone())
        .bind(record.tenant_column.clone())
        .bind(options)
        .bind(&record.table_spec)
        .bind(record.created_at)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            // The unique index is the backstop if a backend ever lets two writers through.
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                return Err(Error::AlreadyExists { kind: crate::error::ObjectKind::Source, name: record.name.clone(), scope: scope_text });
            }
            Err(e) => return Err(c.error(e)),
        }
        bump_change_counter(&mut tx).await.map_err(|e| c.error(e))?;
        tx.commit().await.map_err(|e| c.error(e))
    }

    /// Every source of every tenant (sessions load all and filter per query).
    pub async fn list_all(&self) -> Result<Vec<SourceRecord>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM jammi_sources ORDER BY name, tenant_id"))
            .fetch_all(self.catalog.pool())
            .await
            .map_err(|e| self.catalog.error(e))?;
        rows.iter().map(|r| self.decode(r)).collect()
    }

    /// The sources visible in `scope`: a tenant's own plus shared ones (a tenant's own
    /// source shadows a shared one of the same name); shared only when unbound; all for admin.
    pub async fn list_visible(&self, scope: TenantScope) -> Result<Vec<SourceRecord>> {
        let all = self.list_all().await?;
        Ok(visible(all, scope))
    }

    /// The source `name` as `scope` resolves it, if any.
    pub async fn get_visible(&self, scope: TenantScope, name: &str) -> Result<Option<SourceRecord>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM jammi_sources WHERE name = $1"))
            .bind(name)
            .fetch_all(self.catalog.pool())
            .await
            .map_err(|e| self.catalog.error(e))?;
        let records = rows.iter().map(|r| self.decode(r)).collect::<Result<Vec<_>>>()?;
        Ok(visible(records, scope).into_iter().next())
    }

    /// Remove the source `name` owned by `scope`'s owner (a tenant can only remove its own
    /// sources; unbound and admin sessions remove shared ones). Returns the removed record.
    pub async fn remove(&self, scope: TenantScope, name: &str) -> Result<SourceRecord> {
        let c = self.catalog;
        let owner = scope.owner().map(|t| t.to_string()).unwrap_or_default();
        let mut tx = c.begin_serialized().await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM jammi_sources WHERE COALESCE(tenant_id, '') = $1 AND name = $2"
        ))
        .bind(&owner)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| c.error(e))?;
        let Some(row) = row else {
            // Say why when the name exists but is not the caller's to remove.
            let shared_exists = matches!(scope, TenantScope::Tenant(_))
                && sqlx::query("SELECT id FROM jammi_sources WHERE tenant_id IS NULL AND name = $1")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| c.error(e))?
                    .is_some();
            if shared_exists {
                return Err(Error::PermissionDenied {
                    message: format!("source '{name}' is shared; only an unbound session can remove it"),
                });
            }
            return Err(Error::Unknown { kind: crate::error::ObjectKind::Source, name: name.to_string(), scope: scope.describe() });
        };
        let record = self.decode(&row)?;
        sqlx::query("DELETE FROM jammi_sources WHERE id = $1")
            .bind(&record.id)
            .execute(&mut *tx)
            .await
            .map_err(|e| c.error(e))?;
        bump_change_counter(&mut tx).await.map_err(|e| c.error(e))?;
        tx.commit().await.map_err(|e| c.error(e))?;
        Ok(record)
    }

    fn decode(&self, row: &AnyRow) -> Result<SourceRecord> {
        let err = |e: sqlx::Error| self.catalog.error(e);
        let tenant: Option<String> = row.try_get("tenant_id").map_err(err)?;
        let tenant = tenant.map(|t| t.parse::<TenantId>()).transpose()?;
        let options: String = row.try_get("options").map_err(err)?;
        let options = serde_json::from_str(&options).map_err(|e| Error::Catalog {
            backend: self.catalog.backend().display_url(),
            message: format!("corrupt options of a source row: {e}"),
        })?;
        Ok(SourceRecord {
            id: row.try_get("id").map_err(err)?,
            tenant,
            name: row.try_get("name").map_err(err)?,
            kind: row.try_get("kind").map_err(err)?,
            url: row.try_get("url").map_err(err)?,
            format: row.try_get("format").map_err(err)?,
            tenant_column: row.try_get("tenant_column").map_err(err)?,
            options,
            table_spec: row.try_get("table_spec").map_err(err)?,
            created_at: row.try_get("created_at").map_err(err)?,
        })
    }
}

/// Filter `records` to what `scope` sees, own before shared, one record per name.
fn visible(records: Vec<SourceRecord>, scope: TenantScope) -> Vec<SourceRecord> {
    let mut by_name: BTreeMap<String, SourceRecord> = BTreeMap::new();
    for record in records {
        let rank = match (scope, record.tenant) {
            (TenantScope::Admin, _) => Some(if record.tenant.is_none() { 0 } else { 1 }),
            (TenantScope::Tenant(t), Some(owner)) if owner == t => Some(0),
            (TenantScope::Tenant(_), None) | (TenantScope::Unbound, None) => Some(1),
            _ => None,
        };
        let Some(rank) = rank else { continue };
        if scope == TenantScope::Admin {
            // Admin sees every row; key by owner too so same-named sources do not collide.
            let key = format!("{}\u{0}{}", record.name, record.tenant.map(|t| t.to_string()).unwrap_or_default());
            by_name.insert(key, record);
            continue;
        }
        let keep = match by_name.get(&record.name) {
            Some(existing) => rank == 0 && existing.tenant.is_none(),
            None => true,
        };
        if keep {
            by_name.insert(record.name.clone(), record);
        }
    }
    by_name.into_values().collect()
}
