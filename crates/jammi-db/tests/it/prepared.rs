//! Prepared statements: parameters in `vector_search` and in ordinary queries, fresh data
//! after appends and catalog changes, statements (DML), tenancy and clear errors.

use std::sync::Arc;

use jammi_db::datafusion::arrow::array::{ListArray, RecordBatch};
use jammi_db::datafusion::arrow::datatypes::Float32Type;
use jammi_db::datafusion::common::ScalarValue;
use jammi_db::vector::{Metric, NoProgress, Precision};
use jammi_db::{Session, TenantId};

use crate::support::*;
use crate::vectors::{brute_force, clustered, hits, import, rows_from, write_rows};

fn vector_param(v: &[f32]) -> ScalarValue {
    ScalarValue::List(Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>([Some(v.iter().map(|x| Some(*x)))])))
}

fn all_hits(batches: &[RecordBatch]) -> Vec<(i64, f32)> {
    batches.iter().flat_map(hits).collect()
}

async fn prepare_error(session: &Session, sql: &str) -> String {
    session.prepare(sql).await.err().unwrap_or_else(|| panic!("expected preparing {sql} to fail")).to_string()
}

#[tokio::test]
async fn prepared_vector_search_binds_each_run_and_matches_brute_force() {
    let (session, dir) = temp_session().await;
    let rows = rows_from(clustered(400, 8, 21), 1);
    let file = dir.path().join("v.parquet");
    write_rows(&file, &rows, true);
    import(&session, "v", &file, Metric::L2, Precision::F32).await;

    let statement = session.prepare("SELECT id, _distance FROM vector_search('v', $1, $2, $3)").await.unwrap();
    for (i, q) in [3usize, 77, 150, 399].iter().enumerate() {
        let k = 3 + i;
        let vector = &rows[*q].vector;
        // Unfiltered, then filtered, through the same plan.
        for filter in [None, Some("score >= 50".to_string())] {
            let got = all_hits(&statement.query(vec![vector_param(vector), ScalarValue::Int64(Some(k as i64)), ScalarValue::Utf8(filter.clone())]).await.unwrap());
            let keep: &dyn Fn(&crate::vectors::Row) -> bool = if filter.is_some() { &|r| r.score >= 50 } else { &|_| true };
            let want: Vec<i64> = brute_force(&rows, Metric::L2, vector, k, keep).into_iter().map(|(id, _)| id).collect();
            assert_eq!(got.iter().map(|h| h.0).collect::<Vec<_>>(), want, "query {q}, filter {filter:?}");
        }
        // The vector may also come as text, as a text-only driver would send it.
        let text = format!("[{}]", vector.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(","));
        let got = all_hits(&statement.query(vec![ScalarValue::Utf8(Some(text)), ScalarValue::Int64(Some(1)), ScalarValue::Utf8(None)]).await.unwrap());
        assert_eq!(got[0].0, rows[*q].id);
    }

    // Bad values are errors naming the problem; the statement stays usable.
    let err = statement.query(vec![vector_param(&[1.0, 2.0]), ScalarValue::Int64(Some(3)), ScalarValue::Utf8(None)]).await.unwrap_err().to_string();
    assert!(err.contains("2 dimensions") && err.contains('8'), "{err}");
    let err = statement.query(vec![vector_param(&rows[0].vector), ScalarValue::Int64(Some(0)), ScalarValue::Utf8(None)]).await.unwrap_err().to_string();
    assert!(err.contains("k must be a positive integer"), "{err}");
    let err = statement.query(vec![vector_param(&rows[0].vector)]).await.unwrap_err().to_string();
    assert!(err.contains("$2"), "{err}");
    let got = all_hits(&statement.query(vec![vector_param(&rows[5].vector), ScalarValue::Int64(Some(1)), ScalarValue::Utf8(None)]).await.unwrap());
    assert_eq!(got[0].0, rows[5].id);

    // Preparing checks what it can: unknown tables, syntax, and more than one statement.
    assert!(prepare_error(&session, "SELECT * FROM vector_search('ghost', $1, 3)").await.contains("ghost"));
    assert!(prepare_error(&session, "SELEC 1").await.contains("syntax"));
    assert!(prepare_error(&session, "SELECT 1; SELECT 2").await.contains("one SQL statement"));
}

#[tokio::test]
async fn prepared_statements_see_appends_deletes_and_catalog_changes() {
    let (session, dir) = temp_session().await;
    let rows = rows_from(clustered(300, 8, 22), 1);
    let first = dir.path().join("a.parquet");
    write_rows(&first, &rows[..200], true);
    import(&session, "v", &first, Metric::L2, Precision::F32).await;
    let search = session.prepare("SELECT id FROM vector_search('v', $1, 1)").await.unwrap();
    let count = session.prepare("SELECT count(*) AS n FROM vectors.public.v WHERE score >= $1").await.unwrap();
    let count_of = |batches: Vec<RecordBatch>| {
        let column = batches[0].column(0).as_any().downcast_ref::<jammi_db::datafusion::arrow::array::Int64Array>().unwrap().value(0);
        column
    };
    let target = &rows[250];
    let before = search.query(vec![vector_param(&target.vector)]).await.unwrap();
    assert_ne!(hits_ids(&before), vec![target.id]);
    assert_eq!(count_of(count.query(vec![ScalarValue::Int64(Some(0))]).await.unwrap()), 200);

    // An append is visible to both statements on their next run.
    let second = dir.path().join("b.parquet");
    write_rows(&second, &rows[200..], true);
    session.vectors().append("v", &second.display().to_string(), "id", "embedding", &Default::default(), &NoProgress).await.unwrap();
    assert_eq!(hits_ids(&search.query(vec![vector_param(&target.vector)]).await.unwrap()), vec![target.id]);
    assert_eq!(count_of(count.query(vec![ScalarValue::Int64(Some(0))]).await.unwrap()), 300);
    let expected = rows.iter().filter(|r| r.score >= 90).count() as i64;
    assert_eq!(count_of(count.query(vec![ScalarValue::Int64(Some(90))]).await.unwrap()), expected);

    // A prepared DELETE runs once per execution with its own value.
    let delete = session.prepare("DELETE FROM vectors.public.v WHERE id = $1").await.unwrap();
    delete.query(vec![ScalarValue::Int64(Some(target.id))]).await.unwrap();
    assert_ne!(hits_ids(&search.query(vec![vector_param(&target.vector)]).await.unwrap()), vec![target.id]);
    assert_eq!(count_of(count.query(vec![ScalarValue::Int64(Some(0))]).await.unwrap()), 299);

    // Dropping the table: the next run says so instead of returning stale rows.
    session.vectors().drop("v").await.unwrap();
    let err = search.query(vec![vector_param(&target.vector)]).await.unwrap_err().to_string();
    assert!(err.contains("'v'") && err.contains("does not exist"), "{err}");
}

fn hits_ids(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let ids = b.column_by_name("id").unwrap().as_any().downcast_ref::<jammi_db::datafusion::arrow::array::Int64Array>().unwrap();
            ids.values().to_vec()
        })
        .collect()
}

#[tokio::test]
async fn prepared_statements_keep_their_tenant_scope() {
    let (session, dir) = temp_session().await;
    let a: TenantId = "0b7e8a52-1c59-4a39-8d7e-6a1b2c3d4e5f".parse().unwrap();
    let b: TenantId = "7f000000-0000-4000-8000-000000000002".parse().unwrap();
    let rows = rows_from(clustered(50, 4, 23), 1);
    let file = dir.path().join("t.parquet");
    write_rows(&file, &rows, true);
    let as_a = session.with_tenant(Some(a));
    import(&as_a, "private", &file, Metric::Cosine, Precision::F32).await;
    let statement = as_a.prepare("SELECT id FROM vector_search('private', $1, 2)").await.unwrap();
    assert_eq!(statement.query(vec![vector_param(&rows[7].vector)]).await.unwrap().iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    let err = prepare_error(&session.with_tenant(Some(b)), "SELECT id FROM vector_search('private', $1, 2)").await;
    assert!(err.contains("private"), "{err}");
    // The admin scope (task-local) plans the statement again in its own scope.
    let admin_rows = session.admin(|s| async move { s.prepare("SELECT id FROM vector_search('private', $1, 2)").await.map(|_| ()) }).await;
    assert!(admin_rows.is_ok());
}

/// A statement prepared inside a transaction reads through it, is planned again once the
/// transaction ends, and does not keep the writer lock: the next transaction (on any
/// handle) can begin.
#[tokio::test]
async fn prepared_statements_inside_a_transaction_release_it() {
    let (session, _dir) = temp_session().await;
    session.sql("CREATE TABLE mutable.public.kv (k BIGINT PRIMARY KEY, v VARCHAR)").await.unwrap().collect().await.unwrap();
    session.sql("BEGIN").await.unwrap().collect().await.unwrap();
    session.sql("INSERT INTO mutable.public.kv VALUES (1, 'one')").await.unwrap().collect().await.unwrap();
    let count = session.prepare("SELECT count(*) FROM mutable.public.kv WHERE k >= $1").await.unwrap();
    assert_eq!(render(&count.query(vec![ScalarValue::Int64(Some(1))]).await.unwrap()), [["1"]], "the transaction's own write");
    session.sql("ROLLBACK").await.unwrap().collect().await.unwrap();
    assert_eq!(render(&count.query(vec![ScalarValue::Int64(Some(1))]).await.unwrap()), [["0"]], "planned again after the rollback");

    let other = session.with_tenant(None);
    let began = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        other.sql("BEGIN").await.unwrap().collect().await.unwrap();
        other.sql("INSERT INTO mutable.public.kv VALUES (2, 'two')").await.unwrap().collect().await.unwrap();
        other.sql("COMMIT").await.unwrap().collect().await.unwrap();
    })
    .await;
    assert!(began.is_ok(), "a new transaction began while the prepared statement still exists");
    assert_eq!(render(&count.query(vec![ScalarValue::Int64(Some(1))]).await.unwrap()), [["1"]]);
}

#[tokio::test]
async fn long_vector_literals_in_sql_text_answer_as_written() {
    let (session, dir) = temp_session().await;
    let rows = rows_from(clustered(300, 64, 31), 1);
    let file = dir.path().join("w.parquet");
    write_rows(&file, &rows, true);
    import(&session, "w", &file, Metric::L2, Precision::F32).await;
    // 64 numbers: a literal long enough to be kept out of the tokenizer.
    for q in [4usize, 120, 299] {
        let v = literal(&rows[q].vector);
        assert!(v.len() >= 256, "{}", v.len());
        for sql in [
            format!("SELECT id, _distance FROM vector_search('w', '{v}', 5, NULL, 300)"),
            format!("SELECT id, _distance FROM vector_search('w',\n  '{v}'  ,5) -- nearest five\n"),
        ] {
            let got: Vec<i64> = all_hits(&session.sql(&sql).await.unwrap().collect().await.unwrap()).iter().map(|h| h.0).collect();
            let want: Vec<i64> = brute_force(&rows, Metric::L2, &rows[q].vector, 5, &|_| true).into_iter().map(|(id, _)| id).collect();
            assert_eq!(got, want, "query {q}: {}", &sql[..60]);
        }
    }
    // Outside a search the literal is the same text the parser reads.
    let v = literal(&rows[0].vector);
    let sql = format!("SELECT length('{v}') AS n, concat('{v}', 'x') = '{v}x' AS same");
    let batch = &session.sql(&sql).await.unwrap().collect().await.unwrap()[0];
    assert_eq!(jammi_db::datafusion::arrow::util::display::array_value_to_string(batch.column(0), 0).unwrap(), v.chars().count().to_string());
    assert_eq!(jammi_db::datafusion::arrow::util::display::array_value_to_string(batch.column(1), 0).unwrap(), "true");
    // A syntax error after a long literal is reported as the text was written.
    let err = sql_error(&session, &format!("SELECT id FROM vector_search('w', '{v}', 5) WHERE")).await;
    assert!(err.contains("SQL syntax error"), "{err}");
    let err = sql_error(&session, &format!("SELECT id FROM vector_search('w', '{v}', 5, $1)")).await;
    assert!(!err.is_empty());
}

fn literal(v: &[f32]) -> String {
    format!("[{}]", v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "))
}

/// Whether the frame runs a plan shared by its shape (see `plan_cache`).
async fn shares_plan(session: &Session, sql: &str) -> bool {
    session.sql(sql).await.unwrap().logical_plan().display_indent().to_string().contains("shared_plan")
}

/// Searches written as SQL text with new vectors plan once, as a prepared statement would:
/// the same answers as brute force (string and array literals, filters, k, ef), current
/// data after appends and drops, the same errors as a literal, and one plan per tenant.
#[tokio::test]
async fn sql_text_searches_share_one_plan_per_shape() {
    // Short vectors are parsed each time; long ones (48 numbers, ~500 characters) are
    // lifted out of the text, and a text known but for its vectors runs unparsed.
    for dims in [8, 48] {
        searches_written_as_text(dims).await;
    }
}

async fn searches_written_as_text(dims: usize) {
    let (session, dir) = temp_session().await;
    let rows = rows_from(clustered(400, dims, 24), 1);
    let file = dir.path().join("v.parquet");
    write_rows(&file, &rows[..300], true);
    import(&session, "v", &file, Metric::L2, Precision::F32).await;

    let text = |v: &[f32], k: usize, filter: &str| format!("SELECT id, _distance FROM vector_search('v', '{}', {k}, {filter}, 64)", literal(v));
    for (i, q) in [3usize, 77, 150, 299].iter().enumerate() {
        let k = 2 + i;
        let vector = &rows[*q].vector;
        for (filter, keep) in [("NULL", &(|_: &crate::vectors::Row| true) as &dyn Fn(&crate::vectors::Row) -> bool), ("'score >= 50'", &|r: &crate::vectors::Row| r.score >= 50)] {
            let sql = text(vector, k, filter);
            let got: Vec<i64> = all_hits(&session.sql(&sql).await.unwrap().collect().await.unwrap()).iter().map(|h| h.0).collect();
            let want: Vec<i64> = brute_force(&rows[..300], Metric::L2, vector, k, keep).into_iter().map(|(id, _)| id).collect();
            assert_eq!(got, want, "query {q}, filter {filter}");
            if i > 0 {
                assert!(shares_plan(&session, &sql).await, "{sql}");
            }
        }
        // The array form shares its own plan and answers the same.
        let array = format!("SELECT id, _distance FROM vector_search('v', {}, {k})", literal(vector));
        let got: Vec<i64> = all_hits(&session.sql(&array).await.unwrap().collect().await.unwrap()).iter().map(|h| h.0).collect();
        assert_eq!(got[0], rows[*q].id);
    }
    assert!(shares_plan(&session, &format!("SELECT id FROM vector_search('v', {}, 3)", literal(&rows[1].vector))).await);

    // Bad values fail with the literal's messages, and the shape stays usable.
    let err = sql_error(&session, "SELECT id FROM vector_search('v', '[1, 2]', 3, NULL, 64)").await;
    assert!(err.contains("2 dimensions") && err.contains(&dims.to_string()), "{err}");
    let err = sql_error(&session, &text(&rows[0].vector, 0, "NULL")).await;
    assert!(err.contains("k must be a positive integer"), "{err}");
    let err = sql_error(&session, &text(&rows[0].vector, 3, "'no_such_column = 1'")).await;
    assert!(err.contains("no_such_column"), "{err}");

    // Appends are seen at once; a dropped table is an error, not stale rows.
    let target = &rows[350];
    let nearest = |session: Session| async move { all_hits(&session.sql(&text(&target.vector, 1, "NULL")).await.unwrap().collect().await.unwrap())[0].0 };
    assert_ne!(nearest(session.clone()).await, target.id);
    let more = dir.path().join("more.parquet");
    write_rows(&more, &rows[300..], true);
    session.vectors().append("v", &more.display().to_string(), "id", "embedding", &Default::default(), &NoProgress).await.unwrap();
    assert_eq!(nearest(session.clone()).await, target.id);

    // A tenant's shape is its own: another tenant never reaches the table through it.
    let a: TenantId = "0b7e8a52-1c59-4a39-8d7e-6a1b2c3d4e5f".parse().unwrap();
    let b: TenantId = "7f000000-0000-4000-8000-000000000002".parse().unwrap();
    let as_a = session.with_tenant(Some(a));
    import(&as_a, "private", &file, Metric::L2, Precision::F32).await;
    let private = |v: &[f32]| format!("SELECT id FROM vector_search('private', '{}', 2)", literal(v));
    for q in [5, 6] {
        assert_eq!(as_a.sql(&private(&rows[q].vector)).await.unwrap().collect().await.unwrap().iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    }
    let err = sql_error(&session.with_tenant(Some(b)), &private(&rows[7].vector)).await;
    assert!(err.contains("private"), "{err}");

    session.vectors().drop("v").await.unwrap();
    let err = sql_error(&session, &text(&target.vector, 1, "NULL")).await;
    assert!(err.contains("'v'") && err.contains("does not exist"), "{err}");
}
