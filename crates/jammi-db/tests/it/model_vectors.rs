//! Model-based property test of vector tables (proptest, bounded): random sequences of
//! append (new ids, and refused duplicate ids), delete (known and unknown ids) and compaction,
//! checked after every step against a brute-force model: the row count, and exact search,
//! which must return the model's top-k with its true distances. The table is then reopened
//! from disk and checked again.

use std::collections::BTreeMap;

use jammi_db::vector::{ImportSpec, Metric, NoProgress, SearchRequest};
use jammi_db::storage::StorageOptions;
use jammi_db::{Config, Session};
use proptest::prelude::*;

use crate::support::*;
use crate::vectors::{brute_force, hits, write_rows, Rng, Row};

const DIMS: usize = 8;

#[derive(Debug, Clone)]
enum Op {
    /// Append this many rows with new ids.
    Append(u8),
    /// Append one row whose id the table already has (refused, nothing changes).
    AppendExisting(u8),
    /// Delete the rows at these positions of the model (plus one unknown id).
    Delete(Vec<u8>),
    Compact,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u8..12).prop_map(Op::Append),
        1 => any::<u8>().prop_map(Op::AppendExisting),
        3 => prop::collection::vec(any::<u8>(), 1..6).prop_map(Op::Delete),
        1 => Just(Op::Compact),
    ]
}

fn row(id: i64, rng: &mut Rng) -> Row {
    Row { id, category: format!("c{}", id % 3), score: id, vector: (0..DIMS).map(|_| rng.next_f32()).collect() }
}

/// Exact search equals the model for two queries; the row count matches.
async fn check(session: &Session, table: &str, model: &BTreeMap<i64, Row>, context: &str) -> Result<(), String> {
    let count = scalar(session, &format!("SELECT count(*) FROM vectors.public.{table}")).await;
    if count != model.len().to_string() {
        return Err(format!("{context}: engine has {count} rows, model {}", model.len()));
    }
    let rows: Vec<Row> = model.values().cloned().collect();
    let mut rng = Rng::new(7);
    for _ in 0..2 {
        let q: Vec<f32> = (0..DIMS).map(|_| rng.next_f32()).collect();
        let truth = brute_force(&rows, Metric::L2, &q, 5, &|_| true);
        let mut request = SearchRequest::new(q, 5);
        request.exact = true;
        let result = session.vectors().search(table, &request).await.map_err(|e| format!("{context}: search: {e}"))?;
        let got = hits(&result.batch);
        if got.len() != truth.len() {
            return Err(format!("{context}: {} hits, model {}", got.len(), truth.len()));
        }
        for ((id, d), (_, want)) in got.iter().zip(&truth) {
            // Same distances in the same order (ids may swap only on exact ties), and every id
            // is a live row at its true distance.
            let live = model.get(id).ok_or_else(|| format!("{context}: search returned id {id}, which the model does not have"))?;
            let true_d = crate::vectors::true_distance(Metric::L2, &request.vector, &live.vector);
            if (*d as f64 - want).abs() > 1e-4 || (*d as f64 - true_d).abs() > 1e-4 {
                return Err(format!("{context}: got {got:?}, model {truth:?}"));
            }
        }
    }
    Ok(())
}

async fn run_case(session: &Session, dir: &std::path::Path, table: &str, ops: &[Op]) -> Result<(), String> {
    let mut rng = Rng::new(table.len() as u64 + ops.len() as u64);
    let mut model: BTreeMap<i64, Row> = (1..=20).map(|id| (id, row(id, &mut rng))).collect();
    let first = dir.join(format!("{table}-0.parquet"));
    write_rows(&first, &model.values().cloned().collect::<Vec<_>>(), true);
    let mut spec = ImportSpec::new(table, first.display().to_string(), "id", "embedding");
    spec.metric = Metric::L2;
    session.vectors().import(spec, &NoProgress).await.map_err(|e| format!("import: {e}"))?;
    let mut next_id = 21;
    for (step, op) in ops.iter().enumerate() {
        let context = format!("step {step} {op:?} (ops {ops:?})");
        match op {
            Op::Append(n) => {
                let rows: Vec<Row> = (0..*n as i64).map(|i| row(next_id + i, &mut rng)).collect();
                next_id += *n as i64;
                let file = dir.join(format!("{table}-{step}.parquet"));
                write_rows(&file, &rows, true);
                let added = session
                    .vectors()
                    .append(table, &file.display().to_string(), "id", "embedding", &StorageOptions::new(), &NoProgress)
                    .await
                    .map_err(|e| format!("{context}: {e}"))?;
                if added != rows.len() as u64 {
                    return Err(format!("{context}: appended {added}"));
                }
                model.extend(rows.into_iter().map(|r| (r.id, r)));
            }
            Op::AppendExisting(pick) => {
                let Some(existing) = model.keys().nth(*pick as usize % model.len().max(1)).copied() else { continue };
                let file = dir.join(format!("{table}-{step}.parquet"));
                write_rows(&file, &[row(existing, &mut rng)], true);
                let result = session.vectors().append(table, &file.display().to_string(), "id", "embedding", &StorageOptions::new(), &NoProgress).await;
                if result.is_ok() {
                    return Err(format!("{context}: appending existing id {existing} was accepted"));
                }
            }
            Op::Delete(picks) => {
                let keys: Vec<i64> = model.keys().copied().collect();
                let mut ids: Vec<i64> = picks.iter().filter(|_| !keys.is_empty()).map(|p| keys[*p as usize % keys.len()]).collect();
                ids.push(1_000_000 + step as i64);
                ids.sort();
                ids.dedup();
                let expected = ids.iter().filter(|id| model.contains_key(id)).count() as u64;
                let text: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
                let deleted = session.vectors().delete_ids(table, &text).await.map_err(|e| format!("{context}: {e}"))?;
                if deleted != expected {
                    return Err(format!("{context}: deleted {deleted}, model {expected}"));
                }
                ids.iter().for_each(|id| {
                    model.remove(id);
                });
            }
            Op::Compact => session.vectors().compact(table, &NoProgress).await.map_err(|e| format!("{context}: {e}"))?,
        }
        check(session, table, &model, &context).await?;
    }
    // What is on disk says the same to a fresh engine.
    let reopened = Session::open(session.config().clone()).await.map_err(|e| format!("reopen: {e}"))?;
    check(&reopened, table, &model, &format!("after reopening (ops {ops:?})")).await?;
    session.vectors().drop(table).await.map_err(|e| format!("drop: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_tables_match_a_brute_force_model() {
    let dir = tempfile::tempdir().unwrap();
    let session = Session::open(Config::embedded(dir.path().join("home"))).await.unwrap();
    // More cases for a long run: JAMMI_MODEL_CASES=500 bash scripts/test.sh cargo test -p jammi-db --test it model
    check_sequences(prop::collection::vec(op(), 1..14), 16, 3, |ops, attempt| {
        let (session, dir) = (&session, dir.path());
        async move { run_case(session, dir, &format!("m{attempt}"), &ops).await }
    })
    .await;
}
