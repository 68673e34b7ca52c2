//! Subscriptions: replay from an offset, then live events, with no gap and no duplicate
//! across the switch (both read the same log by offset); and consumer groups, whose members
//! share a topic through leases on individual events.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Int64Type, SchemaRef};
use sqlx::{AnyConnection, Row};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::filter::EventFilter;
use super::log::{self, LogEvent};
use super::{TopicEntry, TopicState};
use crate::catalog::{now_millis, Catalog};
use crate::error::{Error, Result};
use crate::tenant::TenantScope;

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// Only events committed after subscribing.
    #[default]
    Live,
    /// The lowest retained offset.
    Beginning,
    /// This offset (an error if retention already removed it).
    Offset(i64),
}

/// How to subscribe.
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// Start position (for a new consumer group: where the group starts).
    pub from: StartAt,
    /// SQL predicate over the topic's columns.
    pub filter: Option<String>,
    /// Share the topic with the other members of this group.
    pub group: Option<String>,
    /// A group member's unacknowledged events go to another member after this long.
    pub ack_timeout: Duration,
    /// Most events per delivered batch.
    pub batch_size: usize,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions { from: StartAt::Live, filter: None, group: None, ack_timeout: Duration::from_secs(30), batch_size: 1000 }
    }
}

/// A running subscription: batches of events (topic columns, `_offset`, `_produced_at`) in
/// offset order. Dropping it stops it.
#[derive(Debug)]
pub struct Subscription {
    schema: SchemaRef,
    rx: mpsc::Receiver<Result<RecordBatch>>,
    task: JoinHandle<()>,
    group: Option<GroupMember>,
    /// Tells a group member's worker to leave (see [`Worker::run_group`]).
    leave: Option<tokio::sync::watch::Sender<bool>>,
}

#[derive(Debug, Clone)]
struct GroupMember {
    catalog: Catalog,
    topic_id: String,
    group_key: String,
    member: String,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        match &self.leave {
            // A group member leaves in its own time: it finishes the claim in flight, then
            // hands its unacknowledged events back to the group.
            Some(leave) => {
                let _ = leave.send(true);
            }
            None => self.task.abort(),
        }
    }
}

impl Subscription {
    /// The schema of delivered batches.
    pub fn schema(&self) -> SchemaRef {
        SchemaRef::clone(&self.schema)
    }

    /// The next batch; `None` only when the subscription ended.
    pub async fn next(&mut self) -> Option<Result<RecordBatch>> {
        self.rx.recv().await
    }

    /// End the subscription and, for a group member, wait until every event it claimed and
    /// did not acknowledge is handed back to the group, so the next member gets them at once
    /// (dropping the subscription does the same in the background — too late for a process
    /// about to exit). Gives up after 5 s; the events then return after the ack timeout.
    pub async fn leave(mut self) {
        let Some(leave) = &self.leave else { return };
        let _ = leave.send(true);
        // Unread batches were claimed too: the worker hands them back with the rest.
        self.rx.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }

    /// This group member's id (`None` outside a consumer group): with it, a client that
    /// talks to the engine through another channel acknowledges what it processed
    /// ([`Topics::ack`](super::Topics::ack)).
    pub fn member(&self) -> Option<&str> {
        self.group.as_ref().map(|g| g.member.as_str())
    }

    /// Acknowledge a delivered batch (consumer groups; a no-op otherwise). Unacknowledged
    /// events are delivered again, to any member, after the ack timeout.
    pub async fn ack(&self, batch: &RecordBatch) -> Result<()> {
        let Some(g) = &self.group else { return Ok(()) };
        let offsets: Vec<i64> = batch
            .column_by_name(super::spec::OFFSET_COLUMN)
            .map(|c| c.as_primitive::<Int64Type>().values().to_vec())
            .unwrap_or_default();
        ack(&g.catalog, &g.topic_id, &g.group_key, &g.member, &offsets).await.map(drop)
    }
}

/// Delete `member`'s leases on `offsets`; returns how many it still held (an event whose
/// lease expired, or that went back to the group when the member left, is not counted).
pub(crate) async fn ack(catalog: &Catalog, topic_id: &str, group_key: &str, member: &str, offsets: &[i64]) -> Result<u64> {
    let mut acknowledged = 0;
    for chunk in offsets.chunks(500) {
        let sql = format!(
            "DELETE FROM jammi_topic_pending WHERE topic_id = $1 AND group_name = $2 AND consumer = $3 AND event_offset IN ({})",
            log::in_list(4, chunk.len())
        );
        let mut query = sqlx::query(&sql).bind(topic_id).bind(group_key).bind(member);
        for o in chunk {
            query = query.bind(*o);
        }
        acknowledged += query.execute(catalog.pool()).await.map_err(|e| catalog.error(e))?.rows_affected();
    }
    Ok(acknowledged)
}

/// Start a subscription to `entry` in `scope`.
pub(crate) async fn subscribe(state: &Arc<TopicState>, ctx: &datafusion::prelude::SessionContext, entry: Arc<TopicEntry>, scope: TenantScope, options: SubscribeOptions) -> Result<Subscription> {
    let schema = entry.spec.event_schema();
    if let Some(f) = &options.filter {
        crate::security::limits::check_filter("filter", f)?;
    }
    let filter = match &options.filter {
        Some(text) if !text.trim().is_empty() => {
            let df_schema = datafusion::common::DFSchema::try_from(SchemaRef::clone(&schema)).map_err(Error::internal)?;
            Some(EventFilter::new(ctx, text, &df_schema)?)
        }
        _ => None,
    };
    let (low, top) = log::bounds(state.catalog.pool(), &entry.record.id).await?;
    let start = match options.from {
        StartAt::Live => top,
        StartAt::Beginning => low,
        StartAt::Offset(n) if n < low => {
            return Err(Error::invalid("from offset", format!(
                "topic '{}': offset {n} is no longer available (retention removed older events); the lowest available offset is {low}",
                entry.record.name
            )))
        }
        StartAt::Offset(n) if n < 0 => return Err(Error::invalid("from offset", format!("offset {n} is negative"))),
        StartAt::Offset(n) => n,
    };
    let (tx, rx) = mpsc::channel(4);
    let (leave_tx, leave) = tokio::sync::watch::channel(false);
    let worker = Worker { state: Arc::clone(state), entry: Arc::clone(&entry), scope, filter, tx, batch_size: options.batch_size.max(1) as i64, leave };
    let (task, group) = match &options.group {
        None => (tokio::spawn(worker.run_plain(start)), None),
        Some(group) => {
            let prefix = group_prefix(scope);
            let member = GroupMember {
                catalog: state.catalog.clone(),
                topic_id: entry.record.id.clone(),
                group_key: format!("{prefix}{group}"),
                member: uuid::Uuid::new_v4().to_string(),
            };
            ensure_group(&state.catalog, &member, scope, start).await?;
            (tokio::spawn(worker.run_group(member.clone(), options.ack_timeout)), Some(member))
        }
    };
    let leave = group.is_some().then_some(leave_tx);
    Ok(Subscription { schema, rx, task, group, leave })
}

/// Group names are per scope: `<tenant or "">:<name>` (`*:` for the admin scope).
pub(crate) fn group_prefix(scope: TenantScope) -> String {
    match scope {
        TenantScope::Tenant(t) => format!("{t}:"),
        TenantScope::Unbound => ":".into(),
        TenantScope::Admin => "*:".into(),
    }
}

async fn ensure_group(catalog: &Catalog, member: &GroupMember, scope: TenantScope, start: i64) -> Result<()> {
    sqlx::query("INSERT INTO jammi_topic_groups (topic_id, tenant_id, group_name, next_offset) VALUES ($1, $2, $3, $4) ON CONFLICT (topic_id, group_name) DO NOTHING")
        .bind(&member.topic_id)
        .bind(scope.owner().map(|t| t.to_string()))
        .bind(&member.group_key)
        .bind(start)
        .execute(catalog.pool())
        .await
        .map_err(|e| catalog.error(e))?;
    Ok(())
}

struct Worker {
    state: Arc<TopicState>,
    entry: Arc<TopicEntry>,
    scope: TenantScope,
    filter: Option<EventFilter>,
    tx: mpsc::Sender<Result<RecordBatch>>,
    batch_size: i64,
    leave: tokio::sync::watch::Receiver<bool>,
}

impl Worker {
    /// `events` (a batch of the event schema) after the filter; `None` when nothing is left.
    fn filtered(&self, events: RecordBatch) -> Result<Option<RecordBatch>> {
        let batch = match &self.filter {
            Some(f) => f.apply(&events)?,
            None => events,
        };
        Ok((batch.num_rows() > 0).then_some(batch))
    }

    /// Stored events after the filter.
    fn deliver(&self, events: &[LogEvent]) -> Result<Option<RecordBatch>> {
        self.filtered(log::events_to_batch(&self.entry.spec, events)?)
    }

    async fn wait(&self, watch: &mut tokio::sync::watch::Receiver<i64>) {
        self.wait_for(watch, self.state.poll).await
    }

    /// Wait as [`Self::wait`] does, but no later than just after `deadline` (ms since the
    /// epoch): when another member's lease runs out — a member on a process that died holds
    /// it, and nothing else would wake the group — its events are claimed at once, not at
    /// the next poll.
    async fn wait_at_most(&self, watch: &mut tokio::sync::watch::Receiver<i64>, deadline: Option<i64>) {
        let until_deadline = deadline.map(|d| Duration::from_millis((d - now_millis()).max(0) as u64 + 5));
        self.wait_for(watch, until_deadline.map_or(self.state.poll, |d| d.min(self.state.poll))).await
    }

    async fn wait_for(&self, watch: &mut tokio::sync::watch::Receiver<i64>, longest: Duration) {
        let mut leave = self.leave.clone();
        tokio::select! {
            _ = watch.changed() => {}
            _ = tokio::time::sleep(longest) => {}
            _ = leave.wait_for(|l| *l) => {}
        }
    }

    fn leaving(&self) -> bool {
        *self.leave.borrow()
    }

    /// Send a batch unless the member is leaving; false when it should stop.
    async fn send_or_leave(&self, batch: RecordBatch) -> bool {
        let mut leave = self.leave.clone();
        tokio::select! {
            sent = self.tx.send(Ok(batch)) => sent.is_ok(),
            _ = leave.wait_for(|l| *l) => false,
        }
    }

    /// The next events from offset `next`: from this process's recent commits when they
    /// hold it, otherwise from the log. Returns the events (none when nothing is visible)
    /// and the offset after them; an empty log read returns `next` unchanged.
    async fn next_events(&self, next: i64) -> Result<(Option<RecordBatch>, i64)> {
        let id = &self.entry.record.id;
        if let Some(committed) = self.state.recent.holding(id, next) {
            let events = committed.events_from(&self.entry.spec, next, self.batch_size as usize)?;
            let after = next + events.num_rows() as i64;
            return Ok((committed.visible_to(self.scope).then_some(events), after));
        }
        let mut conn = self.state.catalog.pool().acquire().await.map_err(|e| self.state.catalog.error(e))?;
        let events = log::read(&mut conn, id, next, self.batch_size, self.scope).await?;
        drop(conn);
        let Some(last) = events.last() else {
            let (low, _) = log::bounds(self.state.catalog.pool(), id).await?;
            if low > next {
                return Err(Error::conflict(format!(
                    "topic '{}': the subscriber fell behind retention at offset {next}; the lowest available offset is {low}",
                    self.entry.record.name
                )));
            }
            return Ok((None, next));
        };
        let after = last.offset + 1;
        Ok((Some(log::events_to_batch(&self.entry.spec, &events)?), after))
    }

    async fn run_plain(self, mut next: i64) {
        let mut watch = self.state.broker.watch(&self.entry.record.id);
        loop {
            let step = self.next_events(next).await.and_then(|(events, after)| {
                let moved = after > next;
                next = after;
                Ok((events.map(|e| self.filtered(e)).transpose()?.flatten(), moved))
            });
            match step {
                Ok((_, false)) => self.wait(&mut watch).await,
                Ok((Some(batch), true)) => {
                    if self.tx.send(Ok(batch)).await.is_err() {
                        return;
                    }
                }
                Ok((None, true)) => {}
                Err(e) => {
                    let _ = self.tx.send(Err(e)).await;
                    return;
                }
            }
        }
    }

    async fn run_group(self, member: GroupMember, ack_timeout: Duration) {
        let mut watch = self.state.broker.watch(&self.entry.record.id);
        while !self.leaving() {
            let claimed = claim(&self.state, &member, self.scope, self.batch_size, ack_timeout).await;
            let events = match claimed {
                Ok(Claimed { offsets, next_deadline }) if offsets.is_empty() => {
                    self.wait_at_most(&mut watch, next_deadline).await;
                    continue;
                }
                Ok(Claimed { offsets, .. }) => log::read_offsets(self.state.catalog.pool(), &member.topic_id, &offsets).await,
                Err(e) => Err(e),
            };
            let result = match events {
                Ok(events) => self.deliver(&events).map(|b| (b, events)),
                Err(e) => Err(e),
            };
            match result {
                Ok((Some(batch), events)) => {
                    // Events the filter dropped are done: acknowledge them now.
                    let kept: std::collections::HashSet<i64> = batch.column(batch.num_columns() - 2).as_primitive::<Int64Type>().values().iter().copied().collect();
                    let dropped: Vec<i64> = events.iter().map(|e| e.offset).filter(|o| !kept.contains(o)).collect();
                    let _ = ack(&member.catalog, &member.topic_id, &member.group_key, &member.member, &dropped).await;
                    if !self.send_or_leave(batch).await {
                        break;
                    }
                }
                Ok((None, events)) => {
                    let all: Vec<i64> = events.iter().map(|e| e.offset).collect();
                    let _ = ack(&member.catalog, &member.topic_id, &member.group_key, &member.member, &all).await;
                }
                Err(e) => {
                    let _ = self.tx.send(Err(e)).await;
                    break;
                }
            }
        }
        // Leaving: what this member holds and has not acknowledged goes back to the group at
        // once, instead of after the ack timeout.
        match release(&member).await {
            // Wake the group's other members, in every process, to claim them now.
            Ok(()) => self.state.broker.notify(&member.topic_id, 0),
            Err(e) => tracing::warn!(group = %member.group_key, error = %e, "could not hand a leaving member's events back; they return after the ack timeout"),
        }
    }
}

async fn release(member: &GroupMember) -> Result<()> {
    sqlx::query("UPDATE jammi_topic_pending SET deadline = 0 WHERE topic_id = $1 AND group_name = $2 AND consumer = $3")
        .bind(&member.topic_id)
        .bind(&member.group_key)
        .bind(&member.member)
        .execute(member.catalog.pool())
        .await
        .map_err(|e| member.catalog.error(e))?;
    Ok(())
}

/// Hand up to `limit` events to `member`: expired leases first (redelivery), then events
/// no member has had. One write transaction, so two members never get the same event.
/// What one claim handed a member.
struct Claimed {
    offsets: Vec<i64>,
    /// When nothing was handed: the earliest lease deadline of an event the group holds
    /// (ms since the epoch), when one does.
    next_deadline: Option<i64>,
}

async fn claim(state: &TopicState, member: &GroupMember, scope: TenantScope, limit: i64, ack_timeout: Duration) -> Result<Claimed> {
    let txn = state.writer.begin().await?;
    let (topic_id, group, consumer) = (member.topic_id.clone(), member.group_key.clone(), member.member.clone());
    let deadline_ms = ack_timeout.as_millis() as i64;
    let result = txn
        .with(move |conn| {
            Box::pin(async move { claim_in(conn, &topic_id, &group, &consumer, scope, limit, deadline_ms).await })
        })
        .await;
    match result {
        Ok(offsets) => {
            txn.commit().await?;
            Ok(offsets)
        }
        Err(e) => {
            let _ = txn.rollback().await;
            Err(e)
        }
    }
}

async fn claim_in(conn: &mut AnyConnection, topic_id: &str, group: &str, consumer: &str, scope: TenantScope, limit: i64, ack_ms: i64) -> Result<Claimed> {
    let err = |e: sqlx::Error| Error::from_sqlx("the consumer-group table", &e);
    // Lock the group's row first: members claiming at once then take turns (Postgres runs
    // this transaction without a database-wide lock).
    sqlx::query("UPDATE jammi_topic_groups SET next_offset = next_offset WHERE topic_id = $1 AND group_name = $2")
        .bind(topic_id)
        .bind(group)
        .execute(&mut *conn)
        .await
        .map_err(err)?;
    let now = now_millis();
    let expired: Vec<i64> = sqlx::query(&format!(
        "SELECT event_offset FROM jammi_topic_pending WHERE topic_id = $1 AND group_name = $2 AND deadline < $3 ORDER BY event_offset LIMIT {limit}"
    ))
    .bind(topic_id)
    .bind(group)
    .bind(now)
    .fetch_all(&mut *conn)
    .await
    .map_err(err)?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<std::result::Result<_, _>>()
    .map_err(err)?;
    for o in &expired {
        sqlx::query("UPDATE jammi_topic_pending SET consumer = $1, deadline = $2, deliveries = deliveries + 1 WHERE topic_id = $3 AND group_name = $4 AND event_offset = $5")
            .bind(consumer)
            .bind(now + ack_ms)
            .bind(topic_id)
            .bind(group)
            .bind(*o)
            .execute(&mut *conn)
            .await
            .map_err(err)?;
    }
    let mut offsets = expired;
    let room = limit - offsets.len() as i64;
    if room > 0 {
        let next: i64 = sqlx::query("SELECT next_offset FROM jammi_topic_groups WHERE topic_id = $1 AND group_name = $2")
            .bind(topic_id)
            .bind(group)
            .fetch_one(&mut *conn)
            .await
            .map_err(err)?
            .try_get(0)
            .map_err(err)?;
        let fresh = log::read(conn, topic_id, next, room, scope).await?;
        if let Some(last) = fresh.last() {
            for e in &fresh {
                sqlx::query(
                    "INSERT INTO jammi_topic_pending (topic_id, tenant_id, group_name, event_offset, consumer, deadline, deliveries) VALUES ($1, $2, $3, $4, $5, $6, 1)",
                )
                .bind(topic_id)
                .bind(scope.owner().map(|t| t.to_string()))
                .bind(group)
                .bind(e.offset)
                .bind(consumer)
                .bind(now + ack_ms)
                .execute(&mut *conn)
                .await
                .map_err(err)?;
            }
            sqlx::query("UPDATE jammi_topic_groups SET next_offset = $1 WHERE topic_id = $2 AND group_name = $3")
                .bind(last.offset + 1)
                .bind(topic_id)
                .bind(group)
                .execute(&mut *conn)
                .await
                .map_err(err)?;
            offsets.extend(fresh.iter().map(|e| e.offset));
        }
    }
    offsets.sort_unstable();
    let next_deadline = if offsets.is_empty() {
        sqlx::query("SELECT min(deadline) FROM jammi_topic_pending WHERE topic_id = $1 AND group_name = $2")
            .bind(topic_id)
            .bind(group)
            .fetch_one(&mut *conn)
            .await
            .map_err(err)?
            .try_get::<Option<i64>, _>(0)
            .map_err(err)?
    } else {
        None
    };
    Ok(Claimed { offsets, next_deadline })
}
