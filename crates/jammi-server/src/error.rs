//! The server's error type: what a request or the server's start can fail with, and how
//! each failure maps to an HTTP status and a Postgres SQLSTATE.

/// Everything a request or a server start can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The engine refused or failed the request.
    #[error(transparent)]
    Engine(#[from] jammi_db::Error),

    /// No credentials, or credentials that match no live token.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),

    /// The request is malformed (bad JSON, missing field, wrong parameter type).
    #[error("bad request: {0}")]
    BadRequest(String),

    /// Every query slot stayed busy for the whole query timeout.
    #[error("the server is busy: all {limit} query slots stayed in use for {waited_ms} ms; retry later, or raise --max-concurrent-queries or --queue-timeout")]
    Busy {
        /// `--max-concurrent-queries`.
        limit: usize,
        /// How long the request waited, in ms.
        waited_ms: u64,
    },

    /// The query ran longer than the per-query timeout and was cancelled.
    #[error("the query ran longer than the {limit_ms} ms limit and was cancelled; raise --query-timeout or narrow the query")]
    Timeout {
        /// `--query-timeout`, in ms.
        limit_ms: u64,
    },

    /// The server is shutting down and takes no new work.
    #[error("the server is shutting down")]
    ShuttingDown,

    /// The server could not start (bind, auth configuration).
    #[error("cannot start the server: {0}")]
    Start(String),
}

impl ServerError {
    /// The HTTP status of this error.
    pub fn http_status(&self) -> u16 {
        use jammi_db::error::ErrorClass;
        match self {
            ServerError::Unauthenticated(_) => 401,
            ServerError::BadRequest(_) => 400,
            ServerError::Busy { .. } | ServerError::ShuttingDown => 503,
            ServerError::Timeout { .. } => 504,
            ServerError::Start(_) => 500,
            ServerError::Engine(e) => match e.class() {
                ErrorClass::PermissionDenied => 403,
                ErrorClass::NotFound => 404,
                ErrorClass::Conflict => 409,
                ErrorClass::Unavailable => 503,
                ErrorClass::Timeout => 504,
                ErrorClass::Internal => 500,
                ErrorClass::InvalidArgument => 400,
            },
        }
    }

    /// The Postgres SQLSTATE of this error.
    pub fn sqlstate(&self) -> &'static str {
        use jammi_db::Error as E;
        match self {
            ServerError::Unauthenticated(_) => "28P01",
            ServerError::BadRequest(_) => "22023",
            ServerError::Busy { .. } => "53300",
            ServerError::Timeout { .. } => "57014",
            ServerError::ShuttingDown => "57P01",
            ServerError::Start(_) => "XX000",
            ServerError::Engine(e) => match e {
                E::PermissionDenied { .. } => "42501",
                E::LimitExceeded { .. } | E::InvalidArgument { .. } | E::InvalidVectors { .. } | E::InvalidOption { .. } => "22023",
                E::InvalidName { .. } => "42602",
                E::InvalidTenant { .. } | E::InvalidUrl { .. } => "22023",
                E::Unsupported { .. } => "0A000",
                E::UniqueViolation { .. } => "23505",
                E::Conflict { .. } | E::LeaseLost { .. } | E::TopicGone => "55000",
                E::TransactionState { .. } => "25000",
                E::SerializationFailure { .. } => "40001",
                E::IdleInTransactionTimeout { .. } => "25P03",
                E::Timeout { .. } => "57014",
                E::Unavailable { .. } => "08006",
                E::Unknown { kind, .. } if kind.is_table() => "42P01",
                E::Unknown { .. } => "42704",
                E::AlreadyExists { kind, .. } if kind.is_table() => "42P07",
                E::AlreadyExists { .. } => "42710",
                E::Catalog { .. } | E::Io { .. } | E::Storage(_) => "58000",
                E::Internal { .. } => "XX000",
                _ => "42000",
            },
        }
    }
}

impl From<datafusion::error::DataFusionError> for ServerError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        ServerError::Engine(jammi_db::Error::from(e))
    }
}

/// Result alias of the server.
pub type Result<T, E = ServerError> = std::result::Result<T, E>;
