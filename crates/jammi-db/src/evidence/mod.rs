//! Evidence channels: named, typed kinds of evidence about why a row is in a result — a
//! catalog registry, append-only and tenant-aware (see `docs/audit.md`).
//!
//! - Built in: `vector` (distance, rank), `text` (score, rank), `model` (model, version,
//!   confidence). Their values come with search results: `_retrieved_by` names the channels
//!   that found a row, and each channel's columns are `_<channel>_<column>` (a column named
//!   like its channel is `_<channel>`) — see [`columns`].
//! - A user's: `CREATE TABLE evidence.public.NAME (column type, …)` registers channel NAME;
//!   `INSERT INTO evidence.public.NAME (query_id, row_id, column, …)` attaches its values to
//!   a result row (the search's `_query_id`, the row's id), e.g. a reranker's score; `SELECT`
//!   reads them. Nothing updates, deletes or drops evidence.
//!
//! A user channel's rows live in a mutable table named `NAME$evidence` (so transactions,
//! tenancy and both catalog databases come with it), registered with the channel in one
//! transaction; `evidence.public.channels` lists the registry.

pub mod columns;
pub(crate) mod sql;

use datafusion::sql::sqlparser::ast;
use serde_json::json;
use sqlx::AnyConnection;

use crate::catalog::{Catalog, ChannelRecord};
use crate::error::{Error, Result};
use crate::mutable::spec::TableSpec;
use crate::tenant::TenantId;

/// The SQL catalog of evidence channels.
pub const CATALOG: &str = "evidence";

/// The built-in channels, whose values come with search results.
pub const BUILTIN: [&str; 3] = ["vector", "text", "model"];

/// The name of the registry's listing in the `evidence` catalog (no channel may take it).
pub const CHANNELS_TABLE: &str = "channels";

/// The columns every user channel's rows start with: which search and which row.
pub const KEY_COLUMNS: [&str; 2] = ["query_id", "row_id"];

const SUFFIX: &str = "$evidence";

/// The mutable table holding channel `channel`'s rows.
pub(crate) fn storage_name(channel: &str) -> String {
    format!("{channel}{SUFFIX}")
}

/// The channel a mutable table's name holds the rows of, if it is a channel's storage.
pub(crate) fn channel_of(name: &str) -> Option<&str> {
    name.strip_suffix(SUFFIX)
}

/// The channel name when `name` is `evidence.public.C` (or `evidence.C`).
pub(crate) fn channel_name(name: &ast::ObjectName) -> Option<String> {
    let parts: Vec<String> = name.0.iter().filter_map(|p| p.as_ident()).map(crate::names::sql_ident).collect();
    match parts.as_slice() {
        [c, s, t] if c == CATALOG && s == crate::names::DEFAULT_SCHEMA => Some(t.clone()),
        [c, t] if c == CATALOG => Some(t.clone()),
        _ => None,
    }
}

/// `CREATE TABLE evidence.public.NAME (columns)` as the statement that creates the
/// channel's storage: the key columns first, then the channel's.
pub(crate) fn storage_create_sql(create: &ast::CreateTable, channel: &str) -> Result<String> {
    if BUILTIN.contains(&channel) || channel == CHANNELS_TABLE {
        return Err(Error::InvalidName { name: channel.to_string(), message: format!("'{channel}' is reserved (built-in channels: {}; the registry: evidence.public.channels)", BUILTIN.join(", ")) });
    }
    if create.query.is_some() || !create.constraints.is_empty() || create.columns.is_empty() {
        return Err(Error::invalid("CREATE TABLE evidence", format!("CREATE TABLE evidence.public.{channel} (column type, …): give the channel's columns only — its rows are keyed by (query_id, row_id), added for you")));
    }
    if let Some(c) = create.columns.iter().find(|c| KEY_COLUMNS.contains(&crate::names::sql_ident(&c.name).as_str())) {
        return Err(Error::invalid("CREATE TABLE evidence", format!("column '{}' is one of the key columns every channel has (query_id, row_id); name it otherwise", c.name)));
    }
    let columns: Vec<String> = create.columns.iter().map(|c| c.to_string()).collect();
    Ok(format!(
        "CREATE TABLE mutable.public.{} (query_id VARCHAR NOT NULL, row_id VARCHAR NOT NULL, {}, PRIMARY KEY (query_id, row_id))",
        crate::names::quote_ident(&storage_name(channel)),
        columns.join(", ")
    ))
}

/// Register channel `channel` (its storage `spec` just created) inside the transaction open
/// on `conn`.
pub(crate) async fn register_in(catalog: &Catalog, conn: &mut AnyConnection, owner: Option<TenantId>, channel: &str, spec: &TableSpec) -> Result<()> {
    let columns: Vec<serde_json::Value> = spec
        .columns
        .iter()
        .filter(|c| !KEY_COLUMNS.contains(&c.name.as_str()))
        .map(|c| json!({"name": c.name, "type": c.ty.sql_name().to_ascii_lowercase()}))
        .collect();
    let record = ChannelRecord { id: uuid::Uuid::new_v4().simple().to_string(), tenant: owner, name: channel.to_string(), columns: json!(columns).to_string(), builtin: false };
    catalog.evidence().insert_in(conn, &record).await
}

/// The channels `owner`'s scope sees: the built-ins, the shared ones and its own.
pub async fn channels(catalog: &Catalog, scope: crate::tenant::TenantScope) -> Result<Vec<ChannelRecord>> {
    Ok(catalog.evidence().list_all().await?.into_iter().filter(|c| crate::tenant::visible(scope, c.tenant)).collect())
}
