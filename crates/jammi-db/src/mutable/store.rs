//! Rows of mutable tables in the catalog database: the storage tables' DDL, inserts, updates,
//! deletes and selects, written once for both backends (`$n` parameters, four storage
//! classes). Only type names and error texts differ between SQLite and Postgres.

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row};

use super::spec::{TableSpec, TENANT_COLUMN};
use super::types::{StorageClass, Stored};
use crate::catalog::BackendKind;
use crate::error::{Error, Result};
use crate::names::quote_ident;

/// Most bind parameters one statement uses (SQLite allows 32,766, Postgres 65,535).
const MAX_BINDS: usize = 30_000;

/// Statements creating the storage table and its indexes.
pub fn create_table_sql(kind: BackendKind, storage: &str, spec: &TableSpec) -> Vec<String> {
    let mut columns = vec![format!("{} TEXT NOT NULL DEFAULT ''", quote_ident(TENANT_COLUMN))];
    for c in &spec.columns {
        columns.push(format!("{} {}{}", quote_ident(&c.name), kind.column_type(c.ty.storage()), if c.nullable { "" } else { " NOT NULL" }));
    }
    let key: Vec<String> = std::iter::once(TENANT_COLUMN.to_string()).chain(spec.primary_key.iter().cloned()).map(|c| quote_ident(&c)).collect();
    columns.push(format!("PRIMARY KEY ({})", key.join(", ")));
    let mut out = vec![format!("CREATE TABLE {} ({})", quote_ident(storage), columns.join(", "))];
    for index in spec.indexes.iter().filter(|i| i.fulltext.is_none()) {
        out.push(create_index_sql(storage, &index.name, &index.columns, index.unique));
    }
    out
}

/// `CREATE [UNIQUE] INDEX` on the storage table; unique indexes are unique per tenant.
pub fn create_index_sql(storage: &str, name: &str, columns: &[String], unique: bool) -> String {
    let cols: Vec<String> = std::iter::once(TENANT_COLUMN.to_string()).chain(columns.iter().cloned()).map(|c| quote_ident(&c)).collect();
    format!(
        "CREATE {}INDEX {} ON {} ({})",
        if unique { "UNIQUE " } else { "" },
        quote_ident(&index_storage_name(storage, name)),
        quote_ident(storage),
        cols.join(", ")
    )
}

/// The backend name of index `name` (index names are per database, not per table).
pub fn index_storage_name(storage: &str, name: &str) -> String {
    format!("{storage}__{name}")
}

/// `ALTER TABLE ... ADD COLUMN` on the storage table.
pub fn add_column_sql(kind: BackendKind, storage: &str, column: &super::spec::ColumnSpec, fill: Option<&Stored>) -> String {
    let mut sql = format!("ALTER TABLE {} ADD COLUMN {} {}", quote_ident(storage), quote_ident(&column.name), kind.column_type(column.ty.storage()));
    // Existing rows take the default; both backends need it as a literal here.
    if let Some(value) = fill {
        sql.push_str(&format!(" DEFAULT {}", literal(value)));
    }
    sql
}

fn literal(value: &Stored) -> String {
    match value {
        Stored::Null(_) => "NULL".into(),
        Stored::Int(i) => i.to_string(),
        Stored::Real(f) => format!("{f:?}"),
        Stored::Text(s) => format!("'{}'", s.replace('\'', "''")),
        Stored::Blob(b) => format!("X'{}'", b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
    }
}

type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>;

/// Bind one stored value.
pub fn bind(query: AnyQuery<'_>, value: Stored) -> AnyQuery<'_> {
    match value {
        Stored::Null(StorageClass::Integer) => query.bind(None::<i64>),
        Stored::Null(StorageClass::Real) => query.bind(None::<f64>),
        Stored::Null(StorageClass::Text) => query.bind(None::<String>),
        Stored::Null(StorageClass::Blob) => query.bind(None::<Vec<u8>>),
        Stored::Int(i) => query.bind(i),
        Stored::Real(f) => query.bind(f),
        Stored::Text(s) => query.bind(s),
        Stored::Blob(b) => query.bind(b),
    }
}

/// A failed write, classified so the caller can name the table and columns.
#[derive(Debug)]
pub enum WriteError {
    /// A primary-key or unique-index violation on these columns (tenant column dropped).
    Duplicate(Vec<String>),
    /// Anything else, classified like every catalog-database error.
    Other(crate::error::Error),
}

/// Classify a backend error from a write to `storage`.
pub fn write_error(e: sqlx::Error, storage: &str, spec: &TableSpec) -> WriteError {
    if let sqlx::Error::Database(db) = &e {
        if matches!(db.kind(), sqlx::error::ErrorKind::UniqueViolation) {
            // Postgres names the constraint; SQLite lists the columns in its message.
            let columns = match db.constraint() {
                Some(name) if name == format!("{storage}_pkey") => spec.primary_key.clone(),
                Some(name) => spec
                    .indexes
                    .iter()
                    .find(|i| index_storage_name(storage, &i.name) == name)
                    .map(|i| i.columns.clone())
                    .unwrap_or_default(),
                None => db
                    .message()
                    .split_once("failed: ")
                    .map(|(_, cols)| {
                        cols.split(',')
                            .filter_map(|c| c.trim().rsplit('.').next().map(str::to_string))
                            .filter(|c| c != TENANT_COLUMN)
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            return WriteError::Duplicate(columns);
        }
    }
    WriteError::Other(crate::error::Error::from_sqlx("the catalog database", &e))
}

/// Insert the rows of `columns` (stored values, column-major, in `spec` order) stamped with
/// `tenant`. `on_conflict_do_nothing` skips rows whose key exists. Returns rows written.
#[allow(clippy::too_many_arguments)]
pub async fn insert(
    conn: &mut AnyConnection,
    kind: BackendKind,
    storage: &str,
    spec: &TableSpec,
    tenant: &str,
    rows: &[Vec<Stored>],
    on_conflict_do_nothing: bool,
) -> std::result::Result<u64, WriteError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let width = spec.columns.len() + 1;
    let names: Vec<String> = std::iter::once(TENANT_COLUMN.to_string()).chain(spec.columns.iter().map(|c| c.name.clone())).map(|c| quote_ident(&c)).collect();
    let conflict = if on_conflict_do_nothing {
        let key: Vec<String> = std::iter::once(TENANT_COLUMN.to_string()).chain(spec.primary_key.iter().cloned()).map(|c| quote_ident(&c)).collect();
        format!(" ON CONFLICT ({}) DO NOTHING", key.join(", "))
    } else {
        String::new()
    };
    let mut written = 0;
    for chunk in rows.chunks((MAX_BINDS / width).max(1)) {
        let mut n = 0;
        let tuples: Vec<String> = chunk
            .iter()
            .map(|_| {
                let params: Vec<String> = (0..width)
                    .map(|_| {
                        n += 1;
                        kind.placeholder(n)
                    })
                    .collect();
                format!("({})", params.join(", "))
            })
            .collect();
        let sql = format!("INSERT INTO {} ({}) VALUES {}{conflict}", quote_ident(storage), names.join(", "), tuples.join(", "));
        let mut query = sqlx::query(&sql);
        for row in chunk {
            query = query.bind(tenant.to_string());
            for value in row {
                query = bind(query, value.clone());
            }
        }
        written += query.execute(&mut *conn).await.map_err(|e| write_error(e, storage, spec))?.rows_affected();
    }
    Ok(written)
}

/// Set `columns` to `values` in the row of `tenant` with key `key`. Returns rows changed.
pub async fn update_row(
    conn: &mut AnyConnection,
    storage: &str,
    spec: &TableSpec,
    columns: &[usize],
    values: Vec<Stored>,
    tenant: &str,
    key: Vec<Stored>,
) -> std::result::Result<u64, WriteError> {
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    let sets: Vec<String> = columns.iter().map(|i| format!("{} = {}", quote_ident(&spec.columns[*i].name), next())).collect();
    let mut conditions = vec![format!("{} = {}", quote_ident(TENANT_COLUMN), next())];
    conditions.extend(spec.primary_key.iter().map(|k| format!("{} = {}", quote_ident(k), next())));
    let sql = format!("UPDATE {} SET {} WHERE {}", quote_ident(storage), sets.join(", "), conditions.join(" AND "));
    let mut query = sqlx::query(&sql);
    for v in values {
        query = bind(query, v);
    }
    query = query.bind(tenant.to_string());
    for k in key {
        query = bind(query, k);
    }
    Ok(query.execute(&mut *conn).await.map_err(|e| write_error(e, storage, spec))?.rows_affected())
}

/// Delete the row of `tenant` with key `key`. Returns rows deleted.
pub async fn delete_row(conn: &mut AnyConnection, storage: &str, spec: &TableSpec, tenant: &str, key: Vec<Stored>) -> Result<u64, WriteError> {
    let mut conditions = vec![format!("{} = $1", quote_ident(TENANT_COLUMN))];
    conditions.extend(spec.primary_key.iter().enumerate().map(|(i, k)| format!("{} = ${}", quote_ident(k), i + 2)));
    let sql = format!("DELETE FROM {} WHERE {}", quote_ident(storage), conditions.join(" AND "));
    let mut query = sqlx::query(&sql).bind(tenant.to_string());
    for k in key {
        query = bind(query, k);
    }
    Ok(query.execute(&mut *conn).await.map_err(|e| write_error(e, storage, spec))?.rows_affected())
}

/// A `SELECT` on a storage table: which columns (by position in `spec`, the tenant column
/// as `None`), a `WHERE` clause with `$n` placeholders and its values, and a limit.
#[derive(Debug, Clone)]
pub struct Select {
    /// Columns to read; `None` reads the tenant column.
    pub columns: Vec<Option<usize>>,
    /// Conditions (joined with AND), each with `$?` placeholders numbered later.
    pub conditions: Vec<String>,
    /// Values for the placeholders, in order.
    pub binds: Vec<Stored>,
    /// Row limit.
    pub limit: Option<usize>,
}

impl Select {
    /// The SQL text, placeholders numbered.
    pub fn sql(&self, storage: &str, spec: &TableSpec) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| quote_ident(c.map(|i| spec.columns[i].name.as_str()).unwrap_or(TENANT_COLUMN)))
            .collect();
        // `1` when nothing is projected (count(*)): both backends accept a constant.
        let cols = if cols.is_empty() { "1".to_string() } else { cols.join(", ") };
        let mut sql = format!("SELECT {cols} FROM {}", quote_ident(storage));
        if !self.conditions.is_empty() {
            let mut n = 0;
            let conditions: Vec<String> = self
                .conditions
                .iter()
                .map(|c| {
                    let mut out = String::new();
                    for (i, part) in c.split("$?").enumerate() {
                        if i > 0 {
                            n += 1;
                            out.push_str(&format!("${n}"));
                        }
                        out.push_str(part);
                    }
                    format!("({out})")
                })
                .collect();
            sql.push_str(&format!(" WHERE {}", conditions.join(" AND ")));
        }
        if let Some(limit) = self.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        sql
    }

    /// Run it and build a batch of `schema` (the projected columns, tenant as text).
    pub async fn fetch(&self, conn: &mut AnyConnection, storage: &str, spec: &TableSpec, schema: &SchemaRef) -> Result<RecordBatch> {
        let sql = self.sql(storage, spec);
        let mut query = sqlx::query(&sql);
        for v in &self.binds {
            query = bind(query, v.clone());
        }
        let rows: Vec<AnyRow> = query.fetch_all(&mut *conn).await.map_err(|e| Error::from_sqlx("the catalog database", &e))?;
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for (pos, column) in self.columns.iter().enumerate() {
            let (class, ty) = match column {
                Some(i) => (spec.columns[*i].ty.storage(), Some(spec.columns[*i].ty)),
                None => (StorageClass::Text, None),
            };
            let values = rows.iter().map(|r| read(r, pos, class)).collect::<std::result::Result<Vec<_>, _>>().map_err(|e| Error::Catalog { backend: "catalog".into(), message: format!("reading {storage}: {e}") })?;
            let array = match ty {
                Some(ty) => ty.decode(values),
                None => super::types::ColumnType::Text.decode(values),
            }
            .map_err(|e| Error::Catalog { backend: "catalog".into(), message: format!("reading {storage}: {e}") })?;
            arrays.push(array);
        }
        let options = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len()));
        RecordBatch::try_new_with_options(SchemaRef::clone(schema), arrays, &options).map_err(Error::internal)
    }
}

fn read(row: &AnyRow, i: usize, class: StorageClass) -> std::result::Result<Stored, sqlx::Error> {
    Ok(match class {
        StorageClass::Integer => row.try_get::<Option<i64>, _>(i)?.map(Stored::Int),
        StorageClass::Real => row.try_get::<Option<f64>, _>(i)?.map(Stored::Real),
        StorageClass::Text => row.try_get::<Option<String>, _>(i)?.map(Stored::Text),
        StorageClass::Blob => row.try_get::<Option<Vec<u8>>, _>(i)?.map(Stored::Blob),
    }
    .unwrap_or(Stored::Null(class)))
}
