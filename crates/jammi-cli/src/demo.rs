//! `jammi demo`: a small shop data set in three formats, registered as sources and queried
//! together. Safe to run again: files are rewritten identically and sources reused.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use jammi_db::source::SourceSpec;
use jammi_db::Session;

use crate::cli::OutputFormat;

const REGIONS: [&str; 4] = ["north", "south", "east", "west"];
const CATEGORIES: [&str; 5] = ["books", "garden", "kitchen", "toys", "tools"];

const QUERIES: &[(&str, &str)] = &[
    (
        "rows per source",
        "SELECT 'crm.public.customers' AS table_name, count(*) AS row_count FROM crm.public.customers
         UNION ALL SELECT 'sales.public.orders', count(*) FROM sales.public.orders
         UNION ALL SELECT 'inventory.public.products', count(*) FROM inventory.public.products
         ORDER BY table_name",
    ),
    (
        "revenue by region (Parquet ⋈ CSV ⋈ JSON)",
        "SELECT c.region, count(*) AS orders, round(sum(o.quantity * p.price), 2) AS revenue
         FROM sales.public.orders o
         JOIN crm.public.customers c ON c.customer_id = o.customer_id
         JOIN inventory.public.products p ON p.product_id = o.product_id
         GROUP BY c.region ORDER BY revenue DESC",
    ),
    (
        "best-selling category per tier",
        "SELECT tier, category, units FROM (
           SELECT c.tier, p.category, sum(o.quantity) AS units,
                  row_number() OVER (PARTITION BY c.tier ORDER BY sum(o.quantity) DESC, p.category) AS rn
           FROM sales.public.orders o
           JOIN crm.public.customers c ON c.customer_id = o.customer_id
           JOIN inventory.public.products p ON p.product_id = o.product_id
           GROUP BY c.tier, p.category) ranked
         WHERE rn = 1 ORDER BY tier",
    ),
    (
        "top 5 customers by spend",
        "SELECT c.name, c.region, round(sum(o.quantity * p.price), 2) AS spend
         FROM sales.public.orders o
         JOIN crm.public.customers c USING (customer_id)
         JOIN inventory.public.products p USING (product_id)
         GROUP BY c.name, c.region ORDER BY spend DESC, c.name LIMIT 5",
    ),
];

/// Write the data set, register it, run the queries.
pub async fn run(session: &Session, format: OutputFormat, out: &mut dyn Write) -> Result<()> {
    let dir = session.config().data_dir.join("demo");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let started = Instant::now();
    let files = write_dataset(&dir)?;
    writeln!(out, "wrote sample data to {} ({:.1} ms)", dir.display(), ms(started))?;

    for (name, path) in [("crm", &files.customers), ("sales", &files.orders), ("inventory", &files.products)] {
        register(session, name, path).await?;
    }
    writeln!(out, "sources: crm.public.customers (Parquet), sales.public.orders (CSV), inventory.public.products (JSON)")?;

    for (title, sql) in QUERIES {
        writeln!(out, "\n-- {title}")?;
        let started = Instant::now();
        let frame = session.sql(sql).await?;
        let stream = frame.execute_stream().await.map_err(jammi_db::Error::from)?;
        let rows = crate::print::print_stream(stream, format, out).await?;
        writeln!(out, "({rows} rows, {:.1} ms)", ms(started))?;
    }
    Ok(())
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// Reuse a source pointing at the same file; refuse to clobber a user's own source.
async fn register(session: &Session, name: &str, path: &Path) -> Result<()> {
    let url = jammi_db::storage::StorageUrl::from_local_path(path, false)?;
    let existing = session.sources().list().await?.into_iter().find(|s| s.name == name);
    match existing {
        Some(s) if s.url == url.url().as_str() => Ok(()),
        Some(s) => bail!(
            "the demo registers a source named '{name}', but '{name}' already points at {}; use another --data-dir",
            s.url
        ),
        None => {
            session.sources().add(SourceSpec::new(name, path.display().to_string())).await?;
            Ok(())
        }
    }
}

struct DemoFiles {
    customers: std::path::PathBuf,
    orders: std::path::PathBuf,
    products: std::path::PathBuf,
}

/// Deterministic pseudo-random numbers, so every run writes the same files.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn write_dataset(dir: &Path) -> Result<DemoFiles> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (n_customers, n_products, n_orders) = (200i64, 40i64, 5000i64);

    // customers.parquet
    let ids: Vec<i64> = (1..=n_customers).collect();
    let names: Vec<String> = ids.iter().map(|i| format!("customer-{i:03}")).collect();
    let regions: Vec<&str> = ids.iter().map(|_| REGIONS[rng.below(4) as usize]).collect();
    let tiers: Vec<&str> = ids.iter().map(|_| ["free", "pro", "team"][rng.below(3) as usize]).collect();
    let customers = batch(vec![
        ("customer_id", Arc::new(Int64Array::from(ids)) as ArrayRef),
        ("name", Arc::new(StringArray::from(names))),
        ("region", Arc::new(StringArray::from(regions))),
        ("tier", Arc::new(StringArray::from(tiers))),
    ])?;
    let customers_path = dir.join("customers.parquet");
    write_atomically(&customers_path, |file| {
        let mut writer = ArrowWriter::try_new(file, customers.schema(), None)?;
        writer.write(&customers)?;
        writer.close()?;
        Ok(())
    })?;

    // products.json (newline-delimited)
    let mut products = String::new();
    for id in 1..=n_products {
        let category = CATEGORIES[rng.below(5) as usize];
        let price = (rng.below(9_000) as f64 + 100.0) / 100.0;
        products.push_str(&format!(
            "{{\"product_id\": {id}, \"name\": \"product-{id:02}\", \"category\": \"{category}\", \"price\": {price:.2}}}\n"
        ));
    }
    let products_path = dir.join("products.json");
    write_atomically(&products_path, |file| Ok(file.write_all(products.as_bytes())?))?;

    // orders.csv
    let mut orders = String::from("order_id,customer_id,product_id,quantity,ordered_on\n");
    for id in 1..=n_orders {
        let customer = rng.below(n_customers as u64) + 1;
        let product = rng.below(n_products as u64) + 1;
        let quantity = rng.below(5) + 1;
        let day = rng.below(28) + 1;
        let month = rng.below(12) + 1;
        orders.push_str(&format!("{id},{customer},{product},{quantity},2025-{month:02}-{day:02}\n"));
    }
    let orders_path = dir.join("orders.csv");
    write_atomically(&orders_path, |file| Ok(file.write_all(orders.as_bytes())?))?;

    Ok(DemoFiles { customers: customers_path, orders: orders_path, products: products_path })
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch> {
    let schema = Schema::new(
        columns.iter().map(|(n, c)| Field::new(*n, c.data_type().clone(), false)).collect::<Vec<_>>(),
    );
    Ok(RecordBatch::try_new(Arc::new(schema), columns.into_iter().map(|(_, c)| c).collect())?)
}

/// Write to a temporary file and rename, so a concurrent reader never sees half a file.
fn write_atomically(path: &Path, write: impl FnOnce(&mut std::fs::File) -> Result<()>) -> Result<()> {
    let tmp = path.with_extension("tmp-write");
    let mut file = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    write(&mut file)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
