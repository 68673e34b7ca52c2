//! Full-text and hybrid search of a vector table: `text_search` answers from the
//! segments' BM25 indexes; `hybrid_search` runs a vector search and a text search with the
//! same pre-filter and fuses them (see [`super::fusion`]), reporting which leg found each
//! row and how it ranked there.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float32Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::fusion::{fuse, HybridOptions};
use super::loaded::LoadedTable;
use super::search::{retrieved_by, retrieved_by_type, rows_at, with_fields, SearchPath, SearchRequest};
use super::{filter, text::text_error, vector_hits, SearchResult, VectorEntry, VectorState};
use crate::error::{Error, Result};
use crate::security::limits::{at_most, check_filter, MAX_K, MAX_QUERY_TEXT_BYTES};
use crate::tenant::TenantScope;

/// A full-text query.
#[derive(Debug, Clone, PartialEq)]
pub struct TextSearchRequest {
    /// Words, "quoted phrases", +required, -excluded, column:word.
    pub query: String,
    /// Results wanted.
    pub k: usize,
    /// SQL predicate over payload columns (pre-filter).
    pub filter: Option<String>,
}

impl TextSearchRequest {
    /// The top `k` rows for `query`.
    pub fn new(query: impl Into<String>, k: usize) -> Self {
        TextSearchRequest { query: query.into(), k, filter: None }
    }

    fn check_limits(&self) -> Result<()> {
        check_text("text query", &self.query)?;
        at_most("k", self.k, MAX_K)?;
        if let Some(filter) = &self.filter {
            check_filter("filter", filter)?;
        }
        Ok(())
    }
}

/// A text query's size: not empty, at most [`MAX_QUERY_TEXT_BYTES`].
fn check_text(what: &str, text: &str) -> Result<()> {
    at_most(&format!("{what} (bytes)"), text.len(), MAX_QUERY_TEXT_BYTES)?;
    if text.trim().is_empty() {
        return Err(Error::invalid(what, format!("the {what} is empty; give at least one word")));
    }
    Ok(())
}

/// A hybrid query: a text for the text leg, and a vector (or a text to embed with the
/// table's model) for the vector leg.
#[derive(Debug, Clone, PartialEq)]
pub struct HybridRequest {
    /// The text leg's query.
    pub text: String,
    /// The vector leg's query vector; `None` embeds `semantic_text` (or `text`).
    pub vector: Option<Vec<f32>>,
    /// A text for the vector leg other than `text`, embedded with the table's model.
    pub semantic_text: Option<String>,
    /// Results wanted.
    pub k: usize,
    /// SQL predicate over payload columns, applied to both legs before they search.
    pub filter: Option<String>,
    /// Fusion, candidates per leg, ef.
    pub options: HybridOptions,
}

impl HybridRequest {
    /// `text` for both legs: searched as words, and embedded with the table's model.
    pub fn new(text: impl Into<String>, k: usize) -> Self {
        HybridRequest { text: text.into(), vector: None, semantic_text: None, k, filter: None, options: HybridOptions::default() }
    }

    /// `text` for the text leg, `vector` for the vector leg.
    pub fn with_vector(text: impl Into<String>, vector: Vec<f32>, k: usize) -> Self {
        HybridRequest { vector: Some(vector), ..HybridRequest::new(text, k) }
    }

    fn check_limits(&self) -> Result<()> {
        check_text("text query", &self.text)?;
        if let Some(text) = &self.semantic_text {
            check_text("query text", text)?;
        }
        at_most("k", self.k, MAX_K)?;
        if let Some(filter) = &self.filter {
            check_filter("filter", filter)?;
        }
        Ok(())
    }
}

/// Schema of `text_search` results: id, payload, `_score`, `_rank`, `_retrieved_by`.
pub fn text_result_schema(row_schema: &Schema) -> SchemaRef {
    with_fields(
        row_schema,
        vec![Field::new("_score", DataType::Float32, false), Field::new("_rank", DataType::Int64, false), Field::new("_retrieved_by", retrieved_by_type(), false)],
    )
}

/// Schema of `hybrid_search` results: id, payload, `_score` (fused), `_rank`,
/// `_retrieved_by`, and each leg's `_vector_distance`, `_vector_rank`, `_text_score`,
/// `_text_rank` (NULL where the leg did not find the row).
pub fn hybrid_result_schema(row_schema: &Schema) -> SchemaRef {
    with_fields(
        row_schema,
        vec![
            Field::new("_score", DataType::Float32, false),
            Field::new("_rank", DataType::Int64, false),
            Field::new("_retrieved_by", retrieved_by_type(), false),
            Field::new("_vector_distance", DataType::Float32, true),
            Field::new("_vector_rank", DataType::Int64, true),
            Field::new("_text_score", DataType::Float32, true),
            Field::new("_text_rank", DataType::Int64, true),
        ],
    )
}

fn no_text_index(entry: &VectorEntry) -> Error {
    Error::InvalidVectors {
        table: entry.record.name.clone(),
        message: "this table has no text index, so it cannot be searched by words; import it with --text-column COLUMN (SQL: CREATE TABLE vectors.public.NAME WITH (..., text_columns = 'COLUMN') AS SELECT …)".into(),
    }
}

/// The text leg over `table`: (key, BM25 score), best first, among the filter's rows.
async fn text_hits(entry: &VectorEntry, table: &Arc<LoadedTable>, query: &str, k: usize, filter: Option<&str>) -> Result<Vec<(u64, f32)>> {
    let text = table.text.as_ref().ok_or_else(|| no_text_index(entry))?;
    let allowed: Option<jammi_text::KeyPredicate> = match filter {
        Some(f) if !f.trim().is_empty() => {
            let allowed = filter::allowed_keys(table, f).await?;
            Some(Arc::new(move |key| allowed.contains(key)))
        }
        _ => None,
    };
    text.search(query, k, allowed).map_err(|e| text_error(&entry.record.name, e))
}

/// `text_search` on one resolved table.
pub(crate) async fn text_search_entry(state: &VectorState, scope: TenantScope, entry: &VectorEntry, request: &TextSearchRequest) -> Result<SearchResult> {
    request.check_limits()?;
    if entry.spec.text_columns.is_empty() {
        return Err(no_text_index(entry));
    }
    let table = state.loaded(entry).await?;
    let hits = text_hits(entry, &table, &request.query, request.k, request.filter.as_deref()).await?;
    let schema = text_result_schema(&table.row_schema());
    let batch = if hits.is_empty() {
        RecordBatch::new_empty(schema)
    } else {
        let keys: Vec<u64> = hits.iter().map(|h| h.0).collect();
        let mut columns = rows_at(&table, &keys)?;
        columns.push(Arc::new(Float32Array::from_iter_values(hits.iter().map(|h| h.1))));
        columns.push(Arc::new(Int64Array::from_iter_values(1..=hits.len() as i64)));
        columns.push(retrieved_by(hits.iter().map(|_| &["text"][..])));
        RecordBatch::try_new(schema, columns).map_err(Error::internal)?
    };
    let mut query_id = None;
    if let Some(audit) = state.audit.as_ref().filter(|a| a.audits(&crate::audit::chain_of(scope))) {
        let lineage = serde_json::json!({"table": entry.record.name, "k": request.k, "filter": request.filter, "query": {"text": request.query}});
        query_id = audit.record(scope, crate::audit::SearchAudit { kind: "text", model: None, lineage }, &batch).await?;
    }
    Ok(SearchResult { batch, path: SearchPath::Text, query_id, model: None })
}

/// `hybrid_search` on one resolved table.
pub(crate) async fn hybrid_search_entry(state: &VectorState, scope: TenantScope, entry: &VectorEntry, request: &HybridRequest) -> Result<SearchResult> {
    request.check_limits()?;
    if entry.spec.text_columns.is_empty() {
        return Err(no_text_index(entry));
    }
    let depth = request.options.depth(request.k);
    let mut vector_request = match &request.vector {
        Some(vector) => SearchRequest::new(vector.clone(), depth),
        None => {
            if entry.spec.embedding.is_none() {
                return Err(Error::InvalidVectors {
                    table: entry.record.name.clone(),
                    message: "this table has no embedding model, so the vector leg needs a query vector: hybrid_search('t', 'words', [0.1, …], k); or import the table with --embed COLUMN --model NAME".into(),
                });
            }
            SearchRequest::text(request.semantic_text.clone().unwrap_or_else(|| request.text.clone()), depth)
        }
    };
    vector_request.filter = request.filter.clone();
    vector_request.ef = request.options.ef;
    let (table, scored, path) = vector_hits(state, scope, entry, &vector_request).await?;
    let vector: Vec<(u64, f32)> = scored.iter().map(|s| (s.key, s.distance)).collect();
    let text = text_hits(entry, &table, &request.text, depth, request.filter.as_deref()).await?;
    let fused = fuse(&vector, &text, request.options.fusion, request.k, |key| table.id_rank[key as usize]);

    let schema = hybrid_result_schema(&table.row_schema());
    let batch = if fused.is_empty() { RecordBatch::new_empty(schema) } else { hybrid_batch(&table, &fused, schema)? };
    let model = request.vector.is_none().then_some(entry.spec.embedding.as_ref()).flatten().map(|e| (e.model.clone(), e.version.clone()));
    let mut query_id = None;
    if let Some(audit) = state.audit.as_ref().filter(|a| a.audits(&crate::audit::chain_of(scope))) {
        let fusion = match request.options.fusion {
            super::Fusion::Rrf { k } => serde_json::json!({"fusion": "rrf", "rrf_k": k}),
            super::Fusion::Weighted { vector, text } => serde_json::json!({"fusion": "weighted", "weights": [vector, text]}),
        };
        let lineage = serde_json::json!({
            "table": entry.record.name, "k": request.k, "filter": request.filter, "ef": request.options.ef, "candidates": depth, "fusion": fusion,
            "query": {"text": request.text, "vector": request.vector.as_deref().map(crate::audit::record::vector_lineage), "semantic_text": request.semantic_text},
        });
        query_id = audit.record(scope, crate::audit::SearchAudit { kind: "hybrid", model: model.clone(), lineage }, &batch).await?;
    }
    Ok(SearchResult { batch, path, query_id, model })
}

/// The result rows of a hybrid search, with their provenance columns.
fn hybrid_batch(table: &LoadedTable, fused: &[super::fusion::Fused], schema: SchemaRef) -> Result<RecordBatch> {
    let keys: Vec<u64> = fused.iter().map(|f| f.key).collect();
    let legs: Vec<&[&str]> = fused
        .iter()
        .map(|f| match (f.vector.is_some(), f.text.is_some()) {
            (true, true) => &["vector", "text"][..],
            (true, false) => &["vector"][..],
            _ => &["text"][..],
        })
        .collect();
    let mut columns = rows_at(&table, &keys)?;
    let extra: [ArrayRef; 7] = [
        Arc::new(Float32Array::from_iter_values(fused.iter().map(|f| f.score as f32))),
        Arc::new(Int64Array::from_iter_values(1..=fused.len() as i64)),
        retrieved_by(legs.into_iter()),
        Arc::new(Float32Array::from_iter(fused.iter().map(|f| f.vector.map(|v| v.1)))),
        Arc::new(Int64Array::from_iter(fused.iter().map(|f| f.vector.map(|v| v.0 as i64)))),
        Arc::new(Float32Array::from_iter(fused.iter().map(|f| f.text.map(|t| t.1)))),
        Arc::new(Int64Array::from_iter(fused.iter().map(|f| f.text.map(|t| t.0 as i64)))),
    ];
    columns.extend(extra);
    RecordBatch::try_new(schema, columns).map_err(Error::internal)
}

/// Which search a [`SearchQuery`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    /// Nearest vectors (the text, if that is all there is, embedded with the table's model).
    Vector,
    /// BM25 over the table's text index.
    Text,
    /// Both, fused.
    Hybrid,
}

impl std::str::FromStr for SearchMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "vector" => Ok(SearchMode::Vector),
            "text" => Ok(SearchMode::Text),
            "hybrid" => Ok(SearchMode::Hybrid),
            other => Err(Error::invalid("mode", format!("'{other}' is not a search mode; use vector, text or hybrid"))),
        }
    }
}

/// A search as the CLI and `/v1/search` describe it: a text, a vector or both, and a mode.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// The mode; `None` picks one: a text and a vector → hybrid; a vector → vector; a text
    /// → text on a table with a text index, otherwise vector (the text embedded).
    pub mode: Option<SearchMode>,
    /// A text query.
    pub text: Option<String>,
    /// A query vector.
    pub vector: Option<Vec<f32>>,
    /// Results wanted.
    pub k: usize,
    /// SQL predicate over payload columns (pre-filter).
    pub filter: Option<String>,
    /// HNSW beam width.
    pub ef: Option<usize>,
    /// Exact vector scan.
    pub exact: bool,
    /// Candidates per result before rescoring.
    pub oversample: Option<usize>,
    /// Fusion options (hybrid).
    pub hybrid: HybridOptions,
}

impl SearchQuery {
    /// The mode this query runs in on `entry`, and the request for it.
    pub(crate) fn resolve(&self, entry: &VectorEntry) -> Result<super::search_args::Query> {
        use super::search_args::Query;
        let mode = match (self.mode, &self.text, &self.vector) {
            (Some(mode), _, _) => mode,
            (None, Some(_), Some(_)) => SearchMode::Hybrid,
            (None, None, Some(_)) => SearchMode::Vector,
            (None, Some(_), None) if !entry.spec.text_columns.is_empty() => SearchMode::Text,
            (None, Some(_), None) => SearchMode::Vector,
            (None, None, None) => return Err(Error::invalid("search", "give a query: a vector, a text, or both")),
        };
        let need_text = || self.text.clone().ok_or_else(|| Error::invalid("search", "a text or hybrid search needs a text query"));
        Ok(match mode {
            SearchMode::Vector => {
                let request = match (&self.vector, &self.text) {
                    (Some(vector), None) => SearchRequest::new(vector.clone(), self.k),
                    (None, Some(text)) => SearchRequest::text(text.clone(), self.k),
                    _ => return Err(Error::invalid("search", "a vector search takes a vector or a text to embed, not both; use hybrid mode for both")),
                };
                Query::Vector(SearchRequest { filter: self.filter.clone(), ef: self.ef, exact: self.exact, oversample: self.oversample, ..request })
            }
            SearchMode::Text => {
                if self.vector.is_some() {
                    return Err(Error::invalid("search", "a text search takes no vector; use hybrid mode for both"));
                }
                Query::Text(TextSearchRequest { query: need_text()?, k: self.k, filter: self.filter.clone() })
            }
            SearchMode::Hybrid => {
                let mut request = HybridRequest::new(need_text()?, self.k);
                request.vector = self.vector.clone();
                request.filter = self.filter.clone();
                request.options = HybridOptions { ef: self.hybrid.ef.or(self.ef), ..self.hybrid };
                Query::Hybrid(request)
            }
        })
    }
}

/// Run `query` on one resolved table.
pub(crate) async fn run_query(state: &VectorState, scope: TenantScope, entry: &VectorEntry, query: &super::search_args::Query) -> Result<SearchResult> {
    use super::search_args::Query;
    match query {
        Query::Vector(r) => super::search_entry(state, scope, entry, r).await,
        Query::Text(r) => text_search_entry(state, scope, entry, r).await,
        Query::Hybrid(r) => hybrid_search_entry(state, scope, entry, r).await,
    }
}
