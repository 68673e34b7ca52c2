//! Embedding models inside the engine: a registered model with task `embedding` whose
//! artifact holds a sentence encoder (`config.json`, `tokenizer.json`, `model.safetensors`)
//! is fetched (verified) from the artifact store, loaded once per engine and run in-process.
//! See `docs/embeddings.md`.

mod bert;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::artifact::ModelInfo;
use crate::context::EngineContext;
use crate::error::{Error, Result};
use crate::storage::{StorageOptions, StorageUrl};

/// The task a registered model must have to embed text.
pub const EMBEDDING_TASK: &str = "embedding";

/// Turns texts into vectors. Implementations are CPU- or network-bound and blocking: call
/// them from a blocking task.
pub trait Embedder: Send + Sync + std::fmt::Debug {
    /// Length of every vector this model returns.
    fn dimensions(&self) -> usize;
    /// One vector per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
}

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over the text's tokens (padding excluded).
    Mean,
    /// The first token's (`[CLS]`) vector.
    Cls,
}

/// How a model embeds: from its metadata (`pooling`, `normalize`, `max_tokens`), else from
/// the sentence-transformers files it ships, else mean pooling, normalised, 512 tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingOptions {
    /// Pooling of token vectors.
    pub pooling: Pooling,
    /// Scale each vector to unit length.
    pub normalize: bool,
    /// Longer texts are truncated to this many tokens (special tokens included).
    pub max_tokens: usize,
}

impl EmbeddingOptions {
    /// The options for the model in `dir` with registered `metadata`.
    pub fn resolve(dir: &Path, metadata: &serde_json::Value) -> Result<Self> {
        let read = |name: &str| -> Option<serde_json::Value> { std::fs::read_to_string(dir.join(name)).ok().and_then(|t| serde_json::from_str(&t).ok()) };
        let shipped_pooling = read("1_Pooling/config.json").map(|p| if p["pooling_mode_cls_token"] == true { Pooling::Cls } else { Pooling::Mean });
        let shipped_max = read("sentence_bert_config.json").and_then(|c| c["max_seq_length"].as_u64());
        let pooling = match metadata.get("pooling").and_then(|p| p.as_str()) {
            None => shipped_pooling.unwrap_or(Pooling::Mean),
            Some("mean") => Pooling::Mean,
            Some("cls") => Pooling::Cls,
            Some(other) => return Err(Error::invalid("pooling", format!("model metadata 'pooling' is '{other}'; use \"mean\" or \"cls\""))),
        };
        let normalize = match metadata.get("normalize") {
            None => true,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(other) => return Err(Error::invalid("normalize", format!("model metadata 'normalize' is {other}; use true or false"))),
        };
        let max_tokens = match metadata.get("max_tokens") {
            None => shipped_max.unwrap_or(512) as usize,
            Some(v) => match v.as_u64() {
                Some(n) if (2..=8192).contains(&n) => n as usize,
                _ => return Err(Error::invalid("max_tokens", format!("model metadata 'max_tokens' is {v}; use a whole number from 2 to 8192"))),
            },
        };
        Ok(EmbeddingOptions { pooling, normalize, max_tokens })
    }
}

/// Loaded models of one engine, by the artifact prefix they came from (a prefix is written
/// once, so it names one set of weights for good).
#[derive(Debug, Default)]
pub(crate) struct EmbedState {
    loaded: Mutex<HashMap<String, Arc<dyn Embedder>>>,
    /// One load at a time: two queries asking for a cold model must not both read 100 MB.
    loading: tokio::sync::Mutex<()>,
}

/// Embedding with registered models, in a session's tenant scope. Get one with
/// [`Session::embeddings`](crate::Session::embeddings).
#[derive(Debug)]
pub struct Embeddings<'a> {
    ctx: &'a dyn EngineContext,
    state: &'a EmbedState,
}

impl<'a> Embeddings<'a> {
    pub(crate) fn new(ctx: &'a dyn EngineContext, state: &'a EmbedState) -> Self {
        Embeddings { ctx, state }
    }

    /// The embedder of model `name` at `version` (a version label or an alias), loaded from
    /// its artifact on first use. Refused for a model that is not an embedding model or has
    /// no artifact, and when the model's vectors do not have its registered dimensions.
    pub async fn model(&self, name: &str, version: &str) -> Result<Arc<dyn Embedder>> {
        let info = crate::artifact::Models::new(self.ctx).describe(name, version).await?;
        self.load(&info).await
    }

    /// Embed `texts` with model `name` at `version`.
    pub async fn embed(&self, name: &str, version: &str, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        let model = self.model(name, version).await?;
        run_blocking(move || model.embed(&texts.iter().map(String::as_str).collect::<Vec<_>>())).await
    }

    async fn load(&self, info: &ModelInfo) -> Result<Arc<dyn Embedder>> {
        let label = format!("{}:{}", info.name, info.version);
        if info.task != EMBEDDING_TASK {
            return Err(Error::invalid("model", format!("model {label} has task '{}', not '{EMBEDDING_TASK}'; register an embedding model with --task embedding", info.task)));
        }
        let prefix = info.artifact_prefix.clone().ok_or_else(|| {
            Error::conflict(format!("model {label} has no files yet; register it with `jammi model register … --from DIR` (or finalize a job that produces them)"))
        })?;
        if let Some(model) = self.cached(&prefix) {
            return Ok(model);
        }
        let _one_at_a_time = self.state.loading.lock().await;
        if let Some(model) = self.cached(&prefix) {
            return Ok(model);
        }
        let options: StorageOptions = self.ctx.config().storage.options.clone();
        let store = crate::artifact::ArtifactStore::new(crate::storage::StorageRegistry::new(), options, self.ctx.config().data_dir.join("cache").join("artifacts"));
        let fetched = store.fetch_artifact(&StorageUrl::parse(&prefix)?.as_dir()).await?;
        let metadata = info.metadata.clone();
        let dir = fetched.dir.clone();
        let model: Arc<dyn Embedder> = run_blocking(move || {
            let options = EmbeddingOptions::resolve(&dir, &metadata)?;
            Ok(Arc::new(bert::BertEmbedder::load(&dir, options)?) as Arc<dyn Embedder>)
        })
        .await?;
        if let Some(expected) = info.dimensions {
            if expected as usize != model.dimensions() {
                return Err(Error::invalid("dimensions", format!("model {label} is registered with {expected} dimensions but its files make {}-dimensional vectors; register it again with --dimensions {}", model.dimensions(), model.dimensions())));
            }
        }
        self.state.loaded.lock().unwrap_or_else(|p| p.into_inner()).insert(prefix, Arc::clone(&model));
        Ok(model)
    }

    fn cached(&self, prefix: &str) -> Option<Arc<dyn Embedder>> {
        self.state.loaded.lock().unwrap_or_else(|p| p.into_inner()).get(prefix).cloned()
    }
}

/// Run CPU-bound model work off the async workers.
async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::internal(format!("embedding task: {e}")))?
}
