//! BERT-family sentence encoders (all-MiniLM, BGE, E5, GTE and other `BertModel`
//! checkpoints): tokenise with the model's `tokenizer.json`, run the encoder on all cores,
//! pool the token vectors and normalise.
//!
//! Why an encoder of our own rather than a general tensor library: a sentence encoder is a
//! fixed, small graph, and throughput comes from running it as one: the tokens of many
//! texts are packed with no padding, every projection is a single large matrix product (the
//! `gemm` crate's packed kernels, AVX-512 where the CPU has it), the element-wise steps
//! (GELU, softmax, layer norm) are vectorised loops in the same compiled variant, and the
//! batches of one call run in parallel, one per core. See `docs/embeddings.md`.
//!
//! ```no_run
//! use jammi_encoder::{EncoderOptions, Pooling, SentenceEncoder};
//! let options = EncoderOptions { pooling: Pooling::Mean, normalize: true, max_tokens: 256 };
//! let encoder = SentenceEncoder::load(std::path::Path::new("./all-MiniLM-L6-v2"), options)?;
//! let vectors = encoder.encode(&["a man plays a guitar", "someone strums"])?;
//! assert_eq!(vectors[0].len(), encoder.dimensions());
//! # Ok::<(), jammi_encoder::EncoderError>(())
//! ```

mod config;
mod forward;
mod kernels;
mod weights;

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use tokenizers::{Encoding, Tokenizer, TruncationParams, TruncationStrategy};

use config::BertConfig;
use forward::Packed;
use weights::Weights;

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over the text's tokens.
    Mean,
    /// The first token's (`[CLS]`) vector.
    Cls,
}

/// How an encoder turns its token vectors into sentence vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderOptions {
    pub pooling: Pooling,
    /// Scale each vector to unit length.
    pub normalize: bool,
    /// Longer texts are truncated to this many tokens (special tokens included); never more
    /// than the model's `max_position_embeddings`.
    pub max_tokens: usize,
}

/// Why a model cannot be loaded or a text cannot be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error("{file} is missing from the model at {}; an embedding model needs config.json, tokenizer.json and model.safetensors", dir.display())]
    MissingFile { file: &'static str, dir: PathBuf },
    #[error("{file} of the model at {} cannot be read: {reason}", dir.display())]
    BadFile { file: &'static str, dir: PathBuf, reason: String },
    #[error("cannot tokenise: {0}")]
    Tokenize(String),
    /// The tokenizer and the weights disagree (a token id past the vocabulary).
    #[error("tokenizer.json gives token id {id}, but the model's vocabulary has {vocab} entries; the tokenizer belongs to another model")]
    Mismatch { id: u32, vocab: usize },
}

/// Tokens per batch at most: enough rows to keep the matrix kernels at full speed, while
/// each batch's activations (`tokens × intermediate` floats) stay a few MB.
const MAX_BATCH_TOKENS: usize = 2048;

/// A loaded encoder. [`SentenceEncoder::encode`] is CPU work on the rayon pool, safe to
/// call from several threads at once.
pub struct SentenceEncoder {
    config: BertConfig,
    weights: Weights,
    tokenizer: Tokenizer,
    options: EncoderOptions,
}

impl std::fmt::Debug for SentenceEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentenceEncoder").field("dimensions", &self.config.hidden).field("layers", &self.config.layers).field("options", &self.options).finish()
    }
}

fn model_file(dir: &Path, file: &'static str) -> Result<PathBuf, EncoderError> {
    let path = dir.join(file);
    if path.is_file() {
        Ok(path)
    } else {
        Err(EncoderError::MissingFile { file, dir: dir.to_path_buf() })
    }
}

impl SentenceEncoder {
    /// Load the model in `dir`: its `config.json`, `tokenizer.json` and `model.safetensors`.
    pub fn load(dir: &Path, options: EncoderOptions) -> Result<Self, EncoderError> {
        let bad = |file: &'static str| move |reason: String| EncoderError::BadFile { file, dir: dir.to_path_buf(), reason };
        let config_text = std::fs::read_to_string(model_file(dir, "config.json")?).map_err(|e| bad("config.json")(e.to_string()))?;
        let config = BertConfig::parse(&config_text).map_err(bad("config.json"))?;
        let mut tokenizer = Tokenizer::from_file(model_file(dir, "tokenizer.json")?).map_err(|e| bad("tokenizer.json")(one_line(&e.to_string())))?;
        tokenizer.with_padding(None);
        let max_length = options.max_tokens.min(config.max_positions);
        tokenizer
            .with_truncation(Some(TruncationParams { max_length, strategy: TruncationStrategy::LongestFirst, ..Default::default() }))
            .map_err(|e| bad("tokenizer.json")(one_line(&e.to_string())))?;
        let bytes = std::fs::read(model_file(dir, "model.safetensors")?).map_err(|e| bad("model.safetensors")(e.to_string()))?;
        let weights = Weights::read(&bytes, &config).map_err(bad("model.safetensors"))?;
        Ok(SentenceEncoder { config, weights, tokenizer, options })
    }

    /// Length of every vector this encoder returns.
    pub fn dimensions(&self) -> usize {
        self.config.hidden
    }

    /// One vector per text, in order.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EncoderError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| EncoderError::Tokenize(one_line(&e.to_string())))?;
        for encoding in &encodings {
            if let Some(&id) = encoding.get_ids().iter().find(|&&id| id as usize >= self.config.vocab) {
                return Err(EncoderError::Mismatch { id, vocab: self.config.vocab });
            }
        }
        let batches = plan_batches(&encodings, rayon::current_num_threads());
        let h = self.config.hidden;
        let run = |members: &Vec<usize>, threads: usize| {
            let packed = pack(&encodings, members, self.config.type_vocab);
            forward::forward(&self.weights, &self.config, &packed, self.options.pooling, threads)
        };
        let pooled: Vec<Vec<f32>> = if batches.len() == 1 {
            // One batch (a query, a few texts): its matrix products share the cores instead.
            let tokens: usize = batches[0].iter().map(|&i| encodings[i].len()).sum();
            let threads = if tokens >= 128 { rayon::current_num_threads() } else { 1 };
            vec![run(&batches[0], threads)]
        } else {
            batches.par_iter().map(|members| run(members, 1)).collect()
        };
        let mut out = vec![Vec::new(); texts.len()];
        for (members, vectors) in batches.iter().zip(pooled) {
            for (&text, vector) in members.iter().zip(vectors.chunks_exact(h)) {
                let mut vector = vector.to_vec();
                if self.options.normalize {
                    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                    vector.iter_mut().for_each(|x| *x /= norm);
                }
                out[text] = vector;
            }
        }
        Ok(out)
    }
}

/// Split texts into batches of similar token budgets, longest texts first, so that there are
/// at least two batches per thread when the input allows (the pool balances them).
fn plan_batches(encodings: &[Encoding], threads: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..encodings.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(encodings[i].len()));
    let total: usize = encodings.iter().map(Encoding::len).sum();
    let budget = total.div_ceil(2 * threads.max(1)).clamp(256, MAX_BATCH_TOKENS);
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut used = 0;
    for i in order {
        let tokens = encodings[i].len();
        match batches.last_mut() {
            Some(batch) if used + tokens <= budget => batch.push(i),
            _ => {
                batches.push(vec![i]);
                used = 0;
            }
        }
        used += tokens;
    }
    batches
}

fn pack(encodings: &[Encoding], members: &[usize], type_vocab: usize) -> Packed {
    let mut packed = Packed { ids: Vec::new(), types: Vec::new(), lengths: Vec::with_capacity(members.len()) };
    for &i in members {
        let e = &encodings[i];
        packed.ids.extend_from_slice(e.get_ids());
        // A single-segment model has one token type; its checkpoints still say type 0.
        packed.types.extend(e.get_type_ids().iter().map(|&t| (t as usize).min(type_vocab - 1) as u32));
        packed.lengths.push(e.len());
    }
    packed
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
