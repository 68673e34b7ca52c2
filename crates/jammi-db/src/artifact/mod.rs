//! Model artifacts: bundles of files on object storage.
//!
//! A bundle (fine-tuned adapter, small predictor, tokenizer files…) is written under a
//! *prefix* built from caller-given segments — typically job, worker and attempt, so that no
//! two attempts ever share one:
//!
//! ```text
//! s3://bucket/models/<job>/<worker>/<attempt>/
//!     _put                   marker of a put in progress (removed once complete)
//!     config.json
//!     weights/adapter.safetensors
//!     manifest.json          written last: names, sizes and SHA-256 of every file
//! ```
//!
//! The manifest is the commit point of a put: a prefix without one is incomplete and is
//! never fetched, only collected (and only when it carries the `_put` marker, so a delete
//! of a wrong URL cannot empty a folder of other data). Fetching reads the manifest and
//! GETs exactly the files it lists (never a LIST), verifies every digest, and materialises
//! object-store bundles in a content-addressed local cache. Jobs keep one overwritable resume checkpoint each under
//! `{job prefix}/_resume/`. See `docs/artifacts.md`.
//!
//! ```no_run
//! # async fn example() -> jammi_db::Result<()> {
//! use jammi_db::artifact::{ArtifactFile, ArtifactStore};
//! use jammi_db::storage::{StorageOptions, StorageRegistry, StorageUrl};
//!
//! let store = ArtifactStore::new(StorageRegistry::new(), StorageOptions::new(), "/tmp/jammi-cache");
//! let root = StorageUrl::parse("/tmp/models/")?;
//! let files = [ArtifactFile::from_bytes("config.json", r#"{"dim": 384}"#)];
//! let prefix = store.put_artifact(&root, &["job-7", "worker-a", "attempt-1"], &files).await?;
//! let fetched = store.fetch_artifact(&prefix).await?;
//! assert_eq!(std::fs::read(fetched.path("config.json")).unwrap(), br#"{"dim": 384}"#);
//! # Ok(()) }
//! ```

mod cache;
mod listing;
mod manifest;
mod prefix;
mod queue;
mod registry;
mod store;
mod transfer;

pub use listing::{jobs_to_batch, models_to_batch};
pub use manifest::{validate_name, Manifest, ManifestEntry, MANIFEST_FORMAT, MANIFEST_NAME};
pub use prefix::{encode_segment, prefix_url};
pub use crate::catalog::{JobRecord, JobState};
pub use queue::{JobRequest, Jobs, Lease};
pub use registry::{ModelDefinition, ModelInfo, Models};
pub use store::{ArtifactFile, ArtifactSource, ArtifactStore, FetchedArtifact, DEFAULT_PART_SIZE};
