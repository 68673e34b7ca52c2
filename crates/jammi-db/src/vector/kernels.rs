//! Distance kernels and streaming top-k.
//!
//! The loops work on fixed 16-lane blocks with independent accumulators so the compiler
//! vectorises them; the same functions serve exact search and rescoring, which is what
//! keeps `_distance` identical across search paths.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::spec::Metric;

const LANES: usize = 16;

/// Sum of `term(a_i, b_i)` over 16 independent lanes, so the compiler vectorises the loop.
#[inline(always)]
fn lane_sum(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let blocks = n / LANES;
    for i in 0..blocks {
        let x = &a[i * LANES..(i + 1) * LANES];
        let y = &b[i * LANES..(i + 1) * LANES];
        for j in 0..LANES {
            acc[j] += term(x[j], y[j]);
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in blocks * LANES..n {
        sum += term(a[i], b[i]);
    }
    sum
}

/// Dot product.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    lane_sum(a, b, |x, y| x * y)
}

/// Squared Euclidean distance.
#[inline]
pub fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    lane_sum(a, b, |x, y| (x - y) * (x - y))
}

/// Normalise in place to unit length (zero vectors stay zero).
pub fn normalize(v: &mut [f32]) {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 {
        for x in v.iter_mut() {
            *x /= norm;
        }
    }
}

/// Ask the CPU to start reading `row` into its cache: a hint for scans that jump between
/// rows, where waiting on memory, not arithmetic, is the cost. No effect off x86-64.
#[inline(always)]
pub fn prefetch(row: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in row.chunks(16) {
        // SAFETY: a prefetch is only a hint; it never faults, and the address is in `row`.
        #[allow(unused_unsafe)]
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line.as_ptr().cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// Distance between a prepared query and a stored vector. For cosine both sides are
/// already unit length, so it is `1 - q·v`.
#[inline]
pub fn distance(metric: Metric, query: &[f32], stored: &[f32]) -> f32 {
    match metric {
        Metric::Cosine | Metric::Ip => 1.0 - dot(query, stored),
        Metric::L2 => l2sq(query, stored),
    }
}

/// A scored row: ordered by distance, then by the rank of its id (ascending id).
#[derive(Debug, Clone, Copy)]
pub struct Scored {
    /// Distance to the query.
    pub distance: f32,
    /// Position of the row's id in ascending id order (the tie-breaker).
    pub id_rank: u64,
    /// Index key of the row.
    pub key: u64,
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance.total_cmp(&other.distance).then(self.id_rank.cmp(&other.id_rank))
    }
}

/// Keeps the `k` best rows seen so far in O(log k) per row.
#[derive(Debug)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Scored>,
}

impl TopK {
    /// An empty top-`k`.
    pub fn new(k: usize) -> Self {
        TopK { k, heap: BinaryHeap::with_capacity(k + 1) }
    }

    /// The distance a row must beat to enter, once full.
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.heap.len() < self.k { f32::INFINITY } else { self.heap.peek().map(|s| s.distance).unwrap_or(f32::INFINITY) }
    }

    /// Offer a row.
    #[inline]
    pub fn push(&mut self, s: Scored) {
        if self.k == 0 {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(s);
        } else if let Some(worst) = self.heap.peek() {
            if s < *worst {
                self.heap.pop();
                self.heap.push(s);
            }
        }
    }

    /// Best first.
    pub fn into_sorted(self) -> Vec<Scored> {
        self.heap.into_sorted_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_match_naive() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32).sin()).collect();
        let naive_dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let naive_l2: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
        assert!((dot(&a, &b) - naive_dot).abs() < 1e-3);
        assert!((l2sq(&a, &b) - naive_l2).abs() < 1e-3);
    }

    #[test]
    fn top_k_breaks_ties_by_id_rank() {
        let mut top = TopK::new(2);
        for (d, r) in [(0.5, 9), (0.1, 5), (0.5, 2), (0.9, 1)] {
            top.push(Scored { distance: d, id_rank: r, key: r });
        }
        let got: Vec<_> = top.into_sorted().iter().map(|s| s.id_rank).collect();
        assert_eq!(got, vec![5, 2]);
    }
}
