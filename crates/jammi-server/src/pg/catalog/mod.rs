//! psql's `\d` family, answered. psql describes objects by querying PostgreSQL's
//! `pg_catalog`; jammi-db has no such tables, so the handful of queries psql sends are
//! recognised by shape (which catalog table they read, what they select, the name patterns
//! and object ids in their WHERE clause) and answered from the session's
//! `information_schema` — the connection's tenant scope, like any other query.
//!
//! Names: a jammi table `catalog.schema.table` is the relation `table` in the Postgres
//! schema `catalog.schema` (`\d "files.public".people`, `\dt "files.*".*`); an unqualified
//! `\d people` finds every visible table called `people`, and a quoted whole name
//! (`\d "files.public.people"`) names one table. A query this module does not recognise is
//! not answered here (the caller reports that jammi does not provide `pg_catalog`).

mod facts;
mod scan;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use jammi_db::Session;

use crate::error::{Result, ServerError};
use facts::{Column, Filter, Relation};
use scan::{Item, Scanned};

/// Who psql shows as the owner of every relation and schema.
const OWNER: &str = "jammi";

/// Catalogs of objects jammi-db does not have (policies, extended statistics,
/// publications, inheritance, triggers, rules, indexes, constraints): psql asks about them
/// for each described table and prints nothing when there are none.
const EMPTY_CATALOGS: &[&str] =
    &["pg_policy", "pg_statistic_ext", "pg_publication", "pg_publication_rel", "pg_inherits", "pg_trigger", "pg_rewrite", "pg_index", "pg_constraint"];

/// A recognised catalog query: what it asks and the columns it answers with.
#[derive(Debug, Clone)]
pub(crate) struct CatalogQuery {
    kind: Kind,
    items: Vec<Item>,
}

#[derive(Debug, Clone)]
enum Kind {
    /// `\d`, `\dt`, `\dv` (and their patterns): Schema, Name, Type, Owner, …
    Relations(Filter),
    /// `\d NAME`'s first query: oid, schema and name of each matching relation.
    Lookup(Filter),
    /// `\d NAME`: the relation's kind and flags (`pg_class` by oid).
    Relation(u32),
    /// `\d NAME`: the relation's columns (`pg_attribute` by oid).
    Columns(u32),
    /// `\dn`.
    Schemas { pattern: Option<String>, hide_system: bool },
    /// `\l`.
    Databases,
    /// Objects jammi does not have: no rows.
    Empty,
}

/// The catalog query `sql` is, if it is one this module answers.
pub(crate) fn recognise(sql: &str) -> Option<CatalogQuery> {
    if !sql.to_ascii_lowercase().contains("pg_catalog") {
        return None;
    }
    let scanned = Scanned::new(sql);
    let items = scanned.items();
    let tables = scanned.tables_read();
    let named = |name: &str| items.iter().any(|i| i.name == name);
    let kind = match tables.first().map(|t| t.name.as_str()) {
        _ if tables.iter().any(|t| !t.left_joined && EMPTY_CATALOGS.contains(&t.name.as_str())) => Kind::Empty,
        // `SELECT pg_catalog.pg_get_viewdef(…)` (\d+ of a view): jammi keeps no view text.
        None if !items.is_empty() && items.iter().all(|i| i.expr.contains("pg_get_viewdef")) => Kind::Empty,
        Some("pg_class") if named("Schema") && named("Name") => {
            let kinds = scanned.in_list("c.relkind");
            let has = |k: &[&str]| kinds.as_ref().is_none_or(|list| list.iter().any(|v| k.contains(&v.as_str())));
            Kind::Relations(Filter {
                namespace: scanned.regex_on("n.nspname"),
                name: scanned.regex_on("c.relname"),
                hide_system: scanned.where_mentions("<> 'information_schema'"),
                tables: has(&["r", "p", "f"]),
                views: has(&["v"]),
            })
        }
        Some("pg_class") => match scanned.oid_equals("c.oid") {
            Some(oid) => Kind::Relation(oid),
            None if items.first().is_some_and(|i| i.name == "oid") => {
                let namespace = scanned.regex_on("n.nspname");
                // Like Postgres's search path: an unqualified name does not reach
                // information_schema.
                let hide_system = namespace.is_none();
                Kind::Lookup(Filter { namespace, name: scanned.regex_on("c.relname"), hide_system, tables: true, views: true })
            }
            None => return None,
        },
        Some("pg_attribute") => Kind::Columns(scanned.oid_equals("a.attrelid")?),
        Some("pg_namespace") if named("Name") => {
            Kind::Schemas { pattern: scanned.regex_on("n.nspname"), hide_system: scanned.where_mentions("<> 'information_schema'") }
        }
        Some("pg_database") if named("Name") => Kind::Databases,
        _ => return None,
    };
    Some(CatalogQuery { kind, items })
}

impl CatalogQuery {
    /// The answer's columns: one text column per selected item, named as psql expects.
    pub(crate) fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(self.items.iter().map(|i| Field::new(&i.name, DataType::Utf8, true)).collect::<Vec<_>>()))
    }

    /// Answer from `session` (already in the connection's tenant scope); `database` is
    /// the database name the client connected with.
    pub(crate) async fn answer(&self, session: &Session, database: &str) -> Result<RecordBatch> {
        let rows: Vec<Vec<Option<String>>> = match &self.kind {
            Kind::Relations(filter) => {
                facts::relations(session, filter).await?.iter().map(|r| self.row(|item| relation_listing(item, r))).collect()
            }
            Kind::Lookup(filter) => facts::relations(session, filter).await?.iter().map(|r| self.row(|item| lookup(item, r))).collect(),
            Kind::Relation(oid) => match facts::relation_by_oid(session, *oid).await? {
                Some(r) => vec![self.row(|item| relation_flags(item, &r))],
                None => Vec::new(),
            },
            Kind::Columns(oid) => match facts::relation_by_oid(session, *oid).await? {
                Some(r) => facts::columns(session, &r).await?.iter().enumerate().map(|(i, c)| self.row(|item| column(item, i + 1, c))).collect(),
                None => Vec::new(),
            },
            Kind::Schemas { pattern, hide_system } => {
                facts::namespaces(session, pattern.as_deref(), *hide_system).await?.iter().map(|n| self.row(|item| schema_listing(item, n))).collect()
            }
            Kind::Databases => vec![self.row(|item| database_listing(item, database))],
            Kind::Empty => Vec::new(),
        };
        self.batch(rows)
    }

    fn row(&self, cell: impl Fn(&Item) -> Option<String>) -> Vec<Option<String>> {
        self.items.iter().map(|item| literal(item).unwrap_or_else(|| cell(item))).collect()
    }

    fn batch(&self, rows: Vec<Vec<Option<String>>>) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> =
            (0..self.items.len()).map(|c| Arc::new(rows.iter().map(|r| r[c].clone()).collect::<StringArray>()) as ArrayRef).collect();
        let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
        RecordBatch::try_new_with_options(self.schema(), columns, &options).map_err(|e| ServerError::from(datafusion::error::DataFusionError::from(e)))
    }
}

/// A constant item's value (`''`, `false AS relhasoids`, `NULL`); `None` when the item is
/// not a constant.
fn literal(item: &Item) -> Option<Option<String>> {
    match item.expr.as_str() {
        "true" => Some(Some("t".into())),
        "false" => Some(Some("f".into())),
        "null" => Some(None),
        expr => scan::literal(expr).filter(|(_, used)| *used == expr.len()).map(|(v, _)| Some(v)),
    }
}

fn t_or_f(value: bool) -> Option<String> {
    Some(if value { "t" } else { "f" }.into())
}

fn relation_listing(item: &Item, r: &Relation) -> Option<String> {
    match item.name.as_str() {
        "Schema" => Some(r.namespace()),
        "Name" => Some(r.name.clone()),
        "Type" => Some(if r.view { "view" } else { "table" }.into()),
        "Owner" => Some(OWNER.into()),
        "Persistence" => Some("permanent".into()),
        _ => None,
    }
}

fn lookup(item: &Item, r: &Relation) -> Option<String> {
    match item.name.as_str() {
        "oid" => Some(r.oid().to_string()),
        "nspname" => Some(r.namespace()),
        "relname" => Some(r.name.clone()),
        _ => None,
    }
}

/// `pg_class`'s facts psql reads for `\d NAME`: an ordinary, permanent relation without
/// checks, indexes, rules, triggers, row security, partitions or options.
fn relation_flags(item: &Item, r: &Relation) -> Option<String> {
    let e = item.expr.as_str();
    let has = |word: &str| e.contains(word);
    if has("relchecks") || has("reltablespace") {
        Some("0".into())
    } else if has("reloftype") || has("reloptions") {
        Some(String::new())
    } else if has("relkind") {
        Some(r.relkind().into())
    } else if has("relpersistence") {
        Some("p".into())
    } else if has("relreplident") {
        Some("d".into())
    } else if ["relhas", "relrowsecurity", "relforcerowsecurity", "relispartition"].iter().any(|w| has(w)) {
        t_or_f(false)
    } else {
        None
    }
}

/// `pg_attribute`'s facts for one column (`position` counts from 1). Sub-selects come
/// first: they mention other columns' names (`a.attcollation` in the collation one).
fn column(item: &Item, position: usize, c: &Column) -> Option<String> {
    let e = item.expr.as_str();
    let has = |word: &str| e.contains(word);
    if has("pg_get_expr") || has("collname") || has("col_description") || has("attstattarget") || has("attfdwoptions") {
        None
    } else if has("format_type") {
        Some(c.type_name.clone())
    } else if has("attnotnull") {
        t_or_f(c.not_null)
    } else if has("attidentity") || has("attgenerated") || has("attcompression") {
        Some(String::new())
    } else if has("attstorage") {
        Some(c.storage.into())
    } else if has("attnum") {
        Some(position.to_string())
    } else if has("attname") {
        Some(c.name.clone())
    } else {
        None
    }
}

fn schema_listing(item: &Item, namespace: &str) -> Option<String> {
    match item.name.as_str() {
        "Name" => Some(namespace.into()),
        "Owner" => Some(OWNER.into()),
        _ => None,
    }
}

fn database_listing(item: &Item, database: &str) -> Option<String> {
    match item.name.as_str() {
        "Name" => Some(database.into()),
        "Owner" => Some(OWNER.into()),
        "Encoding" => Some("UTF8".into()),
        "Collate" | "Ctype" => Some("C".into()),
        "Locale Provider" => Some("libc".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLES: &str = "SELECT n.nspname as \"Schema\",\n  c.relname as \"Name\",\n  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' END as \"Type\",\n  pg_catalog.pg_get_userbyid(c.relowner) as \"Owner\"\nFROM pg_catalog.pg_class c\n     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam\nWHERE c.relkind IN ('r','p','')\n      AND n.nspname <> 'pg_catalog'\n      AND n.nspname !~ '^pg_toast'\n      AND n.nspname <> 'information_schema'\n  AND pg_catalog.pg_table_is_visible(c.oid)\nORDER BY 1,2;";

    #[test]
    fn recognises_psql_queries() {
        let q = recognise(TABLES).expect("\\dt");
        let Kind::Relations(filter) = &q.kind else { panic!("{q:?}") };
        assert!(filter.tables && !filter.views && filter.hide_system && filter.name.is_none());
        assert_eq!(q.schema().fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), ["Schema", "Name", "Type", "Owner"]);

        let info = "SELECT c.relchecks, c.relkind, false AS relhasoids, '' FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_class tc ON (c.reltoastrelid = tc.oid) WHERE c.oid = '16385';";
        assert!(matches!(recognise(info).map(|q| q.kind), Some(Kind::Relation(16385))));
        let policies = "SELECT pol.polname FROM pg_catalog.pg_policy pol WHERE pol.polrelid = '16385' ORDER BY 1;";
        assert!(matches!(recognise(policies).map(|q| q.kind), Some(Kind::Empty)));
        let parents = "SELECT c.oid::pg_catalog.regclass FROM pg_catalog.pg_class c, pg_catalog.pg_inherits i WHERE c.oid = i.inhparent AND i.inhrelid = '16385'";
        assert!(matches!(recognise(parents).map(|q| q.kind), Some(Kind::Empty)));
        // Not one of psql's: left to the caller's hint.
        assert!(recognise("SELECT typname FROM pg_catalog.pg_type").is_none());
        assert!(recognise("SELECT 1").is_none());
    }

    #[test]
    fn constant_items() {
        let item = |expr: &str| Item { expr: expr.into(), name: "?column?".into() };
        assert_eq!(literal(&item("''")), Some(Some(String::new())));
        assert_eq!(literal(&item("false")), Some(Some("f".into())));
        assert_eq!(literal(&item("c.relkind")), None);
    }
}
