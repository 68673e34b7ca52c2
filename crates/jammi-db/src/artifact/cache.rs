//! The local, content-addressed cache of fetched bundles.
//!
//! A bundle fetched from object storage lives in `<cache_dir>/<content key>/`, the key being
//! [`Manifest::content_key`]: the same content always lands in the same directory, and
//! different content never does, so an entry can never be stale. Downloads go to a
//! `.tmp-<uuid>` directory beside it and are renamed into place only when every file has
//! been verified; `rename` of a directory is atomic, so a reader sees either no entry or a
//! complete one, and when two fetches race the loser simply discards its copy.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::artifact::manifest::Manifest;
use crate::artifact::prefix::encode_name;
use crate::error::{Error, Result};

/// Staging directories older than this were left by crashed fetches and are removed (a day:
/// far longer than any live download of one file takes).
const STALE_STAGING: Duration = Duration::from_secs(24 * 3600);

const STAGING_PREFIX: &str = ".tmp-";

/// The cache directory.
#[derive(Debug, Clone)]
pub(crate) struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Cache { dir }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The complete entry for `manifest`, if there is one. Entries were verified before
    /// they were renamed into place, so a lookup only checks that every file is still there
    /// with its size (cheap); an entry someone damaged is moved aside and `None` returned,
    /// which makes the caller download it again.
    pub(crate) fn lookup(&self, manifest: &Manifest) -> Result<Option<PathBuf>> {
        let entry = self.dir.join(manifest.content_key());
        if !entry.is_dir() {
            return Ok(None);
        }
        let intact = manifest
            .files
            .iter()
            .all(|f| std::fs::metadata(entry.join(encode_name(&f.name))).is_ok_and(|m| m.is_file() && m.len() == f.size));
        if intact {
            return Ok(Some(entry));
        }
        tracing::warn!(entry = %entry.display(), "damaged artifact cache entry; fetching it again");
        let aside = self.dir.join(format!("{STAGING_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        // Renaming first keeps concurrent readers from seeing a half-removed directory.
        if std::fs::rename(&entry, &aside).is_ok() {
            let _ = std::fs::remove_dir_all(&aside);
        }
        Ok(None)
    }

    /// A new, empty staging directory inside the cache (same file system, so the final
    /// rename is atomic). Sweeps staging directories left by crashed fetches on the way.
    pub(crate) fn staging(&self) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        self.sweep_stale();
        let staging = self.dir.join(format!("{STAGING_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&staging).map_err(|e| Error::io(&staging, e))?;
        Ok(staging)
    }

    /// Move a verified staging directory into place as the entry for `manifest`. Returns the
    /// entry; when another fetch got there first, its (identical) entry is kept and the
    /// staging directory removed.
    pub(crate) fn publish(&self, staging: &Path, manifest: &Manifest) -> Result<PathBuf> {
        let entry = self.dir.join(manifest.content_key());
        match std::fs::rename(staging, &entry) {
            Ok(()) => {
                // Make the rename itself durable.
                if let Ok(dir) = std::fs::File::open(&self.dir) {
                    let _ = dir.sync_all();
                }
                Ok(entry)
            }
            Err(_) if entry.is_dir() => {
                let _ = std::fs::remove_dir_all(staging);
                Ok(entry)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(staging);
                Err(Error::io(&entry, e))
            }
        }
    }

    /// Remove a staging directory after a failed download.
    pub(crate) fn discard(&self, staging: &Path) {
        let _ = std::fs::remove_dir_all(staging);
    }

    fn sweep_stale(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let stale = entry.file_name().to_string_lossy().starts_with(STAGING_PREFIX)
                && entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE_STAGING);
            if stale {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}
