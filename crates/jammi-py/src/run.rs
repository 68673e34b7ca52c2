//! Running engine calls from Python: on one shared runtime, with the GIL released, and
//! interruptible with Ctrl-C.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;
use std::time::Duration;

use futures::FutureExt;
use pyo3::prelude::*;

use crate::errors::{to_py, InternalError};

/// The process's runtime for engine work (8 MiB stacks: DataFusion plans recursively).
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_stack_size(8 << 20)
            .thread_name("jammi")
            .build()
            .unwrap_or_else(|e| panic!("jammi cannot start its async runtime: {e}"))
    })
}

/// Run `work` on the runtime without the GIL; every 100 ms the calling thread looks for
/// a pending signal (Ctrl-C raises `KeyboardInterrupt` in the main thread) and, if there is
/// one, cancels the work and raises it.
pub(crate) fn run<T: Send + 'static>(py: Python<'_>, work: impl Future<Output = jammi_db::Result<T>> + Send + 'static) -> PyResult<T> {
    run_py(py, async move { work.await.map_err(to_py) })
}

/// [`run`] for work that fails with Python exceptions already.
pub(crate) fn run_py<T: Send + 'static>(py: Python<'_>, work: impl Future<Output = PyResult<T>> + Send + 'static) -> PyResult<T> {
    let mut handle = runtime().spawn(work);
    match until_done_or_signal(py, &mut handle) {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(InternalError::new_err(format!("the engine call failed: {join}"))),
        Err(signal) => {
            handle.abort();
            Err(signal)
        }
    }
}

/// [`run`] polled on the calling thread rather than a runtime worker (its own spawned
/// tasks still use the workers): a short call such as one search then pays no hand-over
/// between threads. Only for work that does not plan SQL, whose recursion wants the
/// workers' 8 MiB stacks — the caller's thread may have a small one.
pub(crate) fn run_here<T: Send + 'static>(py: Python<'_>, work: impl Future<Output = jammi_db::Result<T>> + Send + 'static) -> PyResult<T> {
    // On a signal, returning drops the work, which cancels it.
    match until_done_or_signal(py, &mut std::pin::pin!(AssertUnwindSafe(work).catch_unwind()))? {
        Ok(result) => result.map_err(to_py),
        Err(panic) => {
            let what = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_default();
            Err(InternalError::new_err(format!("the engine call failed: {what}")))
        }
    }
}

/// Poll `work` on the calling thread without the GIL until it finishes, looking for a
/// pending signal every 100 ms; the signal's exception if one comes first.
fn until_done_or_signal<F: Future + Unpin + Send>(py: Python<'_>, work: &mut F) -> PyResult<F::Output>
where
    F::Output: Send,
{
    loop {
        let finished = py.detach(|| runtime().block_on(async { tokio::time::timeout(Duration::from_millis(100), &mut *work).await }));
        match finished {
            Ok(output) => return Ok(output),
            Err(_) => py.check_signals()?,
        }
    }
}
