//! Lifecycle events of ephemeral sessions on topic `jammi.audit.session_lifecycle.v1`:
//! `opened`, `closed`, `timed_out`, `recovered`, each written in the transaction that
//! records the change (so an event is never lost nor seen for a change that rolled back),
//! and signed like search records when auditing is on: HMAC-SHA256 with the tenant's key,
//! derived with its own label (`jammi-audit-session-v1`).

use serde::Serialize;
use sqlx::AnyConnection;

use crate::audit::Auditor;
use crate::catalog::Catalog;
use crate::error::Result;

/// The topic of lifecycle events.
pub const LIFECYCLE_TOPIC: &str = "jammi.audit.session_lifecycle.v1";

/// Its columns.
pub(super) const LIFECYCLE_COLUMNS: &str = "session_id:string,tenant:string,event:string,reason:string,rows_deleted:int64,record:string,signature:string";

/// The HKDF label of lifecycle signing keys (a search record's key cannot sign one).
pub const SESSION_KEY_INFO: &[u8] = b"jammi-audit-session-v1";

/// Rows one table held when its session ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableRows {
    /// The table's name in the session's SQL.
    pub name: String,
    /// Its rows when dropped.
    pub rows: i64,
}

/// One event, as signed: compact JSON in this field order.
#[derive(Debug, Serialize)]
pub(super) struct LifecycleRecord<'a> {
    pub event: &'a str,
    pub session: &'a str,
    pub tenant: &'a str,
    pub time: String,
    pub reason: &'a str,
    pub timeout_ms: u64,
    pub tables: &'a [TableRows],
    pub rows_deleted: i64,
    pub key_version: u32,
}

/// Append `record`'s event in the transaction open on `conn` (signed with `auditor`'s
/// current key when auditing is on; unsigned — an empty signature — when it is off).
pub(super) async fn append(conn: &mut AnyConnection, catalog: &Catalog, auditor: Option<&Auditor>, mut record: LifecycleRecord<'_>) -> Result<()> {
    let Some(topic) = crate::audit::topic_id_in(conn, catalog, LIFECYCLE_TOPIC).await? else { return Ok(()) };
    let (text, signature) = match auditor {
        Some(auditor) => {
            record.key_version = auditor.current_key_version();
            let text = serde_json::to_string(&record).map_err(crate::error::Error::internal)?;
            let signature = auditor.sign(record.tenant, SESSION_KEY_INFO, record.key_version, &text)?;
            (text, signature)
        }
        None => (serde_json::to_string(&record).map_err(crate::error::Error::internal)?, String::new()),
    };
    let event = serde_json::json!({
        "session_id": record.session,
        "tenant": record.tenant,
        "event": record.event,
        "reason": record.reason,
        "rows_deleted": record.rows_deleted,
        "record": text,
        "signature": signature,
    })
    .to_string();
    let tenant = (!record.tenant.is_empty()).then(|| record.tenant.to_string());
    crate::topic::log::append(conn, catalog.backend().kind(), &topic, &Default::default(), tenant, vec![event]).await?;
    Ok(())
}
