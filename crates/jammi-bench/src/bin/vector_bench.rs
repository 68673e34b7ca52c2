//! Vector search benchmark on `shared/datasets/debian-packages` (62,663 MiniLM vectors,
//! 1,000 held-out queries, exact top-100 ground truth, plain and filtered by section).
//!
//! Measures, single-threaded and one query at a time (a current-thread runtime): recall@10
//! and QPS at several `ef` through the Rust API and through SQL `vector_search`; filtered
//! recall and QPS (section = the query's section); exact search time per query; index build
//! time. In the same run, the same workload through the usearch crate directly (the engine
//! jammi-db builds on, without jammi around it). `--peers FILE` folds in the JSON of
//! `peers/vector_peers.py` (usearch, FAISS, hnswlib and LanceDB from PyPI, numpy exact) and
//! prints the comparison as Markdown for `docs/BENCHMARKS.md`.
//!
//! ```sh
//! bash crates/jammi-bench/run_vectors.sh            # peers + this, one report
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{Field, Float32Type, Int64Type, Schema};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use jammi_db::vector::{ImportSpec, Metric, NoProgress, Precision, SearchRequest};
use jammi_db::{Config, Session};
use serde_json::{json, Value};

/// Queries run untimed before each timed loop (page faults, caches, allocator).
const WARMUP: usize = 20;
/// An id counts as a tie-aware hit when its distance is within this of the 10th true one
/// (the base holds many exact duplicate descriptions).
const TIE_EPS: f32 = 1e-6;
const K: usize = 10;

struct Args {
    dataset: PathBuf,
    efs: Vec<usize>,
    filtered_efs: Vec<usize>,
    queries: usize,
    out: Option<PathBuf>,
    peers: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        dataset: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets/debian-packages"),
        efs: vec![16, 32, 64, 128, 256],
        filtered_efs: vec![64, 128],
        queries: 1000,
        out: None,
        peers: None,
    };
    let list = |s: &str| s.split(',').map(|v| v.trim().parse::<usize>().map_err(|e| anyhow!("bad number '{v}': {e}"))).collect::<Result<Vec<_>>>();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--dataset" => args.dataset = PathBuf::from(value()?),
            "--ef" => args.efs = list(&value()?)?,
            "--filtered-ef" => args.filtered_efs = list(&value()?)?,
            "--queries" => args.queries = value()?.parse()?,
            "--out" => args.out = Some(PathBuf::from(value()?)),
            "--peers" => args.peers = Some(PathBuf::from(value()?)),
            other => return Err(anyhow!("unknown flag {other}; flags: --dataset --ef --filtered-ef --queries --out --peers")),
        }
    }
    Ok(args)
}

fn read_parquet(path: &Path) -> Result<RecordBatch> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.with_batch_size(1 << 20).build()?;
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(arrow::compute::concat_batches(&batches[0].schema(), &batches)?)
}

fn fixed_list_values<T: arrow::datatypes::ArrowPrimitiveType>(batch: &RecordBatch, column: &str) -> Result<(Vec<T::Native>, usize)> {
    let list = batch.column_by_name(column).ok_or_else(|| anyhow!("no column {column}"))?.as_fixed_size_list();
    let width = list.value_length() as usize;
    Ok((list.values().as_primitive::<T>().values().to_vec(), width))
}

fn strings(batch: &RecordBatch, column: &str) -> Result<Vec<String>> {
    let array = arrow::compute::cast(batch.column_by_name(column).ok_or_else(|| anyhow!("no column {column}"))?, &arrow::datatypes::DataType::Utf8)?;
    let s = array.as_string::<i32>();
    Ok((0..s.len()).map(|i| s.value(i).to_string()).collect())
}

/// Ground truth: per query the top-10 ids and the 10th distance (NaN-padded rows end early).
struct Truth {
    ids: Vec<Vec<i64>>,
    tenth: Vec<f32>,
}

fn truth(path: &Path, n: usize) -> Result<Truth> {
    let batch = read_parquet(path)?;
    let (ids, width) = fixed_list_values::<Int64Type>(&batch, "neighbors")?;
    let (dist, _) = fixed_list_values::<Float32Type>(&batch, "distances")?;
    let mut out = Truth { ids: Vec::new(), tenth: Vec::new() };
    for q in 0..n {
        let row: Vec<i64> = ids[q * width..q * width + K].iter().copied().filter(|i| *i >= 0).collect();
        let last = row.len().max(1) - 1;
        out.tenth.push(dist[q * width + last]);
        out.ids.push(row);
    }
    Ok(out)
}

struct Data {
    base_file: PathBuf,
    base_vectors: Vec<f32>,
    dims: usize,
    rows: usize,
    queries: Vec<Vec<f32>>,
    query_sections: Vec<String>,
    plain: Truth,
    filtered: Truth,
}

/// Join the embeddings with their section into one Parquet file for import.
fn load(dataset: &Path, queries: usize, scratch: &Path) -> Result<Data> {
    let embeddings = read_parquet(&dataset.join("embeddings.parquet"))?;
    let packages = read_parquet(&dataset.join("packages.parquet"))?;
    let ids = embeddings.column_by_name("id").ok_or_else(|| anyhow!("no id"))?.as_primitive::<Int64Type>().clone();
    let package_ids = packages.column_by_name("id").ok_or_else(|| anyhow!("no id"))?.as_primitive::<Int64Type>();
    if ids.values() != package_ids.values() {
        return Err(anyhow!("embeddings.parquet and packages.parquet are not in the same id order"));
    }
    let sections: ArrayRef = Arc::new(StringArray::from(strings(&packages, "section")?));
    let embedding = embeddings.column_by_name("embedding").ok_or_else(|| anyhow!("no embedding"))?.clone();
    let schema = Schema::new(vec![
        Field::new("id", arrow::datatypes::DataType::Int64, false),
        Field::new("section", arrow::datatypes::DataType::Utf8, true),
        Field::new("embedding", embedding.data_type().clone(), true),
    ]);
    let base = RecordBatch::try_new(Arc::new(schema), vec![Arc::new(ids) as ArrayRef, sections, Arc::clone(&embedding)])?;
    let base_file = scratch.join("base.parquet");
    let mut writer = ArrowWriter::try_new(std::fs::File::create(&base_file)?, base.schema(), None)?;
    writer.write(&base)?;
    writer.close()?;
    let (base_vectors, dims) = fixed_list_values::<Float32Type>(&base, "embedding")?;

    let q = read_parquet(&dataset.join("queries.parquet"))?;
    let n = queries.min(q.num_rows());
    let (qv, _) = fixed_list_values::<Float32Type>(&q, "embedding")?;
    Ok(Data {
        base_file,
        rows: base.num_rows(),
        base_vectors,
        dims,
        queries: (0..n).map(|i| qv[i * dims..(i + 1) * dims].to_vec()).collect(),
        query_sections: strings(&q, "section")?.into_iter().take(n).collect(),
        plain: truth(&dataset.join("ground_truth.parquet"), n)?,
        filtered: truth(&dataset.join("filtered_ground_truth.parquet"), n)?,
    })
}

/// Recall@10 by id and tie-aware, for one query.
fn score(got: &[(i64, f32)], truth: &Truth, q: usize) -> (f64, f64) {
    let want: HashSet<i64> = truth.ids[q].iter().copied().collect();
    let n = want.len().max(1) as f64;
    let by_id = got.iter().filter(|(id, _)| want.contains(id)).count() as f64 / n;
    let ties = got.iter().filter(|(id, d)| want.contains(id) || *d <= truth.tenth[q] + TIE_EPS).count().min(want.len()) as f64 / n;
    (by_id, ties)
}

fn hits(batch: &RecordBatch) -> Vec<(i64, f32)> {
    let ids = batch.column_by_name("id").map(|c| c.as_primitive::<Int64Type>().clone());
    let d = batch.column_by_name("_distance").map(|c| c.as_primitive::<Float32Type>().clone());
    match (ids, d) {
        (Some(ids), Some(d)) => (0..batch.num_rows()).map(|i| (ids.value(i), d.value(i))).collect(),
        _ => Vec::new(),
    }
}

/// One measured configuration.
#[derive(Debug, Clone)]
struct Point {
    ef: usize,
    recall: f64,
    recall_ties: f64,
    min_section_recall_ties: Option<f64>,
    qps: f64,
}

impl Point {
    fn json(&self) -> Value {
        json!({"ef": self.ef, "recall10": round(self.recall), "recall10_ties": round(self.recall_ties),
               "min_section_recall10_ties": self.min_section_recall_ties.map(round), "qps": (self.qps * 10.0).round() / 10.0})
    }
}

fn round(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// Time `search` over every query (after a warm-up) and score it.
async fn measure<F, Fut>(data: &Data, ef: usize, filtered: bool, mut search: F) -> Result<Point>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<(i64, f32)>>>,
{
    for q in 0..WARMUP.min(data.queries.len()) {
        search(q).await?;
    }
    let truth = if filtered { &data.filtered } else { &data.plain };
    let mut results = Vec::with_capacity(data.queries.len());
    let started = Instant::now();
    for q in 0..data.queries.len() {
        results.push(search(q).await?);
    }
    let seconds = started.elapsed().as_secs_f64();
    let (mut recall, mut ties) = (0.0, 0.0);
    let mut per_section: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for (q, got) in results.iter().enumerate() {
        let (r, t) = score(got, truth, q);
        recall += r;
        ties += t;
        let slot = per_section.entry(data.query_sections[q].as_str()).or_default();
        slot.0 += t;
        slot.1 += 1;
    }
    let n = data.queries.len() as f64;
    let min_section = per_section.values().map(|(sum, count)| sum / *count as f64).fold(f64::INFINITY, f64::min);
    Ok(Point { ef, recall: recall / n, recall_ties: ties / n, min_section_recall_ties: filtered.then_some(min_section), qps: n / seconds })
}

fn vector_literal(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(","))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let scratch = tempfile::tempdir()?;
    eprintln!("loading {}", args.dataset.display());
    let data = load(&args.dataset, args.queries, scratch.path())?;
    let session = Session::open(Config::embedded(scratch.path().join("home"))).await?;

    eprintln!("importing {} rows of {} dimensions", data.rows, data.dims);
    let started = Instant::now();
    let mut spec = ImportSpec::new("deb", data.base_file.display().to_string(), "id", "embedding");
    spec.metric = Metric::Cosine;
    spec.precision = Precision::F32;
    spec.m = 16;
    spec.ef_construction = 128;
    session.vectors().import(spec, &NoProgress).await?;
    let import_s = started.elapsed().as_secs_f64();
    // First search loads the table into memory; report it apart from steady-state QPS.
    let started = Instant::now();
    session.vectors().search("deb", &SearchRequest::new(data.queries[0].clone(), K)).await?;
    let load_s = started.elapsed().as_secs_f64();

    let literals: Vec<String> = data.queries.iter().map(|q| vector_literal(q)).collect();
    let mut report = BTreeMap::new();
    let mut api = Vec::new();
    let mut sql = Vec::new();
    for &ef in &args.efs {
        eprintln!("ef {ef}: API");
        api.push(measure(&data, ef, false, |q| api_search(&session, &data.queries[q], Some(ef), None, false)).await?);
        eprintln!("ef {ef}: SQL");
        sql.push(measure(&data, ef, false, |q| sql_search(&session, &literals[q], ef, None)).await?);
    }
    let mut api_filtered = Vec::new();
    let mut sql_filtered = Vec::new();
    for &ef in &args.filtered_efs {
        eprintln!("ef {ef}: filtered API");
        api_filtered
            .push(measure(&data, ef, true, |q| api_search(&session, &data.queries[q], Some(ef), Some(section_filter(&data, q)), false)).await?);
        eprintln!("ef {ef}: filtered SQL");
        sql_filtered.push(measure(&data, ef, true, |q| sql_search(&session, &literals[q], ef, Some(section_filter(&data, q)))).await?);
    }
    eprintln!("exact");
    let exact = measure(&data, 0, false, |q| api_search(&session, &data.queries[q], None, None, true)).await?;

    eprintln!("usearch crate, directly");
    let (raw_build_s, raw) = raw_usearch(&data, &args.efs).await?;

    report.insert("dataset", json!(args.dataset.display().to_string()));
    report.insert("rows", json!(data.rows));
    report.insert("dims", json!(data.dims));
    report.insert("queries", json!(data.queries.len()));
    report.insert("import_s", json!(round(import_s)));
    report.insert("first_load_s", json!(round(load_s)));
    report.insert("api", json!(api.iter().map(Point::json).collect::<Vec<_>>()));
    report.insert("sql", json!(sql.iter().map(Point::json).collect::<Vec<_>>()));
    report.insert("api_filtered", json!(api_filtered.iter().map(Point::json).collect::<Vec<_>>()));
    report.insert("sql_filtered", json!(sql_filtered.iter().map(Point::json).collect::<Vec<_>>()));
    report.insert("exact", json!({"ms_per_query": round(1000.0 / exact.qps), "recall10": round(exact.recall), "recall10_ties": round(exact.recall_ties)}));
    report.insert("usearch_crate", json!({"build_s": round(raw_build_s), "unfiltered": raw.iter().map(Point::json).collect::<Vec<_>>()}));
    let report = json!(report);
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_vec_pretty(&report)?)?;
    }
    let peers = match &args.peers {
        Some(p) => Some(serde_json::from_slice::<Value>(&std::fs::read(p).with_context(|| format!("read {}", p.display()))?)?),
        None => None,
    };
    println!("{}", markdown(&report, peers.as_ref()));
    Ok(())
}

/// The predicate "section = the query's section".
fn section_filter(data: &Data, q: usize) -> String {
    format!("section = '{}'", data.query_sections[q].replace('\'', "''"))
}

/// One search through the Rust API.
async fn api_search(session: &Session, vector: &[f32], ef: Option<usize>, filter: Option<String>, exact: bool) -> Result<Vec<(i64, f32)>> {
    let mut request = SearchRequest::new(vector.to_vec(), K);
    request.ef = ef;
    request.filter = filter;
    request.exact = exact;
    Ok(hits(&session.vectors().search("deb", &request).await?.batch))
}

/// One search through SQL `vector_search`, the query vector written as a literal.
async fn sql_search(session: &Session, literal: &str, ef: usize, filter: Option<String>) -> Result<Vec<(i64, f32)>> {
    let filter = filter.map(|f| format!("'{}'", f.replace('\'', "''"))).unwrap_or_else(|| "NULL".into());
    let text = format!("SELECT id, _distance FROM vector_search('deb', '{literal}', {K}, {filter}, {ef})");
    let batches = session.sql(&text).await?.collect().await?;
    Ok(batches.iter().flat_map(hits).collect())
}

/// The same index parameters through the usearch crate with no jammi around it.
async fn raw_usearch(data: &Data, efs: &[usize]) -> Result<(f64, Vec<Point>)> {
    use usearch::{Index, IndexOptions, MetricKind, ScalarKind};
    let options = IndexOptions {
        dimensions: data.dims,
        metric: MetricKind::Cos,
        quantization: ScalarKind::F32,
        connectivity: 16,
        expansion_add: 128,
        expansion_search: 64,
        multi: false,
    };
    let index = Index::new(&options).map_err(|e| anyhow!("{e}"))?;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    index.reserve_capacity_and_threads(data.rows, threads).map_err(|e| anyhow!("{e}"))?;
    let started = Instant::now();
    let chunk = data.rows.div_ceil(threads);
    std::thread::scope(|s| {
        for t in 0..threads {
            let index = &index;
            s.spawn(move || {
                for row in t * chunk..((t + 1) * chunk).min(data.rows) {
                    let _ = index.add(row as u64, &data.base_vectors[row * data.dims..(row + 1) * data.dims]);
                }
            });
        }
    });
    let build_s = started.elapsed().as_secs_f64();
    let mut points = Vec::new();
    for &ef in efs {
        index.change_expansion_search(ef);
        points.push(
            measure(data, ef, false, |q| {
                let found = index.search(&data.queries[q], K).map(|m| m.keys.iter().zip(&m.distances).map(|(k, d)| (*k as i64, *d)).collect());
                async move { found.map_err(|e| anyhow!("{e}")) }
            })
            .await?,
        );
    }
    Ok((build_s, points))
}

fn fmt_points(rows: &mut Vec<String>, system: &str, points: &[Value]) {
    for p in points {
        rows.push(format!(
            "| {system} | {} | {:.4} | {:.4} | {:.0} |",
            p["ef"],
            p["recall10"].as_f64().unwrap_or(f64::NAN),
            p["recall10_ties"].as_f64().unwrap_or(f64::NAN),
            p["qps"].as_f64().unwrap_or(f64::NAN)
        ));
    }
}

fn qps_at(points: &Value, ef: u64) -> Option<f64> {
    points.as_array()?.iter().find(|p| p["ef"].as_u64() == Some(ef))?["qps"].as_f64()
}

fn markdown(report: &Value, peers: Option<&Value>) -> String {
    let mut out = Vec::new();
    out.push(format!(
        "{} rows × {} dims, {} queries, k = 10, one thread, one query at a time. jammi import (Parquet + HNSW m=16, ef_construction=128): {:.1} s.\n",
        report["rows"], report["dims"], report["queries"], report["import_s"].as_f64().unwrap_or(0.0)
    ));
    out.push("| system | ef | recall@10 | recall@10 (ties) | QPS |".into());
    out.push("|---|---:|---:|---:|---:|".into());
    fmt_points(&mut out, "jammi, Rust API", report["api"].as_array().map(Vec::as_slice).unwrap_or(&[]));
    fmt_points(&mut out, "jammi, SQL vector_search", report["sql"].as_array().map(Vec::as_slice).unwrap_or(&[]));
    fmt_points(&mut out, "usearch crate (Rust, direct)", report["usearch_crate"]["unfiltered"].as_array().map(Vec::as_slice).unwrap_or(&[]));
    if let Some(peers) = peers {
        for (name, peer) in peers["peers"].as_object().into_iter().flatten() {
            if let Some(points) = peer["unfiltered"].as_array() {
                fmt_points(&mut out, &format!("{name} (Python)"), points);
            }
        }
    }
    out.push(String::new());
    out.push("Filtered (section = the query's section; recall against the filtered ground truth):\n".into());
    out.push("| system | ef | recall@10 | recall@10 (ties) | worst section (ties) | QPS |".into());
    out.push("|---|---:|---:|---:|---:|---:|".into());
    let mut filtered = |system: &str, points: &[Value]| {
        for p in points {
            out.push(format!(
                "| {system} | {} | {:.4} | {:.4} | {:.4} | {:.0} |",
                p["ef"],
                p["recall10"].as_f64().unwrap_or(f64::NAN),
                p["recall10_ties"].as_f64().unwrap_or(f64::NAN),
                p["min_section_recall10_ties"].as_f64().or(p["min_section_recall10"].as_f64()).unwrap_or(f64::NAN),
                p["qps"].as_f64().unwrap_or(f64::NAN)
            ));
        }
    };
    filtered("jammi, Rust API", report["api_filtered"].as_array().map(Vec::as_slice).unwrap_or(&[]));
    filtered("jammi, SQL vector_search", report["sql_filtered"].as_array().map(Vec::as_slice).unwrap_or(&[]));
    if let Some(peers) = peers {
        for (name, peer) in peers["peers"].as_object().into_iter().flatten() {
            if let Some(points) = peer["filtered"].as_array() {
                filtered(&format!("{name} (Python)"), points);
            }
        }
    }
    out.push(String::new());
    let exact_ms = report["exact"]["ms_per_query"].as_f64().unwrap_or(f64::NAN);
    let numpy_ms = peers.and_then(|p| p["numpy_exact"]["ms_per_query"].as_f64());
    out.push(format!(
        "Exact search: jammi {exact_ms:.2} ms/query (recall@10 ties {:.4}){}.\n",
        report["exact"]["recall10_ties"].as_f64().unwrap_or(f64::NAN),
        numpy_ms.map(|n| format!("; numpy matrix product {n:.2} ms/query; ratio {:.2}×", exact_ms / n)).unwrap_or_default()
    ));
    out.push("Ratios at equal ef (QPS of jammi SQL ÷ QPS of the other):\n".into());
    out.push("| ef | ÷ usearch crate | ÷ usearch (Python) | ÷ FAISS | ÷ hnswlib | ÷ LanceDB |".into());
    out.push("|---:|---:|---:|---:|---:|---:|".into());
    for p in report["sql"].as_array().into_iter().flatten() {
        let ef = p["ef"].as_u64().unwrap_or(0);
        let ours = p["qps"].as_f64().unwrap_or(f64::NAN);
        let ratio = |other: Option<f64>| other.map(|o| format!("{:.2}", ours / o)).unwrap_or_else(|| "–".into());
        let peer = |name: &str| peers.and_then(|p| qps_at(&p["peers"][name]["unfiltered"], ef));
        out.push(format!(
            "| {ef} | {} | {} | {} | {} | {} |",
            ratio(qps_at(&report["usearch_crate"]["unfiltered"], ef)),
            ratio(peer("usearch")),
            ratio(peer("faiss")),
            ratio(peer("hnswlib")),
            ratio(peer("lancedb"))
        ));
    }
    out.join("\n")
}
