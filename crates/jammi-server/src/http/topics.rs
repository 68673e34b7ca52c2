//! `POST /v1/topics/{name}/events` (publish), `GET /v1/topics/{name}/events` (subscribe,
//! as server-sent events) and `POST /v1/topics/{name}/ack` (a consumer-group member's
//! explicit acknowledgement).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use jammi_db::topic::{StartAt, SubscribeOptions, Subscription};
use serde::Deserialize;
use tokio::sync::watch;

use super::encode::json_rows;
use super::principal;
use crate::error::{Result, ServerError};
use crate::metrics::Protocol;
use crate::Shared;

/// Publish a JSON object, a JSON array of objects, or NDJSON; answers
/// `{"first_offset": n, "count": m}`.
pub(crate) async fn publish(State(shared): State<Arc<Shared>>, Path(name): Path<String>, headers: HeaderMap, body: String) -> Result<Response> {
    let principal = principal(&shared, &headers).await?;
    let session = shared.session_for(principal);
    let published = shared
        .run_as(principal, Protocol::Http, "publish", async { Ok(session.topics().publish_json(&name, &body).await?) })
        .await?;
    Ok(axum::Json(serde_json::json!({ "first_offset": published.first_offset, "count": published.count })).into_response())
}

/// Query string of a subscription.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubscribeParams {
    from_offset: Option<i64>,
    #[serde(default)]
    from_beginning: bool,
    filter: Option<String>,
    group: Option<String>,
    limit: Option<u64>,
    ack_timeout_seconds: Option<u64>,
    #[serde(default)]
    ack: AckMode,
}

/// When a consumer-group member's events count as done.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AckMode {
    /// Once written to the response (simple; a client that disconnects loses to the group
    /// what sat unread in its connection's buffers).
    #[default]
    Auto,
    /// Only when the client posts `/ack` with the member id sent as the first event;
    /// anything unacknowledged goes back to the group when the member leaves, or after the
    /// ack timeout.
    Explicit,
}

/// How often an idle event stream sends a keep-alive comment.
const SSE_KEEP_ALIVE: Duration = Duration::from_secs(3);

/// Stream the topic's events as server-sent events: `id` is the event's offset, `data`
/// the event as a JSON object. With `ack=auto` (the default) each batch is acknowledged
/// once written to the response; with `ack=explicit` the first event is `member` (the
/// member id to acknowledge with) and nothing is acknowledged until the client says so.
/// Either way a group member that disconnects hands its unacknowledged events back.
pub(crate) async fn subscribe(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(params): Query<SubscribeParams>,
    headers: HeaderMap,
) -> Result<Response> {
    let principal = principal(&shared, &headers).await?;
    if *shared.stopping.borrow() {
        return Err(ServerError::ShuttingDown);
    }
    if params.ack == AckMode::Explicit && params.group.is_none() {
        return Err(ServerError::BadRequest("ack=explicit needs a consumer group (`group=NAME`): only group members acknowledge events".into()));
    }
    let started = Instant::now();
    let from = match (params.from_offset, params.from_beginning) {
        (Some(n), _) => StartAt::Offset(n),
        (None, true) => StartAt::Beginning,
        (None, false) => StartAt::Live,
    };
    let mut options = SubscribeOptions { from, filter: params.filter, group: params.group.clone(), ..Default::default() };
    if let Some(s) = params.ack_timeout_seconds {
        options.ack_timeout = Duration::from_secs(s);
    }
    let session = shared.session_for(principal);
    let subscription = crate::query::scoped(principal, session.topics().subscribe(&name, options)).await;
    shared.metrics.record(Protocol::Http, "subscribe", started.elapsed(), subscription.is_ok());
    let subscription = subscription?;
    let mut queue = VecDeque::new();
    if params.ack == AckMode::Explicit {
        let member = subscription.member().unwrap_or_default();
        queue.push_back(Event::default().event("member").data(serde_json::json!({ "member": member, "group": params.group }).to_string()));
    }
    let state = Feed {
        subscription,
        queue,
        unacked: None,
        auto_ack: params.ack == AckMode::Auto,
        sent: 0,
        limit: params.limit,
        stopping: shared.stopping.clone(),
        done: false,
    };
    let events = futures::stream::unfold(state, |mut feed| async move { feed.next_event().await.map(|e| (Ok::<_, Infallible>(e), feed)) });
    // The server notices a client that went away only when a write to it fails: frequent
    // keep-alive comments bound how long a departed group member keeps its claims.
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(SSE_KEEP_ALIVE)).into_response())
}

/// A subscription turned into events, one at a time.
struct Feed {
    subscription: Subscription,
    queue: VecDeque<Event>,
    /// The batch written last, acknowledged when the next one is wanted (`ack=auto`).
    unacked: Option<RecordBatch>,
    auto_ack: bool,
    sent: u64,
    limit: Option<u64>,
    stopping: watch::Receiver<bool>,
    done: bool,
}

impl Feed {
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(event);
            }
            if let Some(batch) = self.unacked.take() {
                if let Err(e) = self.subscription.ack(&batch).await {
                    return self.fail(e.to_string());
                }
            }
            if self.done || self.limit.is_some_and(|l| self.sent >= l) {
                return None;
            }
            let next = tokio::select! {
                _ = self.stopping.wait_for(|s| *s) => return None,
                next = self.subscription.next() => next,
            };
            match next {
                None => return None,
                Some(Err(e)) => return self.fail(e.to_string()),
                Some(Ok(batch)) => {
                    let batch = match self.limit {
                        Some(l) if self.sent + batch.num_rows() as u64 > l => batch.slice(0, (l - self.sent) as usize),
                        _ => batch,
                    };
                    let rows = match json_rows(&batch) {
                        Ok(rows) => rows,
                        Err(e) => return self.fail(e.to_string()),
                    };
                    let offsets = batch.column_by_name("_offset").and_then(|c| c.as_primitive_opt::<Int64Type>().cloned());
                    for (i, row) in rows.into_iter().enumerate() {
                        let mut event = Event::default().data(row);
                        if let Some(offsets) = offsets.as_ref().filter(|o| o.is_valid(i)) {
                            event = event.id(offsets.value(i).to_string());
                        }
                        self.queue.push_back(event);
                    }
                    self.sent += batch.num_rows() as u64;
                    if self.auto_ack {
                        self.unacked = Some(batch);
                    }
                }
            }
        }
    }

    /// An `error` event, after which the stream ends.
    fn fail(&mut self, message: String) -> Option<Event> {
        self.done = true;
        Some(Event::default().event("error").data(message))
    }
}

/// `{"group": "g", "member": "<id from the member event>", "offsets": [3, 4, 5]}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AckRequest {
    group: String,
    member: String,
    offsets: Vec<i64>,
}

/// Acknowledge events a member of `group` received with `ack=explicit`; answers
/// `{"acknowledged": n, "not_held": m}` — `not_held` counts offsets the member no longer
/// held (lease expired or member gone), which the group may deliver again.
pub(crate) async fn ack(State(shared): State<Arc<Shared>>, Path(name): Path<String>, headers: HeaderMap, body: axum::body::Bytes) -> Result<Response> {
    let principal = principal(&shared, &headers).await?;
    let request: AckRequest = super::sql::parse_body(&body, r#"{"group": "workers", "member": "<id from the member event>", "offsets": [3, 4]}"#)?;
    let session = shared.session_for(principal);
    let outcome = shared
        .run_as(principal, Protocol::Http, "ack", async {
            Ok(session.topics().ack(&name, &request.group, &request.member, &request.offsets).await?)
        })
        .await?;
    Ok(axum::Json(serde_json::json!({ "acknowledged": outcome.acknowledged, "not_held": outcome.not_held })).into_response())
}
