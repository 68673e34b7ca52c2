//! Full-text and hybrid search of vector tables: text indexes written with every segment and
//! committed with it (appends findable at once, deletes gone at once, scores independent of
//! segmentation and of deleted rows), rebuilt when missing, `text_search` and
//! `hybrid_search` in SQL with provenance columns, prepared parameters, and clean refusals.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jammi_db::datafusion::arrow::array::{Array, ArrayRef, FixedSizeListArray, Float32Array, Int64Array, ListArray, RecordBatch, StringArray};
use jammi_db::datafusion::arrow::datatypes::{DataType, Field, Schema};
use jammi_db::datafusion::common::ScalarValue;
use jammi_db::datafusion::parquet::arrow::ArrowWriter;
use jammi_db::vector::{HybridOptions, HybridRequest, ImportSpec, NoProgress, SearchMode, SearchQuery, TextIndexColumn, TextSearchRequest};
use jammi_db::{Config, Session, TenantId};

use crate::support::*;

/// One document: id, body, section, vector.
#[derive(Debug, Clone)]
struct Doc {
    id: i64,
    body: String,
    section: String,
    vector: [f32; 4],
}

fn doc(id: i64, body: &str, section: &str, vector: [f32; 4]) -> Doc {
    Doc { id, body: body.into(), section: section.into(), vector }
}

/// Five documents that matter, and `filler` more whose vectors are orthogonal to the first
/// axis and whose words are their own.
fn corpus(filler: usize) -> Vec<Doc> {
    let mut docs = vec![
        doc(1, "zstd compression tool for archives", "utils", [1.0, 0.0, 0.0, 0.0]),
        doc(2, "network daemon serving files over http", "net", [-1.0, 0.0, 0.0, 0.0]),
        doc(3, "compression library with http support", "libs", [0.7, 0.7, 0.0, 0.0]),
        doc(4, "fonts for the console", "fonts", [0.0, 0.0, 1.0, 0.0]),
        doc(5, "compression compression benchmark suite", "utils", [0.0, 0.0, 0.0, 1.0]),
    ];
    for i in 0..filler {
        let t = i as f32 * 0.37;
        docs.push(doc(100 + i as i64, &format!("filler entry {} mentions word{} and topic{}", i, i % 7, i % 13), "misc", [0.0, 0.0, t.cos(), t.sin()]));
    }
    docs
}

/// A deterministic corpus of `n` documents over a small vocabulary (so terms repeat with
/// varied frequencies and lengths), ids from `first`.
fn vocabulary_corpus(n: usize, first: i64) -> Vec<Doc> {
    const WORDS: &[&str] = &["kernel", "driver", "network", "archive", "compression", "font", "python", "library", "daemon", "editor", "graphics", "audio"];
    let mut state = 0x2545_F491_4F6C_DD1Du64 ^ first as u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|i| {
            let len = 3 + (next() % 9) as usize;
            let words: Vec<&str> = (0..len).map(|_| WORDS[(next() % WORDS.len() as u64) as usize]).collect();
            let v = [(next() % 100) as f32 / 100.0, (next() % 100) as f32 / 100.0, 0.5, 0.5];
            doc(first + i as i64, &words.join(" "), if i % 3 == 0 { "a" } else { "b" }, v)
        })
        .collect()
}

fn write_docs(path: &Path, docs: &[Doc]) {
    let values = Float32Array::from(docs.iter().flat_map(|d| d.vector).collect::<Vec<_>>());
    let embedding = FixedSizeListArray::try_new(Arc::new(Field::new("item", DataType::Float32, true)), 4, Arc::new(values), None).unwrap();
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("body", DataType::Utf8, true),
        Field::new("section", DataType::Utf8, false),
        Field::new("embedding", embedding.data_type().clone(), false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(docs.iter().map(|d| d.id).collect::<Vec<_>>())),
        Arc::new(StringArray::from(docs.iter().map(|d| d.body.clone()).collect::<Vec<_>>())),
        Arc::new(StringArray::from(docs.iter().map(|d| d.section.clone()).collect::<Vec<_>>())),
        Arc::new(embedding),
    ];
    let batch = RecordBatch::try_new(Arc::new(schema), columns).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn text_spec(name: &str, path: &Path, columns: &[&str]) -> ImportSpec {
    let mut spec = ImportSpec::new(name, path.display().to_string(), "id", "embedding");
    spec.text_columns = columns.iter().map(|c| TextIndexColumn::parse(c).unwrap()).collect();
    spec
}

async fn import_docs(session: &Session, dir: &Path, name: &str, docs: &[Doc], columns: &[&str]) -> PathBuf {
    let file = dir.join(format!("{name}.parquet"));
    write_docs(&file, docs);
    session.vectors().import(text_spec(name, &file, columns), &NoProgress).await.unwrap_or_else(|e| panic!("import {name}: {e}"));
    file
}

/// (id, _score) of a text or hybrid result.
fn scored(batch: &RecordBatch) -> Vec<(i64, f32)> {
    let ids = batch.column_by_name("id").unwrap().as_any().downcast_ref::<Int64Array>().unwrap();
    let scores = batch.column_by_name("_score").unwrap().as_any().downcast_ref::<Float32Array>().unwrap();
    (0..batch.num_rows()).map(|i| (ids.value(i), scores.value(i))).collect()
}

fn ids(batch: &RecordBatch) -> Vec<i64> {
    scored(batch).into_iter().map(|h| h.0).collect()
}

async fn text(session: &Session, table: &str, query: &str, k: usize) -> Vec<(i64, f32)> {
    scored(&session.vectors().text_search(table, &TextSearchRequest::new(query, k)).await.unwrap_or_else(|e| panic!("{query}: {e}")).batch)
}

/// The `_retrieved_by` lists of a result.
fn legs(batch: &RecordBatch) -> Vec<Vec<String>> {
    let lists = batch.column_by_name("_retrieved_by").unwrap().as_any().downcast_ref::<ListArray>().unwrap();
    (0..lists.len())
        .map(|i| {
            let values = lists.value(i);
            let strings = values.as_any().downcast_ref::<StringArray>().unwrap();
            (0..strings.len()).map(|j| strings.value(j).to_string()).collect()
        })
        .collect()
}

/// Files named `name` anywhere under `root`.
fn files_named(root: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n.to_string_lossy() == name) {
                out.push(path);
            }
        }
    }
    out
}

#[tokio::test]
async fn text_search_finds_words_phrases_and_fields_with_bm25_scores() {
    let (session, dir) = temp_session().await;
    import_docs(&session, dir.path(), "docs", &corpus(40), &["body", "section:raw"]).await;

    // Stemming: "compressing" finds "compression"; the document saying it twice ranks first.
    let hits = text(&session, "docs", "compressing", 10).await;
    assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>()[0], 5, "{hits:?}");
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert!(hits.windows(2).all(|w| w[0].1 >= w[1].1), "scores descend: {hits:?}");
    // Phrases, required and excluded words, a field with the raw analyzer.
    assert_eq!(text(&session, "docs", "\"compression tool\"", 10).await.iter().map(|h| h.0).collect::<Vec<_>>(), vec![1]);
    assert_eq!(text(&session, "docs", "+http compression", 10).await.iter().map(|h| h.0).collect::<Vec<_>>(), vec![3, 2]);
    assert_eq!(text(&session, "docs", "compression -http", 10).await.iter().map(|h| h.0).collect::<Vec<_>>().len(), 2);
    assert_eq!(text(&session, "docs", "section:net", 10).await.iter().map(|h| h.0).collect::<Vec<_>>(), vec![2]);
    assert!(text(&session, "docs", "section:Net", 10).await.is_empty(), "raw matches the exact value only");
    assert!(text(&session, "docs", "zebra", 10).await.is_empty());

    // SQL: id, payload, _score, _rank, _retrieved_by; a filter; min(k, matches) rows.
    let r = rows(&session, "SELECT id, section, _rank, _retrieved_by FROM text_search('docs', 'compression', 10) ORDER BY _rank").await;
    assert_eq!(r, vec![vec!["5", "utils", "1", "[text]"], vec!["1", "utils", "2", "[text]"], vec!["3", "libs", "3", "[text]"]], "{r:?}");
    let r = rows(&session, "SELECT id FROM text_search('docs', 'compression', 10, 'section = ''libs''')").await;
    assert_eq!(r, vec![vec!["3"]]);
    let r = rows(&session, "SELECT count(*) FROM text_search('docs', 'filler', 5)").await;
    assert_eq!(r, vec![vec!["5"]]);
    // Joins with the rows' other data, like any table.
    let r = rows(&session, "SELECT t.id, v.section FROM text_search('docs', 'fonts', 3) t JOIN vectors.public.docs v ON v.id = t.id").await;
    assert_eq!(r, vec![vec!["4", "fonts"]]);
    // The table lists its text index.
    let list = session.vectors().list().await.unwrap();
    assert_eq!(list[0].text_columns, vec!["body:english".to_string(), "section:raw".to_string()]);
}

#[tokio::test]
async fn appends_and_deletes_reach_text_search_at_once_and_scores_ignore_segments_and_deleted_rows() {
    let (session, dir) = temp_session().await;
    let first = vocabulary_corpus(200, 1);
    let second = vocabulary_corpus(100, 1001);
    import_docs(&session, dir.path(), "docs", &first, &["body"]).await;
    assert!(text(&session, "docs", "zebra", 10).await.is_empty());

    // An append is searchable by text when it returns: no rebuild step.
    let mut appended = second.clone();
    appended[7].body = "a zebra crossing".into();
    let file = dir.path().join("more.parquet");
    write_docs(&file, &appended);
    session.vectors().append("docs", &file.display().to_string(), "id", "embedding", &Default::default(), &NoProgress).await.unwrap();
    assert_eq!(text(&session, "docs", "zebra", 10).await.iter().map(|h| h.0).collect::<Vec<_>>(), vec![1008]);

    // A delete disappears from text results at once.
    let deleted: Vec<i64> = (1..=300).filter(|i| i % 11 == 0).map(|i| if i > 200 { 800 + i } else { i }).chain([1008]).collect();
    let removed = session.vectors().delete_ids("docs", &deleted.iter().map(|i| i.to_string()).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(removed as usize, deleted.len());
    assert!(text(&session, "docs", "zebra", 10).await.is_empty());

    // Scores equal those of one table built from the live rows alone: BM25 statistics are
    // over the live rows, summed across segments.
    let live: Vec<Doc> = first.iter().chain(&appended).filter(|d| !deleted.contains(&d.id)).cloned().collect();
    import_docs(&session, dir.path(), "whole", &live, &["body"]).await;
    assert_eq!(session.vectors().list().await.unwrap().iter().find(|t| t.name == "docs").unwrap().segments, 2);
    same_scores(&session, &deleted, "two segments with tombstones").await;
    // Compaction merges the text indexes with the rest.
    session.vectors().compact("docs", &NoProgress).await.unwrap();
    assert_eq!(session.vectors().list().await.unwrap().iter().find(|t| t.name == "docs").unwrap().segments, 1);
    same_scores(&session, &deleted, "compacted").await;

    // Every segment's text index is listed in the manifest with its digest.
    let indexes = files_named(dir.path(), "text.index");
    assert!(!indexes.is_empty());
    let mut listed = 0;
    for index in &indexes {
        let segment_dir = index.parent().unwrap();
        let table_dir = segment_dir.parent().unwrap();
        let segment = segment_dir.file_name().unwrap().to_string_lossy().to_string();
        let bytes = std::fs::read(index).unwrap();
        let sha = sha256_hex(&bytes);
        for manifest in std::fs::read_dir(table_dir).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("manifest-")) {
            let json: serde_json::Value = serde_json::from_slice(&std::fs::read(manifest.path()).unwrap()).unwrap();
            for meta in json["segments"].as_array().unwrap() {
                if meta["name"] == segment.as_str() {
                    assert_eq!(meta["text_sha256"].as_str(), Some(sha.as_str()), "{segment}");
                    assert_eq!(meta["text_bytes"].as_u64(), Some(bytes.len() as u64));
                    listed += 1;
                }
            }
        }
    }
    assert!(listed >= indexes.len(), "every text index is in a manifest");
}

/// `docs` (segmented, with deletes) and `whole` (its live rows imported at once) answer
/// with the same scores.
async fn same_scores(session: &Session, deleted: &[i64], label: &str) {
    for query in ["kernel", "network daemon", "\"python library\"", "graphics -audio", "+font editor archive"] {
        let a = text(session, "docs", query, 20).await;
        let b = text(session, "whole", query, 20).await;
        assert_eq!(a.len(), b.len(), "{label} {query}");
        for (x, y) in a.iter().zip(&b) {
            assert!((x.1 - y.1).abs() <= 1e-4 * y.1.abs().max(1.0), "{label} {query}: {a:?} vs {b:?}");
        }
        // Equal scores may order differently only among themselves.
        let (mut ia, mut ib): (Vec<i64>, Vec<i64>) = (a.iter().map(|h| h.0).collect(), b.iter().map(|h| h.0).collect());
        ia.sort();
        ib.sort();
        if a.len() < 20 {
            assert_eq!(ia, ib, "{label} {query}");
        }
        assert!(a.iter().all(|h| !deleted.contains(&h.0)), "{label} {query}: a deleted row came back");
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_missing_or_damaged_text_index_is_rebuilt_from_the_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        let session = Session::open(Config::embedded(dir.path())).await.unwrap();
        import_docs(&session, dir.path(), "docs", &corpus(30), &["body"]).await;
        assert_eq!(text(&session, "docs", "fonts", 5).await[0].0, 4);
    }
    let indexes = files_named(dir.path(), "text.index");
    assert_eq!(indexes.len(), 1);
    std::fs::remove_file(&indexes[0]).unwrap();
    {
        let session = Session::open(Config::embedded(dir.path())).await.unwrap();
        assert_eq!(text(&session, "docs", "fonts", 5).await[0].0, 4);
        assert!(indexes[0].exists(), "the missing index was written back");
    }
    std::fs::write(&indexes[0], b"not an index").unwrap();
    let session = Session::open(Config::embedded(dir.path())).await.unwrap();
    assert_eq!(text(&session, "docs", "\"compression tool\"", 5).await[0].0, 1);
}

#[tokio::test]
async fn hybrid_search_fuses_both_legs_and_says_which_found_each_row() {
    let (session, dir) = temp_session().await;
    import_docs(&session, dir.path(), "docs", &corpus(60), &["body"]).await;
    let query = "[1, 0, 0, 0]";

    // Each leg retrieves k = 3 rows (at least k, whatever `candidates` says): the vector leg
    // 1, 3 and a filler row; the text leg 3 then 2 (the farthest row from the vector).
    let sql = format!(
        "SELECT id, _rank, _retrieved_by, _vector_rank, _vector_distance IS NULL, _text_rank, _text_score IS NULL FROM hybrid_search('docs', 'http', '{query}', 3, NULL, 'fusion = rrf, candidates = 2') ORDER BY _rank"
    );
    let r = rows(&session, &sql).await;
    assert_eq!(
        r,
        vec![
            vec!["3", "1", "[vector, text]", "2", "false", "1", "false"],
            vec!["1", "2", "[vector]", "1", "false", "NULL", "true"],
            vec!["2", "3", "[text]", "NULL", "true", "2", "false"],
        ],
        "{r:?}"
    );
    // The fused score is the documented RRF sum.
    let mut request = HybridRequest::with_vector("http", vec![1.0, 0.0, 0.0, 0.0], 3);
    request.options = HybridOptions::parse("fusion = rrf, candidates = 2").unwrap();
    let result = session.vectors().hybrid_search("docs", &request).await.unwrap();
    let fused = scored(&result.batch);
    assert!((fused[0].1 as f64 - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-6, "{fused:?}");
    assert!((fused[1].1 as f64 - 1.0 / 61.0).abs() < 1e-6);
    assert_eq!(legs(&result.batch)[0], vec!["vector", "text"]);

    // Weighted fusion follows its weights.
    request.options = HybridOptions::parse("weights = 1:0, candidates = 2").unwrap();
    assert_eq!(ids(&session.vectors().hybrid_search("docs", &request).await.unwrap().batch)[0], 1);
    request.options = HybridOptions::parse("weights = 0:1, candidates = 2").unwrap();
    assert_eq!(ids(&session.vectors().hybrid_search("docs", &request).await.unwrap().batch)[0], 3);

    // The pre-filter applies to both legs, and the answer is min(k, matches).
    let r = rows(&session, &format!("SELECT id, _retrieved_by FROM hybrid_search('docs', 'http', '{query}', 10, 'section = ''net''')")).await;
    assert_eq!(r, vec![vec!["2", "[vector, text]"]]);
    let r = rows(&session, &format!("SELECT count(*) FROM hybrid_search('docs', 'compression', '{query}', 10, 'section IN (''utils'', ''libs'', ''fonts'')')")).await;
    assert_eq!(r, vec![vec!["4"]], "the vector leg finds all four filtered rows");

    // The three functions' results union and join on id and _retrieved_by.
    let r = rows(
        &session,
        &format!(
            "SELECT id, _retrieved_by FROM vector_search('docs', '{query}', 1) UNION ALL SELECT id, _retrieved_by FROM text_search('docs', 'fonts', 1) UNION ALL SELECT id, _retrieved_by FROM hybrid_search('docs', 'zstd', '{query}', 1) ORDER BY 1"
        ),
    )
    .await;
    assert_eq!(r, vec![vec!["1", "[vector]"], vec!["1", "[vector, text]"], vec!["4", "[text]"]], "{r:?}");

    // The CLI/HTTP form picks the mode from what it is given.
    let any = |mode: Option<SearchMode>, text: Option<&str>, vector: Option<Vec<f32>>| SearchQuery { mode, text: text.map(String::from), vector, k: 3, ..Default::default() };
    let hybrid = session.vectors().search_any("docs", &any(None, Some("http"), Some(vec![1.0, 0.0, 0.0, 0.0]))).await.unwrap();
    assert!(hybrid.batch.column_by_name("_vector_rank").is_some());
    let words = session.vectors().search_any("docs", &any(None, Some("http"), None)).await.unwrap();
    assert_eq!(ids(&words.batch), vec![3, 2]);
    let err = session.vectors().search_any("docs", &any(Some(SearchMode::Vector), Some("http"), None)).await.unwrap_err().to_string();
    assert!(err.contains("no embedding model"), "{err}");
}

#[tokio::test]
async fn prepared_text_and_hybrid_searches_bind_every_argument() {
    let (session, dir) = temp_session().await;
    import_docs(&session, dir.path(), "docs", &corpus(20), &["body"]).await;
    let text_statement = session.prepare("SELECT id FROM text_search('docs', $1, $2, $3)").await.unwrap();
    let run = |params: Vec<ScalarValue>| {
        let text_statement = &text_statement;
        async move { render(&text_statement.query(params).await.unwrap()).into_iter().map(|r| r[0].clone()).collect::<Vec<_>>() }
    };
    assert_eq!(run(vec![ScalarValue::from("compression"), ScalarValue::Int64(Some(2)), ScalarValue::Utf8(None)]).await, vec!["5", "1"]);
    assert_eq!(run(vec![ScalarValue::from("compression"), ScalarValue::Int64(Some(5)), ScalarValue::from("section = 'libs'")]).await, vec!["3"]);
    let err = text_statement.query(vec![ScalarValue::from("\"open"), ScalarValue::Int64(Some(2)), ScalarValue::Utf8(None)]).await.unwrap_err().to_string();
    assert!(err.contains("malformed at character"), "{err}");

    let hybrid = session.prepare("SELECT id, _retrieved_by FROM hybrid_search('docs', $1, $2, $3, NULL, 'fusion = rrf') ORDER BY _rank").await.unwrap();
    let vector = ScalarValue::List(ScalarValue::new_list_nullable(&[1.0f32, 0.0, 0.0, 0.0].map(|v| ScalarValue::Float32(Some(v))), &DataType::Float32));
    let r = render(&hybrid.query(vec![ScalarValue::from("http"), vector, ScalarValue::Int64(Some(3))]).await.unwrap());
    assert_eq!(r.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(), vec!["3", "1", "2"]);
}

#[tokio::test]
async fn text_indexes_come_from_sql_and_reach_restricted_callers_in_their_scope() {
    let (session, dir) = temp_session().await;
    let file = dir.path().join("docs.parquet");
    write_docs(&file, &corpus(10));
    exec(&session, &format!("CREATE EXTERNAL TABLE raw STORED AS PARQUET LOCATION '{}'", file.display())).await;
    exec(&session, "CREATE TABLE vectors.public.fromsql WITH (id_column = 'id', vector_column = 'embedding', text_columns = 'body, section:raw') AS SELECT * FROM raw").await;
    let r = rows(&session, "SELECT id FROM text_search('fromsql', 'section:fonts', 5)").await;
    assert_eq!(r, vec![vec!["4"]]);

    // A server client (restricted) may call the search functions, on its own tables only.
    let tenant_a = TenantId::random();
    let a = session.with_tenant(Some(tenant_a)).restricted();
    let b = session.with_tenant(Some(TenantId::random())).restricted();
    exec(&a, "CREATE TABLE vectors.public.mine WITH (id_column = 'id', vector_column = 'embedding', text_columns = 'body') AS SELECT * FROM vectors.public.fromsql").await;
    assert_eq!(rows(&a, "SELECT id FROM text_search('mine', 'fonts', 5)").await, vec![vec!["4"]]);
    assert_eq!(rows(&a, "SELECT id FROM hybrid_search('mine', 'fonts', '[0, 0, 1, 0]', 1)").await, vec![vec!["4"]]);
    for sql in ["SELECT id FROM text_search('mine', 'fonts', 5)", "SELECT id FROM hybrid_search('mine', 'fonts', '[0, 0, 1, 0]', 1)"] {
        let err = sql_error(&b, sql).await;
        assert!(err.contains("mine") && err.contains("does not exist"), "{err}");
    }
}

async fn exec(session: &Session, sql: &str) {
    session.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).collect().await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test]
async fn bad_text_and_hybrid_input_is_refused_and_nothing_is_written() {
    let (session, dir) = temp_session().await;
    let file = dir.path().join("docs.parquet");
    write_docs(&file, &corpus(10));
    // Text columns that are not text, or not there: refused before anything is created.
    for (columns, needle) in [(vec!["embedding"], "text (VARCHAR) column"), (vec!["id"], "has type Int64"), (vec!["nope"], "'nope' does not exist"), (vec!["body", "body"], "named twice")] {
        let mut spec = ImportSpec::new("bad", file.display().to_string(), "id", "embedding");
        spec.text_columns = columns.iter().map(|c| TextIndexColumn::parse(c).unwrap()).collect();
        let err = session.vectors().import(spec, &NoProgress).await.unwrap_err().to_string();
        assert!(err.contains(needle), "{columns:?}: {err}");
    }
    assert!(TextIndexColumn::parse("body:klingon").unwrap_err().to_string().contains("raw, simple"));
    assert!(session.vectors().list().await.unwrap().is_empty(), "nothing was created");
    assert!(files_named(dir.path(), "data.parquet").is_empty(), "no files were left behind");

    // A table without a text index says how to add one.
    let plain = ImportSpec::new("plain", file.display().to_string(), "id", "embedding");
    session.vectors().import(plain, &NoProgress).await.unwrap();
    let err = sql_error(&session, "SELECT * FROM text_search('plain', 'fonts', 3)").await;
    assert!(err.contains("no text index") && err.contains("--text-column"), "{err}");
    let err = session.vectors().hybrid_search("plain", &HybridRequest::with_vector("fonts", vec![0.0; 4], 3)).await.unwrap_err().to_string();
    assert!(err.contains("no text index"), "{err}");

    import_docs(&session, dir.path(), "docs", &corpus(10), &["body"]).await;
    let long = "word ".repeat(20_000);
    for (sql, needle) in [
        ("SELECT * FROM text_search('docs', '', 3)".to_string(), "empty"),
        ("SELECT * FROM text_search('docs', '   ', 3)".to_string(), "empty"),
        (format!("SELECT * FROM text_search('docs', '{long}', 3)"), "over the limit"),
        ("SELECT * FROM text_search('docs', '\"unclosed', 3)".to_string(), "malformed at character 9"),
        ("SELECT * FROM text_search('docs', 'colour:red', 3)".to_string(), "column 'colour'"),
        ("SELECT * FROM text_search('docs', 'fonts', 0)".to_string(), "positive integer"),
        ("SELECT * FROM text_search('docs', 'fonts')".to_string(), "text_search takes"),
        ("SELECT * FROM text_search('docs', 3, 3)".to_string(), "string of words"),
        ("SELECT * FROM text_search('nope', 'fonts', 3)".to_string(), "does not exist"),
        ("SELECT * FROM hybrid_search('docs', 'fonts', '[1,0,0,0]', 3, NULL, 'fusion = magic')".to_string(), "use rrf or weighted"),
        ("SELECT * FROM hybrid_search('docs', 'fonts', '[1,0,0,0]', 3, NULL, 'colour = red')".to_string(), "unknown option 'colour'"),
        ("SELECT * FROM hybrid_search('docs', 'fonts', NULL, 3)".to_string(), "no embedding model"),
        ("SELECT * FROM hybrid_search('docs', 'fonts', '[1,0]', 3)".to_string(), "2 dimensions"),
        ("SELECT * FROM hybrid_search('docs', 'fonts', '[1,0,0,0]', 3, 'nope = 1')".to_string(), "nope"),
    ] {
        let err = sql_error(&session, &sql).await;
        assert!(err.contains(needle), "{}: {err}", &sql[..sql.len().min(80)]);
    }
}


/// (id, _score) of `text_search` over SQL.
async fn sql_hits(session: &Session, sql: &str) -> Vec<(i64, f32)> {
    let batches = session.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).collect().await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    batches.iter().flat_map(scored).collect()
}

async fn mutable_full_text(pg: bool) {
    let (session, _dir) = backend_session(pg).await;
    exec(&session, "CREATE TABLE mutable.public.notes (id BIGINT PRIMARY KEY, title TEXT, body TEXT, n INT)").await;
    exec(&session, "INSERT INTO mutable.public.notes VALUES (1, 'Kernel panic', 'the kernel crashed at boot', 1), (2, 'Bread', 'a recipe for bread and kernels of wheat', 2), (3, 'Fonts', NULL, 3)").await;
    // Refusals: the index needs text columns, one per table, a simple key; other methods.
    let err = sql_error(&session, "SELECT * FROM text_search('mutable.public.notes', 'kernel', 5)").await;
    assert!(err.contains("no full-text index") && err.contains("USING fulltext"), "{err}");
    for (sql, needle) in [
        ("CREATE INDEX bad ON mutable.public.notes USING fulltext (n)", "'n' is not a text column"),
        ("CREATE INDEX bad ON mutable.public.notes USING hash (title)", "USING"),
        ("CREATE INDEX bad ON mutable.public.notes USING fulltext (title) WITH (analyzer = 'klingon')", "raw, simple"),
        ("CREATE INDEX bad ON mutable.public.notes USING fulltext (title) WITH (colour = 'red')", "unknown option 'colour'"),
    ] {
        let err = sql_error(&session, sql).await;
        assert!(err.contains(needle), "{sql}: {err}");
    }
    exec(&session, "CREATE TABLE mutable.public.pairs (a INT, b INT, note TEXT, PRIMARY KEY (a, b))").await;
    assert!(sql_error(&session, "CREATE INDEX p ON mutable.public.pairs USING fulltext (note)").await.contains("one-column"));

    // Rows there before the index are indexed by CREATE INDEX.
    exec(&session, "CREATE INDEX notes_text ON mutable.public.notes USING fulltext (title, body)").await;
    assert!(sql_error(&session, "CREATE INDEX again ON mutable.public.notes USING fulltext (body)").await.contains("already has a full-text index"));
    let q = |query: &str| format!("SELECT id, _score FROM text_search('mutable.public.notes', '{query}', 10)");
    assert_eq!(sql_hits(&session, &q("kernel")).await.iter().map(|h| h.0).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(sql_hits(&session, &q("title:bread")).await.iter().map(|h| h.0).collect::<Vec<_>>(), vec![2]);
    assert_eq!(sql_hits(&session, &q("\"kernel crashed\"")).await.iter().map(|h| h.0).collect::<Vec<_>>(), vec![1]);
    // Every write changes the index in its own transaction.
    exec(&session, "INSERT INTO mutable.public.notes VALUES (4, 'Zebra', 'zebra crossing', 4)").await;
    assert_eq!(sql_hits(&session, &q("zebra")).await.iter().map(|h| h.0).collect::<Vec<_>>(), vec![4]);
    exec(&session, "UPDATE mutable.public.notes SET body = 'the kernel is fine now' WHERE id = 4").await;
    assert!(sql_hits(&session, &q("crossing")).await.is_empty(), "the old words are gone");
    assert_eq!(sql_hits(&session, &q("kernel")).await.len(), 3);
    exec(&session, "DELETE FROM mutable.public.notes WHERE id = 2").await;
    assert_eq!(sql_hits(&session, &q("kernel")).await.iter().map(|h| h.0).collect::<Vec<_>>().iter().filter(|id| **id == 2).count(), 0);
    // A pre-filter over the table's columns.
    assert_eq!(sql_hits(&session, "SELECT id, _score FROM text_search('mutable.public.notes', 'kernel', 10, 'n > 1')").await.iter().map(|h| h.0).collect::<Vec<_>>(), vec![4]);

    // A transaction sees its own writes; a rollback takes them out of the index too.
    run(&session, "BEGIN").await;
    exec(&session, "INSERT INTO mutable.public.notes VALUES (5, 'Okapi', 'an okapi in the forest', 5)").await;
    assert_eq!(sql_hits(&session, &q("okapi")).await.iter().map(|h| h.0).collect::<Vec<_>>(), vec![5]);
    let other = session.with_tenant(None);
    assert!(sql_hits(&other, &q("okapi")).await.is_empty(), "uncommitted rows are not seen outside");
    run(&session, "ROLLBACK").await;
    assert!(sql_hits(&session, &q("okapi")).await.is_empty());
    run(&session, "BEGIN").await;
    exec(&session, "INSERT INTO mutable.public.notes VALUES (5, 'Okapi', 'an okapi in the forest', 5)").await;
    run(&session, "COMMIT").await;
    assert_eq!(sql_hits(&other, &q("okapi")).await.iter().map(|h| h.0).collect::<Vec<_>>(), vec![5]);

    // Scores are BM25 over the whole table: the same as a vector table's text index over
    // the same rows (after the updates and deletes above).
    exec(&session, "CREATE TABLE vectors.public.copy WITH (vector_column = 'v', text_columns = 'title, body') AS SELECT id, title, body, make_array(CAST(n AS FLOAT), 1.0) AS v FROM mutable.public.notes").await;
    for query in ["kernel", "kernel okapi fonts", "+kernel fine", "title:fonts", "the forest"] {
        let a = sql_hits(&session, &q(query)).await;
        let b = sql_hits(&session, &format!("SELECT id, _score FROM text_search('copy', '{query}', 10)")).await;
        assert_eq!(a.iter().map(|h| h.0).collect::<Vec<_>>(), b.iter().map(|h| h.0).collect::<Vec<_>>(), "{query}");
        for (x, y) in a.iter().zip(&b) {
            assert!((x.1 - y.1).abs() < 1e-4, "{query}: {a:?} vs {b:?}");
        }
    }

    // Tenants: each sees its own rows and the shared ones, never another tenant's.
    let (ta, tb) = (session.with_tenant(Some(TenantId::random())).restricted(), session.with_tenant(Some(TenantId::random())).restricted());
    exec(&ta, "INSERT INTO mutable.public.notes VALUES (100, 'Secret', 'alpha secret plans', 0)").await;
    assert_eq!(sql_hits(&ta, &q("secret")).await.iter().map(|h| h.0).collect::<Vec<_>>(), vec![100]);
    assert!(sql_hits(&tb, &q("secret")).await.is_empty());
    assert_eq!(sql_hits(&tb, &q("okapi")).await.iter().map(|h| h.0).collect::<Vec<_>>(), vec![5], "shared rows are seen");
    // The other search functions name the right one.
    let err = sql_error(&session, "SELECT * FROM vector_search('mutable.public.notes', '[1, 0]', 3)").await;
    assert!(err.contains("mutable table") && err.contains("text_search"), "{err}");
    // Dropping the table drops its index with it; a new table of the name starts empty.
    exec(&session, "DROP TABLE mutable.public.notes").await;
    exec(&session, "CREATE TABLE mutable.public.notes (id BIGINT PRIMARY KEY, title TEXT, body TEXT, n INT)").await;
    exec(&session, "CREATE INDEX notes_text ON mutable.public.notes USING fulltext (title, body) WITH (analyzer = 'simple')").await;
    assert!(sql_hits(&session, &q("kernel")).await.is_empty());
    exec(&session, "INSERT INTO mutable.public.notes VALUES (1, 'Running', 'the runner runs', 1)").await;
    assert!(sql_hits(&session, &q("run")).await.is_empty(), "the simple analyzer does not stem");
    assert_eq!(sql_hits(&session, &q("runs")).await.iter().map(|h| h.0).collect::<Vec<_>>(), vec![1]);
}

async fn run(session: &Session, sql: &str) {
    session.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).collect().await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutable_tables_keep_a_full_text_index_in_the_writing_transaction_on_sqlite() {
    mutable_full_text(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutable_tables_keep_a_full_text_index_in_the_writing_transaction_on_postgres() {
    mutable_full_text(true).await;
}
