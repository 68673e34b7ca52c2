//! Large scans of jammi-db's file sources on an Apache Ballista cluster.
//!
//! [`install`] makes `[query] engine = "ballista"` available to every session the process
//! opens ([`engine::BallistaEngine`]); [`process`] runs Ballista's scheduler and executor
//! with jammi's codec ([`codec`]) and the deployment's object stores ([`stores`]) built in.
//! See `docs/ballista.md`.

#![warn(missing_docs, unreachable_pub, clippy::clone_on_ref_ptr)]

pub mod codec;
pub mod engine;
pub mod process;
pub mod shipped;
pub mod stores;

/// Register the `ballista` engine with jammi-db (once per process, before sessions open).
pub fn install() {
    jammi_db::distributed::register_engine("ballista", engine::BallistaEngine::from_config);
}
