//! Progress of long work when stderr is not a terminal: plain lines (start, periodic, done)
//! on stderr, nothing with `--quiet`, results alone on stdout. `JAMMI_PROGRESS_INTERVAL_MS=0`
//! makes every phase print, as one longer than the interval would.

use std::process::Output;

use crate::support::*;

fn run(cmd: &mut std::process::Command) -> (String, String) {
    let out: Output = cmd.output().expect("run jammi");
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    assert!(out.status.success(), "jammi failed: {stderr}\n{stdout}");
    (stdout, stderr)
}

#[test]
fn artifact_transfers_report_bytes_and_quiet_silences_them() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // 12 MiB: more than one 8 MiB part, so the count moves between parts.
    let big = dir.path().join("weights.bin");
    std::fs::write(&big, (0..12u32 << 20).map(|i| (i % 251) as u8).collect::<Vec<u8>>()).unwrap();
    let root = dir.path().join("root");

    let (stdout, stderr) = run(jammi(&home).env("JAMMI_PROGRESS_INTERVAL_MS", "0").args(["artifact", "put", root.to_str().unwrap(), "job/w/1"]).arg(&big));
    assert_eq!(stdout.lines().count(), 1, "stdout holds only the prefix: {stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.first().copied(), Some("uploading: 12.00 MiB to go"), "{stderr}");
    assert!(lines.iter().any(|l| l.contains("%") && l.contains("/s")), "periodic lines with a rate: {stderr}");
    assert!(lines.last().unwrap().starts_with("uploading: done, 12.00 MiB in "), "{stderr}");

    let prefix = stdout.trim();
    let (_, stderr) = run(jammi(&home).env("JAMMI_PROGRESS_INTERVAL_MS", "0").args(["artifact", "fetch", prefix]));
    assert!(stderr.lines().last().unwrap().starts_with("verifying: done, 12.00 MiB in "), "{stderr}");

    let (_, stderr) = run(jammi(&home).env("JAMMI_PROGRESS_INTERVAL_MS", "0").args(["--quiet", "artifact", "fetch", prefix]));
    assert_eq!(stderr, "", "--quiet prints no progress");
    // With the default interval a quick command prints nothing but its result.
    let (_, stderr) = run(jammi(&home).args(["artifact", "fetch", prefix]));
    assert_eq!(stderr, "");
}

#[test]
fn vector_imports_report_each_phase() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(jammi(&home).args(["-q", "demo"]));
    let data = home.join("demo/product_embeddings.parquet");
    let (stdout, stderr) = run(jammi(&home).env("JAMMI_PROGRESS_INTERVAL_MS", "0").args(["--format", "csv", "vectors", "import", "again"]).arg(&data).args([
        "--id-column",
        "product_id",
        "--vector-column",
        "embedding",
    ]));
    assert!(stdout.starts_with("name,") && stdout.contains("again,"), "{stdout}");
    for line in ["writing data: 300 rows to go", "writing data: done, 300 rows", "building index: 300 rows to go", "building index: done, 300 rows"] {
        assert!(stderr.contains(line), "missing '{line}' in:\n{stderr}");
    }
    let (_, stderr) = run(jammi(&home).env("JAMMI_PROGRESS_INTERVAL_MS", "0").args(["-q", "vectors", "compact", "again"]));
    assert_eq!(stderr, "");
}
