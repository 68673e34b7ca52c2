//! Streaming transfers: uploads in parts and downloads to disk, hashing SHA-256 on the fly.
//!
//! Memory stays bounded by the part size: a file is never read whole (unless it fits in one
//! part). An upload reads parts on one blocking thread and hands each, through small
//! queues, to a hashing thread and to the async multipart uploader, so the disk, the hash
//! and the network overlap; a download hands the received bytes to a writing thread and a
//! hashing thread the same way. A local file put under a `file://` prefix is copied by the
//! kernel while another thread hashes it ([`copy_local`]).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::artifact::manifest::{hex, ManifestEntry};
use crate::error::{Error, Result};
use crate::progress::Meter;

/// Part size and upload concurrency.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TransferConfig {
    /// Bytes per multipart part (also the largest file sent with one `put`).
    pub(crate) part_size: usize,
    /// Parts uploaded concurrently per file.
    pub(crate) parts_in_flight: usize,
}

/// Where the content of an upload comes from.
pub(crate) enum Content {
    Path(PathBuf),
    Bytes(Bytes),
}

/// Upload `content` to `key`; returns its size and hex SHA-256.
pub(crate) async fn upload(
    store: &Arc<dyn ObjectStore>,
    key: &ObjectPath,
    content: Content,
    config: TransferConfig,
    meter: &Meter,
) -> Result<(u64, String)> {
    match content {
        Content::Bytes(bytes) => upload_bytes(store, key, bytes, config, meter).await,
        Content::Path(path) => upload_path(store, key, &path, config, meter).await,
    }
}

async fn upload_bytes(store: &Arc<dyn ObjectStore>, key: &ObjectPath, bytes: Bytes, config: TransferConfig, meter: &Meter) -> Result<(u64, String)> {
    let size = bytes.len() as u64;
    let for_hash = bytes.clone();
    let hashing = blocking(move || Ok(hex(&Sha256::digest(&for_hash))));
    if bytes.len() <= config.part_size {
        let (digest, _) = tokio::try_join!(hashing, async { store.put(key, PutPayload::from(bytes)).await.map_err(Error::from) })?;
        meter.add(size);
        return Ok((size, digest));
    }
    let sending = async {
        let mut writer = WriteMultipart::new_with_chunk_size(store.put_multipart(key).await?, config.part_size);
        let mut rest = bytes;
        while !rest.is_empty() {
            let part = rest.split_to(rest.len().min(config.part_size));
            if let Err(e) = writer.wait_for_capacity(config.parts_in_flight).await {
                let _ = writer.abort().await;
                return Err(e.into());
            }
            meter.add(part.len() as u64);
            writer.put(part);
        }
        writer.finish().await?;
        Ok(())
    };
    // Hash and send at once: the content is in memory already.
    let (digest, ()) = tokio::try_join!(hashing, sending)?;
    Ok((size, digest))
}

async fn upload_path(store: &Arc<dyn ObjectStore>, key: &ObjectPath, path: &Path, config: TransferConfig, meter: &Meter) -> Result<(u64, String)> {
    let meta = tokio::fs::metadata(path).await.map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::io(path, std::io::Error::other("not a regular file; artifact bundles hold files only")));
    }
    if meta.len() <= config.part_size as u64 {
        let owned = path.to_path_buf();
        let (bytes, digest) = blocking(move || {
            let bytes = std::fs::read(&owned).map_err(|e| Error::io(&owned, e))?;
            let digest = hex(&Sha256::digest(&bytes));
            Ok((Bytes::from(bytes), digest))
        })
        .await?;
        let size = bytes.len() as u64;
        store.put(key, PutPayload::from(bytes)).await?;
        meter.add(size);
        return Ok((size, digest));
    }

    let mut writer = WriteMultipart::new_with_chunk_size(store.put_multipart(key).await?, config.part_size);
    // Each part goes to the uploader and to a hasher thread. Two parts queued on each side
    // keep the disk, the hash and the network busy at once, without letting a fast disk run
    // ahead of a slow network. SHA-256 runs at about the speed of a local disk, so hashing
    // on the reading thread would halve local throughput.
    let (tx, mut rx) = mpsc::channel::<Bytes>(2);
    let (hash_tx, hasher) = hasher_thread(2, meter.clone());
    let owned = path.to_path_buf();
    let part_size = config.part_size;
    let reader = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut file = std::fs::File::open(&owned).map_err(|e| Error::io(&owned, e))?;
        loop {
            let mut buf = Vec::with_capacity(part_size);
            (&mut file).take(part_size as u64).read_to_end(&mut buf).map_err(|e| Error::io(&owned, e))?;
            if buf.is_empty() {
                break;
            }
            let full = buf.len() == part_size;
            let part = Bytes::from(buf);
            if hash_tx.blocking_send(Arc::new(vec![part.clone()])).is_err() || tx.blocking_send(part).is_err() || !full {
                // The uploader stopped (it reports why), or that was the last part.
                break;
            }
        }
        Ok(())
    });

    while let Some(part) = rx.recv().await {
        if let Err(e) = writer.wait_for_capacity(config.parts_in_flight).await {
            drop(rx);
            let _ = reader.await;
            let _ = writer.abort().await;
            return Err(e.into());
        }
        writer.put(part);
    }
    let read = match reader.await {
        Ok(result) => result,
        Err(e) => Err(Error::Storage(format!("reading {} stopped: {e}", path.display()))),
    };
    let hashed = hasher.await;
    match read.and(hashed) {
        Ok(done) => {
            writer.finish().await?;
            Ok(done)
        }
        Err(e) => {
            let _ = writer.abort().await;
            Err(e)
        }
    }
}

/// Copy a local file into a `file://` prefix; returns its size and hex SHA-256.
///
/// The kernel copies (`copy_file_range`, no trip through user space) while another thread
/// reads the source once more to hash it, so a local put costs about the hash alone instead
/// of read + hash + write. The copy lands under a temporary name and is renamed into place,
/// so a reader never sees a partly written file. Because copy and hash read the source
/// separately, a source changed meanwhile is detected (size or modification time moved)
/// and refused rather than recorded with a digest that does not match the copy.
pub(crate) async fn copy_local(source: PathBuf, dest: PathBuf, meter: &Meter) -> Result<(u64, String)> {
    let before = tokio::fs::metadata(&source).await.map_err(|e| Error::io(&source, e))?;
    if !before.is_file() {
        return Err(Error::io(&source, std::io::Error::other("not a regular file; artifact bundles hold files only")));
    }
    let hashing = hash_local(source.clone(), meter);
    let (from, to) = (source.clone(), dest.clone());
    let copying = blocking(move || {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let staged = staging_name(&to);
        let copied = std::fs::copy(&from, &staged).map_err(|e| Error::io(&from, e));
        match copied.and_then(|n| std::fs::rename(&staged, &to).map(|()| n).map_err(|e| Error::io(&to, e))) {
            Ok(n) => Ok(n),
            Err(e) => {
                let _ = std::fs::remove_file(&staged);
                Err(e)
            }
        }
    });
    let (hashed, copied) = tokio::try_join!(hashing, copying)?;
    let after = tokio::fs::metadata(&source).await.map_err(|e| Error::io(&source, e))?;
    let unchanged = after.len() == before.len() && after.modified().ok() == before.modified().ok();
    match hashed {
        Some((size, digest)) if unchanged && size == copied => Ok((size, digest)),
        _ => Err(Error::io(
            &source,
            std::io::Error::other("the file changed while it was being put; put the bundle again once it is no longer being written"),
        )),
    }
}

/// A sibling of `path` for a copy in progress, unique per process and call.
fn staging_name(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!("#copy-{}-{n}", std::process::id()));
    path.with_file_name(name)
}

/// Chunks handed to the hashing and writing threads together: network chunks are a few KiB,
/// and waking a thread per chunk cost more CPU than the hash.
type Batch = Arc<Vec<Bytes>>;

/// Bytes gathered from the network before a batch is handed on.
const BATCH_BYTES: usize = 1 << 20;

/// A blocking thread hashing the chunks sent to it, in order; it answers with the size and
/// hex SHA-256 once every sender is gone.
fn hasher_thread(queue: usize, meter: Meter) -> (mpsc::Sender<Batch>, impl std::future::Future<Output = Result<Received>>) {
    let (tx, mut rx) = mpsc::channel::<Batch>(queue);
    let handle = tokio::task::spawn_blocking(move || {
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(batch) = rx.blocking_recv() {
            for chunk in batch.iter() {
                hasher.update(chunk);
                size += chunk.len() as u64;
            }
            meter.add(batch.iter().map(|c| c.len() as u64).sum());
        }
        (size, hex(&hasher.finalize()))
    });
    (tx, async move { handle.await.map_err(|e| Error::Storage(format!("hashing stopped: {e}"))) })
}

/// What a download found: size and hex SHA-256 of the bytes received.
pub(crate) type Received = (u64, String);

/// GET `key`, the object of manifest `entry` under `prefix`, and stream it to `dest`
/// (created with its parent folders), or only hash it when `dest` is `None`. `missing`
/// builds the error for an absent object. The caller checks the digest with [`check`].
pub(crate) async fn download(
    store: &Arc<dyn ObjectStore>,
    key: &ObjectPath,
    entry: &ManifestEntry,
    prefix: &str,
    dest: Option<PathBuf>,
    meter: &Meter,
    missing: impl FnOnce() -> Error,
) -> Result<Received> {
    let result = match store.get(key).await {
        Ok(r) => r,
        Err(object_store::Error::NotFound { .. }) => return Err(missing()),
        Err(e) => return Err(e.into()),
    };
    // A wrong size is known before the first byte: do not download it.
    check(entry, &(result.meta.size, entry.sha256.clone()), prefix)?;
    // Writing and hashing run on separate threads so a large file costs max(write, hash)
    // rather than their sum; a few batches queued on each side decouple them from the socket.
    let (hash_tx, hasher) = hasher_thread(8, meter.clone());
    let writer = match dest {
        Some(path) => {
            let (tx, mut rx) = mpsc::channel::<Batch>(8);
            let handle = tokio::task::spawn_blocking(move || -> Result<()> {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
                }
                let mut file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
                let mut flusher = Flusher::default();
                while let Some(batch) = rx.blocking_recv() {
                    write_batch(&mut file, &batch).map_err(|e| Error::io(&path, e))?;
                    flusher.wrote(&file, batch.iter().map(|c| c.len() as u64).sum());
                }
                flusher.finish();
                // The cache directory is renamed into place after this; syncing first means
                // a power cut cannot leave a complete-looking directory with unwritten files.
                file.sync_all().map_err(|e| Error::io(&path, e))
            });
            Some((tx, handle))
        }
        None => None,
    };
    let mut stream = result.into_stream();
    let mut failure = None;
    let mut batch = Vec::new();
    let mut batched = 0;
    loop {
        let next = stream.next().await;
        let end = match next {
            Some(Ok(bytes)) => {
                batched += bytes.len();
                batch.push(bytes);
                false
            }
            Some(Err(e)) => {
                failure = Some(Error::from(e));
                break;
            }
            None => true,
        };
        if batched >= BATCH_BYTES || (end && !batch.is_empty()) {
            let full: Batch = Arc::new(std::mem::take(&mut batch));
            batched = 0;
            let queued = hash_tx.send(Arc::clone(&full)).await.is_ok();
            let written = match &writer {
                Some((tx, _)) => tx.send(full).await.is_ok(),
                None => true,
            };
            if !queued || !written {
                break; // a thread failed; its error is reported below
            }
        }
        if end {
            break;
        }
    }
    drop(hash_tx);
    let written = match writer {
        Some((tx, handle)) => {
            drop(tx);
            handle.await.map_err(|e| Error::Storage(format!("download of {key} stopped: {e}")))?
        }
        None => Ok(()),
    };
    let received = hasher.await;
    match failure {
        Some(e) => Err(e),
        None => written.and(received),
    }
}

/// Write a batch of network chunks with as few system calls as the kernel allows (one
/// `writev` per batch rather than one `write` per few-KiB chunk).
fn write_batch(file: &mut std::fs::File, batch: &[Bytes]) -> std::io::Result<()> {
    let mut slices: Vec<std::io::IoSlice<'_>> = batch.iter().filter(|c| !c.is_empty()).map(|c| std::io::IoSlice::new(c)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => std::io::IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Starts write-back of a download while it is still arriving, so the `fsync` at the end
/// waits for the last few MiB instead of the whole file (syncing only at the end cost 15 %
/// of fetch throughput from a local S3 server).
#[derive(Default)]
struct Flusher {
    unflushed: u64,
    running: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    const EVERY: u64 = 32 << 20;

    fn wrote(&mut self, file: &std::fs::File, bytes: u64) {
        self.unflushed += bytes;
        if self.unflushed < Self::EVERY || self.running.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        self.finish();
        // A second handle on the same file: `sync_data` flushes what was written so far
        // while this thread goes on writing. Failing to start one only costs speed; the
        // final `sync_all` still reports errors.
        if let Ok(handle) = file.try_clone() {
            self.unflushed = 0;
            self.running = std::thread::Builder::new()
                .name("jammi-artifact-flush".into())
                .spawn(move || {
                    let _ = handle.sync_data();
                })
                .ok();
        }
    }

    fn finish(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.join();
        }
    }
}

/// Size and hex SHA-256 of a local file, read in 1 MiB blocks.
pub(crate) async fn hash_local(path: PathBuf, meter: &Meter) -> Result<Option<Received>> {
    let meter = meter.clone();
    blocking(move || {
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buf).map_err(|e| Error::io(&path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
            meter.add(n as u64);
        }
        Ok(Some((size, hex(&hasher.finalize()))))
    })
    .await
}

/// Compare what was received with the manifest entry; the error names the file.
pub(crate) fn check(entry: &ManifestEntry, received: &Received, prefix: &str) -> Result<()> {
    if received.0 != entry.size {
        return Err(Error::Artifact {
            prefix: prefix.to_string(),
            message: format!(
                "file '{}' has {} bytes but manifest.json says {}; the object was changed or truncated after the put: put the bundle again under a new prefix",
                entry.name, received.0, entry.size
            ),
        });
    }
    if received.1 != entry.sha256 {
        return Err(Error::Artifact {
            prefix: prefix.to_string(),
            message: format!(
                "file '{}' has sha256 {} but manifest.json says {}; the object is damaged: put the bundle again under a new prefix",
                entry.name, received.1, entry.sha256
            ),
        });
    }
    Ok(())
}

/// Run blocking work (file I/O, hashing) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Storage(format!("background task failed: {e}")))?
}
