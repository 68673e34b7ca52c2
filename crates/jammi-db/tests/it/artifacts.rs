//! The artifact store on `file://`, `memory://` and the real S3-compatible server: round
//! trips, prefix sanitising, write-once prefixes, verification errors that name the file,
//! the content-addressed cache under concurrency, deletes, checkpoints and streaming of
//! files larger than one part.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::TryStreamExt;
use jammi_db::artifact::{ArtifactFile, ArtifactStore, Manifest};
use jammi_db::storage::{StorageOptions, StorageRegistry, StorageUrl};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};

use crate::support::{require_env, s3_options};

/// One backend under test: a root URL, an artifact store on it, and raw access to the same
/// objects (to damage them as a crash or a bad disk would).
struct Backend {
    root: StorageUrl,
    store: ArtifactStore,
    raw: Arc<dyn ObjectStore>,
    _dir: tempfile::TempDir,
}

impl Backend {
    fn cache_dir(&self) -> PathBuf {
        self._dir.path().join("cache")
    }

    fn key(&self, prefix: &StorageUrl, name: &str) -> ObjectPath {
        ObjectPath::parse(format!("{}/{name}", prefix.object_path().unwrap().as_ref())).unwrap()
    }

    async fn keys_under(&self, prefix: &StorageUrl) -> Vec<String> {
        let base = prefix.object_path().unwrap();
        let mut keys: Vec<String> = self.raw.list(Some(&base)).map_ok(|m| m.location.to_string()).try_collect().await.unwrap();
        keys.sort();
        keys
    }
}

fn backend(name: &'static str) -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let (root, options) = match name {
        "file" => (StorageUrl::from_local_path(&dir.path().join("root"), true).unwrap(), StorageOptions::new()),
        "memory" => (StorageUrl::parse(&format!("memory://artifacts/{run}/")).unwrap(), StorageOptions::new()),
        "s3" => (StorageUrl::parse(&format!("s3://{}/artifacts-{run}/", require_env("JAMMI_TEST_S3_BUCKET"))).unwrap(), s3_options()),
        other => panic!("no backend {other}"),
    };
    let raw_options = if name == "s3" { options.clone() } else { StorageOptions::new() };
    let raw = StorageRegistry::new().store_for(&root, &raw_options).unwrap();
    let store = ArtifactStore::new(StorageRegistry::new(), options, dir.path().join("cache"));
    Backend { root, store, raw, _dir: dir }
}

const BACKENDS: [&str; 3] = ["file", "memory", "s3"];

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic incompressible bytes (xorshift), so a part boundary bug cannot hide behind
/// repeated content.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn bundle(dir: &Path) -> (Vec<ArtifactFile>, BTreeMap<String, Vec<u8>>) {
    let weights = pseudo_random(300_000, 7);
    let path = dir.join("weights-source.bin");
    std::fs::write(&path, &weights).unwrap();
    let expected = BTreeMap::from([
        ("config.json".to_string(), br#"{"dim": 8}"#.to_vec()),
        ("weights/adapter.bin".to_string(), weights),
        ("notes with space.txt".to_string(), b"hello".to_vec()),
        ("empty".to_string(), Vec::new()),
    ]);
    let files = vec![
        ArtifactFile::from_bytes("config.json", expected["config.json"].clone()),
        ArtifactFile::from_path("weights/adapter.bin", path),
        ArtifactFile::from_bytes("notes with space.txt", &b"hello"[..]),
        ArtifactFile::from_bytes("empty", Vec::new()),
    ];
    (files, expected)
}

fn assert_fetched(fetched: &jammi_db::artifact::FetchedArtifact, expected: &BTreeMap<String, Vec<u8>>) {
    assert_eq!(fetched.manifest.files.len(), expected.len());
    for (name, content) in expected {
        let got = std::fs::read(fetched.path(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(got == *content, "{name} differs after the round trip");
        assert_eq!(fetched.manifest.get(name).unwrap().sha256, sha256_hex(content));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_on_file_memory_and_s3_with_a_sorted_manifest() {
    for name in BACKENDS {
        let b = backend(name);
        let (files, expected) = bundle(b._dir.path());
        let prefix = b.store.put_artifact(&b.root, &["job-1", "worker-a", "attempt-1"], &files).await.unwrap();
        assert!(prefix.url().as_str().starts_with(b.root.url().as_str()), "{name}: {prefix}");

        // The manifest as stored: format 1, every file, sorted by name, digests of the content.
        let raw = b.raw.get(&b.key(&prefix, "manifest.json")).await.unwrap().bytes().await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(json["format"], 1, "{name}");
        let names: Vec<&str> = json["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "{name}: manifest not sorted");
        assert_eq!(names.len(), expected.len());
        for f in json["files"].as_array().unwrap() {
            let content = &expected[f["name"].as_str().unwrap()];
            assert_eq!(f["size"].as_u64().unwrap(), content.len() as u64);
            assert_eq!(f["sha256"].as_str().unwrap(), sha256_hex(content));
        }

        // A complete prefix holds its files and the manifest, nothing else.
        let mut stored = b.keys_under(&prefix).await;
        stored.retain(|k| !k.ends_with("/manifest.json"));
        assert_eq!(stored.len(), expected.len(), "{name}: {stored:?}");

        let fetched = b.store.fetch_artifact(&prefix).await.unwrap();
        assert_fetched(&fetched, &expected);
        assert!(b.store.is_complete(&prefix).await.unwrap(), "{name}");
        if name == "file" {
            // Verified in place: no copy, nothing in the cache.
            assert_eq!(fetched.dir, prefix.local_path().unwrap());
            assert!(!fetched.downloaded);
            assert!(!b.cache_dir().exists(), "file:// fetch must not copy into the cache");
        } else {
            assert!(fetched.downloaded, "{name}: first fetch downloads");
            assert!(fetched.dir.starts_with(b.cache_dir()), "{name}");
        }
    }
}

#[tokio::test]
async fn hostile_segments_stay_under_the_root_and_never_collide() {
    let lists: Vec<Vec<&str>> = vec![
        vec!["../x"],
        vec![".."],
        vec!["."],
        vec!["..", "x"],
        vec!["a/b"],
        vec!["a", "b"],
        vec!["a\\b"],
        vec!["c:d"],
        vec!["a b"],
        vec!["a%20b"],
        vec!["a%2Fb"],
        vec!["%2E%2E"],
        vec!["_resume"],
        vec!["/abs"],
        vec!["a", "b/c"],
        vec!["a/b", "c"],
    ];
    for name in ["file", "memory"] {
        let b = backend(name);
        let mut prefixes = BTreeSet::new();
        for (i, segments) in lists.iter().enumerate() {
            let files = [ArtifactFile::from_bytes("id", i.to_string())];
            let prefix = b.store.put_artifact(&b.root, segments, &files).await.unwrap();
            assert!(prefixes.insert(prefix.url().to_string()), "{segments:?} collided: {prefix}");
            let key = prefix.object_path().unwrap();
            assert!(key.as_ref().starts_with(b.root.object_path().unwrap().as_ref()), "{segments:?} left the root: {key}");
            assert_eq!(key.parts().count(), b.root.object_path().unwrap().parts().count() + segments.len(), "{segments:?}: {key}");
        }
        // Every bundle still holds its own content: nothing overwrote anything.
        for (i, segments) in lists.iter().enumerate() {
            let prefix = b.store.prefix_url(&b.root, segments).unwrap();
            let fetched = b.store.fetch_artifact(&prefix).await.unwrap();
            assert_eq!(std::fs::read_to_string(fetched.path("id")).unwrap(), i.to_string(), "{segments:?}");
        }
        if name == "file" {
            // Nothing was written beside the root.
            let outside: Vec<_> = std::fs::read_dir(b._dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(outside, vec![std::ffi::OsString::from("root")], "written outside the root");
            let root = b.root.local_path().unwrap();
            for url in &prefixes {
                let local = StorageUrl::parse(url).unwrap().local_path().unwrap();
                assert!(local.canonicalize().unwrap().starts_with(root.canonicalize().unwrap()), "{url}");
            }
        }
        let err = b.store.put_artifact(&b.root, &["job", ""], &[]).await.unwrap_err().to_string();
        assert!(err.contains("may not be empty"), "{err}");
        let err = b.store.put_artifact(&b.root, &[], &[]).await.unwrap_err().to_string();
        assert!(err.contains("at least one segment"), "{err}");
    }
}

#[tokio::test]
async fn bad_file_names_are_refused_before_anything_is_written() {
    let b = backend("memory");
    for bad in ["../up", "/abs", "a//b", "manifest.json", "_put", "_resume/x", "dir/"] {
        let err = b.store.put_artifact(&b.root, &["bad"], &[ArtifactFile::from_bytes(bad, "x")]).await.unwrap_err();
        assert!(err.to_string().contains(bad), "{bad}: {err}");
    }
    let twice = [ArtifactFile::from_bytes("a", "1"), ArtifactFile::from_bytes("a", "2")];
    let err = b.store.put_artifact(&b.root, &["bad"], &twice).await.unwrap_err().to_string();
    assert!(err.contains("'a' is given twice"), "{err}");
    let missing = [ArtifactFile::from_path("w", b._dir.path().join("no-such-file"))];
    let err = b.store.put_artifact(&b.root, &["bad"], &missing).await.unwrap_err().to_string();
    assert!(err.contains("no-such-file"), "{err}");
    let prefix = b.store.prefix_url(&b.root, &["bad"]).unwrap();
    assert!(b.keys_under(&prefix).await.is_empty(), "a refused put wrote objects");
}

#[tokio::test]
async fn complete_prefixes_are_never_overwritten() {
    for name in BACKENDS {
        let b = backend(name);
        let first = [ArtifactFile::from_bytes("model.bin", "first")];
        let prefix = b.store.put_artifact(&b.root, &["job", "w", "1"], &first).await.unwrap();
        let second = [ArtifactFile::from_bytes("model.bin", "second")];
        let err = b.store.put_artifact(&b.root, &["job", "w", "1"], &second).await.unwrap_err().to_string();
        assert!(err.contains("already exists") && err.contains("write-once"), "{name}: {err}");
        let fetched = b.store.fetch_artifact(&prefix).await.unwrap();
        assert_eq!(std::fs::read(fetched.path("model.bin")).unwrap(), b"first", "{name}: data was overwritten");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_manifest_missing_file_and_damage_are_errors_naming_the_file() {
    for name in BACKENDS {
        let b = backend(name);
        let (files, _) = bundle(b._dir.path());
        let prefix = b.store.put_artifact(&b.root, &["job", "damaged"], &files).await.unwrap();

        // One flipped byte in the middle of a file.
        let key = b.key(&prefix, "weights/adapter.bin");
        let mut bytes = b.raw.get(&key).await.unwrap().bytes().await.unwrap().to_vec();
        bytes[150_000] ^= 0x01;
        b.raw.put(&key, PutPayload::from(bytes)).await.unwrap();
        let err = b.store.fetch_artifact(&prefix).await.unwrap_err().to_string();
        assert!(err.contains("'weights/adapter.bin'") && err.contains("sha256"), "{name}: {err}");
        assert!(!b.store.is_complete(&prefix).await.unwrap());
        // A failed fetch leaves nothing in the cache that a later fetch could trust.
        if let Ok(entries) = std::fs::read_dir(b.cache_dir()) {
            assert_eq!(entries.count(), 0, "{name}: a failed fetch left cache entries");
        }

        // A missing file.
        b.raw.put(&key, PutPayload::from(pseudo_random(300_000, 7))).await.unwrap();
        b.raw.delete(&b.key(&prefix, "config.json")).await.unwrap();
        let err = b.store.fetch_artifact(&prefix).await.unwrap_err().to_string();
        assert!(err.contains("'config.json'") && err.contains("missing"), "{name}: {err}");

        // A truncated file is caught by its size.
        b.raw.put(&b.key(&prefix, "config.json"), PutPayload::from_static(br#"{"dim": 8}"#)).await.unwrap();
        // Stored under its encoded name.
        b.raw.put(&b.key(&prefix, "notes%20with%20space.txt"), PutPayload::from_static(b"hel")).await.unwrap();
        let err = b.store.fetch_artifact(&prefix).await.unwrap_err().to_string();
        assert!(err.contains("'notes with space.txt'") && err.contains("3 bytes"), "{name}: {err}");

        // No manifest: the put never finished.
        b.raw.delete(&b.key(&prefix, "manifest.json")).await.unwrap();
        let err = b.store.fetch_artifact(&prefix).await.unwrap_err().to_string();
        assert!(err.contains("manifest.json is missing"), "{name}: {err}");
        assert!(!b.store.is_complete(&prefix).await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_fetches_see_complete_directories_and_a_second_fetch_downloads_nothing() {
    for name in ["memory", "s3"] {
        let b = backend(name);
        let (files, expected) = bundle(b._dir.path());
        let prefix = b.store.put_artifact(&b.root, &["job", "shared"], &files).await.unwrap();
        let expected = Arc::new(expected);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            // Separate stores on one cache directory, like separate processes.
            let store =
                ArtifactStore::new(StorageRegistry::new(), if name == "s3" { s3_options() } else { StorageOptions::new() }, b.cache_dir());
            let (prefix, expected) = (prefix.clone(), Arc::clone(&expected));
            tasks.push(tokio::spawn(async move {
                let fetched = store.fetch_artifact(&prefix).await.unwrap();
                // Whatever a fetch returns is complete at that moment.
                assert_fetched(&fetched, &expected);
                fetched
            }));
        }
        let mut dirs = BTreeSet::new();
        let mut downloads = 0;
        for task in tasks {
            let fetched = task.await.unwrap();
            dirs.insert(fetched.dir.clone());
            downloads += fetched.downloaded as usize;
        }
        assert_eq!(dirs.len(), 1, "{name}: fetches disagree on the directory: {dirs:?}");
        assert!(downloads >= 1, "{name}");
        // Only the entry is left: every racing staging directory was renamed or removed.
        let entries: Vec<_> = std::fs::read_dir(b.cache_dir()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(entries.len(), 1, "{name}: {entries:?}");

        // The second fetch only reads the manifest: with a data object gone from storage it
        // still succeeds from the cache, and says it downloaded nothing.
        b.raw.delete(&b.key(&prefix, "weights/adapter.bin")).await.unwrap();
        let again = b.store.fetch_artifact(&prefix).await.unwrap();
        assert!(!again.downloaded, "{name}: second fetch downloaded");
        assert_eq!(&again.dir, dirs.iter().next().unwrap());
        assert_fetched(&again, &expected);

        // A damaged cache entry is not served: it is fetched again (and here, with the
        // object gone, that fails naming the file).
        std::fs::write(again.path("config.json"), b"x").unwrap();
        let err = b.store.fetch_artifact(&prefix).await.unwrap_err().to_string();
        assert!(err.contains("'weights/adapter.bin'") && err.contains("missing"), "{name}: {err}");
    }
}

#[tokio::test]
async fn deletes_are_idempotent_and_collect_prefixes_without_a_manifest() {
    for name in BACKENDS {
        let b = backend(name);
        let (files, _) = bundle(b._dir.path());
        let prefix = b.store.put_artifact(&b.root, &["job", "done"], &files).await.unwrap();
        let neighbour = b.store.put_artifact(&b.root, &["job", "done2"], &files).await.unwrap();
        b.store.delete_artifact_prefix(&prefix).await.unwrap();
        assert!(b.keys_under(&prefix).await.is_empty(), "{name}");
        b.store.delete_artifact_prefix(&prefix).await.unwrap();
        let err = b.store.fetch_artifact(&prefix).await.unwrap_err().to_string();
        assert!(err.contains("manifest.json is missing"), "{name}: {err}");
        if name == "file" {
            assert!(!prefix.local_path().unwrap().exists(), "empty folders left behind");
        }

        // A put that crashed before its manifest: its `_put` marker (written before any
        // data) and some data objects.
        let crashed = b.store.prefix_url(&b.root, &["job", "crashed"]).unwrap();
        b.raw.put(&b.key(&crashed, "_put"), PutPayload::from_static(b"{}")).await.unwrap();
        b.raw.put(&b.key(&crashed, "a.bin"), PutPayload::from_static(b"partial")).await.unwrap();
        b.raw.put(&b.key(&crashed, "sub/b.bin"), PutPayload::from_static(b"partial")).await.unwrap();
        assert!(!b.store.is_complete(&crashed).await.unwrap());
        b.store.delete_artifact_prefix(&crashed).await.unwrap();
        assert!(b.keys_under(&crashed).await.is_empty(), "{name}: crashed put not collected");
        b.store.delete_artifact_prefix(&crashed).await.unwrap();

        // Something that is not an artifact prefix (no manifest, no marker) is refused and
        // left alone: `rm` of a wrong URL must not empty a folder of other data.
        let foreign = b.store.prefix_url(&b.root, &["data"]).unwrap();
        b.raw.put(&b.key(&foreign, "table.parquet"), PutPayload::from_static(b"rows")).await.unwrap();
        let err = b.store.delete_artifact_prefix(&foreign).await.unwrap_err().to_string();
        assert!(err.contains("not an artifact prefix"), "{name}: {err}");
        assert_eq!(b.keys_under(&foreign).await.len(), 1, "{name}: a refused delete removed data");
        // Nor is a folder above several bundles.
        let above = b.store.prefix_url(&b.root, &["job"]).unwrap();
        let err = b.store.delete_artifact_prefix(&above).await.unwrap_err().to_string();
        assert!(err.contains("not an artifact prefix"), "{name}: {err}");

        // The neighbour (a prefix sharing a name prefix) is untouched.
        assert!(b.store.is_complete(&neighbour).await.unwrap(), "{name}: delete reached a neighbour");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_latest_wins_absent_is_none_and_damage_is_an_error() {
    for name in BACKENDS {
        let b = backend(name);
        let job = ["job-9"];
        assert!(b.store.fetch_checkpoint(&b.root, &job).await.unwrap().is_none(), "{name}");

        let v1 = [ArtifactFile::from_bytes("state.bin", "step 100"), ArtifactFile::from_bytes("optimizer.bin", "adam 100")];
        let at = b.store.put_checkpoint(&b.root, &job, &v1).await.unwrap();
        assert!(at.url().as_str().ends_with("/job-9/_resume/"), "{at}");
        let got = b.store.fetch_checkpoint(&b.root, &job).await.unwrap().unwrap();
        assert_eq!(std::fs::read(got.path("state.bin")).unwrap(), b"step 100");

        let v2 = [ArtifactFile::from_bytes("state.bin", "step 200"), ArtifactFile::from_bytes("rng.bin", "seed")];
        b.store.put_checkpoint(&b.root, &job, &v2).await.unwrap();
        let got = b.store.fetch_checkpoint(&b.root, &job).await.unwrap().unwrap();
        assert_eq!(std::fs::read(got.path("state.bin")).unwrap(), b"step 200", "{name}: not latest-wins");
        assert_eq!(got.manifest.files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["rng.bin", "state.bin"]);
        let keys = b.keys_under(&at).await;
        assert!(!keys.iter().any(|k| k.ends_with("optimizer.bin")), "{name}: stale checkpoint file kept: {keys:?}");

        // The job's artifacts and its checkpoint live side by side without touching.
        let artifact = b.store.put_artifact(&b.root, &job, &[ArtifactFile::from_bytes("final.bin", "done")]).await.unwrap();
        let sneaky = b.store.put_artifact(&b.root, &["job-9", "_resume"], &[ArtifactFile::from_bytes("state.bin", "evil")]).await.unwrap();
        assert_ne!(sneaky, at);
        let got = b.store.fetch_checkpoint(&b.root, &job).await.unwrap().unwrap();
        assert_eq!(std::fs::read(got.path("state.bin")).unwrap(), b"step 200");
        assert!(b.store.is_complete(&artifact).await.unwrap());

        // A damaged checkpoint is an error, not a silent restart from scratch. (Damage to
        // content already fetched would not show: the cache holds the verified copy.)
        let v3 = [ArtifactFile::from_bytes("state.bin", "step 300")];
        b.store.put_checkpoint(&b.root, &job, &v3).await.unwrap();
        let key = b.key(&at, "state.bin");
        b.raw.put(&key, PutPayload::from_static(b"step 3x0")).await.unwrap();
        let err = b.store.fetch_checkpoint(&b.root, &job).await.unwrap_err().to_string();
        assert!(err.contains("'state.bin'") && err.contains("sha256"), "{name}: {err}");

        b.store.delete_checkpoint(&b.root, &job).await.unwrap();
        b.store.delete_checkpoint(&b.root, &job).await.unwrap();
        assert!(b.store.fetch_checkpoint(&b.root, &job).await.unwrap().is_none(), "{name}");
        assert!(b.keys_under(&at).await.is_empty());
        assert!(b.store.is_complete(&artifact).await.unwrap(), "{name}: checkpoint delete reached the artifact");

        // After a put that died with no manifest, the next put collects its leftovers.
        b.raw.put(&b.key(&at, "_put"), PutPayload::from_static(b"{}")).await.unwrap();
        b.raw.put(&b.key(&at, "orphan.bin"), PutPayload::from_static(b"torn")).await.unwrap();
        assert!(b.store.fetch_checkpoint(&b.root, &job).await.unwrap().is_none());
        b.store.put_checkpoint(&b.root, &job, &v1).await.unwrap();
        let keys = b.keys_under(&at).await;
        assert!(!keys.iter().any(|k| k.ends_with("orphan.bin")), "{name}: {keys:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_larger_than_a_part_stream_and_the_manifest_comes_last() {
    const SIZE: usize = 40 << 20;
    for name in BACKENDS {
        let b = backend(name);
        let source = b._dir.path().join("big.bin");
        let content = pseudo_random(SIZE, 42);
        std::fs::write(&source, &content).unwrap();
        let digest = sha256_hex(&content);
        drop(content);
        let files = [
            ArtifactFile::from_path("big.bin", &source),
            ArtifactFile::from_bytes("small.json", "{}"),
            ArtifactFile::from_bytes("inline-large.bin", pseudo_random(12 << 20, 3)),
        ];
        let prefix = b.store.prefix_url(&b.root, &["job", "big"]).unwrap();

        // On file:// watch the prefix while the put runs: whenever manifest.json exists,
        // every data file must already be there in full.
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = prefix.local_path().map(|dir| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut seen_data_without_manifest = false;
                while !stop.load(Ordering::Acquire) {
                    let manifest = dir.join("manifest.json").exists();
                    let big = std::fs::metadata(dir.join("big.bin")).map(|m| m.len()).unwrap_or(0);
                    let inline = std::fs::metadata(dir.join("inline-large.bin")).map(|m| m.len()).unwrap_or(0);
                    if manifest {
                        assert_eq!(big, SIZE as u64, "manifest.json appeared before big.bin was complete");
                        assert_eq!(inline, 12 << 20, "manifest.json appeared before inline-large.bin");
                        assert!(dir.join("small.json").exists());
                        return seen_data_without_manifest;
                    }
                    seen_data_without_manifest |= dir.join("small.json").exists();
                }
                seen_data_without_manifest
            })
        });
        let put = b.store.put_artifact(&b.root, &["job", "big"], &files).await.unwrap();
        assert_eq!(put, prefix);
        stop.store(true, Ordering::Release);
        if let Some(watcher) = watcher {
            assert!(watcher.join().unwrap(), "the watcher never saw the put in progress");
        }

        let manifest: Manifest = b.store.read_manifest(&prefix).await.unwrap().unwrap();
        assert_eq!(manifest.get("big.bin").unwrap().sha256, digest, "{name}");
        assert_eq!(manifest.get("big.bin").unwrap().size, SIZE as u64);
        let fetched = b.store.fetch_artifact(&prefix).await.unwrap();
        assert_eq!(sha256_hex(&std::fs::read(fetched.path("big.bin")).unwrap()), digest, "{name}");
        assert_eq!(std::fs::read(fetched.path("inline-large.bin")).unwrap(), pseudo_random(12 << 20, 3));
    }
}

#[tokio::test]
async fn session_hands_out_a_store_caching_under_the_data_dir() {
    let (session, dir) = crate::support::temp_session().await;
    let store = session.artifacts(StorageOptions::new());
    assert!(store.cache_dir().starts_with(dir.path()), "{}", store.cache_dir().display());
    let root = StorageUrl::parse(&format!("memory://session-artifacts/{}/", uuid::Uuid::new_v4().simple())).unwrap();
    let prefix = store.put_artifact(&root, &["j"], &[ArtifactFile::from_bytes("x", "1")]).await.unwrap();
    let fetched = store.fetch_artifact(&prefix).await.unwrap();
    assert!(fetched.dir.starts_with(dir.path().join("cache").join("artifacts")));
}

/// A tenant's artifacts lie under its own segment; another tenant can neither read nor
/// delete them, while shared (operator) bundles stay readable to every tenant.
#[tokio::test]
async fn tenants_write_under_their_own_segment_and_cannot_reach_each_other() {
    let (session, dir) = crate::support::temp_session().await;
    let root = StorageUrl::parse(&dir.path().join("bundles").display().to_string()).unwrap();
    let (a, b) = (jammi_db::tenant::TenantId::random(), jammi_db::tenant::TenantId::random());
    let store_a = session.with_tenant(Some(a)).artifacts(StorageOptions::new());
    let store_b = session.with_tenant(Some(b)).artifacts(StorageOptions::new());
    let operator = session.artifacts(StorageOptions::new());

    let prefix_a = store_a.put_artifact(&root, &["model", "v1"], &[ArtifactFile::from_bytes("w.bin", "secret-a")]).await.unwrap();
    assert!(prefix_a.to_string().contains(&format!("/tenant-{a}/model/v1/")), "{prefix_a}");
    // Giving the own segment explicitly does not double it.
    let again = store_a.prefix_url(&root, &[&format!("tenant-{a}"), "model", "v1"]).unwrap();
    assert_eq!(again, prefix_a);

    // Tenant B: reading, verifying or deleting A's bundle is refused, naming the segment.
    let refused = store_b.fetch_artifact(&prefix_a).await.unwrap_err();
    assert!(matches!(refused, jammi_db::Error::PermissionDenied { .. }), "{refused}");
    assert!(refused.to_string().contains(&format!("tenant-{a}")), "{refused}");
    assert!(store_b.verify_artifact(&prefix_a).await.is_err());
    assert!(store_b.delete_artifact_prefix(&prefix_a).await.is_err());
    // B's own put of the same segments lands elsewhere.
    let prefix_b = store_b.put_artifact(&root, &["model", "v1"], &[ArtifactFile::from_bytes("w.bin", "secret-b")]).await.unwrap();
    assert_ne!(prefix_a, prefix_b);
    // A's bundle is intact, and A reads it.
    let fetched = store_a.fetch_artifact(&prefix_a).await.unwrap();
    assert_eq!(std::fs::read(fetched.path("w.bin")).unwrap(), b"secret-a");

    // Shared bundles (the operator's) are readable by tenants; the operator reaches all.
    let shared = operator.put_artifact(&root, &["shared", "base"], &[ArtifactFile::from_bytes("w.bin", "base")]).await.unwrap();
    assert_eq!(std::fs::read(store_b.fetch_artifact(&shared).await.unwrap().path("w.bin")).unwrap(), b"base");
    assert!(operator.verify_artifact(&prefix_a).await.is_ok());
}
