//! Several processes on one data directory.

use std::collections::BTreeSet;

use crate::support::*;

#[test]
fn concurrent_processes_lose_no_registrations() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let mut children = Vec::new();
    for i in 0..6 {
        let file = dir.path().join(format!("f{i}.csv"));
        write(&file, &format!("x\n{i}\n"));
        // Each child registers a distinct name and races the others for a shared one.
        children.push(
            jammi(&home)
                .arg("sql")
                .arg("SELECT 1")
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        children.push(jammi(&home).args(["source", "add", &format!("s{i}")]).arg(&file).spawn().unwrap());
        children.push(
            jammi(&home)
                .args(["source", "add", "contested"])
                .arg(&file)
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    let mut contested_wins = 0;
    for (n, mut child) in children.into_iter().enumerate() {
        let status = child.wait().unwrap();
        if n % 3 == 2 {
            contested_wins += status.success() as usize;
        } else {
            assert!(status.success(), "child {n} failed");
        }
    }
    assert_eq!(contested_wins, 1);
    let listed = ok(jammi(&home).args(["source", "list", "--format", "ndjson"]));
    let names: BTreeSet<String> = listed
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["name"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = (0..6).map(|i| format!("s{i}")).chain(["contested".to_string()]).collect();
    assert_eq!(names, expected);
    // And every registration answers queries from a new process.
    let total = ok(jammi(&home).args([
        "--format",
        "csv",
        "sql",
        "SELECT (SELECT sum(x) FROM s0.public.f0) + (SELECT sum(x) FROM s5.public.f5) AS t",
    ]));
    assert_eq!(total, "t\n5\n");
}
