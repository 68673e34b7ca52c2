//! Startup recovery: imports whose process died are removed, and any missing index is
//! rebuilt from its data file, so no half-written table is ever exposed.

use super::loaded::{read_manifest, repair_segment};
use super::{lock_path, spec, table_files};
use crate::catalog::{now_millis, VectorTableRecord, VectorTableStatus};
use crate::error::Result;
use crate::session::Session;

/// How long an import without a lock file on this host (another host's) may stay
/// `building` before it is presumed dead.
const FOREIGN_IMPORT_GRACE_MS: i64 = 3_600_000;

/// Run recovery over every vector table in the catalog.
pub(crate) async fn recover(session: &Session) -> Result<()> {
    let records = session.catalog().vector_tables().list_all().await?;
    for record in records {
        match record.status {
            VectorTableStatus::Building => {
                let lock = lock_path(session, &record.id);
                let abandoned = match std::fs::OpenOptions::new().write(true).open(&lock) {
                    // The importer holds this lock while alive; the kernel frees it on death.
                    Ok(file) => file.try_lock().is_ok(),
                    Err(_) => now_millis() - record.updated_at > FOREIGN_IMPORT_GRACE_MS,
                };
                if abandoned {
                    tracing::warn!(table = %record.name, "removing an import that did not finish");
                    table_files(session, &record.location)?.delete_all().await?;
                    session.catalog().vector_tables().delete(&record.id).await?;
                    let _ = std::fs::remove_file(&lock);
                }
            }
            VectorTableStatus::Ready => {
                // One damaged table must not keep the whole database from opening: it is
                // reported and left out (searches name it), the others open.
                if let Err(e) = repair_indexes(session, &record).await {
                    tracing::warn!(table = %record.name, error = %e, "vector table could not be checked");
                }
            }
        }
    }
    Ok(())
}

/// Rebuild every missing index file of a ready table from its data files.
async fn repair_indexes(session: &Session, record: &VectorTableRecord) -> Result<()> {
    let spec = spec::parse_spec(&record.spec, &record.name)?;
    let files = table_files(session, &record.location)?;
    let manifest = read_manifest(&files, &record.manifest).await?;
    for segment in &manifest.segments {
        repair_segment(&files, &spec, segment).await?;
    }
    Ok(())
}
