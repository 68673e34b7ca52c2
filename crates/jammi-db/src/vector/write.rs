//! Changing a vector table. Every change writes new immutable files (a segment, a manifest
//! with a writer-unique name) and then moves the catalog's pointer with a compare-and-swap
//! on the generation: that update is the single commit point. A writer that loses the race
//! removes its files and retries on the new generation; a writer that crashes leaves only
//! unreferenced files behind, never a half-changed table.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{BooleanArray, RecordBatch};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;

use super::files::{parquet_bytes, TableFiles};
use super::index::SegmentIndex;
use super::row_vectors;
use super::input::{self, IdValue};
use super::loaded::{new_manifest_name, read_manifest, read_segment, with_embeddings, LoadedTable};
use super::spec::{Manifest, SegmentMeta, Tombstone, VectorTableSpec};
use super::{pause_point, Progress, VectorEntry, VectorState};
use crate::catalog::{FollowProgress, VectorTableRecord};
use crate::error::{Error, Result};

/// How often a writer retries after another writer committed first.
pub(crate) const MAX_ATTEMPTS: usize = 8;

/// When segments are merged, and how large a segment may grow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompactionPolicy {
    /// More segments under the size cap than this trigger a compaction.
    pub max_segments: usize,
    /// A larger fraction of deleted rows triggers a compaction.
    pub max_deleted_fraction: f64,
    /// The most vector data (rows × dims × 4 bytes) one segment holds: imports write
    /// larger inputs as several segments and compaction never merges past it, so neither
    /// holds more than about one segment in memory.
    pub max_segment_bytes: usize,
}

impl CompactionPolicy {
    /// The most rows a segment of `dims`-dimensional vectors holds (at least one).
    pub fn segment_rows(&self, dims: usize) -> usize {
        (self.max_segment_bytes / (dims.max(1) * std::mem::size_of::<f32>())).max(1)
    }

    /// True when `manifest` has too many open segments or too many tombstones.
    pub fn due(&self, manifest: &Manifest, dims: usize) -> bool {
        self.plan(manifest, dims).is_some()
    }

    /// The first of the segments to merge, if any: that one and every newer one are
    /// rewritten (0: the whole table), into segments of at most [`Self::segment_rows`].
    pub(crate) fn plan(&self, manifest: &Manifest, dims: usize) -> Option<usize> {
        let rows: Vec<u64> = manifest.segments.iter().map(|s| s.rows).collect();
        self.plan_rows(&rows, manifest.tombstones.len(), self.segment_rows(dims) as u64)
    }

    /// [`Self::plan`] over segment sizes. Too many tombstones: the whole table (the only
    /// way they go). Full segments (`full_rows` or more) are never merged again, so only the
    /// open ones after the last full segment count against `max_segments`; among those, from
    /// the newest back while each older segment is at most `ratio` times the rows merged so
    /// far, `ratio` chosen so that `max_segments` segments growing by that factor hold them
    /// all. New small segments merge with each other and seldom with the large old ones: a
    /// row is rewritten a few times over the table's life (fewer than 8 times over 2,000
    /// small appends, see the tests) instead of at every ninth append, and an append to a
    /// large table does not wait for its whole rewrite.
    fn plan_rows(&self, rows: &[u64], tombstones: usize, full_rows: u64) -> Option<usize> {
        let total: u64 = rows.iter().sum();
        if tombstones > 0 && tombstones as f64 > self.max_deleted_fraction * total as f64 {
            return Some(0);
        }
        let open_from = rows.iter().rposition(|&r| r >= full_rows).map_or(0, |last_full| last_full + 1);
        let open = &rows[open_from..];
        let n = open.len();
        if n <= self.max_segments.max(1) {
            return None;
        }
        let open_total: u64 = open.iter().sum();
        let newest = open[n - 1].max(1) as f64;
        let ratio = (open_total as f64 / newest).powf(1.0 / (self.max_segments.max(2) - 1) as f64).max(2.0);
        let (mut first, mut merged) = (n - 1, open[n - 1] as f64);
        while first > 0 && open[first - 1] as f64 <= ratio * merged {
            first -= 1;
            merged += open[first] as f64;
        }
        if n - first < n - self.max_segments + 1 {
            // Not enough similar segments: merge the newest ones needed to get under the limit.
            first = self.max_segments - 1;
        }
        Some(open_from + first)
    }
}

/// Rows gathered into segments of at most `max_rows` rows: batches go in with their
/// vectors, whole segments' worth come out.
pub(crate) struct SegmentChunks {
    max_rows: usize,
    dims: usize,
    batches: Vec<RecordBatch>,
    vectors: Vec<f32>,
    rows: usize,
}

/// One segment's rows and their row-major vectors.
pub(crate) struct Chunk {
    pub batches: Vec<RecordBatch>,
    pub vectors: Vec<f32>,
}

impl SegmentChunks {
    pub(crate) fn new(max_rows: usize, dims: usize) -> Self {
        SegmentChunks { max_rows: max_rows.max(1), dims, batches: Vec::new(), vectors: Vec::new(), rows: 0 }
    }

    /// Add `batch` (whose vectors are `vectors`, `dims` per row); returns the chunks it filled.
    pub(crate) fn push(&mut self, batch: RecordBatch, vectors: &[f32]) -> Vec<Chunk> {
        let mut full = Vec::new();
        let mut offset = 0;
        while offset < batch.num_rows() {
            let take = (self.max_rows - self.rows).min(batch.num_rows() - offset);
            self.batches.push(batch.slice(offset, take));
            self.vectors.extend_from_slice(&vectors[offset * self.dims..(offset + take) * self.dims]);
            self.rows += take;
            offset += take;
            if self.rows == self.max_rows {
                full.extend(self.take());
            }
        }
        full
    }

    /// What is left, if anything.
    pub(crate) fn take(&mut self) -> Option<Chunk> {
        if self.rows == 0 {
            return None;
        }
        self.rows = 0;
        Some(Chunk { batches: std::mem::take(&mut self.batches), vectors: std::mem::take(&mut self.vectors) })
    }
}

/// Write one segment (data file, then index) under a fresh folder; row `i` gets key
/// `base_key + i`.
pub(crate) async fn write_segment(
    files: &TableFiles,
    spec: &VectorTableSpec,
    batches: &[RecordBatch],
    vectors: std::borrow::Cow<'_, [f32]>,
    base_key: u64,
    progress: &dyn Progress,
) -> Result<SegmentMeta> {
    let rows = (vectors.len() / spec.dims) as u64;
    let name = format!("seg-{}", uuid::Uuid::new_v4().simple());
    progress.start("writing data", rows);
    let (data_sha256, data_bytes) = files.put_verified(&format!("{name}/data.parquet"), parquet_bytes(batches)?).await?;
    progress.finish();
    pause_point("vectors.write.data_written");

    progress.start("building index", rows);
    let spec_for_build = spec.clone();
    // The build runs on its own thread and then becomes the vectors file: a caller that
    // hands over its vectors spares a copy of them.
    let vectors_owned = vectors.into_owned();
    let relay = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let build_relay = Arc::clone(&relay);
    let mut build = tokio::task::spawn_blocking(move || {
        let report = move |n: u64| build_relay.store(n, std::sync::atomic::Ordering::Relaxed);
        let bytes = SegmentIndex::build(&spec_for_build, &vectors_owned, base_key, &report).and_then(|i| i.to_bytes())?;
        Ok::<_, Error>((bytes, vectors_owned))
    });
    // The build runs on a blocking thread; relay its progress to the caller meanwhile.
    let (index_bytes, mut search_vectors) = loop {
        tokio::select! {
            done = &mut build => break done.map_err(|e| Error::Storage(format!("index build failed: {e}")))??,
            _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {
                progress.set(relay.load(std::sync::atomic::Ordering::Relaxed))
            }
        }
    };
    progress.set(rows);
    progress.finish();
    let (index_sha256, index_bytes) = files.put_verified(&format!("{name}/index.usearch"), index_bytes).await?;
    // The search copy of the vectors, ready to map: loading the segment then decodes only
    // its rows. Written in place from the build's own copy.
    let unit = row_vectors::prepare_for_search(&mut search_vectors, spec.dims, spec.metric);
    files.put_parts_verified(&row_vectors::file_of(&name), row_vectors::file_parts(search_vectors, spec.dims, unit).into()).await?;
    pause_point("vectors.write.index_written");
    // The text index is part of the segment: written before the manifest that lists it, so
    // a committed generation is searchable by text at once.
    let (mut text_sha256, mut text_bytes) = (None, None);
    if !spec.text_columns.is_empty() {
        progress.start("indexing text", rows);
        let (spec_owned, batches_owned, table) = (spec.clone(), batches.to_vec(), files.url_of(""));
        let bytes = tokio::task::spawn_blocking(move || super::text::build_index(&table, &spec_owned, &batches_owned, base_key))
            .await
            .map_err(|e| Error::Storage(format!("text index build failed: {e}")))??;
        let (sha, size) = files.put_verified(&super::text::text_file(&name), bytes).await?;
        (text_sha256, text_bytes) = (Some(sha), Some(size));
        progress.set(rows);
        progress.finish();
    }
    Ok(SegmentMeta { name, rows, base_key, data_sha256, data_bytes, index_sha256, index_bytes, text_sha256, text_bytes })
}

/// Write `manifest` under a new unique name; returns the name.
pub(crate) async fn write_manifest(files: &TableFiles, manifest: &Manifest) -> Result<String> {
    let name = new_manifest_name(manifest.generation);
    let bytes = serde_json::to_vec_pretty(manifest).map_err(|e| Error::Storage(e.to_string()))?;
    files.put_verified(&name, bytes).await?;
    pause_point("vectors.write.manifest_written");
    Ok(name)
}

/// A table's state as committed in the catalog right now.
struct Current {
    record: VectorTableRecord,
    manifest: Manifest,
    table: Arc<LoadedTable>,
}

async fn current(state: &VectorState, entry: &VectorEntry) -> Result<Current> {
    let record = state
        .catalog
        .vector_tables()
        .get(&entry.record.id)
        .await?
        .ok_or_else(|| Error::Unknown { kind: crate::error::ObjectKind::VectorTable, name: entry.record.name.clone(), scope: String::new() })?;
    let manifest = read_manifest(&entry.files, &record.manifest).await?;
    let table = state.loaded_at(&record, &entry.spec, &entry.files, &manifest).await?;
    Ok(Current { record, manifest, table })
}

/// Commit `next` (written as `name`) over `current`, or clean up and report a lost race.
async fn commit(state: &VectorState, files: &TableFiles, current: &Current, next: &Manifest, name: &str, new_segments: &[String]) -> Result<bool> {
    commit_with(state, files, current, next, name, new_segments, None, None).await
}

/// [`commit`], also switching the spec and committing a following table's progress in the
/// same catalog transaction. A lost lease removes the new files and reports the loss.
#[allow(clippy::too_many_arguments)]
async fn commit_with(
    state: &VectorState,
    files: &TableFiles,
    current: &Current,
    next: &Manifest,
    name: &str,
    new_segments: &[String],
    spec: Option<&str>,
    progress: Option<&FollowProgress>,
) -> Result<bool> {
    let committed = state.catalog.vector_tables().advance_with(&current.record.id, current.record.generation, next.generation, name, spec, progress).await;
    if matches!(committed, Err(Error::LeaseLost { .. }) | Ok(false)) {
        files.delete(name).await?;
        for seg in new_segments {
            files.delete(seg).await?;
        }
    }
    committed
}

pub(crate) fn conflict(table: &str) -> Error {
    Error::InvalidVectors {
        table: table.to_string(),
        message: format!("the table kept changing under this write ({MAX_ATTEMPTS} attempts); try again"),
    }
}

/// The next generation of `current`'s manifest with tombstones for `keys`.
fn with_tombstones(current: &Current, keys: &[u64]) -> Result<Manifest> {
    let mut next = current.manifest.clone();
    next.generation += 1;
    for key in keys {
        let (seg, row) = current.table.locate(*key).ok_or_else(|| Error::Storage(format!("row key {key} is outside every segment")))?;
        let id = match IdValue::from_array(seg.rows.column(0), row) {
            IdValue::Int(i) => serde_json::Value::from(i),
            IdValue::Text(s) => serde_json::Value::from(s),
        };
        next.tombstones.push(Tombstone { key: *key, id });
    }
    Ok(next)
}

/// Ids of live rows, mapped to their keys.
pub(crate) fn live_ids(table: &LoadedTable) -> HashMap<IdValue, u64> {
    let mut ids = HashMap::with_capacity(table.live_rows);
    for seg in &table.segments {
        let column = seg.rows.column(0);
        for row in 0..seg.rows.num_rows() {
            let key = seg.meta.base_key + row as u64;
            if !table.deleted[key as usize] {
                ids.insert(IdValue::from_array(column, row), key);
            }
        }
    }
    ids
}

/// Add the rows of `input` as new segments (several when they exceed the policy's segment
/// size, written one at a time as the input streams in) in one new generation. Returns the
/// rows added, or `None` when another writer committed first (the new files are removed;
/// the caller opens the input again and retries).
pub(crate) async fn append(
    state: &VectorState,
    entry: &VectorEntry,
    mut input: SendableRecordBatchStream,
    id_column: &str,
    vector_column: &str,
    progress: &dyn Progress,
) -> Result<Option<u64>> {
    let name = &entry.record.name;
    let current = current(state, entry).await?;
    let existing: HashSet<IdValue> = live_ids(&current.table).into_keys().collect();
    let mut preparer = input::Preparer::new(name, &input.schema(), id_column, vector_column, Some(entry.spec.dims), &existing)?;
    let (first, vectors) = input::first_rows(&mut preparer, &mut input).await?;
    if first.schema().as_ref() != &entry.spec.schema {
        return Err(Error::InvalidVectors {
            table: name.clone(),
            message: format!(
                "the appended rows have columns ({}) but the table has ({}); append rows with the same columns and types",
                describe_fields(&first.schema()),
                describe_fields(&entry.spec.schema)
            ),
        });
    }
    let mut written = Vec::new();
    let streamed = write_streamed(&entry.files, &entry.spec, state.policy.segment_rows(entry.spec.dims), &mut preparer, &mut input, (first, vectors), current.manifest.next_key, &mut written, None, progress).await;
    let new_segments: Vec<String> = written.iter().map(|s| s.name.clone()).collect();
    let added = match streamed {
        Ok(added) => added,
        Err(e) => {
            for segment in &new_segments {
                let _ = entry.files.delete(segment).await;
            }
            return Err(e);
        }
    };
    let mut next = current.manifest.clone();
    next.generation += 1;
    next.next_key += added;
    next.segments.extend(written);
    let manifest_name = write_manifest(&entry.files, &next).await?;
    pause_point("vectors.append.before_commit");
    Ok(commit(state, &entry.files, &current, &next, &manifest_name, &new_segments).await?.then_some(added))
}

/// The error of an import whose `building` row recovery elsewhere removed while it ran.
pub(crate) fn abandoned(table: &str) -> Error {
    Error::InvalidVectors {
        table: table.to_string(),
        message: "the import was presumed abandoned and removed while it ran (over an hour without finishing a segment); run it again".into(),
    }
}

/// Write `first` and the rest of `input`, validated by `preparer`, as segments of at most
/// `segment_rows` rows, each written as soon as it is full; row keys from `base_key` on.
/// The segments go to `written` as they are made (so a caller can remove them after an
/// error). For a new table, `building` names its catalog and row: each segment renews the
/// row's heartbeat, and the write stops if recovery elsewhere has presumed it dead and
/// removed it. Returns the rows written.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn write_streamed(
    files: &TableFiles,
    spec: &VectorTableSpec,
    segment_rows: usize,
    preparer: &mut input::Preparer<'_>,
    input: &mut SendableRecordBatchStream,
    (first, first_vectors): (RecordBatch, Vec<f32>),
    base_key: u64,
    written: &mut Vec<SegmentMeta>,
    building: Option<(&crate::catalog::Catalog, &str)>,
    progress: &dyn Progress,
) -> Result<u64> {
    let table = preparer.table().to_string();
    let alive = || async {
        match building {
            Some((catalog, id)) if !catalog.vector_tables().touch_building(id).await? => Err(abandoned(&table)),
            _ => Ok(()),
        }
    };
    let mut chunks = SegmentChunks::new(segment_rows, spec.dims);
    let mut next_key = base_key;
    let mut full = chunks.push(first, &first_vectors);
    drop(first_vectors);
    let mut vectors = Vec::new();
    loop {
        for chunk in full.drain(..) {
            let segment = write_segment(files, spec, &chunk.batches, std::borrow::Cow::Owned(chunk.vectors), next_key, progress).await?;
            next_key += segment.rows;
            written.push(segment);
            alive().await?;
        }
        vectors.clear();
        match input.next().await {
            None => break,
            Some(batch) => {
                if let Some(rows) = preparer.push(&batch?, &mut vectors)? {
                    full = chunks.push(rows, &vectors);
                }
            }
        }
    }
    if let Some(chunk) = chunks.take() {
        let segment = write_segment(files, spec, &chunk.batches, std::borrow::Cow::Owned(chunk.vectors), next_key, progress).await?;
        next_key += segment.rows;
        written.push(segment);
    }
    Ok(next_key - base_key)
}

/// One following-table batch as one generation: tombstones for the live rows with ids in
/// `remove` or among `rows`, a segment for `rows`, and `follow`'s progress, committed
/// together. Returns (rows added, rows removed). With nothing to change, only the progress
/// is committed.
pub(crate) async fn replace(state: &VectorState, entry: &VectorEntry, remove: &[IdValue], rows: Option<&input::PreparedRows>, follow: &FollowProgress, progress: &dyn Progress) -> Result<(u64, u64)> {
    for _ in 0..MAX_ATTEMPTS {
        let current = current(state, entry).await?;
        let live = live_ids(&current.table);
        let mut keys: Vec<u64> = remove.iter().filter_map(|id| live.get(id).copied()).collect();
        if let Some(rows) = rows {
            for batch in &rows.batches {
                let ids = batch.column(0);
                keys.extend((0..batch.num_rows()).filter_map(|r| live.get(&IdValue::from_array(ids, r)).copied()));
            }
        }
        keys.sort_unstable();
        keys.dedup();
        let added = rows.map_or(0, |r| r.rows as u64);
        if keys.is_empty() && added == 0 {
            state.catalog.follows().commit(follow).await?;
            return Ok((0, 0));
        }
        let mut next = with_tombstones(&current, &keys)?;
        let mut new_segments = Vec::new();
        if let Some(rows) = rows.filter(|r| r.rows > 0) {
            let segment = write_segment(&entry.files, &entry.spec, &rows.batches, std::borrow::Cow::Borrowed(&rows.vectors), current.manifest.next_key, progress).await?;
            next.next_key += segment.rows;
            new_segments.push(segment.name.clone());
            next.segments.push(segment);
        }
        let manifest_name = write_manifest(&entry.files, &next).await?;
        pause_point("vectors.follow.before_commit");
        if commit_with(state, &entry.files, &current, &next, &manifest_name, &new_segments, None, Some(follow)).await? {
            return Ok((added, keys.len() as u64));
        }
    }
    Err(conflict(&entry.record.name))
}

/// Rewrite the whole table as `rows` made under `spec` (a new model's vectors): one
/// segment, no tombstones, the spec switched in the same commit as the data, so searches
/// answer from the old vectors until this returns and from the new ones after. Fails with a
/// conflict when the table changed since `generation` (the caller re-reads and retries).
pub(crate) async fn rewrite(state: &VectorState, entry: &VectorEntry, generation: i64, spec: &super::spec::VectorTableSpec, rows: Option<&input::PreparedRows>, follow: &FollowProgress, progress: &dyn Progress) -> Result<bool> {
    let current = current(state, entry).await?;
    if current.record.generation != generation {
        return Ok(false);
    }
    let mut next = Manifest { version: current.manifest.version, generation: generation + 1, segments: Vec::new(), tombstones: Vec::new(), next_key: 0 };
    let mut new_segments = Vec::new();
    if let Some(rows) = rows.filter(|r| r.rows > 0) {
        let segment = write_segment(&entry.files, spec, &rows.batches, std::borrow::Cow::Borrowed(&rows.vectors), 0, progress).await?;
        next.next_key = segment.rows;
        new_segments.push(segment.name.clone());
        next.segments.push(segment);
    }
    let manifest_name = write_manifest(&entry.files, &next).await?;
    let spec_text = serde_json::to_string(spec).map_err(Error::internal)?;
    if !commit_with(state, &entry.files, &current, &next, &manifest_name, &new_segments, Some(&spec_text), Some(follow)).await? {
        return Ok(false);
    }
    for old in &current.manifest.segments {
        if let Err(e) = entry.files.delete(&old.name).await {
            tracing::warn!(segment = %old.name, error = %e, "could not remove a segment of the old model");
        }
    }
    Ok(true)
}

fn describe_fields(schema: &datafusion::arrow::datatypes::Schema) -> String {
    schema.fields().iter().map(|f| format!("{} {}", f.name(), f.data_type())).collect::<Vec<_>>().join(", ")
}

/// Which rows a delete removes.
#[derive(Debug, Clone)]
pub(crate) enum Selection {
    /// Rows with these ids (as text; parsed by the table's id type).
    Ids(Vec<String>),
    /// Rows matching a predicate over the id and payload columns.
    Predicate(datafusion::logical_expr::Expr),
}

/// Record tombstones for the selected live rows. Returns how many rows were deleted.
pub(crate) async fn delete(state: &VectorState, entry: &VectorEntry, selection: &Selection) -> Result<u64> {
    for _ in 0..MAX_ATTEMPTS {
        let current = current(state, entry).await?;
        let keys: Vec<u64> = match selection {
            Selection::Ids(ids) => {
                let live = live_ids(&current.table);
                let int_ids = entry.spec.schema.field(0).data_type().is_integer();
                let mut keys = Vec::new();
                for text in ids {
                    let id = if int_ids {
                        IdValue::Int(text.trim().parse().map_err(|_| Error::InvalidVectors {
                            table: entry.record.name.clone(),
                            message: format!("'{text}' is not an integer id (the table's ids are integers)"),
                        })?)
                    } else {
                        IdValue::Text(text.clone())
                    };
                    keys.extend(live.get(&id));
                }
                keys.sort_unstable();
                keys.dedup();
                keys
            }
            Selection::Predicate(expr) => super::filter::matching_keys(&current.table, expr.clone()).await?,
        };
        if keys.is_empty() {
            return Ok(0);
        }
        let next = with_tombstones(&current, &keys)?;
        let manifest_name = write_manifest(&entry.files, &next).await?;
        if commit(state, &entry.files, &current, &next, &manifest_name, &[]).await? {
            return Ok(keys.len() as u64);
        }
    }
    Err(conflict(&entry.record.name))
}

/// Merge segments when the policy says so (or, with `force`, the whole table): the live
/// rows of the segments from the policy's first one on are rewritten, one segment at a time,
/// into segments of at most the policy's size, and their tombstones go. Returns true when a
/// compaction was committed. Old files are removed after the commit.
///
/// Processes sharing the catalog take turns: the work is done under the catalog lease
/// `vectors.compact:<table id>`. A compaction that is due while another process holds the
/// lease is left to that process (false). A forced one (asked for by a person) takes the
/// lease over: its holder may have died mid-compaction, and the commit's generation check
/// keeps two compactions correct anyway.
pub(crate) async fn compact_if_due(state: &VectorState, entry: &VectorEntry, force: bool, progress: &dyn Progress) -> Result<bool> {
    let lease = format!("vectors.compact:{}", entry.record.id);
    let mut leased = false;
    let result = compact_leased(state, entry, force, progress, &lease, &mut leased).await;
    if leased {
        if let Err(e) = state.catalog.leases().release(&lease, &state.lease_holder).await {
            tracing::warn!(table = %entry.record.name, error = %e, "could not release the compaction lease; it expires on its own");
        }
    }
    result
}

/// How long a compaction lease lasts: a process that dies mid-compaction holds up the
/// table's next compaction this long at most.
const COMPACTION_LEASE: std::time::Duration = std::time::Duration::from_secs(600);

async fn compact_leased(state: &VectorState, entry: &VectorEntry, force: bool, progress: &dyn Progress, lease: &str, leased: &mut bool) -> Result<bool> {
    for _ in 0..MAX_ATTEMPTS {
        let current = current(state, entry).await?;
        let segments = &current.manifest.segments;
        let first = match (force, state.policy.plan(&current.manifest, entry.spec.dims)) {
            (true, _) => 0,
            (false, Some(first)) => first,
            (false, None) => return Ok(false),
        };
        if !*leased {
            let leases = state.catalog.leases();
            if force {
                leases.take(lease, &state.lease_holder, COMPACTION_LEASE).await?;
            } else if !leases.try_acquire(lease, &state.lease_holder, COMPACTION_LEASE).await? {
                return Ok(false);
            }
            *leased = true;
        }
        let merged = &segments[first..];
        // The merged rows take the keys from the first merged segment's on (from 0 for the
        // whole table); the keys of their deleted rows are free again.
        let base_key = if first == 0 { 0 } else { merged[0].base_key };
        let mut next = Manifest {
            version: current.manifest.version,
            generation: current.manifest.generation + 1,
            segments: segments[..first].to_vec(),
            tombstones: current.manifest.tombstones.iter().filter(|t| t.key < base_key).cloned().collect(),
            next_key: base_key,
        };
        let written = rewrite_live_rows(state, entry, &current.manifest, merged, &mut next, progress).await;
        let new_segments: Vec<String> = next.segments[first..].iter().map(|s| s.name.clone()).collect();
        if let Err(e) = written {
            for name in &new_segments {
                let _ = entry.files.delete(name).await;
            }
            return Err(e);
        }
        let manifest_name = write_manifest(&entry.files, &next).await?;
        pause_point("vectors.compact.before_commit");
        if commit(state, &entry.files, &current, &next, &manifest_name, &new_segments).await? {
            // The merged segments are unreferenced now; readers that still hold them in
            // memory keep working, since loaded tables never go back to storage.
            for old in merged {
                if let Err(e) = entry.files.delete(&old.name).await {
                    tracing::warn!(segment = %old.name, error = %e, "could not remove a compacted segment");
                }
            }
            if let Err(e) = entry.files.delete(&current.record.manifest).await {
                tracing::warn!(manifest = %current.record.manifest, error = %e, "could not remove an old manifest");
            }
            return Ok(true);
        }
    }
    Err(conflict(&entry.record.name))
}

/// Read `merged` one segment at a time and append their live rows to `next` as segments
/// of at most the policy's size, keys following on from `next.next_key`.
async fn rewrite_live_rows(state: &VectorState, entry: &VectorEntry, manifest: &Manifest, merged: &[SegmentMeta], next: &mut Manifest, progress: &dyn Progress) -> Result<()> {
    let deleted: HashSet<u64> = manifest.tombstones.iter().map(|t| t.key).collect();
    let dims = entry.spec.dims;
    let mut chunks = SegmentChunks::new(state.policy.segment_rows(dims), dims);
    for (i, meta) in merged.iter().enumerate() {
        let data = read_segment(&entry.files, &entry.spec, meta).await?;
        let keep: Vec<bool> = (0..meta.rows).map(|r| !deleted.contains(&(meta.base_key + r))).collect();
        let mut vectors = Vec::with_capacity(data.vectors.len());
        for (row, live) in keep.iter().enumerate() {
            if *live {
                vectors.extend_from_slice(&data.vectors[row * dims..(row + 1) * dims]);
            }
        }
        drop(data.vectors);
        let batch = filter_record_batch(&data.rows, &BooleanArray::from(keep)).map_err(|e| Error::Storage(e.to_string()))?;
        let mut ready = chunks.push(batch, &vectors);
        if i + 1 == merged.len() {
            ready.extend(chunks.take());
        }
        for chunk in ready {
            let schema = chunk.batches[0].schema();
            let one = concat_batches(&schema, &chunk.batches).map_err(|e| Error::Storage(e.to_string()))?;
            let one = with_embeddings(&entry.spec, &one, &chunk.vectors)?;
            let segment = write_segment(&entry.files, &entry.spec, &[one], std::borrow::Cow::Owned(chunk.vectors), next.next_key, progress).await?;
            next.next_key += segment.rows;
            next.segments.push(segment);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(rows: &[u64], tombstones: usize) -> Manifest {
        let mut base = 0;
        let segments = rows
            .iter()
            .enumerate()
            .map(|(i, &r)| {
                let meta = SegmentMeta { name: format!("seg-{i}"), rows: r, base_key: base, data_sha256: String::new(), data_bytes: 0, index_sha256: String::new(), index_bytes: 0, text_sha256: None, text_bytes: None };
                base += r;
                meta
            })
            .collect();
        let tombstones = (0..tombstones as u64).map(|key| Tombstone { key, id: key.into() }).collect();
        Manifest { version: super::super::spec::MANIFEST_VERSION, generation: 1, segments, tombstones, next_key: base }
    }

    #[test]
    fn small_new_segments_merge_with_each_other_not_with_the_large_ones() {
        let policy = CompactionPolicy { max_segments: 4, max_deleted_fraction: 0.2, max_segment_bytes: usize::MAX };
        assert_eq!(policy.plan(&manifest(&[1000, 500, 250, 100], 0), 4), None);
        // One over the limit: the newest segments of similar size, not the large old ones.
        assert_eq!(policy.plan(&manifest(&[8000, 50, 40, 30, 20], 0), 4), Some(1));
        assert_eq!(policy.plan(&manifest(&[8000, 1000, 40, 30, 20], 0), 4), Some(2));
        // No similar run: the fewest newest segments that get back under the limit.
        assert_eq!(policy.plan(&manifest(&[100_000, 10_000, 1000, 100, 1], 0), 4), Some(3));
        // Far over the limit (a lowered setting): enough segments to get back under it.
        let first = policy.plan(&manifest(&[1000, 500, 250, 100, 50, 20, 10], 0), 4).unwrap();
        assert!(first <= 3, "{first}");
        // Tombstones over the fraction: the whole table, whatever the segment count.
        assert_eq!(policy.plan(&manifest(&[100, 100], 41), 4), Some(0));
        assert_eq!(policy.plan(&manifest(&[100, 100], 40), 4), None);
    }

    #[test]
    fn a_stream_of_small_appends_rewrites_each_row_a_logarithmic_number_of_times() {
        // Simulate 2,000 appends of 10 rows under the default limit: total rows rewritten
        // by compactions stay within a small multiple of log2(rows / batch) per row, where
        // rewriting the whole table at every ninth append would cost ~110 per row.
        let policy = CompactionPolicy { max_segments: 8, max_deleted_fraction: 0.2, max_segment_bytes: usize::MAX };
        let mut rows: Vec<u64> = Vec::new();
        let mut rewritten = 0u64;
        for _ in 0..2000 {
            rows.push(10);
            while let Some(first) = policy.plan(&manifest(&rows, 0), 4) {
                let merged: u64 = rows[first..].iter().sum();
                rewritten += merged;
                rows.truncate(first);
                rows.push(merged);
            }
            assert!(rows.len() <= 8);
        }
        let per_row = rewritten as f64 / 20_000.0;
        assert!(per_row < 8.0, "each row was rewritten {per_row:.1} times");
    }
}

#[cfg(test)]
mod size_cap_tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn full_segments_are_never_merged_and_only_open_ones_count() {
        // 4-dimensional vectors, 1,600 bytes a segment: 100 rows.
        let policy = CompactionPolicy { max_segments: 2, max_deleted_fraction: 0.2, max_segment_bytes: 1600 };
        assert_eq!(policy.segment_rows(4), 100);
        // Ten full segments and two open ones: nothing to do, however many full ones.
        assert_eq!(policy.plan_rows(&[100; 10].iter().copied().chain([30, 20]).collect::<Vec<_>>(), 0, 100), None);
        // A third open segment: the open ones merge, the full ones stay.
        assert_eq!(policy.plan_rows(&[100, 100, 100, 30, 20, 10], 0, 100), Some(3));
        // An oversized segment (an append past the cap) is full too.
        assert_eq!(policy.plan_rows(&[100, 5, 250, 30, 20, 10], 0, 100), Some(3));
        // Tombstones still rewrite the whole table (into full segments again).
        assert_eq!(policy.plan_rows(&[100, 100, 100], 61, 100), Some(0));
    }

    #[test]
    fn chunks_hold_at_most_the_cap_and_keep_every_row_in_order() {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let batch = |from: i64, n: i64| RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(Int64Array::from_iter_values(from..from + n))]).unwrap();
        let vectors = |from: i64, n: i64| (from..from + n).flat_map(|i| [i as f32, -(i as f32)]).collect::<Vec<f32>>();
        let mut chunks = SegmentChunks::new(7, 2);
        let mut out = Vec::new();
        for (from, n) in [(0, 3), (3, 12), (15, 1), (16, 0), (16, 5)] {
            out.extend(chunks.push(batch(from, n), &vectors(from, n)));
        }
        out.extend(chunks.take());
        assert!(chunks.take().is_none());
        let sizes: Vec<usize> = out.iter().map(|c| c.batches.iter().map(|b| b.num_rows()).sum()).collect();
        assert_eq!(sizes, vec![7, 7, 7]);
        let mut next = 0i64;
        for chunk in &out {
            let mut row = 0;
            for b in &chunk.batches {
                for id in b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values() {
                    assert_eq!(*id, next);
                    assert_eq!(&chunk.vectors[row * 2..row * 2 + 2], &[next as f32, -(next as f32)]);
                    next += 1;
                    row += 1;
                }
            }
        }
        assert_eq!(next, 21);
    }
}
