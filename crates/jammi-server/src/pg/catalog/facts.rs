//! What psql's catalog queries ask about, read from the session's `information_schema`
//! (so in the connection's tenant scope: a tenant sees only the tables it may query), and
//! Arrow types named as Postgres's `format_type` names them.

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use jammi_db::names::quote_ident;
use jammi_db::Session;

use crate::error::Result;
use crate::pg::encode::pg_type;
use pgwire::api::Type;

/// A jammi table or view, seen as a Postgres relation in schema `catalog.schema`.
#[derive(Debug, Clone)]
pub(super) struct Relation {
    pub(super) catalog: String,
    pub(super) schema: String,
    pub(super) name: String,
    pub(super) view: bool,
}

impl Relation {
    /// The Postgres schema (namespace) name of the relation: `catalog.schema`.
    pub(super) fn namespace(&self) -> String {
        format!("{}.{}", self.catalog, self.schema)
    }

    /// A stable object id: psql looks a relation up by name, then asks about it by oid in
    /// later queries, so the id must be derivable from the name alone (no state kept).
    /// FNV-1a over the qualified name, above Postgres's reserved range (< 16384).
    pub(super) fn oid(&self) -> u32 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for part in [&self.catalog, &self.schema, &self.name] {
            for b in part.bytes().chain([0]) {
                hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        16_384 + (hash % (i32::MAX as u64 - 16_384)) as u32
    }

    /// Postgres's relkind: `r` table, `v` view.
    pub(super) fn relkind(&self) -> &'static str {
        if self.view {
            "v"
        } else {
            "r"
        }
    }
}

/// Which relations a query asks for. Patterns are regular expressions as psql writes them.
#[derive(Debug, Default, Clone)]
pub(super) struct Filter {
    /// Matched against the namespace `catalog.schema`.
    pub(super) namespace: Option<String>,
    /// Matched against the table name, or the whole `catalog.schema.table`.
    pub(super) name: Option<String>,
    /// psql leaves out `information_schema` unless system objects are asked for (`\dS`).
    pub(super) hide_system: bool,
    pub(super) tables: bool,
    pub(super) views: bool,
}

/// The relations `filter` selects, ordered by namespace and name.
pub(super) async fn relations(session: &Session, filter: &Filter) -> Result<Vec<Relation>> {
    let mut conditions = vec!["true".to_string()];
    if let Some(re) = &filter.namespace {
        conditions.push(format!("regexp_like(table_catalog || '.' || table_schema, {})", string(re)));
    }
    if let Some(re) = &filter.name {
        conditions.push(format!("(regexp_like(table_name, {re}) OR regexp_like(table_catalog || '.' || table_schema || '.' || table_name, {re}))", re = string(re)));
    }
    if filter.hide_system {
        conditions.push("table_schema <> 'information_schema'".to_string());
    }
    let sql = format!("SELECT table_catalog, table_schema, table_name, table_type FROM information_schema.tables WHERE {}", conditions.join(" AND "));
    let mut found = Vec::new();
    for batch in collect(session, &sql).await? {
        for row in 0..batch.num_rows() {
            let relation = Relation { catalog: text(&batch, 0, row), schema: text(&batch, 1, row), name: text(&batch, 2, row), view: text(&batch, 3, row) == "VIEW" };
            if (relation.view && filter.views) || (!relation.view && filter.tables) {
                found.push(relation);
            }
        }
    }
    found.sort_by(|a, b| (a.namespace(), &a.name).cmp(&(b.namespace(), &b.name)));
    Ok(found)
}

/// The relation whose [`Relation::oid`] is `oid`, if the session sees one.
pub(super) async fn relation_by_oid(session: &Session, oid: u32) -> Result<Option<Relation>> {
    let every = Filter { tables: true, views: true, ..Filter::default() };
    Ok(relations(session, &every).await?.into_iter().find(|r| r.oid() == oid))
}

/// Namespaces (`catalog.schema`) the session sees, matching `pattern`, in order.
pub(super) async fn namespaces(session: &Session, pattern: Option<&str>, hide_system: bool) -> Result<Vec<String>> {
    let mut conditions = vec!["true".to_string()];
    if let Some(re) = pattern {
        conditions.push(format!("regexp_like(catalog_name || '.' || schema_name, {})", string(re)));
    }
    if hide_system {
        conditions.push("schema_name <> 'information_schema'".to_string());
    }
    let sql = format!("SELECT catalog_name || '.' || schema_name FROM information_schema.schemata WHERE {}", conditions.join(" AND "));
    let mut names: Vec<String> = collect(session, &sql).await?.iter().flat_map(|b| (0..b.num_rows()).map(move |r| text(b, 0, r))).collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// One column of a relation, as psql shows it.
pub(super) struct Column {
    pub(super) name: String,
    /// `format_type` style: `bigint`, `double precision`, `real[]`.
    pub(super) type_name: String,
    pub(super) not_null: bool,
    /// Postgres's attstorage: `p` (plain) for fixed-width types, `x` (extended) otherwise.
    pub(super) storage: &'static str,
}

/// The columns of `relation`, from its plan's schema (planning only: nothing is read).
pub(super) async fn columns(session: &Session, relation: &Relation) -> Result<Vec<Column>> {
    let sql = format!("SELECT * FROM {}.{}.{} LIMIT 0", quote_ident(&relation.catalog), quote_ident(&relation.schema), quote_ident(&relation.name));
    let frame = session.sql(&sql).await?;
    Ok(frame
        .schema()
        .fields()
        .iter()
        .map(|f| Column {
            name: f.name().clone(),
            type_name: type_name(f.data_type()),
            not_null: !f.is_nullable(),
            storage: if fixed_width(f.data_type()) { "p" } else { "x" },
        })
        .collect())
}

/// The name `format_type` gives the Postgres type a column of `data_type` is sent as.
pub(super) fn type_name(data_type: &DataType) -> String {
    if let DataType::Decimal128(p, s) | DataType::Decimal256(p, s) = data_type {
        return format!("numeric({p},{s})");
    }
    let name = match pg_type(data_type) {
        Type::BOOL => "boolean",
        Type::INT2 => "smallint",
        Type::INT4 => "integer",
        Type::INT8 => "bigint",
        Type::NUMERIC => "numeric",
        Type::FLOAT4 => "real",
        Type::FLOAT8 => "double precision",
        Type::BYTEA => "bytea",
        Type::DATE => "date",
        Type::TIME => "time without time zone",
        Type::TIMESTAMP => "timestamp without time zone",
        Type::TIMESTAMPTZ => "timestamp with time zone",
        Type::FLOAT4_ARRAY => "real[]",
        Type::FLOAT8_ARRAY => "double precision[]",
        Type::INT2_ARRAY => "smallint[]",
        Type::INT4_ARRAY => "integer[]",
        Type::INT8_ARRAY => "bigint[]",
        Type::BOOL_ARRAY => "boolean[]",
        Type::TEXT_ARRAY => "text[]",
        _ => "text",
    };
    name.to_string()
}

fn fixed_width(data_type: &DataType) -> bool {
    data_type.is_primitive() || matches!(data_type, DataType::Boolean)
}

/// `value` as a SQL string literal.
fn string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

async fn collect(session: &Session, sql: &str) -> Result<Vec<RecordBatch>> {
    Ok(session.sql(sql).await?.collect().await?)
}

/// Cell `row` of text column `column` (information_schema columns are strings).
fn text(batch: &RecordBatch, column: usize, row: usize) -> String {
    let array = batch.column(column);
    if array.is_null(row) {
        return String::new();
    }
    match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(row).to_string(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).to_string(),
        DataType::Utf8View => array.as_string_view().value(row).to_string(),
        _ => datafusion::arrow::util::display::array_value_to_string(array, row).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{Field, TimeUnit};

    use super::*;

    #[test]
    fn postgres_type_names() {
        let vector = DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), 4);
        assert_eq!(type_name(&DataType::Int64), "bigint");
        assert_eq!(type_name(&DataType::Utf8), "text");
        assert_eq!(type_name(&DataType::Float64), "double precision");
        assert_eq!(type_name(&vector), "real[]");
        assert_eq!(type_name(&DataType::Decimal128(10, 2)), "numeric(10,2)");
        assert_eq!(type_name(&DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))), "timestamp with time zone");
    }

    #[test]
    fn oids_are_stable_and_outside_the_reserved_range() {
        let r = |name: &str| Relation { catalog: "files".into(), schema: "public".into(), name: name.into(), view: false };
        assert_eq!(r("people").oid(), r("people").oid());
        assert_ne!(r("people").oid(), r("peoplf").oid());
        assert!(r("people").oid() >= 16_384 && r("people").oid() < i32::MAX as u32);
    }
}
