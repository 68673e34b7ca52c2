//! Results stream: a 10-million-row result is printed as it is produced, in bounded memory.

use std::io::Read;
use std::process::Stdio;

use crate::support::*;

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// Run `SELECT value FROM generate_series(1, rows)` as CSV; returns (lines, bytes, peak RSS KiB).
fn run_series(home: &std::path::Path, rows: u64) -> (u64, u64, u64) {
    let mut child = jammi(home)
        .args(["--format", "csv", "sql", &format!("SELECT value FROM generate_series(1, {rows})")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let (mut bytes, mut newlines, mut peak, mut reads) = (0u64, 0u64, 0u64, 0u64);
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        bytes += n as u64;
        newlines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
        reads += 1;
        if reads % 8 == 1 {
            peak = peak.max(peak_rss_kib(pid).unwrap_or(0));
        }
    }
    assert!(child.wait().unwrap().success());
    (newlines, bytes, peak)
}

#[test]
fn ten_million_rows_stream_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let (small_lines, _, small_peak) = run_series(&home, 1_000_000);
    assert_eq!(small_lines, 1_000_001);
    let (lines, bytes, peak) = run_series(&home, 10_000_000);
    assert_eq!(lines, 10_000_001, "header plus ten million rows");
    assert!(small_peak > 0 && peak > 0, "could not read the child's memory use");
    // Ten times the rows (~{bytes} bytes of text) may not cost more than a little memory:
    // a collected result would add at least the 72 MB of extra values.
    let growth_mib = peak.saturating_sub(small_peak) / 1024;
    assert!(growth_mib < 32, "peak RSS grew {growth_mib} MiB from 1M to 10M rows ({bytes} bytes): not streaming");
}
