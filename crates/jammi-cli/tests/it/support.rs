//! Running the real `jammi` binary.

use std::path::Path;
use std::process::{Command, Output};

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
