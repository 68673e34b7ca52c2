//! The audit log of searches (issue 21, first part): every audited search appends a signed
//! record to its tenant's chain.
//!
//! Parts: [`keys`] (master keys, per-tenant HKDF keys, HMAC signatures), [`record`] (the
//! record and its canonical text). A record carries its sequence number and the previous
//! record's signature inside the signed text, so verification finds a changed, removed,
//! inserted, reordered or replayed record at the sequence number where the chain breaks.

pub mod keys;
pub mod record;
pub mod retention;
pub(crate) mod sql;
mod writer;
pub use writer::SEARCH_TOPIC;
pub(crate) use writer::{ensure_topic, topic_id_in};

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float32Type, Int64Type};
use serde_json::{json, Value};

use crate::catalog::{AuditRow, Catalog};
use crate::error::{Error, Result};
use crate::tenant::TenantScope;
use keys::{KeyStore, SEARCH_KEY_INFO};
use record::SearchRecord;

/// Rows read per step of a verification.
pub(super) const VERIFY_PAGE: i64 = 1000;

/// Signs and appends records, and verifies chains.
#[derive(Debug)]
pub struct Auditor {
    catalog: Catalog,
    keys: Arc<dyn KeyStore>,
    /// The engine's audit writer (see [`writer`]).
    writer: tokio::sync::mpsc::Sender<writer::Message>,
    /// Whether a search waits for its record's commit.
    synchronous: bool,
    /// Chains whose auditing the operator turned on or off (`jammi_audit_tenants`), as of
    /// the engine's last catalog sync; the others are audited.
    overrides: parking_lot::RwLock<std::collections::HashMap<String, bool>>,
}

/// What one search contributes to its record.
#[derive(Debug, Clone)]
pub struct SearchAudit {
    /// `vector`, `text` or `hybrid`.
    pub kind: &'static str,
    /// The model that embedded the query, if one did.
    pub model: Option<(String, String)>,
    /// Table, filter, k, ef, fusion and the query (capped by [`record::capped`]).
    pub lineage: Value,
}

/// The auditor `config` asks for (`None` when auditing is off); a missing or malformed key
/// is an error when it is on.
pub async fn auditor_for(config: &crate::config::AuditConfig, catalog: &Catalog) -> Result<Option<Arc<Auditor>>> {
    if !config.enabled.unwrap_or(false) {
        return Ok(None);
    }
    writer::ensure_topic(catalog, SEARCH_TOPIC, writer::SEARCH_TOPIC_COLUMNS).await?;
    let keys = match &config.key_file {
        Some(path) => keys::StaticKeys::from_file(path)?,
        None => keys::StaticKeys::from_env(&config.key_env)?,
    };
    let auditor = Auditor::new(catalog.clone(), Arc::new(keys), config.durability == crate::config::AuditDurability::Synchronous);
    auditor.reload_overrides().await?;
    Ok(Some(Arc::new(auditor)))
}

/// The audit log as a session sees it: its own chain (the admin scope: every chain).
#[derive(Debug)]
pub struct AuditLog<'a> {
    pub(crate) auditor: Option<&'a Arc<Auditor>>,
    pub(crate) scope: TenantScope,
}

impl AuditLog<'_> {
    fn auditor(&self) -> Result<&Arc<Auditor>> {
        self.auditor.ok_or_else(|| Error::invalid("audit", "auditing is off; set [audit] enabled = true (JAMMI_AUDIT__ENABLED=true) and a key (JAMMI_AUDIT_KEY)"))
    }

    /// Verify the chains this session may read (`tenant`: one of them, for the admin scope)
    /// from sequence number `from` (1: the start).
    pub async fn verify(&self, tenant: Option<&str>, from: u64) -> Result<Vec<ChainReport>> {
        self.auditor()?.verify(self.scope, tenant, from).await
    }

    /// The record of search `query_id`, if this session may read it.
    pub async fn show(&self, query_id: &str) -> Result<Option<AuditRow>> {
        self.auditor()?.show(self.scope, query_id).await
    }

    /// Records of this session's chain (the admin scope: `tenant`'s) from `from`, at most
    /// `limit`.
    pub async fn records(&self, tenant: Option<&str>, from: u64, limit: usize) -> Result<Vec<AuditRow>> {
        let auditor = self.auditor()?;
        let chain = match (self.scope, tenant) {
            (TenantScope::Admin, Some(t)) => t.to_string(),
            (_, Some(t)) if t != chain_of(self.scope) => return Err(Error::PermissionDenied { message: "a tenant reads only its own audit chain".into() }),
            _ => chain_of(self.scope),
        };
        auditor.flush().await;
        auditor.catalog.audit().chain(&chain, from as i64, limit.min(100_000) as i64).await
    }
}

impl AuditLog<'_> {
    /// Whether `signature` signs `record`, an ephemeral session's lifecycle event (the
    /// `record` and `signature` columns of `jammi.audit.session_lifecycle.v1`), with the key
    /// of the tenant it names — which must be this session's (any, for the admin scope).
    pub fn verify_session_event(&self, record: &str, signature: &str) -> Result<bool> {
        let auditor = self.auditor()?;
        let parsed: Value = serde_json::from_str(record).map_err(|e| Error::invalid("record", format!("not a lifecycle event: {e}")))?;
        let tenant = parsed["tenant"].as_str().ok_or_else(|| Error::invalid("record", "the event names no tenant"))?;
        if self.scope != TenantScope::Admin && tenant != chain_of(self.scope) {
            return Err(Error::PermissionDenied { message: "a tenant verifies only its own events".into() });
        }
        let version = parsed["key_version"].as_u64().and_then(|v| u32::try_from(v).ok()).ok_or_else(|| Error::invalid("record", "the event names no key version"))?;
        auditor.verify_signed(tenant, crate::ephemeral::lifecycle::SESSION_KEY_INFO, version, record, signature)
    }
}

impl AuditLog<'_> {
    fn require_admin(&self, what: &str) -> Result<()> {
        if self.scope == TenantScope::Admin {
            Ok(())
        } else {
            Err(Error::PermissionDenied { message: format!("{what} is the operator's (the admin scope)") })
        }
    }

    /// Turn auditing of `tenant`'s chain (`""`: the shared chain) on or off, or back to the
    /// default (on) with `None`. The operator's alone; every engine on the catalog follows
    /// at its next statement.
    pub async fn set_enabled(&self, tenant: &str, enabled: Option<bool>) -> Result<()> {
        self.require_admin("turning auditing on or off")?;
        self.auditor()?.catalog.audit().set_override(tenant, enabled).await?;
        self.auditor()?.reload_overrides().await
    }

    /// The chains whose auditing was turned on or off: (tenant, enabled).
    pub async fn settings(&self) -> Result<Vec<(String, bool)>> {
        self.require_admin("reading the audit settings")?;
        self.auditor()?.catalog.audit().overrides().await
    }

    /// Remove records 1..=`through` of `tenant`'s chain (retention), recording the cut as
    /// a signed checkpoint; refused unless the chain verifies up to there, and the newest
    /// record always stays. The operator's alone.
    pub async fn prune(&self, tenant: &str, through: u64) -> Result<retention::Checkpoint> {
        self.require_admin("removing audit records")?;
        self.auditor()?.prune(tenant, through).await
    }

    /// [`AuditLog::prune`] of every record older than `age` (the newest stays).
    pub async fn prune_older_than(&self, tenant: &str, age: std::time::Duration) -> Result<Option<retention::Checkpoint>> {
        self.require_admin("removing audit records")?;
        let auditor = self.auditor()?;
        auditor.flush().await;
        let cutoff = (chrono::Utc::now() - chrono::Duration::from_std(age).map_err(|e| Error::invalid("age", e.to_string()))?).format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let report = auditor.verify_chain(tenant, 1).await?;
        let through = auditor.last_before(tenant, &cutoff).await?.min(report.last_seq.saturating_sub(1));
        if through <= report.pruned_through {
            return Ok(None);
        }
        auditor.prune(tenant, through).await.map(Some)
    }
}

/// The chain tenant of `scope`: the tenant's id, or `""` for the shared chain.
pub fn chain_of(scope: TenantScope) -> String {
    scope.owner().map(|t| t.to_string()).unwrap_or_default()
}

/// The time now: RFC 3339, whole seconds, UTC.
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// (id, score) of each result row: `_distance` for vector searches, `_score` otherwise. The
/// id is the `id` column (vector tables), else the first column (a mutable table's key).
fn results_of(batch: &RecordBatch) -> Vec<(Value, f32)> {
    let Some(ids) = batch.column_by_name("id").or_else(|| (batch.num_columns() > 0).then(|| batch.column(0))) else { return Vec::new() };
    let ids = &datafusion::arrow::compute::cast(ids, &DataType::Int64).ok().filter(|c| c.null_count() == ids.null_count()).or_else(|| datafusion::arrow::compute::cast(ids, &DataType::Utf8).ok()).unwrap_or_else(|| ids.clone());
    let scores = batch.column_by_name("_score").or_else(|| batch.column_by_name("_distance"));
    (0..batch.num_rows())
        .map(|row| {
            let id = match ids.data_type() {
                DataType::Int64 => json!(ids.as_primitive::<Int64Type>().value(row)),
                DataType::Utf8 => json!(ids.as_string::<i32>().value(row)),
                _ => Value::Null,
            };
            let score = scores.filter(|s| s.is_valid(row) && s.data_type() == &DataType::Float32).map_or(f32::NAN, |s| s.as_primitive::<Float32Type>().value(row));
            (id, score)
        })
        .collect()
}

impl Auditor {
    /// An auditor signing with `keys`; with `synchronous`, a search returns only after its
    /// record is committed. Starts the engine's audit writer.
    pub fn new(catalog: Catalog, keys: Arc<dyn KeyStore>, synchronous: bool) -> Self {
        // Batched: a batch gathers for 5 ms, so a steady stream of searches costs at most
        // 200 commits a second — and the catalog's write lock, which mutable-table writes
        // share, is free the rest of the time. Synchronous: commit at once (a search waits).
        let window = if synchronous { std::time::Duration::ZERO } else { std::time::Duration::from_millis(5) };
        let writer = writer::spawn(catalog.clone(), Arc::clone(&keys), window);
        Auditor { catalog, keys, writer, synchronous, overrides: Default::default() }
    }

    /// Read the per-chain settings again (the engine does at each catalog change).
    pub(crate) async fn reload_overrides(&self) -> Result<()> {
        let overrides = self.catalog.audit().overrides().await?;
        *self.overrides.write() = overrides.into_iter().collect();
        Ok(())
    }

    /// Whether searches of `chain` are audited.
    pub fn audits(&self, chain: &str) -> bool {
        self.overrides.read().get(chain).copied().unwrap_or(true)
    }

    /// Record a search that answered `batch` in `scope`'s chain; returns its query id
    /// (`None` when auditing of that chain is turned off).
    pub async fn record(&self, scope: TenantScope, search: SearchAudit, batch: &RecordBatch) -> Result<Option<String>> {
        if !self.audits(&chain_of(scope)) {
            return Ok(None);
        }
        let query_id = uuid::Uuid::new_v4().to_string();
        let version = self.keys.current_version();
        // The key must exist before the search is answered: a misconfigured key store fails
        // the search rather than losing its record.
        self.keys.key(version)?;
        let record = SearchRecord {
            tenant: chain_of(scope),
            seq: 0,
            query_id: query_id.clone(),
            time: now_rfc3339(),
            kind: search.kind.to_string(),
            model: search.model,
            lineage: record::capped(search.lineage),
            results: results_of(batch),
            key_version: version,
            prev: String::new(),
        };
        let closed = || Error::Unavailable { backend: "audit log".into(), message: "the audit writer has stopped".into() };
        if self.synchronous {
            let (ack, done) = tokio::sync::oneshot::channel();
            self.writer.send(writer::Message::Append { record, ack: Some(ack) }).await.map_err(|_| closed())?;
            done.await.map_err(|_| closed())??;
        } else {
            self.writer.send(writer::Message::Append { record, ack: None }).await.map_err(|_| closed())?;
        }
        Ok(Some(query_id))
    }

    /// The key version that signs new records.
    pub fn current_key_version(&self) -> u32 {
        self.keys.current_version()
    }

    /// Sign `text` with `tenant`'s key of `version`, derived with the label `info`.
    pub(crate) fn sign(&self, tenant: &str, info: &[u8], version: u32, text: &str) -> Result<String> {
        Ok(self.keys.key(version)?.derive(tenant, info).sign(text.as_bytes()))
    }

    /// Whether `signature` is `tenant`'s signature of `text` with key `version` and label
    /// `info` (an ephemeral session's lifecycle event: `keys::SESSION_KEY_INFO`).
    pub fn verify_signed(&self, tenant: &str, info: &[u8], version: u32, text: &str, signature: &str) -> Result<bool> {
        Ok(self.keys.key(version)?.derive(tenant, info).verify(text.as_bytes(), signature))
    }

    /// Wait until every record handed over so far is committed (or has failed).
    pub async fn flush(&self) {
        let (done, flushed) = tokio::sync::oneshot::channel();
        if self.writer.send(writer::Message::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }

    /// The record of search `query_id`, if `scope` may read it (its own chain; the admin
    /// scope reads every chain).
    pub async fn show(&self, scope: TenantScope, query_id: &str) -> Result<Option<AuditRow>> {
        self.flush().await;
        let found = self.catalog.audit().by_query_id(query_id).await?;
        Ok(found.filter(|r| scope == TenantScope::Admin || r.tenant == chain_of(scope)))
    }

    /// Verify the chains `scope` may read (one tenant's, or with `tenant`, that one for the
    /// admin scope), from sequence number `from` on.
    pub async fn verify(&self, scope: TenantScope, tenant: Option<&str>, from: u64) -> Result<Vec<ChainReport>> {
        self.flush().await;
        let tenants = match (scope, tenant) {
            (TenantScope::Admin, Some(t)) => vec![t.to_string()],
            (TenantScope::Admin, None) => self.catalog.audit().tenants().await?,
            (_, Some(t)) if t != chain_of(scope) => return Err(Error::PermissionDenied { message: "a tenant verifies only its own audit chain".into() }),
            _ => vec![chain_of(scope)],
        };
        let mut reports = Vec::with_capacity(tenants.len());
        for tenant in tenants {
            reports.push(self.verify_chain(&tenant, from.max(1)).await?);
        }
        Ok(reports)
    }

    async fn verify_chain(&self, tenant: &str, from: u64) -> Result<ChainReport> {
        let repo = self.catalog.audit();
        // Records before the last retention cut are gone; checking starts after it, from
        // the link its checkpoint vouches for.
        let cut = match self.check_checkpoints(tenant, &repo.checkpoints(tenant).await?) {
            Ok(cut) => cut,
            Err((seq, problem)) => {
                return Ok(ChainReport { tenant: tenant.to_string(), from, checked: 0, last_seq: from.saturating_sub(1), pruned_through: 0, first_bad: Some(Break { seq, problem }) });
            }
        };
        let from = from.max(cut.through_seq + 1);
        let mut report = ChainReport { tenant: tenant.to_string(), from, checked: 0, last_seq: from - 1, pruned_through: cut.through_seq, first_bad: None };
        // The link into the first record checked: the stored signature before it.
        let mut prev = if from == cut.through_seq + 1 && cut.through_seq > 0 {
            Some(cut.last_signature.clone())
        } else if from > 1 {
            match repo.at(tenant, from as i64 - 1).await? {
                Some(row) => Some(row.signature),
                None => None,
            }
        } else {
            Some(String::new())
        };
        let mut expected = from;
        loop {
            let page = repo.chain(tenant, expected as i64, VERIFY_PAGE).await?;
            if page.is_empty() {
                return Ok(report);
            }
            for row in &page {
                if let Some(problem) = self.check(tenant, expected, prev.as_deref(), row) {
                    report.first_bad = Some(Break { seq: expected, problem });
                    return Ok(report);
                }
                prev = Some(row.signature.clone());
                report.checked += 1;
                report.last_seq = expected;
                expected += 1;
            }
        }
    }

    /// Why `row`, expected at `seq` after a record signed `prev`, breaks the chain.
    fn check(&self, tenant: &str, seq: u64, prev: Option<&str>, row: &AuditRow) -> Option<String> {
        if row.seq as u64 != seq {
            return Some(format!("record {seq} is missing (the next stored record is {})", row.seq));
        }
        let version = u32::try_from(row.key_version).ok()?;
        let key = match self.keys.key(version) {
            Ok(master) => master.derive(tenant, SEARCH_KEY_INFO),
            Err(e) => return Some(e.to_string()),
        };
        if !key.verify(row.record.as_bytes(), &row.signature) {
            return Some(format!("record {seq}'s signature does not match its text: it was altered, or signed with another tenant's key (replayed from another chain)"));
        }
        let Some(record) = SearchRecord::parse(&row.record) else {
            return Some(format!("record {seq} is not a readable record"));
        };
        if record.tenant != tenant || record.seq != seq || i64::from(record.key_version) != row.key_version || record.query_id != row.query_id {
            return Some(format!("record {seq} was signed for another place (tenant '{}', sequence {})", record.tenant, record.seq));
        }
        match prev {
            Some(prev) if record.prev != prev => Some(format!("record {seq} does not follow record {}: a record was removed, inserted or reordered before it", seq - 1)),
            _ => None,
        }
    }
}

/// The outcome of verifying one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// The chain's tenant (`""`: shared).
    pub tenant: String,
    /// The first sequence number checked.
    pub from: u64,
    /// Records checked and found sound.
    pub checked: u64,
    /// The last sound sequence number.
    pub last_seq: u64,
    /// Records up to this one were removed by retention (0: none), under a checkpoint that
    /// verified.
    pub pruned_through: u64,
    /// Where the chain breaks, if it does.
    pub first_bad: Option<Break>,
}

/// Where and why a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// The sequence number.
    pub seq: u64,
    /// What is wrong there.
    pub problem: String,
}

impl ChainReport {
    /// True when every record checked is sound.
    pub fn ok(&self) -> bool {
        self.first_bad.is_none()
    }
}
