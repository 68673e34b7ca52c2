//! Arrow Flight SQL (tonic): statements, prepared statements with parameters, and catalog
//! metadata (catalogs, schemas, tables) for ADBC/JDBC Flight SQL clients. The token goes
//! in the `authorization: Bearer <token>` header of every call.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, CommandGetCatalogs,
    CommandGetDbSchemas, CommandGetTables, CommandPreparedStatementQuery, CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult,
    ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc, Ticket};
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::common::ScalarValue;
use futures::{Stream, StreamExt, TryStreamExt};
use jammi_db::{PreparedStatement, SqlStatement};
use prost::Message;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use crate::auth::Principal;
use crate::error::ServerError;
use crate::limits::MAX_PREPARED_STATEMENTS;
use crate::metrics::Protocol;
use crate::query::{affected_rows, run_sql, scoped};
use crate::Shared;

type DataStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// Serve Flight SQL on `listener` until shutdown begins.
pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let mut stopping = shared.stopping.clone();
    let max_message = shared.gate.limits().max_request_bytes;
    let shared_tls = shared.tls.clone();
    let service = FlightServiceServer::new(FlightSql { shared, prepared: Mutex::new(HashMap::new()), done: Mutex::new(HashMap::new()) })
        // One message may be as large as the request-size limit says, no larger.
        .max_decoding_message_size(max_message);
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let stopped = async move {
        let _ = stopping.wait_for(|s| *s).await;
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &shared_tls {
        let identity = tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem);
        builder = match builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity)) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "the Flight SQL server cannot use the TLS certificate");
                return;
            }
        };
    }
    if let Err(e) = builder.add_service(service).serve_with_incoming_shutdown(incoming, stopped).await {
        tracing::error!(error = %e, "the Flight SQL server stopped");
    }
}

/// A prepared statement of one principal, with the parameters bound last. Queries are
/// planned once; DML and DDL (which the engine does not prepare) run per execution with
/// the values as literals.
struct Prepared {
    principal: Principal,
    statement: SqlStatement,
    planned: Option<Arc<PreparedStatement>>,
    schema: SchemaRef,
    params: Vec<ScalarValue>,
}

struct FlightSql {
    shared: Arc<Shared>,
    prepared: Mutex<HashMap<Vec<u8>, Prepared>>,
    /// Results of commands, which run when the client asks for their flight info (clients
    /// do not always fetch a command's result), until the ticket is redeemed.
    done: Mutex<HashMap<Vec<u8>, (Principal, SchemaRef, Vec<RecordBatch>)>>,
}

/// Tickets of finished commands start with this.
const DONE: &[u8] = b"done:";

fn status(e: ServerError) -> Status {
    let message = e.to_string();
    match &e {
        ServerError::Engine(jammi_db::Error::AlreadyExists { .. } | jammi_db::Error::UniqueViolation { .. }) => return Status::already_exists(message),
        ServerError::Engine(jammi_db::Error::Unsupported { .. }) => return Status::unimplemented(message),
        ServerError::Engine(jammi_db::Error::TransactionState { .. } | jammi_db::Error::Conflict { .. }) => return Status::failed_precondition(message),
        _ => {}
    }
    match e.http_status() {
        401 => Status::unauthenticated(message),
        403 => Status::permission_denied(message),
        404 => Status::not_found(message),
        409 => Status::aborted(message),
        503 => Status::unavailable(message),
        504 => Status::deadline_exceeded(message),
        500 => Status::internal(message),
        _ => Status::invalid_argument(message),
    }
}

impl FlightSql {
    async fn principal<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        let token = match request.metadata().get("authorization") {
            None => None,
            Some(value) => {
                let text = value.to_str().map_err(|_| Status::unauthenticated("the authorization header is not text"))?;
                match text.split_once(' ') {
                    Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Some(token.to_string()),
                    _ => return Err(Status::unauthenticated("use `authorization: Bearer <token>`")),
                }
            }
        };
        self.shared.auth.authenticate(token.as_deref()).await.map_err(status)
    }

    /// Run `sql` as `principal` and stream its batches.
    async fn run(&self, principal: Principal, sql: &str, params: Vec<ScalarValue>) -> Result<Response<DataStream>, Status> {
        let session = self.shared.session_for(principal);
        let result = self.shared.run_as(principal, Protocol::Flight, "sql", run_sql(&session, sql, params)).await.map_err(status)?;
        Ok(Response::new(encode(result.schema, result.batches)))
    }

    /// Run a catalog query (information_schema) and hand each row to `add`.
    async fn catalog_rows(&self, principal: Principal, sql: &str, mut add: impl FnMut(&RecordBatch, usize)) -> Result<(), Status> {
        let session = self.shared.session_for(principal);
        let result = self.shared.run_as(principal, Protocol::Flight, "metadata", run_sql(&session, sql, Vec::new())).await.map_err(status)?;
        for batch in &result.batches {
            for row in 0..batch.num_rows() {
                add(batch, row);
            }
        }
        Ok(())
    }
}

fn encode(schema: SchemaRef, batches: Vec<RecordBatch>) -> DataStream {
    let stream = futures::stream::iter(batches.into_iter().map(Ok));
    FlightDataEncoderBuilder::new().with_schema(schema).build(stream).map_err(Status::from).boxed()
}

fn info(schema: &Schema, command: impl ProstMessageExt) -> Result<Response<FlightInfo>, Status> {
    let ticket = Ticket { ticket: command.as_any().encode_to_vec().into() };
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(e.to_string()))?
        .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
        .with_descriptor(FlightDescriptor::new_cmd(command.as_any().encode_to_vec()));
    Ok(Response::new(info))
}

fn ipc_schema(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default()).try_into().map_err(|e: datafusion::arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes)
}

fn text(batch: &RecordBatch, column: usize, row: usize) -> String {
    let array = batch.column(column);
    array.as_string_opt::<i32>().map(|a| a.value(row).to_string()).unwrap_or_else(|| datafusion::arrow::util::display::array_value_to_string(array, row).unwrap_or_default())
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn get_flight_info_statement(&self, query: CommandStatementQuery, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        let principal = self.principal(&request).await?;
        let session = self.shared.session_for(principal);
        let statements = session.parse(&query.query).map_err(|e| status(e.into()))?;
        let last = statements.last().ok_or_else(|| Status::invalid_argument("no SQL statement given"))?;
        // Clients send DML and DDL this way too (ADBC's execute): they run when the ticket
        // is redeemed, answering `count` (DML) or nothing (DDL).
        if statements.len() == 1 && last.returns_rows() {
            let prepared = scoped(principal, session.prepare(&query.query)).await.map_err(|e| status(e.into()))?;
            let schema = prepared.schema().await.map_err(|e| status(e.into()))?;
            return info(&schema, TicketStatementQuery { statement_handle: query.query.into_bytes().into() });
        }
        let result = self.shared.run_as(principal, Protocol::Flight, "sql", run_sql(&session, &query.query, Vec::new())).await.map_err(status)?;
        self.finished(principal, result.schema, result.batches)
    }

    async fn do_get_statement(&self, ticket: TicketStatementQuery, request: Request<Ticket>) -> Result<Response<DataStream>, Status> {
        let principal = self.principal(&request).await?;
        if let Some(id) = ticket.statement_handle.strip_prefix(DONE) {
            let done = self.done.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
            return match done {
                Some((owner, schema, batches)) if owner == principal => Ok(Response::new(encode(schema, batches))),
                _ => Err(Status::not_found("no such result; a command's result is read once")),
            };
        }
        let sql = String::from_utf8(ticket.statement_handle.to_vec()).map_err(|_| Status::invalid_argument("the ticket is not a statement"))?;
        self.run(principal, &sql, Vec::new()).await
    }

    async fn do_put_statement_update(&self, command: CommandStatementUpdate, request: Request<PeekableFlightDataStream>) -> Result<i64, Status> {
        let principal = self.principal(&request).await?;
        let session = self.shared.session_for(principal);
        let result = self.shared.run_as(principal, Protocol::Flight, "sql", run_sql(&session, &command.query, Vec::new())).await.map_err(status)?;
        Ok(affected_rows(&result.batches).unwrap_or(0) as i64)
    }

    async fn do_action_create_prepared_statement(&self, query: ActionCreatePreparedStatementRequest, request: Request<arrow_flight::Action>) -> Result<ActionCreatePreparedStatementResult, Status> {
        let principal = self.principal(&request).await?;
        let session = self.shared.session_for(principal);
        let mut statements = session.parse(&query.query).map_err(|e| status(e.into()))?;
        if statements.len() != 1 {
            return Err(Status::invalid_argument(format!("a prepared statement is one SQL statement; got {}", statements.len())));
        }
        let statement = statements.remove(0);
        let (planned, schema, types) = if statement.returns_rows() {
            let planned = scoped(principal, session.prepare(&query.query)).await.map_err(|e| status(e.into()))?;
            let schema = planned.schema().await.map_err(|e| status(e.into()))?;
            let types = planned.parameter_types().await.map_err(|e| status(e.into()))?;
            (Some(Arc::new(planned)), schema, types)
        } else {
            (None, command_schema(&statement), Vec::new())
        };
        let parameters = Schema::new(
            types
                .iter()
                .enumerate()
                .map(|(i, t)| datafusion::arrow::datatypes::Field::new(format!("${}", i + 1), t.clone().unwrap_or(datafusion::arrow::datatypes::DataType::Utf8), true))
                .collect::<Vec<_>>(),
        );
        let handle = uuid::Uuid::new_v4().as_bytes().to_vec();
        let result = ActionCreatePreparedStatementResult { prepared_statement_handle: handle.clone().into(), dataset_schema: ipc_schema(&schema)?, parameter_schema: ipc_schema(&parameters)? };
        let mut prepared = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        if prepared.values().filter(|e| e.principal == principal).count() >= MAX_PREPARED_STATEMENTS {
            return Err(Status::resource_exhausted(format!(
                "{MAX_PREPARED_STATEMENTS} prepared statements are open for this token; close the ones no longer used (ClosePreparedStatement)"
            )));
        }
        prepared.insert(handle, Prepared { principal, statement, planned, schema, params: Vec::new() });
        Ok(result)
    }

    async fn do_put_prepared_statement_query(&self, query: CommandPreparedStatementQuery, request: Request<PeekableFlightDataStream>) -> Result<DoPutPreparedStatementResult, Status> {
        let principal = self.principal(&request).await?;
        let batches: Vec<RecordBatch> = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(request.into_inner().map_err(Into::into)).try_collect().await?;
        let mut params = Vec::new();
        if let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) {
            for column in batch.columns() {
                params.push(ScalarValue::try_from_array(column, 0).map_err(|e| Status::invalid_argument(e.to_string()))?);
            }
        }
        let mut prepared = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        let entry = prepared.get_mut(query.prepared_statement_handle.as_ref()).filter(|e| e.principal == principal).ok_or_else(|| Status::not_found("no such prepared statement"))?;
        entry.params = params;
        Ok(DoPutPreparedStatementResult { prepared_statement_handle: Some(query.prepared_statement_handle) })
    }

    async fn get_flight_info_prepared_statement(&self, query: CommandPreparedStatementQuery, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        let principal = self.principal(&request).await?;
        let (statement, planned, schema, params) = self.lookup(&query, principal)?;
        if planned.is_some() {
            return info(&schema, query);
        }
        let batches = self.execute(principal, &statement, None, params).await?;
        let schema = batches.first().map(|b| b.schema()).unwrap_or(schema);
        self.finished(principal, schema, batches)
    }

    async fn do_get_prepared_statement(&self, query: CommandPreparedStatementQuery, request: Request<Ticket>) -> Result<Response<DataStream>, Status> {
        let principal = self.principal(&request).await?;
        let (statement, planned, schema, params) = self.lookup(&query, principal)?;
        let batches = self.execute(principal, &statement, planned, params).await?;
        let schema = batches.first().map(|b| b.schema()).unwrap_or(schema);
        Ok(Response::new(encode(schema, batches)))
    }

    async fn do_put_prepared_statement_update(&self, query: arrow_flight::sql::CommandPreparedStatementUpdate, request: Request<PeekableFlightDataStream>) -> Result<i64, Status> {
        let principal = self.principal(&request).await?;
        let handle = CommandPreparedStatementQuery { prepared_statement_handle: query.prepared_statement_handle };
        let (statement, planned, _, params) = self.lookup(&handle, principal)?;
        let batches = self.execute(principal, &statement, planned, params).await?;
        Ok(affected_rows(&batches).unwrap_or(0) as i64)
    }

    async fn do_action_close_prepared_statement(&self, query: ActionClosePreparedStatementRequest, request: Request<arrow_flight::Action>) -> Result<(), Status> {
        let principal = self.principal(&request).await?;
        let mut prepared = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        if prepared.get(query.prepared_statement_handle.as_ref()).is_some_and(|e| e.principal == principal) {
            prepared.remove(query.prepared_statement_handle.as_ref());
        }
        Ok(())
    }

    async fn get_flight_info_catalogs(&self, query: CommandGetCatalogs, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request).await?;
        info(&query.clone().into_builder().schema(), query)
    }

    async fn do_get_catalogs(&self, query: CommandGetCatalogs, request: Request<Ticket>) -> Result<Response<DataStream>, Status> {
        let principal = self.principal(&request).await?;
        let mut builder = query.into_builder();
        self.catalog_rows(principal, "SELECT DISTINCT table_catalog FROM information_schema.tables ORDER BY 1", |b, r| builder.append(text(b, 0, r))).await?;
        let batch = builder.build().map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(encode(batch.schema(), vec![batch])))
    }

    async fn get_flight_info_schemas(&self, query: CommandGetDbSchemas, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request).await?;
        info(&query.clone().into_builder().schema(), query)
    }

    async fn do_get_schemas(&self, query: CommandGetDbSchemas, request: Request<Ticket>) -> Result<Response<DataStream>, Status> {
        let principal = self.principal(&request).await?;
        let mut builder = query.into_builder();
        self.catalog_rows(principal, "SELECT DISTINCT table_catalog, table_schema FROM information_schema.tables ORDER BY 1, 2", |b, r| builder.append(text(b, 0, r), text(b, 1, r))).await?;
        let batch = builder.build().map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(encode(batch.schema(), vec![batch])))
    }

    async fn get_flight_info_tables(&self, query: CommandGetTables, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request).await?;
        info(&query.clone().into_builder().schema(), query)
    }

    async fn do_get_tables(&self, query: CommandGetTables, request: Request<Ticket>) -> Result<Response<DataStream>, Status> {
        let principal = self.principal(&request).await?;
        let include_schema = query.include_schema;
        let mut builder = query.into_builder();
        let mut names = Vec::new();
        self.catalog_rows(principal, "SELECT table_catalog, table_schema, table_name, table_type FROM information_schema.tables ORDER BY 1, 2, 3", |b, r| {
            names.push((text(b, 0, r), text(b, 1, r), text(b, 2, r), text(b, 3, r)));
        })
        .await?;
        let session = self.shared.session_for(principal);
        for (catalog, schema, table, kind) in names {
            let table_schema = if include_schema {
                let sql = format!("SELECT * FROM {}.{}.{} LIMIT 0", quote_ident(&catalog), quote_ident(&schema), quote_ident(&table));
                match scoped(principal, session.sql(&sql)).await {
                    Ok(frame) => frame.schema().as_arrow().clone(),
                    Err(_) => Schema::empty(),
                }
            } else {
                Schema::empty()
            };
            builder.append(&catalog, &schema, &table, &kind, &table_schema).map_err(|e| Status::internal(e.to_string()))?;
        }
        let batch = builder.build().map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(encode(batch.schema(), vec![batch])))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

type Lookup = (SqlStatement, Option<Arc<PreparedStatement>>, SchemaRef, Vec<ScalarValue>);

impl FlightSql {
    fn lookup(&self, query: &CommandPreparedStatementQuery, principal: Principal) -> Result<Lookup, Status> {
        let prepared = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        let entry = prepared.get(query.prepared_statement_handle.as_ref()).filter(|e| e.principal == principal).ok_or_else(|| Status::not_found("no such prepared statement"))?;
        Ok((entry.statement.clone(), entry.planned.clone(), SchemaRef::clone(&entry.schema), entry.params.clone()))
    }

    /// Keep a finished command's result until its ticket is redeemed.
    fn finished(&self, principal: Principal, schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<Response<FlightInfo>, Status> {
        let id = uuid::Uuid::new_v4().as_bytes().to_vec();
        let mut handle = DONE.to_vec();
        handle.extend_from_slice(&id);
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        // Results nobody fetches must not pile up: keep the most recent ones.
        if done.len() >= 1024 {
            done.clear();
        }
        done.insert(id, (principal, SchemaRef::clone(&schema), batches));
        info(&schema, TicketStatementQuery { statement_handle: handle.into() })
    }

    /// Run a prepared statement with `params`: a planned query with the values bound, or a
    /// command with the values as literals.
    async fn execute(&self, principal: Principal, statement: &SqlStatement, planned: Option<Arc<PreparedStatement>>, params: Vec<ScalarValue>) -> Result<Vec<RecordBatch>, Status> {
        let session = self.shared.session_for(principal);
        self.shared
            .run_as(principal, Protocol::Flight, "sql", async {
                match planned {
                    Some(planned) => Ok(planned.execute(params).await?.try_collect::<Vec<_>>().await?),
                    None => Ok(session.run(&statement.with_literals(&params)?).await?.collect().await?),
                }
            })
            .await
            .map_err(status)
    }
}

/// What a command answers: `count` for DML, nothing for the rest.
fn command_schema(statement: &SqlStatement) -> SchemaRef {
    if matches!(statement.command_tag(), "INSERT" | "UPDATE" | "DELETE") {
        SchemaRef::new(Schema::new(vec![datafusion::arrow::datatypes::Field::new("count", datafusion::arrow::datatypes::DataType::UInt64, false)]))
    } else {
        SchemaRef::new(Schema::empty())
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
