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
