//! Model-based property test of topics (proptest, bounded): random sequences of publish
//! (single and batch), replay from an offset, and consumer-group members joining, reading,
//! acknowledging and leaving, checked against a model log. After every step: offsets are
//! the model's (gap-free, unique, from 0), a replay returns exactly the model's suffix, and
//! no event is held by two members or delivered again once acknowledged. At the end, with
//! every member gone, a new member receives exactly the events never acknowledged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jammi_db::datafusion::arrow::array::{AsArray, Int64Array, RecordBatch};
use jammi_db::datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use jammi_db::topic::{StartAt, SubscribeOptions, Subscription, TopicDefinition, TopicSpec};
use jammi_db::{Config, Session};
use proptest::prelude::*;

use crate::support::check_sequences;

#[derive(Debug, Clone)]
enum Op {
    Publish(u8),
    Replay(u8),
    Join(u8),
    Read(u8, bool),
    Leave(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u8..8).prop_map(Op::Publish),
        1 => any::<u8>().prop_map(Op::Replay),
        1 => (0u8..3).prop_map(Op::Join),
        4 => ((0u8..3), any::<bool>()).prop_map(|(m, ack)| Op::Read(m, ack)),
        1 => (0u8..3).prop_map(Op::Leave),
    ]
}

fn column(batch: &RecordBatch, name: &str) -> Vec<i64> {
    batch.column_by_name(name).unwrap().as_primitive::<Int64Type>().values().to_vec()
}

fn group(batch_size: usize) -> SubscribeOptions {
    SubscribeOptions { from: StartAt::Beginning, group: Some("g".into()), ack_timeout: Duration::from_secs(120), batch_size, ..Default::default() }
}

/// Events of `topic` from `from` until `want` of them arrived (20 s at most).
async fn read_until(sub: &mut Subscription, want: usize, ack: bool) -> Result<Vec<(i64, i64)>, String> {
    let mut out = Vec::new();
    while out.len() < want {
        let batch = match tokio::time::timeout(Duration::from_secs(20), sub.next()).await {
            Ok(Some(Ok(b))) => b,
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(None) => return Err("subscription ended".into()),
            Err(_) => return Err(format!("only {} of {want} events arrived", out.len())),
        };
        if ack {
            sub.ack(&batch).await.map_err(|e| e.to_string())?;
        }
        out.extend(column(&batch, "_offset").into_iter().zip(column(&batch, "n")));
    }
    Ok(out)
}

struct Member {
    sub: Subscription,
    /// Delivered to this member and not acknowledged.
    held: BTreeSet<i64>,
}

async fn run_case(session: &Session, topic: &str, ops: &[Op]) -> Result<(), String> {
    let topics = session.topics();
    topics
        .create(TopicDefinition { name: topic.into(), columns: TopicSpec::parse_schema("n:int64").unwrap(), source_table: None, retention: Default::default() })
        .await
        .map_err(|e| e.to_string())?;
    let mut log: Vec<i64> = Vec::new();
    let mut acked: BTreeSet<i64> = BTreeSet::new();
    let mut members: BTreeMap<u8, Member> = BTreeMap::new();
    for (step, op) in ops.iter().enumerate() {
        let context = format!("step {step} {op:?} (ops {ops:?})");
        match op {
            Op::Publish(count) => {
                let values: Vec<i64> = (0..*count as i64).map(|i| (log.len() as i64 + i) * 10).collect();
                let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
                let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.clone()))]).unwrap();
                let published = topics.publish(topic, &batch).await.map_err(|e| format!("{context}: {e}"))?;
                let first = published.first_offset;
                if first != log.len() as i64 || published.count != values.len() as i64 {
                    return Err(format!("{context}: published at {first} ({} events), model expects {}", published.count, log.len()));
                }
                log.extend(values);
            }
            Op::Replay(from) => {
                let from = *from as usize % (log.len() + 1);
                let mut sub = topics.subscribe(topic, SubscribeOptions { from: StartAt::Offset(from as i64), ..Default::default() }).await.map_err(|e| e.to_string())?;
                let got = read_until(&mut sub, log.len() - from, false).await.map_err(|e| format!("{context}: {e}"))?;
                let want: Vec<(i64, i64)> = (from..log.len()).map(|o| (o as i64, log[o])).collect();
                if got != want {
                    return Err(format!("{context}: replay {got:?}, model {want:?}"));
                }
            }
            Op::Join(m) => {
                if !members.contains_key(m) {
                    let sub = topics.subscribe(topic, group(1 + *m as usize * 2)).await.map_err(|e| format!("{context}: {e}"))?;
                    members.insert(*m, Member { sub, held: BTreeSet::new() });
                }
            }
            Op::Read(m, ack) => {
                let Some(member) = members.get_mut(m) else { continue };
                // Whatever is there within a moment (nothing is fine).
                let Ok(Some(batch)) = tokio::time::timeout(Duration::from_millis(150), member.sub.next()).await else { continue };
                let batch = batch.map_err(|e| format!("{context}: {e}"))?;
                for (offset, n) in column(&batch, "_offset").into_iter().zip(column(&batch, "n")) {
                    if log.get(offset as usize) != Some(&n) {
                        return Err(format!("{context}: delivered ({offset}, {n}), not in the log"));
                    }
                    if acked.contains(&offset) {
                        return Err(format!("{context}: offset {offset} delivered again after it was acknowledged"));
                    }
                    if let Some((other, _)) = members.iter().find(|(o, mem)| *o != m && mem.held.contains(&offset)) {
                        return Err(format!("{context}: offset {offset} delivered while member {other} holds it"));
                    }
                    let member = members.get_mut(m).unwrap();
                    if *ack {
                        acked.insert(offset);
                    } else {
                        member.held.insert(offset);
                    }
                }
                if *ack {
                    members[m].sub.ack(&batch).await.map_err(|e| format!("{context}: ack: {e}"))?;
                }
            }
            Op::Leave(m) => {
                if let Some(member) = members.remove(m) {
                    member.sub.leave().await;
                }
            }
        }
    }
    for (_, member) in std::mem::take(&mut members) {
        member.sub.leave().await;
    }
    // Every event never acknowledged goes to the next member, once, in order.
    let rest: Vec<i64> = (0..log.len() as i64).filter(|o| !acked.contains(o)).collect();
    let mut last = topics.subscribe(topic, group(50)).await.map_err(|e| e.to_string())?;
    let got = read_until(&mut last, rest.len(), true).await.map_err(|e| format!("the last member: {e} (ops {ops:?})"))?;
    let offsets: Vec<i64> = got.iter().map(|g| g.0).collect();
    if offsets != rest {
        return Err(format!("the last member got {offsets:?}, model {rest:?} (ops {ops:?})"));
    }
    last.leave().await;
    topics.drop(topic).await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_match_the_model_log() {
    let dir = tempfile::tempdir().unwrap();
    let session = Session::open(Config::embedded(dir.path().join("home"))).await.unwrap();
    // More cases for a long run: JAMMI_MODEL_CASES=500 bash scripts/test.sh cargo test -p jammi-db --test it model
    check_sequences(prop::collection::vec(op(), 1..20), 12, 3, |ops, attempt| {
        let session = &session;
        async move { run_case(session, &format!("t{attempt}"), &ops).await }
    })
    .await;
}
