//! `jammi audit verify` and `jammi audit show`: the signed audit log of searches.
//!
//! Without `--tenant` the operator reads every chain (the admin scope); with `--tenant T`,
//! that tenant's chain only, as the tenant itself would.

use std::io::Write;
use std::sync::Arc;

use anyhow::{anyhow, Result};
use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use jammi_db::audit::ChainReport;
use jammi_db::tenant::TenantScope;
use jammi_db::Session;

use crate::cli::OutputFormat;
use crate::print;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Verify audit chains: every record's signature, sequence and link to the one before.
    /// Exits 1 at the first broken record, naming its sequence number and why.
    Verify {
        /// Start at this sequence number (its link to the record before is checked too).
        #[arg(long, default_value_t = 1)]
        from: u64,
    },
    /// Show the record of one search.
    Show {
        /// The search's query id.
        query_id: String,
    },
    /// Turn auditing of one chain on or off, or back to the default (on). The operator's.
    Set {
        /// The chain: a tenant id, or `shared`.
        chain: String,
        /// `on`, `off` or `default`.
        #[arg(value_parser = ["on", "off", "default"])]
        state: String,
    },
    /// The chains whose auditing was turned on or off.
    Settings,
    /// Retention: remove a chain's oldest records under a signed checkpoint (the chain must
    /// verify up to the cut; its newest record always stays). The operator's.
    Prune {
        /// The chain: a tenant id, or `shared`.
        chain: String,
        /// Remove records 1 to this sequence number.
        #[arg(long, conflicts_with = "older_than", required_unless_present = "older_than")]
        through: Option<u64>,
        /// Remove records older than this age: `30d`, `12h`, `90min`.
        #[arg(long)]
        older_than: Option<String>,
    },
}

/// The chain a command names: a tenant id, or `shared` for the shared chain (`""`).
fn chain_arg(chain: &str) -> Result<String> {
    if chain == "shared" {
        return Ok(String::new());
    }
    chain.parse::<jammi_db::TenantId>().map(|t| t.to_string()).map_err(|e| anyhow!("invalid chain '{chain}': give a tenant id or `shared` ({e})"))
}

pub async fn run(session: &Session, command: AuditCommand, format: OutputFormat, out: &mut dyn Write) -> Result<()> {
    // The operator (no --tenant) reads every chain.
    let operator = session.scope() == TenantScope::Unbound;
    let admin_only = |what: &str| if operator { Ok(()) } else { Err(anyhow!("{what} is the operator's: run it without --tenant")) };
    match command {
        AuditCommand::Set { chain, state } => {
            admin_only("jammi audit set")?;
            let chain = chain_arg(&chain)?;
            let enabled = match state.as_str() {
                "on" => Some(true),
                "off" => Some(false),
                _ => None,
            };
            session.admin(|s| async move { s.audit().set_enabled(&chain, enabled).await }).await?;
            Ok(())
        }
        AuditCommand::Settings => {
            admin_only("jammi audit settings")?;
            let settings = session.admin(|s| async move { s.audit().settings().await }).await?;
            let schema = Arc::new(Schema::new(vec![Field::new("tenant", DataType::Utf8, false), Field::new("audited", DataType::Utf8, false)]));
            let batch = RecordBatch::try_new(
                schema,
                vec![
                    Arc::new(StringArray::from_iter_values(settings.iter().map(|(t, _)| if t.is_empty() { "shared".to_string() } else { t.clone() }))),
                    Arc::new(StringArray::from_iter_values(settings.iter().map(|(_, on)| if *on { "on" } else { "off" }))),
                ],
            )?;
            print::print_batch(&batch, format, out)
        }
        AuditCommand::Prune { chain, through, older_than } => {
            admin_only("jammi audit prune")?;
            let chain = chain_arg(&chain)?;
            let checkpoint = match (through, older_than) {
                (Some(through), _) => Some(session.admin(|s| async move { s.audit().prune(&chain, through).await }).await?),
                (None, Some(age)) => {
                    let age = jammi_db::security::settings::parse_duration(&age).map_err(|_| anyhow!("invalid --older-than '{age}': give an age such as 30d, 12h or 90min"))?;
                    session.admin(|s| async move { s.audit().prune_older_than(&chain, age).await }).await?
                }
                (None, None) => return Err(anyhow!("give --through SEQ or --older-than AGE")),
            };
            match checkpoint {
                Some(c) => writeln!(out, "removed records {}..={} ({} records) under a signed checkpoint", c.through_seq - c.removed + 1, c.through_seq, c.removed)?,
                None => writeln!(out, "nothing to remove")?,
            }
            Ok(())
        }
        AuditCommand::Verify { from } => {
            let reports = if operator {
                session.admin(|s| async move { s.audit().verify(None, from).await }).await?
            } else {
                session.audit().verify(None, from).await?
            };
            print::print_batch(&reports_batch(&reports)?, format, out)?;
            match reports.iter().find_map(|r| r.first_bad.as_ref().map(|b| (r, b))) {
                Some((report, bad)) => Err(anyhow!("the audit chain of {} breaks at record {}: {}", chain_name(&report.tenant), bad.seq, bad.problem)),
                None => Ok(()),
            }
        }
        AuditCommand::Show { query_id } => {
            let id = query_id.clone();
            let found = if operator { session.admin(|s| async move { s.audit().show(&id).await }).await? } else { session.audit().show(&query_id).await? };
            let row = found.ok_or_else(|| anyhow!("no audit record of search '{query_id}' in the chains this caller may read"))?;
            let text = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v.to_string()])) };
            let schema = Arc::new(Schema::new(vec![
                Field::new("tenant", DataType::Utf8, false),
                Field::new("seq", DataType::UInt64, false),
                Field::new("query_id", DataType::Utf8, false),
                Field::new("key_version", DataType::UInt64, false),
                Field::new("record", DataType::Utf8, false),
                Field::new("signature", DataType::Utf8, false),
            ]));
            let batch = RecordBatch::try_new(
                schema,
                vec![text(&row.tenant), Arc::new(UInt64Array::from(vec![row.seq as u64])), text(&row.query_id), Arc::new(UInt64Array::from(vec![row.key_version as u64])), text(&row.record), text(&row.signature)],
            )?;
            print::print_batch(&batch, format, out)
        }
    }
}

fn chain_name(tenant: &str) -> String {
    if tenant.is_empty() {
        "the shared chain".to_string()
    } else {
        format!("tenant {tenant}")
    }
}

fn reports_batch(reports: &[ChainReport]) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("tenant", DataType::Utf8, false),
        Field::new("from", DataType::UInt64, false),
        Field::new("checked", DataType::UInt64, false),
        Field::new("last_good", DataType::UInt64, false),
        Field::new("pruned_through", DataType::UInt64, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("broken_at", DataType::UInt64, true),
        Field::new("problem", DataType::Utf8, true),
    ]));
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(reports.iter().map(|r| r.tenant.clone()))),
            Arc::new(UInt64Array::from_iter_values(reports.iter().map(|r| r.from))),
            Arc::new(UInt64Array::from_iter_values(reports.iter().map(|r| r.checked))),
            Arc::new(UInt64Array::from_iter_values(reports.iter().map(|r| r.last_seq))),
            Arc::new(UInt64Array::from_iter_values(reports.iter().map(|r| r.pruned_through))),
            Arc::new(StringArray::from_iter_values(reports.iter().map(|r| if r.ok() { "ok" } else { "broken" }))),
            Arc::new(UInt64Array::from(reports.iter().map(|r| r.first_bad.as_ref().map(|b| b.seq)).collect::<Vec<_>>())),
            Arc::new(StringArray::from(reports.iter().map(|r| r.first_bad.as_ref().map(|b| b.problem.clone())).collect::<Vec<_>>())),
        ],
    )?)
}
