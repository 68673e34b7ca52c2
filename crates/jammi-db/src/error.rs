//! The one error type of the engine.
//!
//! Every variant carries the input that was wrong (a source name, a URL, a config key, a
//! file) so that its `Display` text reads as one sentence a user can act on.

use std::path::PathBuf;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in jammi-db.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration file or value is invalid.
    #[error("invalid configuration: {key}: {message}")]
    Config {
        /// The config key (`section.key`), file or environment variable at fault.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// A storage or source URL could not be understood.
    #[error("invalid URL '{url}': {message}")]
    InvalidUrl {
        /// The URL as the user gave it.
        url: String,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// A URL names an object-store scheme whose driver is not compiled in.
    #[error("storage scheme '{scheme}://' needs jammi-db built with the cargo feature '{feature}'")]
    DriverNotEnabled {
        /// The URL scheme.
        scheme: String,
        /// The cargo feature that enables it.
        feature: &'static str,
    },

    /// A file or object that should exist does not.
    #[error("not found: {location}")]
    NotFound {
        /// Path or URL that was missing.
        location: String,
    },

    /// A file exists but cannot be read as the expected format.
    #[error("cannot read {location} as {format}: {message}")]
    UnreadableData {
        /// Path or URL of the file.
        location: String,
        /// The format we tried to read it as.
        format: String,
        /// The reader's complaint.
        message: String,
    },

    /// The format of a source could not be determined or is unsupported.
    #[error("unknown format for source '{source_name}': {message}")]
    UnknownFormat {
        /// Source name.
        source_name: String,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// A name (of a source, table, ...) is not allowed.
    #[error("invalid name '{name}': {message}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        message: String,
    },

    /// No object of this kind and name is visible to the caller.
    #[error("{}", kind.unknown(name, scope))]
    Unknown {
        /// What was looked for.
        kind: ObjectKind,
        /// Its name as given (models: `name:version`).
        name: String,
        /// " for tenant <uuid>" or empty.
        scope: String,
    },

    /// An object of this kind and name already exists for the caller.
    #[error("{} '{name}' already exists{scope}; {}", kind.noun(), kind.on_duplicate())]
    AlreadyExists {
        /// What was being created.
        kind: ObjectKind,
        /// Its name.
        name: String,
        /// " for tenant <uuid>" or empty.
        scope: String,
    },

    /// A source option is unknown or has a bad value.
    #[error("invalid option '{key}' for source '{source_name}': {message}")]
    InvalidOption {
        /// Source name.
        source_name: String,
        /// The option key.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// Input for a vector table (import, append, delete, search) is invalid; nothing was
    /// written.
    #[error("vector table '{table}': {message}")]
    InvalidVectors {
        /// Table name.
        table: String,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// A tenant id could not be parsed.
    #[error("invalid tenant id '{input}': expected a UUID such as 3f2b8c1e-0000-4000-8000-000000000001")]
    InvalidTenant {
        /// What the user passed.
        input: String,
    },

    /// An operation is not allowed in the current tenant scope.
    #[error("permission denied: {message}")]
    PermissionDenied {
        /// What was refused.
        message: String,
    },

    /// An argument, value or statement part the caller gave is not valid (a bad metric, a
    /// value that does not fit its column, a malformed filter); nothing was done. The message
    /// names the argument and what to give instead.
    #[error("{message}")]
    InvalidArgument {
        /// What was wrong: the argument, column or clause, as the caller wrote it.
        argument: String,
        /// The sentence naming the input and the fix.
        message: String,
    },

    /// The statement or option is valid SQL but not something jammi-db does; the message
    /// names what to use instead.
    #[error("{message}")]
    Unsupported {
        /// The sentence naming the construct and the alternative.
        message: String,
    },

    /// A write would repeat a key or unique value that another row already has; nothing
    /// was written.
    #[error("{message}")]
    UniqueViolation {
        /// The table, as the user names it.
        table: String,
        /// The sentence naming the key and the row.
        message: String,
    },

    /// The operation does not fit the current state of an object (a model with queued jobs,
    /// a topic dropped meanwhile, a subscriber behind retention, a finished lease's
    /// artifact); it may succeed once that state changes.
    #[error("{message}")]
    Conflict {
        /// What conflicts, and what to do.
        message: String,
    },

    /// Transaction control does not fit the session's state (BEGIN inside a transaction,
    /// COMMIT or a savepoint outside one, a transaction that already ended).
    #[error("{message}")]
    TransactionState {
        /// What the session was asked, and what to send instead.
        message: String,
    },

    /// A concurrent transaction changed what this one read or wrote (a serialization failure
    /// or deadlock in the catalog database); nothing was written. Retry the transaction.
    #[error("{message}; nothing was written: retry the transaction")]
    SerializationFailure {
        /// The database's own words.
        message: String,
    },

    /// An operation ran past its deadline and was given up.
    #[error("{operation} timed out: {message}")]
    Timeout {
        /// What was waiting (a catalog connection, a remote source, ...).
        operation: String,
        /// What to do about it.
        message: String,
    },

    /// A backend needed for this (a remote database, the broker, the catalog database) could
    /// not be reached or dropped the connection; nothing was changed by this call.
    #[error("{backend} is unavailable: {message}")]
    Unavailable {
        /// The backend, credentials removed.
        backend: String,
        /// What failed.
        message: String,
    },

    /// An invariant of the engine broke (a bug): building a batch of the engine's own
    /// making failed. Please report it with the message.
    #[error("internal error: {message}")]
    Internal {
        /// What failed.
        message: String,
    },

    /// A federated source's database refused or failed a statement (credentials, a missing
    /// database, a value that does not convert); the message names the source, never its
    /// password.
    #[error("{message}")]
    Source {
        /// The source's name.
        source_name: String,
        /// The sentence naming the source and the cause.
        message: String,
    },

    /// SQL could not be parsed, planned or executed — DataFusion's own message.
    #[error("{0}")]
    Query(String),

    /// The metadata catalog failed.
    #[error("catalog ({backend}): {message}")]
    Catalog {
        /// Backend description with credentials removed.
        backend: String,
        /// What failed.
        message: String,
    },

    /// A catalog migration failed; the catalog is left at the previous version.
    #[error("catalog migration {version} ({name}) failed: {message}")]
    Migration {
        /// Migration number.
        version: i64,
        /// Migration name.
        name: &'static str,
        /// What failed.
        message: String,
    },

    /// The data directory cannot be used.
    #[error("data directory {path}: {message}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What failed.
        message: String,
    },

    /// An artifact prefix is incomplete, damaged or already taken; the message names the
    /// file and the fix.
    #[error("artifact {prefix}: {message}")]
    Artifact {
        /// The prefix URL.
        prefix: String,
        /// What is wrong (naming the file) and how to fix it.
        message: String,
    },

    /// An object-store operation failed.
    #[error("storage: {0}")]
    Storage(String),

    /// A worker asked to change a job whose lease it no longer holds.
    #[error("job {job}: this worker no longer holds the job's lease (it expired and the job went back to the queue or to another worker, or the job already finished); nothing was changed")]
    LeaseLost {
        /// The job.
        job: String,
    },

    /// A topic was dropped while an append to it was under way; nothing was written.
    #[error("the topic was dropped while publishing; nothing was written")]
    TopicGone,

    /// A client-controlled input is larger than its documented limit; nothing was done.
    #[error("'{argument}' is {value}, over the limit of {limit}; see docs/security.md for every limit")]
    LimitExceeded {
        /// The argument at fault (`k`, `ef`, `filter (bytes)`, ...).
        argument: String,
        /// The value given.
        value: String,
        /// The largest value accepted.
        limit: String,
    },

    /// The session's transaction sat idle past `idle_in_transaction_timeout` and was rolled
    /// back; statements fail until the client ends it with ROLLBACK (or COMMIT).
    #[error("the transaction was idle for more than {timeout_ms} ms (idle_in_transaction_timeout) and was rolled back, releasing its locks; nothing it wrote was kept. ROLLBACK to end it, then start again")]
    IdleInTransactionTimeout {
        /// The timeout that passed, in ms.
        timeout_ms: u64,
    },

    /// Local I/O failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What kind of failure an [`Error`] is: the one mapping every front end (HTTP statuses,
/// gRPC codes, Python exceptions) derives its own codes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The caller may not do this.
    PermissionDenied,
    /// What the request names does not exist.
    NotFound,
    /// The request collides with the current state (exists already, a concurrent change,
    /// a transaction in the wrong state, a lost lease); retrying may succeed.
    Conflict,
    /// A backend (catalog, broker, store) cannot be reached now.
    Unavailable,
    /// An operation ran out of time.
    Timeout,
    /// The engine or its storage failed; not the caller's input.
    Internal,
    /// The input is wrong: SQL, options, values, arguments.
    InvalidArgument,
}

impl Error {
    /// The kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::PermissionDenied { .. } => ErrorClass::PermissionDenied,
            Error::Unknown { .. } | Error::NotFound { .. } => ErrorClass::NotFound,
            Error::AlreadyExists { .. }
            | Error::UniqueViolation { .. }
            | Error::Conflict { .. }
            | Error::TransactionState { .. }
            | Error::SerializationFailure { .. }
            | Error::IdleInTransactionTimeout { .. }
            | Error::LeaseLost { .. }
            | Error::TopicGone => ErrorClass::Conflict,
            Error::Unavailable { .. } => ErrorClass::Unavailable,
            Error::Timeout { .. } => ErrorClass::Timeout,
            Error::Catalog { .. } | Error::Io { .. } | Error::Storage(_) | Error::Internal { .. } | Error::Migration { .. } | Error::DataDir { .. } => ErrorClass::Internal,
            _ => ErrorClass::InvalidArgument,
        }
    }

    /// A configuration error naming the key (`section.key`) and what is wrong with it.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config { key: key.into(), message: message.into() }
    }

    pub(crate) fn invalid_url(url: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidUrl { url: url.into(), message: message.into() }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    pub(crate) fn invalid(argument: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidArgument { argument: argument.into(), message: message.into() }
    }

    pub(crate) fn unsupported(message: impl Into<String>) -> Self {
        Error::Unsupported { message: message.into() }
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Error::Conflict { message: message.into() }
    }

    pub(crate) fn transaction_state(message: impl Into<String>) -> Self {
        Error::TransactionState { message: message.into() }
    }

    /// A failure of the engine's own making (an Arrow batch or JSON text it built itself).
    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        Error::Internal { message: one_line(&e.to_string()) }
    }

    /// A catalog-database error, by kind: serialization failures and deadlocks (retry),
    /// lost connections (unavailable), waits for a connection (timeout); the rest is a
    /// catalog error. `backend` describes the database without credentials.
    pub(crate) fn from_sqlx(backend: &str, e: &sqlx::Error) -> Self {
        let message = one_line(&e.to_string());
        match e {
            sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40001" | "40P01")) => Error::SerializationFailure { message },
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => Error::Unavailable { backend: backend.to_string(), message },
            sqlx::Error::PoolTimedOut => Error::Timeout {
                operation: format!("waiting for a connection to {backend}"),
                message: "every connection is in use; retry, or raise the pool size".to_string(),
            },
            _ => Error::Catalog { backend: backend.to_string(), message },
        }
    }

    /// A copy of the errors whose kind a client must see (a refusal, a limit, a conflict, a
    /// missing object: each has its own status and SQLSTATE) when they come back through
    /// DataFusion; other kinds are reported by their text.
    fn same_kind(&self) -> Option<Error> {
        Some(match self {
            Error::PermissionDenied { message } => Error::PermissionDenied { message: message.clone() },
            Error::LimitExceeded { argument, value, limit } => Error::LimitExceeded { argument: argument.clone(), value: value.clone(), limit: limit.clone() },
            Error::IdleInTransactionTimeout { timeout_ms } => Error::IdleInTransactionTimeout { timeout_ms: *timeout_ms },
            Error::InvalidArgument { argument, message } => Error::InvalidArgument { argument: argument.clone(), message: message.clone() },
            Error::Unsupported { message } => Error::Unsupported { message: message.clone() },
            Error::UniqueViolation { table, message } => Error::UniqueViolation { table: table.clone(), message: message.clone() },
            Error::Conflict { message } => Error::Conflict { message: message.clone() },
            Error::TransactionState { message } => Error::TransactionState { message: message.clone() },
            Error::SerializationFailure { message } => Error::SerializationFailure { message: message.clone() },
            Error::Timeout { operation, message } => Error::Timeout { operation: operation.clone(), message: message.clone() },
            Error::Unavailable { backend, message } => Error::Unavailable { backend: backend.clone(), message: message.clone() },
            Error::Unknown { kind, name, scope } => Error::Unknown { kind: *kind, name: name.clone(), scope: scope.clone() },
            Error::AlreadyExists { kind, name, scope } => Error::AlreadyExists { kind: *kind, name: name.clone(), scope: scope.clone() },
            Error::InvalidVectors { table, message } => Error::InvalidVectors { table: table.clone(), message: message.clone() },
            Error::Source { source_name, message } => Error::Source { source_name: source_name.clone(), message: message.clone() },
            _ => return None,
        })
    }
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        // An engine error raised by our own providers travels through DataFusion wrapped in
        // `External`; unwrap it so the user sees the original sentence.
        match e.find_root() {
            datafusion::error::DataFusionError::External(inner) => {
                match inner.downcast_ref::<Error>() {
                    Some(ours) => ours.same_kind().unwrap_or_else(|| Error::Query(ours.to_string())),
                    None => Error::Query(one_line(&inner.to_string())),
                }
            }
            datafusion::error::DataFusionError::Plan(message) if unknown_table(message).is_some() => {
                Error::Unknown { kind: ObjectKind::Table, name: unknown_table(message).unwrap_or_default(), scope: String::new() }
            }
            other => Error::Query(one_line(&other.to_string())),
        }
    }
}

impl From<object_store::Error> for Error {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { path, .. } => Error::NotFound { location: path },
            other => Error::Storage(one_line(&other.to_string())),
        }
    }
}

/// The table named by DataFusion's "table 'x' not found" planning error, so that a query
/// naming an unknown table is an [`Error::Unknown`] like every other missing object.
fn unknown_table(message: &str) -> Option<String> {
    let name = message.strip_prefix("table '")?.strip_suffix("' not found")?;
    (!name.is_empty() && !name.contains('\'')).then(|| name.to_string())
}

/// Collapse multi-line messages (DataFusion adds backtrace-like context) into one line.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The kinds of named objects the engine keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A file or database source.
    Source,
    /// A mutable table.
    MutableTable,
    /// A vector table.
    VectorTable,
    /// A topic.
    Topic,
    /// A model version (or alias).
    Model,
    /// A training job.
    Job,
    /// A table of any catalog, as a query names it (DataFusion found no such table).
    Table,
}

impl ObjectKind {
    /// The object in words.
    pub fn noun(self) -> &'static str {
        match self {
            ObjectKind::Source => "source",
            ObjectKind::MutableTable => "mutable table",
            ObjectKind::VectorTable => "vector table",
            ObjectKind::Topic => "topic",
            ObjectKind::Model => "model",
            ObjectKind::Job => "job",
            ObjectKind::Table => "table",
        }
    }

    /// Whether the object is queried as a table (SQLSTATE 42P01 when missing).
    pub fn is_table(self) -> bool {
        matches!(self, ObjectKind::Source | ObjectKind::MutableTable | ObjectKind::VectorTable | ObjectKind::Topic | ObjectKind::Table)
    }

    fn unknown(self, name: &str, scope: &str) -> String {
        match self {
            ObjectKind::Source => format!("source '{name}' does not exist{scope}; see `jammi source list`"),
            ObjectKind::MutableTable => format!("mutable table 'mutable.public.{name}' does not exist{scope}; create it with CREATE TABLE mutable.public.{name} (...)"),
            ObjectKind::VectorTable => format!("vector table '{name}' does not exist{scope}; see `jammi vectors list`"),
            ObjectKind::Topic => format!("topic '{name}' does not exist{scope}; see `jammi topic list`"),
            ObjectKind::Model => format!("model {name} is not registered{scope}; see `jammi model list`"),
            ObjectKind::Job => format!("job {name} does not exist{scope}; see `jammi job list`"),
            ObjectKind::Table => format!("table '{name}' not found{scope}; information_schema.tables lists the tables you can query"),
        }
    }

    fn on_duplicate(self) -> &'static str {
        match self {
            ObjectKind::Source => "remove it first or pick another name",
            ObjectKind::VectorTable => "drop it first or pick another name",
            ObjectKind::MutableTable => "drop it first, pick another name, or use CREATE TABLE IF NOT EXISTS",
            ObjectKind::Model => "this version is already registered; pick another version",
            _ => "pick another name",
        }
    }
}
