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
use arrow::array::{Array, ArrayRef, AsArray, ListArray, RecordBatch, StringArray};
use arrow::datatypes::{Field, Float32Type, Int64Type, Schema};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use jammi_db::vector::{ImportSpec, Metric, NoProgress, Precision, SearchRequest};
use jammi_db::datafusion::common::ScalarValue;
use jammi_db::{Config, PreparedStatement, Session};
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
    precisions: Vec<Precision>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        dataset: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets/debian-packages"),
        efs: vec![10, 12, 16, 32, 64, 128, 256],
        filtered_efs: vec![64, 128],
        queries: 1000,
        out: None,
        peers: None,
        precisions: vec![Precision::F32, Precision::Int8],
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
            "--precision" => {
                args.precisions = value()?.split(',').map(|p| p.trim().parse::<Precision>().map_err(|e| anyhow!("{e}"))).collect::<Result<_>>()?
            }
            other => return Err(anyhow!("unknown flag {other}; flags: --dataset --ef --filtered-ef --queries --out --peers --precision")),
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

/// What a query vector written into SQL text costs: parsing the statement that holds it (as
/// a string literal and as an array literal) against the same statement with a parameter in
/// its place, plus reading the numbers out of the string. Microseconds per statement, mean
/// over every query.
fn literal_cost(session: &Session, table: &str, literals: &[String]) -> Result<Value> {
    let statement = |vector: &str| format!("SELECT id, _distance FROM vector_search('{table}', {vector}, {K}, NULL, 64)");
    let texts: [Vec<String>; 3] = [
        literals.iter().map(|l| statement(&format!("'{l}'"))).collect(),
        literals.iter().map(|l| statement(l)).collect(),
        literals.iter().map(|_| statement("$1")).collect(),
    ];
    let mut parse_us = Vec::new();
    for texts in &texts {
        for t in texts.iter().take(WARMUP) {
            session.parse(t)?;
        }
        let started = Instant::now();
        for t in texts {
            std::hint::black_box(session.parse(t)?);
        }
        parse_us.push(started.elapsed().as_secs_f64() * 1e6 / texts.len() as f64);
    }
    let started = Instant::now();
    for l in literals {
        std::hint::black_box(jammi_db::vector::parse_vector_text(l).ok_or_else(|| anyhow!("unreadable literal"))?);
    }
    let read_us = started.elapsed().as_secs_f64() * 1e6 / literals.len() as f64;
    Ok(json!({
        "chars": literals.iter().map(String::len).sum::<usize>() / literals.len().max(1),
        "parse_string_us": round(parse_us[0]),
        "parse_array_us": round(parse_us[1]),
        "parse_parameter_us": round(parse_us[2]),
        "read_us": round(read_us),
        "string_literal_us": round(parse_us[0] - parse_us[2] + read_us),
    }))
}

/// Where a search written as SQL text spends its time, per statement (mean µs over every
/// query, ef 16): `Session::sql` (from the text to a frame: for a text known but for its
/// vector, the lift, the catalog check and binding), and collecting the frame (the search
/// and its result batch). Beside them, what the first statement of a text pays and the
/// others skip: parsing it and `Session::run` (checks, shape, the shared plan's lookup and
/// binding).
async fn sql_text_phases(session: &Session, table: &str, literals: &[String]) -> Result<Value> {
    let texts: Vec<String> = literals.iter().map(|l| format!("SELECT id, _distance FROM vector_search('{table}', '{l}', {K}, NULL, 16)")).collect();
    for t in texts.iter().take(WARMUP) {
        session.sql(t).await?.collect().await?;
    }
    // `JAMMI_BENCH_PHASE_ROUNDS=N` repeats the loop N times: long enough for a profiler to
    // attach to this loop alone (`perf record -p PID`).
    let rounds: usize = std::env::var("JAMMI_BENCH_PHASE_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(1).max(1);
    eprintln!("sql text phases ({rounds} round(s))");
    let (mut text, mut collect) = (0.0, 0.0);
    for t in std::iter::repeat_n(&texts, rounds).flatten() {
        let started = Instant::now();
        let frame = session.sql(t).await?;
        let ran = Instant::now();
        std::hint::black_box(frame.collect().await?);
        text += (ran - started).as_secs_f64();
        collect += ran.elapsed().as_secs_f64();
    }
    let (mut parse, mut run) = (0.0, 0.0);
    for t in &texts {
        let started = Instant::now();
        let statements = session.parse(t)?;
        let parsed = Instant::now();
        let frame = session.run(&statements[0]).await?;
        parse += (parsed - started).as_secs_f64();
        run += parsed.elapsed().as_secs_f64();
        std::hint::black_box(frame.collect().await?);
    }
    let us = |s: f64, n: usize| round(s * 1e6 / n as f64);
    let n = texts.len();
    Ok(json!({"sql_us": us(text, n * rounds), "collect_us": us(collect, n * rounds), "parse_us": us(parse, n), "run_us": us(run, n)}))
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
    let literals: Vec<String> = data.queries.iter().map(|q| vector_literal(q)).collect();
    let mut jammi = BTreeMap::new();
    for &precision in &args.precisions {
        jammi.insert(precision.to_string(), bench_precision(&session, &data, &args, &literals, precision).await?);
    }
    eprintln!("exact");
    let table = table_name(args.precisions[0]);
    let literal = literal_cost(&session, &table, &literals)?;
    let phases = sql_text_phases(&session, &table, &literals).await?;
    let exact = measure(&data, 0, false, |q| api_search(&session, &table, &data.queries[q], None, None, true)).await?;
    let mut raw = BTreeMap::new();
    for (label, kind) in [("f32", usearch::ScalarKind::F32), ("i8", usearch::ScalarKind::I8)] {
        eprintln!("usearch crate {label}, directly");
        let (build_s, points) = raw_usearch(&data, &args.efs, kind).await?;
        raw.insert(label, json!({"build_s": round(build_s), "unfiltered": points.iter().map(Point::json).collect::<Vec<_>>()}));
    }

    let report = json!({
        "dataset": args.dataset.display().to_string(),
        "rows": data.rows,
        "dims": data.dims,
        "queries": data.queries.len(),
        "jammi": jammi,
        "exact": {"ms_per_query": round(1000.0 / exact.qps), "recall10": round(exact.recall), "recall10_ties": round(exact.recall_ties)},
        "usearch_crate": raw,
        "literal": literal,
        "sql_text_phases": phases,
    });
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

fn table_name(precision: Precision) -> String {
    format!("deb_{precision}")
}

/// Import the base at `precision` and measure it through the Rust API, SQL text and a
/// prepared SQL statement, unfiltered and filtered.
async fn bench_precision(session: &Session, data: &Data, args: &Args, literals: &[String], precision: Precision) -> Result<Value> {
    let table = table_name(precision);
    eprintln!("importing {} rows of {} dimensions at {precision}", data.rows, data.dims);
    let started = Instant::now();
    let mut spec = ImportSpec::new(&table, data.base_file.display().to_string(), "id", "embedding");
    spec.metric = Metric::Cosine;
    spec.precision = precision;
    spec.m = 16;
    spec.ef_construction = 128;
    session.vectors().import(spec, &NoProgress).await?;
    let import_s = started.elapsed().as_secs_f64();
    // The first search loads the table into memory; report it apart from steady-state QPS.
    let started = Instant::now();
    session.vectors().search(&table, &SearchRequest::new(data.queries[0].clone(), K)).await?;
    let load_s = started.elapsed().as_secs_f64();
    let prepared = session.prepare(&format!("SELECT id, _distance FROM vector_search('{table}', $1, {K}, $2, $3)")).await?;

    let mut out = BTreeMap::new();
    let runs: [(&str, &[usize], bool); 2] = [("", &args.efs, false), ("_filtered", &args.filtered_efs, true)];
    for (suffix, efs, filtered) in runs {
        let (mut api, mut sql, mut prep) = (Vec::new(), Vec::new(), Vec::new());
        let filter = |q: usize| filtered.then(|| section_filter(data, q));
        for &ef in efs {
            eprintln!("{precision} ef {ef}{suffix}: API, SQL text, SQL prepared");
            api.push(measure(data, ef, filtered, |q| api_search(session, &table, &data.queries[q], Some(ef), filter(q), false)).await?.json());
            sql.push(measure(data, ef, filtered, |q| sql_search(session, &table, &literals[q], ef, filter(q))).await?.json());
            prep.push(measure(data, ef, filtered, |q| prepared_search(&prepared, &data.queries[q], ef, filter(q))).await?.json());
        }
        out.insert(format!("api{suffix}"), json!(api));
        out.insert(format!("sql{suffix}"), json!(sql));
        out.insert(format!("prepared{suffix}"), json!(prep));
    }
    // Quantised tables: fewer rescored candidates per result, a per-query setting
    // (`SearchRequest::oversample`, `jammi search --oversample`), for the low-recall end.
    if precision != Precision::F32 {
        for oversample in [1usize, 2] {
            let mut points = Vec::new();
            for &ef in &args.efs {
                eprintln!("{precision} ef {ef} oversample {oversample}: API");
                points.push(measure(data, ef, false, |q| api_search_with(session, &table, &data.queries[q], Some(ef), None, false, Some(oversample))).await?.json());
            }
            out.insert(format!("api_oversample_{oversample}"), json!(points));
        }
    }
    out.insert("import_s".into(), json!(round(import_s)));
    out.insert("first_load_s".into(), json!(round(load_s)));
    Ok(json!(out))
}

/// The predicate "section = the query's section".
fn section_filter(data: &Data, q: usize) -> String {
    format!("section = '{}'", data.query_sections[q].replace('\'', "''"))
}

/// One search through the Rust API.
async fn api_search(session: &Session, table: &str, vector: &[f32], ef: Option<usize>, filter: Option<String>, exact: bool) -> Result<Vec<(i64, f32)>> {
    api_search_with(session, table, vector, ef, filter, exact, None).await
}

/// [`api_search`] with a per-query oversample factor (candidates per result rescored).
async fn api_search_with(session: &Session, table: &str, vector: &[f32], ef: Option<usize>, filter: Option<String>, exact: bool, oversample: Option<usize>) -> Result<Vec<(i64, f32)>> {
    let mut request = SearchRequest::new(vector.to_vec(), K);
    request.oversample = oversample;
    request.ef = ef;
    request.filter = filter;
    request.exact = exact;
    Ok(hits(&session.vectors().search(table, &request).await?.batch))
}

/// One search through SQL `vector_search`, the query vector written as a literal.
async fn sql_search(session: &Session, table: &str, literal: &str, ef: usize, filter: Option<String>) -> Result<Vec<(i64, f32)>> {
    let filter = filter.map(|f| format!("'{}'", f.replace('\'', "''"))).unwrap_or_else(|| "NULL".into());
    let text = format!("SELECT id, _distance FROM vector_search('{table}', '{literal}', {K}, {filter}, {ef})");
    let batches = session.sql(&text).await?.collect().await?;
    Ok(batches.iter().flat_map(hits).collect())
}

/// One search through a prepared `vector_search` statement, the vector as a float-list
/// parameter (what a driver sends for `$1`).
async fn prepared_search(statement: &PreparedStatement, vector: &[f32], ef: usize, filter: Option<String>) -> Result<Vec<(i64, f32)>> {
    let list = ListArray::from_iter_primitive::<Float32Type, _, _>([Some(vector.iter().map(|v| Some(*v)))]);
    let params = vec![ScalarValue::List(Arc::new(list)), ScalarValue::Utf8(filter), ScalarValue::Int64(Some(ef as i64))];
    Ok(statement.query(params).await?.iter().flat_map(hits).collect())
}

/// The same index parameters through the usearch crate with no jammi around it.
async fn raw_usearch(data: &Data, efs: &[usize], quantization: usearch::ScalarKind) -> Result<(f64, Vec<Point>)> {
    use usearch::{Index, IndexOptions, MetricKind};
    let options = IndexOptions {
        dimensions: data.dims,
        metric: MetricKind::Cos,
        quantization,
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

fn points(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// QPS at recall@10 (by id) `target` on a system's curve, interpolated linearly between
/// its ef steps; None when no step reaches the target.
fn qps_at_recall(points: &[Value], target: f64) -> Option<f64> {
    let mut previous: Option<(f64, f64)> = None;
    for p in points {
        let (recall, qps) = (p["recall10"].as_f64()?, p["qps"].as_f64()?);
        if recall >= target {
            return Some(match previous {
                Some((r0, q0)) if recall > r0 => q0 + (target - r0) / (recall - r0) * (qps - q0),
                _ => qps,
            });
        }
        previous = Some((recall, qps));
    }
    None
}

/// Recall levels the ratio table compares at.
const RECALL_TARGETS: [f64; 3] = [0.90, 0.95, 0.97];

fn markdown(report: &Value, peers: Option<&Value>) -> String {
    let jammi = report["jammi"].as_object().cloned().unwrap_or_default();
    let python = |kind: &str| -> Vec<(String, Vec<Value>)> {
        peers
            .and_then(|p| p["peers"].as_object())
            .into_iter()
            .flatten()
            .map(|(name, peer)| (format!("{name} (Python)"), points(&peer[kind]).to_vec()))
            .filter(|(_, p)| !p.is_empty())
            .collect()
    };
    let mut out = Vec::new();
    let imports: Vec<String> = jammi.iter().map(|(p, r)| format!("{p} {:.1} s", r["import_s"].as_f64().unwrap_or(f64::NAN))).collect();
    out.push(format!(
        "{} rows × {} dims, {} queries, k = 10, one thread, one query at a time. jammi import (Parquet + HNSW m=16, ef_construction=128): {}.\n",
        report["rows"],
        report["dims"],
        report["queries"],
        imports.join(", ")
    ));
    out.push("| system | ef | recall@10 | recall@10 (ties) | QPS |".into());
    out.push("|---|---:|---:|---:|---:|".into());
    let mut unfiltered: Vec<(String, Vec<Value>)> = Vec::new();
    for (precision, r) in &jammi {
        for (key, path) in [("api", "Rust API"), ("sql", "SQL text"), ("prepared", "SQL prepared"), ("api_oversample_1", "Rust API, oversample 1"), ("api_oversample_2", "Rust API, oversample 2")] {
            if !points(&r[key]).is_empty() {
                unfiltered.push((format!("jammi {precision}, {path}"), points(&r[key]).to_vec()));
            }
        }
    }
    for (kind, r) in report["usearch_crate"].as_object().into_iter().flatten() {
        unfiltered.push((format!("usearch crate {kind} (Rust, direct)"), points(&r["unfiltered"]).to_vec()));
    }
    unfiltered.extend(python("unfiltered"));
    for (system, p) in &unfiltered {
        fmt_points(&mut out, system, p);
    }
    out.push(String::new());
    out.push("Filtered (section = the query's section; recall against the filtered ground truth):\n".into());
    out.push("| system | ef | recall@10 | recall@10 (ties) | worst section (ties) | QPS |".into());
    out.push("|---|---:|---:|---:|---:|---:|".into());
    let mut filtered: Vec<(String, Vec<Value>)> = Vec::new();
    for (precision, r) in &jammi {
        for (key, path) in [("api_filtered", "Rust API"), ("sql_filtered", "SQL text"), ("prepared_filtered", "SQL prepared")] {
            filtered.push((format!("jammi {precision}, {path}"), points(&r[key]).to_vec()));
        }
    }
    filtered.extend(python("filtered"));
    for (system, ps) in &filtered {
        for p in ps {
            out.push(format!(
                "| {system} | {} | {:.4} | {:.4} | {:.4} | {:.0} |",
                p["ef"],
                p["recall10"].as_f64().unwrap_or(f64::NAN),
                p["recall10_ties"].as_f64().unwrap_or(f64::NAN),
                p["min_section_recall10_ties"].as_f64().or(p["min_section_recall10"].as_f64()).unwrap_or(f64::NAN),
                p["qps"].as_f64().unwrap_or(f64::NAN)
            ));
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
    let literal = &report["literal"];
    let us = |key: &str| literal[key].as_f64().unwrap_or(f64::NAN);
    // Against the default table (int8) when it was measured.
    let default_table = jammi.get("int8").or_else(|| jammi.values().next());
    let sql_us = default_table.and_then(|r| points(&r["sql"]).iter().find(|p| p["ef"] == 64).and_then(|p| p["qps"].as_f64())).map(|q| 1e6 / q);
    out.push(format!(
        "Vector literal in SQL text ({} characters, {} numbers): {:.1} µs per statement ({:.1} µs parsing the statement beyond one with `$1` in its place, {:.1} µs reading the numbers){} of the default table; the array form `[…]` parses in {:.1} µs against {:.1} µs with `$1`.\n",
        literal["chars"],
        report["dims"],
        us("string_literal_us"),
        us("parse_string_us") - us("parse_parameter_us"),
        us("read_us"),
        sql_us.map(|t| format!(", {:.1} % of a SQL-text search at ef = 64 ({t:.0} µs)", 100.0 * us("string_literal_us") / t)).unwrap_or_default(),
        us("parse_array_us"),
        us("parse_parameter_us"),
    ));
    let phases = &report["sql_text_phases"];
    let phase = |key: &str| phases[key].as_f64().unwrap_or(f64::NAN);
    out.push(format!(
        "A SQL-text search at ef = 16, per statement: `Session::sql` {:.1} µs (a text known but for its vector: lift, catalog check, binding), collect (search and result) {:.1} µs; parsing and running the statement the first way, as the first statement of a text does: parse {:.1} µs, run (checks, shape, shared plan, binding) {:.1} µs.\n",
        phase("sql_us"),
        phase("collect_us"),
        phase("parse_us"),
        phase("run_us")
    ));
    // Every system that is not jammi, compared at equal recall (interpolated QPS).
    let others: Vec<&(String, Vec<Value>)> = unfiltered.iter().filter(|(name, _)| !name.starts_with("jammi")).collect();
    out.push("QPS of jammi's SQL paths ÷ QPS of each other system at equal recall@10 (by id; QPS interpolated between ef steps, – where a system never reaches that recall):\n".into());
    out.push(format!("| jammi path | recall@10 | jammi QPS | {} |", others.iter().map(|(n, _)| format!("÷ {n}")).collect::<Vec<_>>().join(" | ")));
    out.push(format!("|---|---:|---:|{}", "---:|".repeat(others.len())));
    for (system, ours) in unfiltered.iter().filter(|(name, _)| name.starts_with("jammi") && (name.contains("SQL") || name.contains("oversample"))) {
        for target in RECALL_TARGETS {
            let Some(q) = qps_at_recall(ours, target) else { continue };
            let ratios: Vec<String> =
                others.iter().map(|(_, p)| qps_at_recall(p, target).map(|o| format!("{:.2}", q / o)).unwrap_or_else(|| "–".into())).collect();
            out.push(format!("| {system} | {target:.2} | {q:.0} | {} |", ratios.join(" | ")));
        }
    }
    out.join("\n")
}
