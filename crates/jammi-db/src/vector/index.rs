//! HNSW segments on usearch: build from f32 vectors, serialise, load.

use usearch::{b1x8, Index, IndexOptions, MetricKind, ScalarKind};

use super::spec::{Metric, Precision, VectorTableSpec};
use crate::error::{Error, Result};

/// Default search beam width when the caller gives none.
pub const DEFAULT_EF_SEARCH: usize = 64;

fn options(spec: &VectorTableSpec) -> IndexOptions {
    let (metric, quantization) = match spec.precision {
        // Sign bits compared by Hamming distance; rescoring restores the real metric.
        Precision::Binary => (MetricKind::Hamming, ScalarKind::B1),
        other => {
            let metric = match spec.metric {
                // Vectors are normalised before they are added and queries before they are
                // searched, so cosine distance is 1 − inner product: one multiply-add per
                // dimension instead of three (the dot product and both norms, every time).
                // Indexes built before keep `Cos` in their file header, which loading obeys.
                Metric::Cosine => MetricKind::IP,
                Metric::L2 => MetricKind::L2sq,
                Metric::Ip => MetricKind::IP,
            };
            let scalar = match other {
                Precision::F16 => ScalarKind::F16,
                Precision::Int8 => ScalarKind::I8,
                _ => ScalarKind::F32,
            };
            (metric, scalar)
        }
    };
    IndexOptions {
        dimensions: if spec.precision == Precision::Binary { spec.dims.div_ceil(8) * 8 } else { spec.dims },
        metric,
        quantization,
        connectivity: spec.m,
        expansion_add: spec.ef_construction,
        expansion_search: DEFAULT_EF_SEARCH,
        multi: false,
    }
}

fn index_error(e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("vector index: {e}"))
}

/// An HNSW index over one segment.
pub struct SegmentIndex {
    index: Index,
    binary: bool,
    /// Cosine tables: vectors are normalised as they are added (see [`options`]).
    normalize: bool,
    dims: usize,
    /// usearch keeps the search beam width (`ef`) as a setting of the index, not an
    /// argument of a search. Searches hold this lock shared while the setting is theirs;
    /// one that needs another `ef` takes it exclusively to change it, so concurrent
    /// searches never run with each other's `ef`.
    ef: parking_lot::RwLock<usize>,
}

impl std::fmt::Debug for SegmentIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentIndex").field("size", &self.index.size()).finish()
    }
}

/// Pack the signs of `v` into bits (for the binary precision).
fn sign_bits(v: &[f32]) -> Vec<u8> {
    let mut bits = vec![0u8; v.len().div_ceil(8)];
    for (i, x) in v.iter().enumerate() {
        if *x > 0.0 {
            bits[i / 8] |= 1 << (i % 8);
        }
    }
    bits
}

impl SegmentIndex {
    /// Build over `vectors` (row-major, `dims` wide); row `i` gets key `base_key + i`.
    /// `progress` is called with the number of rows added so far.
    pub fn build(
        spec: &VectorTableSpec,
        vectors: &[f32],
        base_key: u64,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Self> {
        // An 8-bit graph holds values in [-1, 1]: cosine tables are normalised, but l2 and ip
        // vectors may lie anywhere, and would be clipped into a graph that finds the wrong
        // neighbours.
        if spec.precision == Precision::Int8 && spec.metric != Metric::Cosine {
            if let Some(v) = vectors.iter().find(|v| v.abs() > 1.0) {
                return Err(Error::invalid("precision", format!(
                    "int8 holds values in [-1, 1] and these {} vectors have {v}; use precision f32 (or f16), or the cosine metric",
                    spec.metric
                )));
            }
        }
        let index = Index::new(&options(spec)).map_err(index_error)?;
        let dims = spec.dims;
        let rows = vectors.len() / dims;
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(16);
        index.reserve_capacity_and_threads(rows, threads).map_err(index_error)?;
        let built = SegmentIndex { index, binary: spec.precision == Precision::Binary, normalize: spec.metric == Metric::Cosine, dims, ef: parking_lot::RwLock::new(DEFAULT_EF_SEARCH) };
        let done = std::sync::atomic::AtomicU64::new(0);
        let chunk = rows.div_ceil(threads).max(1);
        std::thread::scope(|scope| -> Result<()> {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let built = &built;
                    let done = &done;
                    scope.spawn(move || -> Result<()> {
                        let start = t * chunk;
                        let end = ((t + 1) * chunk).min(rows);
                        for row in start..end {
                            built.add(base_key + row as u64, &vectors[row * dims..(row + 1) * dims])?;
                            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                            if n % 1024 == 0 {
                                progress(n);
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in handles {
                h.join().map_err(|_| index_error("an index build thread panicked"))??;
            }
            Ok(())
        })?;
        progress(rows as u64);
        Ok(built)
    }

    fn add(&self, key: u64, vector: &[f32]) -> Result<()> {
        if self.binary {
            let bits = sign_bits(vector);
            self.index.add(key, b1x8::from_u8s(&bits)).map_err(index_error)
        } else if self.normalize {
            let mut unit = vector.to_vec();
            super::kernels::normalize(&mut unit);
            self.index.add(key, unit.as_slice()).map_err(index_error)
        } else {
            self.index.add(key, vector).map_err(index_error)
        }
    }

    /// Serialise to bytes (the `index.usearch` file).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; self.index.serialized_length()];
        self.index.save_to_buffer(&mut buf).map_err(index_error)?;
        Ok(buf)
    }

    /// Load from bytes written by [`SegmentIndex::to_bytes`].
    pub fn from_bytes(spec: &VectorTableSpec, bytes: &[u8]) -> Result<Self> {
        let index = Index::new(&options(spec)).map_err(index_error)?;
        index.load_from_buffer(bytes).map_err(index_error)?;
        Ok(Self::serving(index, spec))
    }

    /// Map the index file at `path` (written by [`SegmentIndex::to_bytes`]) instead of copying
    /// it into memory: the graph and its vectors are read in place, and a process holds only
    /// the pages its searches touch. Segment files never change once written.
    pub fn view(spec: &VectorTableSpec, path: &std::path::Path) -> Result<Self> {
        let index = Index::new(&options(spec)).map_err(index_error)?;
        let path = path.to_str().ok_or_else(|| index_error(format!("{} is not a UTF-8 path", path.display())))?;
        index.view(path).map_err(index_error)?;
        Ok(Self::serving(index, spec))
    }

    fn serving(index: Index, spec: &VectorTableSpec) -> Self {
        index.change_expansion_search(DEFAULT_EF_SEARCH);
        SegmentIndex { index, binary: spec.precision == Precision::Binary, normalize: spec.metric == Metric::Cosine, dims: spec.dims, ef: parking_lot::RwLock::new(DEFAULT_EF_SEARCH) }
    }

    /// Number of indexed vectors.
    pub fn len(&self) -> usize {
        self.index.size()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate nearest keys (index distances; callers rescore). `allowed` restricts the
    /// traversal to accepted keys (pre-filtering inside the graph walk).
    pub fn search(&self, query: &[f32], count: usize, ef: usize, allowed: Option<&(dyn Fn(u64) -> bool + Sync)>) -> Result<Vec<u64>> {
        debug_assert_eq!(query.len(), self.dims);
        let setting = self.ef.read();
        let _setting = if *setting == ef {
            setting
        } else {
            drop(setting);
            let mut exclusive = self.ef.write();
            if *exclusive != ef {
                self.index.change_expansion_search(ef);
                *exclusive = ef;
            }
            parking_lot::RwLockWriteGuard::downgrade(exclusive)
        };
        let matches = match (self.binary, allowed) {
            (false, None) => self.index.search(query, count),
            (false, Some(f)) => self.index.filtered_search(query, count, |k| f(k)),
            (true, None) => self.index.search(b1x8::from_u8s(&sign_bits(query)), count),
            (true, Some(f)) => self.index.filtered_search(b1x8::from_u8s(&sign_bits(query)), count, |k| f(k)),
        }
        .map_err(index_error)?;
        Ok(matches.keys)
    }
}
