//! Retention: removing old records from the front of a chain, and the signed checkpoint
//! that records each cut.
//!
//! Only a whole prefix goes (records 1..=N), and only after it verifies; the checkpoint —
//! signed with the chain's key under its own label — holds N, record N's signature (the
//! link the first remaining record carries) and the previous checkpoint's signature. So a
//! verifier starts after the cut exactly as if the records were there, and removing records
//! without a checkpoint, or forging one, still breaks verification. The newest record is
//! never removed: it anchors the chain's next record.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::record::SearchRecord;
use super::Auditor;
use crate::catalog::CheckpointRow;
use crate::error::{Error, Result};

/// The HKDF label of checkpoint signing keys.
pub const CHECKPOINT_KEY_INFO: &[u8] = b"jammi-audit-checkpoint-v1";

/// A checkpoint as signed: compact JSON in this field order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Always `checkpoint`.
    pub kind: String,
    /// The chain.
    pub tenant: String,
    /// Records 1..=`through_seq` are removed.
    pub through_seq: u64,
    /// Record `through_seq`'s signature: the link record `through_seq + 1` carries.
    pub last_signature: String,
    /// Records this cut removed.
    pub removed: u64,
    /// When the cut was made (RFC 3339, UTC).
    pub time: String,
    /// The key version that signed it.
    pub key_version: u32,
    /// The previous checkpoint's signature (`""` for the first).
    pub prev_checkpoint: String,
}

/// Where verification of a chain starts: after its last cut.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Cut {
    /// Records up to this one were removed (0: none).
    pub through_seq: u64,
    /// The link the first remaining record carries.
    pub last_signature: String,
    /// The newest checkpoint's signature.
    pub signature: String,
}

impl Auditor {
    /// Check `tenant`'s checkpoints in order: each signed by the chain's key, for this chain,
    /// after the one before. The last cut, or where and why a checkpoint is not sound.
    pub(super) fn check_checkpoints(&self, tenant: &str, rows: &[CheckpointRow]) -> std::result::Result<Cut, (u64, String)> {
        let mut cut = Cut::default();
        for row in rows {
            let seq = row.through_seq.max(0) as u64;
            let signed = u32::try_from(row.key_version).ok().and_then(|v| self.verify_signed(tenant, CHECKPOINT_KEY_INFO, v, &row.record, &row.signature).ok()).unwrap_or(false);
            if !signed {
                return Err((seq, format!("the checkpoint through record {seq} is not signed by this chain's key: it was altered or forged")));
            }
            let Ok(checkpoint) = serde_json::from_str::<Checkpoint>(&row.record) else {
                return Err((seq, format!("the checkpoint through record {seq} is not readable")));
            };
            if checkpoint.tenant != tenant || checkpoint.through_seq != seq || checkpoint.prev_checkpoint != cut.signature || seq <= cut.through_seq {
                return Err((seq, format!("the checkpoint through record {seq} does not follow the checkpoint before it")));
            }
            cut = Cut { through_seq: seq, last_signature: checkpoint.last_signature, signature: row.signature.clone() };
        }
        Ok(cut)
    }

    /// Remove records 1..=`through` of `tenant`'s chain, recording the cut as a signed
    /// checkpoint. Refused unless the chain verifies up to the cut and a newer record remains.
    pub(super) async fn prune(&self, tenant: &str, through: u64) -> Result<Checkpoint> {
        self.flush().await;
        let report = self.verify_chain(tenant, 1).await?;
        if let Some(bad) = report.first_bad.as_ref().filter(|b| b.seq <= through + 1) {
            return Err(Error::Conflict { message: format!("the chain breaks at record {} ({}); records are not removed from a chain that does not verify", bad.seq, bad.problem) });
        }
        if through <= report.pruned_through {
            return Err(Error::invalid("through", format!("records up to {} are already removed; give a later sequence number", report.pruned_through)));
        }
        if through >= report.last_seq {
            return Err(Error::invalid("through", format!("the chain's newest record is {}: it stays (it anchors the next record); give at most {}", report.last_seq, report.last_seq.saturating_sub(1))));
        }
        let catalog = &self.catalog;
        let mut tx = catalog.begin_serialized().await?;
        // Re-read under the write lock: another engine may have cut meanwhile.
        let latest = sqlx::query("SELECT through_seq, signature FROM jammi_audit_checkpoints WHERE chain = $1 ORDER BY through_seq DESC LIMIT 1")
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| catalog.error(e))?
            .map(|r| Ok::<_, sqlx::Error>((r.try_get::<i64, _>(0)? as u64, r.try_get::<String, _>(1)?)))
            .transpose()
            .map_err(|e| catalog.error(e))?
            .unwrap_or((0, String::new()));
        if latest.0 != report.pruned_through {
            return Err(Error::Conflict { message: "another process cut this chain meanwhile; run the prune again".into() });
        }
        let last: String = sqlx::query_scalar("SELECT signature FROM jammi_audit_searches WHERE chain = $1 AND seq = $2")
            .bind(tenant)
            .bind(through as i64)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| catalog.error(e))?
            .ok_or_else(|| Error::Conflict { message: format!("record {through} is gone from the chain") })?;
        let version = self.current_key_version();
        let checkpoint = Checkpoint {
            kind: "checkpoint".into(),
            tenant: tenant.to_string(),
            through_seq: through,
            last_signature: last,
            removed: through - latest.0,
            time: super::now_rfc3339(),
            key_version: version,
            prev_checkpoint: latest.1,
        };
        let text = serde_json::to_string(&checkpoint).map_err(Error::internal)?;
        let signature = self.sign(tenant, CHECKPOINT_KEY_INFO, version, &text)?;
        sqlx::query("INSERT INTO jammi_audit_checkpoints (chain, tenant_id, through_seq, key_version, record, signature) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(tenant)
            .bind((!tenant.is_empty()).then(|| tenant.to_string()))
            .bind(through as i64)
            .bind(i64::from(version))
            .bind(&text)
            .bind(&signature)
            .execute(&mut *tx)
            .await
            .map_err(|e| catalog.error(e))?;
        sqlx::query("DELETE FROM jammi_audit_searches WHERE chain = $1 AND seq <= $2").bind(tenant).bind(through as i64).execute(&mut *tx).await.map_err(|e| catalog.error(e))?;
        tx.commit().await.map_err(|e| catalog.error(e))?;
        Ok(checkpoint)
    }

    /// The newest sequence number of `tenant`'s chain whose record is older than `cutoff`
    /// (RFC 3339), or 0.
    pub(super) async fn last_before(&self, tenant: &str, cutoff: &str) -> Result<u64> {
        let repo = self.catalog.audit();
        let mut from = 1i64;
        let mut last = 0u64;
        loop {
            let page = repo.chain(tenant, from, super::VERIFY_PAGE).await?;
            let Some(tail) = page.last() else { return Ok(last) };
            from = tail.seq + 1;
            for row in &page {
                match SearchRecord::parse(&row.record) {
                    // RFC 3339 in UTC with whole seconds sorts as text.
                    Some(record) if record.time.as_str() < cutoff => last = row.seq as u64,
                    _ => return Ok(last),
                }
            }
        }
    }
}
