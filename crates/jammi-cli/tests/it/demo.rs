//! `jammi demo` on the embedded default, twice; what it leaves behind is checked with the
//! ordinary commands.

use crate::support::*;

#[test]
fn demo_runs_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let first = ok(jammi(&home).arg("demo"));
    for needle in ["rows per source", "revenue by region", "crm.public.customers", "ms)"] {
        assert!(first.contains(needle), "missing '{needle}' in:\n{first}");
    }
    for step in 1..=8 {
        assert!(first.contains(&format!("[{step}/8]")), "missing step {step} in:\n{first}");
    }
    assert!(home.join("demo/customers.parquet").exists());
    assert!(home.join("demo/orders.csv").exists());
    assert!(home.join("demo/products.json").exists());
    assert!(first.contains("jammi --data-dir") && first.contains("serve") && first.contains("psql \"postgres://"), "{first}");

    let second = ok(jammi(&home).arg("demo"));
    // Same data, same answers (timings aside): every demo_ object was replaced, not added to.
    let strip = |s: &str| s.lines().filter(|l| !l.contains(" ms") && !l.starts_with("demo finished")).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(strip(&first), strip(&second));

    // The demo's counts agree with the files it wrote, counted without the engine.
    let orders = std::fs::read_to_string(home.join("demo/orders.csv")).unwrap();
    let n_orders = orders.lines().count() - 1;
    let counts = ok(jammi(&home).args(["--format", "csv", "sql", "SELECT count(*) AS n FROM sales.public.orders"]));
    assert_eq!(counts, format!("n\n{n_orders}\n"));
    let products = std::fs::read_to_string(home.join("demo/products.json")).unwrap();
    let revenue: f64 = {
        let prices: std::collections::HashMap<i64, f64> = products
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["product_id"].as_i64().unwrap(), v["price"].as_f64().unwrap())
            })
            .collect();
        orders
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                f[3].parse::<f64>().unwrap() * prices[&f[2].parse::<i64>().unwrap()]
            })
            .sum()
    };
    let engine: f64 = ok(jammi(&home).args([
        "--format",
        "csv",
        "sql",
        "SELECT sum(o.quantity * p.price) AS r FROM sales.public.orders o JOIN inventory.public.products p USING (product_id)",
    ]))
    .lines()
    .nth(1)
    .unwrap()
    .parse()
    .unwrap();
    assert!((engine - revenue).abs() < 1e-6 * revenue, "{engine} vs {revenue}");
}

/// Each pillar the demo shows left what it says it did, read back through the CLI.
#[test]
fn demo_leaves_every_pillar_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let printed = ok(jammi(&home).arg("demo"));
    let csv = |sql: &str| ok(jammi(&home).args(["--format", "csv", "sql", sql]));

    // The vector table: one row per product, and a search by a product's own embedding finds
    // it first, with the product named through the source.
    assert_eq!(csv("SELECT count(*) AS n FROM vectors.public.demo_products"), "n\n300\n");
    let mug = csv("SELECT count(*) AS n FROM inventory.public.products WHERE name = 'ceramic mug' AND product_id = 126");
    assert_eq!(mug, "n\n1\n");
    let rows: Vec<&str> = printed.lines().filter(|l| l.contains(" mug ") && l.contains("kitchen")).collect();
    assert!(rows.len() >= 5, "the joined search names the nearest mugs: {printed}");
    assert!(printed.contains("    1 | ceramic mug"), "the probe is its own nearest neighbour: {printed}");
    // The filtered search honoured its filter: every price it printed is under 20.
    let filtered = printed.split("a filtered search").nth(1).unwrap().split("\n[4/8]").next().unwrap();
    let prices: Vec<f64> = filtered.lines().filter(|l| l.trim_start().starts_with(char::is_numeric)).map(|l| l.split('|').nth(2).unwrap().trim().parse().unwrap()).collect();
    assert_eq!(prices.len(), 5, "{filtered}");
    assert!(prices.iter().all(|p| *p < 20.0), "{prices:?}");

    // The mutable table after the upsert and the transaction, and its change feed.
    assert_eq!(csv("SELECT product_id, on_hand FROM mutable.public.demo_stock ORDER BY product_id"), "product_id,on_hand\n121,7\n122,9\n126,12\n");
    assert_eq!(
        csv("SELECT op, count(*) AS n FROM topics.public.demo_stock_changes GROUP BY op ORDER BY op"),
        "op,n\ndelete,1\ninsert,4\nupdate,2\n"
    );

    // The bundle verifies, and the model serves its finalized artifact under the alias.
    let bundle = home.join("demo/artifacts/bundles/demo_vocabulary");
    let fetched = ok(jammi(&home).args(["artifact", "fetch", bundle.to_str().unwrap()]));
    assert!(fetched.contains("demo_vocabulary"), "{fetched}");
    let model = ok(jammi(&home).args(["--format", "json", "model", "describe", "demo_ranker", "champion"]));
    assert!(model.contains("\"v1\"") && model.contains("attempt-1"), "{model}");
    let jobs = ok(jammi(&home).args(["--format", "csv", "job", "list"]));
    assert!(jobs.contains("succeeded"), "{jobs}");
}
