//! The search planner: exact scan or HNSW, with pre-filtering and exact rescoring.
//!
//! With `n` candidate rows (all live rows, or those a filter allows), an exact scan costs
//! `n` distance evaluations and a graph search roughly `ef · m · N / n` (the walk widens as
//! the filter gets more selective). The planner picks exact when `n² < ef · m · N`, when the
//! table is small, or when asked. Either way the result has exactly `min(k, n)` rows: if a
//! filtered graph walk comes back short, the exact scan over the allowed rows finishes it.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float32Array, Int64Array, ListBuilder, RecordBatch, StringBuilder, UInt64Array};
use datafusion::arrow::compute::interleave;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::index::DEFAULT_EF_SEARCH;
use super::filter::KeySet;
use super::kernels::{distance, normalize, prefetch, Scored, TopK};
use super::loaded::LoadedTable;
use super::spec::Metric;
use crate::error::{Error, Result};

/// Tables up to this many rows are always scanned exactly.
const SMALL_TABLE_ROWS: usize = 2048;

/// What to search for.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// The query vector.
    pub vector: Vec<f32>,
    /// Results wanted.
    pub k: usize,
    /// SQL predicate over payload columns (pre-filter).
    pub filter: Option<String>,
    /// HNSW beam width (default 64, at least the candidate count).
    pub ef: Option<usize>,
    /// Force an exact scan.
    pub exact: bool,
    /// Candidates per result before rescoring (default: the table's).
    pub oversample: Option<usize>,
    /// A text query instead of `vector`: embedded with the table's model (tables imported
    /// with `--embed`).
    pub text: Option<String>,
}

impl SearchRequest {
    /// Top `k` neighbours of `vector` with defaults for everything else.
    pub fn new(vector: Vec<f32>, k: usize) -> Self {
        SearchRequest { vector, k, filter: None, ef: None, exact: false, oversample: None, text: None }
    }

    /// Top `k` neighbours of text `text`, embedded with the table's model.
    pub fn text(text: impl Into<String>, k: usize) -> Self {
        SearchRequest { text: Some(text.into()), ..SearchRequest::new(Vec::new(), k) }
    }

    /// Refuse arguments past their documented limits (see [`crate::security::limits`])
    /// before anything is allocated for them: `search_entry` checks before it evaluates the
    /// filter or loads the table, `vector_search` at planning.
    pub fn check_limits(&self) -> Result<()> {
        use crate::security::limits::{at_most, check_filter, MAX_DIMENSIONS, MAX_EF, MAX_K, MAX_QUERY_TEXT_BYTES};
        at_most("k", self.k, MAX_K)?;
        if let Some(text) = &self.text {
            at_most("query text (bytes)", text.len(), MAX_QUERY_TEXT_BYTES)?;
        }
        if let Some(ef) = self.ef {
            at_most("ef", ef, MAX_EF)?;
        }
        if let Some(o) = self.oversample {
            at_most("oversample", o, 100)?;
        }
        at_most("query vector dimensions", self.vector.len(), MAX_DIMENSIONS)?;
        if let Some(filter) = &self.filter {
            check_filter("filter", filter)?;
        }
        Ok(())
    }
}

/// Which path a search took (reported for tests and EXPLAIN-like output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchPath {
    /// Exact scan over every candidate row.
    Exact,
    /// HNSW walk, candidates rescored exactly.
    Hnsw,
    /// The full-text index alone (`text_search`).
    Text,
}

/// Search a loaded table; `allowed` is the pre-filter (None = every live row).
pub fn search(table: &LoadedTable, request: &SearchRequest, allowed: Option<&KeySet>) -> Result<(Vec<Scored>, SearchPath)> {
    let spec = &table.spec;
    if request.vector.len() != spec.dims {
        return Err(Error::invalid("query vector", format!(
            "query vector has {} dimensions; the table has {}",
            request.vector.len(),
            spec.dims
        )));
    }
    if let Some(pos) = request.vector.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid("query vector", format!("query vector has a non-finite value at dimension {pos}")));
    }
    let mut query = request.vector.clone();
    if spec.metric == Metric::Cosine {
        normalize(&mut query);
    }
    let candidates = match allowed {
        Some(a) => a.len(),
        None => table.live_rows,
    };
    let k = request.k.min(candidates);
    if k == 0 {
        return Ok((Vec::new(), SearchPath::Exact));
    }
    // The walk's cost estimate uses the asked-for width: a wide rescoring is no reason to
    // scan everything.
    let asked_ef = request.ef.unwrap_or(DEFAULT_EF_SEARCH).max(1);
    let total = table.live_rows.max(1);
    let exact = request.exact
        || total <= SMALL_TABLE_ROWS
        || (candidates as f64) * (candidates as f64) < asked_ef as f64 * spec.m as f64 * total as f64;
    if exact {
        return Ok((exact_scan(table, &query, k, allowed), SearchPath::Exact));
    }

    let (ef, want) = walk_width(request.ef, k, spec.oversample, request.oversample);
    let has_tombstones = table.live_rows < table.key_space();
    let mut top = TopK::new(k);
    for seg in &table.segments {
        let keys = match allowed {
            Some(a) => seg.index.search(&query, want, ef, Some(&|key: u64| a.contains(key)))?,
            None if has_tombstones => {
                seg.index.search(&query, want, ef, Some(&|key: u64| !table.deleted.get(key as usize).copied().unwrap_or(true)))?
            }
            None => seg.index.search(&query, want, ef, None)?,
        };
        for key in keys {
            let row = (key - seg.meta.base_key) as usize;
            let stored = &seg.vectors[row * spec.dims..(row + 1) * spec.dims];
            top.push(Scored { distance: distance(spec.metric, &query, stored), id_rank: table.id_rank[key as usize], key });
        }
    }
    let found = top.into_sorted();
    if found.len() < k {
        // Never return fewer than min(k, matching rows).
        return Ok((exact_scan(table, &query, k, allowed), SearchPath::Exact));
    }
    Ok((found, SearchPath::Hnsw))
}

/// The graph walk's beam width and the candidates it hands to exact rescoring, for `k`
/// results with the table's `oversample` factor or the request's own. Without an `ef` the
/// walk is wide enough for all `k × oversample` candidates (and at least
/// [`DEFAULT_EF_SEARCH`]). An explicit `ef` is the one knob of speed against recall, so it
/// also caps the table's default candidates (never below `k`): a narrow walk has no more
/// good candidates to give than its width. An explicit oversample factor is always honoured
/// (the walk widens for it).
fn walk_width(ef: Option<usize>, k: usize, table_oversample: usize, request_oversample: Option<usize>) -> (usize, usize) {
    let want = k.saturating_mul(request_oversample.unwrap_or(table_oversample).max(1)).max(k);
    match (ef, request_oversample) {
        (None, _) => (DEFAULT_EF_SEARCH.max(want), want),
        (Some(ef), Some(_)) => (ef.max(want), want),
        (Some(ef), None) => {
            let ef = ef.max(k);
            (ef, want.min(ef))
        }
    }
}

/// Streaming exact top-k over all live (or allowed) rows.
pub fn exact_scan(table: &LoadedTable, query: &[f32], k: usize, allowed: Option<&KeySet>) -> Vec<Scored> {
    let dims = table.spec.dims;
    let metric = table.spec.metric;
    let mut top = TopK::new(k);
    let mut consider = |key: u64, stored: &[f32]| {
        let d = distance(metric, query, stored);
        if d <= top.threshold() {
            top.push(Scored { distance: d, id_rank: table.id_rank[key as usize], key });
        }
    };
    for seg in &table.segments {
        let base = seg.meta.base_key;
        match allowed {
            // Only the allowed rows, which lie scattered through the segment: each row is
            // asked for a few rows ahead, so memory is read while earlier rows are scored.
            Some(a) => {
                let end = base + seg.meta.rows;
                let row = |key: u64| {
                    let at = (key - base) as usize * dims;
                    &seg.vectors[at..at + dims]
                };
                let mut ahead = a.keys_in(base, end).skip(PREFETCH_ROWS_AHEAD);
                for key in a.keys_in(base, end) {
                    if let Some(next) = ahead.next() {
                        prefetch(row(next));
                    }
                    consider(key, row(key));
                }
            }
            None => {
                for (row, stored) in seg.vectors.chunks_exact(dims).enumerate() {
                    let key = base + row as u64;
                    if !table.deleted[key as usize] {
                        consider(key, stored);
                    }
                }
            }
        }
    }
    top.into_sorted()
}

/// How far ahead of the row being scored a filtered scan asks for rows.
const PREFETCH_ROWS_AHEAD: usize = 4;

/// The `_retrieved_by` column's type: a list of leg names (`vector`, `text`).
pub fn retrieved_by_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// A `_retrieved_by` column: one list of leg names per row.
pub(crate) fn retrieved_by<'a>(rows: impl Iterator<Item = &'a [&'a str]>) -> ArrayRef {
    let mut builder = ListBuilder::new(StringBuilder::new());
    for legs in rows {
        for leg in legs {
            builder.values().append_value(leg);
        }
        builder.append(true);
    }
    Arc::new(builder.finish())
}

/// `row_schema`'s fields followed by `extra`.
pub(crate) fn with_fields(row_schema: &Schema, extra: Vec<Field>) -> SchemaRef {
    let mut fields: Vec<_> = row_schema.fields().iter().cloned().collect();
    fields.extend(extra.into_iter().map(Arc::new));
    Arc::new(Schema::new(fields))
}

/// Schema of search results: id, payload, `_distance`, `_rank`, `_retrieved_by`.
pub fn result_schema(row_schema: &Schema) -> SchemaRef {
    with_fields(
        row_schema,
        vec![Field::new("_distance", DataType::Float32, false), Field::new("_rank", DataType::Int64, false), Field::new("_retrieved_by", retrieved_by_type(), false)],
    )
}

/// The id and payload columns of the rows at `keys`, in that order.
pub(crate) fn rows_at(table: &LoadedTable, keys: &[u64]) -> Result<Vec<ArrayRef>> {
    let row_schema = table.row_schema();
    let mut picks = Vec::with_capacity(keys.len());
    for key in keys {
        let seg_idx = table.segments.partition_point(|seg| seg.meta.base_key <= *key) - 1;
        picks.push((seg_idx, (key - table.segments[seg_idx].meta.base_key) as usize));
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(row_schema.fields().len());
    for c in 0..row_schema.fields().len() {
        let sources: Vec<&dyn datafusion::arrow::array::Array> = table.segments.iter().map(|seg| seg.rows.column(c).as_ref()).collect();
        columns.push(interleave(&sources, &picks).map_err(Error::internal)?);
    }
    Ok(columns)
}

/// Turn scored keys into result rows (best first, `_rank` from 1).
pub fn result_batch(table: &LoadedTable, scored: &[Scored]) -> Result<RecordBatch> {
    let schema = result_schema(&table.row_schema());
    if scored.is_empty() {
        // Also the only answer for a table with no segments yet (a following table whose
        // source is empty): there is nothing to interleave from.
        return Ok(RecordBatch::new_empty(schema));
    }
    let keys: Vec<u64> = scored.iter().map(|s| s.key).collect();
    let mut columns = rows_at(table, &keys)?;
    columns.push(Arc::new(Float32Array::from_iter_values(scored.iter().map(|s| s.distance))));
    columns.push(Arc::new(Int64Array::from_iter_values(1..=scored.len() as i64)));
    columns.push(retrieved_by(scored.iter().map(|_| &["vector"][..])));
    RecordBatch::try_new(schema, columns).map_err(Error::internal)
}

/// Schema of [`batch_result`]: `query`, then [`result_schema`]'s columns.
pub fn batch_schema(table: &LoadedTable) -> SchemaRef {
    let mut fields = vec![Arc::new(Field::new("query", DataType::UInt64, false))];
    fields.extend(result_schema(&table.row_schema()).fields().iter().cloned());
    Arc::new(Schema::new(fields))
}

/// One search's result rows with the `query` column of [`batch_result`] (`query` for all).
pub fn with_query_column(batch: RecordBatch, query: usize) -> Result<RecordBatch> {
    let mut fields = vec![Arc::new(Field::new("query", DataType::UInt64, false))];
    fields.extend(batch.schema().fields().iter().cloned());
    let mut columns: Vec<ArrayRef> = vec![Arc::new(UInt64Array::from(vec![query as u64; batch.num_rows()]))];
    columns.extend(batch.columns().iter().cloned());
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(Error::internal)
}

/// The results of many searches of one table as one batch: a `query` column (each search's
/// position among them) before [`result_schema`]'s columns, each search's rows best first.
pub fn batch_result(table: &LoadedTable, results: &[Vec<Scored>]) -> Result<RecordBatch> {
    let schema = batch_schema(table);
    let rows: usize = results.iter().map(Vec::len).sum();
    if rows == 0 {
        return Ok(RecordBatch::new_empty(schema));
    }
    let each = || results.iter().enumerate().flat_map(|(query, scored)| scored.iter().enumerate().map(move |(rank, s)| (query, rank, s)));
    let keys: Vec<u64> = each().map(|(_, _, s)| s.key).collect();
    let mut columns: Vec<ArrayRef> = vec![Arc::new(UInt64Array::from_iter_values(each().map(|(query, _, _)| query as u64)))];
    columns.extend(rows_at(table, &keys)?);
    columns.push(Arc::new(Float32Array::from_iter_values(each().map(|(_, _, s)| s.distance))));
    columns.push(Arc::new(Int64Array::from_iter_values(each().map(|(_, rank, _)| rank as i64 + 1))));
    columns.push(retrieved_by(each().map(|_| &["vector"][..])));
    RecordBatch::try_new(schema, columns).map_err(Error::internal)
}

#[cfg(test)]
mod tests {
    use super::walk_width;

    #[test]
    fn the_default_walk_is_wide_enough_for_every_candidate() {
        assert_eq!(walk_width(None, 10, 2, None), (64, 20));
        assert_eq!(walk_width(None, 10, 10, None), (100, 100));
        assert_eq!(walk_width(None, 100, 1, None), (100, 100));
        assert_eq!(walk_width(None, 10, 2, Some(1)), (64, 10));
    }

    #[test]
    fn an_explicit_ef_caps_the_default_candidates_but_never_below_k() {
        assert_eq!(walk_width(Some(12), 10, 2, None), (12, 12));
        assert_eq!(walk_width(Some(16), 10, 2, None), (16, 16));
        assert_eq!(walk_width(Some(128), 10, 2, None), (128, 20));
        assert_eq!(walk_width(Some(4), 10, 2, None), (10, 10));
        assert_eq!(walk_width(Some(64), 10, 10, None), (64, 64));
    }

    #[test]
    fn an_explicit_oversample_is_honoured_whatever_the_ef() {
        assert_eq!(walk_width(Some(128), 10, 10, Some(100)), (1000, 1000));
        assert_eq!(walk_width(Some(12), 10, 2, Some(2)), (20, 20));
        assert_eq!(walk_width(Some(64), 10, 2, Some(3)), (64, 30));
    }
}
