//! A segment's search vectors — the f32 copy that exact rescoring and exact scans read —
//! and `vectors.f32`, the file that holds them ready to use.
//!
//! The data file (Parquet, zstd) is the source of truth, but decoding it costs time and a
//! second copy of every vector in memory. So each segment also gets `vectors.f32`: a small
//! header, then the vectors row-major as little-endian f32, already unit length for cosine
//! tables. On a local storage root it is memory-mapped: a process holds only the pages its
//! searches touch, the kernel shares them between processes and can drop them under
//! pressure, and opening a table no longer decodes its vectors at all. From a remote root it
//! is read whole. Its header carries a CRC-32 of the vectors, checked on every open (streamed
//! through the page cache, not the mapping, so the check adds nothing to the process's
//! memory; hardware CRC runs at memory speed, where SHA-256 made opening a table slow). Like the index, it is derived data: missing or unusable, it is
//! rewritten from the data file.

use std::ops::Deref;
use std::path::Path;

use bytes::Bytes;

use crate::error::{Error, Result};

/// File name of a segment's search vectors, under the segment's folder.
pub const FILE_NAME: &str = "vectors.f32";

const MAGIC: &[u8; 8] = b"JAMMIVEC";
const VERSION: u32 = 1;
/// Header bytes: magic, version, dims, rows, flags, CRC-32 of the values, 32 reserved. A
/// multiple of 4, so the vectors after it stay aligned for f32 in a page-aligned mapping.
const HEADER_LEN: usize = 64;
const FLAG_UNIT_LENGTH: u32 = 1;

/// Turn a segment's vectors, as stored, into what searches compare against: unit length for
/// cosine tables (queries are normalised the same way). Returns whether they are unit length.
pub fn prepare_for_search(vectors: &mut [f32], dims: usize, metric: super::spec::Metric) -> bool {
    let unit = metric == super::spec::Metric::Cosine;
    if unit {
        for row in vectors.chunks_exact_mut(dims) {
            super::kernels::normalize(row);
        }
    }
    unit
}

/// `<segment>/vectors.f32`.
pub fn file_of(segment: &str) -> String {
    format!("{segment}/{FILE_NAME}")
}

/// A segment's vectors, row-major, `dims` wide.
pub struct RowVectors(Storage);

enum Storage {
    Owned(Vec<f32>),
    /// The whole file; the vectors start at `HEADER_LEN`.
    Mapped { map: memmap2::Mmap, values: usize },
}

impl RowVectors {
    /// Vectors held in memory.
    pub fn owned(values: Vec<f32>) -> Self {
        RowVectors(Storage::Owned(values))
    }

    /// Vectors from the value bytes of a file (everything after its header), copied.
    pub fn owned_from_file_values(values: &[u8]) -> Self {
        RowVectors::owned(decode(values, values.len() / 4))
    }

    /// True when the vectors are mapped from a file rather than held in memory.
    pub fn is_mapped(&self) -> bool {
        matches!(self.0, Storage::Mapped { .. })
    }

    /// Map `path`, checking that its header describes `rows` vectors of `dims` (unit length
    /// when `unit`) and that its size matches.
    pub fn map(path: &Path, dims: usize, rows: u64, unit: bool) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: segment files are written once under a fresh folder and never modified
        // afterwards (a compaction writes new segments and deletes whole folders; on unlink
        // the mapping stays valid). Only a process outside jammi truncating the file could
        // invalidate the mapping.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let location = path.display().to_string();
        let values = check(&map[..HEADER_LEN.min(map.len())], map.len(), dims, rows, unit, &location)?;
        check_digest(&map, stream_digest(path, file)?, &location)?;
        if cfg!(target_endian = "little") {
            #[cfg(unix)]
            let _ = map.advise(memmap2::Advice::Random);
            Ok(RowVectors(Storage::Mapped { map, values }))
        } else {
            Ok(RowVectors::owned(decode(&map[HEADER_LEN..], values)))
        }
    }

    /// Read from the bytes of a `vectors.f32` file (a remote storage root).
    pub fn from_file_bytes(bytes: &[u8], dims: usize, rows: u64, unit: bool, location: &str) -> Result<Self> {
        let values = check(&bytes[..HEADER_LEN.min(bytes.len())], bytes.len(), dims, rows, unit, location)?;
        check_digest(bytes, crc32fast::hash(&bytes[HEADER_LEN..]), location)?;
        Ok(RowVectors::owned(decode(&bytes[HEADER_LEN..], values)))
    }

    fn as_slice(&self) -> &[f32] {
        match &self.0 {
            Storage::Owned(v) => v,
            Storage::Mapped { map, values } => {
                // SAFETY: `check` verified the file holds `values` f32s after the header; the
                // mapping is page-aligned and HEADER_LEN a multiple of 4, so the pointer is
                // aligned for f32, and on little-endian targets (the only ones that map) the
                // bytes are the values as written. The slice borrows `self`, which owns the map.
                unsafe { std::slice::from_raw_parts(map.as_ptr().add(HEADER_LEN).cast::<f32>(), *values) }
            }
        }
    }
}

impl Deref for RowVectors {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        self.as_slice()
    }
}

impl std::fmt::Debug for RowVectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowVectors").field("values", &self.len()).field("mapped", &self.is_mapped()).finish()
    }
}

/// The file's contents for `vectors` as two parts — header and values — without copying the
/// values (they are the file's bytes as they lie in memory on little-endian targets).
pub fn file_parts(vectors: Vec<f32>, dims: usize, unit: bool) -> [Bytes; 2] {
    let rows = vectors.len().checked_div(dims).unwrap_or(0) as u64;
    let body = if cfg!(target_endian = "little") {
        Bytes::from_owner(LittleEndianF32(vectors))
    } else {
        Bytes::from(vectors.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())
    };
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&(dims as u32).to_le_bytes());
    header.extend_from_slice(&rows.to_le_bytes());
    header.extend_from_slice(&(if unit { FLAG_UNIT_LENGTH } else { 0 }).to_le_bytes());
    header.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    header.resize(HEADER_LEN, 0);
    debug_assert_eq!(header.len(), HEADER_LEN);
    [Bytes::from(header), body]
}

/// f32s viewed as their bytes.
struct LittleEndianF32(Vec<f32>);

impl AsRef<[u8]> for LittleEndianF32 {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: f32 has no padding and every byte pattern is a valid u8; the length is the
        // vector's size in bytes, and the slice borrows the vector.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast::<u8>(), self.0.len() * 4) }
    }
}

fn unusable(location: &str, message: String) -> Error {
    Error::UnreadableData { location: location.to_string(), format: "vector file".into(), message }
}

/// Validate a file's header and size (`file_len`) against what the manifest says the segment
/// holds; returns the number of f32 values after the header.
fn check(header: &[u8], file_len: usize, dims: usize, rows: u64, unit: bool, location: &str) -> Result<usize> {
    let unusable = |message: String| unusable(location, message);
    let bytes = header;
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err(unusable("not a jammi vector file (bad header)".into()));
    }
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let version = u32_at(8);
    let file_dims = u32_at(12) as usize;
    let file_rows = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    let file_unit = u32_at(24) & FLAG_UNIT_LENGTH != 0;
    if version != VERSION {
        return Err(unusable(format!("layout version {version}; this build reads {VERSION}")));
    }
    if (file_dims, file_rows, file_unit) != (dims, rows, unit) {
        return Err(unusable(format!(
            "holds {file_rows} vectors of {file_dims} dimensions (unit length: {file_unit}); the segment has {rows} of {dims} (unit length: {unit})"
        )));
    }
    let values = (rows as usize).checked_mul(dims).ok_or_else(|| unusable("size overflows".into()))?;
    if file_len - HEADER_LEN != values * 4 {
        return Err(unusable(format!("{} bytes of vectors; expected {}", file_len - HEADER_LEN, values * 4)));
    }
    Ok(values)
}

/// Compare the CRC in the header of a (checked) file with `actual`.
fn check_digest(file: &[u8], actual: u32, location: &str) -> Result<()> {
    if file[28..32] == actual.to_le_bytes() {
        return Ok(());
    }
    Err(unusable(location, "the vectors do not match the checksum in the file's header".into()))
}

/// CRC-32 of the values of an open file, read through the page cache in chunks.
fn stream_digest(path: &Path, mut file: std::fs::File) -> Result<u32> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(HEADER_LEN as u64)).map_err(|e| Error::io(path, e))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut chunk).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&chunk[..n]);
    }
}

fn decode(bytes: &[u8], values: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(values);
    out.extend(bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_bytes(vectors: Vec<f32>, dims: usize, unit: bool) -> Vec<u8> {
        file_parts(vectors, dims, unit).iter().flat_map(|p| p.to_vec()).collect()
    }

    #[test]
    fn written_vectors_map_back_exactly_and_damage_is_caught() {
        let vectors: Vec<f32> = (0..12).map(|i| i as f32 * 0.25 - 1.0).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, file_bytes(vectors.clone(), 3, false)).unwrap();
        let mapped = RowVectors::map(&path, 3, 4, false).unwrap();
        assert!(mapped.is_mapped());
        assert_eq!(&*mapped, vectors.as_slice());
        let read = RowVectors::from_file_bytes(&std::fs::read(&path).unwrap(), 3, 4, false, "x").unwrap();
        assert!(!read.is_mapped());
        assert_eq!(&*read, vectors.as_slice());
        // One value changed on disk, header intact: refused, not served.
        let mut damaged = std::fs::read(&path).unwrap();
        damaged[HEADER_LEN + 5] ^= 0x40;
        std::fs::write(&path, damaged).unwrap();
        let err = RowVectors::map(&path, 3, 4, false).unwrap_err().to_string();
        assert!(err.contains("do not match the checksum"), "{err}");
    }

    #[test]
    fn a_file_that_disagrees_with_the_segment_is_refused() {
        let bytes = file_bytes(vec![0.5; 8], 4, true);
        let err = |b: &[u8], dims, rows, unit| RowVectors::from_file_bytes(b, dims, rows, unit, "seg/vectors.f32").unwrap_err().to_string();
        assert!(err(&bytes, 4, 3, true).contains("holds 2 vectors of 4 dimensions"), "{}", err(&bytes, 4, 3, true));
        assert!(err(&bytes, 8, 1, true).contains("the segment has 1 of 8"));
        assert!(err(&bytes, 4, 2, false).contains("unit length: true"));
        assert!(err(&bytes[..bytes.len() - 4], 4, 2, true).contains("28 bytes of vectors; expected 32"));
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(err(&flipped, 4, 2, true).contains("do not match the checksum"));
        assert!(err(&bytes[..10], 4, 2, true).contains("bad header"));
        let mut other = bytes.clone();
        other[8] = 9;
        assert!(err(&other, 4, 2, true).contains("layout version 9"));
        assert!(RowVectors::from_file_bytes(&bytes, 4, 2, true, "x").is_ok());
    }
}
