//! Large scans on Apache Ballista: `jammi cluster scheduler` and two `jammi cluster
//! executor`s as processes, on the deployment's PostgreSQL catalog and a 10-million-row
//! Parquet data set on the S3 server (scripts/test.sh starts both). The same queries give
//! the same answers with `[query] engine = "ballista"` as in-process, tenant filters
//! included; tables only jammi reads (mutable) are shipped in; an executor killed with
//! SIGKILL in the middle of a query leaves a complete answer (Ballista runs its tasks
//! again). See docs/ballista.md.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const TENANT_B1: &str = "3f2b8c1e-0000-4000-8000-0000000000b1";
const ROWS: u64 = 10_000_000;

/// The fixed set, each compared between in-process and cluster execution (ORDER BY makes
/// every answer one text).
const QUERIES: &[&str] = &[
    "SELECT count(*), sum(v), min(id), max(id), count(DISTINCT k) FROM ev.public.events",
    "SELECT k % 10 AS g, count(*), sum(v) FROM ev.public.events WHERE id % 3 = 0 GROUP BY g ORDER BY g",
    "SELECT id, v FROM ev.public.events WHERE k = 7 AND id > 5000000 ORDER BY id DESC LIMIT 5",
    "SELECT tenant, count(*), avg(v) FROM ev.public.events GROUP BY tenant ORDER BY tenant",
    // A join of the files with a mutable table: the mutable rows are computed here and
    // shipped in with the plan.
    "SELECT n.name, count(*), sum(e.v) FROM ev.public.events e JOIN mutable.public.names n ON e.k = n.k GROUP BY n.name ORDER BY n.name",
    "SELECT upper(tenant) AS t, max(id) FROM ev.public.events WHERE id BETWEEN 100 AND 200000 GROUP BY t ORDER BY t",
];

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn_logged(cmd: &mut Command, log: &Path) -> Child {
    cmd.env("JAMMI_LOG", "info").stdout(Stdio::null()).stderr(std::fs::File::create(log).unwrap()).spawn().expect("start a cluster process")
}

/// Wait until `log` has a line containing `needle`.
fn wait_for_log(log: &Path, needle: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        assert!(Instant::now() < deadline, "no '{needle}' in {} within {within:?}:\n{text}", log.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn kill(child: &mut Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
}

/// Run `sql` on `home` (CSV); stdout and stderr, requiring success.
fn query(home: &Path, tenant: Option<&str>, sql: &str) -> (String, String) {
    let mut cmd = jammi(home);
    if let Some(tenant) = tenant {
        cmd.args(["--tenant", tenant]);
    }
    let out = cmd.args(["--format", "csv", "sql", sql]).env("JAMMI_LOG", "ballista_core=info,jammi_cluster=info").output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "{sql}\nstdout: {stdout}\nstderr: {stderr}");
    (stdout, stderr)
}

/// Ballista's client logs each job the cluster finished.
fn ran_on_cluster(stderr: &str) -> bool {
    stderr.contains("finished executing")
}

#[test]
fn large_scans_on_ballista_answer_as_in_process_execution_does() {
    let d = Deployment::new("ballista");
    let (endpoint, bucket) = (require("JAMMI_TEST_S3_ENDPOINT"), require("JAMMI_TEST_S3_BUCKET"));
    let prefix = format!("{}/events", d.db);
    let made = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/make_events.py"))
        .args([&endpoint, &bucket, &prefix, &ROWS.to_string(), "20"])
        .output()
        .expect("python3");
    assert!(made.status.success(), "make_events.py: {}", String::from_utf8_lossy(&made.stderr));

    // In-process: the deployment's plain configuration; 8 partitions so both executors get
    // tasks of every stage.
    let here = d.home("here");
    std::fs::write(here.join("jammi.toml"), format!("{}\n[query]\ntarget_partitions = 8\n", d.config)).unwrap();
    let s3 = |key: &str, value: &str| format!("{key}={value}");
    let options = [s3("endpoint", &endpoint), s3("region", "us-east-1"), s3("allow_http", "true"), s3("access_key_id", "test"), s3("secret_access_key", "test")];
    let url = format!("s3://{bucket}/{prefix}/");
    let add = |name: &str, extra: &[&str]| {
        let mut cmd = jammi(&here);
        cmd.args(["source", "add", name, &url]).args(extra);
        for option in &options {
            cmd.args(["--option", option]);
        }
        ok(&mut cmd);
    };
    add("ev", &[]);
    add("evt", &["--tenant-column", "tenant"]);
    ok(jammi(&here).args(["sql", "CREATE TABLE mutable.public.names (k INT PRIMARY KEY, name TEXT); INSERT INTO mutable.public.names VALUES (0, 'zero'), (7, 'seven'), (999, 'last')"]));

    // The cluster: a scheduler and two executors, each reading the catalog for the
    // sources' stores.
    let scheduler_port = free_port();
    let scheduler_log = d.dir.path().join("scheduler.log");
    let scheduler = spawn_logged(
        jammi(&d.home("scheduler")).args(["cluster", "scheduler", "--bind", &format!("127.0.0.1:{scheduler_port}"), "--executor-timeout-secs", "10"]),
        &scheduler_log,
    );
    let mut executors = Vec::new();
    let mut executor_logs = Vec::new();
    for i in 0..2 {
        let log = d.dir.path().join(format!("executor-{i}.log"));
        let home = d.home(&format!("executor-{i}"));
        let child = spawn_logged(
            jammi(&home).args([
                "cluster",
                "executor",
                "--scheduler",
                &format!("df://127.0.0.1:{scheduler_port}"),
                "--bind",
                &format!("127.0.0.1:{}", free_port()),
                "--grpc-port",
                &free_port().to_string(),
                "--concurrent-tasks",
                "2",
                "--heartbeat-secs",
                "1",
            ]),
            &log,
        );
        executors.push(child);
        executor_logs.push(log);
    }
    for log in &executor_logs {
        wait_for_log(log, "Executor registration succeed", Duration::from_secs(60));
    }
    let on_cluster = d.home("on-cluster");
    std::fs::write(
        on_cluster.join("jammi.toml"),
        format!("{}\n[query]\ntarget_partitions = 8\nengine = \"ballista\"\nscheduler = \"df://127.0.0.1:{scheduler_port}\"\n", d.config),
    )
    .unwrap();

    for sql in QUERIES {
        let (local, local_log) = query(&here, None, sql);
        assert!(!ran_on_cluster(&local_log), "{sql} ran on the cluster without engine = ballista");
        let (remote, remote_log) = query(&on_cluster, None, sql);
        assert!(ran_on_cluster(&remote_log), "{sql} did not run on the cluster:\n{remote_log}");
        assert_eq!(remote, local, "{sql}");
    }
    // Checked against the data set itself, not only against each other.
    let (first, _) = query(&on_cluster, None, QUERIES[0]);
    assert_eq!(first.lines().nth(1), Some(format!("{ROWS},{:.1},0,{},1000", (0..1000u64).sum::<u64>() as f64 / 2.0 * (ROWS / 1000) as f64, ROWS - 1).as_str()), "{first}");

    // A tenant sees its own rows on the cluster as here: the tenant filter is in the plan
    // that leaves.
    let tenant_sql = "SELECT count(*), count(DISTINCT tenant), min(tenant), sum(v) FROM evt.public.events";
    let (local, _) = query(&here, Some(TENANT_B1), tenant_sql);
    let (remote, remote_log) = query(&on_cluster, Some(TENANT_B1), tenant_sql);
    assert!(ran_on_cluster(&remote_log), "{remote_log}");
    assert_eq!(remote, local);
    assert!(remote.lines().nth(1).unwrap().starts_with(&format!("{},1,{TENANT_B1},", ROWS / 2)), "{remote}");

    // What reads no files stays here; so does what uses jammi's own functions.
    let (names, log) = query(&on_cluster, None, "SELECT count(*) FROM mutable.public.names");
    assert_eq!(names.lines().nth(1), Some("3"));
    assert!(!ran_on_cluster(&log), "{log}");

    // Kill one executor in the middle of a query: the scheduler notices it is gone (10 s
    // without heartbeats; generous, so a survivor starved of CPU by the rest of the suite
    // is not taken for dead) and runs its tasks again on the other.
    let heavy = "SELECT count(*), sum(s) FROM (SELECT id % 200000 AS g, sum(v) AS s FROM ev.public.events GROUP BY g)";
    let (expected, _) = query(&here, None, heavy);
    let task_log = executor_logs[0].clone();
    let seen_before = std::fs::read_to_string(&task_log).unwrap().matches("Execute task").count();
    // Its log goes to a file: retries after the kill can log more than a pipe holds.
    let client_log = d.dir.path().join("heavy-client.log");
    let mut client = jammi(&on_cluster)
        .args(["--format", "csv", "sql", heavy])
        .env("JAMMI_LOG", "ballista_core=info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&client_log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&task_log).unwrap().matches("Execute task").count() == seen_before {
        assert!(Instant::now() < deadline, "executor 0 got no task of the heavy query");
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(&mut executors[0]);
    let killed_at = Instant::now();
    let out = wait_output(&mut client, Duration::from_secs(240), &client_log);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), std::fs::read_to_string(&client_log).unwrap_or_default());
    assert!(out.status.success(), "the query failed after an executor was killed:\n{stderr}");
    assert_eq!(stdout, expected, "{stderr}");
    eprintln!("heavy query completed {:?} after executor 0 was killed", killed_at.elapsed());
    // The survivor keeps answering.
    let (after, log) = query(&on_cluster, None, QUERIES[0]);
    assert!(ran_on_cluster(&log));
    assert_eq!(after, first);

    for mut child in executors.into_iter().chain([scheduler]) {
        kill(&mut child);
    }
}

/// Wait for `child` (stdout read to the end; its log in `log`), at most `within`.
fn wait_output(child: &mut Child, within: Duration, log: &Path) -> std::process::Output {
    let deadline = Instant::now() + within;
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the query did not finish within {within:?} of the executor's death:\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    use std::io::Read;
    let mut stdout = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut stdout).unwrap();
    std::process::Output { status: child.wait().unwrap(), stdout, stderr: Vec::new() }
}
