//! `jammi model` and `jammi job`: the registry through the CLI, and worker *processes* —
//! every claim, put and finalize a separate `jammi` process on one catalog — completing
//! every job exactly once, with a crashed worker's job taken over after its lease.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::support::*;

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    let value: serde_json::Value = serde_json::from_str(text).unwrap();
    value.as_array().unwrap().clone()
}

#[test]
fn model_registry_commands() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(jammi(&home).args(["model", "register", "encoder", "v1", "--task", "embedding", "--dimensions", "384", "--metadata", r#"{"base":"minilm"}"#]));
    ok(jammi(&home).args(["model", "register", "encoder", "v2", "--task", "embedding"]));
    let dup = fails(jammi(&home).args(["model", "register", "encoder", "v1", "--task", "embedding"]));
    assert!(dup.contains("encoder:v1") && dup.contains("already registered"), "{dup}");
    let bad = fails(jammi(&home).args(["model", "register", "encoder", "v3", "--task", "embedding", "--metadata", "{oops"]));
    assert!(bad.contains("--metadata"), "{bad}");
    assert_eq!(ok(jammi(&home).args(["model", "alias", "encoder", "champion", "v1"])).trim(), "encoder@champion -> v1");
    let described = json_lines(&ok(jammi(&home).args(["--format", "json", "model", "describe", "encoder", "champion"])));
    assert_eq!((described.len(), described[0]["version"].as_str(), described[0]["aliases"].as_str()), (1, Some("v1"), Some("champion")));
    assert_eq!(described[0]["dimensions"], 384);
    let all = json_lines(&ok(jammi(&home).args(["--format", "json", "model", "list"])));
    assert_eq!(all.len(), 2);
    let missing = fails(jammi(&home).args(["model", "describe", "encoder", "nope"]));
    assert!(missing.contains("encoder:nope"), "{missing}");
    ok(jammi(&home).args(["model", "rm", "encoder", "v2"]));
    assert_eq!(json_lines(&ok(jammi(&home).args(["--format", "json", "model", "list"]))).len(), 1);
    let lost = fails(jammi(&home).args(["job", "heartbeat", "no-such-job", "--token", "x"]));
    assert!(lost.contains("no longer holds"), "{lost}");
}

/// An embedding model registered from its directory (the real all-MiniLM-L6-v2 that
/// scripts/test.sh installs) embeds text from the command line; a second process loads it
/// from the verified artifact copy, never from the original directory.
#[test]
fn embedding_model_from_a_directory() {
    let model_dir = std::path::PathBuf::from(std::env::var("JAMMI_TEST_MINILM_DIR").expect("JAMMI_TEST_MINILM_DIR: run through scripts/test.sh"));
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // A copy, removed after registering: the model must live on in the artifact store.
    let copy = dir.path().join("minilm");
    std::fs::create_dir_all(copy.join("1_Pooling")).unwrap();
    for name in ["config.json", "tokenizer.json", "model.safetensors", "sentence_bert_config.json", "1_Pooling/config.json"] {
        std::fs::copy(model_dir.join(name), copy.join(name)).unwrap();
    }
    let registered = json_lines(&ok(jammi(&home).args(["--format", "json", "model", "register", "minilm", "v1", "--task", "embedding", "--dimensions", "384", "--from"]).arg(&copy)));
    let prefix = registered[0]["artifact"].as_str().unwrap().to_string();
    assert!(prefix.contains("/models/minilm/v1/"), "{prefix}");
    std::fs::remove_dir_all(&copy).unwrap();
    let out = ok(jammi(&home).args(["model", "embed", "minilm", "v1", "A man is playing a guitar.", "Someone is strumming a guitar."]));
    let vectors: Vec<Vec<f32>> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!((vectors.len(), vectors[0].len()), (2, 384));
    let cos: f32 = vectors[0].iter().zip(&vectors[1]).map(|(a, b)| a * b).sum();
    assert!(cos > 0.6 && cos < 0.8, "{cos}");
    let missing = fails(jammi(&home).args(["model", "register", "other", "v1", "--task", "embedding", "--from"]).arg(dir.path().join("nowhere")));
    assert!(missing.contains("nowhere"), "{missing}");

    // Import with the vectors computed inside the engine, then search by text.
    let file = dir.path().join("notes.parquet");
    ok(jammi(&home).args(["sql", &format!(
        "COPY (SELECT column1 AS id, column2 AS body FROM (VALUES (1, 'A man is playing a guitar.'), (2, 'The stock market fell sharply on Tuesday.'), (3, 'A recipe for bread with flour, water and yeast.'))) TO '{}' STORED AS PARQUET",
        file.display()
    )]));
    let bad = fails(jammi(&home).args(["vectors", "import", "notes"]).arg(&file).args(["--id-column", "id", "--embed", "body", "--model", "minilm"]));
    assert!(bad.contains("NAME:VERSION"), "{bad}");
    ok(jammi(&home).args(["vectors", "import", "notes"]).arg(&file).args(["--id-column", "id", "--embed", "body", "--model", "minilm:v1"]));
    let found = ok(jammi(&home).args(["--format", "csv", "search", "notes", "--text", "Someone is strumming a guitar.", "--k", "1"]));
    assert_eq!(found.lines().nth(1).unwrap().split(',').next(), Some("1"), "{found}");
    let found = ok(jammi(&home).args(["--format", "csv", "sql", "SELECT id FROM vector_search('notes', 'shares and prices dropped', 1)"]));
    assert_eq!(found.lines().nth(1), Some("2"), "{found}");

    // An import cut short after 60 % of its rows were embedded resumes from its checkpoints.
    let big = dir.path().join("big.parquet");
    ok(jammi(&home).args(["sql", &format!(
        "COPY (SELECT value AS id, 'note ' || CAST(value AS VARCHAR) || ' on subject ' || CAST(value % 7 AS VARCHAR) AS body FROM generate_series(1, 640)) TO '{}' STORED AS PARQUET",
        big.display()
    )]));
    let import = |pause: Option<&str>| {
        let mut cmd = jammi(&home);
        cmd.args(["vectors", "import", "big"]).arg(&big).args(["--id-column", "id", "--embed", "body", "--model", "minilm:v1"]).env("JAMMI_LOG", "info");
        if let Some(at) = pause {
            cmd.env("JAMMI_PAUSE_AT", at);
        }
        cmd
    };
    let mut cut = import(Some("vectors.import.embedded_chunk_5")).stderr(std::process::Stdio::piped()).stdout(std::process::Stdio::null()).spawn().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(cut.stderr.take().unwrap()));
    assert!(lines.any(|l| l.unwrap().contains("paused at vectors.import.embedded_chunk_5")), "the import never reached 60 %");
    cut.kill().unwrap();
    cut.wait().unwrap();
    let kept = files_under(&home).into_iter().filter(|p| p.to_string_lossy().contains("/imports/") && p.ends_with("vectors.f32") && !p.to_string_lossy().contains("/cache/")).count();
    assert_eq!(kept, 6, "six chunks of 64 rows were kept before the cut");
    let resumed = import(None).output().unwrap();
    let log = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{log}");
    assert!(log.contains("384 of 640 rows were already embedded"), "{log}");
    let count = ok(jammi(&home).args(["--format", "csv", "sql", "SELECT count(*) FROM vectors.public.big"]));
    assert_eq!(count.lines().nth(1), Some("640"), "{count}");
    let found = ok(jammi(&home).args(["--format", "csv", "search", "big", "--text", "note 500 on subject 3", "--k", "1"]));
    assert_eq!(found.lines().nth(1).unwrap().split(',').next(), Some("500"), "{found}");
    let leftovers = files_under(&home).into_iter().filter(|p| p.to_string_lossy().contains("/imports/") && !p.to_string_lossy().contains("/cache/")).count();
    assert_eq!(leftovers, 0, "the checkpoints are removed once the table is committed");

    // A vector table that follows a mutable table: created with its rows embedded, behind
    // after a write until a worker runs, current after `jammi worker --once`.
    ok(jammi(&home).args(["sql", "CREATE TABLE mutable.public.docs (id BIGINT PRIMARY KEY, body TEXT); INSERT INTO mutable.public.docs VALUES (1, 'A recipe for bread with flour, water and yeast.')"]));
    let bad = fails(jammi(&home).args(["vectors", "follow", "docs_vec", "--from", "mutable.public.docs", "--embed", "id", "--model", "minilm:v1"]));
    assert!(bad.contains("not text"), "{bad}");
    ok(jammi(&home).args(["vectors", "follow", "docs_vec", "--from", "mutable.public.docs", "--embed", "body", "--model", "minilm:v1"]));
    ok(jammi(&home).args(["sql", "INSERT INTO mutable.public.docs VALUES (2, 'The stock market fell sharply on Tuesday.')"]));
    let status = json_lines(&ok(jammi(&home).args(["--format", "json", "vectors", "status", "docs_vec"])));
    assert_eq!((status[0]["rows"].as_u64(), status[0]["pending"].as_i64()), (Some(1), Some(1)), "{status:?}");
    let worked = ok(jammi(&home).args(["worker", "--once"]));
    assert!(worked.contains("docs_vec: embedded 1"), "{worked}");
    let status = json_lines(&ok(jammi(&home).args(["--format", "json", "vectors", "status", "docs_vec"])));
    assert_eq!((status[0]["rows"].as_u64(), status[0]["pending"].as_i64()), (Some(2), Some(0)), "{status:?}");
    let found = ok(jammi(&home).args(["--format", "csv", "search", "docs_vec", "--text", "shares and prices dropped", "--k", "1"]));
    assert_eq!(found.lines().nth(1).unwrap().split(',').next(), Some("2"), "{found}");

    // A long-running worker process picks up writes of another process by itself.
    let mut worker = jammi(&home).args(["worker", "--poll-ms", "100"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    ok(jammi(&home).args(["sql", "DELETE FROM mutable.public.docs WHERE id = 1"]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        let status = json_lines(&ok(jammi(&home).args(["--format", "json", "vectors", "status", "docs_vec"])));
        // Until the delete is embedded: nothing pending *and* the row gone (a status read
        // right after the DELETE may not count it as pending yet).
        let done = status[0]["pending"].as_i64() == Some(0) && status[0]["rows"].as_u64() == Some(1);
        if done || std::time::Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let _ = worker.kill();
    let _ = worker.wait();
    assert_eq!((status[0]["rows"].as_u64(), status[0]["pending"].as_i64()), (Some(1), Some(0)), "{status:?}");
}

/// One worker process step: claim, put the artifact where the lease says, finalize.
/// Returns the job it finalized, or None when nothing was claimable.
fn work_once(home: &Path, worker: &str, files: &Path, crash: bool) -> Option<(String, bool)> {
    let claimed = ok(jammi(home).args(["job", "claim", "--worker", worker, "--lease-seconds", if crash { "1" } else { "30" }]));
    if claimed.trim().is_empty() {
        return None;
    }
    let lease: serde_json::Value = serde_json::from_str(claimed.trim()).unwrap();
    let (job, token) = (lease["job_id"].as_str().unwrap().to_string(), lease["token"].as_str().unwrap().to_string());
    let weights = files.join(format!("{worker}-{}.bin", lease["attempt"]));
    std::fs::write(&weights, format!("{job} by {worker}")).unwrap();
    let prefix = ok(jammi(home).arg("artifact").arg("put").arg(lease["artifact_root"].as_str().unwrap()).arg(lease["segments"].as_str().unwrap()).arg(&weights));
    assert_eq!(prefix.trim(), lease["artifact_prefix"].as_str().unwrap());
    if crash {
        // The worker dies here: no finalize, no fail. Its lease runs out.
        return Some((job, false));
    }
    let out = jammi(home).args(["job", "finalize", &job, "--token", &token]).output().unwrap();
    Some((job, out.status.success()))
}

#[test]
fn worker_processes_complete_every_job_once_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    worker_processes(dir.path(), None);
}

/// The same with the catalog on the real PostgreSQL server from scripts/test.sh.
#[test]
fn worker_processes_complete_every_job_once_on_postgres() {
    let admin = std::env::var("JAMMI_TEST_PG_URL").expect("JAMMI_TEST_PG_URL is not set: run the tests through scripts/test.sh");
    let db = format!("jammi_cli_{}", std::process::id());
    let created = std::process::Command::new("psql").arg(&admin).args(["-q", "-c", &format!("CREATE DATABASE {db}")]).status().expect("run psql");
    assert!(created.success(), "create the test database");
    let url = format!("{}/{db}", admin.rsplit_once('/').unwrap().0);
    let dir = tempfile::tempdir().unwrap();
    worker_processes(dir.path(), Some(&url));
}

/// Worker processes on the catalog of `home/jammi.toml` (SQLite when `catalog_url` is None).
fn worker_processes(dir: &Path, catalog_url: Option<&str>) {
    const JOBS: usize = 10;
    let home = dir.join("home");
    if let Some(url) = catalog_url {
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join("jammi.toml"), format!("[catalog]\nurl = \"{url}\"\n")).unwrap();
    }
    let root = dir.join("artifacts");
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    for j in 0..JOBS {
        let version = format!("v{j}");
        ok(jammi(&home).args(["model", "register", "m", &version, "--task", "classification"]));
        ok(jammi(&home).args(["job", "enqueue", "m", &version, "--root"]).arg(&root).args(["--priority", &(j % 2).to_string()]));
    }
    // A worker that claims one job and crashes.
    let (crashed_job, _) = work_once(&home, "crasher", &files, true).unwrap();

    let wins: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let threads: Vec<_> = (0..3)
        .map(|w| {
            let (home, files, wins) = (home.clone(), files.clone(), Arc::clone(&wins));
            std::thread::spawn(move || {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
                loop {
                    assert!(std::time::Instant::now() < deadline, "workers did not finish");
                    match work_once(&home, &format!("worker-{w}"), &files, false) {
                        Some((job, true)) => *wins.lock().unwrap().entry(job).or_default() += 1,
                        Some((_, false)) => {}
                        None => {
                            let jobs = json_lines(&ok(jammi(&home).args(["--format", "json", "job", "list"])));
                            if jobs.iter().all(|j| j["state"] == "succeeded") {
                                return;
                            }
                            std::thread::sleep(std::time::Duration::from_millis(200));
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let wins = wins.lock().unwrap().clone();
    let jobs = json_lines(&ok(jammi(&home).args(["--format", "json", "job", "list"])));
    assert_eq!(jobs.len(), JOBS);
    for job in &jobs {
        let id = job["id"].as_str().unwrap();
        assert_eq!(job["state"], "succeeded", "{job}");
        assert_eq!(wins.get(id), Some(&1), "job {id} finalized exactly once");
        if id == crashed_job {
            assert_eq!(job["attempts"], "2/3", "the crashed attempt's job was taken over");
        }
    }
    // Every served pointer names a complete artifact; fetch verifies every digest.
    for model in json_lines(&ok(jammi(&home).args(["--format", "json", "model", "list"]))) {
        let prefix = model["artifact"].as_str().expect("served");
        let local = ok(jammi(&home).args(["artifact", "fetch", prefix]));
        assert!(Path::new(local.trim()).join("manifest.json").exists());
    }
    // The crashed attempt's artifact was collected when its job finished.
    let crashed = root.join("shared").join(&crashed_job).join("crasher").join("attempt-1");
    assert!(!crashed.join("manifest.json").exists() && !crashed.join("crasher-1.bin").exists(), "the crashed attempt's files are collected");
}
