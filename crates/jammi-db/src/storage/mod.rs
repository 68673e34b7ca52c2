//! Storage: one URL type and one registry that turns URLs into `object_store` stores.
//!
//! Local paths and `file://` URLs use the local file system; `memory://` an in-process store
//! (shared by every session of the process, handy for tests and embedding); `s3://`,
//! `r2://`, `gs://` and `azure://` the cloud drivers, each behind a cargo feature.

mod registry;
mod url;

pub mod conformance;

pub use registry::{StorageOptions, StorageRegistry};
pub use url::StorageUrl;
