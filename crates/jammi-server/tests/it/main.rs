//! jammi-server against real clients: reqwest for HTTP, sqlx and `psql` for the Postgres
//! wire protocol (the Python ADBC/psycopg clients run from scripts/test.sh).

mod fuzz;
mod http;
mod pg;
mod security;
mod support;
mod tls;
