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

    /// Run the command against a server (`jammi serve`) at this HTTP URL instead of the
    /// local data directory: sql, search, topic publish/subscribe/list.
    #[arg(long, global = true, env = "JAMMI_TARGET")]
    pub target: Option<String>,

    /// Bearer token for --target (see `jammi token create`).
    #[arg(long, global = true, env = "JAMMI_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// No progress reports on stderr (bars on a terminal, periodic lines otherwise).
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,

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
    /// Manage vector tables (import, append, delete, list, drop).
    #[command(subcommand)]
    Vectors(VectorsCommand),
    /// Search a vector table for the nearest neighbours of a vector.
    Search(SearchArgs),
    /// Topics: create, list, drop, publish, subscribe.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Artifact bundles on object storage: put, fetch, rm.
    #[command(subcommand)]
    Artifact(crate::artifacts::ArtifactCommand),
    /// The model registry: register, list, describe, alias, rm.
    #[command(subcommand)]
    Model(crate::models::ModelCommand),
    /// The training-job queue: enqueue, list, and the worker side (claim, heartbeat, fail,
    /// finalize, gc).
    #[command(subcommand)]
    Job(crate::models::JobCommand),
    /// Serve this data directory over HTTP, the Postgres wire protocol and Arrow Flight SQL.
    Serve(crate::serve::ServeArgs),
    /// Keep vector tables that follow mutable tables current: claim their pending embedding
    /// work under leases until SIGINT/SIGTERM (any number of workers, on any host sharing
    /// the catalog and storage).
    Worker(crate::vectors::WorkerArgs),
    /// Server tokens: create, list, revoke.
    #[command(subcommand)]
    Token(crate::serve::TokenCommand),
    /// The signed audit log of searches: verify chains, show a record.
    #[command(subcommand)]
    Audit(crate::audit::AuditCommand),
    /// Apache Ballista processes for large scans (`[query] engine = "ballista"`): scheduler,
    /// executor.
    #[command(subcommand)]
    Cluster(crate::cluster::ClusterCommand),
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create topic NAME (`topics.public.NAME`).
    Create {
        /// Topic name (lower-case letters, digits, '_').
        name: String,
        /// Columns: 'col:type[:nullable],...' with types bool, int16, int32, int64, float32,
        /// float64, string, json, date, timestamp.
        #[arg(long, required_unless_present = "from_table")]
        schema: Option<String>,
        /// Make the topic the change feed of a mutable table (mutable.public.T).
        #[arg(long, conflicts_with = "schema")]
        from_table: Option<String>,
        /// Remove events older than this many seconds.
        #[arg(long)]
        max_age_seconds: Option<i64>,
        /// Keep at most this many events.
        #[arg(long)]
        max_events: Option<i64>,
    },
    /// List topics with their offsets and consumer groups (lag, pending).
    List,
    /// Drop a topic with its events.
    Drop {
        /// Topic name.
        name: String,
    },
    /// Publish events: a JSON object, a JSON array of objects, or NDJSON (from --data, or
    /// standard input). All or nothing.
    Publish {
        /// Topic name.
        name: String,
        /// The events; read from standard input when absent.
        #[arg(long)]
        data: Option<String>,
    },
    /// Print events as NDJSON, one a line, with `_offset` and `_produced_at`.
    Subscribe {
        /// Topic name.
        name: String,
        /// Start at this offset (replay, then live).
        #[arg(long, conflicts_with = "from_beginning")]
        from_offset: Option<i64>,
        /// Start at the lowest retained offset.
        #[arg(long)]
        from_beginning: bool,
        /// Only events matching this SQL predicate.
        #[arg(long)]
        filter: Option<String>,
        /// Share the topic with the other members of this consumer group.
        #[arg(long)]
        group: Option<String>,
        /// Stop after this many events.
        #[arg(long)]
        limit: Option<u64>,
        /// A group member's unacknowledged events go to another member after this many seconds.
        #[arg(long, default_value_t = 30)]
        ack_timeout_seconds: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum VectorsCommand {
    /// Import a Parquet file or directory as vector table NAME (`vectors.public.NAME`).
    Import {
        /// Table name (lower-case letters, digits, '_').
        name: String,
        /// Parquet file, directory or object-store URL.
        url: String,
        /// Column of unique ids (integer or text).
        #[arg(long)]
        id_column: String,
        /// Column of vectors (FixedSizeList<Float32> or List<Float32>); with --embed, the
        /// name of the column the embeddings go to (default: embedding).
        #[arg(long)]
        vector_column: Option<String>,
        /// Compute the vectors inside the engine: embed this text column with --model.
        #[arg(long, value_name = "COLUMN", requires = "model")]
        embed: Option<String>,
        /// The embedding model for --embed: NAME:VERSION or NAME@ALIAS (see `jammi model list`).
        #[arg(long, value_name = "NAME:VERSION", requires = "embed")]
        model: Option<String>,
        /// How the index is built.
        #[command(flatten)]
        index: IndexArgs,
        /// Storage option K=V for reading URL (endpoint=..., region=...).
        #[arg(long = "option", value_name = "K=V")]
        options: Vec<String>,
    },
    /// Add the rows of a Parquet file as a new segment of NAME.
    Append {
        /// Table name.
        name: String,
        /// Parquet file, directory or object-store URL.
        url: String,
        /// Column of unique ids (default: the one the table was imported with).
        #[arg(long)]
        id_column: Option<String>,
        /// Column of vectors (default: the one the table was imported with).
        #[arg(long)]
        vector_column: Option<String>,
        /// Storage option K=V for reading URL.
        #[arg(long = "option", value_name = "K=V")]
        options: Vec<String>,
    },
    /// Delete rows of NAME by id.
    Delete {
        /// Table name.
        name: String,
        /// Ids to delete, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        ids: Vec<String>,
    },
    /// Rewrite NAME into one segment without its deleted rows.
    Compact {
        /// Table name.
        name: String,
    },
    /// Create vector table NAME over a mutable table: one vector per source row, embedded
    /// from a text column; workers (`jammi worker`, `jammi serve`) keep it current as the
    /// source changes. The rows already there are embedded before this returns.
    Follow {
        /// Table name.
        name: String,
        /// The mutable table to follow: mutable.public.T (or T).
        #[arg(long = "from", value_name = "TABLE")]
        source: String,
        /// The text column to embed.
        #[arg(long, value_name = "COLUMN")]
        embed: String,
        /// The embedding model: NAME:VERSION or NAME@ALIAS (see `jammi model list`).
        #[arg(long, value_name = "NAME:VERSION")]
        model: String,
        /// How the index is built.
        #[command(flatten)]
        index: IndexArgs,
    },
    /// How far NAME is behind its source: offsets, rows pending, lag, last error, worker.
    Status {
        /// Table name.
        name: String,
    },
    /// Re-embed NAME with another model; searches use the old vectors until the new ones
    /// are complete, then switch at once.
    SetModel {
        /// Table name.
        name: String,
        /// The new model: NAME:VERSION or NAME@ALIAS.
        #[arg(long, value_name = "NAME:VERSION")]
        model: String,
        /// Leave the work to the workers (`jammi worker`, `jammi serve`) and return at once.
        #[arg(long)]
        no_wait: bool,
    },
    /// List the vector tables visible to this tenant.
    List,
    /// Drop a vector table and its files.
    Drop {
        /// Table name.
        name: String,
    },
}

/// How a new vector table's index is built (`vectors import`, `vectors follow`).
#[derive(Debug, clap::Args)]
pub struct IndexArgs {
    /// Index precision: f32, f16, int8 or binary. Default: int8 for cosine (candidates are
    /// rescored with exact f32 distances), f32 for l2 and ip.
    #[arg(long)]
    pub precision: Option<String>,
    /// Distance: cosine, l2 or ip.
    #[arg(long, default_value = "cosine")]
    pub metric: String,
    /// HNSW connectivity (links per node).
    #[arg(long, default_value_t = 16)]
    pub m: usize,
    /// HNSW build beam width.
    #[arg(long, default_value_t = 128)]
    pub ef_construction: usize,
    /// Candidates fetched per result before exact rescoring (default by precision).
    #[arg(long)]
    pub oversample: Option<usize>,
    /// Index this text column for full-text search (text_search, hybrid_search); repeat
    /// for several. The analyzer is english (stemming, stop words) unless given: simple,
    /// raw (the whole value is one term) or a language, e.g. tag:raw.
    #[arg(long = "text-column", value_name = "COLUMN[:ANALYZER]")]
    pub text_columns: Vec<String>,
}

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("query").required(true).multiple(true).args(["vector", "text", "query_file"]))]
pub struct SearchArgs {
    /// Vector table name.
    pub name: String,
    /// The query vector, e.g. '[0.1, 0.2, ...]'.
    #[arg(long)]
    pub vector: Option<String>,
    /// A text query: searched as words (BM25) on a table with a text index, otherwise
    /// embedded with the table's model; with --vector or --hybrid, both (fused).
    #[arg(long)]
    pub text: Option<String>,
    /// Search by words and by meaning and fuse the two (the text is embedded unless
    /// --vector is given).
    #[arg(long, requires = "text", conflicts_with = "query_file")]
    pub hybrid: bool,
    /// Force a mode: vector (the text embedded), text or hybrid.
    #[arg(long, value_name = "MODE", conflicts_with = "query_file")]
    pub mode: Option<String>,
    /// Hybrid fusion options, e.g. 'rrf_k = 60' or 'weights = 0.7:0.3' (vector:text), 'candidates = 100'.
    #[arg(long, value_name = "OPTIONS")]
    pub fusion: Option<String>,
    /// Parquet file of query vectors (one search per row; results carry a `query` column).
    #[arg(long, requires = "query_column", conflicts_with_all = ["vector", "text"])]
    pub query_file: Option<String>,
    /// Column of `--query-file` holding the vectors.
    #[arg(long)]
    pub query_column: Option<String>,
    /// Results per query.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// SQL predicate over the payload columns, applied before the search (pre-filter).
    #[arg(long)]
    pub filter: Option<String>,
    /// HNSW search beam width (higher: better recall, slower).
    #[arg(long)]
    pub ef: Option<usize>,
    /// Candidates per result before exact rescoring (quantized precisions).
    #[arg(long)]
    pub oversample: Option<usize>,
    /// Scan every row exactly instead of using the index.
    #[arg(long)]
    pub exact: bool,
}

#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// Register a source: NAME becomes the SQL catalog `NAME.public.TABLE` (files) or
    /// `NAME.<schema>.TABLE` (databases).
    Add {
        /// Source name (lower-case letters, digits, '_').
        name: String,
        /// Local path, file:// URL, directory, s3:// gs:// azure:// r2:// memory:// URL, or a
        /// database: postgres://user:pass@host:port/db, mysql://user:pass@host:port/db.
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
    /// Read a database source's tables and columns again.
    Refresh {
        /// Source name.
        name: String,
    },
}

impl IndexArgs {
    /// The precision and metric asked for; without `--precision`, the metric's default.
    pub fn precision_and_metric(&self) -> anyhow::Result<(jammi_db::vector::Precision, jammi_db::vector::Metric)> {
        let metric: jammi_db::vector::Metric = self.metric.parse()?;
        let precision = match &self.precision {
            Some(p) => p.parse()?,
            None => jammi_db::vector::Precision::default_for(metric),
        };
        Ok((precision, metric))
    }
}
