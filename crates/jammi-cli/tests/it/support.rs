//! Running the real `jammi` binary.

use std::path::{Path, PathBuf};
use std::io::Read;
use std::process::{Child, Command, Output, Stdio};

pub fn jammi(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jammi"));
    cmd.arg("--data-dir").arg(data_dir);
    cmd.env_remove("JAMMI_HOME").env_remove("JAMMI_CONFIG");
    cmd
}

/// Run and require success; returns stdout.
pub fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run jammi");
    assert!(
        out.status.success(),
        "jammi failed ({}): {}\nstdout: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Run and require failure with a one-line error; returns that line.
pub fn fails(cmd: &mut Command) -> String {
    let out: Output = cmd.output().expect("run jammi");
    assert!(!out.status.success(), "expected failure, got: {}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one-line error expected, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    lines[0].to_string()
}

pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Every file under `dir`, at any depth (none when `dir` does not exist).
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Run `cmd` to completion and return (success, stdout, stderr, peak RSS in bytes) of that
/// one child. The peak is the child's own high-water mark (`VmHWM`), read every few
/// milliseconds until it exits: it starts afresh at exec, where `wait4`'s `ru_maxrss` also
/// counts the test process the child was spawned from (hundreds of MB while the suite runs).
pub fn run_measured(cmd: &mut Command) -> (bool, String, String, u64) {
    let mut child: Child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    // Read the outputs on threads so a full pipe can never block the child.
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        let hwm = std::fs::read_to_string(&status_file)
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse::<u64>().ok());
        peak_kib = peak_kib.max(hwm.unwrap_or(0));
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    assert!(peak_kib > 0, "could not read the child's memory use");
    (status.success(), out.join().unwrap(), err.join().unwrap(), peak_kib * 1024)
}

/// A `jammi serve` process and its addresses.
pub struct Running {
    pub child: Child,
    pub http: String,
    pub pg_port: String,
    pub flight_port: String,
}

/// Start `jammi serve` on free loopback ports and read its start-up line.
pub fn serve(data_dir: &Path) -> Running {
    serve_with(data_dir, &[])
}

/// [`serve`] with more arguments.
pub fn serve_with(data_dir: &Path, extra: &[&str]) -> Running {
    let mut child = jammi(data_dir)
        .args(["serve", "--http", "127.0.0.1:0", "--pg", "127.0.0.1:0", "--flight", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        // Its log goes to a file (a pipe nobody reads would fill and stall it).
        .stderr(std::fs::File::create(data_dir.with_extension("serve.log")).expect("server log file"))
        .spawn()
        .expect("start jammi serve");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let started: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("start-up line {line:?}: {e}"));
    let http = format!("http://{}", started["listening"]["http"].as_str().unwrap());
    let port = |name: &str| started["listening"][name].as_str().unwrap().rsplit(':').next().unwrap().to_string();
    Running { child, http, pg_port: port("pg"), flight_port: port("flight") }
}

/// SIGTERM, and require a clean exit.
pub fn stop(mut running: Running) {
    let pid = running.child.id() as i32;
    // SIGTERM: the server drains and exits 0.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = running.child.wait().unwrap();
    assert!(status.success(), "jammi serve exited with {status}");
}

/// The records `jammi audit verify` (run on `home`) checked in `tenant`'s chain, once there
/// are `at_least` of them or 5 s have passed (servers commit audit records in batches,
/// within milliseconds of answering); every check on the way must report the chain valid.
pub fn audited_records(home: &Path, tenant: &str, at_least: u64) -> u64 {
    let mut checked = 0;
    for _ in 0..50 {
        let out = ok(jammi(home).args(["--format", "json", "audit", "verify"]));
        let chains: serde_json::Value = serde_json::from_str(&out).unwrap();
        if let Some(mine) = chains.as_array().unwrap().iter().find(|c| c["tenant"] == tenant) {
            assert_eq!(mine["status"], "ok", "{out}");
            checked = mine["checked"].as_u64().unwrap();
        }
        if checked >= at_least {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    checked
}

/// A deployment's shared parts: a fresh Postgres database, a fresh prefix on the S3 server,
/// the JetStream server; and the data directories of the processes that join it.
pub struct Deployment {
    pub dir: tempfile::TempDir,
    pub config: String,
    /// Its Postgres database, also the prefix of its storage root on the S3 server.
    pub db: String,
}

pub fn require(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the tests through scripts/test.sh"))
}

impl Deployment {
    pub fn new(name: &str) -> Deployment {
        let admin = require("JAMMI_TEST_PG_URL");
        let db = format!("jammi_{name}_{}", std::process::id());
        let created = Command::new("psql").arg(&admin).args(["-q", "-c", &format!("CREATE DATABASE {db}")]).status().expect("run psql");
        assert!(created.success(), "create the test database");
        let catalog = format!("{}/{db}", admin.rsplit_once('/').unwrap().0);
        let (endpoint, bucket, nats) = (require("JAMMI_TEST_S3_ENDPOINT"), require("JAMMI_TEST_S3_BUCKET"), require("JAMMI_TEST_NATS_URL"));
        // Polling every 10 minutes: events can only cross replicas by JetStream wake-ups.
        let config = format!(
            "[catalog]\nurl = \"{catalog}\"\n\n\
             [storage]\nroot = \"s3://{bucket}/{db}\"\n\
             options = {{ endpoint = \"{endpoint}\", region = \"us-east-1\", allow_http = \"true\", access_key_id = \"test\", secret_access_key = \"test\" }}\n\n\
             [broker]\nkind = \"jetstream\"\nurl = \"{nats}\"\npoll_interval_ms = 600000\n"
        );
        // Searches are audited by every replica into one chain per tenant, signed with the
        // deployment's one key.
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("audit.keys");
        write(&keys, &format!("1={}\n", "5a".repeat(32)));
        let config = format!("{config}\n[audit]\nenabled = true\nkey_file = \"{}\"\n", keys.display());
        Deployment { dir, config, db }
    }

    /// The data directory of member `name` (a replica, or a CLI run on the deployment).
    pub fn home(&self, name: &str) -> PathBuf {
        let home = self.dir.path().join(name);
        if !home.exists() {
            write(&home.join("jammi.toml"), &self.config);
        }
        home
    }
}
