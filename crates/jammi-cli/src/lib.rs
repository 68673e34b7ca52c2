//! The `jammi` command-line tool: argument parsing, printing and exit codes only. Everything
//! else is the `jammi-db` engine. A library with a one-line binary (`main.rs`), so that its
//! code compiles beside `jammi-server` instead of after it.

mod artifacts;
mod audit;
mod cli;
mod cluster;
mod demo;
mod models;
mod print;
mod progress;
mod remote;
mod serve;
mod topics;
mod vectors;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, Result};
use clap::Parser;
use jammi_db::source::{sources_to_batch, FileFormatKind, SourceSpec};
use jammi_db::{Config, Session, TenantId};

use cli::{Cli, Command, OutputFormat, SourceCommand};

/// Run the command line of this process; the exit code to return.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    progress::set_quiet(cli.quiet);
    tracing_subscriber::fmt()
        .with_env_filter(
            // Cluster processes are servers: their log says what they do by default.
            tracing_subscriber::EnvFilter::try_from_env("JAMMI_LOG").unwrap_or_else(|_| if matches!(cli.command, Command::Cluster(_)) { "warn,ballista_scheduler=info,ballista_executor=info".into() } else { "error".into() }),
        )
        .with_writer(std::io::stderr)
        .init();
    // 8 MiB stacks: DataFusion plans recursively, and an unoptimised build's frames are
    // large enough for a join with pushdown to overflow tokio's default 2 MiB.
    // `[query] engine = "ballista"` works in every command and the server.
    jammi_cluster::install();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(8 << 20).build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    if let Some(target) = cli.target.clone() {
        let format = match cli.format.as_deref() {
            None => OutputFormat::Table,
            Some(name) => OutputFormat::parse(name).ok_or_else(|| anyhow!("'{name}' is not an output format; use table, csv, json or ndjson"))?,
        };
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        let result = remote::run(&target, cli.token.as_deref(), cli.command, format, &mut out).await;
        out.flush().ok();
        return result;
    }
    let tenant = cli.tenant.as_deref().map(str::parse::<TenantId>).transpose()?;
    let mut config = Config::load(&cli.data_dir, cli.config.as_deref())?;
    if let Command::Cluster(command) = cli.command {
        return cluster::run(config, command).await;
    }
    // The server audits by default; `jammi audit` reads what it wrote, with the same keys.
    if matches!(cli.command, Command::Serve(_) | Command::Audit(_)) {
        serve::audit_on_by_default(&mut config)?;
    }
    let session = Session::open(config).await?.with_tenant(tenant);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = dispatch(&session, cli.command, cli.format.as_deref(), &mut out).await;
    out.flush().ok();
    session.close().await;
    result
}

async fn dispatch(session: &Session, command: Command, format_flag: Option<&str>, out: &mut dyn Write) -> Result<()> {
    // `--format` is the output format everywhere except `source add`, where the contract
    // uses it for the data format.
    let output_format = || match format_flag {
        None => Ok(OutputFormat::Table),
        Some(name) => OutputFormat::parse(name)
            .ok_or_else(|| anyhow!("'{name}' is not an output format; use table, csv, json or ndjson")),
    };
    match command {
        Command::Source(SourceCommand::Add { name, url, tenant_column, options }) => {
            let mut spec = SourceSpec::new(name, url);
            spec.format = format_flag.map(str::parse::<FileFormatKind>).transpose()?;
            spec.tenant_column = tenant_column;
            spec.options = parse_options(&options)?;
            let info = session.sources().add(spec).await?;
            print::print_batch(&sources_to_batch(&[info])?, OutputFormat::Table, out)
        }
        command => run_command(session, command, output_format()?, out).await,
    }
}

async fn run_command(session: &Session, command: Command, format: OutputFormat, out: &mut dyn Write) -> Result<()> {
    match command {
        Command::Demo => demo::run(session, format, out).await,
        Command::Sql { sql } => run_sql(session, &sql, format, out).await,
        Command::Source(SourceCommand::Add { .. }) => Err(anyhow!("source add takes no output format")),
        Command::Source(SourceCommand::List) => {
            let sources = session.sources().list().await?;
            print::print_batch(&sources_to_batch(&sources)?, format, out)
        }
        Command::Vectors(command) => vectors::run(session, command, format, out).await,
        Command::Search(args) => vectors::search(session, args, format, out).await,
        Command::Topic(command) => topics::run(session, command, format, out).await,
        Command::Artifact(command) => artifacts::run(session, command, out).await,
        Command::Model(command) => models::run_model(session, command, format, out).await,
        Command::Job(command) => models::run_job(session, command, format, out).await,
        Command::Serve(args) => serve::serve(session, args, out).await,
        Command::Worker(args) => vectors::worker(session, args, format, out).await,
        Command::Token(command) => serve::token(session, command, format, out).await,
        Command::Audit(command) => audit::run(session, command, format, out).await,
        Command::Cluster(_) => Err(anyhow!("jammi cluster runs before a session opens")),
        Command::Source(SourceCommand::Refresh { name }) => {
            let info = session.sources().refresh(&name).await?;
            print::print_batch(&sources_to_batch(&[info])?, format, out)
        }
        Command::Source(SourceCommand::Remove { name }) => {
            let info = session.sources().remove(&name).await?;
            if format == OutputFormat::Table {
                writeln!(out, "removed source '{}'", info.name)?;
                Ok(())
            } else {
                print::print_batch(&sources_to_batch(&[info])?, format, out)
            }
        }
    }
}

/// Run each statement in order, printing each result as it streams.
pub(crate) async fn run_sql(session: &Session, sql: &str, format: OutputFormat, out: &mut dyn Write) -> Result<()> {
    let statements = session.parse(sql)?;
    for statement in &statements {
        let started = Instant::now();
        let frame = session.run(statement).await?;
        let stream = frame.execute_stream().await.map_err(jammi_db::Error::from)?;
        let rows = print::print_stream(stream, format, out).await?;
        if format == OutputFormat::Table {
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            writeln!(out, "({rows} row{}, {ms:.1} ms)", if rows == 1 { "" } else { "s" })?;
        }
        // A statement's result is out before the next one starts: a reader (or a crash
        // test) that saw it knows the statement committed.
        out.flush()?;
    }
    Ok(())
}

pub(crate) fn parse_options(options: &[String]) -> Result<BTreeMap<String, String>> {
    options
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| anyhow!("invalid --option '{kv}': expected KEY=VALUE"))
        })
        .collect()
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.to_string().contains("Broken pipe")
    })
}

fn one_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

