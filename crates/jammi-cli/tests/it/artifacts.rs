//! Artifacts through the CLI: put/fetch/rm round trips (local and S3), a 1 GiB upload in
//! bounded memory, and a writer killed mid-put whose prefix must read as incomplete, be
//! collectable, and never be fetched as torn data.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const GIB: u64 = 1 << 30;

/// The bundle directory a `file://` prefix URL printed by `artifact put` points at.
fn local_dir(prefix: &str) -> PathBuf {
    let path = prefix.strip_prefix("file://").unwrap_or_else(|| panic!("not a file:// URL: {prefix}"));
    // Segments in these tests need no decoding.
    PathBuf::from(path)
}

#[test]
fn put_fetch_rm_round_trip_on_a_local_root() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let root = dir.path().join("models");
    let config = dir.path().join("src/config.json");
    let weights = dir.path().join("src/weights.bin");
    write(&config, r#"{"dim": 4}"#);
    std::fs::write(&weights, (0..=255u8).cycle().take(100_000).collect::<Vec<u8>>()).unwrap();

    let prefix = ok(jammi(&home).args(["artifact", "put"]).arg(&root).arg("job-1/worker-a/1").arg(&config).arg(&weights));
    let prefix = prefix.trim();
    assert!(prefix.starts_with("file://") && prefix.ends_with("/models/job-1/worker-a/1/"), "{prefix}");
    let mut names: Vec<String> =
        files_under(&local_dir(prefix)).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["config.json", "manifest.json", "weights.bin"]);

    let fetched = ok(jammi(&home).args(["artifact", "fetch", prefix]));
    let fetched = PathBuf::from(fetched.trim());
    assert_eq!(std::fs::read(fetched.join("weights.bin")).unwrap(), std::fs::read(&weights).unwrap());
    assert_eq!(std::fs::read_to_string(fetched.join("config.json")).unwrap(), r#"{"dim": 4}"#);

    // Write-once: the same prefix is refused with one line saying what to do.
    let err = fails(jammi(&home).args(["artifact", "put"]).arg(&root).arg("job-1/worker-a/1").arg(&config));
    assert!(err.contains("already exists") && err.contains("new attempt segment"), "{err}");
    let err = fails(jammi(&home).args(["artifact", "put"]).arg(&root).arg("job-1//1").arg(&config));
    assert!(err.contains("may not be empty"), "{err}");
    let err = fails(jammi(&home).args(["artifact", "put"]).arg(&root).arg("job-2").arg(dir.path().join("nope.bin")));
    assert!(err.contains("nope.bin"), "{err}");

    // `rm` of something that is not an artifact prefix refuses and touches nothing.
    let err = fails(jammi(&home).args(["artifact", "rm"]).arg(dir.path().join("src")));
    assert!(err.contains("not an artifact prefix"), "{err}");
    assert!(config.exists() && weights.exists());

    ok(jammi(&home).args(["artifact", "rm", prefix]));
    assert!(files_under(&local_dir(prefix)).is_empty());
    let err = fails(jammi(&home).args(["artifact", "fetch", prefix]));
    assert!(err.contains("manifest.json is missing"), "{err}");
    ok(jammi(&home).args(["artifact", "rm", prefix]));
}

#[test]
fn put_fetch_rm_round_trip_on_s3_with_options() {
    let endpoint = std::env::var("JAMMI_TEST_S3_ENDPOINT")
        .unwrap_or_else(|_| panic!("JAMMI_TEST_S3_ENDPOINT is not set: this test needs the S3 server scripts/test.sh starts"));
    let bucket = std::env::var("JAMMI_TEST_S3_BUCKET").expect("JAMMI_TEST_S3_BUCKET (set by scripts/test.sh)");
    let options = [
        format!("endpoint={endpoint}"),
        "allow_http=true".to_string(),
        "region=us-east-1".to_string(),
        "access_key_id=test".to_string(),
        "secret_access_key=test".to_string(),
    ];
    let with_options = |cmd: &mut Command| {
        for o in &options {
            cmd.arg("--option").arg(o);
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let file = dir.path().join("adapter.bin");
    std::fs::write(&file, b"adapter weights").unwrap();
    let root = format!("s3://{bucket}/cli-{}", std::process::id());

    let mut put = jammi(&home);
    put.args(["artifact", "put", &root, "job/w/1"]).arg(&file);
    with_options(&mut put);
    let prefix = ok(&mut put).trim().to_string();
    assert_eq!(prefix, format!("{root}/job/w/1/"));

    let mut fetch = jammi(&home);
    fetch.args(["artifact", "fetch", &prefix]);
    with_options(&mut fetch);
    let local = PathBuf::from(ok(&mut fetch).trim());
    assert!(local.starts_with(home.join("cache").join("artifacts")), "{}", local.display());
    assert_eq!(std::fs::read(local.join("adapter.bin")).unwrap(), b"adapter weights");

    let mut rm = jammi(&home);
    rm.args(["artifact", "rm", &prefix]);
    with_options(&mut rm);
    ok(&mut rm);
    let mut fetch = jammi(&home);
    fetch.args(["artifact", "fetch", &prefix]);
    with_options(&mut fetch);
    assert!(fails(&mut fetch).contains("manifest.json is missing"));

    // Without its options the S3 store cannot be reached: one line, not a panic.
    let mut bad = jammi(&home);
    bad.args(["artifact", "fetch", &prefix, "--option", "no_such_option=1"]);
    assert!(fails(&mut bad).contains("no_such_option"));
}

#[test]
fn a_one_gib_file_is_put_and_verified_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let big = dir.path().join("big.bin");
    // Sparse: costs no disk to create, but every byte is read, hashed and written.
    std::fs::File::create(&big).unwrap().set_len(GIB).unwrap();

    let (success, stdout, stderr, peak) =
        run_measured(jammi(&home).args(["artifact", "put"]).arg(dir.path().join("root")).arg("job/1").arg(&big));
    assert!(success, "put failed: {stderr}");
    // Parts of 8 MiB, a few in flight: a small fraction of the file. A put that read the
    // file whole would need more than 1 GiB.
    assert!(peak < 256 << 20, "put peaked at {} MiB for a 1 GiB file", peak >> 20);
    let prefix = stdout.trim().to_string();
    let stored = local_dir(&prefix).join("big.bin");
    assert_eq!(std::fs::metadata(&stored).unwrap().len(), GIB);

    let (success, stdout, stderr, peak) = run_measured(jammi(&home).args(["artifact", "fetch", &prefix]));
    assert!(success, "fetch failed: {stderr}");
    assert!(peak < 256 << 20, "fetch peaked at {} MiB", peak >> 20);
    assert_eq!(PathBuf::from(stdout.trim()), local_dir(&prefix), "file:// fetches are in place");
}

#[test]
fn a_put_killed_mid_upload_is_never_fetched_and_is_collectable() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let root = dir.path().join("root");
    let big = dir.path().join("big.bin");
    std::fs::File::create(&big).unwrap().set_len(2 * GIB).unwrap();
    let small = dir.path().join("config.json");
    write(&small, "{}");
    let prefix_dir = root.join("job").join("crash").join("1");

    let mut child = jammi(&home)
        .args(["artifact", "put"])
        .arg(&root)
        .arg("job/crash/1")
        .arg(&small)
        .arg(&big)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill once the big file's upload has written some of its parts.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let written: u64 = files_under(&prefix_dir)
            .iter()
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("big.bin"))
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();
        if written > 0 {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the put finished before it could be killed");
        assert!(Instant::now() < deadline, "the put never started writing");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no cleanup
    let status = child.wait().unwrap();
    assert!(!status.success(), "the put completed before the kill landed");
    assert!(!prefix_dir.join("manifest.json").exists(), "a killed put wrote its manifest");
    assert!(!files_under(&prefix_dir).is_empty(), "the killed put left nothing to collect");

    // Unreferenced: a fetch refuses it (no torn data), naming the missing manifest.
    let prefix = format!("file://{}/", prefix_dir.display());
    let err = fails(jammi(&home).args(["artifact", "fetch", &prefix]));
    assert!(err.contains("manifest.json is missing"), "{err}");
    // Collectable: rm removes everything under the prefix, including partial uploads.
    ok(jammi(&home).args(["artifact", "rm", &prefix]));
    assert!(files_under(&prefix_dir).is_empty(), "left behind: {:?}", files_under(&prefix_dir));
    assert!(!prefix_dir.exists());

    // And the store works normally afterwards, even on the same prefix.
    let small_weights = dir.path().join("weights.bin");
    std::fs::write(&small_weights, vec![7u8; 10_000]).unwrap();
    let again = ok(jammi(&home).args(["artifact", "put"]).arg(&root).arg("job/crash/1").arg(&small).arg(&small_weights));
    assert_eq!(again.trim(), prefix);
    let fetched = PathBuf::from(ok(jammi(&home).args(["artifact", "fetch", &prefix])).trim());
    assert_eq!(std::fs::read(fetched.join("weights.bin")).unwrap(), vec![7u8; 10_000]);
}
