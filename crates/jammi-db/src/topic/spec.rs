//! A topic's definition: its columns (`col:type[:nullable],...`), its source table for change
//! feeds, and its retention.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Column types a topic may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopicType {
    /// `bool`
    Boolean,
    /// `int16` / `smallint`
    Int16,
    /// `int32` / `int`
    Int32,
    /// `int64` / `bigint` / `long`
    Int64,
    /// `float32` / `real`
    Float32,
    /// `float64` / `double` / `float`
    Float64,
    /// `string` / `text` / `utf8`
    Utf8,
    /// `json` (text)
    Json,
    /// `date`
    Date,
    /// `timestamp` (µs, UTC)
    Timestamp,
}

impl TopicType {
    fn parse(text: &str) -> Option<Self> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "bool" | "boolean" => TopicType::Boolean,
            "int16" | "smallint" => TopicType::Int16,
            "int32" | "int" | "integer" => TopicType::Int32,
            "int64" | "bigint" | "long" => TopicType::Int64,
            "float32" | "real" => TopicType::Float32,
            "float64" | "double" | "float" => TopicType::Float64,
            "string" | "text" | "utf8" | "varchar" => TopicType::Utf8,
            "json" => TopicType::Json,
            "date" => TopicType::Date,
            "timestamp" | "timestamptz" => TopicType::Timestamp,
            _ => return None,
        })
    }

    /// The Arrow type of the column.
    pub fn arrow_type(&self) -> DataType {
        match self {
            TopicType::Boolean => DataType::Boolean,
            TopicType::Int16 => DataType::Int16,
            TopicType::Int32 => DataType::Int32,
            TopicType::Int64 => DataType::Int64,
            TopicType::Float32 => DataType::Float32,
            TopicType::Float64 => DataType::Float64,
            TopicType::Utf8 | TopicType::Json => DataType::Utf8,
            TopicType::Date => DataType::Date32,
            TopicType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }
}

/// One column of a topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicColumn {
    /// Name.
    pub name: String,
    /// Type.
    #[serde(rename = "type")]
    pub ty: TopicType,
    /// Whether NULL is allowed.
    pub nullable: bool,
}

/// How long events are kept. `None` = unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Retention {
    /// Events older than this many milliseconds are removed.
    pub max_age_ms: Option<i64>,
    /// At most this many events are kept (the newest).
    pub max_events: Option<i64>,
}

/// A topic's definition, stored as JSON in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicSpec {
    /// Columns of every event.
    pub columns: Vec<TopicColumn>,
    /// `mutable.public.T` for a change feed.
    #[serde(default)]
    pub source_table: Option<String>,
    /// Retention.
    #[serde(default)]
    pub retention: Retention,
}

/// Columns every event has besides the topic's own.
pub const OFFSET_COLUMN: &str = "_offset";
/// When the event was committed.
pub const PRODUCED_AT_COLUMN: &str = "_produced_at";

impl TopicSpec {
    /// Read `col:type[:nullable],...` (also `col:type?` for nullable).
    pub fn parse_schema(text: &str) -> Result<Vec<TopicColumn>> {
        let bad = |m: String| Error::invalid("topic schema", format!("topic schema '{text}': {m}"));
        let mut columns: Vec<TopicColumn> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let pieces: Vec<&str> = part.split(':').map(str::trim).collect();
            let (name, ty, nullable) = match pieces.as_slice() {
                [name, ty] => (*name, ty.trim_end_matches('?'), ty.ends_with('?')),
                [name, ty, "nullable"] => (*name, *ty, true),
                [name, ty, "not null" | "required"] => (*name, *ty, false),
                _ => return Err(bad(format!("'{part}' is not col:type or col:type:nullable"))),
            };
            if name.is_empty() || name.starts_with('_') || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(bad(format!("'{name}' is not a column name (letters, digits, '_'; not starting with '_')")));
            }
            let ty = TopicType::parse(ty).ok_or_else(|| {
                bad(format!("'{ty}' is not a type; use bool, int16, int32, int64, float32, float64, string, json, date or timestamp"))
            })?;
            if columns.iter().any(|c| c.name == name) {
                return Err(bad(format!("column '{name}' appears twice")));
            }
            columns.push(TopicColumn { name: name.to_string(), ty, nullable });
        }
        if columns.is_empty() {
            return Err(bad("a topic needs at least one column".into()));
        }
        Ok(columns)
    }

    /// The change-feed schema: operation, key, new and old row images (JSON objects).
    pub fn change_feed_columns() -> Vec<TopicColumn> {
        let col = |name: &str, ty, nullable| TopicColumn { name: name.into(), ty, nullable };
        vec![
            col("op", TopicType::Utf8, false),
            col("key", TopicType::Json, false),
            col("new", TopicType::Json, true),
            col("old", TopicType::Json, true),
        ]
    }

    /// The schema of published batches (the topic's columns).
    pub fn payload_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(self.columns.iter().map(|c| Field::new(&c.name, c.ty.arrow_type(), c.nullable)).collect::<Vec<_>>()))
    }

    /// The schema subscribers and SQL see: the columns, `_offset`, `_produced_at`.
    pub fn event_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self.columns.iter().map(|c| Field::new(&c.name, c.ty.arrow_type(), c.nullable)).collect();
        fields.push(Field::new(OFFSET_COLUMN, DataType::Int64, false));
        fields.push(Field::new(PRODUCED_AT_COLUMN, DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false));
        Arc::new(Schema::new(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_parse_with_nullability_and_reject_mistakes() {
        let cols = TopicSpec::parse_schema("id:int64, label:string:nullable, score:double?").unwrap();
        assert_eq!(cols.iter().map(|c| (c.name.as_str(), c.nullable)).collect::<Vec<_>>(), vec![("id", false), ("label", true), ("score", true)]);
        assert!(TopicSpec::parse_schema("id:uuid").unwrap_err().to_string().contains("'uuid' is not a type"));
        assert!(TopicSpec::parse_schema("id").unwrap_err().to_string().contains("col:type"));
        assert!(TopicSpec::parse_schema("a:int,a:int").unwrap_err().to_string().contains("twice"));
        assert!(TopicSpec::parse_schema("_offset:int").is_err());
    }
}
