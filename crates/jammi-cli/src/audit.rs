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
}

pub async fn run(session: &Session, command: AuditCommand, format: OutputFormat, out: &mut dyn Write) -> Result<()> {
    // The operator (no --tenant) reads every chain.
    let operator = session.scope() == TenantScope::Unbound;
    match command {
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
            Arc::new(StringArray::from_iter_values(reports.iter().map(|r| if r.ok() { "ok" } else { "broken" }))),
            Arc::new(UInt64Array::from(reports.iter().map(|r| r.first_bad.as_ref().map(|b| b.seq)).collect::<Vec<_>>())),
            Arc::new(StringArray::from(reports.iter().map(|r| r.first_bad.as_ref().map(|b| b.problem.clone())).collect::<Vec<_>>())),
        ],
    )?)
}
