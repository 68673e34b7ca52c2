//! Ephemeral sessions across a crash: a process killed with SIGKILL in the middle of an
//! ephemeral session leaves its record in the catalog; once it expires, the next process to
//! open the data directory drops its tables — exactly once, even when two processes open it
//! at the same moment — with one signed `recovered` event.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use crate::support::*;

const KEY: &str = "5555555555555555555555555555555555555555555555555555555555555555";

fn lifecycle(home: &std::path::Path) -> Vec<String> {
    let out = ok(jammi(home).env("JAMMI_AUDIT__ENABLED", "true").env("JAMMI_AUDIT_KEY", KEY).args([
        "--format",
        "csv",
        "sql",
        "SELECT event, reason, rows_deleted, length(signature) FROM topics.public.\"jammi.audit.session_lifecycle.v1\" ORDER BY _offset",
    ]));
    out.lines().skip(1).map(str::to_string).collect()
}

#[test]
fn ephemeral_sessions_of_a_killed_process_are_recovered_once() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // The session's tables are written, then a query that never ends keeps the process busy.
    let sql = "SET ephemeral_session = '2s'; \
               CREATE TABLE mutable.public.scratch (id BIGINT PRIMARY KEY, note TEXT); \
               INSERT INTO mutable.public.scratch VALUES (1, 'a'), (2, 'b'), (3, 'c'); \
               SELECT 'ready' AS r; \
               SELECT count(*) FROM generate_series(1, 1000000000000)";
    let mut child = jammi(&home)
        .env("JAMMI_AUDIT__ENABLED", "true")
        .env("JAMMI_AUDIT_KEY", KEY)
        .args(["--format", "csv", "sql", sql])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("the process printed 'ready' before it ended").unwrap();
        if line == "ready" {
            break;
        }
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();

    // Not expired yet (twice its timeout after its last use): a new process leaves it be.
    assert_eq!(lifecycle(&home), vec!["opened,open,0,64"]);

    std::thread::sleep(Duration::from_millis(4500));
    // Two processes open the data directory at once; one of them recovers the session.
    let racers: Vec<_> = (0..2)
        .map(|_| jammi(&home).env("JAMMI_AUDIT__ENABLED", "true").env("JAMMI_AUDIT_KEY", KEY).args(["sql", "SELECT 1"]).stdout(Stdio::null()).spawn().unwrap())
        .collect();
    for mut racer in racers {
        assert!(racer.wait().unwrap().success());
    }
    assert_eq!(lifecycle(&home), vec!["opened,open,0,64", "recovered,recovery,3,64"]);
    // Its tables are gone: a new session's `scratch` starts empty, and the permanent
    // namespace never had one.
    let out = ok(jammi(&home).args([
        "--format",
        "csv",
        "sql",
        "SELECT count(*) AS n FROM information_schema.tables WHERE table_catalog = 'mutable' AND table_schema = 'public'",
    ]));
    assert_eq!(out.lines().nth(1), Some("0"));
    assert_eq!(lifecycle(&home).len(), 2, "recovered exactly once");
}
