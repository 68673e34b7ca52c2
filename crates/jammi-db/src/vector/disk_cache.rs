//! The local disk cache of vector segment files on a remote storage root.
//!
//! A replica on an S3 root would otherwise read every segment's search vectors and index
//! into memory on each load. With the cache, each file is downloaded once per machine into
//! `<data-dir>/cache/vectors/` and then mapped like a file on a local root. An entry is
//! named by what identifies the remote object — its URL, size, ETag and modification time —
//! so a rewritten object never matches an old entry. Downloads go to a staging file, are
//! checked (size, and SHA-256 where the manifest has one), their SHA-256 is written beside
//! them (`<entry>.sha256`), and they are renamed into place: a reader sees a whole entry or
//! none, and two processes filling the same entry both end with a good copy. Every use of an
//! entry hashes it again against that digest (the cost of reading it once, as a local
//! root's files are checked on open); an entry that fails is downloaded again.
//!
//! Bounded by `[vectors] disk_cache_mb`: after each download the least recently used
//! entries are removed until the cache fits. A removed entry that a loaded table still maps
//! keeps its disk space until the table is dropped from memory (the bound is on what the
//! cache holds, not on mapped pages).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::config::Config;
use crate::error::{Error, Result};

const STAGING_PREFIX: &str = ".tmp-";

/// Staging files older than this were left by crashed downloads.
const STALE_STAGING: Duration = Duration::from_secs(24 * 3600);

/// A size-bounded directory of verified copies of remote files.
#[derive(Debug, Clone)]
pub struct DiskCache {
    dir: PathBuf,
    limit_bytes: u64,
}

impl DiskCache {
    /// The cache `config` asks for (`None` when `disk_cache_mb` is 0).
    pub fn for_config(config: &Config) -> Option<DiskCache> {
        (config.vectors.disk_cache_mb > 0).then(|| DiskCache::new(config.data_dir.join("cache").join("vectors"), config.vectors.disk_cache_mb.saturating_mul(1 << 20)))
    }

    /// A cache in `dir` holding at most `limit_bytes`.
    pub fn new(dir: PathBuf, limit_bytes: u64) -> DiskCache {
        DiskCache { dir, limit_bytes }
    }

    /// The local copy of `path` in `store` (known to users as `url`), downloaded and checked
    /// against `expected_sha` (when given) if the cache has no copy of this version yet.
    pub async fn file(&self, store: &dyn ObjectStore, path: &ObjectPath, url: &str, expected_sha: Option<&str>) -> Result<PathBuf> {
        let meta = store.head(path).await?;
        let identity = format!("{url}\n{}\n{}\n{}", meta.size, meta.e_tag.as_deref().unwrap_or_default(), meta.last_modified.timestamp_millis());
        let file_name = path.filename().unwrap_or("file");
        let entry = self.dir.join(format!("{}-{file_name}", &crate::vector::files::sha256_hex(identity.as_bytes())[..32]));
        if std::fs::metadata(&entry).is_ok_and(|m| m.is_file() && m.len() == meta.size) {
            let checked = entry.clone();
            let intact = tokio::task::spawn_blocking(move || intact(&checked)).await.unwrap_or(false);
            if intact {
                // Recently used: the last to be evicted.
                let _ = std::fs::File::options().append(true).open(&entry).and_then(|f| f.set_modified(SystemTime::now()));
                return Ok(entry);
            }
            tracing::warn!(entry = %entry.display(), "damaged vector cache entry; downloading it again");
        }
        tokio::fs::create_dir_all(&self.dir).await.map_err(|e| Error::io(&self.dir, e))?;
        let staging = self.dir.join(format!("{STAGING_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        let digest = match self.download(store, path, url, &staging, meta.size, expected_sha).await {
            Ok(digest) => digest,
            Err(e) => {
                let _ = tokio::fs::remove_file(&staging).await;
                return Err(e);
            }
        };
        // The digest first: an entry is never in place without it.
        let staged_digest = staging.with_extension("sha256");
        tokio::fs::write(&staged_digest, &digest).await.map_err(|e| Error::io(&staged_digest, e))?;
        tokio::fs::rename(&staged_digest, digest_of(&entry)).await.map_err(|e| Error::io(&entry, e))?;
        tokio::fs::rename(&staging, &entry).await.map_err(|e| Error::io(&entry, e))?;
        let (dir, limit, keep) = (self.dir.clone(), self.limit_bytes, entry.clone());
        let _ = tokio::task::spawn_blocking(move || evict(&dir, limit, &keep)).await;
        Ok(entry)
    }

    /// Download to `staging`; the file's SHA-256 (hex).
    async fn download(&self, store: &dyn ObjectStore, path: &ObjectPath, url: &str, staging: &Path, size: u64, expected_sha: Option<&str>) -> Result<String> {
        let mut out = tokio::fs::File::create(staging).await.map_err(|e| Error::io(staging, e))?;
        let mut stream = store.get(path).await?.into_stream();
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            written += chunk.len() as u64;
            out.write_all(&chunk).await.map_err(|e| Error::io(staging, e))?;
        }
        out.flush().await.map_err(|e| Error::io(staging, e))?;
        if written != size {
            return Err(Error::Storage(format!("{url}: downloaded {written} bytes of {size}")));
        }
        let actual: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        if let Some(expected) = expected_sha.filter(|e| *e != actual) {
            return Err(Error::UnreadableData { location: url.to_string(), format: "vector segment".into(), message: format!("sha256 {actual} does not match the manifest's {expected}") });
        }
        Ok(actual)
    }

    /// Remove an entry a reader found damaged (it is downloaded again next time).
    pub fn discard(&self, entry: &Path) {
        if entry.starts_with(&self.dir) {
            tracing::warn!(entry = %entry.display(), "damaged vector cache entry removed");
            let _ = std::fs::remove_file(entry);
            let _ = std::fs::remove_file(digest_of(entry));
        }
    }
}

fn digest_of(entry: &Path) -> PathBuf {
    let mut name = entry.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// `entry` still hashes to the digest recorded when it was downloaded.
fn intact(entry: &Path) -> bool {
    let Ok(expected) = std::fs::read_to_string(digest_of(entry)) else { return false };
    crate::vector::files::sha256_of_file(entry).is_ok_and(|actual| actual == expected.trim())
}

/// Remove least recently used entries (never `keep`) until the cache holds at most `limit`
/// bytes; remove staging files left by crashed downloads.
fn evict(dir: &Path, limit: u64, keep: &Path) {
    let Ok(read) = std::fs::read_dir(dir) else { return };
    let now = SystemTime::now();
    let mut entries = Vec::new();
    for item in read.flatten() {
        let Ok(meta) = item.metadata() else { continue };
        let modified = meta.modified().unwrap_or(now);
        let name = item.file_name().to_string_lossy().into_owned();
        if name.ends_with(".sha256") && !name.starts_with(STAGING_PREFIX) {
            continue; // goes with its entry
        }
        if name.starts_with(STAGING_PREFIX) {
            if now.duration_since(modified).unwrap_or_default() > STALE_STAGING {
                let _ = std::fs::remove_file(item.path());
            }
            continue;
        }
        if meta.is_file() {
            entries.push((modified, meta.len(), item.path()));
        }
    }
    let mut total: u64 = entries.iter().map(|e| e.1).sum();
    entries.sort();
    for (_, len, path) in entries {
        if total <= limit {
            break;
        }
        if path != keep && std::fs::remove_file(&path).is_ok() {
            let _ = std::fs::remove_file(digest_of(&path));
            total -= len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::PutPayload;

    fn cached_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| !n.ends_with(".sha256")).collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_remote_file_is_downloaded_once_checked_and_the_cache_keeps_to_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store = InMemory::new();
        let cache = DiskCache::new(dir.path().join("c"), 250);
        let (a, b, c) = (ObjectPath::from("t/a.bin"), ObjectPath::from("t/b.bin"), ObjectPath::from("t/c.bin"));
        for path in [&a, &b, &c] {
            store.put(path, PutPayload::from(vec![7u8; 100])).await.unwrap();
        }
        let sha = crate::vector::files::sha256_hex(&[7u8; 100]);
        let first = cache.file(&store, &a, "mem://t/a.bin", Some(&sha)).await.unwrap();
        assert_eq!(std::fs::read(&first).unwrap(), vec![7u8; 100]);
        // The second use reads the local copy: the object could be gone.
        let again = cache.file(&store, &a, "mem://t/a.bin", Some(&sha)).await.unwrap();
        assert_eq!(again, first);
        // A wrong digest leaves nothing behind (no entry, no staging file).
        let err = cache.file(&store, &b, "mem://t/b.bin", Some(&"0".repeat(64))).await.unwrap_err().to_string();
        assert!(err.contains("mem://t/b.bin") && err.contains("sha256"), "{err}");
        assert_eq!(cached_files(&dir.path().join("c")).len(), 1);
        // Three files of 100 bytes in a 250-byte cache: the least recently used goes.
        std::thread::sleep(Duration::from_millis(20));
        cache.file(&store, &b, "mem://t/b.bin", None).await.unwrap();
        std::thread::sleep(Duration::from_millis(20));
        cache.file(&store, &a, "mem://t/a.bin", None).await.unwrap(); // a is used again
        std::thread::sleep(Duration::from_millis(20));
        let newest = cache.file(&store, &c, "mem://t/c.bin", None).await.unwrap();
        let left = cached_files(&dir.path().join("c"));
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left.iter().any(|n| n.ends_with("-a.bin")) && left.iter().any(|n| n.ends_with("-c.bin")), "b was the least recently used: {left:?}");
        assert!(newest.exists());
        // A rewritten object is a new entry: the old copy never answers for it.
        store.put(&a, PutPayload::from(vec![9u8; 100])).await.unwrap();
        let rewritten = cache.file(&store, &a, "mem://t/a.bin", None).await.unwrap();
        assert_ne!(rewritten, first);
        assert_eq!(std::fs::read(&rewritten).unwrap(), vec![9u8; 100]);
        // A damaged entry — even of the same size — is found and fetched again.
        std::fs::write(&rewritten, [1u8; 100]).unwrap();
        let refetched = cache.file(&store, &a, "mem://t/a.bin", None).await.unwrap();
        assert_eq!(std::fs::read(&refetched).unwrap(), vec![9u8; 100]);
        cache.discard(&refetched);
        assert!(!refetched.exists() && !digest_of(&refetched).exists());
    }
}
