//! Topics through the CLI: two processes publishing to one topic get unique, contiguous
//! offsets; a subscriber process prints NDJSON with `_offset`, replaying then following.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::support::*;

#[test]
fn two_publisher_processes_get_contiguous_unique_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(jammi(&home).args(["topic", "create", "ev", "--schema", "id:int64,who:string"]));
    // A subscriber from the beginning, started before the publishers.
    let mut subscriber = jammi(&home)
        .args(["topic", "subscribe", "ev", "--from-beginning", "--limit", "120"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let publishers: Vec<_> = ["a", "b"]
        .iter()
        .map(|who| {
            let home = home.clone();
            let who = who.to_string();
            std::thread::spawn(move || {
                for i in 0..20 {
                    let lines: Vec<String> = (0..3).map(|j| format!("{{\"id\": {}, \"who\": \"{who}\"}}", i * 3 + j)).collect();
                    ok(jammi(&home).args(["topic", "publish", "ev", "--data", &lines.join("\n")]));
                }
            })
        })
        .collect();
    for p in publishers {
        p.join().unwrap();
    }
    let mut offsets = Vec::new();
    for line in BufReader::new(subscriber.stdout.take().unwrap()).lines() {
        let event: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        offsets.push(event["_offset"].as_i64().unwrap());
        assert!(event["who"].is_string() && event["id"].is_i64(), "{event}");
    }
    assert!(subscriber.wait().unwrap().success());
    assert_eq!(offsets, (0..120).collect::<Vec<_>>(), "in order, no gap, no duplicate");
    let out = ok(jammi(&home).args(["--format", "csv", "sql", "SELECT count(*), count(DISTINCT _offset), min(_offset), max(_offset) FROM topics.public.ev"]));
    assert_eq!(out.lines().nth(1).unwrap(), "120,120,0,119");
    // A bad publish is one clear error and writes nothing.
    let err = fails(jammi(&home).args(["topic", "publish", "ev", "--data", "{\"id\": \"x\", \"who\": \"c\"}"]));
    assert!(err.contains("'id'") || err.contains("id"), "{err}");
    let out = ok(jammi(&home).args(["--format", "csv", "topic", "list"]));
    assert!(out.contains(",0,120,"), "{out}");
}

/// A group member that ends — its `--limit` reached, or SIGINT — hands the events it claimed
/// but did not print back at once: the next member does not wait for the ack timeout (30 s).
#[test]
fn group_members_hand_over_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(jammi(&home).args(["topic", "create", "jobs", "--schema", "n:int64"]));
    let events: Vec<String> = (0..30).map(|n| format!(r#"{{"n": {n}}}"#)).collect();
    ok(jammi(&home).args(["topic", "publish", "jobs", "--data", &format!("[{}]", events.join(","))]));
    let offsets = |text: &str| -> Vec<i64> { text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["_offset"].as_i64().unwrap()).collect() };

    // --limit: the first member printed 10 of the 30 it claimed.
    let first = ok(jammi(&home).args(["topic", "subscribe", "jobs", "--group", "g", "--from-beginning", "--limit", "10"]));
    assert_eq!(offsets(&first), (0..10).collect::<Vec<_>>());
    let started = std::time::Instant::now();
    let second = ok(jammi(&home).args(["topic", "subscribe", "jobs", "--group", "g", "--from-beginning", "--limit", "10"]));
    assert_eq!(offsets(&second), (10..20).collect::<Vec<_>>());
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "the second member waited {:?}", started.elapsed());

    // A member reading from a pipe stops at its limit with 5 claimed events unprinted ...
    let mut member = jammi(&home)
        .args(["topic", "subscribe", "jobs", "--group", "h", "--from-beginning", "--limit", "25"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(member.stdout.take().unwrap()));
    let printed: Vec<String> = (0..25).map(|_| lines.next().unwrap().unwrap()).collect();
    assert_eq!(offsets(&printed.join("\n")), (0..25).collect::<Vec<_>>());
    assert!(member.wait().unwrap().success());
    // ... which the next member gets at once; it then waits for more, until SIGINT.
    let mut waiting = jammi(&home)
        .args(["topic", "subscribe", "jobs", "--group", "h", "--from-beginning"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(waiting.stdout.take().unwrap()));
    let rest: Vec<String> = (0..5).map(|_| lines.next().unwrap().unwrap()).collect();
    assert_eq!(offsets(&rest.join("\n")), (25..30).collect::<Vec<_>>());
    // Events published while it listens are delivered live; SIGINT then ends it cleanly (exit
    // 0, what it printed acknowledged, its membership handed back).
    ok(jammi(&home).args(["topic", "publish", "jobs", "--data", r#"[{"n": 30}, {"n": 31}]"#]));
    let more: Vec<String> = (0..2).map(|_| lines.next().unwrap().unwrap()).collect();
    assert_eq!(offsets(&more.join("\n")), vec![30, 31]);
    let status = std::process::Command::new("kill").args(["-INT", &waiting.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert!(waiting.wait().unwrap().success(), "SIGINT ends a subscription cleanly");
    ok(jammi(&home).args(["topic", "publish", "jobs", "--data", r#"{"n": 32}"#]));
    let started = std::time::Instant::now();
    let next = ok(jammi(&home).args(["topic", "subscribe", "jobs", "--group", "h", "--from-beginning", "--limit", "1"]));
    assert_eq!(offsets(&next), vec![32]);
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
}
