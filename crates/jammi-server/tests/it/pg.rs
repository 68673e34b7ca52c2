//! The Postgres wire protocol with real clients: sqlx (extended protocol, binary results,
//! bound parameters) and `psql` (simple protocol, several statements, errors).

use std::process::Command;

use jammi_db::TenantId;
use jammi_server::Limits;
use sqlx::{Connection, Row};

use crate::support::*;

fn url(port: u16, password: &str) -> String {
    format!("postgres://jammi:{password}@127.0.0.1:{port}/jammi")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn extended_protocol_dml_transactions_and_vectors() {
    let (session, dir) = session().await;
    docs(&session, dir.path(), 40).await;
    let served = serve(session, dir, Limits::default()).await;
    let mut conn = sqlx::PgConnection::connect(&url(served.pg_port, "any")).await.expect("connect with sqlx");

    sqlx::query("CREATE TABLE mutable.public.kv (k BIGINT PRIMARY KEY, v VARCHAR, score DOUBLE)").execute(&mut conn).await.unwrap();
    let inserted = sqlx::query("INSERT INTO mutable.public.kv VALUES ($1, $2, $3)").bind(1i64).bind("one").bind(0.5f64).execute(&mut conn).await.unwrap();
    assert_eq!(inserted.rows_affected(), 1);
    sqlx::query("INSERT INTO mutable.public.kv VALUES (2, 'two', 2.5), (3, NULL, NULL)").execute(&mut conn).await.unwrap();

    // Bound parameters, binary results, typed columns.
    let rows = sqlx::query("SELECT k, v, score FROM mutable.public.kv WHERE k >= $1 ORDER BY k").bind(2i64).fetch_all(&mut conn).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].get::<i64, _>("k"), 2);
    assert_eq!(rows[0].get::<String, _>("v"), "two");
    assert_eq!(rows[0].get::<f64, _>("score"), 2.5);
    assert_eq!(rows[1].get::<Option<String>, _>("v"), None);
    let (n, label): (i64, String) = sqlx::query_as("SELECT count(*), 'x' || $1 FROM mutable.public.kv").bind("y").fetch_one(&mut conn).await.unwrap();
    assert_eq!((n, label.as_str()), (3, "xy"));
    let updated = sqlx::query("UPDATE mutable.public.kv SET v = $1 WHERE k = $2").bind("uno").bind(1i64).execute(&mut conn).await.unwrap();
    assert_eq!(updated.rows_affected(), 1);

    // A transaction is the connection's own: another connection does not see it, and a
    // rollback leaves nothing.
    let mut other = sqlx::PgConnection::connect(&url(served.pg_port, "any")).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("INSERT INTO mutable.public.kv VALUES (10, 'ten', 1.0)").execute(&mut *tx).await.unwrap();
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM mutable.public.kv WHERE k = 10").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(seen, 1);
    let elsewhere: i64 = sqlx::query_scalar("SELECT count(*) FROM mutable.public.kv WHERE k = 10").fetch_one(&mut other).await.unwrap();
    assert_eq!(elsewhere, 0);
    tx.rollback().await.unwrap();
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM mutable.public.kv WHERE k = 10").fetch_one(&mut conn).await.unwrap();
    assert_eq!(after, 0);

    // vector_search with the query vector as a parameter (an array of floats).
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM vector_search('docs', $1, 3) ORDER BY _rank")
        .bind(vec![0.1f32, 1.3, 0.1, 0.1])
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| id % 4 == 1), "{ids:?}");
    let vector: Vec<f32> = sqlx::query_scalar("SELECT embedding FROM vectors.public.docs WHERE id = 5").fetch_one(&mut conn).await.unwrap();
    assert_eq!(vector.len(), 4);

    // Errors carry a SQLSTATE and a message naming the problem; the connection stays usable.
    let error = sqlx::query("SELECT * FROM mutable.public.nope").fetch_all(&mut conn).await.unwrap_err();
    let db = error.as_database_error().expect("a server error");
    assert!(db.message().contains("nope"), "{}", db.message());
    assert!(db.code().is_some());
    let one: i64 = sqlx::query_scalar("SELECT 1::BIGINT").fetch_one(&mut conn).await.unwrap();
    assert_eq!(one, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psql_and_tokens_as_passwords() {
    let (session, dir) = session().await;
    let (a, b) = (TenantId::random(), TenantId::random());
    tenant_people(&session, dir.path(), a, b, 3).await;
    let (_, token_a) = jammi_server::auth::create_token(&session, Some(a), "a").await.unwrap();
    let served = serve(session, dir, Limits::default()).await;

    // A wrong password is refused; the token is the password and scopes the connection.
    assert!(sqlx::PgConnection::connect(&url(served.pg_port, "wrong")).await.is_err());
    let mut conn = sqlx::PgConnection::connect(&url(served.pg_port, &token_a)).await.expect("the token is the password");
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM files.public.people ORDER BY id").fetch_all(&mut conn).await.unwrap();
    assert_eq!(names, ["a0", "a1", "a2"]);

    // psql: the simple protocol, several statements, a client setting, an error.
    let psql = |sql: &str| {
        Command::new("psql")
            .arg(url(served.pg_port, &token_a))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("psql (PostgreSQL client) is installed")
    };
    let out = psql("SET application_name = 'psql'; SELECT count(*) FROM files.public.people; SELECT name FROM files.public.people WHERE id = 2");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().collect::<Vec<_>>(), ["SET", "3", "a1"]);
    let out = psql("SELECT * FROM files.public.nothing");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing"), "{}", String::from_utf8_lossy(&out.stderr));
    // psql's \d commands read pg_catalog: a clear error that says where the facts are,
    // and SHOW TABLES / information_schema answer.
    let out = psql("\\dt");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("information_schema"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = psql("SELECT table_name FROM information_schema.tables WHERE table_catalog = 'files' AND table_schema = 'public'");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "people");
}
