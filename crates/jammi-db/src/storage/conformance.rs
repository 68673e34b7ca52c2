//! Storage conformance: the object-store operations jammi-db relies on, checked against any
//! store the [`StorageRegistry`](super::StorageRegistry) builds (file, memory, S3).
//! Test code: checks panic on failure.

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// Put, head, get, ranged get, list under a prefix, delete, and NotFound after delete.
pub async fn run_all(store: &dyn ObjectStore, prefix: &str) {
    let base = format!("{}/conformance-{}", prefix.trim_end_matches('/'), uuid::Uuid::new_v4().simple());
    let a = Path::from(format!("{base}/a.bin"));
    let b = Path::from(format!("{base}/sub/b.bin"));
    store.put(&a, PutPayload::from_static(b"hello world")).await.expect("put a");
    store.put(&b, PutPayload::from_static(b"second")).await.expect("put b");

    let meta = store.head(&a).await.expect("head");
    assert_eq!(meta.size, 11);
    let bytes = store.get(&a).await.expect("get").bytes().await.expect("bytes");
    assert_eq!(&bytes[..], b"hello world");
    let range = store.get_range(&a, 6..11).await.expect("range");
    assert_eq!(&range[..], b"world");

    let mut listed: Vec<String> = store
        .list(Some(&Path::from(base.clone())))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .expect("list");
    listed.sort();
    assert_eq!(listed, vec![a.to_string(), b.to_string()]);

    store.delete(&a).await.expect("delete");
    let err = store.head(&a).await.unwrap_err();
    assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
    store.delete(&b).await.expect("delete b");
}
