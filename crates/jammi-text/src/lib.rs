//! Full-text indexes for the segments of a vector table (issue 20, first part).
//!
//! A segment's text columns are indexed by tantivy (BM25; positions kept, so phrases work)
//! and the index's files are packed into **one** byte string, so a segment's text index is
//! one file beside its Parquet and HNSW files, written, checksummed and committed the same
//! way. [`SegmentTextIndex::open`] unpacks it into memory. A [`TextTable`] is one generation
//! of a table's segments: it runs one query over all of them with BM25 statistics of the
//! table's live rows (summed over the segments, less the rows deleted), so a row's score
//! depends neither on how the table happens to be split into segments nor on deleted rows
//! not yet compacted away, and it never answers a deleted row.
//!
//! Each document carries the row's `u64` key (the vector table's row key); searches answer
//! keys and scores.

mod analyzer;
mod pack;
mod search;
mod external;

use std::collections::HashSet;

use tantivy::query::{Query, QueryParser};
use tantivy::schema::{Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions};
use tantivy::tokenizer::TokenizerManager;
use tantivy::{Index, IndexReader, TantivyDocument};

pub use analyzer::Analyzer;
pub use external::{analyze, query_terms, search_with_statistics, Statistics};
pub use search::{KeyPredicate, TextTable};

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

fn register_analyzers(tokenizers: &TokenizerManager, columns: &[TextColumn]) {
    for column in columns {
        tokenizers.register(&column.analyzer.tokenizer_name(), column.analyzer.build());
    }
}

/// Parse `query` against `columns` (searched by default: all of them).
fn parse_query(schema: &Schema, tokenizers: &TokenizerManager, columns: &[TextColumn], query: &str) -> Result<Box<dyn Query>, TextError> {
    if query.trim().is_empty() {
        return Err(TextError::Query { query: query.to_string(), position: 0, message: "the text query is empty; give at least one word".into() });
    }
    let fields: Vec<Field> = columns.iter().map(|c| schema.get_field(&c.name)).collect::<Result<_, _>>()?;
    let parser = QueryParser::new(schema.clone(), fields, tokenizers.clone());
    parser.parse_query(query).map_err(|e| match e {
        tantivy::query::QueryParserError::FieldDoesNotExist(name) => {
            let indexed: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
            TextError::Invalid(format!("the text query names column '{name}', which has no text index; the indexed columns are {}", indexed.join(", ")))
        }
        other => query_error(query, &other.to_string()),
    })
}

/// Check `query` against `columns` without an index: the errors [`TextTable::search`]
/// would give for its syntax, so a planner can report them before running anything.
pub fn check_query(columns: &[TextColumn], query: &str) -> Result<(), TextError> {
    let (schema, _, _) = schema_of(columns)?;
    let tokenizers = TokenizerManager::default();
    register_analyzers(&tokenizers, columns);
    parse_query(&schema, &tokenizers, columns, query).map(|_| ())
}

/// Build the packed text index of one segment: `rows` yields each row's key and its text
/// per column (in `columns` order; `None` for NULL).
pub fn build<'a, I>(columns: &[TextColumn], rows: I) -> Result<Vec<u8>, TextError>
where
    I: IntoIterator<Item = (u64, Vec<Option<&'a str>>)>,
{
    let (directory, _) = build_in_memory(columns, rows)?;
    pack::pack(&directory)
}

/// Index `rows` in memory; the directory and the index over it.
fn build_in_memory<'a, I>(columns: &[TextColumn], rows: I) -> Result<(tantivy::directory::RamDirectory, Index), TextError>
where
    I: IntoIterator<Item = (u64, Vec<Option<&'a str>>)>,
{
    let (schema, key, fields) = schema_of(columns)?;
    let directory = tantivy::directory::RamDirectory::create();
    let index = Index::create(directory.clone(), schema, Default::default())?;
    register_analyzers(index.tokenizers(), columns);
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
    Ok((directory, index))
}

/// A segment's text index, loaded.
pub struct SegmentTextIndex {
    reader: IndexReader,
    columns: Vec<TextColumn>,
    /// Each row's key, per tantivy segment, by document id: hits and deleted rows are mapped
    /// without touching the index's columnar files again.
    keys: Vec<Vec<u64>>,
    /// Bytes of the packed index (what it holds in memory).
    bytes: usize,
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
        register_analyzers(index.tokenizers(), columns);
        let reader = index.reader()?;
        let mut keys = Vec::new();
        for segment in reader.searcher().segment_readers() {
            let column = segment.fast_fields().u64(KEY)?;
            let segment_keys: Option<Vec<u64>> = (0..segment.max_doc()).map(|doc| column.first(doc)).collect();
            keys.push(segment_keys.ok_or_else(|| TextError::Damaged("a document has no row key".into()))?);
        }
        Ok(SegmentTextIndex { reader, columns: columns.to_vec(), keys, bytes: bytes.len() })
    }

    /// Documents in the segment.
    pub fn documents(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Approximate memory held, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.bytes + self.keys.iter().map(|k| k.len() * 8).sum::<usize>()
    }

    /// The indexed columns.
    pub fn columns(&self) -> &[TextColumn] {
        &self.columns
    }
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
    use std::sync::Arc;

    use super::*;

    fn english(name: &str) -> TextColumn {
        TextColumn { name: name.into(), analyzer: Analyzer::default() }
    }

    fn index(columns: &[TextColumn], rows: &[(u64, Vec<Option<&str>>)]) -> Arc<SegmentTextIndex> {
        let bytes = build(columns, rows.iter().cloned()).unwrap();
        Arc::new(SegmentTextIndex::open(&bytes, columns).unwrap())
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

    fn rows_of(docs: &[(u64, &'static str)]) -> Vec<(u64, Vec<Option<&'static str>>)> {
        docs.iter().map(|(k, t)| (*k, vec![Some(*t)])).collect()
    }

    fn one_column() -> TextTable {
        let columns = vec![english("body")];
        let index = index(&columns, &rows_of(DOCS));
        TextTable::new(&columns, vec![index], None).unwrap()
    }

    #[test]
    fn stemmed_terms_phrases_required_and_excluded_words() {
        let table = one_column();
        assert_eq!(table.live_rows(), 5);
        let all = |q: &str| keys(&table.search(q, 10, None).unwrap());
        // "compressing" and "compression" share a stem; stop words are dropped.
        let hits = all("compressing the archives");
        assert_eq!(hits.len(), 3, "{hits:?}");
        assert!(hits[..2].contains(&1) && hits[..2].contains(&3), "{hits:?}");
        assert_eq!(all("\"compression tool\""), vec![1]);
        assert_eq!(all("+http compression"), vec![5, 2]);
        assert_eq!(all("compression -http"), vec![1, 3]);
        assert!(all("zebra").is_empty());
        // A filter bounds the answer; so does k.
        assert_eq!(keys(&table.search("compression", 10, Some(Arc::new(|k| k != 5))).unwrap()), vec![1, 3]);
        assert_eq!(table.search("compression", 1, None).unwrap().len(), 1);
        assert!(table.search("compression", 0, None).unwrap().is_empty());
    }

    #[test]
    fn scores_do_not_depend_on_how_rows_are_split_into_segments() {
        let columns = vec![english("body")];
        let rows = rows_of(DOCS);
        let whole = TextTable::new(&columns, vec![index(&columns, &rows)], None).unwrap();
        let split = TextTable::new(&columns, vec![index(&columns, &rows[..2]), index(&columns, &rows[2..])], None).unwrap();
        for query in ["compression", "http files", "\"compression tool\"", "fonts console archives"] {
            let one = whole.search(query, 10, None).unwrap();
            let two = split.search(query, 10, None).unwrap();
            assert_eq!(keys(&one), keys(&two), "{query}");
            for (x, y) in one.iter().zip(&two) {
                assert!((x.1 - y.1).abs() < 1e-5, "{query}: {one:?} vs {two:?}");
            }
        }
    }

    #[test]
    fn deleted_rows_are_not_answered_and_do_not_count_in_the_statistics() {
        // A table with rows 2 and 5 deleted scores exactly like one built without them.
        let columns = vec![english("body")];
        let rows = rows_of(DOCS);
        let deleted: KeyPredicate = Arc::new(|k| k == 2 || k == 5);
        let with_deletes = TextTable::new(&columns, vec![index(&columns, &rows[..3]), index(&columns, &rows[3..])], Some(deleted)).unwrap();
        let kept: Vec<_> = rows.iter().filter(|(k, _)| *k != 2 && *k != 5).cloned().collect();
        let rebuilt = TextTable::new(&columns, vec![index(&columns, &kept)], None).unwrap();
        assert_eq!(with_deletes.live_rows(), 3);
        for query in ["compression", "http", "archives tool", "\"compression tool\" fonts"] {
            let a = with_deletes.search(query, 10, None).unwrap();
            let b = rebuilt.search(query, 10, None).unwrap();
            assert_eq!(keys(&a), keys(&b), "{query}");
            for (x, y) in a.iter().zip(&b) {
                assert!((x.1 - y.1).abs() < 1e-5, "{query}: {a:?} vs {b:?}");
            }
        }
        assert!(with_deletes.search("http", 10, None).unwrap().is_empty());
        // A filter and the deletes together.
        assert_eq!(keys(&with_deletes.search("compression", 10, Some(Arc::new(|k| k != 1))).unwrap()), vec![3]);
    }

    #[test]
    fn several_columns_field_selection_and_analyzers() {
        let columns = vec![english("title"), TextColumn { name: "tag".into(), analyzer: Analyzer::Raw }, TextColumn { name: "note".into(), analyzer: Analyzer::Simple }];
        let rows = vec![
            (10, vec![Some("Running daemons"), Some("Net/Admin"), Some("the running notes")]),
            (11, vec![Some("A runner's guide"), Some("games"), None]),
        ];
        let table = TextTable::new(&columns, vec![index(&columns, &rows)], None).unwrap();
        let q = |q: &str| keys(&table.search(q, 10, None).unwrap());
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
        let table = one_column();
        for (query, position) in [("\"unclosed phrase", 16), ("compression AND (http", 21), ("title:", 6), ("+", 1), ("  ", 0)] {
            match table.search(query, 10, None).unwrap_err() {
                TextError::Query { position: p, message, .. } => assert_eq!(p, position, "{query}: {message}"),
                other => panic!("{query}: {other}"),
            }
            assert!(check_query(table.columns(), query).is_err(), "{query}");
        }
        let e = table.search("colour:red", 10, None).unwrap_err().to_string();
        assert!(e.contains("column 'colour'") && e.contains("indexed columns are body"), "{e}");
        assert!(check_query(table.columns(), "colour:red").is_err());
        assert!(check_query(table.columns(), "body:fonts +console").is_ok());
        // An empty table still checks its queries.
        let empty = TextTable::new(&[english("body")], Vec::new(), None).unwrap();
        assert!(empty.search("fonts", 10, None).unwrap().is_empty());
        assert!(empty.search("\"open", 10, None).is_err());
    }

    #[test]
    fn damaged_packs_are_refused() {
        let columns = vec![english("body")];
        let bytes = build(&columns, rows_of(DOCS)).unwrap();
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
