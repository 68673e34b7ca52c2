//! Resumable embedding at import: the vectors are kept, a chunk at a time, as artifact
//! bundles (manifest last, SHA-256 verified) under `<storage root>/imports/<run key>/`. The
//! run key is a digest of the table name, the model's files, the column and every text, so
//! an interrupted `vectors import --embed` run again on the same input takes the chunks
//! already embedded and embeds only the rest; any other input starts afresh. The chunks are
//! removed once the table is committed.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{embed_texts, Embedder};
use crate::artifact::{ArtifactFile, ArtifactStore};
use crate::error::{Error, Result};
use crate::storage::StorageUrl;

/// At most this many chunks per run (so a run is resumable in 5 % steps) …
const MAX_CHUNKS: usize = 20;
/// … and at least this many rows per chunk.
const MIN_CHUNK_ROWS: usize = 64;

/// Where one import run keeps its embedded chunks.
#[derive(Debug)]
pub(crate) struct Checkpoints {
    store: ArtifactStore,
    root: StorageUrl,
    key: String,
    /// The run key and chunk count of the last [`embed`](Self::embed), for [`discard`](Self::discard).
    run: std::sync::Mutex<Option<(String, usize)>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn chunk_name(n: usize) -> String {
    format!("chunk-{n:05}")
}

impl Checkpoints {
    /// The checkpoints of importing `table` with the model at `model_prefix` from `column`.
    /// The key is finished by [`embed`](Self::embed), which sees the texts.
    pub(crate) fn new(store: ArtifactStore, root: StorageUrl, table: &str, model_prefix: &str, column: &str) -> Self {
        let mut h = Sha256::new();
        for part in [table, model_prefix, column] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        Checkpoints { store, root, run: std::sync::Mutex::new(None), key: hex(&h.finalize()) }
    }

    fn run_key(&self, texts: &[String]) -> String {
        let mut h = Sha256::new();
        h.update(self.key.as_bytes());
        for t in texts {
            h.update((t.len() as u64).to_le_bytes());
            h.update(t.as_bytes());
        }
        hex(&h.finalize()[..12])
    }

    /// The vectors of `texts`, row-major: chunks a previous run kept are read back
    /// (verified), the others embedded and kept before the next one starts.
    pub(crate) async fn embed(&self, model: &Arc<dyn Embedder>, texts: &[String], progress: &dyn crate::vector::Progress) -> Result<Vec<f32>> {
        let dims = model.dimensions();
        let run = self.run_key(texts);
        let chunk_rows = texts.len().div_ceil(MAX_CHUNKS).max(MIN_CHUNK_ROWS);
        let mut flat = Vec::with_capacity(texts.len() * dims);
        let mut resumed = 0usize;
        for (n, chunk) in texts.chunks(chunk_rows).enumerate() {
            let segments = ["imports", run.as_str(), &chunk_name(n)];
            let url = self.store.prefix_url(&self.root, &segments)?;
            if self.store.is_complete(&url).await? {
                let fetched = self.store.fetch_artifact(&url).await?;
                let path = fetched.dir.join("vectors.f32");
                let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
                if bytes.len() == chunk.len() * dims * 4 {
                    flat.extend(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
                    resumed += chunk.len();
                    progress.set((flat.len() / dims) as u64);
                    continue;
                }
            }
            let done = flat.len() / dims;
            let vectors = embed_texts(model, chunk, done, progress).await?;
            let bytes: Vec<u8> = vectors.iter().flat_map(|v| v.to_le_bytes()).collect();
            // A chunk left half-written by a crash is replaced, never trusted.
            self.store.delete_artifact_prefix(&url).await?;
            self.store.put_artifact(&self.root, &segments, &[ArtifactFile::from_bytes("vectors.f32", bytes)]).await?;
            flat.extend(vectors);
            crate::vector::pause_point(&format!("vectors.import.embedded_chunk_{n}"));
        }
        if resumed > 0 {
            tracing::info!(resumed, total = texts.len(), "embedding resumed from checkpoints: {resumed} of {} rows were already embedded", texts.len());
        }
        *self.run.lock().unwrap_or_else(|p| p.into_inner()) = Some((run, texts.len().div_ceil(chunk_rows)));
        Ok(flat)
    }

    /// Remove the kept chunks (the table is committed). Failures only leave files behind.
    pub(crate) async fn discard(&self) {
        let Some((run, chunks)) = self.run.lock().unwrap_or_else(|p| p.into_inner()).take() else { return };
        for n in 0..chunks {
            let removed = async { self.store.delete_artifact_prefix(&self.store.prefix_url(&self.root, &["imports", run.as_str(), &chunk_name(n)])?).await }.await;
            if let Err(e) = removed {
                tracing::warn!(error = %e, "could not remove an import checkpoint");
            }
        }
    }
}
