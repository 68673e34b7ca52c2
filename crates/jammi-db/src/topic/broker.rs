//! Live fan-out: how subscribers learn that new events committed.
//!
//! The log is the source of truth; a broker only carries wake-ups. A publisher notifies
//! after its commit, and a failed or lost notification costs a subscriber at most one poll
//! interval, never an event: subscribers always read the log from their next offset.

use std::collections::HashMap;
use std::fmt;

use parking_lot::Mutex;
use tokio::sync::watch;

/// Carries "offsets below `next` are committed" from publishers to live subscribers.
pub trait Broker: fmt::Debug + Send + Sync {
    /// Tell subscribers of `topic_id` that offsets below `next` are committed. Never fails
    /// the publish: errors are the broker's to log.
    fn notify(&self, topic_id: &str, next: i64);

    /// A receiver that changes whenever `topic_id` is notified.
    fn watch(&self, topic_id: &str) -> watch::Receiver<i64>;
}

/// Fan-out within one process (subscribers of other processes poll the log).
#[derive(Default)]
pub struct InProcessBroker {
    channels: Mutex<HashMap<String, watch::Sender<i64>>>,
}

impl fmt::Debug for InProcessBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessBroker").field("topics", &self.channels.lock().len()).finish()
    }
}

impl InProcessBroker {
    fn sender(&self, topic_id: &str) -> watch::Sender<i64> {
        self.channels.lock().entry(topic_id.to_string()).or_insert_with(|| watch::channel(0).0).clone()
    }
}

impl Broker for InProcessBroker {
    fn notify(&self, topic_id: &str, next: i64) {
        self.sender(topic_id).send_modify(|v| *v = (*v).max(next));
    }

    fn watch(&self, topic_id: &str) -> watch::Receiver<i64> {
        self.sender(topic_id).subscribe()
    }
}

/// Fan-out through NATS JetStream: a publisher's wake-up reaches subscribers in every
/// process. Wake-ups go to the stream `JAMMI_TOPICS` (subject `jammi.topics.<topic id>`, the
/// latest one per topic kept); each process runs one ordered consumer per watched topic
/// and turns its messages into local wake-ups. The events stay in the catalog's log, so a
/// NATS outage only delays live delivery to the poll interval; it never loses an event.
pub struct JetStreamBroker {
    url: String,
    js: async_nats::jetstream::Context,
    local: InProcessBroker,
    watched: Mutex<std::collections::HashSet<String>>,
}

const STREAM: &str = "JAMMI_TOPICS";

impl fmt::Debug for JetStreamBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamBroker").field("url", &self.url).finish()
    }
}

impl JetStreamBroker {
    /// Connect to the NATS server at `url` and make sure the wake-up stream exists.
    pub async fn connect(url: &str) -> crate::error::Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connection_timeout(std::time::Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| crate::error::Error::config("broker.url", format!("cannot connect to NATS at {url}: {e}")))?;
        let js = async_nats::jetstream::new(client);
        let broker = JetStreamBroker { url: url.to_string(), js, local: InProcessBroker::default(), watched: Mutex::new(Default::default()) };
        tokio::time::timeout(std::time::Duration::from_secs(10), broker.ensure_stream())
            .await
            .map_err(|_| crate::error::Error::config("broker.url", format!("NATS at {url} did not answer within 10 s")))?
            .map_err(|e| crate::error::Error::config("broker.url", format!("NATS at {url}: cannot create the JetStream stream {STREAM}: {e}")))?;
        Ok(broker)
    }

    async fn ensure_stream(&self) -> std::result::Result<async_nats::jetstream::stream::Stream, String> {
        ensure_stream(&self.js).await
    }

    fn subject(topic_id: &str) -> String {
        format!("jammi.topics.{topic_id}")
    }
}

async fn ensure_stream(js: &async_nats::jetstream::Context) -> std::result::Result<async_nats::jetstream::stream::Stream, String> {
    use async_nats::jetstream::stream::{Config, StorageType};
    js.get_or_create_stream(Config {
        name: STREAM.to_string(),
        subjects: vec!["jammi.topics.>".to_string()],
        max_messages_per_subject: 1,
        storage: StorageType::Memory,
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())
}

impl Broker for JetStreamBroker {
    fn notify(&self, topic_id: &str, next: i64) {
        self.local.notify(topic_id, next);
        let (js, subject) = (self.js.clone(), Self::subject(topic_id));
        tokio::spawn(async move {
            let sent = match js.publish(subject, next.to_string().into()).await {
                Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = sent {
                // Subscribers still find the events on their next poll of the log.
                tracing::warn!(error = %e, "JetStream wake-up not sent");
            }
        });
    }

    fn watch(&self, topic_id: &str) -> watch::Receiver<i64> {
        let receiver = self.local.watch(topic_id);
        if self.watched.lock().insert(topic_id.to_string()) {
            let (js, subject, sender) = (self.js.clone(), Self::subject(topic_id), self.local.sender(topic_id));
            tokio::spawn(async move {
                use futures::StreamExt;
                loop {
                    // Ends (and is made again) when the server restarts or the stream is lost.
                    let run = async {
                        let stream = ensure_stream(&js).await?;
                        let consumer = stream
                            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                                filter_subject: subject.clone(),
                                deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::New,
                                ..Default::default()
                            })
                            .await
                            .map_err(|e| e.to_string())?;
                        let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
                        while let Some(message) = messages.next().await {
                            let message = message.map_err(|e| e.to_string())?;
                            let next = std::str::from_utf8(&message.payload).ok().and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
                            sender.send_modify(|v| *v = (*v).max(next));
                        }
                        Ok::<(), String>(())
                    };
                    // The consumer lives as long as the process: one per watched topic.
                    if let Err(e) = run.await {
                        tracing::debug!(error = %e, "JetStream consumer restarting");
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            });
        }
        receiver
    }
}
