//! A topic subscription for Python: batches pulled one at a time, each acknowledged when
//! the next is asked for (at least once), unread claims handed back to the group on close.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use arrow_pyarrow::{PyArrowType, ToPyArrow};
use jammi_db::topic::Subscription as EngineSubscription;
use pyo3::prelude::*;
use tokio::sync::Mutex;

use crate::run::run;

/// A live subscription (see `jammi.Topics.subscribe`).
#[pyclass(module = "jammi._jammi", frozen)]
pub(crate) struct Subscription {
    inner: Arc<Mutex<Option<EngineSubscription>>>,
}

impl Subscription {
    pub(crate) fn new(inner: EngineSubscription) -> Self {
        Subscription { inner: Arc::new(Mutex::new(Some(inner))) }
    }
}

#[pymethods]
impl Subscription {
    /// The next batch (a `pyarrow.RecordBatch`), waiting for one; None once the
    /// subscription has ended or been closed.
    fn next_batch(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let inner = Arc::clone(&self.inner);
        let batch = run(py, async move {
            let mut guard = inner.lock().await;
            match guard.as_mut() {
                Some(subscription) => subscription.next().await.transpose(),
                None => Ok(None),
            }
        })?;
        batch.map(|b| Ok(b.to_pyarrow(py)?.unbind())).transpose()
    }

    /// Acknowledge a delivered batch (consumer groups; a no-op otherwise).
    fn ack(&self, py: Python<'_>, batch: PyArrowType<RecordBatch>) -> PyResult<()> {
        let inner = Arc::clone(&self.inner);
        run(py, async move {
            match inner.lock().await.as_ref() {
                Some(subscription) => subscription.ack(&batch.0).await,
                None => Ok(()),
            }
        })
    }

    /// This group member's id, or None outside a consumer group.
    #[getter]
    fn member(&self) -> Option<String> {
        self.inner.try_lock().ok().and_then(|g| g.as_ref().and_then(|s| s.member().map(str::to_string)))
    }

    /// End the subscription; a group member hands what it claimed and did not
    /// acknowledge back to the group first. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let inner = Arc::clone(&self.inner);
        run(py, async move {
            if let Some(subscription) = inner.lock().await.take() {
                subscription.leave().await;
            }
            Ok(())
        })
    }
}
