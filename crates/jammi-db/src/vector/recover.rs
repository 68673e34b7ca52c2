//! Startup recovery: imports whose process died are removed with their files, so no
//! half-written table is ever exposed. (Missing indexes of ready tables are rebuilt when a
//! session opens the table: see `build_entry`.)

use super::{lock_path, table_files};
use crate::catalog::{now_millis, VectorTableStatus};
use crate::error::Result;
use crate::context::EngineContext;

/// How long an import without a lock file on this host (another host's) may stay
/// `building` since its last sign of life (registration, then each finished segment) before
/// it is presumed dead. An import removed this way notices at its next segment or at its
/// commit and fails; it never turns ready.
const FOREIGN_IMPORT_GRACE_MS: i64 = 3_600_000;

/// Run recovery over every vector table in the catalog.
pub(crate) async fn recover(ctx: &dyn EngineContext) -> Result<()> {
    let records = ctx.catalog().vector_tables().list_all().await?;
    for record in records {
        match record.status {
            VectorTableStatus::Building => {
                let lock = lock_path(ctx.config(), &record.id);
                let abandoned = match std::fs::OpenOptions::new().write(true).open(&lock) {
                    // The importer holds this lock while alive; the kernel frees it on death.
                    Ok(file) => file.try_lock().is_ok(),
                    Err(_) => now_millis() - record.updated_at > FOREIGN_IMPORT_GRACE_MS,
                };
                if abandoned {
                    tracing::warn!(table = %record.name, "removing an import that did not finish");
                    table_files(ctx, &record.location)?.delete_all().await?;
                    ctx.catalog().vector_tables().delete(&record.id).await?;
                    let _ = std::fs::remove_file(&lock);
                }
            }
            // Ready tables are checked when a session first opens them (`build_entry`),
            // where their manifest is read anyway.
            VectorTableStatus::Ready => {}
        }
    }
    Ok(())
}

