//! The encoder's weights, read from `model.safetensors` and laid out for the forward pass:
//! every projection transposed to `[inputs × outputs]` row-major (what the matrix kernel
//! reads fastest), and the query, key and value projections side by side so one product
//! makes all three.

use safetensors::{Dtype, SafeTensors};

use crate::config::BertConfig;

/// One transformer layer.
pub(crate) struct Layer {
    /// `[hidden × 3·hidden]`: query | key | value.
    pub qkv: Vec<f32>,
    pub qkv_bias: Vec<f32>,
    /// `[hidden × hidden]`.
    pub attn_out: Vec<f32>,
    pub attn_out_bias: Vec<f32>,
    pub attn_norm: Norm,
    /// `[hidden × intermediate]`.
    pub up: Vec<f32>,
    pub up_bias: Vec<f32>,
    /// `[intermediate × hidden]`.
    pub down: Vec<f32>,
    pub down_bias: Vec<f32>,
    pub out_norm: Norm,
}

/// A layer normalisation's scale and shift.
pub(crate) struct Norm {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

pub(crate) struct Weights {
    /// `[vocab × hidden]`.
    pub words: Vec<f32>,
    /// `[max_positions × hidden]`.
    pub positions: Vec<f32>,
    /// `[type_vocab × hidden]`.
    pub token_types: Vec<f32>,
    pub embed_norm: Norm,
    pub layers: Vec<Layer>,
}

/// Reads named tensors as f32, checking shapes; the error names the tensor.
struct Reader<'a> {
    tensors: SafeTensors<'a>,
    /// `""` or `"bert."`: checkpoints saved from a task model prefix the encoder's names.
    prefix: &'static str,
}

impl Reader<'_> {
    fn read(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        let full = format!("{}{name}", self.prefix);
        let view = self.tensors.tensor(&full).map_err(|_| format!("tensor {full} is missing"))?;
        if view.shape() != shape {
            return Err(format!("tensor {full} has shape {:?}; the config says {shape:?}", view.shape()));
        }
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => data.chunks_exact(2).map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect(),
            Dtype::BF16 => data.chunks_exact(2).map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)).collect(),
            other => return Err(format!("tensor {full} is {other:?}; F32, F16 and BF16 are supported")),
        };
        Ok(values)
    }

    /// A layer normalisation; older checkpoints call its parts gamma and beta.
    fn norm(&self, name: &str, hidden: usize) -> Result<Norm, String> {
        let weight = self.read(&format!("{name}.weight"), &[hidden]).or_else(|e| self.read(&format!("{name}.gamma"), &[hidden]).map_err(|_| e))?;
        let bias = self.read(&format!("{name}.bias"), &[hidden]).or_else(|e| self.read(&format!("{name}.beta"), &[hidden]).map_err(|_| e))?;
        Ok(Norm { weight, bias })
    }

    /// A linear layer stored as PyTorch does, `[outputs × inputs]`, returned transposed.
    fn linear(&self, name: &str, inputs: usize, outputs: usize) -> Result<(Vec<f32>, Vec<f32>), String> {
        let weight = self.read(&format!("{name}.weight"), &[outputs, inputs])?;
        let bias = self.read(&format!("{name}.bias"), &[outputs])?;
        Ok((transpose(&weight, outputs, inputs), bias))
    }
}

/// `[rows × cols]` → `[cols × rows]`.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

/// IEEE half → single precision (normals, subnormals, infinities, NaN).
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exponent = ((h >> 10) & 0x1f) as u32;
    let mantissa = (h & 0x3ff) as u32;
    let bits = match (exponent, mantissa) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: shift the mantissa up until its leading one is the implicit bit.
            let shift = m.leading_zeros() - 21;
            sign | ((113 - shift) << 23) | (((m << shift) & 0x3ff) << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

impl Weights {
    /// Read every tensor the forward pass uses from the bytes of a safetensors file.
    pub(crate) fn read(bytes: &[u8], config: &BertConfig) -> Result<Self, String> {
        let tensors = SafeTensors::deserialize(bytes).map_err(|e| format!("not a safetensors file: {e}"))?;
        let prefix = if tensors.tensor("embeddings.word_embeddings.weight").is_ok() { "" } else { "bert." };
        let r = Reader { tensors, prefix };
        let h = config.hidden;
        let words = r.read("embeddings.word_embeddings.weight", &[config.vocab, h])?;
        let positions = r.read("embeddings.position_embeddings.weight", &[config.max_positions, h])?;
        let token_types = r.read("embeddings.token_type_embeddings.weight", &[config.type_vocab, h])?;
        let embed_norm = r.norm("embeddings.LayerNorm", h)?;
        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let at = |part: &str| format!("encoder.layer.{i}.{part}");
            let (q, q_bias) = r.linear(&at("attention.self.query"), h, h)?;
            let (k, k_bias) = r.linear(&at("attention.self.key"), h, h)?;
            let (v, v_bias) = r.linear(&at("attention.self.value"), h, h)?;
            let mut qkv = Vec::with_capacity(3 * h * h);
            for row in 0..h {
                for part in [&q, &k, &v] {
                    qkv.extend_from_slice(&part[row * h..(row + 1) * h]);
                }
            }
            let qkv_bias = [q_bias, k_bias, v_bias].concat();
            let (attn_out, attn_out_bias) = r.linear(&at("attention.output.dense"), h, h)?;
            let attn_norm = r.norm(&at("attention.output.LayerNorm"), h)?;
            let (up, up_bias) = r.linear(&at("intermediate.dense"), h, config.intermediate)?;
            let (down, down_bias) = r.linear(&at("output.dense"), config.intermediate, h)?;
            let out_norm = r.norm(&at("output.LayerNorm"), h)?;
            layers.push(Layer { qkv, qkv_bias, attn_out, attn_out_bias, attn_norm, up, up_bias, down, down_bias, out_norm });
        }
        Ok(Weights { words, positions, token_types, embed_norm, layers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_convert_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x0200), 2f32.powi(-15));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn transpose_swaps_rows_and_columns() {
        assert_eq!(transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }
}
