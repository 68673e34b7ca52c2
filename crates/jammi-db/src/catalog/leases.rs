//! Repository of leases (`jammi_leases`): which process does a piece of background work
//! now, when several processes share one catalog. A lease is a name, a holder and an expiry;
//! a holder that dies simply stops renewing, and its lease passes on once it expires. Work
//! done under a lease must stay correct without it (its commits check what they change):
//! the lease keeps two processes from doing the same work, not from breaking it.

use std::time::Duration;

use super::{now_millis, Catalog};
use crate::error::Result;

/// Reads and writes `jammi_leases`.
#[derive(Debug)]
pub struct LeaseRepo<'a> {
    catalog: &'a Catalog,
}

impl<'a> LeaseRepo<'a> {
    pub(crate) fn new(catalog: &'a Catalog) -> Self {
        LeaseRepo { catalog }
    }

    /// Take lease `name` for `holder` for `ttl`, or renew it when `holder` has it already;
    /// false while another holder's lease on it has not expired. One statement, atomic on
    /// both backends.
    pub async fn try_acquire(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let now = now_millis();
        let taken = sqlx::query(
            "INSERT INTO jammi_leases (name, holder, expires_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms
             WHERE jammi_leases.expires_at_ms <= $4 OR jammi_leases.holder = excluded.holder",
        )
        .bind(name)
        .bind(holder)
        .bind(now.saturating_add(ttl.as_millis() as i64))
        .bind(now)
        .execute(self.catalog.pool())
        .await
        .map_err(|e| self.catalog.error(e))?;
        Ok(taken.rows_affected() == 1)
    }

    /// Take lease `name` for `holder` for `ttl` whoever holds it: for work a person asked
    /// for explicitly, which must not wait out the lease of a holder that may have died.
    pub async fn take(&self, name: &str, holder: &str, ttl: Duration) -> Result<()> {
        sqlx::query(
            "INSERT INTO jammi_leases (name, holder, expires_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms",
        )
        .bind(name)
        .bind(holder)
        .bind(now_millis().saturating_add(ttl.as_millis() as i64))
        .execute(self.catalog.pool())
        .await
        .map_err(|e| self.catalog.error(e))?;
        Ok(())
    }

    /// Give lease `name` up, if `holder` has it (another holder's lease is left alone).
    pub async fn release(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM jammi_leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(self.catalog.pool())
            .await
            .map_err(|e| self.catalog.error(e))?;
        Ok(())
    }
}
