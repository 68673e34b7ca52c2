//! The forward pass over a packed batch: the tokens of several texts one after another, with
//! no padding. Every projection is one `[tokens × in]·[in × out]` product over the whole
//! batch; only attention looks at text boundaries (each text attends to its own tokens).
//!
//! The pass is compiled three times — for AVX-512, for AVX2+FMA and for the baseline — and
//! the best one the CPU supports is chosen at run time, so one binary is fast everywhere.

use crate::config::{Activation, BertConfig};
use crate::kernels::{self, axpy, fill_rows, layer_norm, matmul_add, softmax};
use crate::weights::Weights;
use crate::Pooling;

/// Token ids and token types of several texts, concatenated; `lengths` splits them.
pub(crate) struct Packed {
    pub ids: Vec<u32>,
    pub types: Vec<u32>,
    pub lengths: Vec<usize>,
}

/// One pooled `hidden`-wide vector per text of `batch`, in order, as one flat vector.
/// `threads` > 1 lets the matrix products of this one batch use several threads.
pub(crate) fn forward(weights: &Weights, config: &BertConfig, batch: &Packed, pooling: Pooling, threads: usize) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vl") && std::arch::is_x86_feature_detected!("avx512dq") {
            // SAFETY: the CPU has the features the variant is compiled for (checked above).
            return unsafe { forward_avx512(weights, config, batch, pooling, threads) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { forward_avx2(weights, config, batch, pooling, threads) };
        }
    }
    forward_any(weights, config, batch, pooling, threads)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
unsafe fn forward_avx512(weights: &Weights, config: &BertConfig, batch: &Packed, pooling: Pooling, threads: usize) -> Vec<f32> {
    forward_any(weights, config, batch, pooling, threads)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_avx2(weights: &Weights, config: &BertConfig, batch: &Packed, pooling: Pooling, threads: usize) -> Vec<f32> {
    forward_any(weights, config, batch, pooling, threads)
}

#[inline(always)]
fn forward_any(weights: &Weights, config: &BertConfig, batch: &Packed, pooling: Pooling, threads: usize) -> Vec<f32> {
    let h = config.hidden;
    let n = batch.ids.len();
    let mut x = vec![0.0f32; n * h];
    embed(weights, config, batch, &mut x);
    let mut qkv = vec![0.0f32; n * 3 * h];
    let mut context = vec![0.0f32; n * h];
    let mut residual = vec![0.0f32; n * h];
    let mut inner = vec![0.0f32; n * config.intermediate];
    let mut scratch = AttentionScratch::default();
    for layer in &weights.layers {
        fill_rows(&mut qkv, &layer.qkv_bias, None);
        matmul_add(&mut qkv, &x, &layer.qkv, n, h, 3 * h, threads);
        attention(config, &batch.lengths, &qkv, &mut context, &mut scratch);
        // residual = LayerNorm(x + context·Wo + bo)
        fill_rows(&mut residual, &layer.attn_out_bias, Some(&x));
        matmul_add(&mut residual, &context, &layer.attn_out, n, h, h, threads);
        layer_norm(&mut residual, &layer.attn_norm.weight, &layer.attn_norm.bias, config.layer_norm_eps);
        // x = LayerNorm(residual + act(residual·Wu + bu)·Wd + bd)
        fill_rows(&mut inner, &layer.up_bias, None);
        matmul_add(&mut inner, &residual, &layer.up, n, h, config.intermediate, threads);
        match config.activation {
            Activation::Gelu => kernels::gelu(&mut inner),
            Activation::GeluTanh => kernels::gelu_tanh(&mut inner),
            Activation::Relu => kernels::relu(&mut inner),
        }
        fill_rows(&mut x, &layer.down_bias, Some(&residual));
        matmul_add(&mut x, &inner, &layer.down, n, config.intermediate, h, threads);
        layer_norm(&mut x, &layer.out_norm.weight, &layer.out_norm.bias, config.layer_norm_eps);
    }
    pool(&x, h, &batch.lengths, pooling)
}

/// Word + position + token-type embeddings, normalised.
#[inline(always)]
fn embed(weights: &Weights, config: &BertConfig, batch: &Packed, x: &mut [f32]) {
    let h = config.hidden;
    let mut token = 0;
    for &length in &batch.lengths {
        for position in 0..length {
            let id = batch.ids[token] as usize;
            let kind = batch.types[token] as usize;
            let row = &mut x[token * h..(token + 1) * h];
            row.copy_from_slice(&weights.words[id * h..(id + 1) * h]);
            axpy(row, 1.0, &weights.positions[position * h..(position + 1) * h]);
            axpy(row, 1.0, &weights.token_types[kind * h..(kind + 1) * h]);
            token += 1;
        }
    }
    layer_norm(x, &weights.embed_norm.weight, &weights.embed_norm.bias, config.layer_norm_eps);
}

#[derive(Default)]
struct AttentionScratch {
    /// One head's keys of one text, transposed and zero-padded to whole blocks:
    /// `[head_dim × padded tokens]`.
    keys: Vec<f32>,
    scores: Vec<f32>,
}

/// Width of the register blocks below: one AVX-512 vector (two AVX2 ones).
const BLOCK: usize = 16;
/// Query rows handled together: their sums are independent, so the CPU overlaps them, and
/// each key or value vector loaded serves all of them.
const ROWS: usize = 4;

/// Scaled dot-product attention of each text over its own tokens, head by head:
/// `context = softmax(Q·Kᵀ/√d)·V`.
#[inline(always)]
fn attention(config: &BertConfig, lengths: &[usize], qkv: &[f32], context: &mut [f32], scratch: &mut AttentionScratch) {
    let h = config.hidden;
    let d = config.head_dim();
    let mut start = 0;
    for &tokens in lengths {
        let padded = tokens.next_multiple_of(BLOCK);
        scratch.keys.clear();
        scratch.keys.resize(d * padded, 0.0);
        scratch.scores.resize(ROWS * padded, 0.0);
        for head in 0..config.heads {
            let at = Head { h, d, padded, start, tokens, q: head * d, k: h + head * d, v: 2 * h + head * d };
            for j in 0..tokens {
                let key = &qkv[(start + j) * 3 * h + at.k..][..d];
                for (c, &k) in key.iter().enumerate() {
                    scratch.keys[c * padded + j] = k;
                }
            }
            let mut i = 0;
            while i + ROWS <= tokens {
                attend_rows::<ROWS>(&at, i, qkv, &scratch.keys, &mut scratch.scores, context);
                i += ROWS;
            }
            while i < tokens {
                attend_rows::<1>(&at, i, qkv, &scratch.keys, &mut scratch.scores, context);
                i += 1;
            }
        }
        start += tokens;
    }
}

/// Where one head of one text lies in the packed `qkv` rows (`3·h` wide).
struct Head {
    h: usize,
    d: usize,
    padded: usize,
    start: usize,
    tokens: usize,
    /// Column offsets of the head's query, key and value parts.
    q: usize,
    k: usize,
    v: usize,
}

/// Attention outputs of `R` consecutive query rows from `first`: scores against the
/// transposed keys in `BLOCK`-wide register sums, softmax, then the value rows weighted by
/// the scores, again `BLOCK` outputs at a time in registers (a sum kept in memory would make
/// every step wait for the last one's store).
#[inline(always)]
fn attend_rows<const R: usize>(at: &Head, first: usize, qkv: &[f32], keys: &[f32], scores: &mut [f32], context: &mut [f32]) {
    let stride = 3 * at.h;
    let scale = 1.0 / (at.d as f32).sqrt();
    let queries: [&[f32]; R] = std::array::from_fn(|r| &qkv[(at.start + first + r) * stride + at.q..][..at.d]);
    for block in (0..at.padded).step_by(BLOCK) {
        let mut acc = [[0.0f32; BLOCK]; R];
        for c in 0..at.d {
            let key = &keys[c * at.padded + block..][..BLOCK];
            for r in 0..R {
                let q = queries[r][c];
                for (a, k) in acc[r].iter_mut().zip(key) {
                    *a = q.mul_add(*k, *a);
                }
            }
        }
        for (r, sums) in acc.iter().enumerate() {
            for (s, a) in scores[r * at.padded + block..][..BLOCK].iter_mut().zip(sums) {
                *s = a * scale;
            }
        }
    }
    for r in 0..R {
        softmax(&mut scores[r * at.padded..][..at.tokens]);
    }
    let whole = at.d - at.d % BLOCK;
    for block in (0..whole).step_by(BLOCK) {
        let mut acc = [[0.0f32; BLOCK]; R];
        for j in 0..at.tokens {
            let value = &qkv[(at.start + j) * stride + at.v + block..][..BLOCK];
            for r in 0..R {
                let p = scores[r * at.padded + j];
                for (a, v) in acc[r].iter_mut().zip(value) {
                    *a = p.mul_add(*v, *a);
                }
            }
        }
        for (r, sums) in acc.iter().enumerate() {
            context[(at.start + first + r) * at.h + at.q + block..][..BLOCK].copy_from_slice(sums);
        }
    }
    // A head width that is not a whole number of blocks: the rest, plainly.
    if whole < at.d {
        for r in 0..R {
            let out = &mut context[(at.start + first + r) * at.h + at.q + whole..][..at.d - whole];
            out.fill(0.0);
            for j in 0..at.tokens {
                axpy(out, scores[r * at.padded + j], &qkv[(at.start + j) * stride + at.v + whole..][..at.d - whole]);
            }
        }
    }
}

/// One vector per text: the mean of its tokens, or its first token.
#[inline(always)]
fn pool(x: &[f32], h: usize, lengths: &[usize], pooling: Pooling) -> Vec<f32> {
    let mut out = vec![0.0f32; lengths.len() * h];
    let mut start = 0;
    for (text, &tokens) in lengths.iter().enumerate() {
        let dst = &mut out[text * h..(text + 1) * h];
        match pooling {
            Pooling::Cls => dst.copy_from_slice(&x[start * h..(start + 1) * h]),
            Pooling::Mean => {
                for t in start..start + tokens {
                    axpy(dst, 1.0, &x[t * h..(t + 1) * h]);
                }
                let inv = 1.0 / tokens.max(1) as f32;
                dst.iter_mut().for_each(|v| *v *= inv);
            }
        }
        start += tokens;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Activation;
    use crate::weights::{Layer, Norm};

    /// Deterministic values in [−1, 1).
    fn noise(seed: u64, len: usize) -> Vec<f32> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn config(hidden: usize, heads: usize) -> BertConfig {
        BertConfig { hidden, heads, layers: 2, intermediate: 2 * hidden, max_positions: 64, vocab: 50, type_vocab: 2, layer_norm_eps: 1e-12, activation: Activation::Gelu }
    }

    #[test]
    fn attention_matches_its_definition_for_any_head_width() {
        let lengths = [5usize, 17, 1, 4];
        let tokens: usize = lengths.iter().sum();
        // Head widths 32 (two whole register blocks) and 20 (one block and a rest).
        for (hidden, heads) in [(64, 2), (40, 2)] {
            let c = config(hidden, heads);
            let d = c.head_dim();
            let qkv = noise(hidden as u64, tokens * 3 * hidden);
            let mut context = vec![f32::NAN; tokens * hidden];
            attention(&c, &lengths, &qkv, &mut context, &mut AttentionScratch::default());
            let mut start = 0;
            for &n in &lengths {
                for head in 0..heads {
                    for i in 0..n {
                        let at = |t: usize, part: usize, k: usize| qkv[(start + t) * 3 * hidden + part * hidden + head * d + k] as f64;
                        let scores: Vec<f64> = (0..n).map(|j| (0..d).map(|k| at(i, 0, k) * at(j, 1, k)).sum::<f64>() / (d as f64).sqrt()).collect();
                        let top = scores.iter().cloned().fold(f64::MIN, f64::max);
                        let total: f64 = scores.iter().map(|s| (s - top).exp()).sum();
                        for k in 0..d {
                            let want: f64 = (0..n).map(|j| (scores[j] - top).exp() / total * at(j, 2, k)).sum();
                            let got = context[(start + i) * hidden + head * d + k] as f64;
                            assert!((got - want).abs() < 1e-5, "hidden {hidden}, text at {start}, head {head}, row {i}, column {k}: {got} vs {want}");
                        }
                    }
                }
                start += n;
            }
        }
    }

    fn tiny_model(c: &BertConfig) -> Weights {
        let (h, m) = (c.hidden, c.intermediate);
        let norm = |seed| Norm { weight: noise(seed, h).iter().map(|x| 1.0 + 0.1 * x).collect(), bias: noise(seed + 1, h) };
        let layers = (0..c.layers as u64)
            .map(|l| Layer {
                qkv: noise(10 * l + 1, h * 3 * h),
                qkv_bias: noise(10 * l + 2, 3 * h),
                attn_out: noise(10 * l + 3, h * h),
                attn_out_bias: noise(10 * l + 4, h),
                attn_norm: norm(10 * l + 5),
                up: noise(10 * l + 6, h * m),
                up_bias: noise(10 * l + 7, m),
                down: noise(10 * l + 8, m * h),
                down_bias: noise(10 * l + 9, h),
                out_norm: norm(10 * l + 10),
            })
            .collect();
        Weights { words: noise(100, c.vocab * h), positions: noise(101, c.max_positions * h), token_types: noise(102, c.type_vocab * h), embed_norm: norm(103), layers }
    }

    /// Every compiled variant this CPU can run gives the same vectors (to rounding).
    #[test]
    fn the_instruction_set_variants_agree() {
        let c = config(48, 3);
        let weights = tiny_model(&c);
        let lengths = vec![7usize, 1, 20];
        let total: usize = lengths.iter().sum();
        let batch = Packed { ids: (0..total as u32).map(|i| (i * 7) % 50).collect(), types: vec![0; total], lengths };
        for pooling in [Pooling::Mean, Pooling::Cls] {
            let baseline = forward_any(&weights, &c, &batch, pooling, 1);
            assert_eq!(baseline.len(), 3 * 48);
            assert!(baseline.iter().all(|x| x.is_finite()));
            let threaded = forward(&weights, &c, &batch, pooling, 2);
            let mut variants = vec![("dispatched, 2 threads", threaded)];
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    variants.push(("avx2", unsafe { forward_avx2(&weights, &c, &batch, pooling, 1) }));
                }
                if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vl") && std::arch::is_x86_feature_detected!("avx512dq") {
                    variants.push(("avx512", unsafe { forward_avx512(&weights, &c, &batch, pooling, 1) }));
                }
            }
            for (name, vectors) in variants {
                for (a, b) in vectors.iter().zip(&baseline) {
                    assert!((a - b).abs() < 1e-4, "{name} ({pooling:?}): {a} vs baseline {b}");
                }
            }
        }
    }
}
