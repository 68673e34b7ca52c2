//! # jammi-db
//!
//! An embeddable database for AI data pipelines: SQL over files and databases, vector
//! tables, mutable companion tables, a trigger broker and a model-artifact store, in one
//! engine built on Apache DataFusion.
//!
//! A short tour:
//!
//! ```no_run
//! # async fn tour() -> jammi_db::Result<()> {
//! use jammi_db::{Session, source::SourceSpec};
//!
//! // Open (or create) a data directory: SQLite catalog, local storage, nothing to install.
//! let session = Session::open_dir("./.jammi").await?;
//!
//! // Register a file as a source; it reads as `sales.public.orders`.
//! session.sources().add(SourceSpec::new("sales", "data/orders.parquet")).await?;
//!
//! // Query it with SQL.
//! let batches = session.sql("SELECT count(*) FROM sales.public.orders").await?.collect().await?;
//! # let _ = batches;
//!
//! // Run as a tenant: only that tenant's rows (plus shared rows) are visible.
//! let tenant = "3f2b8c1e-0000-4000-8000-000000000001".parse()?;
//! let _frame = session.with_tenant(Some(tenant)).sql("SELECT * FROM sales.public.orders").await?;
//! # Ok(()) }
//! ```
//!
//! Layout: [`config`] (settings), [`catalog`] (metadata on SQLite or Postgres),
//! [`storage`] (object stores), [`source`] (file sources), [`tenant`] (scopes and the
//! row filter), [`security`] (the statement policy, session settings, input limits), [`session`] (wiring and SQL), [`prepared`] (statements planned once, run
//! with parameters).

#![warn(missing_docs, unreachable_pub, clippy::clone_on_ref_ptr)]

pub mod artifact;
pub mod audit;
pub mod catalog;
pub mod change;
pub mod config;
pub mod embed;
pub mod ephemeral;
pub mod evidence;
mod context;
mod delegate;
pub mod distributed;
mod engine;
pub mod engine_catalog;
mod plan_cache;
pub mod error;
mod literal;
mod vector_literals;
pub mod mutable;
pub mod names;
pub mod prepared;
pub mod progress;
pub mod redact;
pub mod security;
pub mod session;
mod statement;
pub mod source;
pub mod storage;
pub mod tenant;
pub mod topic;
pub mod txn;
pub mod vector;

pub use config::Config;
pub use error::{Error, Result};
pub use prepared::PreparedStatement;
pub use session::{EphemeralSession, Session};
pub use statement::SqlStatement;
pub use tenant::{TenantId, TenantScope};

/// Re-exported so embedders use the same DataFusion and Arrow versions as the engine.
pub use datafusion;
