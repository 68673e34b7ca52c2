//! Pre-filtering: a SQL predicate over the payload becomes the set of allowed index keys,
//! evaluated by DataFusion before the search starts.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::Expr;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use super::loaded::LoadedTable;
use crate::error::{Error, Result};

/// Hidden column carrying each row's index key through the filter.
const KEY_COLUMN: &str = "_key";


/// The keys a filter allows: one bit per key, with the count taken once, so a search asks
/// "is key k allowed?" in one load and walks only the allowed keys when it scans.
#[derive(Debug, Clone)]
pub struct KeySet {
    words: Vec<u64>,
    len: usize,
}

impl KeySet {
    /// The set of `keys` within a space of `key_space` keys (keys beyond it are ignored).
    pub fn from_keys(key_space: usize, keys: impl IntoIterator<Item = u64>) -> KeySet {
        let mut words = vec![0u64; key_space.div_ceil(64)];
        for key in keys {
            if (key as usize) < key_space {
                words[key as usize / 64] |= 1 << (key % 64);
            }
        }
        let len = words.iter().map(|w| w.count_ones() as usize).sum();
        KeySet { words, len }
    }

    /// Whether `key` is in the set.
    #[inline]
    pub fn contains(&self, key: u64) -> bool {
        self.words.get((key / 64) as usize).is_some_and(|w| w & (1 << (key % 64)) != 0)
    }

    /// Number of keys in the set.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The keys in `from..to`, ascending.
    pub fn keys_in(&self, from: u64, to: u64) -> impl Iterator<Item = u64> + '_ {
        let first = (from / 64) as usize;
        let last = (to.div_ceil(64) as usize).min(self.words.len());
        self.words[first.min(last)..last].iter().enumerate().flat_map(move |(i, &word)| {
            let base = (first + i) as u64 * 64;
            let mut bits = word;
            std::iter::from_fn(move || {
                (bits != 0).then(|| {
                    let bit = bits.trailing_zeros() as u64;
                    bits &= bits - 1;
                    base + bit
                })
            })
        })
        .filter(move |k| (from..to).contains(k))
    }

    /// Bytes held.
    fn bytes(&self) -> usize {
        self.words.len() * 8
    }
}

/// The keys `predicate` allows (deleted rows never are). Results are cached per table
/// generation, least recently used evicted first, so a repeated filter costs one lookup.
pub async fn allowed_keys(table: &LoadedTable, predicate: &str) -> Result<Arc<KeySet>> {
    if let Some(hit) = table.filter_cache.lock().get(predicate) {
        return Ok(hit);
    }
    let keys = evaluate(table, predicate, |ctx, schema| ctx.parse_sql_expr(predicate, schema)).await?;
    let allowed = Arc::new(KeySet::from_keys(table.key_space(), keys));
    table.filter_cache.lock().insert(predicate, Arc::clone(&allowed));
    Ok(allowed)
}

/// The most filters one table generation keeps, whatever their size: eviction looks at
/// every entry, so a small table's tiny bitmaps must not make that list long.
const MAX_CACHED_FILTERS: usize = 256;

/// Evaluated filters of one table generation: predicate text → allowed keys, within the
/// share of the memory budget the table was charged for (see `filter_cache_limit`).
#[derive(Debug)]
pub(crate) struct FilterCache {
    limit: usize,
    used: usize,
    tick: u64,
    entries: HashMap<String, (Arc<KeySet>, u64)>,
}

impl FilterCache {
    pub(crate) fn new(limit: usize) -> FilterCache {
        FilterCache { limit, used: 0, tick: 0, entries: HashMap::new() }
    }

    fn get(&mut self, predicate: &str) -> Option<Arc<KeySet>> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(predicate).map(|(set, used)| {
            *used = tick;
            Arc::clone(set)
        })
    }

    fn insert(&mut self, predicate: &str, set: Arc<KeySet>) {
        let cost = predicate.len() + set.bytes();
        if cost > self.limit || self.entries.contains_key(predicate) {
            return;
        }
        while self.used + cost > self.limit || self.entries.len() >= MAX_CACHED_FILTERS {
            let Some(oldest) = self.entries.iter().min_by_key(|(_, (_, used))| *used).map(|(p, _)| p.clone()) else { break };
            if let Some((old, _)) = self.entries.remove(&oldest) {
                self.used -= oldest.len() + old.bytes();
            }
        }
        self.tick += 1;
        self.used += cost;
        self.entries.insert(predicate.to_string(), (set, self.tick));
    }
}

/// Keys of the live rows matching `expr` (columns may be qualified; qualifiers are dropped).
pub async fn matching_keys(table: &LoadedTable, expr: Expr) -> Result<Vec<u64>> {
    let text = expr.to_string();
    let unqualified = expr
        .transform(|e| {
            Ok(match e {
                Expr::Column(c) => Transformed::yes(Expr::Column(Column::new_unqualified(c.name))),
                other => Transformed::no(other),
            })
        })
        .map(|t| t.data)
        .map_err(Error::internal)?;
    evaluate(table, &text, move |_, _| Ok(unqualified)).await
}

/// Evaluate a predicate over the id and payload columns; returns the live matching keys.
async fn evaluate(
    table: &LoadedTable,
    text: &str,
    build: impl FnOnce(&SessionContext, &DFSchema) -> datafusion::error::Result<Expr>,
) -> Result<Vec<u64>> {
    let invalid =
        |e: &dyn std::fmt::Display| Error::invalid("filter", format!("invalid vector filter '{text}': {}", crate::error::one_line(&e.to_string())));
    let row_schema = table.row_schema();
    let mut fields: Vec<Arc<Field>> = row_schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(KEY_COLUMN, DataType::UInt64, false)));
    let schema = Arc::new(Schema::new(fields));
    let mut batches = Vec::with_capacity(table.segments.len());
    for seg in &table.segments {
        let keys: ArrayRef = Arc::new(UInt64Array::from_iter_values(
            (0..seg.rows.num_rows() as u64).map(|r| seg.meta.base_key + r),
        ));
        let mut columns = seg.rows.columns().to_vec();
        columns.push(keys);
        batches.push(RecordBatch::try_new(Arc::clone(&schema), columns).map_err(|e| invalid(&e))?);
    }
    let ctx = SessionContext::new();
    let mem = MemTable::try_new(Arc::clone(&schema), vec![batches]).map_err(|e| invalid(&e))?;
    let df_schema = DFSchema::try_from(schema.as_ref().clone()).map_err(|e| invalid(&e))?;
    let expr = build(&ctx, &df_schema).map_err(|e| invalid(&e))?;
    let frame = ctx
        .read_table(Arc::new(mem))
        .and_then(|f| f.filter(expr))
        .and_then(|f| f.select_columns(&[KEY_COLUMN]))
        .map_err(|e| invalid(&e))?;
    let result = frame.collect().await.map_err(|e| invalid(&e))?;
    let mut keys = Vec::new();
    for batch in result {
        let column = batch.column(0).as_any().downcast_ref::<UInt64Array>().ok_or_else(|| invalid(&"key column"))?;
        keys.extend(column.values().iter().copied().filter(|k| !table.deleted[*k as usize]));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_set_holds_exactly_its_keys_and_walks_them_in_order_within_a_range() {
        let keys = [0u64, 1, 63, 64, 65, 127, 128, 199];
        let set = KeySet::from_keys(200, keys.iter().copied().chain([500]));
        assert_eq!(set.len(), keys.len(), "a key outside the key space is not counted");
        for k in 0..300 {
            assert_eq!(set.contains(k), keys.contains(&k), "key {k}");
        }
        assert_eq!(set.keys_in(0, 200).collect::<Vec<_>>(), keys);
        assert_eq!(set.keys_in(64, 128).collect::<Vec<_>>(), [64, 65, 127]);
        assert_eq!(set.keys_in(2, 63).count(), 0);
        assert_eq!(set.keys_in(199, 1000).collect::<Vec<_>>(), [199]);
        assert!(KeySet::from_keys(10, []).is_empty());
    }

    #[test]
    fn the_filter_cache_evicts_the_least_recently_used_within_its_limit() {
        let set = || Arc::new(KeySet::from_keys(64 * 8, [1])); // 64 bytes of bitmap
        let mut cache = FilterCache::new(3 * (64 + 1));
        for p in ["a", "b", "c"] {
            cache.insert(p, set());
        }
        assert!(cache.get("a").is_some()); // "b" is now the least recently used
        cache.insert("d", set());
        assert!(cache.get("b").is_none(), "the least recently used filter was evicted");
        for p in ["a", "c", "d"] {
            assert!(cache.get(p).is_some(), "{p} stays");
        }
        assert!(cache.used <= cache.limit);
        cache.insert("too big", Arc::new(KeySet::from_keys(64 * 64, [1])));
        assert!(cache.get("too big").is_none(), "a bitmap over the whole limit is not kept");
        assert_eq!(cache.entries.len(), 3, "and evicts nothing");

        let mut small = FilterCache::new(1 << 20);
        for i in 0..MAX_CACHED_FILTERS + 50 {
            small.insert(&format!("id = {i}"), Arc::new(KeySet::from_keys(8, [1])));
        }
        assert_eq!(small.entries.len(), MAX_CACHED_FILTERS, "tiny bitmaps are bounded in number too");
        assert!(small.get(&format!("id = {}", MAX_CACHED_FILTERS + 49)).is_some() && small.get("id = 0").is_none());
    }
}
