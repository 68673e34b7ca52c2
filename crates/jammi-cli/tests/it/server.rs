//! `jammi serve` as a process: the start-up line, `--target` commands, real client
//! drivers (psycopg from scripts/test.sh), tokens, and a graceful stop on SIGTERM.

use std::process::Command;

use crate::support::*;

#[test]
fn serve_target_and_python_client() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("home");
    // Vectors for vector_search from Python: reuse the CLI's own import.
    let parquet = dir.path().join("docs.parquet");
    write_docs(&parquet);
    ok(jammi(&data).args(["vectors", "import", "docs"]).arg(&parquet).args(["--id-column", "id", "--vector-column", "embedding"]));
    ok(jammi(&data).args(["vectors", "import", "docs_text"]).arg(&parquet).args(["--id-column", "id", "--vector-column", "embedding", "--text-column", "title"]));
    ok(jammi(&data).args(["topic", "create", "events", "--schema", "kind:string,n:int64"]));
    let tenant = "3f2b8c1e-0000-4000-8000-000000000001";
    let created = ok(jammi(&data).args(["--tenant", tenant, "--format", "json", "token", "create", "--name", "ci"]));
    let token: serde_json::Value = serde_json::from_str(&created).unwrap();
    let token = token[0]["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("jammi_"));
    // A second tenant's token, for the isolation checks over Flight SQL.
    let other = ok(jammi(&data).args(["--tenant", "3f2b8c1e-0000-4000-8000-000000000002", "--format", "json", "token", "create", "--name", "other"]));
    let other: serde_json::Value = serde_json::from_str(&other).unwrap();
    let other_token = other[0]["token"].as_str().unwrap().to_string();
    let listed = ok(jammi(&data).args(["token", "list"]));
    assert!(listed.contains(tenant) && listed.contains("ci") && !listed.contains(&token), "{listed}");

    let running = serve(&data);
    let target = |args: &[&str]| {
        let mut cmd = jammi(&data);
        cmd.args(["--target", &running.http, "--token", &token]).args(args);
        cmd
    };
    // --target: SQL (several statements), DML, search, topics.
    let out = ok(&mut target(&["sql", "CREATE TABLE mutable.public.t (id BIGINT PRIMARY KEY, name VARCHAR); INSERT INTO mutable.public.t VALUES (1, 'ada'); SELECT name FROM mutable.public.t"]));
    assert!(out.contains("ada") && out.contains("(1 row"), "{out}");
    let out = ok(&mut target(&["--format", "csv", "search", "docs", "--vector", "[0.1, 1.3, 0.1, 0.1]", "--k", "2"]));
    assert_eq!(out.lines().count(), 3, "{out}");
    // Text and hybrid search through the server.
    let out = ok(&mut target(&["--format", "json", "search", "docs_text", "--text", "beta", "--k", "5"]));
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(!rows.as_array().unwrap().is_empty() && rows.as_array().unwrap().iter().all(|r| r["_retrieved_by"] == serde_json::json!(["text"])), "{out}");
    let out = ok(&mut target(&["--format", "csv", "search", "docs_text", "--text", "beta", "--vector", "[0.1, 1.3, 0.1, 0.1]", "--fusion", "rrf_k = 10", "--k", "2"]));
    assert!(out.starts_with("id,") && out.contains("_vector_rank") && out.lines().count() == 3, "{out}");
    // The server audited those searches (on by default, with a key it made in the data
    // directory): the operator verifies the tenant's chain on the server's host.
    // (The server commits its audit records in batches, within milliseconds of answering.)
    let checked = audited_records(&data, tenant, 3);
    assert!(checked >= 3, "the server's searches were audited: {checked} records");
    assert!(data.join("audit.key").exists());
    let out = ok(&mut target(&["topic", "publish", "events", "--data", r#"[{"kind": "a", "n": 1}, {"kind": "b", "n": 2}]"#]));
    assert!(out.contains("published 2 events"), "{out}");
    let out = ok(&mut target(&["topic", "subscribe", "events", "--from-beginning", "--limit", "2"]));
    let kinds: Vec<String> = out.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].as_str().unwrap().to_string()).collect();
    assert_eq!(kinds, ["a", "b"]);
    let error = fails(&mut target(&["sql", "SELECT * FROM mutable.public.nothing_here"]));
    assert!(error.contains("nothing_here"), "{error}");
    let error = fails(jammi(&data).args(["--target", &running.http, "sql", "SELECT 1"]));
    assert!(error.contains("token") && error.contains("401"), "{error}");
    let error = fails(&mut target(&["vectors", "list"]));
    assert!(error.contains("--target"), "{error}");

    // Real Python drivers (installed by scripts/test.sh): psycopg over the Postgres protocol,
    // ADBC over Flight SQL.
    python_client("psycopg_client.py", &running.pg_port, &[&token]);
    python_client("adbc_client.py", &running.flight_port, &[&token, &other_token]);
    stop(running);
}

/// Run `tests/clients/<script> PORT TOKEN`; it prints "ok" or fails with a traceback.
fn python_client(script: &str, port: &str, tokens: &[&str]) {
    let path = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3").arg(&path).arg(port).args(tokens).output().expect("python3");
    assert!(
        out.status.success(),
        "{script} failed (scripts/test.sh installs psycopg, adbc-driver-flightsql and pyarrow):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok", "{script}");
}

/// 8 vectors of 4 dimensions (`id % 4` picks the large component).
fn write_docs(path: &std::path::Path) {
    let rows: Vec<String> = (0..8)
        .map(|i| {
            let mut v = [0.1f32; 4];
            v[i % 4] = 1.0 + i as f32 / 100.0;
            let word = if i % 2 == 0 { "alpha" } else { "beta" };
            format!("({i}, [{}, {}, {}, {}], '{word} document {i}')", v[0], v[1], v[2], v[3])
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let sql = format!(
        "COPY (SELECT column1 AS id, arrow_cast(column2, 'FixedSizeList(4, Float32)') AS embedding, column3 AS title FROM (VALUES {})) TO '{}' STORED AS PARQUET",
        rows.join(", "),
        path.display()
    );
    ok(jammi(&dir.path().join("scratch")).args(["sql", &sql]));
}

/// Tokens are owned like every other object: a tenant lists and revokes only its own.
#[test]
fn tokens_belong_to_their_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("home");
    let (a, b) = ("3f2b8c1e-0000-4000-8000-00000000000a", "3f2b8c1e-0000-4000-8000-00000000000b");
    let created = ok(jammi(&data).args(["--tenant", a, "--format", "json", "token", "create", "--name", "a-token"]));
    let id_a = serde_json::from_str::<serde_json::Value>(&created).unwrap()[0]["id"].as_str().unwrap().to_string();
    ok(jammi(&data).args(["token", "create", "--name", "operator-token"]));
    let seen_by_b = ok(jammi(&data).args(["--tenant", b, "token", "list"]));
    assert!(!seen_by_b.contains("a-token") && !seen_by_b.contains(a), "{seen_by_b}");
    let error = fails(jammi(&data).args(["--tenant", b, "token", "revoke", &id_a]));
    assert!(error.contains("does not exist"), "{error}");
    let seen_by_a = ok(jammi(&data).args(["--tenant", a, "token", "list"]));
    assert!(seen_by_a.contains("a-token") && seen_by_a.contains("operator-token"), "{seen_by_a}");
    let operator_id = ok(jammi(&data).args(["--format", "csv", "token", "list"])).lines().find(|l| l.contains("operator-token")).unwrap().split(',').next().unwrap().to_string();
    let error = fails(jammi(&data).args(["--tenant", a, "token", "revoke", &operator_id]));
    assert!(error.contains("permission denied"), "{error}");
    // Still live: the refused revocations changed nothing.
    let listed = ok(jammi(&data).args(["--format", "csv", "token", "list"]));
    assert!(listed.lines().filter(|l| l.contains("token")).all(|l| l.ends_with(',')), "{listed}");
    ok(jammi(&data).args(["--tenant", a, "token", "revoke", &id_a]));
}

/// Two `jammi serve` processes on one PostgreSQL catalog: DDL in psycopg's transactions,
/// then four psycopg clients (two on each server) doing 15 read-modify-write transactions
/// each: no update is lost.
#[test]
fn read_modify_write_through_two_servers_on_postgres_loses_nothing() {
    let admin = std::env::var("JAMMI_TEST_PG_URL").expect("JAMMI_TEST_PG_URL is not set: run the tests through scripts/test.sh");
    let db = format!("jammi_rmw_{}", std::process::id());
    let created = Command::new("psql").arg(&admin).args(["-q", "-c", &format!("CREATE DATABASE {db}")]).status().expect("run psql");
    assert!(created.success(), "create the test database");
    let url = format!("{}/{db}", admin.rsplit_once('/').unwrap().0);
    read_modify_write_through_two_servers(&url);
}

/// The same on one SQLite catalog file shared by the two processes.
#[test]
fn read_modify_write_through_two_servers_on_sqlite_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    read_modify_write_through_two_servers(&format!("sqlite://{}", dir.path().join("catalog.db").display()));
}

fn read_modify_write_through_two_servers(catalog_url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let homes: Vec<std::path::PathBuf> = (0..2).map(|i| dir.path().join(format!("home{i}"))).collect();
    for home in &homes {
        std::fs::create_dir_all(home).unwrap();
        std::fs::write(home.join("jammi.toml"), format!("[catalog]\nurl = \"{catalog_url}\"\n")).unwrap();
    }
    let (first, second) = (serve(&homes[0]), serve(&homes[1]));
    let client = |script: &str, args: &[&str]| {
        let script = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
        let out = Command::new("python3").arg(&script).args([&first.pg_port, &second.pg_port]).args(args).output().expect("python3");
        assert!(out.status.success(), "{script}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(client("psycopg_ddl.py", &[]), "ok");
    assert_eq!(client("psycopg_counter.py", &["4", "15"]), "60", "every read-modify-write counted once");
    stop(first);
    stop(second);
}
