//! The encoder's shape, read from the Hugging Face `config.json` of a BERT-family model.

use serde::Deserialize;

/// The non-linearity between the feed-forward layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// `x·Φ(x)` with the exact normal CDF (BERT's `gelu`).
    Gelu,
    /// The tanh approximation of GELU (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    Relu,
}

/// What the forward pass needs from `config.json`.
#[derive(Debug, Clone)]
pub(crate) struct BertConfig {
    pub hidden: usize,
    pub heads: usize,
    pub layers: usize,
    pub intermediate: usize,
    pub max_positions: usize,
    pub vocab: usize,
    pub type_vocab: usize,
    pub layer_norm_eps: f32,
    pub activation: Activation,
}

#[derive(Deserialize)]
struct RawConfig {
    hidden_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    vocab_size: usize,
    #[serde(default = "one")]
    type_vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default = "default_position_type")]
    position_embedding_type: String,
}

fn one() -> usize {
    1
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_position_type() -> String {
    "absolute".into()
}

impl BertConfig {
    /// Parse and check `config.json`; the error says which setting is unsupported.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let activation = match raw.hidden_act.as_str() {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => return Err(format!("hidden_act \"{other}\" is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu are)")),
        };
        if raw.position_embedding_type != "absolute" {
            return Err(format!("position_embedding_type \"{}\" is not supported (only \"absolute\" is)", raw.position_embedding_type));
        }
        if raw.hidden_size == 0 || raw.num_attention_heads == 0 || raw.hidden_size % raw.num_attention_heads != 0 {
            return Err(format!("hidden_size {} is not a positive multiple of num_attention_heads {}", raw.hidden_size, raw.num_attention_heads));
        }
        for (name, value) in [("num_hidden_layers", raw.num_hidden_layers), ("intermediate_size", raw.intermediate_size), ("max_position_embeddings", raw.max_position_embeddings), ("vocab_size", raw.vocab_size), ("type_vocab_size", raw.type_vocab_size)] {
            if value == 0 {
                return Err(format!("{name} is 0"));
            }
        }
        Ok(BertConfig {
            hidden: raw.hidden_size,
            heads: raw.num_attention_heads,
            layers: raw.num_hidden_layers,
            intermediate: raw.intermediate_size,
            max_positions: raw.max_position_embeddings,
            vocab: raw.vocab_size,
            type_vocab: raw.type_vocab_size,
            layer_norm_eps: raw.layer_norm_eps as f32,
            activation,
        })
    }

    pub(crate) fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINILM: &str = r#"{"hidden_act": "gelu", "hidden_size": 384, "intermediate_size": 1536, "layer_norm_eps": 1e-12,
        "max_position_embeddings": 512, "num_attention_heads": 12, "num_hidden_layers": 6, "type_vocab_size": 2, "vocab_size": 30522}"#;

    #[test]
    fn a_bert_config_is_read() {
        let c = BertConfig::parse(MINILM).unwrap();
        assert_eq!((c.hidden, c.heads, c.layers, c.intermediate, c.head_dim()), (384, 12, 6, 1536, 32));
        assert_eq!(c.activation, Activation::Gelu);
    }

    #[test]
    fn unsupported_settings_are_named() {
        let e = BertConfig::parse(&MINILM.replace("\"gelu\"", "\"swish\"")).unwrap_err();
        assert!(e.contains("hidden_act \"swish\""), "{e}");
        let e = BertConfig::parse(&MINILM.replace("\"num_attention_heads\": 12", "\"num_attention_heads\": 7")).unwrap_err();
        assert!(e.contains("num_attention_heads 7"), "{e}");
        let e = BertConfig::parse(&MINILM.replace("}", ", \"position_embedding_type\": \"relative_key\"}")).unwrap_err();
        assert!(e.contains("relative_key"), "{e}");
        assert!(BertConfig::parse("{}").unwrap_err().contains("missing field"));
    }
}
