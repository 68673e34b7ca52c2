//! A vector table in memory: per segment its prepared f32 vectors, its rows (id + payload)
//! and its HNSW index; plus the table-wide row map, tombstones and id order. Loaded tables
//! are kept in an LRU cache under a byte budget, so searches never reload from storage.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use parking_lot::Mutex;

use super::files::{for_each_parquet_batch, TableFiles};
use super::index::SegmentIndex;
use super::row_vectors::{self, RowVectors};
use super::spec::{parse_manifest, Manifest, Metric, SegmentMeta, VectorTableSpec};
use crate::error::{Error, Result};

/// A new, writer-unique manifest name for `generation`: two writers racing to the same
/// generation never overwrite each other's file; the catalog's compare-and-swap picks one.
pub fn new_manifest_name(generation: i64) -> String {
    let token = uuid::Uuid::new_v4().simple().to_string();
    format!("manifest-{generation:06}-{}.json", &token[..12])
}

/// Read and parse the manifest `name` of a table.
pub async fn read_manifest(files: &TableFiles, name: &str) -> Result<Manifest> {
    let bytes = files.get(name, None).await?;
    parse_manifest(&bytes, &files.url_of(name))
}

/// One segment in memory.
#[derive(Debug)]
pub struct LoadedSegment {
    /// Its manifest entry.
    pub meta: SegmentMeta,
    /// Row-major vectors, unit length when the metric is cosine (mapped from the segment's
    /// `vectors.f32` on a local storage root).
    pub vectors: RowVectors,
    /// `id` and payload columns (no embedding), row `i` = key `base_key + i`.
    pub rows: RecordBatch,
    /// The HNSW index.
    pub index: SegmentIndex,
    /// The full-text index (tables with text columns).
    pub text: Option<Arc<jammi_text::SegmentTextIndex>>,
}

/// A whole table in memory.
#[derive(Debug)]
pub struct LoadedTable {
    /// Catalog id.
    pub table_id: String,
    /// Generation loaded.
    pub generation: i64,
    /// Spec.
    pub spec: VectorTableSpec,
    /// Segments in key order. Shared with other generations of the table that list the
    /// same segment (a segment's files never change once written).
    pub segments: Vec<Arc<LoadedSegment>>,
    /// `deleted[key]`: tombstoned.
    pub deleted: Arc<Vec<bool>>,
    /// `id_rank[key]`: position of the row's id in ascending id order.
    pub id_rank: Vec<u64>,
    /// Live rows.
    pub live_rows: usize,
    /// Approximate memory held.
    pub bytes: usize,
    /// The text indexes of every segment with this generation's tombstones (tables with
    /// text columns).
    pub text: Option<jammi_text::TextTable>,
    /// Evaluated filters: predicate text → allowed keys.
    pub(crate) filter_cache: Mutex<super::filter::FilterCache>,
}

impl LoadedTable {
    /// Schema of the rows (`id` + payload).
    pub fn row_schema(&self) -> SchemaRef {
        match self.segments.first() {
            Some(s) => s.rows.schema(),
            None => Arc::new(without_embedding(&self.spec.schema)),
        }
    }

    /// Segment holding `key`, and the row within it.
    pub fn locate(&self, key: u64) -> Option<(&LoadedSegment, usize)> {
        let idx = self.segments.partition_point(|s| s.meta.base_key <= key).checked_sub(1)?;
        let seg = &self.segments[idx];
        let row = (key - seg.meta.base_key) as usize;
        (row < seg.meta.rows as usize).then_some((seg, row))
    }

    /// Every key slot (including deleted ones).
    pub fn key_space(&self) -> usize {
        self.deleted.len()
    }
}

/// The schema minus the `embedding` column.
pub fn without_embedding(schema: &datafusion::arrow::datatypes::Schema) -> datafusion::arrow::datatypes::Schema {
    datafusion::arrow::datatypes::Schema::new(
        schema.fields().iter().filter(|f| f.name() != "embedding").cloned().collect::<Vec<_>>(),
    )
}

/// Append the vectors of an `embedding` column (FixedSizeList<Float32, dims>) to `out`,
/// row-major.
fn append_embeddings(column: &ArrayRef, dims: usize, location: &str, out: &mut Vec<f32>) -> Result<()> {
    let unreadable = |message: &str| Error::UnreadableData { location: location.into(), format: "vector segment".into(), message: message.into() };
    let list = column.as_any().downcast_ref::<FixedSizeListArray>().ok_or_else(|| unreadable("embedding column is not a fixed-size list"))?;
    if list.value_length() as usize != dims {
        return Err(unreadable(&format!("embedding column holds vectors of {} dimensions; the table has {dims}", list.value_length())));
    }
    let values = list.values().as_any().downcast_ref::<Float32Array>().ok_or_else(|| unreadable("embedding values are not float32"))?;
    let start = list.offset() * dims;
    out.extend_from_slice(&values.values()[start..start + list.len() * dims]);
    Ok(())
}

/// `rows` (id and payload) with the `embedding` column made from `vectors` put back in its
/// place, as the table's data files hold them.
pub fn with_embeddings(spec: &VectorTableSpec, rows: &RecordBatch, vectors: &[f32]) -> Result<RecordBatch> {
    let schema = Arc::new(spec.schema.clone());
    let embedding_idx = schema.index_of("embedding").map_err(|e| Error::Storage(e.to_string()))?;
    let DataType::FixedSizeList(item, _) = schema.field(embedding_idx).data_type() else {
        return Err(Error::Storage("the table's embedding column is not a fixed-size list".into()));
    };
    let embeddings = FixedSizeListArray::try_new(Arc::clone(item), spec.dims as i32, Arc::new(Float32Array::from(vectors.to_vec())), None)
        .map_err(|e| Error::Storage(e.to_string()))?;
    let mut columns = rows.columns().to_vec();
    columns.insert(embedding_idx, Arc::new(embeddings));
    RecordBatch::try_new(schema, columns).map_err(|e| Error::Storage(e.to_string()))
}

/// Read one segment from storage: its rows from the data file, its search vectors from
/// `vectors.f32` (decoded from the data file and written, when missing or unusable), and its
/// index (rebuilt from the vectors, and written back, when missing — never served half-built).
async fn load_segment(files: &TableFiles, spec: &VectorTableSpec, meta: &SegmentMeta) -> Result<LoadedSegment> {
    // With the vectors file present, checking it and reading the rows (each hashes its file)
    // run side by side.
    let stored = if files.exists(&row_vectors::file_of(&meta.name)).await? {
        match tokio::join!(open_row_vectors(files, spec, meta), read_rows(files, spec, meta)) {
            (Ok(Some(vectors)), rows) => Some((rows?, vectors)),
            (Ok(None), _) => None,
            (Err(e), _) => return Err(e),
        }
    } else {
        None
    };
    let (rows, vectors) = match stored {
        Some(loaded) => loaded,
        None => {
            let SegmentData { rows, mut vectors } = read_segment(files, spec, meta).await?;
            row_vectors::prepare_for_search(&mut vectors, spec.dims, spec.metric);
            (rows, store_row_vectors(files, spec, meta, vectors).await)
        }
    };
    let index = segment_index(files, spec, meta, &vectors).await?;
    let text = super::text::segment_index(files, spec, meta, &rows).await?;
    Ok(LoadedSegment { meta: meta.clone(), vectors, rows, index, text })
}

/// The segment's `vectors.f32` (which exists): mapped from a local root or the disk cache of
/// a remote one, else read from the root. `None` when it does not match the segment (then it
/// is rewritten from the data file).
async fn open_row_vectors(files: &TableFiles, spec: &VectorTableSpec, meta: &SegmentMeta) -> Result<Option<RowVectors>> {
    let name = row_vectors::file_of(&meta.name);
    let unit = spec.metric == Metric::Cosine;
    let mut opened = None;
    if let Some(local) = files.local_file(&name, None).await {
        let (dims, rows, path) = (spec.dims, meta.rows, local.path.clone());
        let mapped = tokio::task::spawn_blocking(move || RowVectors::map(&path, dims, rows, unit))
            .await
            .map_err(|e| Error::Storage(format!("opening {name} failed: {e}")))?;
        match mapped {
            // A damaged cache copy says nothing about the file on the root: read that.
            Err(_) if local.cached => files.discard(&local),
            mapped => opened = Some(mapped),
        }
    }
    let opened = match opened {
        Some(opened) => opened,
        None => {
            let bytes = files.get(&name, None).await?;
            RowVectors::from_file_bytes(&bytes, spec.dims, meta.rows, unit, &files.url_of(&name))
        }
    };
    match opened {
        Ok(vectors) => Ok(Some(vectors)),
        Err(e) => {
            tracing::warn!(segment = %meta.name, error = %e, "search vectors unusable; rewriting them from the data file");
            Ok(None)
        }
    }
}

/// Write a segment's search vectors (decoded from its data file) as its `vectors.f32` and
/// return the copy to search with: the mapped file on a local root. A remote root keeps them
/// in memory (its segments get the file when they are written). A failed write costs only
/// speed: the vectors stay in memory and the next load tries again.
async fn store_row_vectors(files: &TableFiles, spec: &VectorTableSpec, meta: &SegmentMeta, vectors: Vec<f32>) -> RowVectors {
    let name = row_vectors::file_of(&meta.name);
    let Some(path) = files.local_path(&name) else {
        return RowVectors::owned(vectors);
    };
    let unit = spec.metric == Metric::Cosine;
    let [header, values] = row_vectors::file_parts(vectors, spec.dims, unit);
    let written = match files.put_parts_verified(&name, vec![header, values.clone()]).await {
        Ok(_) => RowVectors::map(&path, spec.dims, meta.rows, unit),
        Err(e) => Err(e),
    };
    written.unwrap_or_else(|e| {
        tracing::warn!(segment = %meta.name, error = %e, "could not write the segment's search vectors; keeping them in memory");
        RowVectors::owned_from_file_values(&values)
    })
}

fn segment_bytes(seg: &LoadedSegment, spec: &VectorTableSpec) -> usize {
    let text = seg.text.as_ref().map_or(0, |t| t.memory_bytes());
    seg.vectors.len() * 4 + seg.rows.get_array_memory_size() + seg.index.len() * (spec.m * 8 + 16) + text
}

/// Read one generation of a table. Segments that `previous` (an older generation of the
/// same table, under the same spec) already holds are shared, not read again: an append
/// or a following table's batch loads only its new segment, whatever the table's size.
pub async fn load_table(
    table_id: &str,
    generation: i64,
    spec: &VectorTableSpec,
    files: &TableFiles,
    manifest: &Manifest,
    previous: Option<&LoadedTable>,
) -> Result<LoadedTable> {
    let reusable: HashMap<&str, &Arc<LoadedSegment>> = previous
        .filter(|p| p.table_id == table_id && p.spec == *spec)
        .map(|p| p.segments.iter().map(|s| (s.meta.name.as_str(), s)).collect())
        .unwrap_or_default();
    let mut segments = Vec::with_capacity(manifest.segments.len());
    let mut bytes = 0usize;
    for meta in &manifest.segments {
        let segment = match reusable.get(meta.name.as_str()) {
            Some(seg) if seg.meta == *meta => Arc::clone(seg),
            _ => Arc::new(load_segment(files, spec, meta).await?),
        };
        bytes += segment_bytes(&segment, spec);
        segments.push(segment);
    }

    let key_space = manifest.next_key as usize;
    let mut deleted = vec![true; key_space];
    for seg in &segments {
        for k in seg.meta.base_key..seg.meta.base_key + seg.meta.rows {
            deleted[k as usize] = false;
        }
    }
    for t in &manifest.tombstones {
        if let Some(slot) = deleted.get_mut(t.key as usize) {
            *slot = true;
        }
    }
    let live_rows = deleted.iter().filter(|d| !**d).count();
    let deleted = Arc::new(deleted);
    let id_rank = rank_ids(&segments, key_space)?;
    let text_segments = segments.iter().filter_map(|s| s.text.clone()).collect();
    let text = super::text::table_index(spec, text_segments, &deleted, table_id)?;
    // The filter cache's bitmaps are charged to the memory budget up front: the table
    // counts as holding the most its filter cache may grow to.
    let bytes = bytes + filter_cache_limit(key_space);
    Ok(LoadedTable {
        table_id: table_id.to_string(),
        generation,
        spec: spec.clone(),
        segments,
        deleted,
        id_rank,
        live_rows,
        bytes,
        text,
        filter_cache: Mutex::new(super::filter::FilterCache::new(filter_cache_limit(key_space))),
    })
}

/// The segment's index from storage — mapped from a local root, read from a remote one;
/// rebuilt from `vectors` (and written back) when the file is missing, unreadable or does not
/// hold one entry per row. The data file, not the index, is the source of truth.
pub async fn segment_index(files: &TableFiles, spec: &VectorTableSpec, meta: &SegmentMeta, vectors: &[f32]) -> Result<SegmentIndex> {
    let index_name = format!("{}/index.usearch", meta.name);
    if files.exists(&index_name).await? {
        let mut opened = None;
        if let Some(local) = files.local_file(&index_name, None).await {
            match SegmentIndex::view(spec, &local.path) {
                Ok(index) if index.len() as u64 == meta.rows => opened = Some(Ok(index)),
                // A damaged cache copy says nothing about the file on the root: read that.
                _ if local.cached => files.discard(&local),
                other => opened = Some(other),
            }
        }
        let opened = match opened {
            Some(opened) => opened,
            None => SegmentIndex::from_bytes(spec, &files.get(&index_name, None).await?),
        };
        match opened {
            Ok(index) if index.len() as u64 == meta.rows => return Ok(index),
            Ok(_) | Err(_) => tracing::warn!(segment = %meta.name, "vector index unusable; rebuilding from data"),
        }
    } else {
        tracing::warn!(segment = %meta.name, "vector index missing; rebuilding from data");
    }
    let rebuilt = SegmentIndex::build(spec, vectors, meta.base_key, &|_| {})?;
    files.put_verified(&index_name, rebuilt.to_bytes()?).await?;
    Ok(rebuilt)
}

/// Startup repair of one segment: rebuild its vector and text indexes if their files are
/// missing.
pub async fn repair_segment(files: &TableFiles, spec: &VectorTableSpec, meta: &SegmentMeta) -> Result<()> {
    let vector_missing = !files.exists(&format!("{}/index.usearch", meta.name)).await?;
    let text_missing = !spec.text_columns.is_empty() && !files.exists(&super::text::text_file(&meta.name)).await?;
    if !vector_missing && !text_missing {
        return Ok(());
    }
    let data = read_segment(files, spec, meta).await?;
    if vector_missing {
        segment_index(files, spec, meta, &data.vectors).await?;
    }
    if text_missing {
        super::text::segment_index(files, spec, meta, &data.rows).await?;
    }
    Ok(())
}

/// A segment's data file, decoded and verified against the manifest's digest.
pub struct SegmentData {
    /// The `id` and payload columns, as one batch.
    pub rows: RecordBatch,
    /// The embeddings, row-major, exactly as stored.
    pub vectors: Vec<f32>,
}

/// Read and verify the data file of `meta`. Decoded batch by batch: each batch's vectors
/// are copied out and its embedding column dropped at once, so loading a segment never
/// holds its vectors twice (peak memory is the file, the vectors and the rows).
pub async fn read_segment(files: &TableFiles, spec: &VectorTableSpec, meta: &SegmentMeta) -> Result<SegmentData> {
    let data_name = format!("{}/data.parquet", meta.name);
    let location = files.url_of(&data_name);
    let bytes = files.get(&data_name, Some(&meta.data_sha256)).await?;
    let (embedding_idx, keep, row_schema) = row_columns(spec, &location)?;
    let mut vectors = Vec::with_capacity((meta.rows as usize).saturating_mul(spec.dims));
    let mut rows = Vec::new();
    for_each_parquet_batch(bytes, &location, None, |batch| {
        if batch.num_columns() != spec.schema.fields().len() {
            return Err(unreadable(&location, format!("the file has {} columns; the table has {}", batch.num_columns(), spec.schema.fields().len())));
        }
        append_embeddings(batch.column(embedding_idx), spec.dims, &location, &mut vectors)?;
        rows.push(batch.project(&keep).map_err(|e| unreadable(&location, e.to_string()))?);
        Ok(())
    })?;
    let rows = concat_batches(&row_schema, &rows).map_err(|e| unreadable(&location, e.to_string()))?;
    vectors.shrink_to_fit();
    Ok(SegmentData { rows, vectors })
}

/// The `id` and payload columns of `meta`'s data file, verified against the manifest's digest;
/// the embedding column is skipped without being read. A local file is hashed as a stream and
/// then read in place, so the file is never held in memory.
async fn read_rows(files: &TableFiles, spec: &VectorTableSpec, meta: &SegmentMeta) -> Result<RecordBatch> {
    let data_name = format!("{}/data.parquet", meta.name);
    let location = files.url_of(&data_name);
    let (_, keep, row_schema) = row_columns(spec, &location)?;
    let mut rows = Vec::new();
    let collect = |batch: RecordBatch| {
        if batch.num_columns() != keep.len() {
            return Err(unreadable(&location, format!("the file has {} of the table's {} row columns", batch.num_columns(), keep.len())));
        }
        rows.push(batch);
        Ok(())
    };
    // A cache copy was checked against the manifest when downloaded and against its own
    // digest now; a local root's file is checked here.
    let local = files.local_file(&data_name, Some(&meta.data_sha256)).await;
    if local.as_ref().is_some_and(|l| !l.cached) {
        files.verify(&data_name, &meta.data_sha256).await?;
    }
    match local {
        Some(local) => {
            let file = std::fs::File::open(&local.path).map_err(|e| Error::io(&local.path, e))?;
            for_each_parquet_batch(file, &location, Some(&keep), collect)?;
        }
        None => {
            let bytes = files.get(&data_name, Some(&meta.data_sha256)).await?;
            for_each_parquet_batch(bytes, &location, Some(&keep), collect)?;
        }
    }
    concat_batches(&row_schema, &rows).map_err(|e| unreadable(&location, e.to_string()))
}

/// The embedding column's index, the other columns' indexes, and their schema.
fn row_columns(spec: &VectorTableSpec, location: &str) -> Result<(usize, Vec<usize>, SchemaRef)> {
    let schema = &spec.schema;
    let embedding_idx = schema.index_of("embedding").map_err(|e| unreadable(location, e.to_string()))?;
    let keep: Vec<usize> = (0..schema.fields().len()).filter(|i| *i != embedding_idx).collect();
    let row_schema = Arc::new(schema.project(&keep).map_err(|e| unreadable(location, e.to_string()))?);
    Ok((embedding_idx, keep, row_schema))
}

fn unreadable(location: &str, message: String) -> Error {
    Error::UnreadableData { location: location.to_string(), format: "vector segment".into(), message }
}

/// Rank every key by its id (ascending), for tie-breaking.
fn rank_ids(segments: &[Arc<LoadedSegment>], key_space: usize) -> Result<Vec<u64>> {
    enum Ids<'a> {
        Int(&'a Int64Array),
        Str(&'a StringArray),
    }
    let mut keyed: Vec<(u64, usize, usize)> = Vec::new(); // (key, segment, row)
    let mut columns = Vec::new();
    for (s, seg) in segments.iter().enumerate() {
        let col = seg.rows.column(0);
        let ids = match col.data_type() {
            DataType::Int64 => Ids::Int(col.as_any().downcast_ref::<Int64Array>().ok_or_else(|| Error::Storage("id column".into()))?),
            _ => Ids::Str(col.as_any().downcast_ref::<StringArray>().ok_or_else(|| Error::Storage("id column".into()))?),
        };
        columns.push(ids);
        for row in 0..seg.rows.num_rows() {
            keyed.push((seg.meta.base_key + row as u64, s, row));
        }
    }
    keyed.sort_by(|a, b| match (&columns[a.1], &columns[b.1]) {
        (Ids::Int(x), Ids::Int(y)) => x.value(a.2).cmp(&y.value(b.2)),
        (Ids::Str(x), Ids::Str(y)) => x.value(a.2).cmp(y.value(b.2)),
        _ => a.0.cmp(&b.0),
    });
    let mut rank = vec![u64::MAX; key_space];
    for (r, (key, _, _)) in keyed.iter().enumerate() {
        rank[*key as usize] = r as u64;
    }
    Ok(rank)
}

/// The most bytes of filter bitmaps a table of `key_space` keys keeps: 64 bitmaps (one bit
/// per key each), at least 1 MiB.
pub fn filter_cache_limit(key_space: usize) -> usize {
    key_space.div_ceil(8).saturating_mul(64).max(1 << 20)
}

/// Loaded tables under a memory budget, least recently used evicted first.
#[derive(Debug)]
pub struct VectorCache {
    budget_bytes: usize,
    inner: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    tick: u64,
    used: usize,
    entries: HashMap<String, (Arc<LoadedTable>, u64)>,
}

impl VectorCache {
    /// A cache holding at most `budget_bytes` (the most recent table is always kept).
    pub fn new(budget_bytes: usize) -> Self {
        VectorCache { budget_bytes, inner: Mutex::new(CacheState::default()) }
    }

    /// The cached table at whatever generation it is (to share its segments with a newer
    /// one).
    pub fn latest(&self, table_id: &str) -> Option<Arc<LoadedTable>> {
        self.inner.lock().entries.get(table_id).map(|(table, _)| Arc::clone(table))
    }

    /// The cached table if it is at `generation`.
    pub fn get(&self, table_id: &str, generation: i64) -> Option<Arc<LoadedTable>> {
        let mut state = self.inner.lock();
        state.tick += 1;
        let tick = state.tick;
        match state.entries.get_mut(table_id) {
            Some((table, used)) if table.generation == generation => {
                *used = tick;
                Some(Arc::clone(table))
            }
            _ => None,
        }
    }

    /// Insert, evicting least recently used tables beyond the budget.
    pub fn insert(&self, table: Arc<LoadedTable>) {
        let mut state = self.inner.lock();
        state.tick += 1;
        let tick = state.tick;
        if let Some((old, _)) = state.entries.remove(&table.table_id) {
            state.used -= old.bytes;
        }
        state.used += table.bytes;
        state.entries.insert(table.table_id.clone(), (Arc::clone(&table), tick));
        while state.used > self.budget_bytes && state.entries.len() > 1 {
            let victim = state
                .entries
                .iter()
                .filter(|(id, _)| **id != table.table_id)
                .min_by_key(|(_, (_, t))| *t)
                .map(|(id, _)| id.clone());
            match victim.and_then(|id| state.entries.remove(&id)) {
                Some((evicted, _)) => state.used -= evicted.bytes,
                None => break,
            }
        }
    }

    /// Forget a table (dropped or changed).
    pub fn remove(&self, table_id: &str) {
        let mut state = self.inner.lock();
        if let Some((old, _)) = state.entries.remove(table_id) {
            state.used -= old.bytes;
        }
    }

    /// Tables currently cached.
    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
