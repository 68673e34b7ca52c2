//! The Postgres wire protocol with real clients: sqlx (extended protocol, binary results,
//! bound parameters) and `psql` (simple protocol, several statements, errors, and its
//! `\d` family of describe commands).

use std::process::Command;

use jammi_db::source::SourceSpec;
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

    // text_search and hybrid_search with every argument a parameter; provenance as text[].
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM text_search('docs', $1, $2, $3) ORDER BY _rank").bind("fr").bind(4i64).bind("id < 20").fetch_all(&mut conn).await.unwrap();
    assert_eq!(ids.len(), 4);
    assert!(ids.iter().all(|id| id % 2 == 1 && *id < 20), "{ids:?}");
    let rows = sqlx::query("SELECT id, _retrieved_by, _text_rank FROM hybrid_search('docs', $1, $2, $3) ORDER BY _rank")
        .bind("fr")
        .bind(vec![0.1f32, 1.3, 0.1, 0.1])
        .bind(3i64)
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    for row in &rows {
        let legs: Vec<String> = row.get("_retrieved_by");
        let id: i64 = row.get("id");
        assert_eq!(legs.contains(&"text".to_string()), row.get::<Option<i64>, _>("_text_rank").is_some());
        assert!(id % 2 == 1, "direction 1 and lang fr are both odd ids: {id}");
    }

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
    // psql's \d commands read pg_catalog: answered from the tenant's information_schema;
    // other pg_catalog queries get a clear error saying where the facts are.
    let out = psql("\\dt");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "files.public|people|table|jammi");
    let out = psql("SELECT typname FROM pg_catalog.pg_type");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("information_schema"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = psql("SELECT table_name FROM information_schema.tables WHERE table_catalog = 'files' AND table_schema = 'public'");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "people");
}

/// `psql` with `args` against the server on `port`, the token as the password; (exit
/// success, stdout, stderr).
fn run_psql(port: u16, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("psql").arg(url(port, token)).arg("-X").args(args).output().expect("psql (PostgreSQL client) is installed");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psql_describe_commands_in_the_tenant_scope() {
    let (session, dir) = session().await;
    let (a, b) = (TenantId::random(), TenantId::random());
    tenant_people(&session, dir.path(), a, b, 2).await;
    docs(&session, dir.path(), 8).await;
    session.sql("CREATE TABLE mutable.public.kv (k BIGINT PRIMARY KEY, v VARCHAR, score DOUBLE)").await.unwrap().collect().await.unwrap();
    // A source only tenant A owns.
    let secret = dir.path().join("secret.csv");
    std::fs::write(&secret, "code,amount\nx,1.5\n").unwrap();
    session.with_tenant(Some(a)).sources().add(SourceSpec::new("secret", secret.display().to_string())).await.unwrap();
    let (_, token_a) = jammi_server::auth::create_token(&session, Some(a), "a").await.unwrap();
    let (_, token_b) = jammi_server::auth::create_token(&session, Some(b), "b").await.unwrap();
    let served = serve(session, dir, Limits::default()).await;
    let port = served.pg_port;
    let unaligned = |token: &str, command: &str| {
        let (ok, out, err) = run_psql(port, token, &["-A", "-c", command]);
        assert!(ok, "{command}: {err}");
        out.lines().map(str::to_owned).collect::<Vec<_>>()
    };

    // \dt: a table as real Postgres prints it, one row per jammi table the tenant sees.
    let (ok, out, err) = run_psql(port, &token_a, &["-c", "\\dt"]);
    assert!(ok, "{err}");
    assert!(out.contains("List of relations"), "{out}");
    assert!(out.contains(" Schema "), "{out}");
    assert!(out.contains("| people | table | jammi"), "{out}");
    let tables = unaligned(&token_a, "\\dt");
    assert_eq!(tables[1], "Schema|Name|Type|Owner", "{tables:?}");
    for row in ["files.public|people|table|jammi", "mutable.public|kv|table|jammi", "secret.public|secret|table|jammi", "vectors.public|docs|table|jammi"] {
        assert!(tables.iter().any(|l| l == row), "{row} not in {tables:?}");
    }
    assert!(!tables.iter().any(|l| l.contains("information_schema")), "{tables:?}");
    // \d without a name lists relations too; \dv finds no views.
    let relations = unaligned(&token_a, "\\d");
    assert!(relations.iter().any(|l| l == "vectors.public|docs|table|jammi"), "{relations:?}");
    let (ok, _, err) = run_psql(port, &token_a, &["-c", "\\dv"]);
    assert!(ok && err.contains("Did not find any relations"), "{err}");
    // A pattern over the schema (`catalog.schema`) names.
    let vectors = unaligned(&token_a, "\\dt vectors*.*");
    assert_eq!(vectors[2..vectors.len() - 1], ["vectors.public|docs|table|jammi"], "{vectors:?}");

    // \dn: every catalog.schema pair is a schema.
    let schemas = unaligned(&token_a, "\\dn");
    assert_eq!(schemas[1], "Name|Owner", "{schemas:?}");
    for row in ["files.public|jammi", "mutable.public|jammi", "secret.public|jammi", "vectors.public|jammi"] {
        assert!(schemas.iter().any(|l| l == row), "{row} not in {schemas:?}");
    }

    // \d NAME: columns with their Postgres types and nullability.
    let people = unaligned(&token_a, "\\d \"files.public\".people");
    assert_eq!(people[..3], ["Table \"files.public.people\"", "Column|Type|Collation|Nullable|Default", "id|bigint||not null|"], "{people:?}");
    assert!(people.contains(&"name|text||not null|".to_string()), "{people:?}");
    let kv = unaligned(&token_a, "\\d kv");
    assert_eq!(kv[0], "Table \"mutable.public.kv\"", "{kv:?}");
    assert!(kv.contains(&"v|text|||".to_string()) && kv.contains(&"score|double precision|||".to_string()), "{kv:?}");
    let docs = unaligned(&token_a, "\\d \"vectors.public.docs\"");
    assert!(docs.iter().any(|l| l.starts_with("embedding|real[]|")), "{docs:?}");
    let verbose = unaligned(&token_a, "\\d+ \"files.public\".people");
    assert!(verbose.iter().any(|l| l.starts_with("Column|Type|Collation|Nullable|Default|Storage")), "{verbose:?}");
    let (ok, _, err) = run_psql(port, &token_a, &["-c", "\\d nosuch"]);
    assert!(!ok);
    assert!(err.contains("Did not find any relation named \"nosuch\""), "{err}");

    // \l: the database the client connected to.
    let databases = unaligned(&token_a, "\\l");
    assert!(databases.iter().any(|l| l.starts_with("jammi|jammi|UTF8|")), "{databases:?}");

    // Tenant B sees the shared tables, not A's source, and cannot describe it.
    let tables_b = unaligned(&token_b, "\\dt");
    assert!(tables_b.iter().any(|l| l == "files.public|people|table|jammi"), "{tables_b:?}");
    assert!(!tables_b.iter().any(|l| l.contains("secret")), "{tables_b:?}");
    assert!(!unaligned(&token_b, "\\dn").iter().any(|l| l.contains("secret")));
    let (ok, _, err) = run_psql(port, &token_b, &["-c", "\\d \"secret.public\".secret"]);
    assert!(!ok && err.contains("Did not find any relation named"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catalog_queries_through_the_extended_protocol() {
    let (session, dir) = session().await;
    let (a, b) = (TenantId::random(), TenantId::random());
    tenant_people(&session, dir.path(), a, b, 1).await;
    let served = serve(session, dir, Limits::default()).await;
    let mut conn = sqlx::PgConnection::connect(&url(served.pg_port, "any")).await.unwrap();
    let sql = "SELECT n.nspname as \"Schema\", c.relname as \"Name\" FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p','') AND n.nspname <> 'information_schema' ORDER BY 1,2";
    let rows = sqlx::query(sql).fetch_all(&mut conn).await.unwrap();
    let names: Vec<(String, String)> = rows.iter().map(|r| (r.get("Schema"), r.get("Name"))).collect();
    assert_eq!(names, [("files.public".to_string(), "people".to_string())]);
}

/// The engine's typed errors reach clients as the SQLSTATE and HTTP status a Postgres or
/// REST client can act on (retry, fix the input, pick another name), never a generic code.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn typed_errors_reach_clients_as_sqlstate_and_status() {
    let (session, dir) = session().await;
    docs(&session, dir.path(), 8).await;
    let served = serve(session, dir, Limits::default()).await;
    let mut conn = sqlx::PgConnection::connect(&url(served.pg_port, "any")).await.unwrap();
    sqlx::raw_sql("CREATE TABLE mutable.public.kv (k BIGINT PRIMARY KEY, v VARCHAR NOT NULL)").execute(&mut conn).await.unwrap();
    sqlx::raw_sql("INSERT INTO mutable.public.kv VALUES (1, 'one')").execute(&mut conn).await.unwrap();
    let client = reqwest::Client::new();
    let cases = [
        ("INSERT INTO mutable.public.kv VALUES (1, 'again')", "23505", 409, "duplicate key"),
        ("CREATE TABLE mutable.public.kv (k BIGINT PRIMARY KEY)", "42P07", 409, "already exists"),
        ("DROP TABLE mutable.public.nothing", "42P01", 404, "nothing"),
        ("SELECT * FROM mutable.public.nothing JOIN files.public.none ON true", "42P01", 404, "nothing"),
        ("INSERT INTO mutable.public.kv VALUES (2, NULL)", "22023", 400, "NOT NULL"),
        ("ALTER TABLE mutable.public.kv DROP COLUMN v", "0A000", 400, "only ADD COLUMN"),
        ("SELECT * FROM vector_search('docs', '[1, 2]', 3)", "22023", 400, "dimensions"),
        ("SELECT * FROM vector_search('docs', '[1, 0, 0, 0]', 3, 'lang = ')", "22023", 400, "filter"),
        ("COMMIT", "25000", 409, "no transaction is open"),
    ];
    for (sql, sqlstate, status, needle) in cases {
        let error = sqlx::raw_sql(sql).execute(&mut conn).await.expect_err(sql);
        let db = error.as_database_error().unwrap_or_else(|| panic!("{sql}: {error}"));
        // The pg wire handler ends a COMMIT outside a transaction itself, as Postgres does
        // (a warning, not an error); the engine's answer is checked over HTTP below.
        assert_eq!(db.code().as_deref(), Some(sqlstate), "{sql}: {}", db.message());
        assert!(db.message().contains(needle), "{sql}: {}", db.message());
        let (code, answer) = post(&client, &format!("{}/v1/sql", served.http), None, serde_json::json!({ "sql": sql })).await;
        assert_eq!(code, status, "HTTP {sql}: {answer}");
    }
    // Nothing of the refused writes was kept.
    let rows: Vec<(i64, String)> = sqlx::query_as("SELECT k, v FROM mutable.public.kv ORDER BY k").fetch_all(&mut conn).await.unwrap();
    assert_eq!(rows, vec![(1, "one".to_string())]);
}
