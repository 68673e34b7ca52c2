//! `jammi demo`: the whole engine in one run on the embedded default — files and SQL, a
//! vector table searched by vector, by SQL joined to a source and with a filter, a mutable
//! table written with an upsert and a transaction, the change feed of those writes, an
//! artifact bundle, a model trained through the job queue — each step timed, ending with how
//! to serve it all.
//!
//! Safe to run again: the files are rewritten identically, the sources reused, and the
//! objects the demo owns (every name starting with `demo_`) replaced.

mod data;
mod pillars;

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use jammi_db::source::SourceSpec;
use jammi_db::Session;

use crate::cli::OutputFormat;

const STEPS: usize = 8;

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

/// Where the demo prints, and the format its results use.
pub(crate) struct Show<'a> {
    pub out: &'a mut dyn Write,
    pub format: OutputFormat,
    step: usize,
}

impl Show<'_> {
    /// A step's heading.
    fn step(&mut self, title: &str) -> Result<()> {
        self.step += 1;
        writeln!(self.out, "\n[{}/{STEPS}] {title}", self.step)?;
        Ok(())
    }

    /// One thing done, and how long it took.
    pub fn done(&mut self, what: &str, since: Instant) -> Result<()> {
        writeln!(self.out, "  {what} ({:.1} ms)", ms(since))?;
        Ok(())
    }

    /// Run SQL (one statement or several), printing each result.
    pub async fn sql(&mut self, session: &Session, title: &str, sql: &str) -> Result<()> {
        writeln!(self.out, "-- {title}")?;
        crate::run_sql(session, sql, self.format, self.out).await
    }
}

/// Write the data set, register it, and walk through every part of the engine.
pub async fn run(session: &Session, format: OutputFormat, out: &mut dyn Write) -> Result<()> {
    let started = Instant::now();
    let data_dir = session.config().data_dir.clone();
    let dir = data_dir.join("demo");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut show = Show { out, format, step: 0 };
    writeln!(show.out, "jammi demo: every part of the engine on the embedded default (catalog in SQLite, data in {})", data_dir.display())?;

    show.step("files and SQL: one query over Parquet, CSV and JSON")?;
    let t = Instant::now();
    let products = data::products();
    let files = data::write_dataset(&dir, &products)?;
    show.done(&format!("wrote customers.parquet, orders.csv, products.json and product_embeddings.parquet to {}", dir.display()), t)?;
    let t = Instant::now();
    for (name, path) in [("crm", &files.customers), ("sales", &files.orders), ("inventory", &files.products)] {
        register(session, name, path).await?;
    }
    show.done("sources: crm.public.customers (Parquet), sales.public.orders (CSV), inventory.public.products (JSON)", t)?;
    for (title, sql) in QUERIES {
        show.sql(session, title, sql).await?;
    }

    show.step("a vector table: product embeddings, indexed")?;
    pillars::vector_table(session, &mut show, &files.embeddings).await?;

    show.step("vector search: by vector, by SQL joined to a source, with a filter")?;
    pillars::vector_search(session, &mut show, &products).await?;

    show.step("a mutable table: upsert and a transaction")?;
    pillars::mutable_table(session, &mut show).await?;

    show.step("a change feed: the events of those writes, in commit order")?;
    pillars::change_feed(session, &mut show).await?;

    show.step("an artifact bundle: put, fetched and verified against its manifest")?;
    pillars::artifact_bundle(session, &mut show, &dir).await?;

    show.step("a model trained through the job queue")?;
    pillars::model_job(session, &mut show, &dir, &products).await?;

    show.step("serve it all")?;
    let home = data_dir.display();
    writeln!(show.out, "  jammi --data-dir {home} serve")?;
    writeln!(show.out, "  serves this data directory over HTTP (127.0.0.1:8080), the Postgres protocol (127.0.0.1:5433) and Arrow Flight SQL (127.0.0.1:50051); then, from another terminal:")?;
    writeln!(
        show.out,
        "  psql \"postgres://jammi@127.0.0.1:5433/jammi\" -c \"SELECT name, on_hand FROM mutable.public.demo_stock JOIN inventory.public.products USING (product_id)\""
    )?;
    writeln!(show.out, "  (with tokens created, `jammi token create`, give one as the password)")?;
    writeln!(show.out, "\ndemo finished in {:.2} s", started.elapsed().as_secs_f64())?;
    Ok(())
}

pub(crate) fn ms(since: Instant) -> f64 {
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
