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
