//! Known-item retrieval on real data (issue 20): how well, and how fast, each kind of search
//! finds the one package a query describes.
//!
//! ```sh
//! bash crates/jammi-bench/run_search_eval.sh   # builds the set, runs the peers and jammi-db
//! ```
//!
//! The set is built here, from `shared/datasets/debian-packages/packages.parquet` (the base
//! packages): a document is a package's long description without its one-line synopsis; a
//! query is the synopsis of one of `--queries` packages chosen with a fixed seed; the
//! relevant document is that package's. Each package's text in the dataset is
//! `synopsis + ". " + long description`; packages with no long description are left out.
//! Documents and queries are embedded by all-MiniLM-L6-v2 through jammi-db's own encoder
//! (128 tokens), and written to `OUT/set/` so that every system searches the same text and
//! the same vectors.
//!
//! jammi-db: the documents imported as a vector table (the default import: f32, cosine, HNSW)
//! with the text column indexed (`text_columns`, english analyzer); each query searched
//! through the Rust API with k = 10, one at a time on one thread: vector (HNSW and exact),
//! `text_search` (the synopsis as plain words), `hybrid_search` (both; weighted and RRF
//! fusion, at several depths),
//! and the text and hybrid legs again on the table split into eight segments. Freshness: an
//! append of 1,000 rows, each with a word of its own, then each looked up by text at once.
//! Metrics: MRR@10 (1/rank of the relevant document, 0 when it is not in the top 10) and
//! recall@10 (the fraction of queries whose document is in the top 10), and QPS.
//! `peers/search_peers.py` runs the same set through raw tantivy and LanceDB.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use arrow::array::{Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use jammi_db::artifact::ModelDefinition;
use jammi_db::storage::{StorageOptions, StorageUrl};
use jammi_db::embed::Embedder;
use jammi_db::vector::{HybridOptions, HybridRequest, ImportSpec, NoProgress, SearchRequest, TextIndexColumn, TextSearchRequest};
use jammi_db::{Config, Session};
use serde_json::json;

const USAGE: &str = "--model-dir DIR [--dataset DIR] [--queries N] [--seed N] [--documents N] [--out DIR] [--peers FILE] [--reuse-set] | --report --out DIR --peers FILE";

struct Args {
    model_dir: PathBuf,
    dataset: PathBuf,
    queries: usize,
    seed: u64,
    /// At most this many documents (all by default): for quick runs.
    documents: Option<usize>,
    out: PathBuf,
    peers: Option<PathBuf>,
    /// Search the set already in `OUT/set` instead of embedding it again.
    reuse_set: bool,
    /// Only print the table of an earlier run (`OUT/results.json`) with `--peers` merged.
    report: bool,
}

fn parse_args() -> Result<Args> {
    let default_dataset = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets/debian-packages");
    let mut args = Args { model_dir: PathBuf::new(), dataset: default_dataset, queries: 1000, seed: 20, documents: None, out: std::env::temp_dir().join("jammi-search-eval"), peers: None, report: false, reuse_set: false };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--model-dir" => args.model_dir = value()?.into(),
            "--dataset" => args.dataset = value()?.into(),
            "--queries" => args.queries = value()?.parse()?,
            "--seed" => args.seed = value()?.parse()?,
            "--documents" => args.documents = Some(value()?.parse()?),
            "--out" => args.out = value()?.into(),
            "--peers" => args.peers = Some(value()?.into()),
            "--report" => args.report = true,
            "--reuse-set" => args.reuse_set = true,
            "--help" | "-h" => {
                println!("search-eval {USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown flag {other}; flags: {USAGE}"),
        }
    }
    if args.model_dir.as_os_str().is_empty() && !args.report {
        bail!("--model-dir DIR is required: all-MiniLM-L6-v2's files (config.json, tokenizer.json, model.safetensors)");
    }
    Ok(args)
}

/// One package of the set.
struct Document {
    id: i64,
    package: String,
    section: String,
    synopsis: String,
    text: String,
}

/// Split the dataset's text into its synopsis and long description (see its README: the
/// two are joined by ". ", or by " " after a synopsis that ends in punctuation).
fn split_description(description: &str) -> Option<(String, String)> {
    let cut = description.find(". ").map(|i| (i, i + 2));
    let (end, start) = cut?;
    let synopsis = description[..end].trim();
    let long = description[start..].trim();
    (!synopsis.is_empty() && !long.is_empty()).then(|| (synopsis.to_string(), long.to_string()))
}

fn read_documents(dataset: &Path, limit: Option<usize>) -> Result<Vec<Document>> {
    let path = dataset.join("packages.parquet");
    let file = std::fs::File::open(&path).with_context(|| path.display().to_string())?;
    let mut documents = Vec::new();
    for batch in ParquetRecordBatchReaderBuilder::try_new(file)?.build()? {
        let batch = batch?;
        let column = |name: &str| batch.column_by_name(name).ok_or_else(|| anyhow!("packages.parquet has no column {name}"));
        let ids = column("id")?.as_primitive::<Int64Type>().clone();
        let packages = column("package")?.as_string::<i32>().clone();
        let sections = column("section")?.as_string::<i32>().clone();
        let descriptions = column("description")?.as_string::<i32>().clone();
        for row in 0..batch.num_rows() {
            if let Some((synopsis, text)) = split_description(descriptions.value(row)) {
                documents.push(Document { id: ids.value(row), package: packages.value(row).into(), section: sections.value(row).into(), synopsis, text });
            }
        }
    }
    if let Some(limit) = limit {
        documents.truncate(limit);
    }
    Ok(documents)
}

/// `count` distinct indexes below `n`, by a seeded partial Fisher–Yates shuffle (SplitMix64),
/// so the same seed picks the same queries on every machine.
fn choose(n: usize, count: usize, seed: u64) -> Vec<usize> {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut order: Vec<usize> = (0..n).collect();
    let count = count.min(n);
    for i in 0..count {
        let j = i + (next() % (n - i) as u64) as usize;
        order.swap(i, j);
    }
    order.truncate(count);
    order
}

fn vectors_column(vectors: &[Vec<f32>]) -> Result<ArrayRef> {
    let dims = vectors.first().map_or(0, Vec::len) as i32;
    let values = Float32Array::from(vectors.iter().flatten().copied().collect::<Vec<f32>>());
    Ok(Arc::new(FixedSizeListArray::try_new(Arc::new(Field::new("item", DataType::Float32, false)), dims, Arc::new(values), None)?))
}

fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<()> {
    let mut writer = ArrowWriter::try_new(std::fs::File::create(path).with_context(|| path.display().to_string())?, batch.schema(), None)?;
    writer.write(batch)?;
    writer.close()?;
    Ok(())
}

/// Embed the documents and queries and write them to `set_dir`; the query vectors.
fn build_set(model: &dyn Embedder, documents: &[Document], chosen: &[usize], set_dir: &Path) -> Result<Vec<Vec<f32>>> {
    let started = Instant::now();
    let texts: Vec<&str> = documents.iter().map(|d| d.text.as_str()).collect();
    let mut document_vectors = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(2048) {
        document_vectors.extend(model.embed(chunk)?);
    }
    let synopses: Vec<&str> = chosen.iter().map(|&i| documents[i].synopsis.as_str()).collect();
    let query_vectors = model.embed(&synopses)?;
    eprintln!("embedded in {:.0} s", started.elapsed().as_secs_f64());

    let doc_schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("package", DataType::Utf8, false),
        Field::new("section", DataType::Utf8, false),
        Field::new("text", DataType::Utf8, false),
        Field::new("embedding", DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), 384), false),
    ]));
    let doc_batch = RecordBatch::try_new(doc_schema, vec![
        Arc::new(Int64Array::from(documents.iter().map(|d| d.id).collect::<Vec<_>>())),
        Arc::new(StringArray::from(documents.iter().map(|d| d.package.as_str()).collect::<Vec<_>>())),
        Arc::new(StringArray::from(documents.iter().map(|d| d.section.as_str()).collect::<Vec<_>>())),
        Arc::new(StringArray::from(texts.clone())),
        vectors_column(&document_vectors)?,
    ])?;
    let documents_path = set_dir.join("documents.parquet");
    write_parquet(&documents_path, &doc_batch)?;
    let query_schema = Arc::new(Schema::new(vec![
        Field::new("query_id", DataType::Int64, false),
        Field::new("relevant_id", DataType::Int64, false),
        Field::new("text", DataType::Utf8, false),
        Field::new("embedding", DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), 384), false),
    ]));
    let relevant: Vec<i64> = chosen.iter().map(|&i| documents[i].id).collect();
    let query_batch = RecordBatch::try_new(query_schema, vec![
        Arc::new(Int64Array::from((0..chosen.len() as i64).collect::<Vec<_>>())),
        Arc::new(Int64Array::from(relevant.clone())),
        Arc::new(StringArray::from(synopses.clone())),
        vectors_column(&query_vectors)?,
    ])?;
    write_parquet(&set_dir.join("queries.parquet"), &query_batch)?;

    Ok(query_vectors)
}

/// The query vectors of a set built earlier, checked to be for the same queries.
fn read_query_vectors(path: &Path, relevant: &[i64]) -> Result<Vec<Vec<f32>>> {
    let file = std::fs::File::open(path).with_context(|| format!("{}: build the set first (run without --reuse-set)", path.display()))?;
    let (mut ids, mut vectors) = (Vec::new(), Vec::new());
    for batch in ParquetRecordBatchReaderBuilder::try_new(file)?.build()? {
        let batch = batch?;
        ids.extend(batch.column_by_name("relevant_id").ok_or_else(|| anyhow!("no relevant_id"))?.as_primitive::<Int64Type>().values().iter().copied());
        let list = batch.column_by_name("embedding").ok_or_else(|| anyhow!("no embedding"))?.as_fixed_size_list().clone();
        for row in 0..list.len() {
            vectors.push(list.value(row).as_primitive::<arrow::datatypes::Float32Type>().values().to_vec());
        }
    }
    if ids != relevant {
        bail!("{} was built for other queries (another seed, --queries or --documents); run without --reuse-set", path.display());
    }
    Ok(vectors)
}

/// A synopsis as plain words: everything but letters and digits becomes a space (the
/// analyzer splits there anyway; the peers parse leniently, which drops operators too), so
/// every query parses.
fn plain_words(text: &str) -> String {
    let plain: String = text.chars().map(|c| if c.is_alphanumeric() { c } else { ' ' }).collect();
    plain.split_whitespace().filter(|w| !matches!(*w, "AND" | "OR" | "NOT" | "IN")).collect::<Vec<_>>().join(" ")
}

/// MRR@10 and recall@10 over queries, given each query's relevant id and its top-10 ids.
fn score(results: &[(i64, Vec<i64>)]) -> (f64, f64) {
    let (mut reciprocal, mut found) = (0.0, 0.0);
    for (relevant, top) in results {
        if let Some(rank) = top.iter().take(10).position(|id| id == relevant) {
            reciprocal += 1.0 / (rank + 1) as f64;
            found += 1.0;
        }
    }
    let n = results.len().max(1) as f64;
    (reciprocal / n, found / n)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    if args.report {
        let text = std::fs::read_to_string(args.out.join("results.json")).context("results.json of an earlier run")?;
        let earlier: serde_json::Value = serde_json::from_str(&text)?;
        let rows = earlier["results"].as_array().cloned().unwrap_or_default();
        return print_report(&earlier["set"], rows, args.peers.as_deref());
    }
    let set_dir = args.out.join("set");
    std::fs::create_dir_all(&set_dir)?;
    let data = tempfile::tempdir()?;
    let session = Session::open(Config::embedded(data.path())).await?;

    let documents = read_documents(&args.dataset, args.documents)?;
    let chosen = choose(documents.len(), args.queries, args.seed);
    eprintln!("set: {} documents, {} queries (seed {})", documents.len(), chosen.len(), args.seed);
    let relevant: Vec<i64> = chosen.iter().map(|&i| documents[i].id).collect();
    let documents_path = set_dir.join("documents.parquet");
    let query_vectors = if args.reuse_set {
        read_query_vectors(&set_dir.join("queries.parquet"), &relevant)?
    } else {
        // The model is registered and loaded only when the set is embedded.
        let root = StorageUrl::parse(&session.config().storage_root())?;
        let definition = ModelDefinition { name: "minilm".into(), version: "v1".into(), task: "embedding".into(), dimensions: Some(384), metadata: json!({"max_tokens": 128}) };
        session.models().register_files(definition, &args.model_dir, &root, &session.artifacts(StorageOptions::new())).await?;
        let model = session.embeddings().model("minilm", "v1").await?;
        build_set(model.as_ref(), &documents, &chosen, &set_dir)?
    };

    // jammi-db's legs: the default import (plus the text column indexed), the Rust API, one
    // query at a time. Text queries are the synopses as plain words, as for the peers.
    let mut import = ImportSpec::new("docs", documents_path.display().to_string(), "id", "embedding");
    import.text_columns = vec![TextIndexColumn::parse("text")?];
    session.vectors().import(import, &NoProgress).await?;
    let queries_text: Vec<String> = chosen.iter().map(|&i| plain_words(&documents[i].synopsis)).collect();
    let legs: Vec<(&str, &str, Leg)> = vec![
        ("docs", "vector (HNSW, f32, default ef)", Leg::Vector { exact: false }),
        ("docs", "vector (exact)", Leg::Vector { exact: true }),
        ("docs", "text_search (BM25, english analyzer)", Leg::Text),
        ("docs", "hybrid_search (defaults: weighted 0.5:0.5, 10 candidates)", Leg::Hybrid(HybridOptions::default())),
        ("docs", "hybrid_search (weighted 0.3:0.7)", Leg::Hybrid(HybridOptions::parse("weights = 0.3:0.7")?)),
        ("docs", "hybrid_search (weighted 0.5:0.5, 50 candidates)", Leg::Hybrid(HybridOptions::parse("weights = 0.5:0.5, candidates = 50")?)),
        ("docs", "hybrid_search (RRF, rrf_k = 60)", Leg::Hybrid(HybridOptions::parse("fusion = rrf")?)),
        ("docs", "hybrid_search (RRF, rrf_k = 10)", Leg::Hybrid(HybridOptions::parse("rrf_k = 10")?)),
        ("docs", "hybrid_search (RRF, 50 candidates)", Leg::Hybrid(HybridOptions::parse("fusion = rrf, candidates = 50")?)),
        ("docs", "hybrid_search (RRF, vector leg ef 256)", Leg::Hybrid(HybridOptions::parse("fusion = rrf, ef = 256")?)),
    ];
    let mut rows = Vec::new();
    for (table, leg, how) in &legs {
        rows.push(run_leg(&session, table, leg, how, &queries_text, &query_vectors, &relevant).await?);
    }
    // The same table as eight segments (an import and seven appends): text scores do not
    // change, and this shows what the extra segments cost.
    split_into_segments(&session, &documents_path, &set_dir, 8).await?;
    rows.push(run_leg(&session, "docs8", "vector (HNSW, 8 segments)", &Leg::Vector { exact: false }, &queries_text, &query_vectors, &relevant).await?);
    rows.push(run_leg(&session, "docs8", "text_search (8 segments)", &Leg::Text, &queries_text, &query_vectors, &relevant).await?);
    rows.push(run_leg(&session, "docs8", "hybrid_search (defaults, 8 segments)", &Leg::Hybrid(HybridOptions::default()), &queries_text, &query_vectors, &relevant).await?);

    let freshness = measure_freshness(&session, &documents_path, &set_dir).await?;
    eprintln!("{freshness}");

    let set = json!({"documents": documents.len(), "queries": chosen.len(), "seed": args.seed, "freshness": freshness});
    std::fs::write(args.out.join("results.json"), serde_json::to_string_pretty(&json!({"set": set, "results": rows}))?)?;
    print_report(&set, rows, args.peers.as_deref())
}

/// The documents as table `docs8`: an import of the first eighth and an append of each other
/// eighth (one segment each).
async fn split_into_segments(session: &Session, documents_path: &Path, set_dir: &Path, parts: usize) -> Result<()> {
    let batch = read_all(documents_path)?;
    let per_part = batch.num_rows().div_ceil(parts);
    for part in 0..parts {
        let start = part * per_part;
        let slice = batch.slice(start, per_part.min(batch.num_rows() - start));
        let path = set_dir.join(format!("part-{part}.parquet"));
        write_parquet(&path, &slice)?;
        let url = path.display().to_string();
        if part == 0 {
            let mut import = ImportSpec::new("docs8", url, "id", "embedding");
            import.text_columns = vec![TextIndexColumn::parse("text")?];
            session.vectors().import(import, &NoProgress).await?;
        } else {
            session.vectors().append("docs8", &url, "id", "embedding", &StorageOptions::new(), &NoProgress).await?;
        }
    }
    let segments = session.vectors().list().await?.into_iter().find(|t| t.name == "docs8").map_or(0, |t| t.segments);
    eprintln!("docs8: {segments} segments");
    Ok(())
}

/// Every row of a Parquet file as one batch.
fn read_all(path: &Path) -> Result<RecordBatch> {
    let file = std::fs::File::open(path)?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    let schema = arrow::array::RecordBatchReader::schema(&reader);
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    Ok(arrow::compute::concat_batches(&schema, &batches)?)
}

/// Append 1,000 rows, each with a word no other row has, and look each up by text as soon as
/// the append returns: how long the append took and how many were findable at once.
async fn measure_freshness(session: &Session, documents_path: &Path, set_dir: &Path) -> Result<serde_json::Value> {
    const ROWS: usize = 1000;
    let batch = read_all(documents_path)?.slice(0, ROWS);
    let ids: Vec<i64> = (0..ROWS as i64).map(|i| 900_000_000 + i).collect();
    let texts: Vec<String> = batch.column_by_name("text").ok_or_else(|| anyhow!("no text"))?.as_string::<i32>().iter().zip(&ids).map(|(t, id)| format!("{} freshword{id}", t.unwrap_or(""))).collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    let schema = batch.schema();
    columns[schema.index_of("id")?] = Arc::new(Int64Array::from(ids.clone()));
    columns[schema.index_of("text")?] = Arc::new(StringArray::from(texts));
    let path = set_dir.join("fresh.parquet");
    write_parquet(&path, &RecordBatch::try_new(schema, columns)?)?;
    let started = Instant::now();
    session.vectors().append("docs", &path.display().to_string(), "id", "embedding", &StorageOptions::new(), &NoProgress).await?;
    let append_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut findable = 0;
    for id in &ids {
        let hit = session.vectors().text_search("docs", &TextSearchRequest::new(format!("freshword{id}"), 1)).await?;
        let got = hit.batch.column_by_name("id").ok_or_else(|| anyhow!("no id"))?.as_primitive::<Int64Type>().values().first().copied();
        findable += usize::from(got == Some(*id));
    }
    Ok(json!({"rows": ROWS, "append_ms": append_ms, "findable_when_append_returned": findable}))
}

/// One kind of jammi-db search.
enum Leg {
    Vector { exact: bool },
    Text,
    Hybrid(HybridOptions),
}

/// Run every query through `how` on `table`; the row of the results table.
async fn run_leg(session: &Session, table: &str, leg: &str, how: &Leg, texts: &[String], query_vectors: &[Vec<f32>], relevant: &[i64]) -> Result<serde_json::Value> {
    let search = |i: usize| {
        let api = session.vectors();
        async move {
            let result = match how {
                Leg::Vector { exact } => api.search(table, &SearchRequest { exact: *exact, ..SearchRequest::new(query_vectors[i].clone(), 10) }).await?,
                Leg::Text => api.text_search(table, &TextSearchRequest::new(texts[i].clone(), 10)).await?,
                Leg::Hybrid(options) => api.hybrid_search(table, &HybridRequest { options: *options, ..HybridRequest::with_vector(texts[i].clone(), query_vectors[i].clone(), 10) }).await?,
            };
            let ids = result.batch.column_by_name("id").ok_or_else(|| anyhow!("no id column"))?.as_primitive::<Int64Type>().values().to_vec();
            Ok::<_, anyhow::Error>(ids)
        }
    };
    search(0).await?;
    let started = Instant::now();
    let mut results = Vec::with_capacity(texts.len());
    for (i, &relevant) in relevant.iter().enumerate() {
        results.push((relevant, search(i).await?));
    }
    let qps = results.len() as f64 / started.elapsed().as_secs_f64();
    let (mrr, recall) = score(&results);
    eprintln!("jammi-db {leg}: MRR@10 {mrr:.3}, recall@10 {recall:.3}, {qps:.0} QPS");
    Ok(json!({"system": "jammi-db", "leg": leg, "mrr_at_10": mrr, "recall_at_10": recall, "qps": qps}))
}

/// The Markdown table of `rows`, with the peers' rows (from `search_peers.py`) after them.
fn print_report(set: &serde_json::Value, mut rows: Vec<serde_json::Value>, peers: Option<&Path>) -> Result<()> {
    if let Some(peers) = peers {
        let text = std::fs::read_to_string(peers).with_context(|| peers.display().to_string())?;
        let peers: serde_json::Value = serde_json::from_str(&text)?;
        rows.extend(peers["results"].as_array().cloned().unwrap_or_default());
    }
    println!("### Known-item retrieval\n");
    println!("{} documents, {} queries (seed {}); k = 10; one query at a time, one thread.\n", set["documents"], set["queries"], set["seed"]);
    if let Some(f) = set.get("freshness").filter(|f| !f.is_null()) {
        println!("Freshness: an append of {} rows took {:.0} ms; {} of them were findable by text_search the moment it returned.\n", f["rows"], f["append_ms"].as_f64().unwrap_or(f64::NAN), f["findable_when_append_returned"]);
    }
    println!("| system | leg | MRR@10 | recall@10 | QPS |");
    println!("|---|---|---:|---:|---:|");
    for row in &rows {
        println!("| {} | {} | {:.3} | {:.3} | {:.0} |", row["system"].as_str().unwrap_or("?"), row["leg"].as_str().unwrap_or("?"), row["mrr_at_10"].as_f64().unwrap_or(f64::NAN), row["recall_at_10"].as_f64().unwrap_or(f64::NAN), row["qps"].as_f64().unwrap_or(f64::NAN));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_split_at_the_synopsis() {
        assert_eq!(split_description("Real-time strategy game. 0 A.D. is a game."), Some(("Real-time strategy game".into(), "0 A.D. is a game.".into())));
        assert_eq!(split_description("only a synopsis"), None);
        assert_eq!(split_description("Synopsis. "), None);
    }

    #[test]
    fn the_seed_picks_the_same_distinct_queries() {
        let a = choose(1000, 100, 20);
        assert_eq!(a, choose(1000, 100, 20));
        assert_ne!(a, choose(1000, 100, 21));
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 100);
        assert!(a.iter().all(|&i| i < 1000));
        assert_eq!(choose(5, 10, 1).len(), 5);
    }

    #[test]
    fn queries_become_plain_words() {
        assert_eq!(plain_words("GNU C++ compiler (version 12): `fast` AND small's"), "GNU C compiler version 12 fast small s");
    }

    #[test]
    fn mrr_and_recall_count_ranks() {
        let results = vec![(1, vec![1, 2, 3]), (2, vec![3, 2]), (9, vec![1, 2])];
        let (mrr, recall) = score(&results);
        assert!((mrr - (1.0 + 0.5) / 3.0).abs() < 1e-12);
        assert!((recall - 2.0 / 3.0).abs() < 1e-12);
    }
}
