//! Federation benchmark: a pgbench-style set of queries (full-scan aggregate, filtered
//! aggregate, point lookup, join) through jammi-db's Postgres source and sent straight to
//! Postgres with sqlx, in the same run: prepared statements against prepared statements (the
//! key bound as `$1`), SQL text against SQL text (the key written in). Prints the Markdown table of
//! docs/BENCHMARKS.md; fixed per-statement costs and planning times go to stderr.
//!
//! Usage: federation-bench --pg postgres://user@host:port/db [--scale N] [--reps N] [--only QUERY]

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use jammi_db::source::SourceSpec;
use jammi_db::{Config, Session};
use sqlx::postgres::PgPoolOptions;
use sqlx::Row;

struct Args {
    pg: String,
    scale: i64,
    reps: usize,
    only: Option<String>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args { pg: String::new(), scale: 10, reps: 200, only: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--pg" => args.pg = value()?,
            "--scale" => args.scale = value()?.parse()?,
            "--reps" => args.reps = value()?.parse()?,
            "--only" => args.only = Some(value()?),
            other => return Err(anyhow!("unknown flag {other}; flags: --pg URL --scale N --reps N --only QUERY-NAME")),
        }
    }
    if args.pg.is_empty() {
        return Err(anyhow!("--pg URL is required"));
    }
    Ok(args)
}

/// (name, SQL with `{t}` for the schema-qualified table prefix, repetitions multiplier).
const QUERIES: &[(&str, &str, usize)] = &[
    ("full scan aggregate", "SELECT count(*), sum(abalance) FROM {t}accounts", 1),
    ("filtered aggregate", "SELECT bid, count(*), avg(abalance) FROM {t}accounts WHERE aid BETWEEN 10000 AND 60000 GROUP BY bid ORDER BY bid", 4),
    ("point lookup", "SELECT aid, bid, abalance FROM {t}accounts WHERE aid = {k}", 40),
    ("join", "SELECT b.bid, count(*) FROM {t}accounts a JOIN {t}branches b ON a.bid = b.bid WHERE a.aid < 20000 GROUP BY b.bid ORDER BY b.bid", 4),
];

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let pool = PgPoolOptions::new().max_connections(4).connect(&args.pg).await.context("connect to Postgres")?;
    let accounts = args.scale * 100_000;
    eprintln!("loading {accounts} accounts");
    sqlx::raw_sql(&format!(
        "DROP TABLE IF EXISTS accounts, branches; \
         CREATE TABLE branches (bid int PRIMARY KEY, bbalance int NOT NULL, filler char(88)); \
         CREATE TABLE accounts (aid bigint PRIMARY KEY, bid int NOT NULL, abalance int NOT NULL, filler char(84)); \
         INSERT INTO branches SELECT g, 0, '' FROM generate_series(1, {scale}) g; \
         INSERT INTO accounts SELECT g, 1 + (g - 1) / 100000, (g::bigint * 7919) % 10000, '' FROM generate_series(1, {accounts}) g;",
        scale = args.scale
    ))
    .execute(&pool)
    .await?;
    for table in ["accounts", "branches"] {
        sqlx::query(&format!("VACUUM ANALYZE {table}")).execute(&pool).await?;
    }

    let dir = tempfile::tempdir()?;
    let session = Session::open(Config::embedded(dir.path())).await?;
    session.sources().add(SourceSpec::new("pg", args.pg.clone())).await?;

    // Fixed costs of a jammi statement, measured apart (printed to stderr): the catalog
    // freshness check every statement makes, and a prepared statement that reads nothing.
    let constant = session.prepare("SELECT 1").await?;
    let (mut check, mut nothing) = (Vec::new(), Vec::new());
    for _ in 0..500 {
        let started = Instant::now();
        session.sync_catalog().await?;
        check.push(started.elapsed());
        let started = Instant::now();
        std::hint::black_box(constant.query(Vec::<jammi_db::datafusion::common::ScalarValue>::new()).await?);
        nothing.push(started.elapsed());
    }
    eprintln!(
        "catalog freshness check median {:.1} µs; prepared SELECT 1 median {:.1} µs",
        median(check).as_secs_f64() * 1e6,
        median(nothing).as_secs_f64() * 1e6
    );

    println!("pgbench-style tables at scale {} ({} accounts), {} base repetitions; Postgres on loopback, same machine.\n", args.scale, accounts, args.reps);
    println!(
        "| query | direct, prepared | jammi prepared | ÷ direct | direct, SQL text | jammi SQL text | ÷ direct | pushed down whole |\n|---|---:|---:|---:|---:|---:|---:|---|"
    );
    for (name, template, mult) in QUERIES {
        if args.only.as_deref().is_some_and(|only| !name.contains(only)) {
            continue;
        }
        let reps = (args.reps * mult / 10).max(5);
        let sql_for = |t: &str, k: i64| template.replace("{t}", t).replace("{k}", &k.to_string());
        let plan = session.sql(&format!("EXPLAIN {}", sql_for("pg.public.", 1))).await?.collect().await?;
        let plan_text = jammi_db::datafusion::arrow::util::pretty::pretty_format_batches(&plan)?.to_string();
        let physical = plan_text.split("physical_plan").nth(1).unwrap_or_default();
        let whole = physical.matches("RemoteQueryExec").count() == 1 && !["AggregateExec", "HashJoinExec", "SortExec", "FilterExec"].iter().any(|n| physical.contains(n));
        let text_plan = session.sql(&sql_for("pg.public.", 2)).await?.logical_plan().display_indent().to_string();
        eprintln!("{name}: SQL text shares a plan: {}", if text_plan.contains("shared_plan") { "yes" } else { "no" });
        let prepared = session.prepare(&template.replace("{t}", "pg.public.").replace("{k}", "$1")).await?;
        let has_param = template.contains("{k}");
        // The direct prepared client binds the key as an application would (one statement,
        // prepared once per connection by sqlx); the direct text client sends the SQL with
        // the key written in, over the simple query protocol, as psql does.
        let direct_sql = template.replace("{t}", "").replace("{k}", "$1");
        let mut timings: [Vec<Duration>; 4] = Default::default();
        let mut planning = Vec::new();
        for i in 0..reps {
            let k = 1 + (i as i64 * 7919) % accounts;
            // Rotate who goes first, so caches favour none.
            for turn in 0..4 {
                let mode = (i + turn) % 4;
                let started = Instant::now();
                match mode {
                    0 => {
                        let query = sqlx::query(&direct_sql);
                        let query = if has_param { query.bind(k) } else { query };
                        let rows = query.fetch_all(&pool).await?;
                        let _: Vec<i64> = rows.iter().map(|r| r.try_get::<i64, _>(0).unwrap_or_default()).collect();
                    }
                    1 => {
                        let params = if has_param { vec![jammi_db::datafusion::common::ScalarValue::Int64(Some(k))] } else { vec![] };
                        std::hint::black_box(prepared.query(params).await?);
                    }
                    2 => {
                        let rows = sqlx::raw_sql(&sql_for("", k)).fetch_all(&pool).await?;
                        let _: Vec<i64> = rows.iter().map(|r| r.try_get::<i64, _>(0).unwrap_or_default()).collect();
                    }
                    _ => {
                        let frame = session.sql(&sql_for("pg.public.", k)).await?;
                        planning.push(started.elapsed());
                        std::hint::black_box(frame.collect().await?);
                    }
                }
                timings[mode].push(started.elapsed());
            }
        }
        let [direct, jammi_prepared, direct_text, jammi_text] = timings.map(median);
        eprintln!("{name}: Session::sql (parse + logical plan) median {:.3} ms", median(planning).as_secs_f64() * 1e3);
        let ms = |t: Duration| t.as_secs_f64() * 1e3;
        println!(
            "| {name} | {:.3} ms | {:.3} ms | {:.2}× | {:.3} ms | {:.3} ms | {:.2}× | {} |",
            ms(direct),
            ms(jammi_prepared),
            ms(jammi_prepared) / ms(direct),
            ms(direct_text),
            ms(jammi_text),
            ms(jammi_text) / ms(direct_text),
            if whole { "yes" } else { "no" }
        );
    }
    Ok(())
}
