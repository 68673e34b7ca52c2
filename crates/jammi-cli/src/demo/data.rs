//! The demo's data set: a small shop in three file formats (customers in Parquet, orders in
//! CSV, products in JSON) and a Parquet file of product embeddings. Deterministic: every run
//! writes the same bytes, so the demo's answers are the same every time.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow::array::{ArrayRef, FixedSizeListArray, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;

const REGIONS: [&str; 4] = ["north", "south", "east", "west"];

/// Each category's products: every finish of every item, so similar products exist to find.
const CATEGORIES: [(&str, [&str; 6]); 5] = [
    ("books", ["novel", "cookbook", "atlas", "notebook", "biography", "comic"]),
    ("garden", ["hose", "trowel", "planter", "rake", "seed kit", "watering can"]),
    ("kitchen", ["mug", "skillet", "whisk", "kettle", "teapot", "cutting board"]),
    ("toys", ["puzzle", "kite", "robot kit", "yo-yo", "plush bear", "train set"]),
    ("tools", ["hammer", "wrench", "drill", "screwdriver set", "tape measure", "level"]),
];
const FINISHES: [&str; 10] = ["red", "blue", "green", "steel", "wooden", "ceramic", "compact", "deluxe", "vintage", "travel"];

/// Dimensions of the demo's product embeddings.
pub const DIMS: usize = 48;
const CUSTOMERS: i64 = 200;
const ORDERS: i64 = 5000;

/// The files the demo wrote.
pub struct DemoFiles {
    pub customers: PathBuf,
    pub orders: PathBuf,
    pub products: PathBuf,
    pub embeddings: PathBuf,
}

/// One product, as the files hold it.
pub struct Product {
    pub id: i64,
    pub name: String,
    pub category: &'static str,
    pub price: f64,
    pub embedding: Vec<f32>,
}

/// Deterministic pseudo-random numbers (xorshift), so every run writes the same files.
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
    /// Roughly normal, mean 0, deviation 1 (sum of uniforms).
    fn normal(&mut self) -> f32 {
        let sum: f64 = (0..12).map(|_| (self.next() >> 11) as f64 / (1u64 << 53) as f64).sum();
        (sum - 6.0) as f32
    }
    fn direction(&mut self) -> Vec<f32> {
        (0..DIMS).map(|_| self.normal()).collect()
    }
}

/// The products: what makes two products alike (category, item, finish) is what makes their
/// embeddings close, as a sentence encoder would place their descriptions.
pub fn products() -> Vec<Product> {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let finishes: Vec<Vec<f32>> = FINISHES.iter().map(|_| rng.direction()).collect();
    let mut products = Vec::new();
    for (category, items) in CATEGORIES {
        let centre = rng.direction();
        for item in items {
            let item_direction = rng.direction();
            for (finish, finish_direction) in FINISHES.iter().zip(&finishes) {
                let mut v: Vec<f32> = (0..DIMS)
                    .map(|d| centre[d] + 0.8 * item_direction[d] + 0.35 * finish_direction[d] + 0.15 * rng.normal())
                    .collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter_mut().for_each(|x| *x /= norm);
                let price = (rng.below(9_000) as f64 + 100.0) / 100.0;
                products.push(Product { id: products.len() as i64 + 1, name: format!("{finish} {item}"), category, price, embedding: v });
            }
        }
    }
    products
}

/// Every word the product names are made of, in catalogue order (the demo's artifact).
pub fn vocabulary() -> Vec<&'static str> {
    CATEGORIES.iter().flat_map(|(category, items)| std::iter::once(*category).chain(items.iter().copied())).chain(FINISHES).collect()
}

/// Write the data set under `dir`.
pub fn write_dataset(dir: &Path, products: &[Product]) -> Result<DemoFiles> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);

    // customers.parquet
    let ids: Vec<i64> = (1..=CUSTOMERS).collect();
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
    write_parquet(&customers_path, &customers)?;

    // products.json (newline-delimited)
    let mut text = String::new();
    for p in products {
        text.push_str(&serde_json::json!({"product_id": p.id, "name": p.name, "category": p.category, "price": p.price}).to_string());
        text.push('\n');
    }
    let products_path = dir.join("products.json");
    write_atomically(&products_path, |file| Ok(file.write_all(text.as_bytes())?))?;

    // orders.csv
    let mut orders = String::from("order_id,customer_id,product_id,quantity,ordered_on\n");
    for id in 1..=ORDERS {
        let customer = rng.below(CUSTOMERS as u64) + 1;
        let product = rng.below(products.len() as u64) + 1;
        let quantity = rng.below(5) + 1;
        let day = rng.below(28) + 1;
        let month = rng.below(12) + 1;
        orders.push_str(&format!("{id},{customer},{product},{quantity},2025-{month:02}-{day:02}\n"));
    }
    let orders_path = dir.join("orders.csv");
    write_atomically(&orders_path, |file| Ok(file.write_all(orders.as_bytes())?))?;

    // product_embeddings.parquet: id, payload (category, price), the vector.
    let values = Float32Array::from(products.iter().flat_map(|p| p.embedding.iter().copied()).collect::<Vec<f32>>());
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let vectors = FixedSizeListArray::try_new(item, DIMS as i32, Arc::new(values), None)?;
    let embeddings = batch(vec![
        ("product_id", Arc::new(Int64Array::from(products.iter().map(|p| p.id).collect::<Vec<_>>())) as ArrayRef),
        ("category", Arc::new(StringArray::from(products.iter().map(|p| p.category).collect::<Vec<_>>()))),
        ("price", Arc::new(Float64Array::from(products.iter().map(|p| p.price).collect::<Vec<_>>()))),
        ("embedding", Arc::new(vectors)),
    ])?;
    let embeddings_path = dir.join("product_embeddings.parquet");
    write_parquet(&embeddings_path, &embeddings)?;

    Ok(DemoFiles { customers: customers_path, orders: orders_path, products: products_path, embeddings: embeddings_path })
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch> {
    let schema = Schema::new(
        columns.iter().map(|(n, c)| Field::new(*n, c.data_type().clone(), false)).collect::<Vec<_>>(),
    );
    Ok(RecordBatch::try_new(Arc::new(schema), columns.into_iter().map(|(_, c)| c).collect())?)
}

fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<()> {
    write_atomically(path, |file| {
        let mut writer = ArrowWriter::try_new(file, batch.schema(), None)?;
        writer.write(batch)?;
        writer.close()?;
        Ok(())
    })
}

/// Write to a temporary file and rename, so a concurrent reader never sees half a file.
pub fn write_atomically(path: &Path, write: impl FnOnce(&mut std::fs::File) -> Result<()>) -> Result<()> {
    let tmp = path.with_extension("tmp-write");
    let mut file = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    write(&mut file)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
