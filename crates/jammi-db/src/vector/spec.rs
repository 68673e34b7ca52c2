//! The persistent formats of a vector table: the spec kept in the catalog and the manifest
//! kept beside the data. Both carry a `version`; a reader refuses versions it does not know.

use std::fmt;
use std::str::FromStr;

use datafusion::arrow::datatypes::Schema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Distance function. `_distance` is, for every search path:
/// cosine `1 - cos(q, v)`, l2 the *squared* Euclidean distance, ip `1 - q·v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Cosine distance (default).
    Cosine,
    /// Squared Euclidean distance.
    L2,
    /// Inner-product distance.
    Ip,
}

impl FromStr for Metric {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "cosine" | "cos" => Ok(Metric::Cosine),
            "l2" | "l2sq" | "euclidean" => Ok(Metric::L2),
            "ip" | "dot" | "inner_product" => Ok(Metric::Ip),
            other => Err(Error::invalid("metric", format!("'{other}' is not a metric; use cosine, l2 or ip"))),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Metric::Cosine => "cosine",
            Metric::L2 => "l2",
            Metric::Ip => "ip",
        })
    }
}

/// How the HNSW index stores vectors. Quantized precisions rescore candidates with exact
/// f32 distances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats.
    F32,
    /// 16-bit floats.
    F16,
    /// 8-bit integers.
    Int8,
    /// One bit per dimension (sign), Hamming distance in the index.
    Binary,
}

impl Precision {
    /// The precision a table gets when none is asked for: `int8` for cosine (vectors are
    /// normalised, so every value fits the 8-bit range; candidates are rescored with exact
    /// f32 distances — faster than an f32 graph at the same recall, see docs/BENCHMARKS.md),
    /// `f32` for `l2` and `ip`, whose values have no fixed range.
    pub fn default_for(metric: Metric) -> Precision {
        match metric {
            Metric::Cosine => Precision::Int8,
            Metric::L2 | Metric::Ip => Precision::F32,
        }
    }

    /// Default candidates fetched per wanted result before exact rescoring.
    pub fn default_oversample(&self) -> usize {
        match self {
            Precision::F32 => 1,
            Precision::F16 => 2,
            Precision::Int8 => 2,
            Precision::Binary => 10,
        }
    }
}

impl FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            "int8" | "i8" => Ok(Precision::Int8),
            "binary" | "b1" => Ok(Precision::Binary),
            other => Err(Error::invalid("precision", format!("'{other}' is not a precision; use f32, f16, int8 or binary"))),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Int8 => "int8",
            Precision::Binary => "binary",
        })
    }
}

/// Catalog spec of a vector table (`jammi_vector_tables.spec`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorTableSpec {
    /// Layout version of this record (1).
    pub version: u32,
    /// Vector dimensions.
    pub dims: usize,
    /// Distance function.
    pub metric: Metric,
    /// Index precision.
    pub precision: Precision,
    /// HNSW connectivity.
    pub m: usize,
    /// HNSW build-time beam width.
    pub ef_construction: usize,
    /// Candidates per result before rescoring (quantized precisions).
    pub oversample: usize,
    /// Schema of the data files: `id`, payload columns, `embedding`.
    pub schema: Schema,
    /// The id and vector column names of the imported data: appends read the same names
    /// unless told otherwise. Absent for tables imported before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_columns: Option<(String, String)>,
    /// The model that made the vectors (tables imported with `--embed`): text queries are
    /// embedded with it. Absent for tables of imported vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<crate::embed::EmbeddingSource>,
    /// The mutable table this table follows (one vector per source row, kept current by
    /// workers). Absent for imported tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follows: Option<super::follow::FollowSource>,
    /// Payload columns with a full-text (BM25) index in every segment. Empty for tables
    /// without one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub text_columns: Vec<TextIndexColumn>,
}

/// A text column indexed for `text_search`, and how its words are found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextIndexColumn {
    /// The payload column.
    pub name: String,
    /// `english` (default), another language, `simple` or `raw`.
    pub analyzer: String,
}

impl TextIndexColumn {
    /// `COLUMN` or `COLUMN:ANALYZER` (e.g. `description`, `tag:raw`, `titel:german`).
    pub fn parse(text: &str) -> Result<Self> {
        let (name, analyzer) = match text.split_once(':') {
            Some((name, analyzer)) => (name.trim(), analyzer.trim()),
            None => (text.trim(), "english"),
        };
        if name.is_empty() {
            return Err(Error::invalid("text column", format!("'{text}' names no column; write COLUMN or COLUMN:ANALYZER, e.g. description or tag:raw")));
        }
        let parsed: jammi_text::Analyzer = analyzer.parse().map_err(|e: String| Error::invalid("text column", format!("text column '{name}': {e}")))?;
        Ok(TextIndexColumn { name: name.to_string(), analyzer: parsed.to_string() })
    }
}

/// One immutable segment: a Parquet data file plus its HNSW index. Row `i` of the data file
/// has index key `base_key + i` (the row map).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// Folder name under the table (`seg-000001`).
    pub name: String,
    /// Rows in the data file.
    pub rows: u64,
    /// Index key of the first row.
    pub base_key: u64,
    /// SHA-256 and size of `data.parquet`.
    pub data_sha256: String,
    /// Size in bytes of `data.parquet`.
    pub data_bytes: u64,
    /// SHA-256 of `index.usearch`.
    pub index_sha256: String,
    /// Size in bytes of `index.usearch`.
    pub index_bytes: u64,
    /// SHA-256 of `text.index` (tables with text columns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_sha256: Option<String>,
    /// Size in bytes of `text.index`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_bytes: Option<u64>,
}

/// `manifest-<generation>.json`: the segments and tombstones of one generation. Written
/// last; the catalog's `generation` names the manifest in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version (1).
    pub version: u32,
    /// Generation this manifest describes.
    pub generation: i64,
    /// Live segments, in key order.
    pub segments: Vec<SegmentMeta>,
    /// Deleted rows (their index keys and ids), until a compaction drops them.
    #[serde(default)]
    pub tombstones: Vec<Tombstone>,
    /// Next free index key.
    pub next_key: u64,
}

/// A deleted row: its index key and its id (kept so SQL readers of the data files can skip
/// the row without loading the index).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tombstone {
    /// Index key of the row.
    pub key: u64,
    /// The row's id (a JSON number or string).
    pub id: serde_json::Value,
}

impl Manifest {
    /// Rows that are not deleted.
    pub fn live_rows(&self) -> u64 {
        self.segments.iter().map(|s| s.rows).sum::<u64>().saturating_sub(self.tombstones.len() as u64)
    }
}

/// Current layout versions.
pub const SPEC_VERSION: u32 = 1;
/// Current manifest version.
pub const MANIFEST_VERSION: u32 = 1;

/// Parse a catalog spec, refusing unknown versions.
pub fn parse_spec(text: &str, table: &str) -> Result<VectorTableSpec> {
    let spec: VectorTableSpec = serde_json::from_str(text).map_err(|e| Error::Catalog {
        backend: "catalog".into(),
        message: format!("vector table '{table}' has an unreadable spec: {e}"),
    })?;
    if spec.version != SPEC_VERSION {
        return Err(Error::Catalog {
            backend: "catalog".into(),
            message: format!("vector table '{table}' has spec version {}; this build reads {SPEC_VERSION}", spec.version),
        });
    }
    Ok(spec)
}

/// Parse a manifest, refusing unknown versions.
pub fn parse_manifest(bytes: &[u8], location: &str) -> Result<Manifest> {
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| Error::UnreadableData {
        location: location.into(),
        format: "manifest".into(),
        message: e.to_string(),
    })?;
    if manifest.version != MANIFEST_VERSION {
        return Err(Error::UnreadableData {
            location: location.into(),
            format: "manifest".into(),
            message: format!("manifest version {} is newer than this build ({MANIFEST_VERSION})", manifest.version),
        });
    }
    Ok(manifest)
}
