//! A BERT-family sentence encoder run in-process on candle: tokenise (`tokenizer.json`),
//! encode (`model.safetensors` + `config.json`), pool over the attention mask, normalise.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use tokenizers::{Tokenizer, TruncationParams, TruncationStrategy};

use super::{Embedder, EmbeddingOptions, Pooling};
use crate::error::{Error, Result};

/// Texts per forward pass: long enough to keep the matrix kernels busy, short enough that
/// padding to the batch's longest text wastes little (texts are sorted by length first).
const BATCH: usize = 32;

/// A loaded encoder; [`Embedder::embed`] is CPU work, safe to call from several threads.
pub(crate) struct BertEmbedder {
    model: BertModel,
    tokenizer: Tokenizer,
    options: EmbeddingOptions,
    dimensions: usize,
}

impl std::fmt::Debug for BertEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertEmbedder").field("dimensions", &self.dimensions).field("options", &self.options).finish()
    }
}

/// A file of the model directory, or an error naming it.
fn model_file(dir: &Path, name: &str) -> Result<std::path::PathBuf> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::invalid("model files", format!("{name} is missing from the model at {}; an embedding model needs config.json, tokenizer.json and model.safetensors", dir.display())))
    }
}

fn bad_file(dir: &Path, name: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid("model files", format!("{name} of the model at {} cannot be read: {}", dir.display(), crate::error::one_line(&e.to_string())))
}

impl BertEmbedder {
    /// Load the model in `dir` (its `config.json`, `tokenizer.json`, `model.safetensors`).
    pub(crate) fn load(dir: &Path, options: EmbeddingOptions) -> Result<Self> {
        let config_path = model_file(dir, "config.json")?;
        let config_text = std::fs::read_to_string(&config_path).map_err(|e| bad_file(dir, "config.json", e))?;
        let config: BertConfig = serde_json::from_str(&config_text).map_err(|e| bad_file(dir, "config.json", e))?;
        let mut tokenizer = Tokenizer::from_file(model_file(dir, "tokenizer.json")?).map_err(|e| bad_file(dir, "tokenizer.json", e))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: options.max_tokens, strategy: TruncationStrategy::LongestFirst, ..Default::default() }))
            .map_err(|e| bad_file(dir, "tokenizer.json", e))?;
        let weights = std::fs::read(model_file(dir, "model.safetensors")?).map_err(|e| bad_file(dir, "model.safetensors", e))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu).map_err(|e| bad_file(dir, "model.safetensors", e))?;
        let model = BertModel::load(vb, &config).map_err(|e| bad_file(dir, "model.safetensors", e))?;
        Ok(BertEmbedder { model, tokenizer, options, dimensions: config.hidden_size })
    }

    fn embed_batch(&self, encodings: &[&tokenizers::Encoding]) -> Result<Vec<Vec<f32>>> {
        let longest = encodings.iter().map(|e| e.get_ids().len()).max().unwrap_or(0).max(1);
        let rows = encodings.len();
        let mut ids = vec![0u32; rows * longest];
        let mut mask = vec![0u32; rows * longest];
        for (r, e) in encodings.iter().enumerate() {
            for (c, (&id, &m)) in e.get_ids().iter().zip(e.get_attention_mask()).enumerate() {
                ids[r * longest + c] = id;
                mask[r * longest + c] = m;
            }
        }
        let tensor_err = |e: candle_core::Error| Error::internal(format!("embedding: {e}"));
        let device = Device::Cpu;
        let ids = Tensor::from_vec(ids, (rows, longest), &device).map_err(tensor_err)?;
        let mask = Tensor::from_vec(mask, (rows, longest), &device).map_err(tensor_err)?;
        let types = ids.zeros_like().map_err(tensor_err)?;
        let hidden = self.model.forward(&ids, &types, Some(&mask)).map_err(tensor_err)?;
        let pooled = match self.options.pooling {
            Pooling::Mean => {
                let mask = mask.to_dtype(DType::F32).map_err(tensor_err)?.unsqueeze(2).map_err(tensor_err)?;
                let summed = hidden.broadcast_mul(&mask).and_then(|t| t.sum(1)).map_err(tensor_err)?;
                let counts = mask.sum(1).and_then(|c| c.clamp(1e-9f32, f32::MAX)).map_err(tensor_err)?;
                summed.broadcast_div(&counts).map_err(tensor_err)?
            }
            Pooling::Cls => hidden.narrow(1, 0, 1).and_then(|t| t.squeeze(1)).map_err(tensor_err)?,
        };
        let mut vectors: Vec<Vec<f32>> = pooled.to_vec2().map_err(tensor_err)?;
        if self.options.normalize {
            for v in &mut vectors {
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|x| *x /= norm);
            }
        }
        Ok(vectors)
    }
}

impl Embedder for BertEmbedder {
    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::invalid("text", format!("cannot tokenise: {e}")))?;
        // Similar lengths share a batch, so little is padded.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(BATCH) {
            let batch: Vec<&tokenizers::Encoding> = chunk.iter().map(|&i| &encodings[i]).collect();
            for (&i, vector) in chunk.iter().zip(self.embed_batch(&batch)?) {
                out[i] = vector;
            }
        }
        Ok(out)
    }
}
