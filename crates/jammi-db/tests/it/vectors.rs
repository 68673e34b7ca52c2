//! Vector tables: import, exact and approximate search against an independent brute force,
//! pre-filters at every selectivity, SQL, appends, deletes, compaction, recovery, caching,
//! tenancy and object storage.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use jammi_db::datafusion::arrow::array::{
    ArrayRef, FixedSizeListArray, Float32Array, Int64Array, ListArray, RecordBatch, StringArray,
};
use jammi_db::datafusion::arrow::datatypes::{DataType, Field, Float32Type, Schema};
use jammi_db::datafusion::parquet::arrow::ArrowWriter;
use jammi_db::vector::{ImportSpec, Metric, NoProgress, Precision, SearchPath, SearchRequest};
use jammi_db::{Config, Session, TenantId};

use crate::support::*;

/// Deterministic pseudo-random numbers (xorshift), so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// Clustered vectors (centres plus noise), like real embeddings.
pub fn clustered(n: usize, dims: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    let centres: Vec<Vec<f32>> = (0..32).map(|_| (0..dims).map(|_| rng.next_f32()).collect()).collect();
    (0..n)
        .map(|i| centres[i % centres.len()].iter().map(|c| c + 0.35 * rng.next_f32()).collect())
        .collect()
}

/// One generated row.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: i64,
    pub category: String,
    pub score: i64,
    pub vector: Vec<f32>,
}

/// Rows with skewed categories: `rare` (3 rows), `few` (40), `some` (10%), `most` (the rest).
pub fn rows_from(vectors: Vec<Vec<f32>>, first_id: i64) -> Vec<Row> {
    vectors
        .into_iter()
        .enumerate()
        .map(|(i, vector)| {
            let category = if i < 3 {
                "rare"
            } else if i % 25 == 1 && i < 1003 {
                "few"
            } else if i % 10 == 7 {
                "some"
            } else {
                "most"
            };
            Row { id: first_id + i as i64, category: category.into(), score: (i % 100) as i64, vector }
        })
        .collect()
}

/// Write rows as Parquet: id, category, score, embedding (fixed-size or variable list).
pub fn write_rows(path: &Path, rows: &[Row], fixed: bool) {
    let dims = rows[0].vector.len();
    let values = Float32Array::from(rows.iter().flat_map(|r| r.vector.clone()).collect::<Vec<_>>());
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let embedding: ArrayRef = if fixed {
        Arc::new(FixedSizeListArray::try_new(item, dims as i32, Arc::new(values), None).unwrap())
    } else {
        Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>(
            rows.iter().map(|r| Some(r.vector.iter().map(|v| Some(*v)).collect::<Vec<_>>())),
        ))
    };
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("score", DataType::Int64, false),
        Field::new("embedding", embedding.data_type().clone(), false),
    ]);
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from(rows.iter().map(|r| r.id).collect::<Vec<_>>())),
            Arc::new(StringArray::from(rows.iter().map(|r| r.category.clone()).collect::<Vec<_>>())),
            Arc::new(Int64Array::from(rows.iter().map(|r| r.score).collect::<Vec<_>>())),
            embedding,
        ],
    )
    .unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// The documented `_distance`, computed in f64 without the engine.
pub fn true_distance(metric: Metric, q: &[f32], v: &[f32]) -> f64 {
    let dot: f64 = q.iter().zip(v).map(|(a, b)| *a as f64 * *b as f64).sum();
    match metric {
        Metric::Cosine => {
            let nq: f64 = q.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
            let nv: f64 = v.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
            1.0 - dot / (nq * nv)
        }
        Metric::L2 => q.iter().zip(v).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum(),
        Metric::Ip => 1.0 - dot,
    }
}

/// Brute-force top-k ids (ties by ascending id) over the rows `keep` accepts.
pub fn brute_force(rows: &[Row], metric: Metric, q: &[f32], k: usize, keep: &dyn Fn(&Row) -> bool) -> Vec<(i64, f64)> {
    let mut scored: Vec<(f64, i64)> = rows.iter().filter(|r| keep(r)).map(|r| (true_distance(metric, q, &r.vector), r.id)).collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(d, id)| (id, d)).collect()
}

/// (id, _distance) pairs of a search result, best first.
pub fn hits(batch: &RecordBatch) -> Vec<(i64, f32)> {
    let ids = batch.column_by_name("id").unwrap().as_any().downcast_ref::<Int64Array>().unwrap();
    let d = batch.column_by_name("_distance").unwrap().as_any().downcast_ref::<Float32Array>().unwrap();
    (0..batch.num_rows()).map(|i| (ids.value(i), d.value(i))).collect()
}

fn recall(got: &[(i64, f32)], truth: &[(i64, f64)]) -> f64 {
    let want: HashSet<i64> = truth.iter().map(|t| t.0).collect();
    got.iter().filter(|g| want.contains(&g.0)).count() as f64 / truth.len().max(1) as f64
}

pub async fn import(session: &Session, name: &str, path: &Path, metric: Metric, precision: Precision) {
    let mut spec = ImportSpec::new(name, path.display().to_string(), "id", "embedding");
    spec.metric = metric;
    spec.precision = precision;
    session.vectors().import(spec, &NoProgress).await.unwrap_or_else(|e| panic!("import {name}: {e}"));
}

#[tokio::test]
async fn exact_and_hnsw_search_agree_with_brute_force_for_every_metric() {
    let (session, dir) = temp_session().await;
    let rows = rows_from(clustered(4000, 24, 1), 1);
    let file = dir.path().join("docs.parquet");
    write_rows(&file, &rows, true);
    let queries = clustered(30, 24, 99);
    for metric in [Metric::Cosine, Metric::L2, Metric::Ip] {
        let name = format!("docs_{metric}");
        import(&session, &name, &file, metric, Precision::F32).await;
        let mut total_recall = 0.0;
        for q in &queries {
            let truth = brute_force(&rows, metric, q, 10, &|_| true);
            let mut request = SearchRequest::new(q.clone(), 10);
            request.exact = true;
            let exact = session.vectors().search(&name, &request).await.unwrap();
            assert_eq!(exact.path, SearchPath::Exact);
            let got = hits(&exact.batch);
            assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), truth.iter().map(|t| t.0).collect::<Vec<_>>(), "{metric}");
            for (g, t) in got.iter().zip(&truth) {
                assert!((g.1 as f64 - t.1).abs() < 1e-4, "{metric}: exact distance {} vs {}", g.1, t.1);
            }

            request.exact = false;
            request.ef = Some(128);
            let approx = session.vectors().search(&name, &request).await.unwrap();
            assert_eq!(approx.path, SearchPath::Hnsw, "a 4000-row table with no filter uses the index");
            let got = hits(&approx.batch);
            assert_eq!(got.len(), 10);
            // The same `_distance` on both paths: every approximate hit carries its true distance.
            for (id, d) in &got {
                let row = &rows[(*id - 1) as usize];
                assert!((*d as f64 - true_distance(metric, q, &row.vector)).abs() < 1e-4, "{metric}: hnsw distance of {id}");
            }
            total_recall += recall(&got, &truth);
        }
        let mean = total_recall / queries.len() as f64;
        // Inner product over vectors of different lengths is not a metric, so graph search
        // is weaker there than for cosine and l2 (see docs/vectors.md).
        let floor = if metric == Metric::Ip { 0.85 } else { 0.95 };
        assert!(mean >= floor, "{metric}: recall@10 {mean}");
    }
    // The `_rank` column counts from 1, and the table reads as an ordinary table.
    let ranks = rows_of(&session, "SELECT _rank FROM vector_search('docs_l2', '[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]', 3)").await;
    assert_eq!(ranks, vec![vec!["1"], vec!["2"], vec!["3"]]);
    assert_eq!(scalar(&session, "SELECT count(*) FROM vectors.public.docs_cosine").await, "4000");
    assert_eq!(scalar(&session, "SELECT sum(score) FROM vectors.public.docs_cosine").await, rows.iter().map(|r| r.score).sum::<i64>().to_string());
}

async fn rows_of(session: &Session, sql: &str) -> Vec<Vec<String>> {
    rows(session, sql).await
}

#[tokio::test]
async fn quantized_precisions_rescore_with_exact_distances() {
    let (session, dir) = temp_session().await;
    let rows = rows_from(clustered(3000, 256, 2), 1);
    let file = dir.path().join("q.parquet");
    write_rows(&file, &rows, false);
    let queries = clustered(20, 256, 7);
    for (precision, floor) in [(Precision::F16, 0.95), (Precision::Int8, 0.9), (Precision::Binary, 0.8)] {
        let name = format!("q_{precision}");
        import(&session, &name, &file, Metric::Cosine, precision).await;
        let mut total = 0.0;
        for q in &queries {
            let truth = brute_force(&rows, Metric::Cosine, q, 10, &|_| true);
            let mut request = SearchRequest::new(q.clone(), 10);
            request.ef = Some(128);
            if precision == Precision::Binary {
                // Sign bits rank near neighbours coarsely; a per-query override of the table's
                // oversample factor buys the recall back with more exact rescoring.
                request.oversample = Some(100);
            }
            let result = session.vectors().search(&name, &request).await.unwrap();
            assert_eq!(result.path, SearchPath::Hnsw);
            let got = hits(&result.batch);
            for (id, d) in &got {
                let exact = true_distance(Metric::Cosine, q, &rows[(*id - 1) as usize].vector);
                assert!((*d as f64 - exact).abs() < 1e-4, "{precision}: distances are rescored in f32");
            }
            total += recall(&got, &truth);
        }
        let mean = total / queries.len() as f64;
        assert!(mean >= floor, "{precision}: recall@10 {mean} < {floor}");
    }
    let listed = session.vectors().list().await.unwrap();
    let precisions: BTreeMap<String, Precision> = listed.iter().map(|t| (t.name.clone(), t.precision)).collect();
    assert_eq!(precisions["q_int8"], Precision::Int8);
    assert_eq!(precisions["q_binary"], Precision::Binary);
}

#[tokio::test]
async fn pre_filter_returns_min_k_matching_rows_at_every_selectivity() {
    let (session, dir) = temp_session().await;
    let rows = rows_from(clustered(5000, 16, 3), 1);
    let file = dir.path().join("f.parquet");
    write_rows(&file, &rows, true);
    import(&session, "f", &file, Metric::Cosine, Precision::F32).await;
    let queries = clustered(10, 16, 5);
    let filters: Vec<(&str, Box<dyn Fn(&Row) -> bool>)> = vec![
        ("category = 'rare'", Box::new(|r: &Row| r.category == "rare")),
        ("category = 'few'", Box::new(|r: &Row| r.category == "few")),
        ("category = 'some'", Box::new(|r: &Row| r.category == "some")),
        ("category = 'most' AND score < 90", Box::new(|r: &Row| r.category == "most" && r.score < 90)),
        ("score BETWEEN 10 AND 11 OR id IN (7, 4999)", Box::new(|r: &Row| (10..=11).contains(&r.score) || r.id == 7 || r.id == 4999)),
        ("category = 'none'", Box::new(|_: &Row| false)),
    ];
    for (filter, keep) in &filters {
        let matching = rows.iter().filter(|r| keep(r)).count();
        let mut total = 0.0;
        for q in &queries {
            let truth = brute_force(&rows, Metric::Cosine, q, 10, keep.as_ref());
            let mut request = SearchRequest::new(q.clone(), 10);
            request.filter = Some(filter.to_string());
            let got = hits(&session.vectors().search("f", &request).await.unwrap().batch);
            assert_eq!(got.len(), 10.min(matching), "{filter}: never fewer than min(k, matching)");
            for (id, _) in &got {
                assert!(keep(&rows[(*id - 1) as usize]), "{filter}: row {id} does not match");
            }
            total += recall(&got, &truth);
        }
        if matching > 0 {
            let mean = total / queries.len() as f64;
            assert!(mean >= 0.95, "{filter}: filtered recall@10 {mean}");
        }
    }
    let err = session.vectors().search("f", &{
        let mut r = SearchRequest::new(queries[0].clone(), 5);
        r.filter = Some("no_such_column = 1".into());
        r
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("no_such_column"), "{err}");
}

#[tokio::test]
async fn vector_search_joins_with_sources_in_sql() {
    let (session, dir) = temp_session().await;
    let rows = rows_from(clustered(300, 8, 4), 1);
    let file = dir.path().join("v.parquet");
    write_rows(&file, &rows, true);
    import(&session, "v", &file, Metric::L2, Precision::F32).await;
    let labels = dir.path().join("labels.csv");
    let mut text = String::from("id,label\n");
    for r in &rows {
        text.push_str(&format!("{},label-{}\n", r.id, r.id * 7));
    }
    std::fs::write(&labels, text).unwrap();
    session.sources().add(jammi_db::source::SourceSpec::new("meta", labels.display().to_string())).await.unwrap();

    let q = &rows[41].vector;
    let literal = format!("[{}]", q.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", "));
    let truth = brute_force(&rows, Metric::L2, q, 5, &|r| r.score >= 50);
    for vector in [format!("'{literal}'"), literal.clone()] {
        let got = rows_of(
            &session,
            &format!(
                "SELECT v.id, m.label, v._rank FROM vector_search('v', {vector}, 5, 'score >= 50') v \
                 JOIN meta.public.labels m ON m.id = v.id ORDER BY v._rank"
            ),
        )
        .await;
        let expected: Vec<Vec<String>> = truth
            .iter()
            .enumerate()
            .map(|(i, (id, _))| vec![id.to_string(), format!("label-{}", id * 7), (i + 1).to_string()])
            .collect();
        assert_eq!(got, expected);
    }
    let err = sql_error(&session, "SELECT * FROM vector_search('v', '[1, 2]', 5)").await;
    assert!(err.contains("2 dimensions") && err.contains('8'), "{err}");
    let err = sql_error(&session, "SELECT * FROM vector_search('ghost', '[1, 2]', 5)").await;
    assert!(err.contains("ghost"), "{err}");
    let err = sql_error(&session, "DROP TABLE vectors.public.v").await;
    assert!(err.contains("vectors drop"), "{err}");
}

fn storage_files(dir: &Path) -> usize {
    let root = dir.join("storage").join("vectors");
    walk(&root)
}

fn walk(path: &Path) -> usize {
    match std::fs::read_dir(path) {
        Err(_) => 0,
        Ok(entries) => entries
            .map(|e| {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p)
                } else {
                    1
                }
            })
            .sum(),
    }
}

#[tokio::test]
async fn bad_input_is_a_clear_error_and_writes_nothing() {
    let (session, dir) = temp_session().await;
    let good = rows_from(clustered(20, 4, 6), 1);
    let write_case = |name: &str, rows: &[Row]| {
        let path = dir.path().join(format!("{name}.parquet"));
        write_rows(&path, rows, false);
        path
    };
    let mut ragged = good.clone();
    ragged[5].vector.push(1.0);
    let mut nan = good.clone();
    nan[3].vector[2] = f32::NAN;
    let mut inf = good.clone();
    inf[4].vector[1] = f32::INFINITY;
    let mut dup = good.clone();
    dup[9].id = dup[2].id;
    let cases = [
        (write_case("ragged", &ragged), "id", "embedding", "5 dimensions"),
        (write_case("nan", &nan), "id", "embedding", "NaN"),
        (write_case("inf", &inf), "id", "embedding", "infinite"),
        (write_case("dup", &dup), "id", "embedding", "more than once"),
        (write_case("good1", &good), "missing", "embedding", "id column 'missing' does not exist"),
        (write_case("good2", &good), "id", "category", "vector column 'category' has type"),
        (write_case("good3", &good), "category", "nope", "vector column 'nope' does not exist"),
    ];
    for (path, id, vector, needle) in cases {
        let spec = ImportSpec::new("bad", path.display().to_string(), id, vector);
        let err = session.vectors().import(spec, &NoProgress).await.unwrap_err().to_string();
        assert!(err.contains(needle) && err.contains("bad"), "{needle}: {err}");
        assert!(session.vectors().list().await.unwrap().is_empty());
        assert_eq!(storage_files(dir.path()), 0, "{needle}: files were left behind");
    }
    let err = session
        .vectors()
        .import(ImportSpec::new("bad", dir.path().join("absent.parquet").display().to_string(), "id", "embedding"), &NoProgress)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent.parquet"), "{err}");
    // Names are checked as for sources; duplicates are refused and the first table stays.
    let ok_path = dir.path().join("good1.parquet");
    import(&session, "good", &ok_path, Metric::Cosine, Precision::F32).await;
    let err = session.vectors().import(ImportSpec::new("good", ok_path.display().to_string(), "id", "embedding"), &NoProgress).await.unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(session.vectors().list().await.unwrap().len(), 1);
    let err = session.vectors().search("good", &SearchRequest::new(vec![1.0, 2.0], 3)).await.unwrap_err().to_string();
    assert!(err.contains("2 dimensions") && err.contains("good"), "{err}");
}

#[tokio::test]
async fn append_delete_and_automatic_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded(dir.path());
    config.vectors.max_segments = 3;
    config.vectors.max_deleted_fraction = 0.3;
    let session = Session::open(config).await.unwrap();
    let all = rows_from(clustered(500, 8, 8), 1);
    let first = dir.path().join("a0.parquet");
    write_rows(&first, &all[..100], true);
    import(&session, "t", &first, Metric::L2, Precision::F32).await;

    // Appends: each is searchable as soon as it returns; beyond three segments the table
    // is compacted back into one.
    for (n, chunk) in all[100..].chunks(100).enumerate() {
        let path = dir.path().join(format!("a{}.parquet", n + 1));
        write_rows(&path, chunk, n % 2 == 0);
        let added = session.vectors().append("t", &path.display().to_string(), "id", "embedding", &Default::default(), &NoProgress).await.unwrap();
        assert_eq!(added, 100);
        let target = &chunk[37];
        let got = hits(&session.vectors().search("t", &SearchRequest::new(target.vector.clone(), 1)).await.unwrap().batch);
        assert_eq!(got[0].0, target.id);
        let info = &session.vectors().list().await.unwrap()[0];
        assert!(info.segments <= 3, "segments {}", info.segments);
        assert_eq!(info.rows, 100 * (n as u64 + 2));
    }
    // Appending an id that exists is refused, and nothing changes.
    let again = dir.path().join("again.parquet");
    write_rows(&again, &all[10..12], true);
    let err = session.vectors().append("t", &again.display().to_string(), "id", "embedding", &Default::default(), &NoProgress).await.unwrap_err();
    assert!(err.to_string().contains("more than once"), "{err}");
    assert_eq!(scalar(&session, "SELECT count(*) FROM vectors.public.t").await, "500");

    // Deletes by id and by SQL: gone from search and from the table at once.
    assert_eq!(session.vectors().delete_ids("t", &["5".into(), "6".into(), "99999".into()]).await.unwrap(), 2);
    let gone = hits(&session.vectors().search("t", &SearchRequest::new(all[4].vector.clone(), 1)).await.unwrap().batch);
    assert_ne!(gone[0].0, 5);
    assert_eq!(scalar(&session, "SELECT count(*) FROM vectors.public.t WHERE id IN (5, 6)").await, "0");
    let deleted = rows_of(&session, "DELETE FROM vectors.public.t WHERE score >= 90").await;
    let expected = all.iter().filter(|r| r.score >= 90 && r.id != 5 && r.id != 6).count();
    assert_eq!(deleted, vec![vec![expected.to_string()]]);
    let live = 500 - 2 - expected;
    assert_eq!(scalar(&session, "SELECT count(*) FROM vectors.public.t").await, live.to_string());
    let with_filter = SearchRequest { filter: Some("score >= 80".into()), ..SearchRequest::new(all[0].vector.clone(), 500) };
    let got = hits(&session.vectors().search("t", &with_filter).await.unwrap().batch);
    assert_eq!(got.len(), all.iter().filter(|r| (80..90).contains(&r.score)).count());

    // Enough deletes to pass the tombstone threshold compact the table into one segment.
    let ids: Vec<String> = all.iter().filter(|r| r.score < 30).map(|r| r.id.to_string()).collect();
    session.vectors().delete_ids("t", &ids).await.unwrap();
    let info = &session.vectors().list().await.unwrap()[0];
    assert_eq!(info.segments, 1);
    let survivors: Vec<&Row> = all.iter().filter(|r| r.score >= 30 && r.score < 90 && r.id != 5 && r.id != 6).collect();
    assert_eq!(info.rows, survivors.len() as u64);
    assert_eq!(scalar(&session, "SELECT count(*) FROM vectors.public.t").await, survivors.len().to_string());
    // Exact search after compaction still matches brute force over the survivors.
    let q = &all[250].vector;
    let truth = brute_force(&all, Metric::L2, q, 10, &|r| r.score >= 30 && r.score < 90 && r.id != 5 && r.id != 6);
    let mut request = SearchRequest::new(q.clone(), 10);
    request.exact = true;
    let got = hits(&session.vectors().search("t", &request).await.unwrap().batch);
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), truth.iter().map(|t| t.0).collect::<Vec<_>>());

    // A new process sees the same table.
    session.close().await;
    let reopened = Session::open(Config::embedded(dir.path())).await.unwrap();
    assert_eq!(scalar(&reopened, "SELECT count(*) FROM vectors.public.t").await, survivors.len().to_string());
}

#[tokio::test]
async fn searches_use_memory_and_recovery_rebuilds_missing_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let session = Session::open(Config::embedded(dir.path())).await.unwrap();
    let rows = rows_from(clustered(3000, 8, 9), 1);
    let file = dir.path().join("m.parquet");
    write_rows(&file, &rows, true);
    import(&session, "m", &file, Metric::Cosine, Precision::F32).await;
    // A wide beam: index builds are multi-threaded and not deterministic, and the rebuilt
    // index must give the same answer as the first, so ask for the true neighbours.
    let mut request = SearchRequest::new(rows[77].vector.clone(), 3);
    request.ef = Some(400);
    let before = hits(&session.vectors().search("m", &request).await.unwrap().batch);
    assert_eq!(before[0].0, 78);

    // Loaded once, searches never go back to storage: with the index file gone, the same
    // session still answers.
    let index_files = find_files(&dir.path().join("storage"), "index.usearch");
    assert_eq!(index_files.len(), 1);
    std::fs::remove_file(&index_files[0]).unwrap();
    assert_eq!(hits(&session.vectors().search("m", &request).await.unwrap().batch), before);
    session.close().await;

    // A new session rebuilds the missing index from the Parquet data on open.
    let reopened = Session::open(Config::embedded(dir.path())).await.unwrap();
    assert!(index_files[0].exists(), "the index was rebuilt at startup");
    assert_eq!(hits(&reopened.vectors().search("m", &request).await.unwrap().batch), before);
}

#[tokio::test]
async fn search_vectors_file_is_written_by_import_and_rewritten_when_missing_or_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let session = Session::open(Config::embedded(dir.path())).await.unwrap();
    let rows = rows_from(clustered(2000, 8, 5), 1);
    let file = dir.path().join("v.parquet");
    write_rows(&file, &rows, true);
    import(&session, "v", &file, Metric::Cosine, Precision::Int8).await;
    // Every search path reads the search vectors: exact scans and rescored graph searches.
    let mut exact = SearchRequest::new(rows[123].vector.clone(), 5);
    exact.exact = true;
    let mut graph = SearchRequest::new(rows[321].vector.clone(), 5);
    graph.ef = Some(400);
    let requests = [exact, graph];
    let answers = |s: Session| {
        let requests = requests.clone();
        async move {
            let a = session_hits(&s, "v", &requests[0]).await;
            let b = session_hits(&s, "v", &requests[1]).await;
            s.close().await;
            (a, b)
        }
    };
    let truth = brute_force(&rows, Metric::Cosine, &rows[123].vector, 5, &|_| true);
    let first = answers(session).await;
    assert_eq!(first.0.iter().map(|h| h.0).collect::<Vec<_>>(), truth.iter().map(|t| t.0).collect::<Vec<_>>());
    for (got, want) in first.0.iter().zip(&truth) {
        assert!((got.1 as f64 - want.1).abs() < 1e-5, "exact distances from the search vectors: {got:?} vs {want:?}");
    }

    // Import wrote the file: a 64-byte header, then every vector as f32.
    let files = find_files(&dir.path().join("storage"), "vectors.f32");
    assert_eq!(files.len(), 1);
    let expected_len = 64 + 2000 * 8 * 4;
    assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), expected_len);

    // Missing: a new process decodes the data file, answers the same, and writes it again.
    std::fs::remove_file(&files[0]).unwrap();
    let reopened = answers(Session::open(Config::embedded(dir.path())).await.unwrap()).await;
    assert_eq!(reopened, first);
    assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), expected_len, "rewritten at load");

    // Damaged with its header intact (one value changed): never served; rewritten.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let target = 64 + 123 * 8 * 4;
    bytes[target..target + 4].copy_from_slice(&1000.0f32.to_le_bytes());
    std::fs::write(&files[0], &bytes).unwrap();
    let repaired = answers(Session::open(Config::embedded(dir.path())).await.unwrap()).await;
    assert_eq!(repaired, first);
    assert_ne!(std::fs::read(&files[0]).unwrap(), bytes, "the damaged file was replaced");

    // Truncated: the same.
    std::fs::write(&files[0], &bytes[..1000]).unwrap();
    let again = answers(Session::open(Config::embedded(dir.path())).await.unwrap()).await;
    assert_eq!(again, first);
    assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), expected_len);
}

async fn session_hits(session: &Session, table: &str, request: &SearchRequest) -> Vec<(i64, f32)> {
    hits(&session.vectors().search(table, request).await.unwrap().batch)
}

fn find_files(root: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(find_files(&p, name));
            } else if p.file_name().is_some_and(|n| n == name) {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn the_cache_keeps_loaded_tables_under_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded(dir.path());
    config.vectors.cache_mb = 1; // each table below is ~1.5 MiB of vectors
    let session = Session::open(config).await.unwrap();
    for (n, name) in ["c1", "c2", "c3"].iter().enumerate() {
        let rows = rows_from(clustered(3000, 128, 10 + n as u64), 1);
        let file = dir.path().join(format!("{name}.parquet"));
        write_rows(&file, &rows, true);
        import(&session, name, &file, Metric::Cosine, Precision::F32).await;
        session.vectors().search(name, &SearchRequest::new(rows[0].vector.clone(), 1)).await.unwrap();
        assert_eq!(session.vectors().cached_tables(), 1, "least recently used tables are evicted");
    }
}

#[tokio::test]
async fn tenants_own_vector_tables() {
    let (session, dir) = temp_session().await;
    let a: TenantId = "0b7e8a52-1c59-4a39-8d7e-6a1b2c3d4e5f".parse().unwrap();
    let b: TenantId = "7f000000-0000-4000-8000-000000000002".parse().unwrap();
    let rows = rows_from(clustered(50, 4, 11), 1);
    let file = dir.path().join("t.parquet");
    write_rows(&file, &rows, true);
    let as_a = session.with_tenant(Some(a));
    let as_b = session.with_tenant(Some(b));
    import(&as_a, "private", &file, Metric::Cosine, Precision::F32).await;
    import(&session, "shared", &file, Metric::Cosine, Precision::F32).await;
    assert_eq!(scalar(&as_a, "SELECT count(*) FROM vectors.public.private").await, "50");
    let err = sql_error(&as_b, "SELECT count(*) FROM vectors.public.private").await;
    assert!(err.contains("private"), "{err}");
    let err = sql_error(&as_b, "SELECT * FROM vector_search('private', '[1,0,0,0]', 1)").await;
    assert!(err.contains("private"), "{err}");
    assert!(as_b.vectors().drop("private").await.is_err());
    let names: Vec<String> = as_b.vectors().list().await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, vec!["shared"]);
    // Tenant B reads the shared table but may not change it.
    assert_eq!(scalar(&as_b, "SELECT count(*) FROM vector_search('shared', '[1,0,0,0]', 3)").await, "3");
    let err = as_b.vectors().delete_ids("shared", &["1".into()]).await.unwrap_err().to_string();
    assert!(err.contains("permission denied"), "{err}");
    let err = sql_error(&as_b, "DELETE FROM vectors.public.shared WHERE id = 1").await;
    assert!(err.contains("permission denied"), "{err}");
    assert_eq!(scalar(&session, "SELECT count(*) FROM vectors.public.shared").await, "50");
    // Tenant B may create its own table with the same name as A's.
    import(&as_b, "private", &file, Metric::L2, Precision::F32).await;
    as_a.vectors().drop("private").await.unwrap();
    assert_eq!(scalar(&as_b, "SELECT count(*) FROM vectors.public.private").await, "50");
}

#[tokio::test]
async fn vector_tables_on_memory_and_s3_storage() {
    let mut roots: Vec<(String, BTreeMap<String, String>)> = vec![("memory://vecs/root".to_string(), BTreeMap::new())];
    let endpoint = require_env("JAMMI_TEST_S3_ENDPOINT");
    let bucket = require_env("JAMMI_TEST_S3_BUCKET");
    roots.push((
        format!("s3://{bucket}/vectors-{}", uuid::Uuid::new_v4().simple()),
        BTreeMap::from([
            ("endpoint".to_string(), endpoint),
            ("allow_http".to_string(), "true".to_string()),
            ("region".to_string(), "us-east-1".to_string()),
            ("access_key_id".to_string(), "test".to_string()),
            ("secret_access_key".to_string(), "test".to_string()),
        ]),
    ));
    for (root, options) in roots {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::embedded(dir.path());
        config.storage.root = Some(root.clone());
        config.storage.options = options;
        let session = Session::open(config.clone()).await.unwrap();
        let rows = rows_from(clustered(400, 8, 12), 1);
        let file = dir.path().join("s.parquet");
        write_rows(&file, &rows, true);
        import(&session, "s", &file, Metric::L2, Precision::F16).await;
        let info = &session.vectors().list().await.unwrap()[0];
        assert!(info.location.starts_with(root.split('/').take(3).collect::<Vec<_>>().join("/").as_str()), "{root}: {}", info.location);
        let got = hits(&session.vectors().search("s", &SearchRequest::new(rows[9].vector.clone(), 1)).await.unwrap().batch);
        assert_eq!(got[0].0, 10, "{root}");
        let extra = dir.path().join("extra.parquet");
        write_rows(&extra, &rows_from(clustered(10, 8, 13), 1000), true);
        session.vectors().append("s", &extra.display().to_string(), "id", "embedding", &Default::default(), &NoProgress).await.unwrap();
        assert_eq!(scalar(&session, "SELECT count(*) FROM vectors.public.s").await, "410", "{root}");
        if root.starts_with("s3://") {
            // Another process (its own data directory) reads the same table from S3, through
            // its local disk cache of the segments' files.
            let other_dir = tempfile::tempdir().unwrap();
            let mut other_config = Config { data_dir: other_dir.path().to_path_buf(), ..config.clone() };
            other_config.catalog.url = Some(config.catalog_url());
            let other = Session::open(other_config.clone()).await.unwrap();
            assert_eq!(scalar(&other, "SELECT max(id) FROM vectors.public.s").await, "1009");
            let got = hits(&other.vectors().search("s", &SearchRequest::new(rows[9].vector.clone(), 1)).await.unwrap().batch);
            assert_eq!(got[0].0, 10);
            let cache_dir = other_dir.path().join("cache/vectors");
            let cached = || -> Vec<std::path::PathBuf> { std::fs::read_dir(&cache_dir).unwrap().flatten().map(|e| e.path()).collect() };
            let names: Vec<String> = cached().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).filter(|n| !n.ends_with(".sha256")).collect();
            for file in ["data.parquet", "vectors.f32", "index.usearch"] {
                assert_eq!(names.iter().filter(|n| n.ends_with(&format!("-{file}"))).count(), 2, "one {file} per segment: {names:?}");
            }
            // Damaged copies (same size, one byte changed) are found and downloaded again:
            // the answers do not change and the copies are whole again.
            let mut damaged = Vec::new();
            for path in cached().into_iter().filter(|p| !p.to_string_lossy().ends_with(".sha256")) {
                let mut bytes = std::fs::read(&path).unwrap();
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x5a;
                std::fs::write(&path, &bytes).unwrap();
                damaged.push((path, bytes));
            }
            assert_eq!(damaged.len(), 6);
            let third = Session::open(other_config).await.unwrap();
            assert_eq!(scalar(&third, "SELECT max(id) FROM vectors.public.s").await, "1009");
            let got = hits(&third.vectors().search("s", &SearchRequest::new(rows[9].vector.clone(), 1)).await.unwrap().batch);
            assert_eq!(got[0].0, 10);
            for (path, bad) in damaged {
                assert_ne!(std::fs::read(&path).unwrap(), bad, "{} was not repaired", path.display());
            }
        }
        session.vectors().drop("s").await.unwrap();
        assert!(session.vectors().list().await.unwrap().is_empty());
    }
}

/// Cosine tables default to an int8 graph (rescored in f32); l2 and ip to f32, since their
/// values have no fixed range — and an int8 graph refuses values it would clip.
#[tokio::test]
async fn the_default_precision_follows_the_metric() {
    let dir = tempfile::tempdir().unwrap();
    let session = Session::open(Config::embedded(dir.path())).await.unwrap();
    let values = "FROM (VALUES (1, 5.0, 0.0), (2, 0.0, 7.0), (3, 3.0, 3.0))";
    let create = |name: &str, with: &str| format!("CREATE TABLE vectors.public.{name} WITH (vector_column = 'v'{with}) AS SELECT column1 AS id, make_array(CAST(column2 AS FLOAT), CAST(column3 AS FLOAT)) AS v {values}");
    session.sql(&create("c", "")).await.unwrap().collect().await.unwrap();
    session.sql(&create("l", ", metric = 'l2'")).await.unwrap().collect().await.unwrap();
    session.sql(&create("i", ", metric = 'ip', precision = 'f16'")).await.unwrap().collect().await.unwrap();
    let precisions: std::collections::BTreeMap<String, String> = session.vectors().list().await.unwrap().into_iter().map(|t| (t.name, t.precision.to_string())).collect();
    assert_eq!(precisions, [("c", "int8"), ("i", "f16"), ("l", "f32")].into_iter().map(|(a, b)| (a.to_string(), b.to_string())).collect());
    let refused = session.sql(&create("bad", ", metric = 'l2', precision = 'int8'")).await.unwrap_err().to_string();
    assert!(refused.contains("[-1, 1]") && refused.contains("f32"), "{refused}");
    // The cosine table answers with exact distances, whatever its graph holds.
    let nearest = rows(&session, "SELECT id, _distance FROM vector_search('c', '[0, 1]', 1)").await;
    assert_eq!(nearest, vec![vec!["2".to_string(), "0.0".to_string()]]);
}

#[tokio::test]
async fn a_batch_of_searches_answers_as_each_search_alone() {
    let (session, dir) = temp_session().await;
    let rows = rows_from(clustered(4000, 24, 5), 1);
    let file = dir.path().join("batch.parquet");
    write_rows(&file, &rows, true);
    import(&session, "batch", &file, Metric::Cosine, Precision::Int8).await;
    let queries = clustered(4, 24, 77);
    let mut requests: Vec<SearchRequest> = queries.iter().map(|q| SearchRequest::new(q.clone(), 10)).collect();
    requests[1].filter = Some("category = 'few'".into());
    requests[2].exact = true;
    requests[3].ef = Some(12);
    requests[3].k = 3;

    let batch = session.vectors().search_batch("batch", &requests).await.unwrap();
    let query = batch.column_by_name("query").unwrap().as_any().downcast_ref::<jammi_db::datafusion::arrow::array::UInt64Array>().unwrap();
    let rank = batch.column_by_name("_rank").unwrap().as_any().downcast_ref::<Int64Array>().unwrap();
    let text = |batch: &RecordBatch, i: usize| jammi_db::datafusion::arrow::util::display::array_value_to_string(batch.column_by_name("category").unwrap(), i).unwrap();
    let all = hits(&batch);
    for (n, request) in requests.iter().enumerate() {
        let alone = session.vectors().search("batch", request).await.unwrap().batch;
        let mine: Vec<usize> = (0..batch.num_rows()).filter(|&i| query.value(i) == n as u64).collect();
        assert_eq!(mine.iter().map(|&i| all[i]).collect::<Vec<_>>(), hits(&alone), "query {n}: the same rows and distances as alone");
        assert_eq!(mine.iter().map(|&i| rank.value(i)).collect::<Vec<_>>(), (1..=request.k as i64).collect::<Vec<_>>(), "query {n}: ranks from 1");
        assert_eq!(mine.iter().map(|&i| text(&batch, i)).collect::<Vec<_>>(), (0..alone.num_rows()).map(|i| text(&alone, i)).collect::<Vec<_>>());
    }
    assert!((0..batch.num_rows()).filter(|&i| query.value(i) == 1).all(|i| text(&batch, i) == "few"), "the filtered query's rows pass its filter");

    // A bad request anywhere in the batch fails the batch, naming the argument.
    requests[2].k = 1_000_000;
    let err = session.vectors().search_batch("batch", &requests).await.unwrap_err().to_string();
    assert!(err.contains('k') && err.contains("1000000"), "{err}");
    requests[2].k = 10;
    requests[1].filter = Some("no_such_column = 1".into());
    let err = session.vectors().search_batch("batch", &requests).await.unwrap_err().to_string();
    assert!(err.contains("no_such_column"), "{err}");
    // The rows a batch may ask for are bounded before anything is searched.
    let many = vec![SearchRequest::new(queries[0].clone(), 10_000); 1_001];
    let err = session.vectors().search_batch("batch", &many).await.unwrap_err().to_string();
    assert!(err.contains("sum of k") && err.contains("10010000"), "{err}");
    // No requests: an empty result that still has the batch's columns.
    let empty = session.vectors().search_batch("batch", &[]).await.unwrap();
    assert_eq!(empty.num_rows(), 0);
    assert_eq!(empty.schema().field(0).name(), "query");
    assert!(empty.schema().column_with_name("_distance").is_some());
}

/// Processes sharing a catalog take turns at compaction: while another process holds a
/// table's compaction lease, a compaction this process finds due is left to it (appends
/// still land); once the lease is released the next append compacts; a forced compaction
/// takes the lease over (its holder may be dead) and gives it up when done.
#[tokio::test]
async fn a_compaction_leased_by_another_process_is_left_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded(dir.path());
    config.vectors.max_segments = 2;
    let session = Session::open(config).await.unwrap();
    let all = rows_from(clustered(500, 8, 8), 1);
    let first = dir.path().join("a0.parquet");
    write_rows(&first, &all[..100], true);
    import(&session, "t", &first, Metric::L2, Precision::F32).await;
    let id = session.catalog().vector_tables().list_all().await.unwrap().into_iter().find(|r| r.name == "t").unwrap().id;
    let lease = format!("vectors.compact:{id}");
    assert!(session.catalog().leases().try_acquire(&lease, "another-process", std::time::Duration::from_secs(60)).await.unwrap());

    let append = |n: usize| {
        let path = dir.path().join(format!("a{n}.parquet"));
        write_rows(&path, &all[n * 100..(n + 1) * 100], true);
        let session = session.clone();
        async move { session.vectors().append("t", &path.display().to_string(), "id", "embedding", &Default::default(), &NoProgress).await.unwrap() }
    };
    for n in 1..4 {
        assert_eq!(append(n).await, 100);
    }
    let info = &session.vectors().list().await.unwrap()[0];
    assert_eq!((info.rows, info.segments), (400, 4), "due, but left to the lease's holder");
    let target = &all[350];
    let got = hits(&session.vectors().search("t", &SearchRequest::new(target.vector.clone(), 1)).await.unwrap().batch);
    assert_eq!(got[0].0, target.id);

    session.catalog().leases().release(&lease, "another-process").await.unwrap();
    assert_eq!(append(4).await, 100);
    let info = &session.vectors().list().await.unwrap()[0];
    assert_eq!(info.rows, 500);
    assert!(info.segments <= 2, "compacted once the lease was free: {} segments", info.segments);
    assert!(session.catalog().leases().try_acquire(&lease, "another-process", std::time::Duration::from_secs(60)).await.unwrap(), "the compaction released its lease");

    // A forced compaction does not wait for a lease another process holds.
    session.vectors().compact("t", &NoProgress).await.unwrap();
    let info = &session.vectors().list().await.unwrap()[0];
    assert_eq!((info.rows, info.segments), (500, 1));
    assert!(session.catalog().leases().try_acquire(&lease, "another-process", std::time::Duration::from_secs(60)).await.unwrap(), "taken over, then given up");
}

#[tokio::test]
async fn a_large_import_is_written_as_segments_of_bounded_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded(dir.path());
    // 64 dimensions × 4 bytes: 4,096 rows fill a 1 MiB segment.
    config.vectors.segment_mb = 1;
    config.vectors.max_segments = 2;
    let session = Session::open(config).await.unwrap();
    let rows = rows_from(clustered(9000, 64, 21), 1);
    let file = dir.path().join("big.parquet");
    write_rows(&file, &rows, true);
    import(&session, "big", &file, Metric::L2, Precision::F32).await;
    let info = &session.vectors().list().await.unwrap()[0];
    assert_eq!((info.rows, info.segments), (9000, 3));

    // Searches over the segments answer as over one: exact ones match brute force (filtered
    // too), and each probe's own vector finds it first.
    let exact_ids = |got: Vec<(i64, f32)>| got.into_iter().map(|g| g.0).collect::<Vec<_>>();
    for probe in [4usize, 4100, 8999] {
        let q = &rows[probe].vector;
        let mut request = SearchRequest::new(q.clone(), 10);
        request.exact = true;
        let truth: Vec<i64> = brute_force(&rows, Metric::L2, q, 10, &|_| true).into_iter().map(|t| t.0).collect();
        assert_eq!(exact_ids(session_hits(&session, "big", &request).await), truth);
        request.filter = Some("category = 'some'".into());
        let truth: Vec<i64> = brute_force(&rows, Metric::L2, q, 10, &|r| r.category == "some").into_iter().map(|t| t.0).collect();
        assert_eq!(exact_ids(session_hits(&session, "big", &request).await), truth);
        assert!(found_by_the_graph(&session, "big", q, rows[probe].id).await, "row {} not found", rows[probe].id);
    }

    // A bad row in the last segment, after two segments were written, fails the import,
    // names the row, and leaves no table and no file behind; so does an id repeated
    // across segments.
    let files_before = storage_files(dir.path());
    let mut nan = rows.clone();
    nan[8990].vector[3] = f32::NAN;
    let mut duplicate = rows.clone();
    duplicate[8500].id = 7;
    for (name, bad, expected) in [("nan", nan, "id 8991 has NaN at dimension 3"), ("dup", duplicate, "id 7 appears more than once")] {
        let path = dir.path().join(format!("{name}.parquet"));
        write_rows(&path, &bad, true);
        let err = session.vectors().import(ImportSpec::new(name, path.display().to_string(), "id", "embedding"), &NoProgress).await.unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
        assert_eq!(session.vectors().list().await.unwrap().len(), 1);
        assert_eq!(storage_files(dir.path()), files_before, "files of the failed import '{name}' were left behind");
    }

    // Appends add open segments; compaction merges only the open ones (the full segments
    // are never rewritten by it), and a forced compaction rewrites the table into full
    // segments again rather than one segment past the cap.
    let appended = rows_from(clustered(300, 64, 22), 20_001);
    for (n, chunk) in appended.chunks(100).enumerate() {
        let path = dir.path().join(format!("append{n}.parquet"));
        write_rows(&path, chunk, true);
        session.vectors().append("big", &path.display().to_string(), "id", "embedding", &Default::default(), &NoProgress).await.unwrap();
        let info = &session.vectors().list().await.unwrap()[0];
        assert!(info.segments <= 4, "{} segments after append {n}", info.segments);
    }
    session.vectors().compact("big", &NoProgress).await.unwrap();
    let info = &session.vectors().list().await.unwrap()[0];
    assert_eq!((info.rows, info.segments), (9300, 3));
    let all: Vec<Row> = rows.iter().chain(&appended).cloned().collect();
    for probe in [0usize, 9000, 9299] {
        let q = &all[probe].vector;
        let mut request = SearchRequest::new(q.clone(), 10);
        request.exact = true;
        let truth: Vec<i64> = brute_force(&all, Metric::L2, q, 10, &|_| true).into_iter().map(|t| t.0).collect();
        assert_eq!(exact_ids(session_hits(&session, "big", &request).await), truth);
    }

    // An append larger than a segment streams in as several, in one generation; one with a
    // repeated id in its second segment changes nothing and leaves no file behind.
    let more = rows_from(clustered(5000, 64, 23), 30_001);
    let mut bad_more = more.clone();
    bad_more[4500].id = 30_001;
    let bad_path = dir.path().join("bad_more.parquet");
    write_rows(&bad_path, &bad_more, true);
    let files_before = storage_files(dir.path());
    let err = session.vectors().append("big", &bad_path.display().to_string(), "id", "embedding", &Default::default(), &NoProgress).await.unwrap_err().to_string();
    assert!(err.contains("id 30001 appears more than once"), "{err}");
    assert_eq!(storage_files(dir.path()), files_before);
    assert_eq!(session.vectors().list().await.unwrap()[0].rows, 9300);
    let more_path = dir.path().join("more.parquet");
    write_rows(&more_path, &more, true);
    let added = session.vectors().append("big", &more_path.display().to_string(), "id", "embedding", &Default::default(), &NoProgress).await.unwrap();
    assert_eq!(added, 5000);
    let info = &session.vectors().list().await.unwrap()[0];
    assert_eq!((info.rows, info.segments), (14_300, 5));
    for probe in [0usize, 4096, 4999] {
        assert!(found_by_the_graph(&session, "big", &more[probe].vector, more[probe].id).await, "row {} not found", more[probe].id);
    }
}

/// True when an approximate search for `vector` lists row `id` among its ten nearest (the
/// graph walk may, rarely, rank a near twin above the row itself).
async fn found_by_the_graph(session: &Session, table: &str, vector: &[f32], id: i64) -> bool {
    let mut request = SearchRequest::new(vector.to_vec(), 10);
    request.ef = Some(128);
    let got = session_hits(session, table, &request).await;
    got.iter().any(|g| g.0 == id)
}
