//! What a database holds: its tables, views and columns, read from `information_schema`,
//! with each column's type mapped to Arrow (see `docs/federation.md` for the table).

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use serde::{Deserialize, Serialize};

use super::pool::RemotePool;
use super::types::{list_of, RemoteColumn, RemoteKind};

/// Every table of the registered schemas: schema → table → columns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RemoteTables {
    /// Schemas (MySQL: databases) and their tables.
    pub schemas: BTreeMap<String, BTreeMap<String, Vec<RemoteColumn>>>,
}

fn quote_list(names: &[String]) -> String {
    names.iter().map(|n| format!("'{}'", n.replace('\'', "''"))).collect::<Vec<_>>().join(", ")
}

/// Read the tables of `schemas` (all user schemas when empty; for MySQL, the URL's
/// database).
pub async fn introspect(pool: &RemotePool, kind: RemoteKind, schemas: &[String]) -> std::result::Result<RemoteTables, sqlx::Error> {
    let sql = match kind {
        RemoteKind::Postgres => {
            let filter = if schemas.is_empty() {
                "c.table_schema NOT IN ('pg_catalog', 'information_schema') AND c.table_schema NOT LIKE 'pg\\_%'".to_string()
            } else {
                format!("c.table_schema IN ({})", quote_list(schemas))
            };
            format!(
                "SELECT c.table_schema::text, c.table_name::text, c.column_name::text, c.data_type::text, c.udt_name::text, c.is_nullable::text, \
                 c.numeric_precision::text, c.numeric_scale::text, c.datetime_precision::text \
                 FROM information_schema.columns c WHERE {filter} ORDER BY c.table_schema, c.table_name, c.ordinal_position"
            )
        }
        RemoteKind::Mysql => {
            let filter = if schemas.is_empty() { "c.TABLE_SCHEMA = DATABASE()".to_string() } else { format!("c.TABLE_SCHEMA IN ({})", quote_list(schemas)) };
            format!(
                "SELECT CAST(c.TABLE_SCHEMA AS CHAR), CAST(c.TABLE_NAME AS CHAR), CAST(c.COLUMN_NAME AS CHAR), CAST(c.DATA_TYPE AS CHAR), \
                 CAST(c.COLUMN_TYPE AS CHAR), CAST(c.IS_NULLABLE AS CHAR), CAST(c.NUMERIC_PRECISION AS CHAR), CAST(c.NUMERIC_SCALE AS CHAR), \
                 CAST(c.DATETIME_PRECISION AS CHAR) FROM information_schema.COLUMNS c WHERE {filter} \
                 ORDER BY c.TABLE_SCHEMA, c.TABLE_NAME, c.ORDINAL_POSITION"
            )
        }
    };
    let mut out = RemoteTables::default();
    for row in pool.text_rows(&sql).await? {
        let text = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let number = |i: usize| row.get(i).cloned().flatten().and_then(|v| v.parse::<u8>().ok());
        let (schema, table, name) = (text(0), text(1), text(2));
        let (data_type, detail) = (text(3).to_ascii_lowercase(), text(4).to_ascii_lowercase());
        let (arrow, opaque) = match kind {
            RemoteKind::Postgres => pg_type(&data_type, &detail, number(6), number(7)),
            RemoteKind::Mysql => mysql_type(&data_type, &detail, number(6), number(7)),
        };
        // MySQL's column type, and Postgres's for enums and domains, is the detailed name.
        let detailed = kind == RemoteKind::Mysql || data_type == "user-defined";
        let remote_type = if detailed { detail.clone() } else { data_type.clone() };
        let column = RemoteColumn { name, remote_type, arrow, nullable: text(5).eq_ignore_ascii_case("yes"), opaque };
        out.schemas.entry(schema).or_default().entry(table).or_default().push(column);
    }
    Ok(out)
}

fn decimal(precision: Option<u8>, scale: Option<u8>) -> DataType {
    match precision {
        Some(p) if (1..=38).contains(&p) => DataType::Decimal128(p, scale.unwrap_or(0) as i8),
        // Unconstrained numeric: 38 digits, 10 after the point.
        _ => DataType::Decimal128(38, 10),
    }
}

/// PostgreSQL type → (Arrow type, opaque).
fn pg_type(data_type: &str, udt: &str, precision: Option<u8>, scale: Option<u8>) -> (DataType, bool) {
    let plain = |t| (t, false);
    match data_type {
        "smallint" => plain(DataType::Int16),
        "integer" => plain(DataType::Int32),
        "bigint" => plain(DataType::Int64),
        "real" => plain(DataType::Float32),
        "double precision" => plain(DataType::Float64),
        "numeric" => plain(decimal(precision, scale)),
        "text" | "character varying" | "character" | "name" => plain(DataType::Utf8),
        "boolean" => plain(DataType::Boolean),
        "date" => plain(DataType::Date32),
        "time without time zone" => plain(DataType::Time64(TimeUnit::Microsecond)),
        "timestamp without time zone" => plain(DataType::Timestamp(TimeUnit::Microsecond, None)),
        "timestamp with time zone" => plain(DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))),
        "bytea" => plain(DataType::Binary),
        "array" => {
            let item = match udt.trim_start_matches('_') {
                "int2" => DataType::Int16,
                "int4" => DataType::Int32,
                "int8" => DataType::Int64,
                "float4" => DataType::Float32,
                "float8" => DataType::Float64,
                "bool" => DataType::Boolean,
                "text" | "varchar" | "bpchar" | "name" => DataType::Utf8,
                _ => return (DataType::Utf8, true),
            };
            (list_of(item), true)
        }
        // json, jsonb, uuid, interval, enums, and anything else: their text form.
        _ => (DataType::Utf8, true),
    }
}

/// MySQL / MariaDB type → (Arrow type, opaque).
fn mysql_type(data_type: &str, column_type: &str, precision: Option<u8>, scale: Option<u8>) -> (DataType, bool) {
    let plain = |t| (t, false);
    let unsigned = column_type.contains("unsigned");
    match data_type {
        "tinyint" if column_type.starts_with("tinyint(1)") => plain(DataType::Boolean),
        "tinyint" => plain(if unsigned { DataType::Int16 } else { DataType::Int8 }),
        "smallint" => plain(if unsigned { DataType::Int32 } else { DataType::Int16 }),
        "mediumint" | "int" | "integer" => plain(if unsigned { DataType::Int64 } else { DataType::Int32 }),
        "bigint" if unsigned => plain(DataType::Decimal128(20, 0)),
        "bigint" => plain(DataType::Int64),
        "year" => plain(DataType::Int32),
        "float" => plain(DataType::Float32),
        "double" | "real" => plain(DataType::Float64),
        "decimal" | "numeric" => plain(decimal(precision, scale)),
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => plain(DataType::Utf8),
        "date" => plain(DataType::Date32),
        "datetime" | "timestamp" => plain(DataType::Timestamp(TimeUnit::Microsecond, None)),
        "time" => plain(DataType::Time64(TimeUnit::Microsecond)),
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => plain(DataType::Binary),
        // json, enum, set, bit, geometry, and anything else: their text form.
        _ => (DataType::Utf8, true),
    }
}
