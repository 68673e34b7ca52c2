//! BERT-family sentence encoders run in-process by `jammi-encoder` (tokenise, encode on all
//! cores, pool, normalise); this adapter maps its errors to the engine's.

use std::path::Path;

use jammi_encoder::{EncoderError, EncoderOptions, SentenceEncoder};

use super::{Embedder, EmbeddingOptions};
use crate::error::{Error, Result};

/// A loaded encoder; [`Embedder::embed`] is CPU work, safe to call from several threads.
#[derive(Debug)]
pub(crate) struct BertEmbedder {
    encoder: SentenceEncoder,
}

fn engine_error(e: EncoderError) -> Error {
    match e {
        EncoderError::Tokenize(_) => Error::invalid("text", e.to_string()),
        _ => Error::invalid("model files", e.to_string()),
    }
}

impl BertEmbedder {
    /// Load the model in `dir` (its `config.json`, `tokenizer.json`, `model.safetensors`).
    pub(crate) fn load(dir: &Path, options: EmbeddingOptions) -> Result<Self> {
        let options = EncoderOptions { pooling: options.pooling, normalize: options.normalize, max_tokens: options.max_tokens };
        Ok(BertEmbedder { encoder: SentenceEncoder::load(dir, options).map_err(engine_error)? })
    }
}

impl Embedder for BertEmbedder {
    fn dimensions(&self) -> usize {
        self.encoder.dimensions()
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.encoder.encode(texts).map_err(engine_error)
    }
}
