//! Artifact benchmark: put and fetch throughput of jammi-db's artifact store against raw
//! `object_store` doing the same transfers, on `file://` and on an S3-compatible server, in
//! one run.
//!
//! ```sh
//! bash crates/jammi-bench/run_artifacts.sh   # starts moto on loopback, runs this, prints Markdown
//! ```
//!
//! Workload: one bundle of 1 × `--big-mib` MiB plus `--small` × `--small-mib` MiB files of
//! incompressible bytes. Raw put: the same files with the same plan as the store (files that
//! fit in one 8 MiB part with one `put`, 8 at a time; larger ones with `put_multipart` /
//! `WriteMultipart`, 8 MiB parts, 4 in flight), no hashing and no manifest. Raw fetch: GET
//! each file (4 at a time) and write it to a local file, no verification. jammi put hashes
//! every byte and writes `manifest.json` last; jammi fetch reads the manifest, downloads into
//! a fresh cache directory with SHA-256 verification and `fsync`, and renames it into place
//! (on `file://` it verifies the bundle in place instead of copying). Each measurement is the
//! median of `--reps` repetitions, jammi and raw taking turns to go first, with a `sync`
//! before each timed step.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use futures::{StreamExt, TryStreamExt};
use jammi_db::artifact::{ArtifactFile, ArtifactStore};
use jammi_db::storage::{StorageOptions, StorageRegistry, StorageUrl};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PART: usize = 8 << 20;
const PARTS_IN_FLIGHT: usize = 4;
const SMALL_IN_FLIGHT: usize = 8;
const FETCHES_IN_FLIGHT: usize = 4;

struct Args {
    s3_endpoint: Option<String>,
    s3_bucket: String,
    reps: usize,
    big_mib: usize,
    small: usize,
    small_mib: usize,
}

fn parse_args() -> Result<Args> {
    let mut args = Args { s3_endpoint: None, s3_bucket: "jammi-bench".into(), reps: 3, big_mib: 256, small: 16, small_mib: 4 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--s3-endpoint" => args.s3_endpoint = Some(value()?),
            "--s3-bucket" => args.s3_bucket = value()?,
            "--reps" => args.reps = value()?.parse()?,
            "--big-mib" => args.big_mib = value()?.parse()?,
            "--small" => args.small = value()?.parse()?,
            "--small-mib" => args.small_mib = value()?.parse()?,
            other => {
                return Err(anyhow!(
                    "unknown flag {other}; flags: --s3-endpoint URL --s3-bucket B --reps N --big-mib N --small N --small-mib N"
                ))
            }
        }
    }
    Ok(args)
}

fn s3_options(endpoint: &str) -> StorageOptions {
    [("endpoint", endpoint), ("allow_http", "true"), ("region", "us-east-1"), ("access_key_id", "bench"), ("secret_access_key", "bench")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Incompressible bytes (xorshift) so no layer can shortcut the transfer.
fn write_random(path: &Path, len: usize, seed: u64) -> Result<()> {
    let mut x = seed | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(len);
    std::fs::write(path, bytes).with_context(|| path.display().to_string())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn key(base: &ObjectPath, name: &str) -> ObjectPath {
    ObjectPath::parse(format!("{}/{name}", base.as_ref())).expect("valid key")
}

/// Raw upload of one file with the store's plan (one `put` or a multipart upload).
async fn raw_put_file(store: Arc<dyn ObjectStore>, location: ObjectPath, path: PathBuf) -> Result<()> {
    let size = tokio::fs::metadata(&path).await?.len() as usize;
    if size <= PART {
        let bytes = tokio::fs::read(&path).await?;
        store.put(&location, PutPayload::from(bytes)).await?;
        return Ok(());
    }
    let mut writer = WriteMultipart::new_with_chunk_size(store.put_multipart(&location).await?, PART);
    let mut file = tokio::fs::File::open(&path).await?;
    loop {
        let mut buf = Vec::with_capacity(PART);
        (&mut file).take(PART as u64).read_to_end(&mut buf).await?;
        if buf.is_empty() {
            break;
        }
        writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
        writer.put(buf.into());
    }
    writer.finish().await?;
    Ok(())
}

async fn raw_put(store: &Arc<dyn ObjectStore>, base: &ObjectPath, files: &[(String, PathBuf, usize)]) -> Result<()> {
    let (small, large): (Vec<_>, Vec<_>) = files.iter().partition(|(_, _, size)| *size <= PART);
    let jobs: Vec<_> = small.iter().map(|(n, p, _)| raw_put_file(Arc::clone(store), key(base, n), p.clone())).collect();
    futures::stream::iter(jobs).buffer_unordered(SMALL_IN_FLIGHT).try_collect::<Vec<()>>().await?;
    for (n, p, _) in large {
        raw_put_file(Arc::clone(store), key(base, n), p.clone()).await?;
    }
    Ok(())
}

async fn raw_get_file(store: Arc<dyn ObjectStore>, location: ObjectPath, dest: PathBuf) -> Result<()> {
    let mut stream = store.get(&location).await?.into_stream();
    let mut file = tokio::fs::File::create(&dest).await?;
    while let Some(chunk) = stream.next().await {
        file.write_all(&chunk?).await?;
    }
    file.flush().await?;
    Ok(())
}

async fn raw_fetch(store: &Arc<dyn ObjectStore>, base: &ObjectPath, files: &[(String, PathBuf, usize)], dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest)?;
    let jobs: Vec<_> = files.iter().map(|(n, _, _)| raw_get_file(Arc::clone(store), key(base, n), dest.join(n))).collect();
    futures::stream::iter(jobs).buffer_unordered(FETCHES_IN_FLIGHT).try_collect::<Vec<()>>().await?;
    Ok(())
}

async fn raw_delete(store: &Arc<dyn ObjectStore>, base: &ObjectPath, files: &[(String, PathBuf, usize)]) -> Result<()> {
    for (n, _, _) in files {
        let _ = store.delete(&key(base, n)).await;
    }
    Ok(())
}

struct Row {
    backend: &'static str,
    op: &'static str,
    jammi: f64,
    raw: f64,
}

async fn bench_backend(
    backend: &'static str,
    root: StorageUrl,
    options: StorageOptions,
    work: &Path,
    files: &[(String, PathBuf, usize)],
    reps: usize,
) -> Result<Vec<Row>> {
    let total_mb = files.iter().map(|f| f.2).sum::<usize>() as f64 / 1e6;
    let raw_options = if root.is_local() { StorageOptions::new() } else { options.clone() };
    let raw = StorageRegistry::new().store_for(&root, &raw_options)?;
    let bundle: Vec<ArtifactFile> = files.iter().map(|(n, p, _)| ArtifactFile::from_path(n.clone(), p.clone())).collect();
    let (mut put_j, mut put_r, mut get_j, mut get_r) = (vec![], vec![], vec![], vec![]);
    for rep in 0..reps {
        let run = format!("rep{rep}-{}", uuid_like());
        // A fresh cache per repetition, so every jammi fetch downloads.
        let store = ArtifactStore::new(StorageRegistry::new(), options.clone(), work.join(format!("cache-{run}")));

        let base = key(&root.object_path()?, &format!("raw-{run}"));
        let dest = work.join(format!("raw-get-{run}"));
        // Alternate which side goes first, so neither always meets a warmer (or more
        // loaded) server.
        let jammi_first = rep % 2 == 0;
        let mut prefix = None;
        for side in [jammi_first, !jammi_first] {
            settle();
            let started = Instant::now();
            if side {
                prefix = Some(store.put_artifact(&root, &["bench", &run], &bundle).await?);
                put_j.push(total_mb / started.elapsed().as_secs_f64());
            } else {
                raw_put(&raw, &base, files).await?;
                put_r.push(total_mb / started.elapsed().as_secs_f64());
            }
        }
        let prefix = prefix.expect("jammi put ran");
        for side in [jammi_first, !jammi_first] {
            settle();
            let started = Instant::now();
            if side {
                let fetched = store.fetch_artifact(&prefix).await?;
                get_j.push(total_mb / started.elapsed().as_secs_f64());
                assert!(fetched.manifest.files.len() == files.len() && (fetched.downloaded || root.is_local()));
            } else {
                raw_fetch(&raw, &base, files, &dest).await?;
                get_r.push(total_mb / started.elapsed().as_secs_f64());
            }
        }

        // Keep the server's memory and the disk flat across repetitions.
        store.delete_artifact_prefix(&prefix).await?;
        raw_delete(&raw, &base, files).await?;
        let _ = std::fs::remove_dir_all(&dest);
        let _ = std::fs::remove_dir_all(store.cache_dir());
        eprintln!(
            "{backend} rep {rep}: put {:.0} vs {:.0} MB/s, fetch {:.0} vs {:.0} MB/s",
            put_j[rep], put_r[rep], get_j[rep], get_r[rep]
        );
    }
    Ok(vec![
        Row { backend, op: "put", jammi: median(put_j), raw: median(put_r) },
        Row { backend, op: "fetch", jammi: median(get_j), raw: median(get_r) },
    ])
}

/// Flush dirty pages before each timed step, so that no step pays for the previous one's
/// write-back (without this, local put timings swung 5× between repetitions).
fn settle() {
    let _ = std::process::Command::new("sync").status();
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{:x}{:x}", nanos, std::process::id())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let work = tempfile::tempdir()?;
    let src = work.path().join("src");
    std::fs::create_dir_all(&src)?;
    let mut files = Vec::new();
    let big = args.big_mib << 20;
    write_random(&src.join("model.bin"), big, 1)?;
    files.push(("model.bin".to_string(), src.join("model.bin"), big));
    for i in 0..args.small {
        let name = format!("shard-{i:02}.bin");
        let size = args.small_mib << 20;
        write_random(&src.join(&name), size, 100 + i as u64)?;
        files.push((name.clone(), src.join(name), size));
    }
    let total_mib = files.iter().map(|f| f.2).sum::<usize>() >> 20;

    let mut rows = Vec::new();
    let local_root = StorageUrl::from_local_path(&work.path().join("store"), true)?;
    rows.extend(bench_backend("file://", local_root, StorageOptions::new(), work.path(), &files, args.reps).await?);
    if let Some(endpoint) = &args.s3_endpoint {
        let root = StorageUrl::parse(&format!("s3://{}/artifact-bench/", args.s3_bucket))?;
        rows.extend(bench_backend("s3:// (moto)", root, s3_options(endpoint), work.path(), &files, args.reps).await?);
    }

    println!(
        "Bundle: 1 × {} MiB + {} × {} MiB ({total_mib} MiB), median of {} repetitions; one machine, loopback.\n",
        args.big_mib, args.small, args.small_mib, args.reps
    );
    println!("| storage | operation | jammi artifact store | raw object_store | jammi ÷ raw |\n|---|---|---:|---:|---:|");
    for r in &rows {
        println!("| {} | {} | {:.0} MB/s | {:.0} MB/s | {:.2}× |", r.backend, r.op, r.jammi, r.raw, r.jammi / r.raw);
    }
    Ok(())
}
