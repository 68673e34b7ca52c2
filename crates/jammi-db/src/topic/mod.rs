//! The trigger broker: topics with an Arrow schema, a durable log in the catalog database,
//! subscriptions that replay then follow live with no gap, consumer groups, change feeds from
//! mutable tables, and `topics.public.NAME` in SQL.
//!
//! Parts: [`spec`] (definitions), [`log`] (appends, offsets, retention, reads), [`broker`]
//! (live wake-ups), [`filter`] (subscription filters), [`subscribe`] (subscriptions and
//! groups), [`sql`] (the `topics` catalog), [`feed`] (change feeds of mutable tables).

pub mod broker;
pub mod feed;
pub mod filter;
pub mod log;
mod recent;
pub mod spec;
pub mod sql;
pub mod subscribe;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use parking_lot::RwLock;

use crate::catalog::{Catalog, TopicRecord};
use crate::error::{Error, Result};
use crate::txn::Writer;
use crate::context::EngineContext;
use crate::tenant::{ScopedNames, TenantId, TenantScope};
use broker::Broker;
pub use spec::{Retention, TopicColumn, TopicSpec, TopicType};
pub use subscribe::{StartAt, SubscribeOptions, Subscription};

/// One topic as the engine holds it.
#[derive(Debug)]
pub struct TopicEntry {
    /// The catalog row (offsets as of the last sync; read the log for current ones).
    pub record: TopicRecord,
    /// Columns, source table, retention.
    pub spec: TopicSpec,
}

/// Every topic, kept in step with the catalog by the session's sync.
#[derive(Debug)]
pub struct TopicState {
    catalog: Catalog,
    topics: RwLock<ScopedNames<Arc<TopicEntry>>>,
    broker: Arc<dyn Broker>,
    writer: Arc<Writer>,
    recent: recent::RecentBatches,
    /// How often a subscriber without a wake-up reads the log anyway.
    poll: std::time::Duration,
}

impl TopicState {
    pub(crate) fn new(catalog: Catalog, broker: Arc<dyn Broker>, writer: Arc<Writer>, poll: std::time::Duration) -> Self {
        TopicState { catalog, topics: RwLock::new(HashMap::new()), broker, writer, recent: Default::default(), poll }
    }

    pub(crate) async fn sync(&self) -> Result<()> {
        let mut topics = HashMap::new();
        for record in self.catalog.topics().list_all().await? {
            let spec: TopicSpec = serde_json::from_str(&record.spec)
                .map_err(|e| Error::Catalog { backend: "catalog".into(), message: format!("topic '{}' has an unreadable definition: {e}", record.name) })?;
            topics.insert((record.tenant, record.name.clone()), Arc::new(TopicEntry { record, spec }));
        }
        *self.topics.write() = topics;
        Ok(())
    }

    /// The topic `name` as `scope` sees it: its own first, then a shared one.
    pub(crate) fn resolve(&self, scope: TenantScope, name: &str) -> Option<Arc<TopicEntry>> {
        crate::tenant::resolve_scoped(&self.topics.read(), scope, name)
    }

    pub(crate) fn visible(&self, scope: TenantScope) -> Vec<Arc<TopicEntry>> {
        let mut out: Vec<Arc<TopicEntry>> = self
            .topics
            .read()
            .values()
            .filter(|e| crate::tenant::visible(scope, e.record.tenant))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        out
    }
}

/// What to create.
#[derive(Debug, Clone)]
pub struct TopicDefinition {
    /// SQL name.
    pub name: String,
    /// Columns (ignored for change feeds, whose columns are fixed).
    pub columns: Vec<TopicColumn>,
    /// `mutable.public.T` to make a change feed of T.
    pub source_table: Option<String>,
    /// Retention.
    pub retention: Retention,
}

/// A consumer group's position, for `topic list`.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupInfo {
    /// Group name.
    pub name: String,
    /// Events committed but not yet handed to any member.
    pub lag: i64,
    /// Events handed out and not yet acknowledged.
    pub pending: i64,
}

/// A topic, for `topic list`.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicInfo {
    /// Name.
    pub name: String,
    /// Owner; `None` when shared.
    pub tenant: Option<TenantId>,
    /// `col:type[:nullable]` list.
    pub schema: String,
    /// Change-feed source.
    pub source_table: Option<String>,
    /// Lowest retained offset.
    pub low_offset: i64,
    /// Next offset to assign.
    pub next_offset: i64,
    /// Consumer groups of the caller's scope.
    pub groups: Vec<GroupInfo>,
}

/// Result of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Offset of the first event.
    pub first_offset: i64,
    /// Events appended.
    pub count: i64,
}

/// Topic operations of one session (`session.topics()`).
#[derive(Debug)]
pub struct Topics<'a> {
    ctx: &'a dyn EngineContext,
    state: &'a Arc<TopicState>,
    /// Mutable tables, which change feeds follow.
    tables: &'a crate::mutable::MutableState,
}

impl<'a> Topics<'a> {
    pub(crate) fn new(ctx: &'a dyn EngineContext, state: &'a Arc<TopicState>, tables: &'a crate::mutable::MutableState) -> Self {
        Topics { ctx, state, tables }
    }

    fn state(&self) -> &Arc<TopicState> {
        self.state
    }

    fn resolve(&self, name: &str) -> Result<Arc<TopicEntry>> {
        let scope = self.ctx.scope();
        self.state().resolve(scope, name).ok_or_else(|| Error::Unknown { kind: crate::error::ObjectKind::Topic, name: name.to_string(), scope: scope.describe() })
    }

    /// Create a topic owned by the session's tenant (shared when unbound).
    pub async fn create(&self, definition: TopicDefinition) -> Result<TopicInfo> {
        check_name(&definition.name)?;
        let columns = match &definition.source_table {
            Some(table) => {
                let name = table.strip_prefix("mutable.public.").unwrap_or(table);
                self.ctx.sync_catalog().await?;
                self.tables.require(self.ctx.scope(), name)?;
                TopicSpec::change_feed_columns()
            }
            None if definition.columns.is_empty() => return Err(Error::invalid("schema", "a topic needs columns (--schema) or a source table (--from-table)")),
            None => definition.columns.clone(),
        };
        for (what, v) in [("max age", definition.retention.max_age_ms), ("max events", definition.retention.max_events)] {
            if v.is_some_and(|v| v <= 0) {
                return Err(Error::invalid("retention", format!("retention {what} must be positive")));
            }
        }
        let source_table = definition.source_table.as_ref().map(|t| if t.starts_with("mutable.") { t.clone() } else { format!("mutable.public.{t}") });
        let spec = TopicSpec { columns, source_table, retention: definition.retention };
        let record = TopicRecord {
            id: uuid::Uuid::new_v4().to_string(),
            tenant: self.ctx.scope().owner(),
            name: definition.name.clone(),
            spec: serde_json::to_string(&spec).map_err(Error::internal)?,
            next_offset: 0,
            low_offset: 0,
        };
        self.ctx.catalog().topics().insert(&record).await?;
        self.ctx.sync_catalog().await?;
        self.info(&TopicEntry { record, spec }).await
    }

    async fn info(&self, entry: &TopicEntry) -> Result<TopicInfo> {
        let (low, next) = log::bounds(self.ctx.catalog().pool(), &entry.record.id).await?;
        let prefix = subscribe::group_prefix(self.ctx.scope());
        let groups = self
            .ctx
            .catalog()
            .topics()
            .groups(&entry.record.id, &prefix)
            .await?
            .into_iter()
            .map(|g| GroupInfo { name: g.name, lag: (next - g.next_offset).max(0), pending: g.pending })
            .collect();
        let schema = entry
            .spec
            .columns
            .iter()
            .map(|c| format!("{}:{}{}", c.name, serde_json::to_value(c.ty).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(), if c.nullable { ":nullable" } else { "" }))
            .collect::<Vec<_>>()
            .join(",");
        Ok(TopicInfo { name: entry.record.name.clone(), tenant: entry.record.tenant, schema, source_table: entry.spec.source_table.clone(), low_offset: low, next_offset: next, groups })
    }

    /// Every topic the session's scope sees, with offsets and its groups' lag.
    pub async fn list(&self) -> Result<Vec<TopicInfo>> {
        self.ctx.sync_catalog().await?;
        let mut out = Vec::new();
        for entry in self.state().visible(self.ctx.scope()) {
            out.push(self.info(&entry).await?);
        }
        Ok(out)
    }

    /// Drop a topic with its events and groups (owner or admin only).
    pub async fn drop(&self, name: &str) -> Result<()> {
        self.ctx.sync_catalog().await?;
        let entry = self.resolve(name)?;
        self.check_owner(&entry)?;
        self.ctx.catalog().topics().delete(&entry.record.id).await?;
        self.state().recent.forget(&entry.record.id);
        self.ctx.sync_catalog().await
    }

    fn check_owner(&self, entry: &TopicEntry) -> Result<()> {
        // Engine topics (`jammi.…`, a name no user topic can have) are written by the engine
        // alone: nobody publishes forged audit events to them, or drops them.
        if entry.record.name.starts_with("jammi.") {
            return Err(Error::PermissionDenied {
                message: format!("topic '{}' is written by the engine (see docs/audit.md); subscribe to it, or read it with SQL", entry.record.name),
            });
        }
        let scope = self.ctx.scope();
        // A tenant changes only its own topics; shared ones take events from every scope
        // (each event stamped with its writer's tenant), so only another tenant's are refused.
        match entry.record.tenant {
            Some(owner) if !crate::tenant::may_change(scope, Some(owner)) => Err(Error::PermissionDenied {
                message: format!("topic '{}' belongs to another tenant; only its owner may publish to or drop it", entry.record.name),
            }),
            _ => Ok(()),
        }
    }

    /// Publish `batch`: all its rows or none, offsets assigned at commit. Columns are
    /// matched by name and converted to the topic's types; a mismatch rejects the batch.
    pub async fn publish(&self, name: &str, batch: &RecordBatch) -> Result<Published> {
        let entry = self.resolve_for_publish(name).await?;
        match self.publish_to(&entry, batch).await {
            // Another process dropped (and maybe re-created) the topic since this process
            // last looked: look again and publish to what the name means now.
            Err(Error::TopicGone) => {
                self.ctx.sync_catalog().await?;
                let entry = self.resolve(name)?;
                self.publish_to(&entry, batch).await.map_err(gone_to_query)
            }
            other => other,
        }
    }

    /// Topics never change once created, so a known topic is published to without first
    /// asking the catalog what changed (one query less on the hot path); an unknown name
    /// syncs first, and a topic dropped meanwhile is caught by the append itself.
    async fn resolve_for_publish(&self, name: &str) -> Result<Arc<TopicEntry>> {
        if let Some(entry) = self.state().resolve(self.ctx.scope(), name) {
            return Ok(entry);
        }
        self.ctx.sync_catalog().await?;
        self.resolve(name)
    }

    async fn publish_to(&self, entry: &TopicEntry, batch: &RecordBatch) -> Result<Published> {
        let name = entry.record.name.as_str();
        self.check_owner(entry)?;
        if entry.spec.source_table.is_some() {
            return Err(Error::unsupported(format!("topic '{name}' is the change feed of {}; it is written by that table's changes only", entry.spec.source_table.as_deref().unwrap_or_default())));
        }
        let conformed = conform(&entry.spec, batch, name)?;
        if conformed.num_rows() == 0 {
            let (_, next) = log::bounds(self.ctx.catalog().pool(), &entry.record.id).await?;
            return Ok(Published { first_offset: next, count: 0 });
        }
        let payloads = crate::change::rows_to_json(&conformed)?;
        for p in &payloads {
            crate::security::limits::at_most("topic event size (bytes)", p.len(), crate::security::limits::MAX_EVENT_BYTES)?;
        }
        let count = payloads.len() as i64;
        let tenant = self.ctx.scope().owner().map(|t| t.to_string());
        let txn = self.state().writer.begin().await?;
        let (id, retention, owner) = (entry.record.id.clone(), entry.spec.retention, tenant.clone());
        let kind = txn.kind();
        let appended = txn.with(move |conn| Box::pin(async move { log::append(conn, kind, &id, &retention, owner, payloads).await })).await;
        let appended = match appended {
            Ok(appended) => appended,
            Err(e) => {
                let _ = txn.rollback().await;
                return Err(e);
            }
        };
        txn.commit().await?;
        let first = appended.first_offset;
        let committed = recent::Committed { first_offset: first, produced_at: appended.produced_at, tenant, payload: conformed };
        self.state().recent.record(&entry.record.id, committed);
        // After the commit: a wake-up only; a lost one delays delivery, never loses events.
        self.state().broker.notify(&entry.record.id, first + count);
        Ok(Published { first_offset: first, count })
    }

    /// Publish JSON: one object, an array of objects, or NDJSON (one object per line).
    pub async fn publish_json(&self, name: &str, text: &str) -> Result<Published> {
        self.ctx.sync_catalog().await?;
        let entry = self.resolve(name)?;
        let trimmed = text.trim();
        let objects: Vec<String> = if trimmed.starts_with('[') {
            let values: Vec<serde_json::Value> = serde_json::from_str(trimmed).map_err(|e| Error::invalid("events", format!("publish to '{name}': not a JSON array of objects: {e}")))?;
            values.iter().map(|v| v.to_string()).collect()
        } else {
            let mut out = Vec::new();
            for (i, line) in trimmed.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                crate::security::limits::at_most(&format!("NDJSON line {} (bytes)", i + 1), line.len(), crate::security::limits::MAX_NDJSON_LINE_BYTES)?;
                let value: serde_json::Value = serde_json::from_str(line).map_err(|e| Error::invalid("events", format!("publish to '{name}': line {}: not JSON: {e}", i + 1)))?;
                out.push(value.to_string());
            }
            out
        };
        for (i, o) in objects.iter().enumerate() {
            if !o.starts_with('{') {
                return Err(Error::invalid("events", format!("publish to '{name}': event {} is not a JSON object", i + 1)));
            }
        }
        let batch = log::decode(&entry.spec.payload_schema(), objects.iter().map(String::as_str)).map_err(|e| Error::invalid("events", format!("publish to '{name}': {e}; nothing was published")))?;
        self.publish_to(&entry, &batch).await
    }

    /// Subscribe; see [`SubscribeOptions`].
    pub async fn subscribe(&self, name: &str, options: SubscribeOptions) -> Result<Subscription> {
        self.ctx.sync_catalog().await?;
        let entry = self.resolve(name)?;
        let scope = self.ctx.scope();
        let ctx = self.ctx.query_context(scope);
        subscribe::subscribe(self.state(), &ctx, entry, scope, options).await
    }

    /// Acknowledge events on behalf of a consumer-group member (its id from
    /// [`Subscription::member`]), for clients that read through one channel and acknowledge
    /// through another (the HTTP server's explicit acknowledgement). Returns how many of
    /// `offsets` the member still held; the rest had gone back to the group (lease expired,
    /// or the member left) and may be delivered again. Group names are per tenant, so a
    /// member id never reaches another tenant's group.
    pub async fn ack(&self, name: &str, group: &str, member: &str, offsets: &[i64]) -> Result<AckOutcome> {
        use crate::security::limits::{at_most, MAX_ACK_OFFSETS};
        at_most("offsets", offsets.len(), MAX_ACK_OFFSETS)?;
        self.ctx.sync_catalog().await?;
        let entry = self.resolve(name)?;
        let mut offsets = offsets.to_vec();
        offsets.sort_unstable();
        offsets.dedup();
        let group_key = format!("{}{group}", subscribe::group_prefix(self.ctx.scope()));
        let catalog = &self.state().catalog;
        let acknowledged = subscribe::ack(catalog, &entry.record.id, &group_key, member, &offsets).await?;
        Ok(AckOutcome { acknowledged, not_held: offsets.len() as u64 - acknowledged })
    }
}

/// What [`Topics::ack`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckOutcome {
    /// Leases removed: these events are done.
    pub acknowledged: u64,
    /// Offsets the member did not hold (never, or no longer): they may be delivered again.
    pub not_held: u64,
}

/// A retried publish that still finds the topic gone: the user-facing message.
fn gone_to_query(e: Error) -> Error {
    match e {
        Error::TopicGone => Error::conflict("the topic was dropped while publishing; nothing was written"),
        other => other,
    }
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName { name: name.into(), message: "topic names use lower-case letters, digits and '_' (not first), at most 63 characters".into() })
    }
}

/// `batch` with the topic's columns, in order and types; the whole batch or an error.
fn conform(spec: &TopicSpec, batch: &RecordBatch, topic: &str) -> Result<RecordBatch> {
    for field in batch.schema().fields() {
        if !spec.columns.iter().any(|c| &c.name == field.name()) {
            return Err(Error::invalid("events", format!(
                "publish to '{topic}': column '{}' is not in the topic; its columns are {}; nothing was published",
                field.name(),
                spec.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(spec.columns.len());
    for c in &spec.columns {
        let target = c.ty.arrow_type();
        let array = match batch.column_by_name(&c.name) {
            Some(a) if a.data_type() == &target => Arc::clone(a),
            Some(a) => cast_with_options(a, &target, &CastOptions { safe: false, ..Default::default() }).map_err(|e| {
                Error::invalid(c.name.clone(), format!("publish to '{topic}': column '{}' ({:?}): {e}; nothing was published", c.name, c.ty))
            })?,
            None => datafusion::arrow::array::new_null_array(&target, batch.num_rows()),
        };
        if !c.nullable && array.null_count() > 0 {
            return Err(Error::invalid(c.name.clone(), format!("publish to '{topic}': column '{}' is required but missing or NULL in some events; nothing was published", c.name)));
        }
        if c.ty == TopicType::Json {
            let text = array.as_any().downcast_ref::<StringArray>();
            for v in text.into_iter().flatten().flatten() {
                serde_json::from_str::<serde_json::Value>(v).map_err(|e| Error::invalid(c.name.clone(), format!("publish to '{topic}': column '{}': '{v}' is not JSON: {e}", c.name)))?;
            }
        }
        columns.push(array);
    }
    RecordBatch::try_new(spec.payload_schema(), columns).map_err(Error::internal)
}

/// `topic list` as a table.
pub fn topics_to_batch(topics: &[TopicInfo]) -> Result<RecordBatch> {
    let text = |f: &dyn Fn(&TopicInfo) -> Option<String>| Arc::new(StringArray::from(topics.iter().map(f).collect::<Vec<_>>())) as ArrayRef;
    let schema = Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("schema", DataType::Utf8, false),
        Field::new("source_table", DataType::Utf8, true),
        Field::new("low_offset", DataType::Int64, false),
        Field::new("next_offset", DataType::Int64, false),
        Field::new("groups", DataType::Utf8, true),
        Field::new("tenant", DataType::Utf8, true),
    ]);
    let groups = |t: &TopicInfo| {
        (!t.groups.is_empty()).then(|| t.groups.iter().map(|g| format!("{} (lag {}, pending {})", g.name, g.lag, g.pending)).collect::<Vec<_>>().join("; "))
    };
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            text(&|t| Some(t.name.clone())),
            text(&|t| Some(t.schema.clone())),
            text(&|t| t.source_table.clone()),
            Arc::new(Int64Array::from(topics.iter().map(|t| t.low_offset).collect::<Vec<_>>())),
            Arc::new(Int64Array::from(topics.iter().map(|t| t.next_offset).collect::<Vec<_>>())),
            text(&groups),
            text(&|t| t.tenant.map(|x| x.to_string())),
        ],
    )
    .map_err(Error::internal)
}
