//! One Postgres connection: its session handle and principal, the simple and extended
//! query handlers, and the statement parser of the extended protocol.

use std::fmt::Debug;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use futures::sink::Sink;
use jammi_db::{PreparedStatement, Session, SqlStatement};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;

use super::auth::Startup;
use super::catalog::{self, CatalogQuery};
use super::encode::{decode_param, fields, param_type, rows};
use super::Busy;
use crate::auth::Principal;
use crate::error::{Result, ServerError};
use crate::metrics::Protocol;
use crate::Shared;

/// One client connection: what pgwire calls for it.
pub(crate) struct Connection {
    state: Arc<State>,
    queries: Arc<Queries>,
    startup: Arc<Startup>,
}

impl Connection {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let principal = Arc::new(OnceLock::new());
        let startup = Arc::new(Startup::new(&shared, &principal));
        let state = Arc::new(State { shared, principal, session: OnceLock::new(), busy: Busy::default() });
        let queries = Arc::new(Queries { state: Arc::clone(&state), parser: Arc::new(Parser { state: Arc::clone(&state) }) });
        Connection { state, queries, startup }
    }

    pub(crate) fn busy(&self) -> Busy {
        Arc::clone(&self.state.busy)
    }
}

/// The state of one connection.
struct State {
    shared: Arc<Shared>,
    principal: Arc<OnceLock<Principal>>,
    session: OnceLock<Session>,
    busy: Busy,
}

impl State {
    fn principal(&self) -> Result<Principal> {
        self.principal.get().copied().ok_or_else(|| ServerError::Unauthenticated("the connection has not authenticated".into()))
    }

    /// Refuse SQL text longer than the request-size limit before it is parsed.
    fn check_size(&self, sql: &str) -> Result<()> {
        let limit = self.shared.gate.limits().max_request_bytes;
        if sql.len() > limit {
            return Err(ServerError::Engine(jammi_db::Error::LimitExceeded { argument: "SQL text (bytes)".into(), value: sql.len().to_string(), limit: limit.to_string() }));
        }
        Ok(())
    }

    /// The connection's session handle (its transaction lives there).
    fn session(&self) -> Result<&Session> {
        let principal = self.principal()?;
        Ok(self.session.get_or_init(|| self.shared.session_for(principal)))
    }

    /// Run `statement` (parameters already bound) and answer as Postgres does.
    async fn execute(&self, statement: &SqlStatement, format: &Format) -> Result<Response> {
        if let Some(response) = client_setting(statement) {
            return Ok(response);
        }
        let session = self.session()?;
        let (schema, batches) = self
            .measured(async {
                let frame = session.run(statement).await?;
                let schema = SchemaRef::new(frame.schema().as_arrow().clone());
                Ok((schema, frame.collect().await?))
            })
            .await?;
        Ok(respond(statement, &schema, &batches, format))
    }

    /// Answer one of psql's catalog queries in the connection's tenant scope.
    async fn catalog(&self, query: &CatalogQuery, database: &str, format: &Format) -> Result<Response> {
        let session = self.session()?;
        let batch = self.measured(query.answer(session, database)).await?;
        Ok(rows_response(&batch.schema(), &[batch], format))
    }

    /// `work` as this connection's principal, through the gate, counted; the connection
    /// counts as busy meanwhile (shutdown waits for it).
    async fn measured<T>(&self, work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let principal = self.principal()?;
        self.busy.fetch_add(1, Ordering::AcqRel);
        let result = self.shared.run_as(principal, Protocol::Pg, "sql", work).await;
        self.busy.fetch_sub(1, Ordering::AcqRel);
        result
    }
}

/// The response for a statement that ran: its rows, or its command tag.
fn respond(statement: &SqlStatement, schema: &SchemaRef, batches: &[RecordBatch], format: &Format) -> Response {
    if statement.returns_rows() {
        return rows_response(schema, batches, format);
    }
    let tag = statement.command_tag();
    let affected = crate::query::affected_rows(batches).map(|n| n as usize);
    match (tag, affected) {
        ("BEGIN", _) => Response::TransactionStart(Tag::new("BEGIN")),
        ("COMMIT" | "ROLLBACK", _) if statement.ends_transaction() => Response::TransactionEnd(Tag::new(tag)),
        ("INSERT", Some(n)) => Response::Execution(Tag::new("INSERT").with_oid(0).with_rows(n)),
        (_, Some(n)) => Response::Execution(Tag::new(tag).with_rows(n)),
        (_, None) => Response::Execution(Tag::new(tag)),
    }
}

/// Rows of `schema`, in `format`.
fn rows_response(schema: &SchemaRef, batches: &[RecordBatch], format: &Format) -> Response {
    let fields = Arc::new(fields(schema, format));
    let rows = rows(&fields, batches);
    Response::Query(QueryResponse::new(fields, futures::stream::iter(rows)))
}

/// The database name the client connected with (psql's `\l` shows it).
fn database(client: &impl ClientInfo) -> String {
    client.metadata().get(pgwire::api::METADATA_DATABASE).cloned().unwrap_or_else(|| "jammi".to_string())
}

/// Housekeeping drivers send: settings on connect (`SET extra_float_digits = 3`, `SET
/// application_name = …`) are accepted and ignored (jammi's own settings go to the
/// engine); `DEALLOCATE [ALL]` and `DISCARD ALL` drop protocol-level prepared statements,
/// which the connection manages itself, so they succeed without effect.
fn client_setting(statement: &SqlStatement) -> Option<Response> {
    let text = statement.to_string().to_ascii_lowercase();
    for command in ["deallocate", "discard"] {
        if text.starts_with(command) {
            return Some(Response::Execution(Tag::new(&command.to_ascii_uppercase())));
        }
    }
    if statement.command_tag() != "SET" {
        return None;
    }
    let variable = text.trim_start_matches("set").trim_start().trim_start_matches("session ").trim_start_matches("local ");
    if variable.starts_with("datafusion.") || variable.starts_with("jammi.") || jammi_db::security::policy::ALLOWED_SETTINGS.iter().any(|s| variable.starts_with(s)) {
        return None;
    }
    Some(Response::Execution(Tag::new("SET")))
}

/// Queries of `pg_catalog` that [`catalog::recognise`] does not know (other tools' catalog
/// queries; psql's own are answered): say that jammi-db does not emulate it, and where the
/// same facts are.
fn catalog_hint(query: &str, e: ServerError) -> ServerError {
    if !query.to_ascii_lowercase().contains("pg_catalog") {
        return e;
    }
    ServerError::BadRequest(format!(
        "{e} (jammi-db does not provide PostgreSQL's pg_catalog beyond what psql's \\d, \\dt, \\dv, \\dn and \\l read; list tables with `SHOW TABLES` or `SELECT * FROM information_schema.tables`, columns with `SHOW COLUMNS FROM <table>`)"
    ))
}

fn pg_error(e: ServerError) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".to_owned(), e.sqlstate().to_owned(), e.to_string())))
}

impl PgWireServerHandlers for Connection {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.queries)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.queries)
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        Arc::clone(&self.startup)
    }
}

/// The simple and extended query handlers of one connection.
struct Queries {
    state: Arc<State>,
    parser: Arc<Parser>,
}

#[async_trait]
impl SimpleQueryHandler for Queries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(catalog) = catalog::recognise(query) {
            return Ok(vec![match self.state.catalog(&catalog, &database(&*client), &Format::UnifiedText).await {
                Ok(response) => response,
                Err(e) => Response::Error(Box::new(ErrorInfo::new("ERROR".to_owned(), e.sqlstate().to_owned(), e.to_string()))),
            }]);
        }
        self.state.check_size(query).map_err(pg_error)?;
        let session = self.state.session().map_err(pg_error)?;
        let statements = session.parse(query).map_err(|e| pg_error(catalog_hint(query, e.into())))?;
        let mut responses = Vec::with_capacity(statements.len());
        for statement in &statements {
            // Like PostgreSQL: the statements after a failed one do not run.
            match self.state.execute(statement, &Format::UnifiedText).await {
                Ok(response) => responses.push(response),
                Err(e) => {
                    let e = catalog_hint(query, e);
                    responses.push(Response::Error(Box::new(ErrorInfo::new("ERROR".to_owned(), e.sqlstate().to_owned(), e.to_string()))));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

/// A statement of the extended protocol: SQL planned when the client parses it, or one of
/// psql's catalog queries.
#[derive(Clone)]
pub(crate) enum PgStatement {
    Sql(Box<SqlPlan>),
    Catalog(Arc<CatalogQuery>),
}

/// A SQL statement of the extended protocol.
#[derive(Clone)]
pub(crate) struct SqlPlan {
    statement: SqlStatement,
    /// Queries: planned once, run per `Execute` with the bound values.
    prepared: Option<Arc<PreparedStatement>>,
    params: Vec<Option<DataType>>,
    schema: Option<SchemaRef>,
}

/// Parses and plans statements for the extended protocol.
struct Parser {
    state: Arc<State>,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = PgStatement;

    async fn parse_sql<C>(&self, _client: &C, sql: &str, _types: &[Option<Type>]) -> PgWireResult<Option<PgStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        if let Some(catalog) = catalog::recognise(sql) {
            return Ok(Some(PgStatement::Catalog(Arc::new(catalog))));
        }
        self.state.check_size(sql).map_err(pg_error)?;
        let session = self.state.session().map_err(pg_error)?;
        let mut statements = session.parse(sql).map_err(|e| pg_error(catalog_hint(sql, e.into())))?;
        if statements.len() != 1 {
            return Err(pg_error(ServerError::BadRequest(format!("a prepared statement is one SQL statement; got {}", statements.len()))));
        }
        let statement = statements.remove(0);
        if !statement.returns_rows() {
            return Ok(Some(PgStatement::Sql(Box::new(SqlPlan { statement, prepared: None, params: Vec::new(), schema: None }))));
        }
        let prepared = session.prepare(sql).await.map_err(|e| pg_error(catalog_hint(sql, e.into())))?;
        let params = prepared.parameter_types().await.map_err(|e| pg_error(e.into()))?;
        let schema = prepared.schema().await.map_err(|e| pg_error(e.into()))?;
        Ok(Some(PgStatement::Sql(Box::new(SqlPlan { statement, prepared: Some(Arc::new(prepared)), params, schema: Some(schema) }))))
    }

    fn get_parameter_types(&self, statement: &PgStatement) -> PgWireResult<Vec<Type>> {
        Ok(match statement {
            PgStatement::Sql(plan) => plan.params.iter().map(|t| param_type(t.as_ref())).collect(),
            PgStatement::Catalog(_) => Vec::new(),
        })
    }

    fn get_result_schema(&self, statement: &PgStatement, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        let format = format.unwrap_or(&Format::UnifiedBinary);
        Ok(match statement {
            PgStatement::Sql(plan) => plan.schema.as_ref().map(|schema| fields(schema, format)).unwrap_or_default(),
            PgStatement::Catalog(catalog) => fields(&catalog.schema(), format),
        })
    }
}

#[async_trait]
impl ExtendedQueryHandler for Queries {
    type Statement = PgStatement;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        Arc::clone(&self.parser)
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<PgStatement>, _max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement = match &portal.statement.statement {
            PgStatement::Sql(plan) => plan,
            PgStatement::Catalog(catalog) => return self.state.catalog(catalog, &database(&*client), &portal.result_column_format).await.map_err(pg_error),
        };
        let params = bound_params(portal, statement).map_err(pg_error)?;
        let Some(prepared) = &statement.prepared else {
            // DML, DDL and the like: the values go into the statement as literals.
            let bound = statement.statement.with_literals(&params).map_err(|e| pg_error(e.into()))?;
            return self.state.execute(&bound, &portal.result_column_format).await.map_err(pg_error);
        };
        let batches = self
            .state
            .measured(async {
                use futures::TryStreamExt;
                let stream = prepared.execute(params).await?;
                Ok(stream.try_collect::<Vec<RecordBatch>>().await?)
            })
            .await
            .map_err(pg_error)?;
        let schema = statement.schema.clone().unwrap_or_else(|| batches.first().map(|b| b.schema()).unwrap_or_else(|| SchemaRef::new(datafusion::arrow::datatypes::Schema::empty())));
        Ok(respond(&statement.statement, &schema, &batches, &portal.result_column_format))
    }
}

/// The portal's parameter values, each converted to the type the statement expects.
fn bound_params(portal: &Portal<PgStatement>, plan: &SqlPlan) -> Result<Vec<ScalarValue>> {
    (0..portal.parameter_len())
        .map(|i| {
            let expected = plan.params.get(i).cloned().flatten();
            let ty = portal.statement.parameter_types.get(i).cloned().flatten().unwrap_or_else(|| param_type(expected.as_ref()));
            let value = decode_param(portal, i, &ty)?;
            match expected {
                Some(t) if value.data_type() != t && !value.is_null() => value
                    .cast_to(&t)
                    .map_err(|_| ServerError::BadRequest(format!("parameter ${}: {} is not a valid {t}", i + 1, value))),
                Some(t) if value.is_null() => ScalarValue::try_from(&t).map_err(|e| ServerError::BadRequest(e.to_string())),
                _ => Ok(value),
            }
        })
        .collect()
}
