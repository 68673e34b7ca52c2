//! SQL over a Parquet file against DuckDB: five aggregate queries over a generated
//! 10-million-row file (count/sum, group by a small key, filtered group by, count distinct,
//! top-k per group), both in-process with the same number of threads, median of several
//! runs after a warm-up. `peers/files_peers.py` runs DuckDB (from PyPI) on the same file;
//! `--peers FILE` folds its JSON in and prints the comparison for `docs/BENCHMARKS.md`.
//!
//! ```sh
//! bash crates/jammi-bench/run_files.sh            # data, DuckDB, this, one report
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use jammi_db::source::SourceSpec;
use jammi_db::{Config, Session};
use serde_json::{json, Value};

/// The queries, named; `{t}` stands for each system's name of the file.
pub const QUERIES: [(&str, &str); 5] = [
    ("count_sum", "SELECT count(*) AS n, sum(amount) AS total FROM {t}"),
    ("group_small_key", "SELECT region, count(*) AS n, sum(amount) AS total, avg(amount) AS mean FROM {t} GROUP BY region ORDER BY region"),
    (
        "filtered_group",
        "SELECT category, count(*) AS n, sum(amount) AS total FROM {t} WHERE region = 'north' AND amount > 50 GROUP BY category ORDER BY total DESC, category LIMIT 10",
    ),
    ("count_distinct", "SELECT count(DISTINCT user_id) AS users FROM {t}"),
    (
        "top_k_per_group",
        "SELECT region, category, total FROM (SELECT region, category, sum(amount) AS total, row_number() OVER (PARTITION BY region ORDER BY sum(amount) DESC, category) AS rn FROM {t} GROUP BY region, category) ranked WHERE rn <= 3 ORDER BY region, rn",
    ),
];

const REGIONS: [&str; 8] = ["north", "south", "east", "west", "centre", "coast", "hills", "islands"];
const CATEGORIES: usize = 500;
const USERS: u64 = 2_000_000;
const BATCH: usize = 1 << 16;

struct Args {
    file: PathBuf,
    rows: usize,
    threads: usize,
    reps: usize,
    write_only: bool,
    peers: Option<PathBuf>,
    /// `SET` statements run before the queries (`--set datafusion.x.y=v`), to try settings.
    settings: Vec<String>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args { file: PathBuf::from("/tmp/jammi-files-bench/facts.parquet"), rows: 10_000_000, threads: 2, reps: 5, write_only: false, peers: None, settings: Vec::new() };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--file" => args.file = PathBuf::from(value()?),
            "--rows" => args.rows = value()?.parse()?,
            "--threads" => args.threads = value()?.parse()?,
            "--reps" => args.reps = value()?.parse()?,
            "--write-only" => args.write_only = true,
            "--print-queries" => {
                println!("{}", json!(QUERIES));
                std::process::exit(0);
            }
            "--peers" => args.peers = Some(PathBuf::from(value()?)),
            "--set" => args.settings.push(value()?),
            other => return Err(anyhow!("unknown flag {other}; flags: --file --rows --threads --reps --write-only --print-queries --peers --set")),
        }
    }
    Ok(args)
}

/// Deterministic xorshift, so every run writes the same file.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Write `rows` rows (id, region, category, user_id, amount) as Snappy Parquet with
/// row groups of 1 Mi rows — what a data pipeline typically leaves.
fn write_file(path: &std::path::Path, rows: usize) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("region", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("user_id", DataType::Int64, false),
        Field::new("amount", DataType::Float64, false),
    ]));
    let categories: Vec<String> = (0..CATEGORIES).map(|c| format!("category-{c:03}")).collect();
    let tmp = path.with_extension("tmp");
    let file = std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    let properties = WriterProperties::builder().set_compression(Compression::SNAPPY).set_max_row_group_row_count(Some(1 << 20)).build();
    let mut writer = ArrowWriter::try_new(file, Arc::clone(&schema), Some(properties))?;
    let mut rng = Rng(0x853C_49E6_748F_EA9B);
    let mut written = 0;
    while written < rows {
        let n = BATCH.min(rows - written);
        let ids: Vec<i64> = (written..written + n).map(|i| i as i64).collect();
        let (mut region, mut category, mut user, mut amount) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            let r = rng.next();
            region.push(REGIONS[(r % REGIONS.len() as u64) as usize]);
            // Skewed categories: a few are common, most are rare.
            let c = ((r >> 8) % CATEGORIES as u64) * ((r >> 20) % CATEGORIES as u64) / CATEGORIES as u64;
            category.push(categories[c as usize].as_str());
            user.push((rng.next() % USERS) as i64);
            amount.push((rng.next() % 10_000) as f64 / 100.0);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(region)),
            Arc::new(StringArray::from(category)),
            Arc::new(Int64Array::from(user)),
            Arc::new(Float64Array::from(amount)),
        ];
        writer.write(&RecordBatch::try_new(Arc::clone(&schema), columns)?)?;
        written += n;
    }
    writer.close()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The first row of a result as JSON, to compare answers across systems.
fn first_row(batches: &[RecordBatch]) -> Result<Value> {
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else { return Ok(Value::Null) };
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    writer.write(&batch.slice(0, 1))?;
    writer.finish()?;
    let rows: Value = serde_json::from_slice(&writer.into_inner())?;
    Ok(rows[0].clone())
}

async fn run_jammi(args: &Args) -> Result<Value> {
    let scratch = tempfile::tempdir()?;
    let mut config = Config::embedded(scratch.path().join("home"));
    config.query.target_partitions = args.threads;
    let session = Session::open(config).await?;
    for setting in &args.settings {
        let (key, value) = setting.split_once('=').ok_or_else(|| anyhow!("--set takes KEY=VALUE, not '{setting}'"))?;
        session.sql(&format!("SET {key} = '{value}'")).await?.collect().await?;
    }
    session.sources().add(SourceSpec::new("bench", args.file.display().to_string())).await?;
    let table = format!("bench.public.{}", args.file.file_stem().and_then(|s| s.to_str()).ok_or_else(|| anyhow!("the file needs a name"))?);
    let mut out = serde_json::Map::new();
    for (name, sql) in QUERIES {
        let sql = sql.replace("{t}", &table);
        let answer = first_row(&session.sql(&sql).await?.collect().await?)?; // warm-up
        let mut times = Vec::with_capacity(args.reps);
        for _ in 0..args.reps {
            let started = Instant::now();
            let batches = session.sql(&sql).await?.collect().await?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            std::hint::black_box(batches);
        }
        eprintln!("jammi {name}: {:.1} ms", median(times.clone()));
        out.insert(name.into(), json!({"ms": median(times), "first_row": answer}));
    }
    Ok(Value::Object(out))
}

fn markdown(args: &Args, jammi: &Value, peers: Option<&Value>) -> String {
    let mut out = vec![
        format!(
            "{} rows, {:.0} MB of Snappy Parquet (row groups of 1 Mi rows), {} threads for each system, median of {} runs after a warm-up, in-process (no process start in either):\n",
            args.rows,
            std::fs::metadata(&args.file).map(|m| m.len() as f64 / 1e6).unwrap_or(f64::NAN),
            args.threads,
            args.reps
        ),
        "| query | jammi ms | DuckDB ms | jammi ÷ DuckDB | same answer |".into(),
        "|---|---:|---:|---:|---|".into(),
    ];
    let mut ratios = Vec::new();
    for (name, _) in QUERIES {
        let ours = jammi[name]["ms"].as_f64().unwrap_or(f64::NAN);
        let theirs = peers.and_then(|p| p["duckdb"][name]["ms"].as_f64());
        let same = peers.map(|p| same_answer(&jammi[name]["first_row"], &p["duckdb"][name]["first_row"]));
        if let Some(t) = theirs {
            ratios.push(ours / t);
        }
        out.push(format!(
            "| {name} | {ours:.1} | {} | {} | {} |",
            theirs.map(|t| format!("{t:.1}")).unwrap_or_else(|| "–".into()),
            theirs.map(|t| format!("{:.2}×", ours / t)).unwrap_or_else(|| "–".into()),
            match same {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "–",
            }
        ));
    }
    if !ratios.is_empty() {
        out.push(format!("\nMedian ratio: **{:.2}×** DuckDB's time (lower is better).", median(ratios)));
    }
    out.join("\n")
}

/// The first rows agree: the same values, numbers within 1e-9 relative (sums of floats
/// may differ in the last digits with summation order).
fn same_answer(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else { return false };
    a.len() == b.len()
        && a.iter().all(|(k, va)| match (va, &b[k.as_str()]) {
            (Value::Number(x), Value::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
                (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
            }
            (x, y) => x == y,
        })
}

fn main() -> Result<()> {
    let args = parse_args()?;
    if !args.file.exists() || args.write_only {
        eprintln!("writing {} rows to {}", args.rows, args.file.display());
        write_file(&args.file, args.rows)?;
    }
    if args.write_only {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()?;
    let jammi = runtime.block_on(run_jammi(&args))?;
    let peers = match &args.peers {
        Some(p) => Some(serde_json::from_slice::<Value>(&std::fs::read(p).with_context(|| format!("read {}", p.display()))?)?),
        None => None,
    };
    println!("{}", markdown(&args, &jammi, peers.as_ref()));
    Ok(())
}
