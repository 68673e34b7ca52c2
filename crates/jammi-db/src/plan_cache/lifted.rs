//! Searches known by their text: a stream of searches written as SQL text differs only in
//! the query vectors, so once one has run, the next with the same text around its vectors
//! runs without being parsed.
//!
//! [`crate::vector_literals::lift`] takes the long vector literals out of a statement's
//! text, leaving a short text with `$1`, `$2`, … in their places. After a search statement
//! has run on its shape's shared plan, its short text is remembered (per tenant scope and
//! access) with where each of the shape's parameters comes from: a lifted literal, or a
//! constant of the short text (k, a filter, ef). The next statement whose short text is
//! the same *is* the same statement but for those literals, so it binds them into the
//! shared plan directly — no tokenizer, parser, policy check or shape. What is not skipped
//! is the catalog check: the entry is good only for the catalog generation it was made at.
//!
//! The lifted literals are vector text (digits, signs, dots, brackets, commas), so no
//! policy decision can depend on them; the search checks each bound value itself, with the
//! same messages as a literal.

use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;

use super::{search_shape_of, SharedPlan};
use crate::error::Result;
use crate::session::Session;
use crate::statement::SqlStatement;
use crate::vector_literals::{lift, Lifted};

/// The longest short text remembered. Searches are short once their vectors are lifted; a
/// longer text (a filter written out at length) is parsed each time, so that the cache
/// (512 entries) holds a few MiB at most whatever callers send.
const MAX_KNOWN_TEXT: usize = 4096;

/// A search statement by its short text: its shared plan, and each parameter's source.
pub(crate) struct KnownSearch {
    shared: Arc<SharedPlan>,
    arguments: Vec<Argument>,
}

/// Where a shape parameter's value comes from.
enum Argument {
    /// The n-th lifted literal (0-based), as a string.
    Lifted(usize),
    /// A constant written in the short text.
    Constant(ScalarValue),
}

/// Run `sql` as the search it was last time, when its short text is known in this scope
/// and still current; `None` when it must be parsed and run as usual.
pub(crate) async fn run_search_text(session: &Session, sql: &str) -> Result<Option<DataFrame>> {
    if session.open_transaction().is_some() || session.is_ephemeral() {
        return Ok(None);
    }
    let Some(Lifted { text, literals }) = lift(sql) else { return Ok(None) };
    let key = (session.scope(), session.access(), text);
    let generation = session.catalog_generation();
    let Some(known) = session.plan_cache().searches.get(&key, generation) else { return Ok(None) };
    // Another process may have changed the catalog since this process last looked.
    session.sync_catalog().await?;
    if session.catalog_generation() != generation {
        return Ok(None);
    }
    let mut literals: Vec<Option<String>> = literals.into_iter().map(Some).collect();
    let mut values = Vec::with_capacity(known.arguments.len());
    for argument in &known.arguments {
        values.push(match argument {
            Argument::Lifted(n) => match literals.get_mut(*n).and_then(Option::take) {
                Some(literal) => ScalarValue::Utf8(Some(literal)),
                None => return Ok(None),
            },
            Argument::Constant(value) => value.clone(),
        });
    }
    known.shared.frame(values)
}

/// Remember `statement`, just run from the text `sql`, when it was a search that ran on a
/// shared plan, so the next statement of the same short text skips parsing.
pub(crate) fn learn_search_text(session: &Session, sql: &str, statement: &SqlStatement) {
    if session.open_transaction().is_some() || session.is_ephemeral() {
        return;
    }
    let Some(Lifted { text, literals }) = lift(sql) else { return };
    if text.len() > MAX_KNOWN_TEXT {
        return;
    }
    let Some(shape) = search_shape_of(statement) else { return };
    let (scope, generation) = (session.scope(), session.catalog_generation());
    let cache = session.plan_cache();
    let Some(Some(shared)) = cache.shapes.get(&(scope, shape.text), generation) else { return };
    let Some(arguments) = arguments_of(shape.values, &literals) else { return };
    cache.searches.insert((scope, session.access(), text), generation, Arc::new(KnownSearch { shared, arguments }));
}

/// Which of a search shape's values are the lifted literals (in order, each exactly once)
/// and which are constants of the short text; `None` when a literal is not among them.
fn arguments_of(values: Vec<ScalarValue>, literals: &[String]) -> Option<Vec<Argument>> {
    let mut next = 0;
    let arguments = values
        .into_iter()
        .map(|value| match &value {
            ScalarValue::Utf8(Some(text)) if literals.get(next) == Some(text) => {
                next += 1;
                Argument::Lifted(next - 1)
            }
            _ => Argument::Constant(value),
        })
        .collect();
    (next == literals.len()).then_some(arguments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifted_literals_are_found_in_order_and_every_one_is_needed() {
        let vector = |v: &str| ScalarValue::Utf8(Some(v.to_string()));
        let literals = ["[1,2]".to_string(), "[3,4]".to_string()];
        let values = vec![vector("[1,2]"), ScalarValue::Int64(Some(10)), vector("[3,4]"), ScalarValue::Null];
        let arguments = arguments_of(values, &literals).unwrap();
        assert!(matches!(arguments[..], [Argument::Lifted(0), Argument::Constant(ScalarValue::Int64(Some(10))), Argument::Lifted(1), Argument::Constant(ScalarValue::Null)]));
        // A literal that is not a search argument (it stays in the shape's text) is not known.
        assert!(arguments_of(vec![vector("[1,2]"), ScalarValue::Int64(Some(10))], &literals).is_none());
        // A constant equal to a literal out of order is a constant.
        let arguments = arguments_of(vec![vector("[3,4]"), vector("[1,2]"), vector("[3,4]")], &literals).unwrap();
        assert!(matches!(arguments[..], [Argument::Constant(_), Argument::Lifted(0), Argument::Lifted(1)]));
    }

    mod in_a_session {
        use std::path::Path;
        use std::sync::Arc;

        use datafusion::arrow::array::{ArrayRef, FixedSizeListArray, Float32Array, Int64Array, RecordBatch};
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        use datafusion::parquet::arrow::ArrowWriter;

        use crate::config::Config;
        use crate::plan_cache::run_search_text;
        use crate::session::Session;
        use crate::tenant::TenantId;
        use crate::vector::{ImportSpec, NoProgress};

        const DIMS: usize = 48;

        /// Row `i`'s vector: far from every other row's.
        fn vector(i: usize) -> Vec<f32> {
            (0..DIMS).map(|d| ((i * 7 + d * 13) % 29) as f32 / 29.0 + if d == i % DIMS { 3.0 + (i / DIMS) as f32 } else { 0.0 }).collect()
        }

        fn write(path: &Path, ids: std::ops::Range<usize>) {
            let values = Float32Array::from(ids.clone().flat_map(vector).collect::<Vec<_>>());
            let item = Arc::new(Field::new("item", DataType::Float32, true));
            let embedding: ArrayRef = Arc::new(FixedSizeListArray::try_new(item, DIMS as i32, Arc::new(values), None).unwrap());
            let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("embedding", embedding.data_type().clone(), false)]));
            let id: ArrayRef = Arc::new(Int64Array::from(ids.map(|i| i as i64).collect::<Vec<_>>()));
            let batch = RecordBatch::try_new(Arc::clone(&schema), vec![id, embedding]).unwrap();
            let mut writer = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
            writer.write(&batch).unwrap();
            writer.close().unwrap();
        }

        fn text(i: usize, k: usize) -> String {
            let numbers: Vec<String> = vector(i).iter().map(|x| x.to_string()).collect();
            format!("SELECT id FROM vector_search('t', '[{}]', {k}, NULL, 64)", numbers.join(", "))
        }

        async fn ids(frame: datafusion::dataframe::DataFrame) -> Vec<i64> {
            let batches = frame.collect().await.unwrap();
            batches.iter().flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec()).collect()
        }

        /// The short text of a search that ran is known in its scope and access, at its
        /// catalog generation, and outside transactions; a known text runs with the new
        /// vector and the short text's own k.
        #[tokio::test]
        async fn a_search_run_once_is_known_by_its_text_in_its_scope_and_generation() {
            let dir = tempfile::tempdir().unwrap();
            let session = Session::open(Config::embedded(dir.path().join("home"))).await.unwrap();
            let file = dir.path().join("t.parquet");
            write(&file, 0..100);
            session.vectors().import(ImportSpec::new("t", file.display().to_string(), "id", "embedding"), &NoProgress).await.unwrap();
            assert!(text(1, 3).len() > 300, "the vector is long enough to be lifted");

            assert!(run_search_text(&session, &text(1, 3)).await.unwrap().is_none(), "nothing known yet");
            assert_eq!(ids(session.sql(&text(1, 3)).await.unwrap()).await[0], 1);
            for i in [2, 40, 99] {
                let frame = run_search_text(&session, &text(i, 3)).await.unwrap().expect("known by its short text");
                let got = ids(frame).await;
                assert_eq!(got.len(), 3);
                assert_eq!(got[0], i as i64, "the new vector is searched");
            }
            assert!(run_search_text(&session, &text(2, 4)).await.unwrap().is_none(), "another k is another text");
            // A short text longer than the bound (a long filter) is never remembered.
            let long_filter = |i: usize| text(i, 3).replace("NULL", &format!("'id >= 0{}'", " AND id >= 0".repeat(400)));
            assert_eq!(ids(session.sql(&long_filter(1)).await.unwrap()).await[0], 1);
            assert!(run_search_text(&session, &long_filter(2)).await.unwrap().is_none(), "not remembered");

            // Another tenant, a restricted handle, a transaction: not known there.
            let tenant: TenantId = "0b7e8a52-1c59-4a39-8d7e-6a1b2c3d4e5f".parse().unwrap();
            assert!(run_search_text(&session.with_tenant(Some(tenant)), &text(2, 3)).await.unwrap().is_none());
            assert!(run_search_text(&session.clone().restricted(), &text(2, 3)).await.unwrap().is_none());
            let txn = session.clone();
            txn.sql("BEGIN").await.unwrap().collect().await.unwrap();
            assert!(run_search_text(&txn, &text(2, 3)).await.unwrap().is_none());
            txn.sql("ROLLBACK").await.unwrap().collect().await.unwrap();

            // A catalog change (rows appended) makes it unknown until it runs again, and
            // the next run sees the new rows.
            let more = dir.path().join("more.parquet");
            write(&more, 100..150);
            session.vectors().append("t", &more.display().to_string(), "id", "embedding", &Default::default(), &NoProgress).await.unwrap();
            assert!(run_search_text(&session, &text(120, 3)).await.unwrap().is_none(), "made at an older generation");
            assert_eq!(ids(session.sql(&text(120, 3)).await.unwrap()).await[0], 120);
            let frame = run_search_text(&session, &text(130, 3)).await.unwrap().expect("known again");
            assert_eq!(ids(frame).await[0], 130);
        }
    }
}
