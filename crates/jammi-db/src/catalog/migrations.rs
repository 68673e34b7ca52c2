//! Ordered, append-only catalog migrations.
//!
//! Each migration runs in one writer-serialised transaction together with its ledger row in
//! `jammi_migrations`, so a crash leaves the catalog at either the old or the new version,
//! and two processes opening a fresh catalog at once apply each migration exactly once.
//! Never edit a released migration: append a new one.

use sqlx::Row;

use super::Catalog;
use crate::error::{Error, Result};

/// One schema change of the catalog.
#[derive(Debug)]
pub struct Migration {
    /// Position in the ledger; strictly increasing.
    pub version: i64,
    /// Short description.
    pub name: &'static str,
    /// Statements, valid on SQLite and PostgreSQL alike.
    pub statements: &'static [&'static str],
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "sources",
    statements: &[
        "CREATE TABLE jammi_change_counter (
            id INTEGER PRIMARY KEY,
            counter BIGINT NOT NULL
        )",
        "INSERT INTO jammi_change_counter (id, counter) VALUES (1, 0)",
        // tenant_id NULL = shared. Names are unique per tenant and among shared rows: the
        // COALESCE makes NULL compare equal to NULL in the unique index on both backends.
        "CREATE TABLE jammi_sources (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NULL,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            url TEXT NOT NULL,
            format TEXT NULL,
            tenant_column TEXT NULL,
            options TEXT NOT NULL,
            table_spec TEXT NOT NULL,
            created_at BIGINT NOT NULL
        )",
        "CREATE UNIQUE INDEX jammi_sources_tenant_name ON jammi_sources (COALESCE(tenant_id, ''), name)",
    ],
},
Migration {
    version: 2,
    name: "vector_tables",
    statements: &[
        // status: 'building' until every file is written and verified, then 'ready'.
        // spec: JSON owned by the vector module (dims, metric, precision, schema, ...).
        "CREATE TABLE jammi_vector_tables (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NULL,
            name TEXT NOT NULL,
            status TEXT NOT NULL,
            location TEXT NOT NULL,
            spec TEXT NOT NULL,
            generation BIGINT NOT NULL,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL
        )",
        "CREATE UNIQUE INDEX jammi_vector_tables_tenant_name ON jammi_vector_tables (COALESCE(tenant_id, ''), name)",
    ],
},
Migration {
    version: 3,
    name: "vector_table_manifest",
    statements: &[
        // The manifest file in force. Writers name manifests uniquely and move this pointer
        // with a compare-and-swap on `generation`, so two writers never overwrite each
        // other's manifest.
        "ALTER TABLE jammi_vector_tables ADD COLUMN manifest TEXT NOT NULL DEFAULT ''",
    ],
},
Migration {
    version: 4,
    name: "mutable_tables",
    statements: &[
        // One row per `mutable.public.NAME`; its rows live in the storage table `storage`
        // (each row stamped with its tenant). tenant_id: who created the table (NULL =
        // unbound); only they (or the admin scope) may change or drop it. Names are global.
        // spec: JSON owned by the mutable module (columns, primary key, indexes).
        "CREATE TABLE jammi_mutable_tables (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NULL,
            name TEXT NOT NULL UNIQUE,
            storage TEXT NOT NULL,
            spec TEXT NOT NULL,
            created_at BIGINT NOT NULL
        )",
    ],
},
Migration {
    version: 5,
    name: "topics",
    statements: &[
        // A topic: its schema and settings (spec, JSON owned by the topic module), the next
        // offset to assign and the lowest one retention kept. tenant_id NULL = shared topic.
        "CREATE TABLE jammi_topics (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NULL,
            name TEXT NOT NULL,
            spec TEXT NOT NULL,
            next_offset BIGINT NOT NULL,
            low_offset BIGINT NOT NULL,
            created_at BIGINT NOT NULL
        )",
        "CREATE UNIQUE INDEX jammi_topics_tenant_name ON jammi_topics (COALESCE(tenant_id, ''), name)",
        // The durable log: one row per event, offsets assigned at commit. tenant_id: the
        // publisher's tenant (NULL = shared event).
        "CREATE TABLE jammi_topic_events (
            topic_id TEXT NOT NULL,
            event_offset BIGINT NOT NULL,
            tenant_id TEXT NULL,
            produced_at BIGINT NOT NULL,
            payload TEXT NOT NULL,
            PRIMARY KEY (topic_id, event_offset)
        )",
        // Consumer groups: the next offset not yet handed to any member.
        "CREATE TABLE jammi_topic_groups (
            topic_id TEXT NOT NULL,
            tenant_id TEXT NULL,
            group_name TEXT NOT NULL,
            next_offset BIGINT NOT NULL,
            PRIMARY KEY (topic_id, group_name)
        )",
        // Events handed to a group member and not yet acknowledged; redelivered after the
        // deadline.
        "CREATE TABLE jammi_topic_pending (
            topic_id TEXT NOT NULL,
            tenant_id TEXT NULL,
            group_name TEXT NOT NULL,
            event_offset BIGINT NOT NULL,
            consumer TEXT NOT NULL,
            deadline BIGINT NOT NULL,
            deliveries BIGINT NOT NULL,
            PRIMARY KEY (topic_id, group_name, event_offset)
        )",
    ],
},
Migration {
    version: 6,
    name: "models_and_jobs",
    statements: &[
        // artifact_prefix: the served artifact, set only by a job's finalize (job_id).
        "CREATE TABLE jammi_models (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NULL,
            name TEXT NOT NULL,
            version TEXT NOT NULL,
            task TEXT NOT NULL,
            dimensions BIGINT NULL,
            metadata TEXT NOT NULL,
            artifact_prefix TEXT NULL,
            job_id TEXT NULL,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL
        )",
        "CREATE UNIQUE INDEX jammi_models_tenant_name_version ON jammi_models (COALESCE(tenant_id, ''), name, version)",
        // An alias names one version of a model (`champion` → v3), per owner.
        "CREATE TABLE jammi_model_aliases (
            tenant_id TEXT NULL,
            name TEXT NOT NULL,
            alias TEXT NOT NULL,
            model_id TEXT NOT NULL,
            updated_at BIGINT NOT NULL
        )",
        "CREATE UNIQUE INDEX jammi_model_aliases_key ON jammi_model_aliases (COALESCE(tenant_id, ''), name, alias)",
        // state: queued | running | succeeded | failed. A running job's lease is
        // (lease_token, lease_expires_at); a new claim replaces the token, so a former holder
        // can no longer heartbeat, fail or finalize.
        "CREATE TABLE jammi_jobs (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NULL,
            model_id TEXT NOT NULL,
            artifact_root TEXT NOT NULL,
            payload TEXT NOT NULL,
            priority BIGINT NOT NULL,
            state TEXT NOT NULL,
            attempts BIGINT NOT NULL,
            max_attempts BIGINT NOT NULL,
            worker TEXT NULL,
            lease_token TEXT NULL,
            lease_expires_at BIGINT NULL,
            last_error TEXT NULL,
            artifact_prefix TEXT NULL,
            enqueued_at BIGINT NOT NULL,
            finished_at BIGINT NULL
        )",
        "CREATE INDEX jammi_jobs_queue ON jammi_jobs (state, priority, enqueued_at)",
        // One row per claim; the artifact prefixes of attempts that did not win are
        // collected after the job finishes.
        "CREATE TABLE jammi_job_attempts (
            job_id TEXT NOT NULL,
            tenant_id TEXT NULL,
            attempt BIGINT NOT NULL,
            worker TEXT NOT NULL,
            lease_token TEXT NOT NULL,
            artifact_prefix TEXT NOT NULL,
            outcome TEXT NOT NULL,
            collected BIGINT NOT NULL,
            started_at BIGINT NOT NULL,
            PRIMARY KEY (job_id, attempt)
        )",
    ],
}, Migration {
    version: 7,
    name: "server tokens",
    statements: &[
        // Bearer tokens of `jammi serve`: only a SHA-256 of each secret is kept. A token
        // acts for its tenant (NULL: no tenant, like the CLI without --tenant).
        "CREATE TABLE jammi_tokens (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NULL,
            name TEXT NOT NULL,
            secret_sha256 TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            revoked_at BIGINT NULL
        )",
        "CREATE UNIQUE INDEX jammi_tokens_secret ON jammi_tokens (secret_sha256)",
    ],
}, Migration {
    version: 8,
    name: "mutable table names per tenant",
    statements: &[
        // Mutable tables become owned like every other object: names are unique per tenant
        // and among shared tables, so two tenants may each have `labels`. The table is
        // rebuilt because SQLite cannot drop a column's UNIQUE constraint in place.
        "CREATE TABLE jammi_mutable_tables_v8 (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NULL,
            name TEXT NOT NULL,
            storage TEXT NOT NULL,
            spec TEXT NOT NULL,
            created_at BIGINT NOT NULL
        )",
        "INSERT INTO jammi_mutable_tables_v8 (id, tenant_id, name, storage, spec, created_at)
            SELECT id, tenant_id, name, storage, spec, created_at FROM jammi_mutable_tables",
        "DROP TABLE jammi_mutable_tables",
        "ALTER TABLE jammi_mutable_tables_v8 RENAME TO jammi_mutable_tables",
        "CREATE UNIQUE INDEX jammi_mutable_tables_tenant_name ON jammi_mutable_tables (COALESCE(tenant_id, ''), name)",
    ],
}, Migration {
    version: 9,
    name: "vector tables that follow a mutable table",
    statements: &[
        // One row per following vector table: the change log's offsets, the backfill's
        // progress, the lease of the worker embedding it, and its last failure.
        "CREATE TABLE jammi_vector_follows (
            table_id TEXT PRIMARY KEY,
            tenant_id TEXT NULL,
            next_offset BIGINT NOT NULL DEFAULT 0,
            embedded_offset BIGINT NOT NULL DEFAULT 0,
            backfill_done BIGINT NOT NULL DEFAULT 0,
            backfill_cursor TEXT NULL,
            lease_token TEXT NULL,
            lease_worker TEXT NULL,
            lease_expires_ms BIGINT NULL,
            last_error TEXT NULL,
            failures BIGINT NOT NULL DEFAULT 0,
            retry_at_ms BIGINT NOT NULL DEFAULT 0,
            rows_embedded BIGINT NOT NULL DEFAULT 0,
            target_model TEXT NULL,
            applied_at_ms BIGINT NULL
        )",
        // Ids of source rows changed since the worker last caught up.
        "CREATE TABLE jammi_vector_follow_changes (
            table_id TEXT NOT NULL,
            tenant_id TEXT NULL,
            change_offset BIGINT NOT NULL,
            row_key TEXT NOT NULL,
            logged_at_ms BIGINT NOT NULL,
            PRIMARY KEY (table_id, change_offset)
        )",
    ],
}, Migration {
    version: 10,
    name: "audit records of searches",
    statements: &[
        // A chain per tenant (`chain`: the tenant id, '' for the shared chain, whose
        // tenant_id is NULL), append-only: the engine never updates or deletes a row, and no
        // SQL statement reaches this table.
        "CREATE TABLE jammi_audit_searches (
            chain TEXT NOT NULL,
            tenant_id TEXT NULL,
            seq BIGINT NOT NULL,
            query_id TEXT NOT NULL,
            key_version BIGINT NOT NULL,
            record TEXT NOT NULL,
            signature TEXT NOT NULL,
            PRIMARY KEY (chain, seq)
        )",
        "CREATE UNIQUE INDEX jammi_audit_searches_query ON jammi_audit_searches (query_id)",
    ],
}, Migration {
    version: 11,
    name: "ephemeral sessions, per-tenant audit settings, audit checkpoints",
    statements: &[
        // One row per ephemeral session, written when it opens, so a process that dies
        // leaves a record the next one (or any replica) finds once `expires_at_ms` passes.
        // state: 'open', then exactly one of 'closed', 'timed_out', 'recovered' — the
        // transaction that moves it out of 'open' is the one that drops the tables.
        "CREATE TABLE jammi_ephemeral_sessions (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NULL,
            opened_at_ms BIGINT NOT NULL,
            timeout_ms BIGINT NOT NULL,
            expires_at_ms BIGINT NOT NULL,
            state TEXT NOT NULL,
            closed_at_ms BIGINT NULL,
            rows_deleted BIGINT NULL
        )",
        "CREATE INDEX jammi_ephemeral_sessions_open ON jammi_ephemeral_sessions (state, expires_at_ms)",
        // Auditing per chain ('' = shared), overriding [audit] enabled.
        "CREATE TABLE jammi_audit_tenants (
            chain TEXT PRIMARY KEY,
            tenant_id TEXT NULL,
            enabled BIGINT NOT NULL,
            updated_at_ms BIGINT NOT NULL
        )",
        // Retention cuts: records 1..=through_seq of a chain were removed; the checkpoint,
        // signed with the chain's key, holds the last removed record's signature so the
        // records after the cut still verify from their first link.
        "CREATE TABLE jammi_audit_checkpoints (
            chain TEXT NOT NULL,
            tenant_id TEXT NULL,
            through_seq BIGINT NOT NULL,
            key_version BIGINT NOT NULL,
            record TEXT NOT NULL,
            signature TEXT NOT NULL,
            PRIMARY KEY (chain, through_seq)
        )",
    ],
}, Migration {
    version: 12,
    name: "evidence channels",
    statements: &[
        // Append-only: channels are registered, never changed or removed. A user channel's
        // rows live in its storage (a mutable table `NAME$evidence`), registered in the same
        // transaction as this row; the built-in channels' values come with search results.
        "CREATE TABLE jammi_evidence_channels (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NULL,
            name TEXT NOT NULL,
            columns TEXT NOT NULL,
            builtin BIGINT NOT NULL,
            created_at_ms BIGINT NOT NULL
        )",
        "CREATE UNIQUE INDEX jammi_evidence_channels_name ON jammi_evidence_channels (COALESCE(tenant_id, ''), name)",
        "INSERT INTO jammi_evidence_channels (id, tenant_id, name, columns, builtin, created_at_ms) VALUES
            ('builtin-vector', NULL, 'vector', '[{\"name\":\"distance\",\"type\":\"float32\"},{\"name\":\"rank\",\"type\":\"int64\"}]', 1, 0),
            ('builtin-text', NULL, 'text', '[{\"name\":\"score\",\"type\":\"float32\"},{\"name\":\"rank\",\"type\":\"int64\"}]', 1, 0),
            ('builtin-model', NULL, 'model', '[{\"name\":\"model\",\"type\":\"string\"},{\"name\":\"version\",\"type\":\"string\"},{\"name\":\"confidence\",\"type\":\"float32\"}]', 1, 0)",
    ],
}, Migration {
    version: 13,
    name: "leases",
    statements: &[
        // Who does a piece of background work (a compaction) while processes share the
        // catalog; see `catalog/leases.rs`.
        "CREATE TABLE jammi_leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            expires_at_ms BIGINT NOT NULL
        )",
    ],
}];

const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS jammi_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)";

/// Apply every migration not yet in the ledger.
pub(super) async fn apply_all(catalog: &Catalog) -> Result<()> {
    {
        let mut tx = catalog.begin_serialized().await?;
        sqlx::query(CREATE_LEDGER).execute(&mut *tx).await.map_err(|e| catalog.error(e))?;
        tx.commit().await.map_err(|e| catalog.error(e))?;
    }
    for migration in MIGRATIONS {
        apply_one(catalog, migration).await?;
    }
    Ok(())
}

async fn apply_one(catalog: &Catalog, migration: &Migration) -> Result<()> {
    let fail = |e: sqlx::Error| Error::Migration {
        version: migration.version,
        name: migration.name,
        message: crate::error::one_line(&e.to_string()),
    };
    let mut tx = catalog.begin_serialized().await?;
    // Re-checked under the writer lock: another process may have just applied it.
    let done = sqlx::query("SELECT version FROM jammi_migrations WHERE version = $1")
        .bind(migration.version)
        .fetch_optional(&mut *tx)
        .await
        .map_err(fail)?
        .is_some();
    if done {
        return Ok(());
    }
    for statement in migration.statements {
        sqlx::query(statement).execute(&mut *tx).await.map_err(fail)?;
    }
    sqlx::query("INSERT INTO jammi_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
        .bind(migration.version)
        .bind(migration.name)
        .bind(super::now_millis())
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
    tx.commit().await.map_err(fail)?;
    tracing::debug!(version = migration.version, name = migration.name, "applied catalog migration");
    Ok(())
}

pub(super) async fn applied(catalog: &Catalog) -> Result<Vec<i64>> {
    let rows = sqlx::query("SELECT version FROM jammi_migrations ORDER BY version")
        .fetch_all(catalog.pool())
        .await
        .map_err(|e| catalog.error(e))?;
    rows.iter()
        .map(|r| r.try_get::<i64, _>(0).map_err(|e| catalog.error(e)))
        .collect()
}
