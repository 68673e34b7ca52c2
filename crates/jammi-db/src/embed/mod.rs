//! Embedding models inside the engine: a registered model with task `embedding` whose
//! artifact holds a sentence encoder (`config.json`, `tokenizer.json`, `model.safetensors`)
//! is fetched (verified) from the artifact store, loaded once per engine and run in-process.
//! See `docs/embeddings.md`.

mod bert;
mod http;
pub(crate) mod resume;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;

use crate::artifact::ModelInfo;
use crate::context::EngineContext;
use crate::error::{Error, Result};
use crate::storage::{StorageOptions, StorageUrl};

/// Whether a model's metadata says it is served by an HTTP endpoint (`"backend": "http"`).
pub(crate) fn is_http_backed(metadata: &serde_json::Value) -> bool {
    http::is_http(metadata)
}

/// Check an HTTP-served model's metadata (endpoint URL, remote model, key variable, batch
/// size) as registration needs it.
pub(crate) fn check_http(label: &str, metadata: &serde_json::Value, dimensions: Option<u32>) -> Result<()> {
    http::HttpEmbedder::from_metadata(label, metadata, dimensions).map(|_| ())
}

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

pub use jammi_encoder::Pooling;

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

/// What a vector table records about the model that made its vectors, so it can embed text
/// queries (and later rows) the same way without a catalog read per query.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EmbeddingSource {
    /// Model name.
    pub model: String,
    /// The version label the model resolved to (never an alias: the table keeps its model).
    pub version: String,
    /// The text column that was embedded.
    pub column: String,
    /// The model's artifact prefix (its exact files).
    pub artifact_prefix: String,
    /// The model's metadata (pooling, normalisation, truncation).
    #[serde(default)]
    pub metadata: serde_json::Value,
}

/// Query embeddings kept per engine: repeated text queries skip the model. Cleared when
/// full. Keyed by a digest of the text (an entry costs ~1.6 KB however long the query was)
/// and by the caller's tenant scope, so one tenant's cache hits never time another
/// tenant's queries.
const QUERY_CACHE_ENTRIES: usize = 4096;

/// Cache key: caller scope, model prefix, SHA-256 of the text.
type QueryKey = (crate::tenant::TenantScope, String, [u8; 32]);

/// Loaded models of one engine, by the artifact prefix they came from (a prefix is written
/// once, so it names one set of weights for good), and recent query embeddings.
#[derive(Debug)]
pub(crate) struct EmbedState {
    loaded: Mutex<HashMap<String, Arc<dyn Embedder>>>,
    /// One load at a time: two queries asking for a cold model must not both read 100 MB.
    loading: tokio::sync::Mutex<()>,
    queries: Mutex<HashMap<QueryKey, Arc<Vec<f32>>>>,
    storage_options: StorageOptions,
    cache_dir: std::path::PathBuf,
}

impl EmbedState {
    pub(crate) fn new(config: &crate::config::Config) -> Self {
        EmbedState {
            loaded: Mutex::default(),
            loading: tokio::sync::Mutex::new(()),
            queries: Mutex::default(),
            storage_options: config.storage.options.clone(),
            cache_dir: config.data_dir.join("cache").join("artifacts"),
        }
    }

    fn cached(&self, prefix: &str) -> Option<Arc<dyn Embedder>> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner()).get(prefix).cloned()
    }

    /// The model whose files are the bundle at `prefix` (fetched and verified on first use).
    pub(crate) async fn load(&self, label: &str, prefix: &str, metadata: &serde_json::Value, dimensions: Option<u32>) -> Result<Arc<dyn Embedder>> {
        if let Some(model) = self.cached(prefix) {
            return Ok(model);
        }
        let _one_at_a_time = self.loading.lock().await;
        if let Some(model) = self.cached(prefix) {
            return Ok(model);
        }
        if http::is_http(metadata) {
            // Served by an endpoint: nothing to fetch; the metadata says where and how.
            let model: Arc<dyn Embedder> = Arc::new(http::HttpEmbedder::from_metadata(label, metadata, dimensions.or(metadata.get("dimensions").and_then(|d| d.as_u64()).map(|d| d as u32)))?);
            self.loaded.lock().unwrap_or_else(|p| p.into_inner()).insert(prefix.to_string(), Arc::clone(&model));
            return Ok(model);
        }
        let store = crate::artifact::ArtifactStore::new(crate::storage::StorageRegistry::new(), self.storage_options.clone(), self.cache_dir.clone());
        let fetched = store.fetch_artifact(&StorageUrl::parse(prefix)?.as_dir()).await?;
        let metadata = metadata.clone();
        let dir = fetched.dir.clone();
        let model: Arc<dyn Embedder> = run_blocking(move || {
            let options = EmbeddingOptions::resolve(&dir, &metadata)?;
            Ok(Arc::new(bert::BertEmbedder::load(&dir, options)?) as Arc<dyn Embedder>)
        })
        .await?;
        if let Some(expected) = dimensions {
            if expected as usize != model.dimensions() {
                return Err(Error::invalid("dimensions", format!("model {label} is registered with {expected} dimensions but its files make {}-dimensional vectors; register it again with --dimensions {}", model.dimensions(), model.dimensions())));
            }
        }
        self.loaded.lock().unwrap_or_else(|p| p.into_inner()).insert(prefix.to_string(), Arc::clone(&model));
        Ok(model)
    }

    /// The vector of query `text` under the model a table records, for a caller in `scope`.
    pub(crate) async fn embed_query(&self, scope: crate::tenant::TenantScope, source: &EmbeddingSource, text: &str) -> Result<Arc<Vec<f32>>> {
        use sha2::Digest;
        let key = (scope, source.artifact_prefix.clone(), sha2::Sha256::digest(text.as_bytes()).into());
        if let Some(v) = self.queries.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(Arc::clone(v));
        }
        let label = format!("{}:{}", source.model, source.version);
        let model = self.load(&label, &source.artifact_prefix, &source.metadata, None).await?;
        let owned = text.to_string();
        let mut vectors = run_blocking(move || model.embed(&[owned.as_str()])).await?;
        let vector = Arc::new(vectors.pop().unwrap_or_default());
        let mut queries = self.queries.lock().unwrap_or_else(|p| p.into_inner());
        if queries.len() >= QUERY_CACHE_ENTRIES {
            queries.clear();
        }
        queries.insert(key, Arc::clone(&vector));
        Ok(vector)
    }
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
        let (info, prefix) = self.describe(name, version).await?;
        self.state.load(&format!("{}:{}", info.name, info.version), &prefix, &info.metadata, info.dimensions).await
    }

    /// Embed `texts` with model `name` at `version`.
    pub async fn embed(&self, name: &str, version: &str, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        let model = self.model(name, version).await?;
        run_blocking(move || model.embed(&texts.iter().map(String::as_str).collect::<Vec<_>>())).await
    }

    /// The registered embedding model `name` at `version` and its artifact prefix.
    pub(crate) async fn describe(&self, name: &str, version: &str) -> Result<(ModelInfo, String)> {
        let info = crate::artifact::Models::new(self.ctx).describe(name, version).await?;
        let label = format!("{}:{}", info.name, info.version);
        if info.task != EMBEDDING_TASK {
            return Err(Error::invalid("model", format!("model {label} has task '{}', not '{EMBEDDING_TASK}'; register an embedding model with --task embedding", info.task)));
        }
        if http::is_http(&info.metadata) {
            // Checked now, so a bad endpoint description is refused before anything is written.
            let mut metadata = info.metadata.clone();
            http::HttpEmbedder::from_metadata(&label, &metadata, info.dimensions)?;
            if let (Some(d), Some(obj)) = (info.dimensions, metadata.as_object_mut()) {
                obj.insert("dimensions".into(), d.into());
            }
            let prefix = http::pseudo_prefix(&metadata);
            return Ok((ModelInfo { metadata, ..info }, prefix));
        }
        let prefix = info.artifact_prefix.clone().ok_or_else(|| {
            Error::conflict(format!("model {label} has no files yet; register it with `jammi model register … --from DIR` (or finalize a job that produces them)"))
        })?;
        Ok((info, prefix))
    }

    /// Embed the text column `column` of `batches` with model `name` at `version`, adding
    /// the vectors as column `vector_column` (`FixedSizeList<Float32>`). Returns the new
    /// batches and what the table should record about the model.
    pub(crate) async fn embed_column(
        &self,
        table: &str,
        batches: Vec<RecordBatch>,
        column: &str,
        vector_column: &str,
        (name, version): (&str, &str),
        progress: &dyn crate::vector::Progress,
    ) -> Result<(Vec<RecordBatch>, EmbeddingSource, resume::Checkpoints)> {
        let (info, prefix) = self.describe(name, version).await?;
        let model = self.state.load(&format!("{}:{}", info.name, info.version), &prefix, &info.metadata, info.dimensions).await?;
        // Kept under the caller's own artifact prefixes, so a tenant's checkpoints are its own.
        let store = crate::artifact::ArtifactStore::new(crate::storage::StorageRegistry::new(), self.state.storage_options.clone(), self.state.cache_dir.clone()).for_owner(self.ctx.scope().owner());
        let root = StorageUrl::parse(&self.ctx.config().storage_root())?.as_dir();
        let checkpoints = resume::Checkpoints::new(store, root, table, &prefix, column);
        let batches = embed_batches_with(&model, table, batches, column, vector_column, progress, Some(&checkpoints)).await?;
        let source = EmbeddingSource { model: info.name, version: info.version, column: column.to_string(), artifact_prefix: prefix, metadata: info.metadata };
        Ok((batches, source, checkpoints))
    }
}

/// Embed the text column `column` of `batches` with `model`, adding the vectors as column
/// `vector_column` (`FixedSizeList<Float32>`). Nothing is returned unless every row was
/// embedded.
pub(crate) async fn embed_batches(
    model: &Arc<dyn Embedder>,
    table: &str,
    batches: Vec<RecordBatch>,
    column: &str,
    vector_column: &str,
    progress: &dyn crate::vector::Progress,
) -> Result<Vec<RecordBatch>> {
    embed_batches_with(model, table, batches, column, vector_column, progress, None).await
}

/// [`embed_batches`], keeping what is embedded in `checkpoints` as it goes (and taking what
/// an interrupted run already kept there).
pub(crate) async fn embed_batches_with(
    model: &Arc<dyn Embedder>,
    table: &str,
    batches: Vec<RecordBatch>,
    column: &str,
    vector_column: &str,
    progress: &dyn crate::vector::Progress,
    checkpoints: Option<&resume::Checkpoints>,
) -> Result<Vec<RecordBatch>> {
    use datafusion::arrow::array::{Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let bad = |message: String| Error::InvalidVectors { table: table.to_string(), message };
    let mut texts: Vec<String> = Vec::new();
    for batch in &batches {
        if batch.schema().column_with_name(vector_column).is_some() {
            return Err(bad(format!("the input already has a column '{vector_column}'; name another vector column for the embeddings")));
        }
        let column_texts = batch.column_by_name(column).ok_or_else(|| bad(format!("the input has no column '{column}' to embed")))?;
        if !matches!(column_texts.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
            return Err(bad(format!("column '{column}' is {}, not text; name a text column to embed", column_texts.data_type())));
        }
        let column_texts = datafusion::arrow::compute::cast(column_texts, &DataType::Utf8).map_err(Error::internal)?;
        texts.extend(column_texts.as_string::<i32>().iter().map(|t| t.unwrap_or_default().to_string()));
    }
    let dims = model.dimensions();
    progress.start("embedding", texts.len() as u64);
    let flat = match checkpoints {
        Some(c) => c.embed(model, &texts, progress).await?,
        None => embed_texts(model, &texts, 0, progress).await?,
    };
    progress.finish();
    let mut out = Vec::with_capacity(batches.len());
    let mut at = 0usize;
    for batch in batches {
        let n = batch.num_rows();
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let values = Float32Array::from(flat[at * dims..(at + n) * dims].to_vec());
        at += n;
        let vectors = FixedSizeListArray::try_new(item, dims as i32, Arc::new(values), None).map_err(Error::internal)?;
        let schema = batch.schema();
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(vector_column, vectors.data_type().clone(), false));
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns.push(Arc::new(vectors));
        out.push(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(Error::internal)?);
    }
    Ok(out)
}

/// The vectors of `texts`, row-major, 256 texts per model call (so the progress bar, set
/// to `done_before` + rows done, keeps moving and memory stays bounded).
pub(crate) async fn embed_texts(model: &Arc<dyn Embedder>, texts: &[String], done_before: usize, progress: &dyn crate::vector::Progress) -> Result<Vec<f32>> {
    let mut flat = Vec::with_capacity(texts.len() * model.dimensions());
    let mut done = done_before;
    for chunk in texts.chunks(256) {
        let chunk: Vec<String> = chunk.to_vec();
        let m = Arc::clone(model);
        let vectors = run_blocking(move || m.embed(&chunk.iter().map(String::as_str).collect::<Vec<_>>())).await?;
        done += vectors.len();
        vectors.iter().for_each(|v| flat.extend_from_slice(v));
        progress.set(done as u64);
    }
    Ok(flat)
}

async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::internal(format!("embedding task: {e}")))?
}
