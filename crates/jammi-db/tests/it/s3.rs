//! Object storage: sources on a real S3-compatible server, and the storage conformance
//! suite on file, memory and S3.


use jammi_db::source::SourceSpec;
use jammi_db::storage::{conformance, StorageOptions, StorageRegistry, StorageUrl};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::support::*;

fn bucket() -> String {
    require_env("JAMMI_TEST_S3_BUCKET")
}

async fn put(store: &dyn ObjectStore, key: &str, bytes: Vec<u8>) {
    store.put(&object_store::path::Path::from(key), PutPayload::from(bytes)).await.unwrap();
}

#[tokio::test]
async fn storage_conformance_file_memory_s3() {
    let registry = StorageRegistry::new();
    let dir = tempfile::tempdir().unwrap();
    let local = StorageUrl::parse(&dir.path().display().to_string()).unwrap();
    let store = registry.store_for(&local, &StorageOptions::new()).unwrap();
    conformance::run_all(store.as_ref(), local.object_path().unwrap().as_ref()).await;

    let memory = StorageUrl::parse("memory://conformance/").unwrap();
    conformance::run_all(registry.store_for(&memory, &StorageOptions::new()).unwrap().as_ref(), "m").await;

    let s3 = StorageUrl::parse(&format!("s3://{}/", bucket())).unwrap();
    conformance::run_all(registry.store_for(&s3, &s3_options()).unwrap().as_ref(), "conformance").await;
}

#[tokio::test]
async fn s3_file_and_partitioned_prefix_sources() {
    let (session, _dir) = temp_session().await;
    let registry = StorageRegistry::new();
    let root = StorageUrl::parse(&format!("s3://{}/", bucket())).unwrap();
    let store = registry.store_for(&root, &s3_options()).unwrap();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let data = items(120, &[]);
    put(store.as_ref(), &format!("{run}/single/items.parquet"), parquet_bytes(&data)).await;
    for cat in ["a", "b", "c"] {
        let part: Vec<Item> = data.iter().filter(|i| i.category == cat).cloned().collect();
        put(store.as_ref(), &format!("{run}/dataset/cat={cat}/part.csv"), csv_text(&part).into_bytes()).await;
    }

    let mut spec = SourceSpec::new("s3file", format!("s3://{}/{run}/single/items.parquet", bucket()));
    spec.options = s3_options();
    let info = session.sources().add(spec).await.unwrap();
    assert_eq!(info.options.get("secret_access_key").map(String::as_str), Some("***"));
    let total: f64 = data.iter().map(|i| i.amount).sum();
    assert_eq!(scalar(&session, "SELECT sum(amount) FROM s3file.public.items").await, format!("{total:?}"));

    let mut spec = SourceSpec::new("s3dir", format!("s3://{}/{run}/dataset/", bucket()));
    spec.options = s3_options();
    session.sources().add(spec).await.unwrap();
    let got = rows(&session, "SELECT cat, count(*) FROM s3dir.public.dataset GROUP BY cat ORDER BY cat").await;
    let expected: Vec<Vec<String>> = ["a", "b", "c"]
        .iter()
        .map(|c| vec![c.to_string(), data.iter().filter(|i| i.category == *c).count().to_string()])
        .collect();
    assert_eq!(got, expected);
    // Joins across object storage and the other source work in one plan.
    assert_eq!(
        scalar(&session, "SELECT count(*) FROM s3file.public.items f JOIN s3dir.public.dataset d ON f.id = d.id").await,
        "120"
    );

    // A missing object and bad credentials option names are clear errors with no trace.
    let mut spec = SourceSpec::new("ghost", format!("s3://{}/{run}/nothing.parquet", bucket()));
    spec.options = s3_options();
    let err = session.sources().add(spec).await.unwrap_err().to_string();
    assert!(err.contains("not found") && err.contains("nothing.parquet"), "{err}");
    let mut spec = SourceSpec::new("typo", format!("s3://{}/{run}/single/items.parquet", bucket()));
    spec.options = s3_options();
    spec.options.insert("endpiont".into(), "x".into());
    let err = session.sources().add(spec).await.unwrap_err().to_string();
    assert!(err.contains("endpiont"), "{err}");
    assert_eq!(session.sources().list().await.unwrap().len(), 2);
}

#[tokio::test]
async fn memory_sources_work_in_process() {
    let (session, _dir) = temp_session().await;
    let url = StorageUrl::parse("memory://mem-test/").unwrap();
    let store = StorageRegistry::new().store_for(&url, &StorageOptions::new()).unwrap();
    put(store.as_ref(), "t/items.json", ndjson_text(&items(9, &[])).into_bytes()).await;
    session.sources().add(SourceSpec::new("mem", "memory://mem-test/t/items.json")).await.unwrap();
    assert_eq!(scalar(&session, "SELECT count(*) FROM mem.public.items").await, "9");
}

#[tokio::test]
async fn cloud_drivers_not_compiled_in_say_which_feature_to_enable() {
    let (session, _dir) = temp_session().await;
    for (url, feature) in [("gs://b/x.parquet", "gcs"), ("azure://c/x.parquet", "azure")] {
        let err = session.sources().add(SourceSpec::new("cloud", url)).await.unwrap_err().to_string();
        if cfg!(feature = "gcs") || cfg!(feature = "azure") {
            continue;
        }
        assert!(err.contains(feature), "{url}: {err}");
    }
}

/// A TCP proxy in front of the test S3 server that can be taken down (every open connection
/// cut, new ones reset) and brought back: an S3 outage without losing the server's objects.
struct FaultProxy {
    addr: std::net::SocketAddr,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connections: std::sync::Arc<parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl FaultProxy {
    async fn start(upstream: String) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let connections: std::sync::Arc<parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Default::default();
        let (is_down, open) = (std::sync::Arc::clone(&down), std::sync::Arc::clone(&connections));
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if is_down.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                open.lock().push(tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        FaultProxy { addr, down, connections }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
        if down {
            self.connections.lock().drain(..).for_each(|c| c.abort());
        }
    }
}

/// S3 down during artifact put / fetch and vector import: a clear error within the retry
/// timeout (not the driver's three minutes), no manifest naming missing files, no half-made
/// vector table; once it is back, the same operations succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_is_a_clear_error_and_retrying_afterwards_works() {
    use jammi_db::artifact::ArtifactFile;
    use jammi_db::vector::{ImportSpec, NoProgress};
    use std::time::{Duration, Instant};

    let upstream = require_env("JAMMI_TEST_S3_ENDPOINT").trim_start_matches("http://").to_string();
    let proxy = FaultProxy::start(upstream).await;
    let mut options = s3_options();
    options.insert("endpoint".into(), proxy.endpoint());
    options.insert("retry_timeout".into(), "2".into());
    options.insert("max_retries".into(), "3".into());
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights.bin");
    std::fs::write(&weights, vec![3u8; 1 << 20]).unwrap();
    let files = [ArtifactFile::from_path("weights.bin", &weights)];
    let run = uuid::Uuid::new_v4().simple().to_string();

    // Artifacts.
    let mut config = jammi_db::Config::embedded(dir.path().join("home"));
    config.storage.root = Some(format!("s3://{}/outage-{run}/vectors", bucket()));
    config.storage.options = options.clone();
    let session = jammi_db::Session::open(config).await.unwrap();
    let store = session.artifacts(options.clone());
    let root = StorageUrl::parse(&format!("s3://{}/outage-{run}/artifacts", bucket())).unwrap();
    let first = store.put_artifact(&root, &["job", "w", "1"], &files).await.unwrap();
    proxy.set_down(true);
    let started = Instant::now();
    let err = store.put_artifact(&root, &["job", "w", "2"], &files).await.expect_err("a put while S3 is down").to_string();
    assert!(started.elapsed() < Duration::from_secs(30), "the error came after {:?}", started.elapsed());
    assert!(!err.contains('\n') && !err.contains("panicked"), "one clear line: {err}");
    let cache = dir.path().join("home/cache");
    let _ = std::fs::remove_dir_all(&cache);
    assert!(store.fetch_artifact(&first).await.is_err(), "a fetch while S3 is down fails");

    // Vector import onto S3 storage.
    let file = dir.path().join("docs.parquet");
    crate::vectors::write_rows(&file, &crate::vectors::rows_from(crate::vectors::clustered(300, 8, 3), 1), true);
    let import = |name: &str| ImportSpec::new(name, file.display().to_string(), "id", "embedding");
    let started = Instant::now();
    let err = session.vectors().import(import("docs"), &NoProgress).await.expect_err("an import while S3 is down").to_string();
    assert!(started.elapsed() < Duration::from_secs(60), "the error came after {:?}", started.elapsed());
    assert!(!err.contains('\n') && !err.contains("panicked"), "one clear line: {err}");
    assert!(session.vectors().list().await.unwrap().is_empty(), "no half-made table is listed");

    // Back: the failed put left no complete bundle; everything works again.
    proxy.set_down(false);
    let failed = StorageUrl::parse(&format!("{}/job/w/2", root.url().as_str().trim_end_matches('/'))).unwrap();
    assert!(!store.is_complete(&failed).await.unwrap(), "no manifest names files that are not there");
    let again = store.put_artifact(&root, &["job", "w", "3"], &files).await.unwrap();
    store.fetch_artifact(&again).await.unwrap();
    store.fetch_artifact(&first).await.unwrap();
    session.vectors().import(import("docs"), &NoProgress).await.unwrap();
    assert_eq!(scalar(&session, "SELECT count(*) FROM vectors.public.docs").await, "300");
}
