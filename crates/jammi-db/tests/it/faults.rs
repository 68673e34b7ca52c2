//! Faults from outside the engine, on a real small disk (a 16 MiB tmpfs `scripts/test.sh`
//! mounts): the disk filling up during mutable writes, topic publishes and vector imports,
//! then space freed; and the data directory turning read-only, then writable again. Each
//! failing write must be one clear error that leaves everything as it was, and the same
//! write must work once the fault is gone — in the same process and after a reopen.

use std::io::Write;
use std::path::{Path, PathBuf};

use jammi_db::topic::{TopicDefinition, TopicSpec};
use jammi_db::vector::{ImportSpec, NoProgress};
use jammi_db::{Config, Session};

use crate::support::*;
use crate::vectors::{clustered, rows_from, write_rows};

fn small_disk() -> (PathBuf, String) {
    (PathBuf::from(require_env("JAMMI_TEST_SMALL_DISK")), require_env("JAMMI_TEST_SMALL_DISK_CTL"))
}

fn set_disk(ctl: &str, mode: &str) {
    // A file another thread is still closing keeps the disk busy for a moment.
    for _ in 0..50 {
        if std::process::Command::new(ctl).arg(mode).status().expect("run the small-disk control script").success() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("remount the small disk {mode}");
}

/// Fill the disk with `path` until the filesystem says it is full.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 256 * 1024];
    loop {
        if let Err(e) = file.write_all(&chunk).and_then(|_| file.sync_all()) {
            assert_eq!(e.raw_os_error(), Some(libc_enospc()), "filling the disk: {e}");
            return;
        }
    }
}

fn libc_enospc() -> i32 {
    28
}

async fn run(session: &Session, sql: &str) -> Result<(), String> {
    match session.sql(sql).await {
        Ok(frame) => frame.collect().await.map(|_| ()).map_err(|e| jammi_db::Error::from(e).to_string()),
        Err(e) => Err(e.to_string()),
    }
}

fn one_clear_line(what: &str, message: &str) {
    assert!(!message.contains('\n') && !message.contains("panicked"), "{what}: {message}");
}

async fn counts(session: &Session) -> (String, String, String) {
    (
        scalar(session, "SELECT count(*) FROM mutable.public.notes").await,
        scalar(session, "SELECT count(*) FROM topics.public.ev").await,
        scalar(session, "SELECT count(*) FROM vectors.public.docs").await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_and_read_only_data_directory() {
    let (disk, ctl) = small_disk();
    let home = disk.join(format!("home-{}", std::process::id()));
    let scratch = tempfile::tempdir().unwrap();
    let vectors_file = scratch.path().join("docs.parquet");
    write_rows(&vectors_file, &rows_from(clustered(400, 32, 5), 1), true);
    let session = Session::open(Config::embedded(&home)).await.unwrap();
    run(&session, "CREATE TABLE mutable.public.notes (id BIGINT PRIMARY KEY, body TEXT)").await.unwrap();
    run(&session, "INSERT INTO mutable.public.notes VALUES (1, 'first')").await.unwrap();
    let topics = session.topics();
    topics.create(TopicDefinition { name: "ev".into(), columns: TopicSpec::parse_schema("n:int64,pad:string").unwrap(), source_table: None, retention: Default::default() }).await.unwrap();
    topics.publish_json("ev", r#"{"n": 1, "pad": "x"}"#).await.unwrap();
    let import = |name: &str| ImportSpec::new(name, vectors_file.display().to_string(), "id", "embedding");
    session.vectors().import(import("docs"), &NoProgress).await.unwrap();
    let before = counts(&session).await;

    // The disk fills up: every write path fails with one clear line and changes nothing.
    let filler = disk.join("filler");
    fill(&filler);
    let big = "y".repeat(2 << 20);
    let err = run(&session, &format!("INSERT INTO mutable.public.notes VALUES (2, '{big}'), (3, '{big}')")).await.expect_err("a mutable write on a full disk");
    one_clear_line("mutable insert", &err);
    assert!(err.contains("full"), "the message says the disk is full: {err}");
    let pad = "z".repeat(512 << 10);
    let events: Vec<String> = (0..8).map(|n| format!(r#"{{"n": {n}, "pad": "{pad}"}}"#)).collect();
    let err = topics.publish_json("ev", &events.join("\n")).await.expect_err("a publish on a full disk").to_string();
    one_clear_line("topic publish", &err);
    assert!(err.contains("full"), "the message says the disk is full: {err}");
    let err = session.vectors().import(import("docs2"), &NoProgress).await.expect_err("an import on a full disk").to_string();
    one_clear_line("vector import", &err);
    assert!(err.contains(&home.display().to_string()) || err.contains("full") || err.contains("No space"), "the message names the path or the cause: {err}");
    assert_eq!(counts(&session).await, before, "nothing half-written");
    assert!(session.vectors().list().await.unwrap().iter().all(|t| t.name != "docs2"), "no half-imported table is listed");

    // Space freed: the same writes work, in this process and after a reopen.
    std::fs::remove_file(&filler).unwrap();
    run(&session, &format!("INSERT INTO mutable.public.notes VALUES (2, '{big}')")).await.unwrap();
    topics.publish_json("ev", &events[..2].join("\n")).await.unwrap();
    session.vectors().import(import("docs2"), &NoProgress).await.unwrap();
    drop(session);
    let session = Session::open(Config::embedded(&home)).await.expect("reopens without repair");
    assert_eq!(counts(&session).await, ("2".into(), "3".into(), "400".into()));
    assert_eq!(scalar(&session, "SELECT count(*) FROM vectors.public.docs2").await, "400");

    // The data directory is read-only (the disk remounted so while the engine is stopped:
    // a mounted filesystem with files open for writing cannot be): opening says why in one
    // line, or opens for reading with writes refused clearly; writable again, all works.
    // Closed, not just dropped: a dropped pool closes its SQLite files in the background,
    // and a filesystem with files open for writing cannot be remounted read-only.
    session.close().await;
    drop(session);
    set_disk(&ctl, "ro");
    let outcome = match Session::open(Config::embedded(&home)).await {
        Err(e) => Err(e.to_string()),
        Ok(session) => {
            let read = run(&session, "SELECT count(*) FROM mutable.public.notes").await;
            let write = run(&session, "INSERT INTO mutable.public.notes VALUES (9, 'while read-only')").await;
            Ok((read, write))
        }
    };
    set_disk(&ctl, "rw");
    match outcome {
        Err(e) => {
            one_clear_line("open read-only", &e);
            assert!(e.to_lowercase().contains("read"), "the message says why: {e}");
        }
        Ok((_, write)) => {
            let e = write.expect_err("a write to a read-only catalog");
            one_clear_line("read-only insert", &e);
            assert!(e.to_lowercase().contains("read"), "the message says why: {e}");
        }
    }
    let session = Session::open(Config::embedded(&home)).await.expect("opens once writable");
    run(&session, "INSERT INTO mutable.public.notes VALUES (9, 'writable again')").await.unwrap();
    assert_eq!(scalar(&session, "SELECT count(*) FROM mutable.public.notes").await, "3");
    drop(session);
    std::fs::remove_dir_all(&home).unwrap();
}
