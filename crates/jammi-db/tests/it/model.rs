//! Model-based property tests of mutable tables (proptest, bounded): random sequences of
//! INSERT, UPSERT, UPDATE, DELETE, BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE and ROLLBACK
//! TO — failing statements included —
//! run against the engine and against an in-memory model of the table; after every step the
//! affected-row count, the error-or-not and the table as the session sees it must match the
//! model. Runs on the SQLite catalog and on a real PostgreSQL catalog.

use std::collections::BTreeMap;

use jammi_db::{Config, Session};
use proptest::prelude::*;

use crate::support::*;

#[derive(Debug, Clone)]
enum Op {
    Insert(i64, i64),
    Upsert(i64, i64),
    Update(i64, i64),
    AddToAll(i64),
    Delete(i64),
    DeleteBelow(i64),
    Begin,
    Commit,
    Rollback,
    Savepoint(u8),
    Release(u8),
    RollbackTo(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0i64..8;
    let value = -50i64..50;
    prop_oneof![
        3 => (key.clone(), value.clone()).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => (key.clone(), value.clone()).prop_map(|(k, v)| Op::Upsert(k, v)),
        2 => (key.clone(), value.clone()).prop_map(|(k, v)| Op::Update(k, v)),
        1 => (-5i64..5).prop_map(Op::AddToAll),
        2 => key.prop_map(Op::Delete),
        1 => value.prop_map(Op::DeleteBelow),
        1 => Just(Op::Begin),
        1 => Just(Op::Commit),
        1 => Just(Op::Rollback),
        1 => (0u8..3).prop_map(Op::Savepoint),
        1 => (0u8..3).prop_map(Op::Release),
        1 => (0u8..3).prop_map(Op::RollbackTo),
    ]
}

/// The table as committed, as the open transaction sees it, and the transaction's
/// savepoints (name, the table when it was made), oldest first.
#[derive(Debug, Default)]
struct Model {
    committed: BTreeMap<i64, i64>,
    txn: Option<BTreeMap<i64, i64>>,
    savepoints: Vec<(u8, BTreeMap<i64, i64>)>,
}

impl Model {
    fn visible(&mut self) -> &mut BTreeMap<i64, i64> {
        match &mut self.txn {
            Some(t) => t,
            None => &mut self.committed,
        }
    }

    /// Apply `op`; `Ok(count)` for DML (rows affected), `Ok(0)` for control, `Err(())` when
    /// the engine must refuse it (and change nothing).
    fn apply(&mut self, op: &Op) -> Result<u64, ()> {
        match *op {
            Op::Insert(k, v) => {
                let rows = self.visible();
                if rows.contains_key(&k) {
                    return Err(());
                }
                rows.insert(k, v);
                Ok(1)
            }
            Op::Upsert(k, v) => {
                self.visible().insert(k, v);
                Ok(1)
            }
            Op::Update(k, v) => Ok(self.visible().get_mut(&k).map(|slot| *slot = v).map_or(0, |_| 1)),
            Op::AddToAll(d) => {
                let rows = self.visible();
                rows.values_mut().for_each(|v| *v += d);
                Ok(rows.len() as u64)
            }
            Op::Delete(k) => Ok(self.visible().remove(&k).map_or(0, |_| 1)),
            Op::DeleteBelow(x) => {
                let rows = self.visible();
                let before = rows.len();
                rows.retain(|_, v| *v >= x);
                Ok((before - rows.len()) as u64)
            }
            Op::Begin if self.txn.is_some() => Err(()),
            Op::Begin => {
                self.txn = Some(self.committed.clone());
                Ok(0)
            }
            Op::Commit | Op::Rollback if self.txn.is_none() => Err(()),
            Op::Commit => {
                self.committed = self.txn.take().unwrap_or_default();
                self.savepoints.clear();
                Ok(0)
            }
            Op::Rollback => {
                self.txn = None;
                self.savepoints.clear();
                Ok(0)
            }
            Op::Savepoint(_) | Op::Release(_) | Op::RollbackTo(_) if self.txn.is_none() => Err(()),
            Op::Savepoint(n) => {
                let now = self.visible().clone();
                self.savepoints.push((n, now));
                Ok(0)
            }
            Op::Release(n) | Op::RollbackTo(n) => {
                let at = self.savepoints.iter().rposition(|(name, _)| *name == n).ok_or(())?;
                if let Op::RollbackTo(_) = op {
                    self.txn = Some(self.savepoints[at].1.clone());
                    self.savepoints.truncate(at + 1);
                } else {
                    self.savepoints.truncate(at);
                }
                Ok(0)
            }
        }
    }
}

fn sql(op: &Op) -> String {
    let t = "mutable.public.kv";
    match *op {
        Op::Insert(k, v) => format!("INSERT INTO {t} VALUES ({k}, {v})"),
        Op::Upsert(k, v) => format!("INSERT INTO {t} VALUES ({k}, {v}) ON CONFLICT (k) DO UPDATE SET v = excluded.v"),
        Op::Update(k, v) => format!("UPDATE {t} SET v = {v} WHERE k = {k}"),
        Op::AddToAll(d) => format!("UPDATE {t} SET v = v + {d}"),
        Op::Delete(k) => format!("DELETE FROM {t} WHERE k = {k}"),
        Op::DeleteBelow(x) => format!("DELETE FROM {t} WHERE v < {x}"),
        Op::Begin => "BEGIN".into(),
        Op::Commit => "COMMIT".into(),
        Op::Rollback => "ROLLBACK".into(),
        Op::Savepoint(n) => format!("SAVEPOINT s{n}"),
        Op::Release(n) => format!("RELEASE SAVEPOINT s{n}"),
        Op::RollbackTo(n) => format!("ROLLBACK TO SAVEPOINT s{n}"),
    }
}

async fn run_case(session: &Session, ops: &[Op]) -> Result<(), String> {
    let handle = session.with_tenant(None);
    handle.sql("DELETE FROM mutable.public.kv").await.map_err(|e| e.to_string())?.collect().await.map_err(|e| e.to_string())?;
    let mut model = Model::default();
    for (step, op) in ops.iter().enumerate() {
        let expected = model.apply(op);
        let got: Result<u64, String> = match handle.sql(&sql(op)).await {
            Ok(frame) => frame.collect().await.map_err(|e| e.to_string()).map(|batches| {
                let rows = render(&batches);
                rows.first().and_then(|r| r.first()).and_then(|c| c.parse::<u64>().ok()).unwrap_or(0)
            }),
            Err(e) => Err(e.to_string()),
        };
        match (&expected, &got) {
            (Ok(n), Ok(m)) if n == m => {}
            (Err(()), Err(_)) => {}
            _ => return Err(format!("step {step} {op:?}: model {expected:?}, engine {got:?} (ops {ops:?})")),
        }
        let seen: Vec<Vec<String>> = rows(&handle, "SELECT k, v FROM mutable.public.kv ORDER BY k").await;
        let want: Vec<Vec<String>> = model.visible().iter().map(|(k, v)| vec![k.to_string(), v.to_string()]).collect();
        if seen != want {
            return Err(format!("after step {step} {op:?}: engine {seen:?}, model {want:?} (ops {ops:?})"));
        }
    }
    if model.txn.is_some() {
        handle.sql("ROLLBACK").await.map_err(|e| e.to_string())?.collect().await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn model_suite(pg: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded(dir.path().join("home"));
    if pg {
        config.catalog.url = Some(fresh_pg_database().await);
    }
    let session = Session::open(config).await.unwrap();
    session.sql("CREATE TABLE mutable.public.kv (k BIGINT PRIMARY KEY, v BIGINT NOT NULL)").await.unwrap().collect().await.unwrap();
    // More cases for a long run: JAMMI_MODEL_CASES=2000 bash scripts/test.sh cargo test -p jammi-db --test it model
    let strategy = prop::collection::vec(op(), 1..30);
    check_sequences(strategy, 24, 1, |ops, _| {
        let session = &session;
        async move { run_case(session, &ops).await }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutable_tables_match_the_model_on_sqlite() {
    model_suite(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutable_tables_match_the_model_on_postgres() {
    model_suite(true).await;
}
