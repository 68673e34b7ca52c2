//! `jammi vectors ...` and `jammi search`: argument conversion and printing.

use std::io::Write;
use std::sync::Arc;

use anyhow::{anyhow, Result};
use arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use jammi_db::storage::StorageOptions;
use jammi_db::vector::parse_vector_text;
use jammi_db::vector::follow::{status_to_batch, FollowSpec, WorkerOptions};
use jammi_db::vector::{tables_to_batch, EmbedColumn, HybridOptions, ImportSpec, SearchMode, SearchQuery, SearchRequest, TextIndexColumn};
use jammi_db::Session;

use crate::cli::{OutputFormat, SearchArgs, VectorsCommand};
use crate::print;

fn storage_options(options: &[String]) -> Result<StorageOptions> {
    Ok(crate::parse_options(options)?.into_iter().collect())
}

pub async fn run(session: &Session, command: VectorsCommand, format: OutputFormat, out: &mut dyn Write) -> Result<()> {
    let vectors = session.vectors();
    match command {
        VectorsCommand::Import { name, url, id_column, vector_column, embed, model, index, options } => {
            let vector_column = match (vector_column, &embed) {
                (Some(column), _) => column,
                (None, Some(_)) => "embedding".to_string(),
                (None, None) => return Err(anyhow!("give --vector-column (the column holding the vectors) or --embed COLUMN --model NAME:VERSION")),
            };
            let mut spec = ImportSpec::new(name, url, id_column, vector_column);
            if let (Some(column), Some(model)) = (embed, model) {
                let (model, version) = model_version(&model)?;
                spec.embed = Some(EmbedColumn { column, model, version });
            }
            (spec.precision, spec.metric) = index.precision_and_metric()?;
            (spec.m, spec.ef_construction, spec.oversample) = (index.m, index.ef_construction, index.oversample);
            spec.text_columns = text_columns(&index.text_columns)?;
            spec.options = storage_options(&options)?;
            let info = vectors.import(spec, &*crate::progress::reporter()).await?;
            print::print_batch(&tables_to_batch(&[info])?, format, out)
        }
        VectorsCommand::Append { name, url, id_column, vector_column, options } => {
            let (own_id, own_vector) = vectors.source_columns(&name).await?;
            let (id_column, vector_column) = (id_column.unwrap_or(own_id), vector_column.unwrap_or(own_vector));
            let added = vectors.append(&name, &url, &id_column, &vector_column, &storage_options(&options)?, &*crate::progress::reporter()).await?;
            print_count(format, out, "appended", added, &name)
        }
        VectorsCommand::Delete { name, ids } => {
            let deleted = vectors.delete_ids(&name, &ids).await?;
            print_count(format, out, "deleted", deleted, &name)
        }
        VectorsCommand::Compact { name } => {
            vectors.compact(&name, &*crate::progress::reporter()).await?;
            let info = vectors.list().await?.into_iter().filter(|t| t.name == name).collect::<Vec<_>>();
            print::print_batch(&tables_to_batch(&info)?, format, out)
        }
        VectorsCommand::Follow { name, source, embed, model, index } => {
            let (model, version) = model_version(&model)?;
            let mut spec = FollowSpec::new(name, source, embed, model, version);
            (spec.precision, spec.metric) = index.precision_and_metric()?;
            (spec.m, spec.ef_construction, spec.oversample) = (index.m, index.ef_construction, index.oversample);
            spec.text_columns = text_columns(&index.text_columns)?;
            let info = vectors.follow(spec, &*crate::progress::reporter()).await?;
            print::print_batch(&tables_to_batch(&[info])?, format, out)
        }
        VectorsCommand::Status { name } => print::print_batch(&status_to_batch(&vectors.status(&name).await?)?, format, out),
        VectorsCommand::SetModel { name, model, no_wait } => {
            let (model, version) = model_version(&model)?;
            let status = vectors.set_model(&name, &model, &version, !no_wait, &*crate::progress::reporter()).await?;
            print::print_batch(&status_to_batch(&status)?, format, out)
        }
        VectorsCommand::List => print::print_batch(&tables_to_batch(&vectors.list().await?)?, format, out),
        VectorsCommand::Drop { name } => {
            vectors.drop(&name).await?;
            if format == OutputFormat::Table {
                writeln!(out, "dropped vector table '{name}'")?;
            }
            Ok(())
        }
    }
}

/// `--text-column COLUMN[:ANALYZER]`, repeated.
fn text_columns(columns: &[String]) -> Result<Vec<TextIndexColumn>> {
    Ok(columns.iter().map(|c| TextIndexColumn::parse(c)).collect::<jammi_db::Result<Vec<_>>>()?)
}

/// `NAME:VERSION` or `NAME@ALIAS`.
fn model_version(model: &str) -> Result<(String, String)> {
    let (name, version) = model.split_once([':', '@']).ok_or_else(|| anyhow!("--model '{model}': give NAME:VERSION or NAME@ALIAS (see `jammi model list`)"))?;
    Ok((name.to_string(), version.to_string()))
}

/// `jammi worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// This worker's name in `vectors status` (default: worker-PID).
    #[arg(long)]
    pub name: Option<String>,
    /// Seconds a claim holds without a heartbeat; a crashed worker's work is taken over
    /// after this.
    #[arg(long, default_value_t = 30)]
    pub lease_seconds: u64,
    /// Source rows or changes per committed batch.
    #[arg(long, default_value_t = 256)]
    pub batch_rows: usize,
    /// How often to look for work written by other processes, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub poll_ms: u64,
    /// Do the work pending now, then exit (for scripts and cron).
    #[arg(long)]
    pub once: bool,
}

impl WorkerArgs {
    fn options(&self) -> Result<WorkerOptions> {
        if self.lease_seconds == 0 || self.batch_rows == 0 || self.poll_ms == 0 {
            return Err(anyhow!("--lease-seconds, --batch-rows and --poll-ms must be at least 1"));
        }
        let mut options = WorkerOptions { lease: std::time::Duration::from_secs(self.lease_seconds), batch_rows: self.batch_rows, poll: std::time::Duration::from_millis(self.poll_ms), ..WorkerOptions::default() };
        if let Some(name) = &self.name {
            options.worker = name.clone();
        }
        Ok(options)
    }
}

/// Run embedding work as the operator (every tenant's tables) or, with `--tenant`, as
/// that tenant (its own tables only).
pub async fn worker(session: &Session, args: WorkerArgs, format: OutputFormat, out: &mut dyn Write) -> Result<()> {
    let options = args.options()?;
    let operator = session.scope() == jammi_db::TenantScope::Unbound;
    let work = |s: Session| {
        let options = options.clone();
        async move {
            if args.once {
                let mut reports = Vec::new();
                while let Some(report) = s.vectors().work(&options).await? {
                    reports.push(report);
                }
                Ok::<_, jammi_db::Error>(reports)
            } else {
                s.vectors().run_worker(&options, async { jammi_server::shutdown_signal().await }).await?;
                Ok(Vec::new())
            }
        }
    };
    let reports = if operator { session.admin(work).await? } else { work(session.clone()).await? };
    for r in reports {
        match format {
            OutputFormat::Json => writeln!(out, "{}", serde_json::json!({"table": r.table, "embedded": r.embedded, "removed": r.removed, "changes": r.changes, "caught_up": r.caught_up, "error": r.error}))?,
            _ => writeln!(out, "{}: embedded {}, removed {}, changes {}{}", r.table, r.embedded, r.removed, r.changes, r.error.map(|e| format!(", failed: {e}")).unwrap_or_default())?,
        }
    }
    Ok(())
}

fn print_count(format: OutputFormat, out: &mut dyn Write, what: &str, rows: u64, table: &str) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![Field::new(what, DataType::UInt64, false)]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(UInt64Array::from(vec![rows])) as ArrayRef])?;
    if format == OutputFormat::Table {
        writeln!(out, "{what} {rows} row{} of '{table}'", if rows == 1 { "" } else { "s" })?;
        return Ok(());
    }
    print::print_batch(&batch, format, out)
}

pub async fn search(session: &Session, args: SearchArgs, format: OutputFormat, out: &mut dyn Write) -> Result<()> {
    let vectors = session.vectors();
    if args.k == 0 {
        return Err(anyhow!("--k must be at least 1"));
    }
    if args.query_file.is_none() {
        let query = search_query(&args)?;
        return print::print_batch(&vectors.search_any(&args.name, &query).await?.batch, format, out);
    }
    let queries = match (&args.vector, &args.query_file) {
        (Some(text), _) => vec![parse_vector_text(text)
            .ok_or_else(|| anyhow!("--vector '{text}' is not a list of numbers such as '[0.1, 0.2]'"))?],
        (None, Some(file)) => {
            let column = args.query_column.as_deref().unwrap_or("embedding");
            vectors.read_query_vectors(file, column, &StorageOptions::new()).await?
        }
        (None, None) => return Err(anyhow!("give --vector, --text or --query-file")),
    };
    let requests: Vec<SearchRequest> = queries
        .into_iter()
        .map(|vector| SearchRequest { filter: args.filter.clone(), ef: args.ef, exact: args.exact, oversample: args.oversample, ..SearchRequest::new(vector, args.k) })
        .collect();
    let results = vectors.search_batch(&args.name, &requests).await?;
    print::print_batch(&results, format, out)
}

/// The search `--vector`, `--text`, `--hybrid`, `--mode` and `--fusion` describe.
pub fn search_query(args: &SearchArgs) -> Result<SearchQuery> {
    let vector = match &args.vector {
        Some(text) => Some(parse_vector_text(text).ok_or_else(|| anyhow!("--vector '{text}' is not a list of numbers such as '[0.1, 0.2]'"))?),
        None => None,
    };
    let mode = match (&args.mode, args.hybrid) {
        (Some(mode), _) => Some(mode.parse::<SearchMode>()?),
        (None, true) => Some(SearchMode::Hybrid),
        (None, false) => None,
    };
    let hybrid = match &args.fusion {
        Some(options) => HybridOptions::parse(options)?,
        None => HybridOptions::default(),
    };
    Ok(SearchQuery { mode, text: args.text.clone(), vector, k: args.k, filter: args.filter.clone(), ef: args.ef, exact: args.exact, oversample: args.oversample, hybrid })
}
