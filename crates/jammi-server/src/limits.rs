//! Limits every protocol applies: request size, concurrent queries, per-query timeout.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::error::{Result, ServerError};

/// Flight SQL prepared statements one principal may hold open at once. They live on the
/// server until closed, so without a bound a token could fill its memory by preparing and
/// never closing.
pub const MAX_PREPARED_STATEMENTS: usize = 256;

/// The limits of one server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body (HTTP) or message (Postgres wire, Flight) accepted, in bytes.
    pub max_request_bytes: usize,
    /// Queries running at once; more wait for a slot.
    pub max_concurrent_queries: usize,
    /// Longest a query waits for a slot before it is refused as busy.
    pub queue_timeout: Duration,
    /// Longest a query may run before it is cancelled.
    pub query_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_request_bytes: 16 << 20, max_concurrent_queries: 64, queue_timeout: Duration::from_secs(10), query_timeout: Duration::from_secs(300) }
    }
}

/// Admits queries under [`Limits`].
#[derive(Debug, Clone)]
pub struct Gate {
    limits: Limits,
    slots: Arc<Semaphore>,
}

impl Gate {
    /// A gate with `limits`.
    pub fn new(limits: Limits) -> Self {
        Gate { limits, slots: Arc::new(Semaphore::new(limits.max_concurrent_queries.max(1))) }
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Run `query` in a slot, cancelling it (by dropping it) when the query timeout passes.
    pub async fn run<T>(&self, query: impl Future<Output = Result<T>>) -> Result<T> {
        let waited = self.limits.queue_timeout;
        let permit = match tokio::time::timeout(waited, self.slots.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(ServerError::ShuttingDown),
            Err(_) => return Err(ServerError::Busy { limit: self.limits.max_concurrent_queries, waited_ms: waited.as_millis() as u64 }),
        };
        let result = tokio::time::timeout(self.limits.query_timeout, query).await;
        drop(permit);
        result.unwrap_or(Err(ServerError::Timeout { limit_ms: self.limits.query_timeout.as_millis() as u64 }))
    }
}
