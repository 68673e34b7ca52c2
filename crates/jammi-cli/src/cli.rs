//! Command-line arguments (the contract in ARCHITECTURE.md).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// jammi-db: SQL over files and object storage, vectors, mutable tables and triggers.
#[derive(Debug, Parser)]
#[command(name = "jammi", version, about)]
pub struct Cli {
    /// Data directory (catalog, local storage).
    #[arg(long, global = true, env = "JAMMI_HOME", default_value = "./.jammi")]
    pub data_dir: PathBuf,

    /// Config file (default: $JAMMI_CONFIG, then <data-dir>/jammi.toml).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,

    /// Run as this tenant (UUID): see its own plus shared rows and sources.
    #[arg(long, global = true)]
    pub tenant: Option<String>,

    /// Output format: table, csv, json or ndjson. For `source add` it is the data format of
    /// the source instead (parquet, csv or json), as the CLI contract writes it.
    #[arg(long, global = true, value_parser = ["table", "csv", "json", "ndjson", "parquet"])]
    pub format: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned columns, for people.
    Table,
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON array of objects per statement.
    Json,
    /// One JSON object per line.
    Ndjson,
}

impl OutputFormat {
    /// Parse an output format name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "table" => Some(OutputFormat::Table),
            "csv" => Some(OutputFormat::Csv),
            "json" => Some(OutputFormat::Json),
            "ndjson" => Some(OutputFormat::Ndjson),
            _ => None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a sample data set, register it and run example queries.
    Demo,
    /// Run SQL; several statements separated by ';' run in order.
    Sql {
        /// The SQL text.
        sql: String,
    },
    /// Manage sources (files, directories, object-store prefixes).
    #[command(subcommand)]
    Source(SourceCommand),
}

#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// Register a source: NAME becomes the SQL catalog `NAME.public.TABLE`.
    Add {
        /// Source name (lower-case letters, digits, '_').
        name: String,
        /// Local path, file:// URL, directory, or s3:// gs:// azure:// r2:// memory:// URL.
        url: String,
        /// Column holding each row's tenant UUID (NULL = shared row).
        #[arg(long)]
        tenant_column: Option<String>,
        /// Format or storage option K=V (e.g. delimiter=';', endpoint=http://..., region=...).
        #[arg(long = "option", value_name = "K=V")]
        options: Vec<String>,
    },
    /// List the sources visible to this tenant.
    List,
    /// Unregister a source (its data is not touched).
    Remove {
        /// Source name.
        name: String,
    },
}
