//! Repository of topics (`jammi_topics`) and their consumer groups. The events themselves
//! are appended and read by the topic module's log, in the same database.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{bump_change_counter, now_millis, Catalog};
use crate::error::{Error, Result};
use crate::tenant::TenantId;

/// One topic as stored in the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicRecord {
    /// Stable identifier.
    pub id: String,
    /// Owning tenant; `None` when shared.
    pub tenant: Option<TenantId>,
    /// SQL name (`topics.public.NAME`).
    pub name: String,
    /// JSON owned by the topic module (columns, source table, retention).
    pub spec: String,
    /// The next offset to assign.
    pub next_offset: i64,
    /// The lowest offset retention kept.
    pub low_offset: i64,
}

/// One consumer group's position.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRecord {
    /// Group name (as the member's scope sees it).
    pub name: String,
    /// The next offset not yet handed to a member.
    pub next_offset: i64,
    /// Events handed out and not yet acknowledged.
    pub pending: i64,
}

/// Reads and writes `jammi_topics`.
#[derive(Debug)]
pub struct TopicRepo<'a> {
    catalog: &'a Catalog,
}

const COLUMNS: &str = "id, tenant_id, name, spec, next_offset, low_offset";

fn record(row: &AnyRow) -> std::result::Result<TopicRecord, sqlx::Error> {
    Ok(TopicRecord {
        id: row.try_get("id")?,
        tenant: super::tenant_of(row)?,
        name: row.try_get("name")?,
        spec: row.try_get("spec")?,
        next_offset: row.try_get("next_offset")?,
        low_offset: row.try_get("low_offset")?,
    })
}

impl<'a> TopicRepo<'a> {
    pub(super) fn new(catalog: &'a Catalog) -> Self {
        TopicRepo { catalog }
    }

    /// Every topic of every tenant.
    pub async fn list_all(&self) -> Result<Vec<TopicRecord>> {
        let c = self.catalog;
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM jammi_topics ORDER BY name"))
            .fetch_all(c.pool())
            .await
            .map_err(|e| c.error(e))?;
        rows.iter().map(record).collect::<std::result::Result<_, _>>().map_err(|e| c.error(e))
    }

    /// One topic by id, with its current offsets.
    pub async fn get(&self, id: &str) -> Result<Option<TopicRecord>> {
        let c = self.catalog;
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM jammi_topics WHERE id = $1"))
            .bind(id)
            .fetch_optional(c.pool())
            .await
            .map_err(|e| c.error(e))?;
        row.as_ref().map(record).transpose().map_err(|e| c.error(e))
    }

    /// Register a topic, claiming its name for its owner.
    pub async fn insert(&self, record: &TopicRecord) -> Result<()> {
        let c = self.catalog;
        let owner = record.tenant.map(|t| t.to_string());
        let mut tx = c.begin_serialized().await?;
        if super::name_taken(&mut tx, "jammi_topics", owner.as_deref(), &record.name).await.map_err(|e| c.error(e))? {
            return Err(Error::InvalidName { name: record.name.clone(), message: "a topic with this name already exists; drop it first or pick another name".into() });
        }
        sqlx::query("INSERT INTO jammi_topics (id, tenant_id, name, spec, next_offset, low_offset, created_at) VALUES ($1, $2, $3, $4, 0, 0, $5)")
            .bind(&record.id)
            .bind(owner)
            .bind(&record.name)
            .bind(&record.spec)
            .bind(now_millis())
            .execute(&mut *tx)
            .await
            .map_err(|e| c.error(e))?;
        bump_change_counter(&mut tx).await.map_err(|e| c.error(e))?;
        tx.commit().await.map_err(|e| c.error(e))
    }

    /// Remove a topic with its events and groups, in one transaction.
    pub async fn delete(&self, id: &str) -> Result<()> {
        let c = self.catalog;
        let mut tx = c.begin_serialized().await?;
        for table in ["jammi_topic_pending", "jammi_topic_groups", "jammi_topic_events"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE topic_id = $1")).bind(id).execute(&mut *tx).await.map_err(|e| c.error(e))?;
        }
        sqlx::query("DELETE FROM jammi_topics WHERE id = $1").bind(id).execute(&mut *tx).await.map_err(|e| c.error(e))?;
        bump_change_counter(&mut tx).await.map_err(|e| c.error(e))?;
        tx.commit().await.map_err(|e| c.error(e))
    }

    /// The consumer groups of a topic whose names start with `prefix` (a scope's groups).
    pub async fn groups(&self, id: &str, prefix: &str) -> Result<Vec<GroupRecord>> {
        let c = self.catalog;
        let rows = sqlx::query(
            "SELECT g.group_name AS name, g.next_offset AS next_offset, \
             (SELECT COUNT(*) FROM jammi_topic_pending p WHERE p.topic_id = g.topic_id AND p.group_name = g.group_name) AS pending \
             FROM jammi_topic_groups g WHERE g.topic_id = $1 ORDER BY g.group_name",
        )
        .bind(id)
        .fetch_all(c.pool())
        .await
        .map_err(|e| c.error(e))?;
        let mut out = Vec::new();
        for row in rows {
            let name: String = row.try_get("name").map_err(|e| c.error(e))?;
            if let Some(rest) = name.strip_prefix(prefix) {
                out.push(GroupRecord {
                    name: rest.to_string(),
                    next_offset: row.try_get("next_offset").map_err(|e| c.error(e))?,
                    pending: row.try_get("pending").map_err(|e| c.error(e))?,
                });
            }
        }
        Ok(out)
    }
}
