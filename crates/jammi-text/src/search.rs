//! Searching a table's text: one query over every segment's index, scored with BM25
//! statistics of the table's **live** rows, so neither the segmentation nor rows deleted
//! but not yet compacted away change a row's score.

use std::collections::HashMap;
use std::sync::Arc;

use tantivy::collector::{FilterCollector, TopDocs};
use tantivy::query::Bm25StatisticsProvider;
use tantivy::schema::{Field, IndexRecordOption, Schema};
use tantivy::tokenizer::TokenizerManager;
use tantivy::{DocId, DocSet, Searcher, Term, TERMINATED};

use crate::{parse_query, register_analyzers, schema_of, SegmentTextIndex, TextColumn, TextError, KEY};

/// A predicate over row keys.
pub type KeyPredicate = Arc<dyn Fn(u64) -> bool + Send + Sync>;

/// The text indexes of one generation of a table, with what its deletes take away from the
/// BM25 statistics worked out once (not per query).
pub struct TextTable {
    columns: Vec<TextColumn>,
    schema: Schema,
    tokenizers: TokenizerManager,
    searchers: Vec<Searcher>,
    segments: Vec<Arc<SegmentTextIndex>>,
    /// Deleted documents, sorted: `[segment][tantivy segment][..]`.
    deleted_docs: Vec<Vec<Vec<DocId>>>,
    /// Rejects deleted rows; `None` when nothing is deleted.
    is_deleted: Option<KeyPredicate>,
    live_docs: u64,
    /// Tokens per field over the live rows.
    live_tokens: HashMap<Field, u64>,
}

impl std::fmt::Debug for TextTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTable").field("columns", &self.columns).field("segments", &self.segments.len()).field("live_docs", &self.live_docs).finish()
    }
}

impl TextTable {
    /// The table made of `segments` (each built with `columns`), where `is_deleted` names
    /// the rows that no longer count (a table's tombstones).
    pub fn new(columns: &[TextColumn], segments: Vec<Arc<SegmentTextIndex>>, is_deleted: Option<KeyPredicate>) -> Result<Self, TextError> {
        let (schema, _, fields) = schema_of(columns)?;
        if let Some(other) = segments.iter().find(|s| s.columns != columns) {
            return Err(TextError::Damaged(format!("a segment indexes columns {:?}, not the table's {:?}", other.columns, columns)));
        }
        let tokenizers = TokenizerManager::default();
        register_analyzers(&tokenizers, columns);
        let searchers: Vec<Searcher> = segments.iter().map(|s| s.reader.searcher()).collect();
        let mut deleted_docs = Vec::with_capacity(segments.len());
        let mut deleted_count = 0u64;
        let mut live_tokens: HashMap<Field, u64> = HashMap::new();
        for field in &fields {
            let mut total = 0;
            for searcher in &searchers {
                total += searcher.total_num_tokens(*field)?;
            }
            live_tokens.insert(*field, total);
        }
        for (segment, searcher) in segments.iter().zip(&searchers) {
            let mut per_reader = Vec::with_capacity(segment.keys.len());
            for (ord, keys) in segment.keys.iter().enumerate() {
                let docs: Vec<DocId> = match &is_deleted {
                    Some(deleted) => (0..keys.len() as DocId).filter(|doc| deleted(keys[*doc as usize])).collect(),
                    None => Vec::new(),
                };
                if !docs.is_empty() {
                    let reader = searcher.segment_reader(ord as u32);
                    for field in &fields {
                        let norms = reader.get_fieldnorms_reader(*field)?;
                        let removed: u64 = docs.iter().map(|doc| u64::from(norms.fieldnorm(*doc))).sum();
                        if let Some(total) = live_tokens.get_mut(field) {
                            *total = total.saturating_sub(removed);
                        }
                    }
                }
                deleted_count += docs.len() as u64;
                per_reader.push(docs);
            }
            deleted_docs.push(per_reader);
        }
        let all_docs: u64 = searchers.iter().map(Searcher::num_docs).sum();
        let is_deleted = if deleted_count > 0 { is_deleted } else { None };
        Ok(TextTable { columns: columns.to_vec(), schema, tokenizers, searchers, segments, deleted_docs, is_deleted, live_docs: all_docs - deleted_count, live_tokens })
    }

    /// The indexed columns.
    pub fn columns(&self) -> &[TextColumn] {
        &self.columns
    }

    /// Live rows.
    pub fn live_rows(&self) -> u64 {
        self.live_docs
    }

    /// Live rows holding `term`: every segment's count less its deleted rows that hold it.
    fn live_doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        let mut total = 0;
        for (searcher, deleted) in self.searchers.iter().zip(&self.deleted_docs) {
            total += searcher.doc_freq(term)?;
            for (ord, docs) in deleted.iter().enumerate().filter(|(_, d)| !d.is_empty()) {
                let inverted = searcher.segment_reader(ord as u32).inverted_index(term.field())?;
                let Some(mut postings) = inverted.read_postings(term, IndexRecordOption::Basic)? else { continue };
                for doc in docs {
                    let at = if postings.doc() >= *doc { postings.doc() } else { postings.seek(*doc) };
                    if at == TERMINATED {
                        break;
                    }
                    if at == *doc {
                        total -= 1;
                    }
                }
            }
        }
        Ok(total)
    }

    /// The top `k` live rows for `query` (terms, "quoted phrases", +required, -excluded,
    /// column:word where several columns are indexed), best first, as (key, BM25 score),
    /// among the rows `allowed` accepts (all when `None`). Ties go to the smaller key.
    pub fn search(&self, query: &str, k: usize, allowed: Option<KeyPredicate>) -> Result<Vec<(u64, f32)>, TextError> {
        let parsed = parse_query(&self.schema, &self.tokenizers, &self.columns, query)?;
        if k == 0 || self.segments.is_empty() {
            return Ok(Vec::new());
        }
        let mut terms = Vec::new();
        parsed.query_terms(&mut |term, _| terms.push(term.clone()));
        let mut doc_freqs = HashMap::with_capacity(terms.len());
        for term in terms {
            let freq = self.live_doc_freq(&term)?;
            doc_freqs.insert(term, freq);
        }
        let statistics = LiveStatistics { table: self, doc_freqs };
        let accept: Option<KeyPredicate> = match (&self.is_deleted, allowed) {
            (None, None) => None,
            (Some(deleted), None) => {
                let deleted = Arc::clone(deleted);
                Some(Arc::new(move |key| !deleted(key)))
            }
            (None, Some(allowed)) => Some(allowed),
            (Some(deleted), Some(allowed)) => {
                let deleted = Arc::clone(deleted);
                Some(Arc::new(move |key| allowed(key) && !deleted(key)))
            }
        };
        let mut hits = Vec::new();
        for (segment, searcher) in self.segments.iter().zip(&self.searchers) {
            let top = match &accept {
                // No filter: tantivy may skip blocks that cannot reach the top k.
                None => searcher.search_with_statistics_provider(parsed.as_ref(), &TopDocs::with_limit(k).order_by_score(), &statistics)?,
                Some(accept) => {
                    let accept = Arc::clone(accept);
                    let collector = FilterCollector::new(KEY.to_string(), move |key: u64| accept(key), TopDocs::with_limit(k).order_by_score());
                    searcher.search_with_statistics_provider(parsed.as_ref(), &collector, &statistics)?
                }
            };
            for (score, address) in top {
                let key = segment.keys[address.segment_ord as usize][address.doc_id as usize];
                hits.push((key, score));
            }
        }
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        hits.truncate(k);
        Ok(hits)
    }
}

/// BM25 statistics of the live rows of a [`TextTable`], the query's terms counted up front.
struct LiveStatistics<'a> {
    table: &'a TextTable,
    doc_freqs: HashMap<Term, u64>,
}

impl Bm25StatisticsProvider for LiveStatistics<'_> {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        Ok(self.table.live_tokens.get(&field).copied().unwrap_or(0))
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.table.live_docs)
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        match self.doc_freqs.get(term) {
            Some(freq) => Ok(*freq),
            None => self.table.live_doc_freq(term),
        }
    }
}
