//! Full-text indexes for the segments of a vector table (issue 20, first part).
//!
//! A segment's text columns are indexed by tantivy (BM25; positions kept, so phrases work)
//! and the index's files are packed into **one** byte string, so a segment's text index is
//! one file beside its Parquet and HNSW files, written, checksummed and committed the same
//! way. [`SegmentTextIndex::open`] unpacks it into memory. [`search`] runs one query over
//! any number of segments with BM25 statistics summed over all of them, so a row's score
//! does not depend on how the table happens to be split into segments, and skips rows the
//! caller says are deleted.
//!
//! Each document carries the row's `u64` key (the vector table's row key); searches answer
//! keys and scores.

mod analyzer;
mod pack;

use std::collections::HashSet;

use tantivy::collector::{FilterCollector, TopDocs};
use tantivy::query::{Bm25StatisticsProvider, QueryParser};
use tantivy::schema::{Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions};
use tantivy::{Index, IndexReader, Searcher, TantivyDocument, Term};

pub use analyzer::Analyzer;

/// The name of the key field inside every segment index.
const KEY: &str = "_key";

/// Why a text index cannot be built, read or searched.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// The text query is malformed; `position` is a character offset into it.
    #[error("the text query is malformed at character {position}: {message} (query: {query:?}); quote phrases with \"…\", and write +word to require or -word to exclude a word")]
    Query { query: String, position: usize, message: String },
    /// A packed index is damaged or was written by something else.
    #[error("the text index is damaged: {0}")]
    Damaged(String),
    /// A column name the query or the build asked for is not indexed.
    #[error("{0}")]
    Invalid(String),
    #[error("text index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
}

/// One indexed text column and how it is analysed.
#[derive(Debug, Clone, PartialEq)]
pub struct TextColumn {
    pub name: String,
    pub analyzer: Analyzer,
}

fn schema_of(columns: &[TextColumn]) -> Result<(Schema, Field, Vec<Field>), TextError> {
    let mut builder = Schema::builder();
    let key = builder.add_u64_field(KEY, NumericOptions::default().set_fast().set_indexed());
    let mut seen = HashSet::new();
    let mut fields = Vec::with_capacity(columns.len());
    for column in columns {
        if column.name == KEY || !seen.insert(column.name.clone()) {
            return Err(TextError::Invalid(format!("text column '{}' is named twice or is reserved", column.name)));
        }
        let indexing = TextFieldIndexing::default().set_tokenizer(&column.analyzer.tokenizer_name()).set_index_option(IndexRecordOption::WithFreqsAndPositions);
        fields.push(builder.add_text_field(&column.name, TextOptions::default().set_indexing_options(indexing)));
    }
    Ok((builder.build(), key, fields))
}

fn register_analyzers(index: &Index, columns: &[TextColumn]) {
    for column in columns {
        index.tokenizers().register(&column.analyzer.tokenizer_name(), column.analyzer.build());
    }
}

/// Build the packed text index of one segment: `rows` yields each row's key and its text
/// per column (in `columns` order; `None` for NULL).
pub fn build<'a, I>(columns: &[TextColumn], rows: I) -> Result<Vec<u8>, TextError>
where
    I: IntoIterator<Item = (u64, Vec<Option<&'a str>>)>,
{
    let (schema, key, fields) = schema_of(columns)?;
    let directory = tantivy::directory::RamDirectory::create();
    let index = Index::create(directory.clone(), schema, Default::default())?;
    register_analyzers(&index, columns);
    // One thread, a small arena: a segment is built inside an import or append that is
    // already using the machine.
    let mut writer = index.writer_with_num_threads::<TantivyDocument>(1, 32 * 1024 * 1024)?;
    for (row_key, texts) in rows {
        let mut document = TantivyDocument::default();
        document.add_u64(key, row_key);
        for (field, text) in fields.iter().zip(texts) {
            if let Some(text) = text {
                document.add_text(*field, text);
            }
        }
        writer.add_document(document)?;
    }
    writer.commit()?;
    writer.wait_merging_threads()?;
    pack::pack(&directory)
}

/// A segment's text index, loaded.
pub struct SegmentTextIndex {
    index: Index,
    reader: IndexReader,
    columns: Vec<TextColumn>,
}

impl std::fmt::Debug for SegmentTextIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentTextIndex").field("columns", &self.columns).field("documents", &self.reader.searcher().num_docs()).finish()
    }
}

impl SegmentTextIndex {
    /// Unpack an index [`build`] made with the same `columns`.
    pub fn open(bytes: &[u8], columns: &[TextColumn]) -> Result<Self, TextError> {
        let directory = pack::unpack(bytes)?;
        let index = Index::open(directory).map_err(|e| TextError::Damaged(e.to_string()))?;
        let (expected, _, _) = schema_of(columns)?;
        if index.schema() != expected {
            return Err(TextError::Damaged("its columns are not the table's text columns".into()));
        }
        register_analyzers(&index, columns);
        let reader = index.reader()?;
        Ok(SegmentTextIndex { index, reader, columns: columns.to_vec() })
    }

    /// Documents in the segment.
    pub fn documents(&self) -> u64 {
        self.reader.searcher().num_docs()
    }
}

/// BM25 statistics summed over every segment's searcher.
struct GlobalStatistics<'a> {
    searchers: &'a [Searcher],
}

impl Bm25StatisticsProvider for GlobalStatistics<'_> {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        let mut total = 0;
        for searcher in self.searchers {
            total += searcher.total_num_tokens(field)?;
        }
        Ok(total)
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.searchers.iter().map(Searcher::num_docs).sum())
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        let mut total = 0;
        for searcher in self.searchers {
            total += searcher.doc_freq(term)?;
        }
        Ok(total)
    }
}

/// Which rows a search may answer.
#[derive(Clone)]
pub enum Live {
    /// Every indexed row (no deletes): the fastest path, which lets tantivy skip blocks of
    /// documents that cannot reach the top k.
    All,
    /// Rows whose key the predicate accepts (the table's tombstones excluded).
    Except(std::sync::Arc<dyn Fn(u64) -> bool + Send + Sync>),
}

/// The top `k` rows of all `segments` for `query` (terms, "quoted phrases", +required,
/// -excluded, column:word where several columns are indexed), best first, as (key, BM25
/// score); only `live` rows are answered. Ties go to the smaller key.
pub fn search(segments: &[&SegmentTextIndex], query: &str, k: usize, live: &Live) -> Result<Vec<(u64, f32)>, TextError> {
    let Some(first) = segments.first() else { return Ok(Vec::new()) };
    if k == 0 {
        return Ok(Vec::new());
    }
    let schema = first.index.schema();
    let fields: Vec<Field> = first.columns.iter().map(|c| schema.get_field(&c.name)).collect::<Result<_, _>>()?;
    let parser = QueryParser::for_index(&first.index, fields);
    let parsed = parser.parse_query(query).map_err(|e| match e {
        tantivy::query::QueryParserError::FieldDoesNotExist(name) => {
            let indexed: Vec<&str> = first.columns.iter().map(|c| c.name.as_str()).collect();
            TextError::Invalid(format!("the text query names column '{name}', which has no text index; the indexed columns are {}", indexed.join(", ")))
        }
        other => query_error(query, &other.to_string()),
    })?;
    let searchers: Vec<Searcher> = segments.iter().map(|s| s.reader.searcher()).collect();
    let statistics = GlobalStatistics { searchers: &searchers };
    let mut hits = Vec::new();
    for searcher in &searchers {
        let top = match live {
            Live::All => searcher.search_with_statistics_provider(parsed.as_ref(), &TopDocs::with_limit(k).order_by_score(), &statistics)?,
            Live::Except(accept) => {
                let accept = std::sync::Arc::clone(accept);
                let collector = FilterCollector::new(KEY.to_string(), move |key: u64| accept(key), TopDocs::with_limit(k).order_by_score());
                searcher.search_with_statistics_provider(parsed.as_ref(), &collector, &statistics)?
            }
        };
        // The key column of each tantivy segment, opened once per search, not per hit.
        let mut columns: Vec<Option<tantivy::columnar::Column<u64>>> = vec![None; searcher.segment_readers().len()];
        for (score, address) in top {
            let column = match &mut columns[address.segment_ord as usize] {
                Some(column) => column,
                slot => slot.insert(searcher.segment_reader(address.segment_ord).fast_fields().u64(KEY)?),
            };
            if let Some(key) = column.first(address.doc_id) {
                hits.push((key, score));
            }
        }
    }
    hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    hits.truncate(k);
    Ok(hits)
}

/// A query error with the position the grammar's lenient parse points at (0 when only the
/// field or term resolution failed).
fn query_error(query: &str, message: &str) -> TextError {
    let (_, errors) = tantivy::query_grammar::parse_query_lenient(query);
    let (position, message) = match errors.first() {
        Some(e) => (query[..e.pos.min(query.len())].chars().count(), format!("{} ({message})", e.message)),
        None => (0, message.to_string()),
    };
    TextError::Query { query: query.to_string(), position, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn english(name: &str) -> TextColumn {
        TextColumn { name: name.into(), analyzer: Analyzer::default() }
    }

    fn index(columns: &[TextColumn], rows: &[(u64, Vec<Option<&str>>)]) -> SegmentTextIndex {
        let bytes = build(columns, rows.iter().cloned()).unwrap();
        SegmentTextIndex::open(&bytes, columns).unwrap()
    }

    fn keys(hits: &[(u64, f32)]) -> Vec<u64> {
        hits.iter().map(|h| h.0).collect()
    }

    const DOCS: &[(u64, &str)] = &[
        (1, "A fast compression tool for large archives"),
        (2, "Network daemon serving files over HTTP"),
        (3, "Compressing archives: the zstd compressor and its tools"),
        (4, "Fonts for the console"),
        (5, "HTTP client library with compression support"),
    ];

    fn one_column() -> (Vec<TextColumn>, SegmentTextIndex) {
        let columns = vec![english("body")];
        let rows: Vec<(u64, Vec<Option<&str>>)> = DOCS.iter().map(|(k, t)| (*k, vec![Some(*t)])).collect();
        let index = index(&columns, &rows);
        (columns, index)
    }

    #[test]
    fn stemmed_terms_phrases_required_and_excluded_words() {
        let (_, index) = one_column();
        assert_eq!(index.documents(), 5);
        let all = |q: &str| keys(&search(&[&index], q, 10, &Live::All).unwrap());
        // "compressing" and "compression" share a stem; stop words are dropped.
        let hits = all("compressing the archives");
        assert_eq!(hits.len(), 3, "{hits:?}");
        assert!(hits[..2].contains(&1) && hits[..2].contains(&3), "{hits:?}");
        assert_eq!(all("\"compression tool\""), vec![1]);
        assert_eq!(all("+http compression"), vec![5, 2]);
        assert_eq!(all("compression -http"), vec![1, 3]);
        assert!(all("zebra").is_empty());
        // Deleted rows are skipped; k bounds the answer.
        assert_eq!(keys(&search(&[&index], "compression", 10, &Live::Except(std::sync::Arc::new(|k| k != 5))).unwrap()), vec![1, 3]);
        assert_eq!(search(&[&index], "compression", 1, &Live::All).unwrap().len(), 1);
        assert!(search(&[&index], "compression", 0, &Live::All).unwrap().is_empty());
    }

    #[test]
    fn scores_do_not_depend_on_how_rows_are_split_into_segments() {
        let columns = vec![english("body")];
        let rows: Vec<(u64, Vec<Option<&str>>)> = DOCS.iter().map(|(k, t)| (*k, vec![Some(*t)])).collect();
        let whole = index(&columns, &rows);
        let a = index(&columns, &rows[..2]);
        let b = index(&columns, &rows[2..]);
        for query in ["compression", "http files", "\"compression tool\"", "fonts console archives"] {
            let one = search(&[&whole], query, 10, &Live::All).unwrap();
            let split = search(&[&a, &b], query, 10, &Live::All).unwrap();
            assert_eq!(keys(&one), keys(&split), "{query}");
            for (x, y) in one.iter().zip(&split) {
                assert!((x.1 - y.1).abs() < 1e-5, "{query}: {one:?} vs {split:?}");
            }
        }
    }

    #[test]
    fn several_columns_field_selection_and_analyzers() {
        let columns = vec![english("title"), TextColumn { name: "tag".into(), analyzer: Analyzer::Raw }, TextColumn { name: "note".into(), analyzer: Analyzer::Simple }];
        let rows = vec![
            (10, vec![Some("Running daemons"), Some("Net/Admin"), Some("the running notes")]),
            (11, vec![Some("A runner's guide"), Some("games"), None]),
        ];
        let index = index(&columns, &rows);
        let q = |q: &str| keys(&search(&[&index], q, 10, &Live::All).unwrap());
        assert_eq!(q("title:run"), vec![10]);
        // The raw column matches only the exact value.
        assert_eq!(q("tag:\"Net/Admin\""), vec![10]);
        assert!(q("tag:net").is_empty());
        // The simple analyzer keeps stop words and does not stem.
        assert_eq!(q("note:the"), vec![10]);
        assert!(q("note:run").is_empty());
        assert_eq!("German".parse::<Analyzer>().unwrap().to_string(), "german");
        assert!("klingon".parse::<Analyzer>().unwrap_err().contains("raw, simple"));
    }

    #[test]
    fn malformed_queries_and_unknown_fields_are_clean_errors() {
        let (_, index) = one_column();
        for (query, position) in [("\"unclosed phrase", 16), ("compression AND (http", 21), ("title:", 6), ("+", 1)] {
            match search(&[&index], query, 10, &Live::All).unwrap_err() {
                TextError::Query { position: p, message, .. } => assert_eq!(p, position, "{query}: {message}"),
                other => panic!("{query}: {other}"),
            }
        }
        let e = search(&[&index], "colour:red", 10, &Live::All).unwrap_err().to_string();
        assert!(e.contains("column 'colour'") && e.contains("indexed columns are body"), "{e}");
    }

    #[test]
    fn damaged_packs_are_refused() {
        let columns = vec![english("body")];
        let bytes = build(&columns, DOCS.iter().map(|(k, t)| (*k, vec![Some(*t)]))).unwrap();
        assert!(SegmentTextIndex::open(&bytes, &columns).is_ok());
        for damaged in [&bytes[..bytes.len() - 1], &bytes[8..], &[]] {
            assert!(matches!(SegmentTextIndex::open(damaged, &columns), Err(TextError::Damaged(_))));
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(SegmentTextIndex::open(&trailing, &columns), Err(TextError::Damaged(_))));
        // Opened with other columns than it was built with.
        assert!(matches!(SegmentTextIndex::open(&bytes, &[english("title")]), Err(TextError::Damaged(_))));
        assert!(build(&[english("a"), english("a")], std::iter::empty()).is_err());
    }
}
