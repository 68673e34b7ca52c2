//! [`Progress`]: how long work (imports, index builds, compactions, embedding runs, artifact
//! transfers) reports how far it got. The engine only counts; the CLI draws a bar on a
//! terminal or prints plain lines.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What a phase counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Rows (or vectors, or texts).
    Rows,
    /// Bytes moved.
    Bytes,
}

/// Receives progress. Implementations must be cheap: `set` may be called from several
/// threads, for every batch.
pub trait Progress: Send + Sync {
    /// A phase of `total` rows starts (0: unknown).
    fn start(&self, phase: &str, total: u64);
    /// A phase counting `unit` starts; rows by default.
    fn start_in(&self, phase: &str, total: u64, unit: Unit) {
        let _ = unit;
        self.start(phase, total);
    }
    /// `done` units of the current phase are finished.
    fn set(&self, done: u64);
    /// The current phase is over.
    fn finish(&self);
}

/// Progress that goes nowhere.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64) {}
    fn set(&self, _: u64) {}
    fn finish(&self) {}
}

/// A running total shared by the tasks and threads of one phase (the parts of a transfer
/// in flight), each adding what it finished. The phase ends when the last clone is dropped,
/// however the work ended.
#[derive(Clone)]
pub(crate) struct Meter(Arc<MeterInner>);

struct MeterInner {
    done: AtomicU64,
    progress: Arc<dyn Progress>,
}

impl Drop for MeterInner {
    fn drop(&mut self) {
        self.progress.finish();
    }
}

impl Meter {
    /// Start phase `phase` of `total` units on `progress`.
    pub(crate) fn start(progress: &SharedProgress, phase: &str, total: u64, unit: Unit) -> Self {
        progress.0.start_in(phase, total, unit);
        Meter(Arc::new(MeterInner { done: AtomicU64::new(0), progress: Arc::clone(&progress.0) }))
    }

    pub(crate) fn add(&self, n: u64) {
        let done = self.0.done.fetch_add(n, Ordering::Relaxed) + n;
        self.0.progress.set(done);
    }
}

/// A [`Progress`] held by a long-lived handle (an artifact store), `NoProgress` by default.
#[derive(Clone)]
pub(crate) struct SharedProgress(pub(crate) Arc<dyn Progress>);

impl Default for SharedProgress {
    fn default() -> Self {
        SharedProgress(Arc::new(NoProgress))
    }
}

impl std::fmt::Debug for SharedProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}
