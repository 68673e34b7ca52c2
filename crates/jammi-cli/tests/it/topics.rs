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
