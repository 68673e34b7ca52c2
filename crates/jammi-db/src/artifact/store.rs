//! [`ArtifactStore`]: put, fetch, verify and delete bundles of files under object-store
//! prefixes, and per-job resume checkpoints.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::artifact::cache::Cache;
use crate::artifact::manifest::{validate_name, Manifest, ManifestEntry, MANIFEST_NAME};
use crate::artifact::prefix::{check_owner_reaches, checkpoint_url, child_key, encode_name, owned_segments, prefix_key, PUT_MARKER};
use crate::artifact::transfer::{self, Content, TransferConfig};
use crate::error::{Error, Result};
use crate::progress::{Meter, Progress, SharedProgress, Unit};
use crate::storage::{StorageOptions, StorageRegistry, StorageUrl};
use crate::tenant::TenantId;

/// Default multipart part size: large enough for few requests, small enough that the few
/// parts in flight stay well under 100 MiB.
pub const DEFAULT_PART_SIZE: usize = 8 << 20;

/// S3 refuses parts under 5 MiB (except the last).
const MIN_PART_SIZE: usize = 5 << 20;

const DEFAULT_PARTS_IN_FLIGHT: usize = 4;

/// Files that fit in one part are sent with one `put` each, this many at a time.
const SMALL_FILES_IN_FLIGHT: usize = 8;

/// Files downloaded (or verified in place) at a time.
const FETCHES_IN_FLIGHT: usize = 4;

/// Where a bundle file's content comes from.
#[derive(Debug, Clone)]
pub enum ArtifactSource {
    /// A local file, streamed (never read whole unless it fits in one part).
    Path(PathBuf),
    /// Bytes in memory.
    Bytes(Bytes),
}

/// One file of a bundle to put.
#[derive(Debug, Clone)]
pub struct ArtifactFile {
    /// Name inside the bundle (`/` for sub-folders); see [`validate_name`].
    pub name: String,
    /// The content.
    pub source: ArtifactSource,
}

impl ArtifactFile {
    /// A file read from `path`.
    pub fn from_path(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        ArtifactFile { name: name.into(), source: ArtifactSource::Path(path.into()) }
    }

    /// A file with the given content.
    pub fn from_bytes(name: impl Into<String>, bytes: impl Into<Bytes>) -> Self {
        ArtifactFile { name: name.into(), source: ArtifactSource::Bytes(bytes.into()) }
    }
}

/// A verified bundle on local disk.
#[derive(Debug, Clone)]
pub struct FetchedArtifact {
    /// The prefix it was fetched from.
    pub prefix: StorageUrl,
    /// The local directory holding the files: the prefix itself for `file://`, a cache
    /// entry otherwise.
    pub dir: PathBuf,
    /// The bundle's manifest.
    pub manifest: Manifest,
    /// True when this call transferred the files; false for a cache hit or a `file://`
    /// prefix verified in place.
    pub downloaded: bool,
}

impl FetchedArtifact {
    /// The local path of bundle file `name`. Names with characters outside
    /// `A-Z a-z 0-9 _ - .` are stored percent-encoded, so join through this method rather
    /// than `dir.join(name)`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(encode_name(name))
    }
}

/// Whether a write may replace an existing manifest.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Overwrite {
    /// Artifact prefixes are write-once.
    Refuse,
    /// Checkpoints: the latest put wins.
    Allow,
}

/// Puts, fetches, verifies and deletes artifact bundles. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    inner: Arc<Inner>,
    transfer: TransferConfig,
    /// The tenant this store acts for (`None`: the operator). See [`ArtifactStore::for_owner`].
    owner: Option<TenantId>,
    /// Where puts and fetches report the bytes they moved.
    progress: SharedProgress,
}

#[derive(Debug)]
struct Inner {
    registry: StorageRegistry,
    options: StorageOptions,
    cache: Cache,
    /// Stores by `scheme://bucket/`, built once: building an S3 client per call costs a
    /// credential lookup and a connection pool.
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl ArtifactStore {
    /// A store that reaches object storage through `registry` with `options` (endpoint,
    /// region, credentials; ignored for `file://` and `memory://`) and materialises fetched
    /// bundles under `cache_dir`.
    pub fn new(registry: StorageRegistry, options: StorageOptions, cache_dir: impl Into<PathBuf>) -> Self {
        ArtifactStore {
            inner: Arc::new(Inner { registry, options, cache: Cache::new(cache_dir.into()), stores: Mutex::new(HashMap::new()) }),
            transfer: TransferConfig { part_size: DEFAULT_PART_SIZE, parts_in_flight: DEFAULT_PARTS_IN_FLIGHT },
            owner: None,
            progress: SharedProgress::default(),
        }
    }

    /// The same store acting for tenant `owner`: every prefix it writes starts with the
    /// tenant's own segment (`tenant-<uuid>`, added when the segments do not start with it),
    /// and it refuses to read or delete prefixes under another tenant's segment. `None` (the
    /// operator) writes prefixes as given and reaches every prefix.
    pub fn for_owner(mut self, owner: Option<TenantId>) -> Self {
        self.owner = owner;
        self
    }

    /// The same store with another multipart part size (at least 5 MiB, S3's minimum) and
    /// number of parts uploaded at once per file. Memory per large upload is about
    /// `(parts_in_flight + 6) × part_size` (parts waiting to be read,
    /// hashed and sent).
    pub fn with_transfer(mut self, part_size: usize, parts_in_flight: usize) -> Self {
        self.transfer = TransferConfig { part_size: part_size.max(MIN_PART_SIZE), parts_in_flight: parts_in_flight.max(1) };
        self
    }

    /// The same store reporting the bytes each put, fetch and verification moves to
    /// `progress` (phases `uploading`, `downloading`, `verifying`, in [`Unit::Bytes`]).
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = SharedProgress(progress);
        self
    }

    /// The local cache directory.
    pub fn cache_dir(&self) -> &Path {
        self.inner.cache.dir()
    }

    /// The prefix URL `put_artifact(root, segments, ..)` writes to.
    pub fn prefix_url(&self, root: &StorageUrl, segments: &[&str]) -> Result<StorageUrl> {
        let segments = owned_segments(self.owner, segments);
        crate::artifact::prefix::prefix_url(root, &segments.iter().map(|s| s.as_ref()).collect::<Vec<_>>())
    }

    /// The prefix of a job's resume checkpoint: `{job prefix}/_resume/`.
    pub fn checkpoint_url(&self, root: &StorageUrl, job_segments: &[&str]) -> Result<StorageUrl> {
        let segments = owned_segments(self.owner, job_segments);
        checkpoint_url(root, &segments.iter().map(|s| s.as_ref()).collect::<Vec<_>>())
    }

    /// Write `files` under the prefix built from `segments` (each sanitised) below `root`:
    /// data files first, `manifest.json` last; returns the prefix URL. Refuses a prefix
    /// that already holds a manifest: prefixes are attempt-unique and never overwritten.
    /// A put that fails or crashes leaves no manifest, so the prefix reads as incomplete
    /// and [`delete_artifact_prefix`](Self::delete_artifact_prefix) collects it.
    pub async fn put_artifact(&self, root: &StorageUrl, segments: &[&str], files: &[ArtifactFile]) -> Result<StorageUrl> {
        let prefix = self.prefix_url(root, segments)?;
        self.write_bundle(&prefix, files, Overwrite::Refuse).await?;
        Ok(prefix)
    }

    /// Fetch and verify the bundle at `prefix`: read its manifest, GET exactly the listed
    /// files (never a LIST) and check every size and SHA-256. A missing manifest, a missing
    /// file or a digest mismatch is an error naming the file. `file://` prefixes are
    /// verified and returned in place; others land in the content-addressed cache (a second
    /// fetch of the same content downloads nothing).
    pub async fn fetch_artifact(&self, prefix: &StorageUrl) -> Result<FetchedArtifact> {
        let manifest = self.read_manifest(prefix).await?.ok_or_else(|| missing_manifest(prefix))?;
        self.materialise(prefix, manifest).await
    }

    /// The manifest at `prefix`, or `None` when there is none (nothing was put, or the put
    /// has not finished). A manifest that cannot be read is an error.
    pub async fn read_manifest(&self, prefix: &StorageUrl) -> Result<Option<Manifest>> {
        check_owner_reaches(self.owner, prefix)?;
        let store = self.store(prefix)?;
        let key = child_key(&prefix_key(prefix)?, MANIFEST_NAME)?;
        let bytes = match store.get(&key).await {
            Ok(result) => result.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Manifest::parse(&bytes, &prefix.to_string()).map(Some)
    }

    /// Check every file of the bundle at `prefix` against its manifest without keeping a
    /// copy; returns the manifest, or an error naming the first missing or damaged file.
    pub async fn verify_artifact(&self, prefix: &StorageUrl) -> Result<Manifest> {
        let manifest = self.read_manifest(prefix).await?.ok_or_else(|| missing_manifest(prefix))?;
        if let Some(dir) = prefix.local_path() {
            self.verify_in_place(prefix, &dir, &manifest).await?;
            return Ok(manifest);
        }
        self.fetch_files(prefix, &manifest, None).await?;
        Ok(manifest)
    }

    /// True when `prefix` holds a manifest and every listed file matches it; false when the
    /// manifest is missing or a file is missing or damaged. Other failures (network,
    /// permissions) are errors.
    pub async fn is_complete(&self, prefix: &StorageUrl) -> Result<bool> {
        match self.verify_artifact(prefix).await {
            Ok(_) => Ok(true),
            Err(Error::Artifact { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Delete the bundle at `prefix`, idempotently: the files its manifest lists, then the
    /// manifest last (so an interrupted delete still reads as "incomplete", never as a
    /// different bundle). A prefix without a readable manifest but with the `_put` marker of
    /// an unfinished put — a put that crashed — is collected by listing what sits under it:
    /// the only LIST the store ever makes. A prefix with neither (not an artifact prefix,
    /// or a folder above several) is refused, never emptied.
    pub async fn delete_artifact_prefix(&self, prefix: &StorageUrl) -> Result<()> {
        check_owner_reaches(self.owner, prefix)?;
        let manifest = match self.read_manifest(prefix).await {
            Ok(m) => m,
            Err(Error::Artifact { .. }) => None, // unreadable: collect it like a crashed put
            Err(e) => return Err(e),
        };
        let store = self.store(prefix)?;
        let base = prefix_key(prefix)?;
        let Some(manifest) = manifest else {
            return match prefix.local_path() {
                Some(dir) => {
                    transfer::blocking({
                        let shown = prefix.to_string();
                        move || collect_local(&dir, &shown)
                    })
                    .await
                }
                None => collect_listed(&store, &base, prefix).await,
            };
        };
        let keys = manifest.files.iter().map(|f| child_key(&base, &encode_name(&f.name))).collect::<Result<Vec<_>>>()?;
        delete_keys(&store, keys).await?;
        delete_keys(&store, vec![child_key(&base, PUT_MARKER)?]).await?;
        delete_keys(&store, vec![child_key(&base, MANIFEST_NAME)?]).await?;
        if let Some(dir) = prefix.local_path() {
            prune_empty_dirs(&dir);
        }
        Ok(())
    }

    /// Write a job's resume checkpoint under `{job prefix}/_resume/`, replacing the previous
    /// one (latest wins). The old manifest is removed first and the new one written last, so
    /// a put that dies half-way leaves "no checkpoint" rather than an old manifest over new
    /// bytes; files only the old checkpoint had are removed afterwards.
    pub async fn put_checkpoint(&self, root: &StorageUrl, job_segments: &[&str], files: &[ArtifactFile]) -> Result<StorageUrl> {
        let prefix = self.checkpoint_url(root, job_segments)?;
        check_names(&prefix, files)?;
        let store = self.store(&prefix)?;
        let base = prefix_key(&prefix)?;
        let old = match self.read_manifest(&prefix).await {
            Ok(old) => old,
            Err(Error::Artifact { .. }) => None,
            Err(e) => return Err(e),
        };
        match &old {
            Some(_) => {
                // Marker first: from the moment the old manifest is gone, the prefix must
                // read as an unfinished put that a delete may collect.
                mark_unfinished(&store, &base).await?;
                delete_keys(&store, vec![child_key(&base, MANIFEST_NAME)?]).await?;
            }
            // No (readable) manifest: whatever is there is a crashed put's; collect it.
            None => self.delete_artifact_prefix(&prefix).await?,
        }
        let manifest = self.write_bundle(&prefix, files, Overwrite::Allow).await?;
        if let Some(old) = old {
            let stale = old
                .files
                .iter()
                .filter(|f| manifest.get(&f.name).is_none())
                .map(|f| child_key(&base, &encode_name(&f.name)))
                .collect::<Result<Vec<_>>>()?;
            delete_keys(&store, stale).await?;
        }
        Ok(prefix)
    }

    /// The job's latest checkpoint, verified: `None` when there is none, an error when it is
    /// damaged (a file missing or not matching its digest).
    pub async fn fetch_checkpoint(&self, root: &StorageUrl, job_segments: &[&str]) -> Result<Option<FetchedArtifact>> {
        let prefix = self.checkpoint_url(root, job_segments)?;
        match self.read_manifest(&prefix).await? {
            None => Ok(None),
            // Cache entries are keyed by content, so a newer checkpoint never hits an older
            // entry.
            Some(manifest) => self.materialise(&prefix, manifest).await.map(Some),
        }
    }

    /// Delete the job's checkpoint (idempotent).
    pub async fn delete_checkpoint(&self, root: &StorageUrl, job_segments: &[&str]) -> Result<()> {
        let prefix = self.checkpoint_url(root, job_segments)?;
        self.delete_artifact_prefix(&prefix).await
    }

    fn store(&self, url: &StorageUrl) -> Result<Arc<dyn ObjectStore>> {
        let root = url.store_root().to_string();
        let mut stores = self.inner.stores.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = stores.get(&root) {
            return Ok(Arc::clone(store));
        }
        // One handle serves local and cloud prefixes alike: the options are the cloud's.
        let none = StorageOptions::new();
        let options = if matches!(url.scheme(), "file" | "memory") { &none } else { &self.inner.options };
        let store = self.inner.registry.store_for(url, options)?;
        stores.insert(root, Arc::clone(&store));
        Ok(store)
    }

    async fn write_bundle(&self, prefix: &StorageUrl, files: &[ArtifactFile], overwrite: Overwrite) -> Result<Manifest> {
        check_names(prefix, files)?;
        let store = self.store(prefix)?;
        let base = prefix_key(prefix)?;
        let manifest_key = child_key(&base, MANIFEST_NAME)?;
        if overwrite == Overwrite::Refuse {
            match store.head(&manifest_key).await {
                Ok(_) => return Err(already_complete(prefix)),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Sizes first: a missing source fails before anything is written, and the size
        // decides between one `put` and a multipart upload.
        let config = self.transfer;
        let mut sized = Vec::with_capacity(files.len());
        for file in files {
            let (size, content) = match &file.source {
                ArtifactSource::Bytes(b) => (b.len() as u64, Content::Bytes(b.clone())),
                ArtifactSource::Path(p) => {
                    let meta = tokio::fs::metadata(p).await.map_err(|e| Error::io(p, e))?;
                    (meta.len(), Content::Path(p.clone()))
                }
            };
            sized.push((file.name.clone(), size, content));
        }
        let meter = Meter::start(&self.progress, "uploading", sized.iter().map(|(_, size, _)| size).sum(), Unit::Bytes);
        mark_unfinished(&store, &base).await?;
        let mut small = Vec::new();
        let mut large = Vec::new();
        for (name, size, content) in sized {
            let key = child_key(&base, &encode_name(&name))?;
            let job = (name, key, content);
            if size <= config.part_size as u64 {
                small.push(job);
            } else {
                large.push(job);
            }
        }
        let local_dir = prefix.local_path();
        let upload = |(name, key, content): (String, ObjectPath, Content)| {
            let store = Arc::clone(&store);
            let local_dest = local_dir.as_ref().map(|dir| dir.join(encode_name(&name)));
            let meter = meter.clone();
            async move {
                let (size, sha256) = match (content, local_dest) {
                    // File to file: let the kernel copy.
                    (Content::Path(source), Some(dest)) => transfer::copy_local(source, dest, &meter).await?,
                    (content, _) => transfer::upload(&store, &key, content, config, &meter).await?,
                };
                Ok::<_, Error>(ManifestEntry { name, size, sha256 })
            }
        };
        // Small files go several at a time (latency-bound); large ones one at a time, each
        // already uploading several parts at once, which keeps memory bounded. The two
        // groups run side by side so small files use the CPU and network a large one leaves.
        let smalls = all(small.into_iter().map(upload).collect(), SMALL_FILES_IN_FLIGHT);
        let larges = async {
            let mut entries = Vec::with_capacity(large.len());
            for job in large {
                entries.push(upload(job).await?);
            }
            Ok::<_, Error>(entries)
        };
        let (mut entries, large_entries) = tokio::try_join!(smalls, larges)?;
        drop(meter);
        entries.extend(large_entries);
        let manifest = Manifest::new(entries)?;
        let payload = PutPayload::from(manifest.to_json());
        match overwrite {
            Overwrite::Allow => {
                store.put(&manifest_key, payload).await?;
            }
            Overwrite::Refuse => {
                // Create-only closes the window between the check above and this write on
                // stores that support it; the others were checked above.
                let create = PutOptions { mode: PutMode::Create, ..Default::default() };
                match store.put_opts(&manifest_key, payload.clone(), create).await {
                    Ok(_) => {}
                    Err(object_store::Error::AlreadyExists { .. }) => return Err(already_complete(prefix)),
                    Err(object_store::Error::NotImplemented { .. }) => {
                        store.put(&manifest_key, payload).await?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        // Complete: the marker has done its job. Failing to remove it is harmless (a delete
        // removes it with the bundle), so it does not fail the put.
        if let Err(e) = delete_keys(&store, vec![child_key(&base, PUT_MARKER)?]).await {
            tracing::warn!(prefix = %prefix, error = %e, "could not remove the put marker");
        }
        Ok(manifest)
    }

    async fn materialise(&self, prefix: &StorageUrl, manifest: Manifest) -> Result<FetchedArtifact> {
        if let Some(dir) = prefix.local_path() {
            self.verify_in_place(prefix, &dir, &manifest).await?;
            return Ok(FetchedArtifact { prefix: prefix.clone(), dir, manifest, downloaded: false });
        }
        let cache = &self.inner.cache;
        let lookup_manifest = manifest.clone();
        let lookup_cache = cache.clone();
        if let Some(dir) = transfer::blocking(move || lookup_cache.lookup(&lookup_manifest)).await? {
            return Ok(FetchedArtifact { prefix: prefix.clone(), dir, manifest, downloaded: false });
        }
        let staging_cache = cache.clone();
        let staging = transfer::blocking(move || staging_cache.staging()).await?;
        let downloaded = self.fetch_files(prefix, &manifest, Some(&staging)).await;
        let dir = match downloaded {
            Ok(()) => {
                let (publish_cache, publish_manifest, staged) = (cache.clone(), manifest.clone(), staging.clone());
                transfer::blocking(move || publish_cache.publish(&staged, &publish_manifest)).await?
            }
            Err(e) => {
                cache.discard(&staging);
                return Err(e);
            }
        };
        Ok(FetchedArtifact { prefix: prefix.clone(), dir, manifest, downloaded: true })
    }

    /// GET every file of `manifest` and check it; into `staging` when given, else only
    /// hashed.
    async fn fetch_files(&self, prefix: &StorageUrl, manifest: &Manifest, staging: Option<&Path>) -> Result<()> {
        let store = self.store(prefix)?;
        let base = prefix_key(prefix)?;
        let shown = prefix.to_string();
        let meter = Meter::start(&self.progress, if staging.is_some() { "downloading" } else { "verifying" }, manifest.total_size(), Unit::Bytes);
        let mut jobs = Vec::with_capacity(manifest.files.len());
        for entry in &manifest.files {
            let relative = encode_name(&entry.name);
            let key = child_key(&base, &relative)?;
            let dest = staging.map(|dir| dir.join(&relative));
            let (store, shown, entry, meter) = (Arc::clone(&store), shown.clone(), entry.clone(), meter.clone());
            jobs.push(async move {
                let received = transfer::download(&store, &key, &entry, &shown, dest, &meter, || missing_file(&shown, &entry)).await?;
                transfer::check(&entry, &received, &shown)
            });
        }
        all(jobs, FETCHES_IN_FLIGHT).await?;
        Ok(())
    }

    async fn verify_in_place(&self, prefix: &StorageUrl, dir: &Path, manifest: &Manifest) -> Result<()> {
        let shown = prefix.to_string();
        let meter = Meter::start(&self.progress, "verifying", manifest.total_size(), Unit::Bytes);
        let jobs = manifest.files.iter().map(|entry| {
            let path = dir.join(encode_name(&entry.name));
            let (shown, entry, meter) = (shown.clone(), entry.clone(), meter.clone());
            async move {
                match transfer::hash_local(path, &meter).await? {
                    Some(received) => transfer::check(&entry, &received, &shown),
                    None => Err(missing_file(&shown, &entry)),
                }
            }
        });
        all(jobs.collect(), FETCHES_IN_FLIGHT).await?;
        Ok(())
    }
}

fn check_names(prefix: &StorageUrl, files: &[ArtifactFile]) -> Result<()> {
    let mut seen = BTreeSet::new();
    for file in files {
        validate_name(&file.name)?;
        if !seen.insert(file.name.as_str()) {
            return Err(Error::Artifact {
                prefix: prefix.to_string(),
                message: format!("file '{}' is given twice; give every file of a bundle a distinct name", file.name),
            });
        }
    }
    Ok(())
}

async fn delete_keys(store: &Arc<dyn ObjectStore>, keys: Vec<ObjectPath>) -> Result<()> {
    let jobs = keys.into_iter().map(|key| {
        let store = Arc::clone(store);
        async move {
            match store.delete(&key).await {
                // Already gone: deletes are idempotent.
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(Error::from(e)),
            }
        }
    });
    all(jobs.collect(), SMALL_FILES_IN_FLIGHT).await?;
    Ok(())
}

/// Run owned futures, `limit` at a time, stopping at the first error. The futures are built
/// before the stream (no borrowing closure inside it), which keeps the callers' futures
/// `Send` for `tokio::spawn`.
async fn all<T, F>(jobs: Vec<F>, limit: usize) -> Result<Vec<T>>
where
    F: std::future::Future<Output = Result<T>>,
{
    futures::stream::iter(jobs).buffer_unordered(limit).try_collect().await
}

/// Write the `_put` marker: from now until the manifest, the prefix is an unfinished put.
async fn mark_unfinished(store: &Arc<dyn ObjectStore>, base: &ObjectPath) -> Result<()> {
    store.put(&child_key(base, PUT_MARKER)?, PutPayload::from_static(br#"{"format": 1}"#)).await?;
    Ok(())
}

fn not_an_artifact_prefix(prefix: &str) -> Error {
    Error::Artifact {
        prefix: prefix.to_string(),
        message: format!(
            "holds objects but neither {MANIFEST_NAME} nor the '{PUT_MARKER}' marker of an unfinished put: it is not an artifact prefix (or it is a folder above several); refusing to delete it, name the artifact prefix itself"
        ),
    }
}

/// Collect an unfinished put on an object store: everything listed under the prefix, the
/// marker last so that an interrupted collection can be run again.
async fn collect_listed(store: &Arc<dyn ObjectStore>, base: &ObjectPath, prefix: &StorageUrl) -> Result<()> {
    if base.as_ref().is_empty() {
        return Err(not_an_artifact_prefix(&prefix.to_string()));
    }
    let marker = child_key(base, PUT_MARKER)?;
    let keys: Vec<ObjectPath> = store.list(Some(base)).map_ok(|m| m.location).try_collect().await?;
    if keys.is_empty() {
        return Ok(());
    }
    if !keys.contains(&marker) {
        return Err(not_an_artifact_prefix(&prefix.to_string()));
    }
    delete_keys(store, keys.into_iter().filter(|k| *k != marker).collect()).await?;
    delete_keys(store, vec![marker]).await
}

/// Collect an unfinished put in a local directory. Walking the directory rather than
/// listing through the store also takes the `<name>#<n>` staging files an interrupted local
/// multipart upload leaves, which a store LIST skips.
fn collect_local(dir: &Path, prefix: &str) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries.collect::<std::io::Result<Vec<_>>>().map_err(|e| Error::io(dir, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let marker = dir.join(PUT_MARKER);
    if !entries.is_empty() && !marker.is_file() {
        // Only empty folders (a delete interrupted while pruning): nothing to refuse.
        // Anything else is left exactly as it is.
        if holds_no_files(dir) {
            prune_empty_dirs(dir);
            return Ok(());
        }
        return Err(not_an_artifact_prefix(prefix));
    }
    for entry in entries.iter().filter(|e| e.path() != marker) {
        let path = entry.path();
        let removed =
            if entry.file_type().is_ok_and(|t| t.is_dir()) { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    match std::fs::remove_file(&marker) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(marker, e)),
    }
    prune_empty_dirs(dir);
    Ok(())
}

/// True when `dir` holds nothing but (possibly nested) empty folders.
fn holds_no_files(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .is_ok_and(|entries| entries.flatten().all(|e| e.file_type().is_ok_and(|t| t.is_dir()) && holds_no_files(&e.path())))
}

/// Remove `dir` and the folders under it that are empty (deepest first); returns whether
/// `dir` is gone. A local store leaves folders behind when it deletes their last file.
fn prune_empty_dirs(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            prune_empty_dirs(&entry.path());
        }
    }
    std::fs::remove_dir(dir).is_ok()
}

fn missing_manifest(prefix: &StorageUrl) -> Error {
    Error::Artifact {
        prefix: prefix.to_string(),
        message: format!(
            "{MANIFEST_NAME} is missing: nothing was put here, or the put did not finish; check the prefix, or collect it with `jammi artifact rm {prefix}` and put again"
        ),
    }
}

fn missing_file(prefix: &str, entry: &ManifestEntry) -> Error {
    Error::Artifact {
        prefix: prefix.to_string(),
        message: format!(
            "file '{}' listed in {MANIFEST_NAME} is missing; the prefix is damaged: put the bundle again under a new prefix",
            entry.name
        ),
    }
}

fn already_complete(prefix: &StorageUrl) -> Error {
    Error::Artifact {
        prefix: prefix.to_string(),
        message: format!(
            "{MANIFEST_NAME} already exists: artifact prefixes are write-once; put under a new attempt segment (or delete this prefix first)"
        ),
    }
}
