//! Fusing the ranked lists of a vector search and a text search into one (`hybrid_search`):
//! reciprocal rank fusion, or a weighted sum of each leg's normalised scores.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::security::limits::{at_most, MAX_EF, MAX_K};

/// How the two legs' rankings become one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fusion {
    /// Reciprocal rank fusion: a row scores `Σ 1 / (k + rank)` over the legs that found it.
    Rrf {
        /// The constant `k` (default 60): larger flattens the advantage of the top ranks.
        k: f64,
    },
    /// `vector · v + text · t`, where `v` and `t` are the row's scores in each leg scaled to
    /// [0, 1] over that leg's candidates (min–max; 0 where a leg did not find the row).
    Weighted {
        /// Weight of the vector leg.
        vector: f64,
        /// Weight of the text leg.
        text: f64,
    },
}

/// The default RRF constant.
pub const DEFAULT_RRF_K: f64 = 60.0;

impl Default for Fusion {
    /// Equal weights: measured on the known-item set (docs/BENCHMARKS.md), RRF cannot rank
    /// above its stronger leg when the legs differ much in quality (a vote from the weaker
    /// leg counts as much as one from the stronger), while normalised scores keep how far
    /// ahead a leg's best rows are.
    fn default() -> Self {
        Fusion::Weighted { vector: 0.5, text: 0.5 }
    }
}

/// What `hybrid_search`'s options string may say.
const OPTIONS: &str = "fusion (rrf or weighted), rrf_k, weights (VECTOR:TEXT), vector_weight, text_weight, candidates, ef";

/// `hybrid_search` options, from `'fusion = weighted, weights = 0.7:0.3, candidates = 100'`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HybridOptions {
    /// The fusion (default: weighted, 0.5 each).
    pub fusion: Fusion,
    /// Rows each leg retrieves before fusion (default: see [`HybridOptions::depth`]).
    pub candidates: Option<usize>,
    /// HNSW beam width of the vector leg.
    pub ef: Option<usize>,
}

impl HybridOptions {
    /// Parse `key = value` pairs separated by commas; every refusal names the option.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |message: String| Error::invalid("hybrid_search options", message);
        let mut options = HybridOptions::default();
        let (mut fusion, mut rrf_k, mut weights): (Option<String>, Option<f64>, (Option<f64>, Option<f64>)) = (None, None, (None, None));
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').ok_or_else(|| bad(format!("'{pair}' is not KEY = VALUE; the options are {OPTIONS}")))?;
            let (key, value) = (key.trim().to_ascii_lowercase(), value.trim().trim_matches('\'').trim());
            let number = |v: &str| -> Result<f64> {
                v.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0).ok_or_else(|| bad(format!("{key} = '{v}' is not a non-negative number")))
            };
            let whole = |v: &str| -> Result<usize> { v.parse::<usize>().ok().filter(|x| *x >= 1).ok_or_else(|| bad(format!("{key} = '{v}' is not a positive whole number"))) };
            match key.as_str() {
                "fusion" => fusion = Some(value.to_ascii_lowercase()),
                "rrf_k" => rrf_k = Some(number(value)?),
                "weights" => {
                    let (v, t) = value.split_once(':').ok_or_else(|| bad(format!("weights = '{value}': write VECTOR:TEXT, e.g. 0.7:0.3")))?;
                    weights = (Some(number(v.trim())?), Some(number(t.trim())?));
                }
                "vector_weight" => weights.0 = Some(number(value)?),
                "text_weight" => weights.1 = Some(number(value)?),
                "candidates" => {
                    let n = whole(value)?;
                    at_most("candidates", n, MAX_K)?;
                    options.candidates = Some(n);
                }
                "ef" => {
                    let n = whole(value)?;
                    at_most("ef", n, MAX_EF)?;
                    options.ef = Some(n);
                }
                other => return Err(bad(format!("unknown option '{other}'; the options are {OPTIONS}"))),
            }
        }
        let weighted = weights.0.is_some() || weights.1.is_some();
        options.fusion = match (fusion.as_deref(), weighted) {
            (Some("rrf"), true) => return Err(bad("weights apply to fusion = weighted, not rrf".into())),
            // RRF when named, or when only its constant is given.
            (Some("rrf"), false) | (None, false) if fusion.is_some() || rrf_k.is_some() => {
                let k = rrf_k.unwrap_or(DEFAULT_RRF_K);
                if k <= 0.0 || k > 1e6 {
                    return Err(bad(format!("rrf_k = {k}: give a number above 0 (default {DEFAULT_RRF_K})")));
                }
                Fusion::Rrf { k }
            }
            (Some("weighted") | None, _) => {
                if rrf_k.is_some() {
                    return Err(bad("rrf_k applies to fusion = rrf, not weighted".into()));
                }
                let (vector, text) = (weights.0.unwrap_or(0.5), weights.1.unwrap_or(0.5));
                if vector + text <= 0.0 {
                    return Err(bad("the weights are both 0; give at least one a positive weight".into()));
                }
                Fusion::Weighted { vector, text }
            }
            (Some(other), _) => return Err(bad(format!("fusion = '{other}': use rrf or weighted"))),
        };
        Ok(options)
    }

    /// Rows each leg retrieves for `k` results: `candidates`, or `max(k, 10)` (never fewer
    /// than `k`). Deeper legs did not rank better on the known-item set and cost time: RRF
    /// over 50 candidates per leg scored below RRF over 10, as rows that both legs rank
    /// low overtake rows one leg ranks first.
    pub fn depth(&self, k: usize) -> usize {
        self.candidates.unwrap_or(k.max(10)).max(k)
    }
}

/// One fused row: its key, fused score and where each leg ranked it (rank from 1, and the
/// leg's own distance or score).
#[derive(Debug, Clone, PartialEq)]
pub struct Fused {
    /// The row's key.
    pub key: u64,
    /// The fused score (higher is better).
    pub score: f64,
    /// (rank, distance) in the vector leg.
    pub vector: Option<(usize, f32)>,
    /// (rank, BM25 score) in the text leg.
    pub text: Option<(usize, f32)>,
}

/// Fuse `vector` (key, distance; best first) and `text` (key, score; best first) and keep
/// the best `k`. Ties go to the smaller `tie_rank` (the row's id order).
pub fn fuse(vector: &[(u64, f32)], text: &[(u64, f32)], fusion: Fusion, k: usize, tie_rank: impl Fn(u64) -> u64) -> Vec<Fused> {
    let mut rows: HashMap<u64, Fused> = HashMap::with_capacity(vector.len() + text.len());
    for (rank, (key, distance)) in vector.iter().enumerate() {
        rows.entry(*key).or_insert(Fused { key: *key, score: 0.0, vector: None, text: None }).vector = Some((rank + 1, *distance));
    }
    for (rank, (key, score)) in text.iter().enumerate() {
        rows.entry(*key).or_insert(Fused { key: *key, score: 0.0, vector: None, text: None }).text = Some((rank + 1, *score));
    }
    match fusion {
        Fusion::Rrf { k: c } => {
            for row in rows.values_mut() {
                row.score = [row.vector, row.text].iter().flatten().map(|(rank, _)| 1.0 / (c + *rank as f64)).sum();
            }
        }
        Fusion::Weighted { vector: wv, text: wt } => {
            // Smaller distances are better: scale so the closest candidate scores 1.
            let scale = |values: &mut dyn Iterator<Item = f32>| values.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
            let (d_lo, d_hi) = scale(&mut vector.iter().map(|v| v.1));
            let (s_lo, s_hi) = scale(&mut text.iter().map(|t| t.1));
            // 1 for the leg's best candidate, 0 for its worst (1 when they are equal).
            let unit = |best: f32, worst: f32, v: f32| if best != worst { f64::from((v - worst) / (best - worst)) } else { 1.0 };
            for row in rows.values_mut() {
                let v = row.vector.map_or(0.0, |(_, d)| unit(d_lo, d_hi, d));
                let t = row.text.map_or(0.0, |(_, s)| unit(s_hi, s_lo, s));
                row.score = wv * v + wt * t;
            }
        }
    }
    let mut fused: Vec<Fused> = rows.into_values().collect();
    fused.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| tie_rank(a.key).cmp(&tie_rank(b.key))));
    fused.truncate(k);
    fused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrf_ranks_rows_both_legs_found_first() {
        let vector = [(1, 0.1), (2, 0.2), (3, 0.3)];
        let text = [(3, 9.0), (4, 8.0), (1, 7.0)];
        let rrf = Fusion::Rrf { k: DEFAULT_RRF_K };
        let fused = fuse(&vector, &text, rrf, 10, |k| k);
        let keys: Vec<u64> = fused.iter().map(|f| f.key).collect();
        // 1: 1/61 + 1/63; 3: 1/63 + 1/61 (tie → smaller id first); then 2 (1/62) and 4 (1/62).
        assert_eq!(keys, vec![1, 3, 2, 4]);
        assert!((fused[0].score - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-12);
        assert_eq!(fused[0].vector, Some((1, 0.1)));
        assert_eq!(fused[0].text, Some((3, 7.0)));
        assert_eq!(fused[3].vector, None);
        assert_eq!(fuse(&vector, &text, rrf, 2, |k| k).len(), 2);
        // A small constant favours each leg's top rows.
        let sharp = fuse(&[(1, 0.1), (2, 0.2)], &[(2, 5.0), (3, 4.0)], Fusion::Rrf { k: 1.0 }, 3, |k| k);
        assert_eq!(sharp[0].key, 2);
    }

    #[test]
    fn weighted_fusion_scales_each_leg_and_follows_the_weights() {
        let vector = [(1, 0.0), (2, 0.5), (3, 1.0)];
        let text = [(3, 10.0), (2, 5.0), (4, 0.0)];
        let text_heavy = fuse(&vector, &text, Fusion::Weighted { vector: 0.1, text: 0.9 }, 10, |k| k);
        assert_eq!(text_heavy[0].key, 3);
        let vector_heavy = fuse(&vector, &text, Fusion::Weighted { vector: 0.9, text: 0.1 }, 10, |k| k);
        assert_eq!(vector_heavy[0].key, 1);
        // Row 2 is the middle of both legs: 0.5 · 0.5 + 0.5 · 0.5.
        let even = fuse(&vector, &text, Fusion::Weighted { vector: 0.5, text: 0.5 }, 10, |k| k);
        let two = even.iter().find(|f| f.key == 2).unwrap();
        assert!((two.score - 0.5).abs() < 1e-9, "{even:?}");
        // One candidate per leg: it scores the whole weight.
        let single = fuse(&[(7, 0.3)], &[], Fusion::Weighted { vector: 0.4, text: 0.6 }, 10, |k| k);
        assert!((single[0].score - 0.4).abs() < 1e-9);
    }

    #[test]
    fn options_parse_and_refuse_clearly() {
        assert_eq!(HybridOptions::parse("").unwrap(), HybridOptions::default());
        assert_eq!(HybridOptions::default().fusion, Fusion::Weighted { vector: 0.5, text: 0.5 });
        assert_eq!(HybridOptions::parse("rrf_k = 10").unwrap().fusion, Fusion::Rrf { k: 10.0 });
        assert_eq!(HybridOptions::parse("fusion = rrf").unwrap().fusion, Fusion::Rrf { k: 60.0 });
        assert_eq!(HybridOptions::parse("fusion=weighted").unwrap().fusion, Fusion::Weighted { vector: 0.5, text: 0.5 });
        assert_eq!(HybridOptions::parse("weights = 0.7:0.3").unwrap().fusion, Fusion::Weighted { vector: 0.7, text: 0.3 });
        assert_eq!(HybridOptions::parse("fusion = weighted, text_weight = 2").unwrap().fusion, Fusion::Weighted { vector: 0.5, text: 2.0 });
        let o = HybridOptions::parse("candidates = 100, ef = 200").unwrap();
        assert_eq!((o.candidates, o.ef, o.depth(10)), (Some(100), Some(200), 100));
        assert_eq!(HybridOptions::default().depth(10), 10);
        assert_eq!(HybridOptions::default().depth(3), 10);
        assert_eq!(HybridOptions::default().depth(100), 100);
        assert_eq!(HybridOptions::parse("candidates = 5").unwrap().depth(8), 8);
        for (text, needle) in [
            ("fusion = magic", "use rrf or weighted"),
            ("rrf_k = -1", "non-negative"),
            ("rrf_k = 0", "above 0"),
            ("colour = red", "unknown option 'colour'"),
            ("weights = 0.5", "VECTOR:TEXT"),
            ("weights = 0:0", "both 0"),
            ("fusion = rrf, weights = 1:1", "fusion = weighted"),
            ("fusion = weighted, rrf_k = 5", "fusion = rrf"),
            ("candidates = 0", "positive whole number"),
            ("candidates = 20000", "candidates"),
            ("nonsense", "KEY = VALUE"),
        ] {
            let e = HybridOptions::parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
