//! Crash loops: each write path runs in a loop of real `jammi` processes, each write
//! acknowledged (a line on stdout) only after the command succeeded, and the whole loop is
//! killed with SIGKILL at a random moment. After every kill a fresh process must open the
//! data directory without repair and find every acknowledged write, nothing of an
//! unacknowledged one half-visible, and topic offsets gap-free and unique.
//!
//! Trials per path: `JAMMI_CRASH_TRIALS` (3 in `scripts/test.sh`; the long run is
//! `JAMMI_CRASH_TRIALS=100 bash scripts/test.sh cargo test -p jammi-cli --test it crashloop`).
//! The seed of the random kill moments is printed and taken from `JAMMI_CRASH_SEED` to
//! replay a failure.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;
use crate::vectors::write_vectors;

struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

fn trials() -> usize {
    std::env::var("JAMMI_CRASH_TRIALS").ok().and_then(|t| t.parse().ok()).unwrap_or(3)
}

fn random() -> Random {
    let seed = std::env::var("JAMMI_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("crash loop seed: JAMMI_CRASH_SEED={seed}");
    Random(seed)
}

/// Run the bash `driver` (with `$J` the jammi command on `home`) in `dir` and kill its whole
/// process group with SIGKILL after `after`; returns the lines it printed (its acks).
fn run_and_kill(dir: &Path, home: &Path, driver: &str, after: Duration) -> Vec<String> {
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(driver)
        .current_dir(dir)
        .env("J", format!("{} --data-dir {}", env!("CARGO_BIN_EXE_jammi"), home.display()))
        .env_remove("JAMMI_HOME")
        .env_remove("JAMMI_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    child.wait().unwrap();
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    out.lines().map(str::to_string).collect()
}

fn csv(home: &Path, sql: &str) -> Vec<Vec<String>> {
    let out = ok(jammi(home).args(["--format", "csv", "sql", sql]));
    out.lines().skip(1).map(|l| l.split(',').map(str::to_string).collect()).collect()
}

/// What an ack line acknowledges: a number, or an event's `_offset` (NDJSON).
fn ack_of(line: &str) -> Option<i64> {
    let line = line.trim();
    line.parse().ok().or_else(|| serde_json::from_str::<serde_json::Value>(line).ok()?["_offset"].as_i64())
}

/// Run `trials` kills of `driver` (made per trial), checking `check` with every ack so far
/// and those of the last trial.
fn crash_loop(name: &str, home: &Path, dir: &Path, driver: impl Fn(usize) -> String, check: impl Fn(&BTreeSet<i64>, &BTreeSet<i64>)) -> BTreeSet<i64> {
    let mut rng = random();
    let mut acked = BTreeSet::new();
    for trial in 0..trials() {
        let after = Duration::from_millis(100 + rng.below(1400));
        let lines = run_and_kill(dir, home, &driver(trial), after);
        let new: BTreeSet<i64> = lines.iter().map(|l| ack_of(l).unwrap_or_else(|| panic!("{name}: ack line {l:?}"))).collect();
        acked.extend(new.iter().copied());
        check(&acked, &new);
    }
    eprintln!("crash loop {name}: {} trials, {} acknowledged writes, 0 violations", trials(), acked.len());
    acked
}

/// Autocommit statements of 10 rows each, and multi-statement transactions.
#[test]
fn crash_loop_mutable_writes() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(jammi(&home).args(["sql", "CREATE TABLE mutable.public.t (g BIGINT, k BIGINT, PRIMARY KEY (g, k)); \
        CREATE TABLE mutable.public.log (i BIGINT PRIMARY KEY); CREATE TABLE mutable.public.acct (id INT PRIMARY KEY, n BIGINT NOT NULL); \
        INSERT INTO mutable.public.acct VALUES (1, 0)"]));
    // Even statements insert a group of 10 rows; odd ones are a transaction moving a counter.
    let driver = |trial: usize| {
        format!(
            r#"i={start}; while true; do
                 if [ $((i % 2)) = 0 ]; then $J sql "INSERT INTO mutable.public.t SELECT $i, value FROM generate_series(1, 10)" >/dev/null || exit 1;
                 else $J sql "BEGIN; INSERT INTO mutable.public.log VALUES ($i); UPDATE mutable.public.acct SET n = n + 1 WHERE id = 1; COMMIT" >/dev/null || exit 1; fi
                 echo $i; i=$((i+1)); done"#,
            start = trial * 100_000
        )
    };
    let _ = crash_loop("mutable", &home, dir.path(), driver, |acked, _| {
        let groups: BTreeMap<i64, i64> = csv(&home, "SELECT g, count(*) FROM mutable.public.t GROUP BY g").into_iter().map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap())).collect();
        for (g, n) in &groups {
            assert_eq!(*n, 10, "group {g}: a statement's rows are all there or none");
        }
        let logged: BTreeSet<i64> = csv(&home, "SELECT i FROM mutable.public.log").into_iter().map(|r| r[0].parse().unwrap()).collect();
        for a in acked {
            assert!(if a % 2 == 0 { groups.contains_key(a) } else { logged.contains(a) }, "acknowledged write {a} is lost");
        }
        // At most the one statement in flight per kill is present without an ack.
        let unacked = groups.keys().chain(&logged).filter(|i| !acked.contains(i)).count();
        assert!(unacked <= trials(), "{unacked} unacknowledged writes present");
        let n: usize = csv(&home, "SELECT n FROM mutable.public.acct")[0][0].parse().unwrap();
        assert_eq!(n, logged.len(), "a transaction's statements commit together");
    });
}

/// Single and batch publishes: acknowledged events present, offsets 0..n without gaps or
/// repeats, a batch all there or not at all.
#[test]
fn crash_loop_topic_publish() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(jammi(&home).args(["topic", "create", "ev", "--schema", "g:int64,k:int64"]));
    let driver = |trial: usize| {
        format!(
            r#"i={start}; while true; do
                 if [ $((i % 2)) = 0 ]; then data="{{\"g\": $i, \"k\": 0}}"; else data="[{{\"g\": $i, \"k\": 0}}, {{\"g\": $i, \"k\": 1}}, {{\"g\": $i, \"k\": 2}}]"; fi
                 $J topic publish ev --data "$data" >/dev/null || exit 1; echo $i; i=$((i+1)); done"#,
            start = trial * 100_000
        )
    };
    let _ = crash_loop("topic publish", &home, dir.path(), driver, |acked, _| {
        let stats = &csv(&home, "SELECT count(*), count(DISTINCT _offset), coalesce(min(_offset), 0), coalesce(max(_offset), -1) FROM topics.public.ev")[0];
        let (count, distinct, min, max): (i64, i64, i64, i64) = (stats[0].parse().unwrap(), stats[1].parse().unwrap(), stats[2].parse().unwrap(), stats[3].parse().unwrap());
        assert_eq!((count, distinct, min, max), (count, count, 0, count - 1), "offsets are 0..n, gap-free and unique");
        let groups: BTreeMap<i64, i64> = csv(&home, "SELECT g, count(*) FROM topics.public.ev GROUP BY g").into_iter().map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap())).collect();
        for (g, n) in &groups {
            assert_eq!(*n, if g % 2 == 0 { 1 } else { 3 }, "publish {g}: a batch is all there or not at all");
        }
        for a in acked {
            assert!(groups.contains_key(a), "acknowledged publish {a} is lost");
        }
    });
}

/// Consumer-group members killed while reading and acknowledging: no event is lost (each was
/// printed by a member before the kill, or goes to the next member once the killed member's
/// lease lapses), and once a member has drained the topic nothing is left pending.
#[test]
fn crash_loop_group_acknowledgement() {
    const EVENTS: i64 = 400;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(jammi(&home).args(["topic", "create", "ev", "--schema", "n:int64"]));
    let events: Vec<String> = (0..EVENTS).map(|n| format!(r#"{{"n": {n}}}"#)).collect();
    ok(jammi(&home).args(["topic", "publish", "ev", "--data", &format!("[{}]", events.join(","))]));
    // Members print straight to the pipe the test reads, so what a member printed (and then
    // acknowledged) is seen even when it is killed right after.
    let member = |extra: &str| format!("$J --format ndjson topic subscribe ev --group g --from-beginning --ack-timeout-seconds 1 {extra}");
    let driver = |_trial: usize| format!("while true; do {} || exit 1; done", member("--limit 7"));
    let printed = crash_loop("group acknowledgement", &home, dir.path(), driver, |acked, _| {
        assert!(acked.iter().all(|o| (0..EVENTS).contains(o)), "only offsets of the topic are delivered");
    });
    // Killed members' leases lapse after 1 s; a member then gets everything not yet
    // acknowledged (SIGTERM after a while ends it cleanly, acknowledging what it printed).
    std::thread::sleep(Duration::from_millis(1500));
    let drain = |seconds: u64| -> BTreeSet<i64> {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("timeout -s TERM {seconds} {}", member("")))
            .env("J", format!("{} --data-dir {}", env!("CARGO_BIN_EXE_jammi"), home.display()))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().map(|l| ack_of(l).unwrap_or_else(|| panic!("drain line {l:?}"))).collect()
    };
    let drained = drain(8);
    let all: BTreeSet<i64> = printed.union(&drained).copied().collect();
    assert_eq!(all, (0..EVENTS).collect::<BTreeSet<_>>(), "every event delivered at least once");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(drain(3).is_empty(), "after the drain nothing is pending or unacknowledged");
}

/// Vector appends, deletes and compactions.
#[test]
fn crash_loop_vector_writes() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    write_vectors(&dir.path().join("docs.parquet"), 0, 50);
    ok(jammi(&home).args(["vectors", "import", "docs", "./docs.parquet", "--id-column", "doc_id", "--vector-column", "vec"]).current_dir(dir.path()));
    // Files of 5 rows each; file i holds ids 1000 * (i + 1) ..+5.
    let files = 40 * trials().max(1);
    for i in 0..files {
        write_vectors(&dir.path().join(format!("more-{i}.parquet")), 1000 * (i as i64 + 1), 5);
    }
    // Every 4th step deletes the first row of the previous file; every 6th compacts.
    let driver = |trial: usize| {
        format!(
            r#"i={start}; while [ $i -lt {end} ]; do
                 $J vectors append docs ./more-$i.parquet >/dev/null || exit 1
                 if [ $((i % 4)) = 3 ]; then $J vectors delete docs --ids $((1000 * i)) >/dev/null || exit 1; fi
                 if [ $((i % 6)) = 5 ]; then $J vectors compact docs >/dev/null || exit 1; fi
                 echo $i; i=$((i+1)); done"#,
            start = trial * 40,
            end = trial * 40 + 40
        )
    };
    let _ = crash_loop("vector writes", &home, dir.path(), driver, |acked, _| {
        let ids: BTreeSet<i64> = csv(&home, "SELECT id FROM vectors.public.docs").into_iter().map(|r| r[0].parse().unwrap()).collect();
        let present: BTreeMap<i64, usize> = ids.iter().filter(|id| **id >= 1000).fold(BTreeMap::new(), |mut m, id| {
            *m.entry(id / 1000 - 1).or_default() += 1;
            m
        });
        for (file, n) in &present {
            // 5 rows, or 4 once the next step deleted the first.
            let first_gone = !ids.contains(&(1000 * (file + 1)));
            let must_delete = *file % 4 == 2 && acked.contains(&(file + 1));
            let may_delete = *file % 4 == 2;
            let ok = match n {
                5 => !must_delete,
                4 => may_delete && first_gone,
                _ => false,
            };
            assert!(ok, "file {file}: {n} rows; an append (and a delete) is all there or none");
        }
        for a in acked {
            assert!(present.contains_key(a), "acknowledged append {a} is lost");
        }
        // The index loads and answers.
        let found = ok(jammi(&home).args(["--format", "csv", "search", "docs", "--vector", "[1,0,0,0,0,0,0,0]", "--k", "3"]));
        assert_eq!(found.lines().count(), 4, "{found}");
    });
}

/// Artifact puts: every printed prefix is complete; a killed put is never served.
#[test]
fn crash_loop_artifact_put() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::write(dir.path().join("weights.bin"), vec![7u8; 3 << 20]).unwrap();
    std::fs::write(dir.path().join("config.json"), "{}").unwrap();
    let store = dir.path().join("store");
    let driver = |trial: usize| {
        format!(
            r#"i={start}; while true; do $J artifact put {store} job/w/$i weights.bin config.json >/dev/null || exit 1; echo $i; i=$((i+1)); done"#,
            start = trial * 100_000,
            store = store.display()
        )
    };
    // Each trial's prefixes are fetched and verified (earlier ones were, and stay written once).
    let _ = crash_loop("artifact put", &home, dir.path(), driver, |acked, new| {
        for a in new.iter().chain(acked.first()) {
            let prefix = format!("{}/job/w/{a}", store.display());
            ok(jammi(&home).args(["artifact", "fetch", &prefix]));
        }
    });
}

/// The first open of a data directory (catalog creation and migrations) killed at random:
/// the next open works without repair.
#[test]
fn crash_loop_first_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = random();
    for trial in 0..trials() {
        let home = dir.path().join(format!("fresh-{trial}"));
        let driver = "$J sql 'CREATE TABLE mutable.public.x (a INT PRIMARY KEY)' >/dev/null && echo 1";
        run_and_kill(dir.path(), &home, driver, Duration::from_millis(rng.below(250)));
        ok(jammi(&home).args(["sql", "CREATE TABLE IF NOT EXISTS mutable.public.x (a INT PRIMARY KEY); INSERT INTO mutable.public.x VALUES (1)"]));
        assert_eq!(csv(&home, "SELECT count(*) FROM mutable.public.x"), vec![vec!["1".to_string()]]);
    }
}

/// Training jobs as a CLI worker runs them — register, enqueue, claim, artifact put,
/// finalize — killed at random: every acknowledged job's model serves a complete artifact,
/// nothing serves an incomplete one; once the interrupted leases run out another worker
/// finishes every job, and `job gc` leaves only the winning attempts' files.
#[test]
fn crash_loop_job_finalize() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::write(dir.path().join("weights.bin"), vec![7u8; 1 << 20]).unwrap();
    std::fs::write(dir.path().join("config.json"), "{}").unwrap();
    let store = dir.path().join("store");
    // One job taken from the queue and finished; prints the payload's number once finalized.
    let work = |worker: &str, lease: u32| {
        format!(
            r#"L=$($J job claim --worker {worker} --lease-seconds {lease}) || exit 1; [ -n "$L" ] || exit 0
read job token root segs n < <(echo "$L" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(d["job_id"], d["token"], d["artifact_root"], d["segments"], d["payload"]["i"])')
$J artifact put $root $segs weights.bin config.json >/dev/null || exit 1
$J job finalize $job --token $token >/dev/null || exit 1
echo $n"#
        )
    };
    let driver = |trial: usize| {
        format!(
            r#"i={start}; while true; do
$J model register m v$i --task t >/dev/null || exit 1
$J job enqueue m v$i --root {store} --max-attempts 100 --payload "{{\"i\": $i}}" >/dev/null || exit 1
{work}
i=$((i+1)); done"#,
            start = trial * 100_000,
            store = store.display(),
            work = work("w", 3)
        )
    };
    // model version -> served artifact prefix (empty when none yet).
    let served = |home: &Path| -> BTreeMap<String, String> {
        let out = ok(jammi(home).args(["--format", "ndjson", "model", "list"]));
        out.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).map(|m| (m["version"].as_str().unwrap().to_string(), m["artifact"].as_str().unwrap_or("").to_string())).collect()
    };
    let acked = crash_loop("job finalize", &home, dir.path(), driver, |_, new| {
        let served = served(&home);
        for n in new {
            let prefix = &served[&format!("v{n}")];
            assert!(!prefix.is_empty(), "job for v{n} was acknowledged but its model serves nothing");
            ok(jammi(&home).args(["artifact", "fetch", prefix]));
        }
        // Nothing serves an artifact that is not complete, acknowledged or not.
        for prefix in served.values().filter(|p| !p.is_empty()) {
            ok(jammi(&home).args(["artifact", "fetch", prefix]));
        }
    });
    // Recovery: the interrupted leases run out, another worker finishes every job.
    std::thread::sleep(Duration::from_millis(3500));
    let finish = format!("while true; do out=$({}) || exit 1; [ -n \"$out\" ] || exit 0; echo $out; done", work("recovery", 120));
    let status = Command::new("bash").arg("-c").arg(&finish).current_dir(dir.path()).env("J", format!("{} --data-dir {}", env!("CARGO_BIN_EXE_jammi"), home.display())).status().unwrap();
    assert!(status.success());
    let jobs = ok(jammi(&home).args(["--format", "ndjson", "job", "list"]));
    let jobs: Vec<serde_json::Value> = jobs.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(jobs.iter().all(|j| j["state"] == "succeeded"), "{jobs:?}");
    // Every job's winning artifact is what its model serves (a model registered by a loop
    // killed before it enqueued a job serves nothing, rightly).
    let served = served(&home);
    for job in &jobs {
        let artifact = job["artifact"].as_str().unwrap();
        assert!(served.values().any(|p| p == artifact), "job {job} finished with {artifact}, which no model serves: {served:?}");
    }
    assert!(acked.iter().all(|n| !served[&format!("v{n}")].is_empty()));
    ok(jammi(&home).args(["job", "gc"]));
    // Only the winners' files are left in the store.
    let winners: Vec<String> = served.values().filter(|p| !p.is_empty()).map(|p| p.trim_start_matches("file://").trim_end_matches('/').to_string()).collect();
    let mut stack = vec![store.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let text = path.display().to_string();
                assert!(winners.iter().any(|w| text.starts_with(&format!("{w}/"))), "{text} is left over from a losing attempt");
            }
        }
    }
}
