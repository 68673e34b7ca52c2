//! The definition of a mutable table, as stored in the catalog (JSON) and read from
//! `CREATE TABLE`.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::{self, ColumnOption, TableConstraint};
use serde::{Deserialize, Serialize};

use super::types::ColumnType;
use crate::error::{Error, Result};

/// The hidden column holding each row's tenant ('' for shared rows).
pub const TENANT_COLUMN: &str = "tenant_id";

/// One column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnSpec {
    /// Name as written (case kept; quote it in SQL if it is not lower case).
    pub name: String,
    /// Type.
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// `DEFAULT` expression as SQL text, evaluated per insert.
    pub default: Option<String>,
}

/// A secondary index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexSpec {
    /// Index name (unique per table).
    pub name: String,
    /// Indexed columns.
    pub columns: Vec<String>,
    /// Whether the index enforces uniqueness (per tenant).
    pub unique: bool,
    /// A full-text index (`USING fulltext`): each column's analyzer. `None` for a plain
    /// index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fulltext: Option<Vec<String>>,
}

/// A table's columns, key and indexes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableSpec {
    /// Columns in order.
    pub columns: Vec<ColumnSpec>,
    /// Primary-key columns (unique per tenant).
    pub primary_key: Vec<String>,
    /// Secondary indexes.
    #[serde(default)]
    pub indexes: Vec<IndexSpec>,
}

impl TableSpec {
    /// The Arrow schema queries see (no tenant column).
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns.iter().map(|c| Field::new(&c.name, c.ty.arrow_type(), c.nullable)).collect::<Vec<_>>(),
        ))
    }

    /// Position and definition of column `name`.
    pub fn column(&self, name: &str) -> Option<(usize, &ColumnSpec)> {
        self.columns.iter().enumerate().find(|(_, c)| c.name == name)
    }

    /// Positions of the primary-key columns.
    pub fn key_positions(&self) -> Vec<usize> {
        self.primary_key.iter().filter_map(|k| self.column(k).map(|(i, _)| i)).collect()
    }

    /// Read `CREATE TABLE` (columns, NOT NULL, DEFAULT, PRIMARY KEY, UNIQUE).
    pub fn from_create(table: &str, create: &ast::CreateTable) -> Result<Self> {
        let mut spec = TableSpec { columns: Vec::new(), primary_key: Vec::new(), indexes: Vec::new() };
        for def in &create.columns {
            let name = def.name.value.clone();
            let column = column_spec(table, def, &mut spec)?;
            if spec.column(&name).is_some() {
                return Err(Error::invalid(name.clone(), format!("CREATE TABLE {table}: column '{name}' is defined twice")));
            }
            spec.columns.push(column);
        }
        for constraint in &create.constraints {
            match constraint {
                TableConstraint::PrimaryKey(pk) => {
                    if !spec.primary_key.is_empty() {
                        return Err(Error::invalid("PRIMARY KEY", format!("CREATE TABLE {table}: more than one PRIMARY KEY")));
                    }
                    spec.primary_key = index_columns(&pk.columns)?;
                }
                TableConstraint::Unique(u) => {
                    let columns = index_columns(&u.columns)?;
                    let name = format!("{}_unique_{}", table.rsplit('.').next().unwrap_or(table), columns.join("_"));
                    spec.indexes.push(IndexSpec { name, columns, unique: true, fulltext: None });
                }
                other => return Err(Error::unsupported(format!("CREATE TABLE {table}: constraint '{other}' is not supported"))),
            }
        }
        spec.validate(table)?;
        Ok(spec)
    }

    /// Check the key and indexes name existing columns; key columns become NOT NULL.
    pub fn validate(&mut self, table: &str) -> Result<()> {
        if self.columns.is_empty() {
            return Err(Error::invalid("columns", format!("CREATE TABLE {table}: a table needs at least one column")));
        }
        if self.primary_key.is_empty() {
            return Err(Error::invalid("PRIMARY KEY", format!(
                "CREATE TABLE {table}: a mutable table needs a PRIMARY KEY, e.g. `id BIGINT PRIMARY KEY` or `PRIMARY KEY (a, b)`"
            )));
        }
        for c in &self.columns {
            if c.name.eq_ignore_ascii_case(TENANT_COLUMN) {
                return Err(Error::invalid(c.name.clone(), format!("CREATE TABLE {table}: the column name '{}' is reserved for tenancy", c.name)));
            }
        }
        let names: Vec<String> = self.primary_key.iter().chain(self.indexes.iter().flat_map(|i| i.columns.iter())).cloned().collect();
        for name in names {
            if self.column(&name).is_none() {
                return Err(Error::invalid(name.clone(), format!("CREATE TABLE {table}: key or index column '{name}' is not a column of the table")));
            }
        }
        for key in self.primary_key.clone() {
            if let Some(c) = self.columns.iter_mut().find(|c| c.name == key) {
                if matches!(c.ty, ColumnType::Vector { .. } | ColumnType::Json) {
                    return Err(Error::invalid(key.clone(), format!("CREATE TABLE {table}: column '{key}' of type {} cannot be part of the key", c.ty.sql_name())));
                }
                c.nullable = false;
            }
        }
        Ok(())
    }
}

/// One column definition; `PRIMARY KEY` / `UNIQUE` on the column go into `spec`.
pub fn column_spec(table: &str, def: &ast::ColumnDef, spec: &mut TableSpec) -> Result<ColumnSpec> {
    let name = def.name.value.clone();
    let mut column = ColumnSpec { ty: ColumnType::from_sql(&def.data_type, &name)?, name: name.clone(), nullable: true, default: None };
    for option in &def.options {
        match &option.option {
            ColumnOption::Null => column.nullable = true,
            ColumnOption::NotNull => column.nullable = false,
            ColumnOption::Default(expr) => column.default = Some(expr.to_string()),
            ColumnOption::PrimaryKey(_) => {
                if !spec.primary_key.is_empty() {
                    return Err(Error::invalid("PRIMARY KEY", format!("CREATE TABLE {table}: more than one PRIMARY KEY")));
                }
                spec.primary_key = vec![name.clone()];
            }
            ColumnOption::Unique(_) => {
                spec.indexes.push(IndexSpec { name: format!("{}_unique_{name}", table.rsplit('.').next().unwrap_or(table)), columns: vec![name.clone()], unique: true, fulltext: None })
            }
            other => return Err(Error::unsupported(format!("column '{name}': option '{other}' is not supported"))),
        }
    }
    Ok(column)
}

fn index_columns(columns: &[ast::IndexColumn]) -> Result<Vec<String>> {
    columns
        .iter()
        .map(|c| match &c.column.expr {
            ast::Expr::Identifier(id) => Ok(id.value.clone()),
            other => Err(Error::unsupported(format!("only plain columns can be keys or indexed; got '{other}'"))),
        })
        .collect()
}
