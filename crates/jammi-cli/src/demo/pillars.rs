//! The demo's steps past files and SQL: vectors, a mutable table and its change feed,
//! artifacts, a model through the job queue. Each replaces what an earlier run left under
//! its `demo_` name, so the demo can run again.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Result};
use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use jammi_db::artifact::{ArtifactFile, ArtifactStore, JobRequest, JobState, ModelDefinition};
use jammi_db::storage::{StorageOptions, StorageUrl};
use jammi_db::topic::{Retention, TopicDefinition};
use jammi_db::vector::{ImportSpec, NoProgress, SearchRequest};
use jammi_db::Session;

use super::data::{Product, DIMS};
use super::Show;
use crate::print;

const VECTORS: &str = "demo_products";
const STOCK: &str = "mutable.public.demo_stock";
const FEED: &str = "demo_stock_changes";
const MODEL: &str = "demo_ranker";
/// The product whose embedding the searches start from.
const PROBE: &str = "ceramic mug";

/// Import the product embeddings as a vector table with the default index.
pub async fn vector_table(session: &Session, show: &mut Show<'_>, embeddings: &Path) -> Result<()> {
    let vectors = session.vectors();
    if vectors.list().await?.iter().any(|t| t.name == VECTORS) {
        vectors.drop(VECTORS).await?;
    }
    let t = Instant::now();
    let spec = ImportSpec::new(VECTORS, embeddings.display().to_string(), "product_id", "embedding");
    let info = vectors.import(spec, &NoProgress).await?;
    show.done(
        &format!(
            "imported vectors.public.{VECTORS}: {} products, {}-d, {} metric, {} HNSW graph, results rescored exactly; payload columns category, price",
            info.rows, info.dims, info.metric, info.precision
        ),
        t,
    )
}

/// Search by vector through the API, then in SQL joined to a source, then with a filter.
pub async fn vector_search(session: &Session, show: &mut Show<'_>, products: &[Product]) -> Result<()> {
    let probe = products.iter().find(|p| p.name == PROBE).ok_or_else(|| anyhow!("the demo data has no '{PROBE}'"))?;
    debug_assert_eq!(probe.embedding.len(), DIMS);

    let t = Instant::now();
    let result = session.vectors().search(VECTORS, &SearchRequest::new(probe.embedding.clone(), 5)).await?;
    show.done(&format!("the 5 products nearest to the embedding of '{PROBE}' (Rust API; `jammi search {VECTORS} --vector '[…]' --k 5` on the CLI)"), t)?;
    let columns = ["id", "category", "price", "_distance", "_rank"];
    let indices = columns.iter().map(|c| result.batch.schema().index_of(c)).collect::<std::result::Result<Vec<_>, _>>()?;
    print::print_batch(&result.batch.project(&indices)?, show.format, show.out)?;
    let nearest = result.batch.column_by_name("id").and_then(|ids| ids.as_primitive_opt::<Int64Type>()).map(|ids| ids.value(0));
    ensure!(nearest == Some(probe.id), "the nearest product to '{PROBE}' should be itself");

    let literal = vector_literal(&probe.embedding);
    let sql = format!(
        "SELECT v._rank AS rank, p.name, p.category, p.price, round(v._distance, 4) AS distance
         FROM vector_search('{VECTORS}', '{literal}', 5) v
         JOIN inventory.public.products p ON p.product_id = v.id ORDER BY v._rank"
    );
    let title = format!("SQL: vector_search('{VECTORS}', <embedding of '{PROBE}'>, 5) joined to inventory.public.products for the names");
    show.sql(session, &title, &sql).await?;

    let sql = format!(
        "SELECT v._rank AS rank, p.name, p.price, round(v._distance, 4) AS distance
         FROM vector_search('{VECTORS}', '{literal}', 5, 'price < 20') v
         JOIN inventory.public.products p ON p.product_id = v.id ORDER BY v._rank"
    );
    let title = format!("a filtered search: the 5 nearest under 20.00 — vector_search('{VECTORS}', <…>, 5, 'price < 20'), filtered before the search, never short of k");
    show.sql(session, &title, &sql).await
}

/// Create the stock table and its change feed, then write it: inserts, an upsert, and a
/// transaction that updates one row and deletes another.
pub async fn mutable_table(session: &Session, show: &mut Show<'_>) -> Result<()> {
    let topics = session.topics();
    let t = Instant::now();
    if topics.list().await?.iter().any(|topic| topic.name == FEED) {
        topics.drop(FEED).await?;
    }
    for ddl in [format!("DROP TABLE IF EXISTS {STOCK}"), format!("CREATE TABLE {STOCK} (product_id BIGINT PRIMARY KEY, on_hand BIGINT NOT NULL)")] {
        session.sql(&ddl).await?.collect().await.map_err(jammi_db::Error::from)?;
    }
    topics
        .create(TopicDefinition { name: FEED.into(), columns: Vec::new(), source_table: Some(STOCK.into()), retention: Retention::default() })
        .await?;
    show.done(&format!("created {STOCK} (product_id BIGINT PRIMARY KEY, on_hand BIGINT NOT NULL) and its change feed topics.public.{FEED}"), t)?;

    show.sql(session, "insert three mugs", &format!("INSERT INTO {STOCK} VALUES (121, 10), (122, 4), (123, 25)")).await?;
    show.sql(
        session,
        "upsert: product 122 exists (updated), product 126 does not (inserted)",
        &format!("INSERT INTO {STOCK} VALUES (122, 9), (126, 12) ON CONFLICT (product_id) DO UPDATE SET on_hand = excluded.on_hand"),
    )
    .await?;
    show.sql(
        session,
        "a transaction: sell 3 of product 121 and retire product 123, committed together",
        &format!("BEGIN; UPDATE {STOCK} SET on_hand = on_hand - 3 WHERE product_id = 121; DELETE FROM {STOCK} WHERE product_id = 123; COMMIT"),
    )
    .await?;
    show.sql(
        session,
        "the table now, joined to the products source",
        &format!("SELECT s.product_id, p.name, s.on_hand FROM {STOCK} s JOIN inventory.public.products p USING (product_id) ORDER BY s.product_id"),
    )
    .await
}

/// The change feed holds one event per changed row, written in the writing transaction.
pub async fn change_feed(session: &Session, show: &mut Show<'_>) -> Result<()> {
    show.sql(
        session,
        &format!("topics.public.{FEED} (subscribe live with `jammi topic subscribe {FEED} --from-beginning`)"),
        &format!("SELECT _offset, op, key, new, old FROM topics.public.{FEED} ORDER BY _offset"),
    )
    .await
}

/// The folder artifact bundles are written under.
fn artifact_root(dir: &Path) -> Result<StorageUrl> {
    Ok(StorageUrl::from_local_path(&dir.join("artifacts"), true)?)
}

/// Remove what an earlier run put at `prefix`, so the put below is the first there.
async fn clear_prefix(store: &ArtifactStore, prefix: &StorageUrl) -> Result<()> {
    if prefix.local_path().is_some_and(|p| p.exists()) {
        store.delete_artifact_prefix(prefix).await?;
    }
    Ok(())
}

/// Put a two-file bundle, fetch it back and show its manifest.
pub async fn artifact_bundle(session: &Session, show: &mut Show<'_>, dir: &Path) -> Result<()> {
    let store = session.artifacts(StorageOptions::new());
    let root = artifact_root(dir)?;
    let segments = ["bundles", "demo_vocabulary"];
    clear_prefix(&store, &store.prefix_url(&root, &segments)?).await?;

    let t = Instant::now();
    let vocabulary: String = super::data::vocabulary().join("\n");
    let config = serde_json::json!({"dimensions": DIMS, "metric": "cosine", "table": VECTORS}).to_string();
    let files = [ArtifactFile::from_bytes("vocab.txt", vocabulary.into_bytes()), ArtifactFile::from_bytes("config.json", config.into_bytes())];
    let prefix = store.put_artifact(&root, &segments, &files).await?;
    show.done(&format!("put vocab.txt and config.json as one bundle at {prefix} (manifest.json written last)"), t)?;

    let t = Instant::now();
    let fetched = store.fetch_artifact(&prefix).await?;
    show.done(&format!("fetched it: every file checked against the manifest's size and SHA-256, in {}", fetched.dir.display()), t)?;
    for entry in &fetched.manifest.files {
        writeln!(show.out, "    {:<12} {:>5} bytes  sha256 {}…", entry.name, entry.size, &entry.sha256[..16])?;
    }
    Ok(())
}

/// Register a model, enqueue its training job, claim it as a worker, write the attempt's
/// artifact under the lease and finalize: the model then serves that artifact.
pub async fn model_job(session: &Session, show: &mut Show<'_>, dir: &Path, products: &[Product]) -> Result<()> {
    let (models, jobs) = (session.models(), session.jobs());
    // The demo claims the next job in the queue: it only runs when that job is its own.
    let waiting = jobs.list().await?.into_iter().filter(|j| matches!(j.state, JobState::Queued | JobState::Running)).count();
    if waiting > 0 {
        writeln!(show.out, "  skipped: the job queue holds {waiting} unfinished job(s) of yours, and the demo would claim one of them")?;
        return Ok(());
    }
    if models.get(MODEL, "v1").await.is_ok() {
        models.delete(MODEL, "v1").await?;
    }
    let store = session.artifacts(StorageOptions::new());
    let root = artifact_root(dir)?;

    let t = Instant::now();
    let definition = ModelDefinition {
        name: MODEL.into(),
        version: "v1".into(),
        task: "ranking".into(),
        dimensions: Some(DIMS as u32),
        metadata: serde_json::json!({"trained_on": format!("vectors.public.{VECTORS}")}),
    };
    models.register(definition).await?;
    let job = jobs.enqueue(JobRequest::new(MODEL, "v1", root.to_string())).await?;
    show.done(&format!("registered model {MODEL}:v1 and enqueued its training job"), t)?;

    let t = Instant::now();
    let lease = jobs.claim("demo-worker", Duration::from_secs(60)).await?.ok_or_else(|| anyhow!("the job queue handed out no job"))?;
    ensure!(lease.job_id == job.id, "the demo claimed job {} instead of its own {}", lease.job_id, job.id);
    show.done(&format!("claimed it as worker 'demo-worker' (attempt {}, a lease of 60 s; heartbeat to keep it)", lease.attempt), t)?;

    let t = Instant::now();
    let weights = category_centroids(products);
    let segments = lease.segments();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    store.put_artifact(&root, &segments, &[ArtifactFile::from_bytes("weights.bin", weights)]).await?;
    show.done("trained it (one centroid per category of the product embeddings) and wrote weights.bin under the lease's own prefix", t)?;

    let t = Instant::now();
    let prefix = jobs.finalize(&job.id, &lease.token, &store).await?;
    models.set_alias(MODEL, "champion", "v1").await?;
    let served = models.describe(MODEL, "champion").await?;
    ensure!(served.artifact_prefix.as_deref() == Some(prefix.as_str()), "the model should serve the finalized artifact");
    show.done(&format!("finalized (verify the artifact, mark the job done and point the model at it, in one commit); {MODEL}:champion → v1 serves {prefix}"), t)
}

/// The "training": each category's mean embedding, categories in name order, as
/// little-endian f32.
fn category_centroids(products: &[Product]) -> Vec<u8> {
    let mut sums: std::collections::BTreeMap<&str, (Vec<f32>, f32)> = std::collections::BTreeMap::new();
    for p in products {
        let (sum, n) = sums.entry(p.category).or_insert_with(|| (vec![0.0; DIMS], 0.0));
        sum.iter_mut().zip(&p.embedding).for_each(|(s, x)| *s += x);
        *n += 1.0;
    }
    sums.values().flat_map(|(sum, n)| sum.iter().map(move |s| s / n)).flat_map(f32::to_le_bytes).collect()
}

/// `[a, b, …]` with enough digits to round-trip what the search needs.
fn vector_literal(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x:.5}")).collect();
    format!("[{}]", parts.join(", "))
}
