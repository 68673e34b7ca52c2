//! Reading and writing a vector table's files through the object store, with SHA-256
//! verification of everything written.

use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::{ArrowWriter, ProjectionMask};
use datafusion::parquet::file::reader::ChunkReader;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex_digest(&Sha256::digest(bytes))
}

/// Hex SHA-256 of a local file, read in 1 MiB chunks.
pub(crate) fn sha256_of_file(path: &std::path::Path) -> Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut chunk).map_err(|e| Error::io(path, e))? {
            0 => return Ok(hex_digest(&hasher.finalize())),
            n => hasher.update(&chunk[..n]),
        }
    }
}

fn hex_digest(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A table's file on this machine ([`TableFiles::local_file`]).
#[derive(Debug, Clone)]
pub struct CachedFile {
    /// Where it is.
    pub path: std::path::PathBuf,
    /// A disk-cache copy of a remote file (else the file itself, on a local root).
    pub cached: bool,
}

/// A table's folder in its object store.
#[derive(Debug, Clone)]
pub struct TableFiles {
    store: Arc<dyn ObjectStore>,
    root: Path,
    display: String,
    /// The folder on this machine, when the storage root is local.
    local_root: Option<std::path::PathBuf>,
    /// Where copies of a remote root's files are kept on this machine.
    cache: Option<super::disk_cache::DiskCache>,
}

impl TableFiles {
    /// Files under `root` of `store`; `display` is the folder's URL for messages.
    pub fn new(store: Arc<dyn ObjectStore>, root: Path, display: String) -> Self {
        TableFiles { store, root, display, local_root: None, cache: None }
    }

    /// Keep local copies of the files of a remote root in `cache` (a local root needs none).
    pub fn with_disk_cache(mut self, cache: Option<super::disk_cache::DiskCache>) -> Self {
        self.cache = cache;
        self
    }

    /// `name` as a file on this machine: in place on a local root; on a remote one the disk
    /// cache's checked copy (downloaded when missing). `None` without a cache, or when the
    /// copy cannot be made (the caller then reads the root, which reports any real error).
    pub async fn local_file(&self, name: &str, expected_sha: Option<&str>) -> Option<CachedFile> {
        if let Some(path) = self.local_path(name) {
            return Some(CachedFile { path, cached: false });
        }
        let cache = self.cache.as_ref()?;
        match cache.file(self.store.as_ref(), &self.path(name), &self.url_of(name), expected_sha).await {
            Ok(path) => Some(CachedFile { path, cached: true }),
            Err(e) => {
                tracing::warn!(file = %self.url_of(name), error = %e, "not cached on local disk; reading it from the storage root");
                None
            }
        }
    }

    /// A local copy found damaged by its reader: removed from the cache (a file on a local
    /// root is the data itself and is left alone).
    pub fn discard(&self, file: &CachedFile) {
        if let (true, Some(cache)) = (file.cached, &self.cache) {
            cache.discard(&file.path);
        }
    }

    /// The same files, which also lie in `local_root` on this machine (a `file://` storage
    /// root): their readers may open or map them directly.
    pub fn with_local_root(mut self, local_root: Option<std::path::PathBuf>) -> Self {
        self.local_root = local_root;
        self
    }

    /// The local path of `name`, when the storage root is on this machine.
    pub fn local_path(&self, name: &str) -> Option<std::path::PathBuf> {
        self.local_root.as_ref().map(|root| root.join(name))
    }

    fn path(&self, name: &str) -> Path {
        Path::from(format!("{}/{name}", self.root.as_ref().trim_end_matches('/')))
    }

    /// URL of a file, for messages and listing tables.
    pub fn url_of(&self, name: &str) -> String {
        format!("{}/{name}", self.display.trim_end_matches('/'))
    }

    /// Write `bytes` to `name`, then read its size back; returns (sha256, size).
    pub async fn put_verified(&self, name: &str, bytes: Vec<u8>) -> Result<(String, u64)> {
        let sha = sha256_hex(&bytes);
        let len = bytes.len() as u64;
        let path = self.path(name);
        self.store.put(&path, PutPayload::from(bytes)).await?;
        let meta = self.store.head(&path).await?;
        if meta.size != len {
            return Err(Error::Storage(format!("{} was written with {} bytes, expected {len}", self.url_of(name), meta.size)));
        }
        Ok((sha, len))
    }

    /// Write `parts`, one after another, as the file `name` without joining them in memory
    /// first, then read its size back; returns the size.
    pub async fn put_parts_verified(&self, name: &str, parts: Vec<Bytes>) -> Result<u64> {
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let path = self.path(name);
        self.store.put(&path, parts.into_iter().collect::<PutPayload>()).await?;
        let meta = self.store.head(&path).await?;
        if meta.size != len {
            return Err(Error::Storage(format!("{} was written with {} bytes, expected {len}", self.url_of(name), meta.size)));
        }
        Ok(len)
    }

    /// Check `name` against `expected_sha`, reading it as a stream (never whole in memory).
    /// A local file is read on a blocking thread in large chunks.
    pub async fn verify(&self, name: &str, expected_sha: &str) -> Result<()> {
        match self.local_path(name) {
            Some(path) => {
                let actual = tokio::task::spawn_blocking(move || sha256_of_file(&path)).await.map_err(|e| Error::Storage(format!("hashing {name} failed: {e}")))??;
                self.check_digest(name, &actual, expected_sha)
            }
            None => {
                use futures::StreamExt;
                let mut stream = self.store.get(&self.path(name)).await.map_err(|e| self.not_found_or(name, e))?.into_stream();
                let mut hasher = Sha256::new();
                while let Some(chunk) = stream.next().await {
                    hasher.update(chunk?);
                }
                self.check_digest(name, &hex_digest(&hasher.finalize()), expected_sha)
            }
        }
    }

    fn not_found_or(&self, name: &str, e: object_store::Error) -> Error {
        match e {
            object_store::Error::NotFound { .. } => Error::NotFound { location: self.url_of(name) },
            other => other.into(),
        }
    }

    fn check_digest(&self, name: &str, actual: &str, expected: &str) -> Result<()> {
        if actual == expected {
            return Ok(());
        }
        Err(Error::UnreadableData {
            location: self.url_of(name),
            format: "vector segment".into(),
            message: format!("sha256 {actual} does not match the manifest's {expected}"),
        })
    }

    /// Read `name` whole; when `expected_sha` is given, a mismatch is an error naming the file.
    pub async fn get(&self, name: &str, expected_sha: Option<&str>) -> Result<Bytes> {
        let bytes = self.store.get(&self.path(name)).await.map_err(|e| self.not_found_or(name, e))?.bytes().await?;
        if let Some(expected) = expected_sha {
            self.check_digest(name, &sha256_hex(&bytes), expected)?;
        }
        Ok(bytes)
    }

    /// True when `name` exists.
    pub async fn exists(&self, name: &str) -> Result<bool> {
        match self.store.head(&self.path(name)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Delete every file of the table (idempotent).
    pub async fn delete_all(&self) -> Result<()> {
        self.delete_under(&self.root.clone()).await
    }

    /// Delete one file or folder of the table (idempotent).
    pub async fn delete(&self, name: &str) -> Result<()> {
        let path = self.path(name);
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.delete_under(&path).await
    }

    async fn delete_under(&self, prefix: &Path) -> Result<()> {
        use futures::TryStreamExt;
        let files: Vec<Path> = self.store.list(Some(prefix)).map_ok(|m| m.location).try_collect().await?;
        for file in files {
            match self.store.delete(&file).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Encode batches as one zstd Parquet file.
pub fn parquet_bytes(batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let schema = batches.first().map(|b| b.schema()).ok_or_else(|| Error::internal("no rows to write"))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(|e| Error::Storage(e.to_string()))?))
        .build();
    let mut buf = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buf, schema, Some(props)).map_err(|e| Error::Storage(e.to_string()))?;
    for batch in batches {
        writer.write(batch).map_err(|e| Error::Storage(e.to_string()))?;
    }
    writer.close().map_err(|e| Error::Storage(e.to_string()))?;
    Ok(buf)
}

/// Decode a Parquet file (its bytes, or a local file) batch by batch, handing each batch to
/// `each`, so a caller keeps only what it needs of each one and never holds the whole decoded
/// file. `columns`, when given, are the top-level columns to decode; the others are skipped
/// without being read.
pub fn for_each_parquet_batch<R: ChunkReader + 'static>(
    source: R,
    location: &str,
    columns: Option<&[usize]>,
    mut each: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let unreadable = |e: &dyn std::fmt::Display| Error::UnreadableData {
        location: location.to_string(),
        format: "parquet".into(),
        message: e.to_string(),
    };
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(source).map_err(|e| unreadable(&e))?.with_batch_size(8192);
    if let Some(columns) = columns {
        let mask = ProjectionMask::roots(builder.parquet_schema(), columns.iter().copied());
        builder = builder.with_projection(mask);
    }
    let reader = builder.build().map_err(|e| unreadable(&e))?;
    for batch in reader {
        each(batch.map_err(|e| unreadable(&e))?)?;
    }
    Ok(())
}
