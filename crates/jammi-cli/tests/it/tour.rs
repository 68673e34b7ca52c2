//! The README's CLI tour, run command by command as written, in a fresh temporary directory
//! with no `--data-dir` (so the default `./.jammi` is used), with the files it names made
//! first. Only what cannot be literal on a test machine is replaced, each replacement listed
//! in [`substitute`]: the placeholder vector, the S3 endpoint (plus the test server's
//! credentials), the Postgres URL, and fixed ports. Every command must succeed, and the
//! results that matter are checked.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;

/// The commands of the tour block, continuation lines and multi-line quotes joined, comment
/// lines dropped.
fn tour_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme.find("## A short tour of the CLI").expect("the README has its tour");
    let block = &readme[start..];
    let block = &block[block.find("```sh\n").unwrap() + 6..];
    let block = &block[..block.find("```").unwrap()];
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        if current.is_empty() && (line.trim().is_empty() || line.trim_start().starts_with('#')) {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if !open_quote(&current) && !line.trim_end().ends_with('\\') {
            commands.push(std::mem::take(&mut current).trim().to_string());
        }
    }
    assert!(current.is_empty(), "unterminated command in the tour: {current}");
    commands
}

/// Whether `text` ends inside a quoted string (shell quoting, enough for the tour).
fn open_quote(text: &str) -> bool {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in text.chars() {
        match (quote, c) {
            (_, _) if escaped => escaped = false,
            (Some('"'), '\\') => escaped = true,
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') => return false,
            _ => {}
        }
    }
    quote.is_some()
}

struct Env {
    s3_endpoint: String,
    s3_root: String,
    pg_url: String,
    ports: HashMap<&'static str, u16>,
}

/// What a test machine cannot take literally, replaced.
fn substitute(command: &str, env: &Env) -> String {
    let mut c = command.to_string();
    // The placeholder vector: the tour's vectors have 4 dimensions.
    c = c.replace("[0.1, 0.2, ...]", "[0.1, 0.2, 0.3, 0.4]");
    // The object store: the test S3 server, its bucket, and its (dummy) credentials.
    c = c.replace("s3://bucket/", &format!("{}/", env.s3_root));
    c = c.replace(
        "--option endpoint=http://127.0.0.1:9000",
        &format!("--option endpoint={} --option region=us-east-1 --option access_key_id=test --option secret_access_key=test", env.s3_endpoint),
    );
    // The database source: a fresh test database with the tour's tables.
    c = c.replace("postgres://app:secret@localhost:5432/shop", &env.pg_url);
    // Fixed ports may be taken on a test machine; 0.0.0.0 is not needed.
    for (written, port) in &env.ports {
        c = c.replace(written, &format!("127.0.0.1:{port}"));
    }
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `n` documents with 4-d embeddings (`doc_id`, `title`, `lang`, `emb`) from id `first`.
fn write_docs(path: &Path, first: i64, n: i64) {
    let values: Vec<f32> = (0..n * 4).map(|i| ((i * 37 % 11) as f32 + 1.0) / 10.0).collect();
    let emb = FixedSizeListArray::try_new(Arc::new(Field::new("item", DataType::Float32, true)), 4, Arc::new(Float32Array::from(values)), None).unwrap();
    let schema = Schema::new(vec![
        Field::new("doc_id", DataType::Int64, false),
        Field::new("title", DataType::Utf8, false),
        Field::new("lang", DataType::Utf8, false),
        Field::new("emb", emb.data_type().clone(), false),
    ]);
    let ids: Vec<i64> = (first..first + n).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(StringArray::from(ids.iter().map(|i| format!("doc {i}")).collect::<Vec<_>>())),
        Arc::new(StringArray::from(ids.iter().map(|i| if i % 2 == 0 { "en" } else { "de" }).collect::<Vec<_>>())),
        Arc::new(emb),
    ];
    write_parquet(path, RecordBatch::try_new(Arc::new(schema), columns).unwrap());
}

fn write_parquet(path: &Path, batch: RecordBatch) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn ids_batch(name: &str, ids: &[i64]) -> RecordBatch {
    let schema = Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new(name, DataType::Utf8, false)]);
    let names: Vec<String> = ids.iter().map(|i| format!("{name} {i}")).collect();
    RecordBatch::try_new(Arc::new(schema), vec![Arc::new(Int64Array::from(ids.to_vec())), Arc::new(StringArray::from(names))]).unwrap()
}

/// Every file and service the tour names.
fn prepare(dir: &Path, env: &Env, admin_pg: &str) {
    let write = |path: &str, text: &str| {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("data/orders.csv", "id,region,amount\n1,east,120\n2,west,80\n3,east,200\n");
    write_parquet(&dir.join("data/events/day=1/part-0.parquet"), ids_batch("event", &[1, 2]));
    write_parquet(&dir.join("data/events/day=2/part-0.parquet"), ids_batch("event", &[3]));
    write("export.txt", "a;b\n1;x\n2;y\n");
    write_docs(&dir.join("docs.parquet"), 0, 40);
    write_docs(&dir.join("more.parquet"), 40, 5);
    write_parquet(&dir.join("tenant-a.parquet"), ids_batch("who", &[1, 2, 3]));
    write("adapter.safetensors", "weights");
    write("config.json", "{\"dims\": 384}");
    std::fs::create_dir_all(dir.join("models")).unwrap();
    // The object the `lake` source names, on the test S3 server.
    write_parquet(&dir.join("items.parquet"), ids_batch("item", &[1, 2]));
    let url = format!("{}/{}/items.parquet", env.s3_endpoint, env.s3_root.trim_start_matches("s3://"));
    let put = Command::new("curl").args(["-sf", "--max-time", "30", "-T"]).arg(dir.join("items.parquet")).arg(&url).status().unwrap();
    assert!(put.success(), "upload {url}");
    // The Postgres database the `pg` source names.
    let db = env.pg_url.rsplit('/').next().unwrap();
    let psql = |url: &str, sql: &str| {
        let status = Command::new("psql").arg(url).args(["-q", "-v", "ON_ERROR_STOP=1", "-c", sql]).status().unwrap();
        assert!(status.success(), "psql: {sql}");
    };
    psql(admin_pg, &format!("CREATE DATABASE {db}"));
    psql(&env.pg_url, "CREATE TABLE customers (id INT PRIMARY KEY, name TEXT); INSERT INTO customers VALUES (1, 'ada'), (2, 'bob');
                       CREATE TABLE orders (id INT PRIMARY KEY, customer_id INT, amount NUMERIC); INSERT INTO orders VALUES (1, 1, 10), (2, 1, 5), (3, 2, 7)");
    // The TLS certificate the second `serve` names.
    let cert = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.pem", "-days", "1", "-subj", "/CN=localhost"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(cert.status.success(), "openssl: {}", String::from_utf8_lossy(&cert.stderr));
}

/// What each command must print (a command is found by a fragment of its text).
fn expected_output() -> Vec<(&'static str, &'static str)> {
    vec![
        ("source list", "odd"),
        ("GROUP BY region", "east"),
        ("CREATE VIEW big", "2"),
        ("--format ndjson sql", "\"event\":\"event 3\""),
        ("jammi search docs", "| en "),
        ("vector_search('docs'", "doc "),
        ("vectors append", "5"),
        ("topic publish", "published 1 event at offset 0"),
        ("topic subscribe", "\"label\":\"cat\""),
        ("GROUP BY c.name", "ada"),
        ("count(*) FROM mine.public.tenant_a", "3"),
        ("\\dt", "tenant_a"),
        ("sql \"SELECT 1\"", "1"),
    ]
}

/// A command that runs until stopped: `serve`, or a live `topic subscribe`.
fn long_running(command: &str) -> bool {
    command.contains(" serve ") || (command.contains("topic subscribe") && !command.contains("--limit"))
}

#[test]
fn the_readme_tour_runs_as_written() {
    let endpoint = std::env::var("JAMMI_TEST_S3_ENDPOINT").expect("JAMMI_TEST_S3_ENDPOINT is not set: run the tests through scripts/test.sh");
    let bucket = std::env::var("JAMMI_TEST_S3_BUCKET").expect("JAMMI_TEST_S3_BUCKET (set by scripts/test.sh)");
    let admin_pg = std::env::var("JAMMI_TEST_PG_URL").expect("JAMMI_TEST_PG_URL is not set: run the tests through scripts/test.sh");
    let db = format!("jammi_tour_{}", std::process::id());
    let ports = HashMap::from([("127.0.0.1:8080", free_port()), ("127.0.0.1:5433", free_port()), ("127.0.0.1:50051", free_port()), ("0.0.0.0:8443", free_port())]);
    let env = Env {
        s3_endpoint: endpoint,
        s3_root: format!("s3://{bucket}/tour-{}", std::process::id()),
        pg_url: format!("{}/{db}", admin_pg.rsplit_once('/').unwrap().0),
        ports,
    };
    let dir = tempfile::tempdir().unwrap();
    eprintln!("tour: preparing files and services in {}", dir.path().display());
    prepare(dir.path(), &env, &admin_pg);
    eprintln!("tour: prepared");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_jammi")).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut vars: HashMap<&str, String> = HashMap::new();
    let mut running: Vec<Child> = Vec::new();
    let commands = tour_commands();
    eprintln!("tour: {} commands", commands.len());
    assert!(commands.len() >= 30, "the tour has {} commands", commands.len());
    let expected = expected_output();
    let mut checked = 0;
    for written in &commands {
        let command = substitute(written, &env);
        eprintln!("tour$ {command}");
        let mut shell = Command::new("bash");
        shell.arg("-c").arg(&command).current_dir(dir.path()).env("PATH", &path);
        for var in ["JAMMI_HOME", "JAMMI_CONFIG", "JAMMI_TARGET", "JAMMI_TOKEN", "PGPASSWORD"] {
            shell.env_remove(var);
        }
        shell.envs(&vars);
        let stdout = if long_running(written) {
            let mut child = shell.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
            assert!(!line.is_empty(), "{written}: printed nothing before running on");
            if written.contains("topic subscribe") {
                // Stopped as a person stops it: Ctrl-C ends it cleanly.
                assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
                assert!(child.wait().unwrap().success(), "{written}: SIGINT ends it with status 0");
            } else {
                running.push(child);
            }
            line
        } else {
            let out = shell.output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(out.status.success(), "tour command failed:\n{written}\nran as: {command}\nstdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
            stdout
        };
        for (fragment, wanted) in &expected {
            if written.contains(fragment) {
                assert!(stdout.contains(wanted), "{written}: expected {wanted:?} in its output:\n{stdout}");
                checked += 1;
            }
        }
        // What the tour's later commands use ($TOKEN, $SEGMENTS, $JOB_ID), taken as a user would.
        if written.contains("job claim") {
            let lease: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("job claim printed {stdout:?}: {e}"));
            vars.insert("SEGMENTS", lease["segments"].as_str().unwrap().to_string());
            vars.insert("JOB_ID", lease["job_id"].as_str().unwrap().to_string());
            vars.insert("TOKEN", lease["token"].as_str().unwrap().to_string());
        }
        if written.contains("token create") {
            vars.insert("TOKEN", stdout.lines().nth(1).expect("the token on its own line").trim().to_string());
        }
    }
    assert_eq!(checked, expected.len(), "every checked command is still in the tour");
    // The tour's writes are all there.
    let jammi = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_jammi")).args(args).current_dir(dir.path()).env_remove("JAMMI_HOME").env_remove("JAMMI_CONFIG").output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert_eq!(jammi(&["--format", "csv", "sql", "SELECT label FROM mutable.public.labels WHERE doc_id = 1"]), "label\ndog\n");
    assert_eq!(jammi(&["--format", "csv", "sql", "SELECT count(*) AS n FROM vectors.public.docs"]), "n\n43\n", "40 imported, 5 appended, 2 deleted");
    assert!(jammi(&["--format", "csv", "model", "list"]).contains("champion"));
    assert!(dir.path().join(".jammi").is_dir(), "the default data directory is ./.jammi");
    for mut child in running {
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        assert!(child.wait().unwrap().success(), "jammi serve stops cleanly on SIGTERM");
    }
}
