//! The HTTP backend: an embedding model served by an OpenAI-compatible `/v1/embeddings`
//! endpoint. The model's metadata names the endpoint, the remote model and the environment
//! variable holding the API key — the key itself is never stored in the catalog, printed,
//! logged or put in an error. Texts go in batches; 429 and 5xx answers and broken
//! connections are retried with back-off (honouring `Retry-After`).

use std::time::Duration;

use super::Embedder;
use crate::error::{Error, Result};

/// Retries of a failed request before the call fails (metadata `retries` overrides).
const RETRIES: u32 = 5;
/// API keys come only from environment variables with this prefix.
pub(crate) const KEY_PREFIX: &str = "JAMMI_EMBEDDING_KEY_";
/// Longest single wait between attempts.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// An HTTP-served model, from its registered metadata.
#[derive(Clone)]
pub(crate) struct HttpEmbedder {
    url: String,
    model: String,
    key: Option<String>,
    batch: usize,
    retries: u32,
    dimensions: usize,
    client: reqwest::Client,
}

impl std::fmt::Debug for HttpEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is never shown, not even in debug output.
        f.debug_struct("HttpEmbedder").field("url", &self.url).field("model", &self.model).field("key", &self.key.as_ref().map(|_| "<set>")).field("batch", &self.batch).finish()
    }
}

/// The metadata key that selects this backend: `{"backend": "http", …}`.
pub(crate) fn is_http(metadata: &serde_json::Value) -> bool {
    metadata.get("backend").and_then(|b| b.as_str()) == Some("http")
}

/// What a table records as the "artifact prefix" of an HTTP model: names it for caches.
pub(crate) fn pseudo_prefix(metadata: &serde_json::Value) -> String {
    format!("http:{}#{}", metadata["url"].as_str().unwrap_or_default(), metadata["model"].as_str().unwrap_or_default())
}

impl HttpEmbedder {
    /// From metadata `{"backend": "http", "url": "http://host/v1/embeddings", "model": NAME,
    /// "api_key_env": VAR, "batch_size": 64}` and the registered dimensions.
    pub(crate) fn from_metadata(label: &str, metadata: &serde_json::Value, dimensions: Option<u32>) -> Result<Self> {
        let bad = |message: String| Error::invalid("metadata", format!("model {label}: {message}"));
        let url = metadata.get("url").and_then(|u| u.as_str()).ok_or_else(|| bad("an HTTP model needs \"url\": the endpoint, e.g. \"http://host/v1/embeddings\"".into()))?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(bad(format!("\"url\" '{url}' is not an http:// or https:// URL")));
        }
        let model = metadata.get("model").and_then(|m| m.as_str()).ok_or_else(|| bad("an HTTP model needs \"model\": the name the endpoint knows it by".into()))?;
        let key = match metadata.get("api_key_env").and_then(|k| k.as_str()) {
            None => None,
            // Only variables meant for this: a model's metadata must not be able to send
            // the process's other secrets (cloud credentials) to an endpoint.
            Some(var) if !var.starts_with(KEY_PREFIX) => return Err(bad(format!("\"api_key_env\" must name a variable starting with {KEY_PREFIX} (e.g. {KEY_PREFIX}OPENAI); '{var}' does not"))),
            Some(var) => Some(std::env::var(var).map_err(|_| bad(format!("the API key variable {var} (\"api_key_env\") is not set in this process's environment")))?),
        };
        let batch = match metadata.get("batch_size") {
            None => 64,
            Some(v) => match v.as_u64() {
                Some(n) if (1..=2048).contains(&n) => n as usize,
                _ => return Err(bad(format!("\"batch_size\" is {v}; use a whole number from 1 to 2048"))),
            },
        };
        let retries = match metadata.get("retries") {
            None => RETRIES,
            Some(v) => match v.as_u64() {
                Some(n) if n <= 20 => n as u32,
                _ => return Err(bad(format!("\"retries\" is {v}; use a whole number from 0 to 20"))),
            },
        };
        let dimensions = dimensions.ok_or_else(|| bad("an HTTP model must be registered with --dimensions".into()))? as usize;
        let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().map_err(Error::internal)?;
        Ok(HttpEmbedder { url: url.to_string(), model: model.to_string(), key, batch, retries, dimensions, client })
    }

    fn failed(&self, message: impl std::fmt::Display) -> Error {
        Error::Unavailable { backend: format!("embedding endpoint {}", self.url), message: message.to_string() }
    }

    async fn call(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let body = serde_json::to_vec(&serde_json::json!({"model": self.model, "input": texts})).map_err(Error::internal)?;
        let mut last = String::new();
        let attempts = self.retries + 1;
        for attempt in 0..attempts {
            let mut request = self.client.post(&self.url).header("content-type", "application/json").body(body.clone());
            if let Some(key) = &self.key {
                request = request.bearer_auth(key);
            }
            let wait = match request.send().await {
                Ok(response) if response.status().is_success() => {
                    let bytes = response.bytes().await.map_err(|e| self.failed(e.without_url()))?;
                    return self.parse(&bytes, texts.len());
                }
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
                    let text = response.text().await.unwrap_or_default();
                    last = format!("HTTP {status}: {}", text.chars().take(200).collect::<String>());
                    if !(status.as_u16() == 429 || status.is_server_error()) {
                        return Err(self.failed(last));
                    }
                    retry_after
                }
                Err(e) => {
                    last = e.without_url().to_string();
                    None
                }
            };
            if attempt + 1 < attempts {
                let backoff = Duration::from_millis(250u64 << attempt.min(6));
                tokio::time::sleep(wait.unwrap_or(backoff).min(MAX_WAIT)).await;
            }
        }
        Err(self.failed(format!("{last} (after {attempts} attempts)")))
    }

    fn parse(&self, bytes: &[u8], expected: usize) -> Result<Vec<Vec<f32>>> {
        #[derive(serde::Deserialize)]
        struct Item {
            index: usize,
            embedding: Vec<f32>,
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            data: Vec<Item>,
        }
        let answer: Answer = serde_json::from_slice(bytes).map_err(|e| self.failed(format!("the answer is not an embeddings response: {e}")))?;
        let mut out: Vec<Option<Vec<f32>>> = vec![None; expected];
        for item in answer.data {
            if item.embedding.len() != self.dimensions {
                return Err(self.failed(format!("it returned {}-dimensional vectors; the model is registered with {}", item.embedding.len(), self.dimensions)));
            }
            let slot = out.get_mut(item.index).ok_or_else(|| self.failed(format!("it answered for input {} of {expected}", item.index)))?;
            *slot = Some(item.embedding);
        }
        out.into_iter().enumerate().map(|(i, v)| v.ok_or_else(|| self.failed(format!("it returned no vector for input {i}")))).collect()
    }
}

impl Embedder for HttpEmbedder {
    fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Blocking (called from a blocking task): one request per `batch_size` texts.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| Error::internal("the HTTP embedder needs a tokio runtime"))?;
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.batch) {
            out.extend(handle.block_on(self.call(chunk))?);
        }
        Ok(out)
    }
}
