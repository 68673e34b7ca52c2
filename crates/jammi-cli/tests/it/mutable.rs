//! Mutable tables through the CLI: a writer killed with SIGKILL keeps every acknowledged
//! statement and no part of an unacknowledged one; writer processes never lose an update.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::support::*;

fn scalar(home: &std::path::Path, sql: &str) -> String {
    let out = ok(jammi(home).args(["--format", "csv", "sql", sql]));
    out.lines().nth(1).unwrap_or_default().to_string()
}

#[test]
fn acknowledged_statements_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(jammi(&home).args(["sql", "CREATE TABLE mutable.public.events (id BIGINT PRIMARY KEY, payload TEXT NOT NULL)"]));
    // 200 statements of 10 rows each; every statement prints its count when it commits.
    let statements: Vec<String> = (0..200)
        .map(|s| {
            let rows: Vec<String> = (0..10).map(|r| format!("({}, 's{s}r{r}')", s * 10 + r)).collect();
            format!("INSERT INTO mutable.public.events VALUES {}", rows.join(", "))
        })
        .collect();
    let mut child = jammi(&home)
        .args(["--format", "csv", "sql", &statements.join("; ")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = 0;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        if line.unwrap().trim() == "10" {
            acked += 1;
            if acked == 25 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(acked, 25, "the writer must have acknowledged 25 statements before the kill");

    let count: i64 = scalar(&home, "SELECT count(*) FROM mutable.public.events").parse().unwrap();
    assert_eq!(count % 10, 0, "a statement is all or nothing; found {count} rows");
    assert!(count >= 250, "every acknowledged statement survives; found {count} rows");
    // Exactly the first statements, with no gap.
    assert_eq!(scalar(&home, "SELECT max(id) + 1 FROM mutable.public.events").parse::<i64>().unwrap(), count);
}

#[test]
fn writer_processes_never_lose_an_increment() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(jammi(&home).args(["sql", "CREATE TABLE mutable.public.c (id INT PRIMARY KEY, n BIGINT NOT NULL); INSERT INTO mutable.public.c VALUES (1, 0)"]));
    let script = vec!["UPDATE mutable.public.c SET n = n + 1 WHERE id = 1"; 25].join("; ");
    let children: Vec<_> =
        (0..3).map(|_| jammi(&home).args(["sql", &script]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()).collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a writer failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(scalar(&home, "SELECT n FROM mutable.public.c"), "75");
}
