//! Text search where the index lives elsewhere: a table that keeps its own term lists and
//! document lengths (a mutable table's full-text index, stored in its database and written
//! in the writing transaction) asks which terms a text holds ([`analyze`]) and which a
//! query needs ([`query_terms`]), fetches the candidate rows, and scores them here with the
//! whole table's BM25 statistics ([`search_with_statistics`]).

use std::collections::{HashMap, HashSet};

use tantivy::collector::TopDocs;
use tantivy::query::Bm25StatisticsProvider;
use tantivy::schema::Field;
use tantivy::tokenizer::TokenizerManager;
use tantivy::Term;

use crate::{build_in_memory, parse_query, register_analyzers, schema_of, Analyzer, TextColumn, TextError, KEY};

/// The distinct terms of `text` under `analyzer`, and how many tokens it counts (the
/// document length BM25 uses).
pub fn analyze(analyzer: &Analyzer, text: &str) -> (Vec<String>, u64) {
    let mut built = analyzer.build();
    let mut stream = built.token_stream(text);
    let (mut terms, mut count) = (HashSet::new(), 0u64);
    while let Some(token) = stream.next() {
        terms.insert(token.text.clone());
        count += 1;
    }
    let mut terms: Vec<String> = terms.into_iter().collect();
    terms.sort();
    (terms, count)
}

/// The (column position, term) pairs `query` looks up, after each column's analyzer; a
/// malformed query is the same error a search gives.
pub fn query_terms(columns: &[TextColumn], query: &str) -> Result<Vec<(usize, String)>, TextError> {
    let (schema, _, fields) = schema_of(columns)?;
    let tokenizers = TokenizerManager::default();
    register_analyzers(&tokenizers, columns);
    let parsed = parse_query(&schema, &tokenizers, columns, query)?;
    let mut out = Vec::new();
    parsed.query_terms(&mut |term, _| {
        if let (Some(position), Some(text)) = (fields.iter().position(|f| *f == term.field()), term.value().as_str()) {
            out.push((position, text.to_string()));
        }
    });
    out.sort();
    out.dedup();
    Ok(out)
}

/// BM25 statistics of a whole table, kept outside the index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Statistics {
    /// Rows.
    pub documents: u64,
    /// Tokens per column (in `columns` order).
    pub tokens: Vec<u64>,
    /// Rows holding each (column position, term).
    pub doc_freq: HashMap<(usize, String), u64>,
}

/// The top `k` of `rows` (the candidates: rows holding some term of the query) for `query`,
/// scored with the table's `statistics` rather than the candidates' own, as (key, score),
/// best first; ties go to the smaller key.
pub fn search_with_statistics<'a, I>(columns: &[TextColumn], rows: I, query: &str, k: usize, statistics: &Statistics) -> Result<Vec<(u64, f32)>, TextError>
where
    I: IntoIterator<Item = (u64, Vec<Option<&'a str>>)>,
{
    let (schema, _, fields) = schema_of(columns)?;
    let (_, index) = build_in_memory(columns, rows)?;
    let parsed = parse_query(&schema, index.tokenizers(), columns, query)?;
    if k == 0 {
        return Ok(Vec::new());
    }
    let searcher = index.reader()?.searcher();
    let provider = External { fields: &fields, statistics };
    let top = searcher.search_with_statistics_provider(parsed.as_ref(), &TopDocs::with_limit(k).order_by_score(), &provider)?;
    let mut hits = Vec::with_capacity(top.len());
    for (score, address) in top {
        let keys = searcher.segment_reader(address.segment_ord).fast_fields().u64(KEY)?;
        if let Some(key) = keys.first(address.doc_id) {
            hits.push((key, score));
        }
    }
    hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(hits)
}

struct External<'a> {
    fields: &'a [Field],
    statistics: &'a Statistics,
}

impl External<'_> {
    fn position(&self, field: Field) -> Option<usize> {
        self.fields.iter().position(|f| *f == field)
    }
}

impl Bm25StatisticsProvider for External<'_> {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        Ok(self.position(field).and_then(|p| self.statistics.tokens.get(p).copied()).unwrap_or(0))
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.statistics.documents)
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        let key = self.position(term.field()).zip(term.value().as_str().map(str::to_string));
        Ok(key.and_then(|k| self.statistics.doc_freq.get(&k).copied()).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::TextTable;

    #[test]
    fn scoring_candidates_with_the_tables_statistics_equals_searching_the_table() {
        let columns = vec![TextColumn { name: "body".into(), analyzer: Analyzer::default() }];
        let docs = [
            (1u64, "A fast compression tool for large archives"),
            (2, "Network daemon serving files over HTTP"),
            (3, "Compressing archives: the zstd compressor and its tools"),
            (4, "Fonts for the console"),
            (5, "HTTP client library with compression support"),
        ];
        let rows = || docs.iter().map(|(k, t)| (*k, vec![Some(*t)]));
        let whole = TextTable::new(&columns, vec![Arc::new(crate::SegmentTextIndex::open(&crate::build(&columns, rows()).unwrap(), &columns).unwrap())], None).unwrap();
        // The statistics a table would keep: per row its terms and length.
        let mut statistics = Statistics { documents: docs.len() as u64, tokens: vec![0], doc_freq: HashMap::new() };
        let mut terms_of = HashMap::new();
        for (key, text) in docs {
            let (terms, length) = analyze(&columns[0].analyzer, text);
            statistics.tokens[0] += length;
            for term in &terms {
                *statistics.doc_freq.entry((0, term.clone())).or_default() += 1;
            }
            terms_of.insert(key, terms);
        }
        for query in ["compression", "http files", "\"compression tool\"", "+http -daemon", "compressing archives"] {
            let wanted = query_terms(&columns, query).unwrap();
            assert!(!wanted.is_empty(), "{query}");
            // Candidates: the rows holding any of the query's terms.
            let candidates: Vec<(u64, Vec<Option<&str>>)> = docs.iter().filter(|(k, _)| wanted.iter().any(|(_, t)| terms_of[k].contains(t))).map(|(k, t)| (*k, vec![Some(*t)])).collect();
            let got = search_with_statistics(&columns, candidates, query, 10, &statistics).unwrap();
            let want = whole.search(query, 10, None).unwrap();
            assert_eq!(got.iter().map(|h| h.0).collect::<Vec<_>>(), want.iter().map(|h| h.0).collect::<Vec<_>>(), "{query}");
            for (a, b) in got.iter().zip(&want) {
                assert!((a.1 - b.1).abs() < 1e-5, "{query}: {got:?} vs {want:?}");
            }
        }
        assert_eq!(query_terms(&columns, "The Compressing").unwrap(), vec![(0, "compress".to_string())]);
        assert!(query_terms(&columns, "\"open").is_err());
        assert_eq!(analyze(&Analyzer::Raw, "Net/Admin"), (vec!["Net/Admin".to_string()], 1));
    }
}
