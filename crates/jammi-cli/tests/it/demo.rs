//! `jammi demo` on the embedded default, twice.

use crate::support::*;

#[test]
fn demo_runs_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let first = ok(jammi(&home).arg("demo"));
    for needle in ["rows per source", "revenue by region", "crm.public.customers", "ms)"] {
        assert!(first.contains(needle), "missing '{needle}' in:\n{first}");
    }
    assert!(home.join("demo/customers.parquet").exists());
    assert!(home.join("demo/orders.csv").exists());
    assert!(home.join("demo/products.json").exists());

    let second = ok(jammi(&home).arg("demo"));
    // Same data, same answers (timings aside).
    let strip = |s: &str| s.lines().filter(|l| !l.contains(" ms")).map(str::to_string).collect::<Vec<_>>();
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
