//! Remote column types: how each database type maps to Arrow, how a value travels (the
//! expression the remote evaluates so the value arrives in a form we decode exactly), and
//! the decoding into Arrow arrays.
//!
//! Values travel as a handful of wire types only — 64-bit integers, doubles, text, bytes,
//! booleans and integer arrays — so no driver-specific temporal or decimal decoders are
//! involved: dates travel as days since the epoch, timestamps and times as microseconds,
//! decimals as their exact text. The remote does that conversion in the outermost `SELECT`
//! of every query we send.

use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, ArrayRef, BinaryBuilder, BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The database family of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RemoteKind {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
}

impl RemoteKind {
    /// The source kind stored in the catalog.
    pub fn as_str(&self) -> &'static str {
        match self {
            RemoteKind::Postgres => "postgres",
            RemoteKind::Mysql => "mysql",
        }
    }

    /// Quote an identifier for this dialect.
    pub fn quote(&self, ident: &str) -> String {
        match self {
            RemoteKind::Postgres => format!("\"{}\"", ident.replace('"', "\"\"")),
            RemoteKind::Mysql => format!("`{}`", ident.replace('`', "``")),
        }
    }
}

/// One remote column as registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteColumn {
    /// Column name.
    pub name: String,
    /// The remote type as the database names it (`numeric(10,2)`, `jsonb`, `int[]`).
    pub remote_type: String,
    /// The Arrow type it reads as.
    pub arrow: DataType,
    /// Nullable.
    pub nullable: bool,
    /// Read as its text form (json, uuid, enums, intervals, anything unmapped): such a
    /// column is only ever *selected* remotely, never compared or computed on there, since
    /// the remote's operators on the native type differ from ours on text.
    pub opaque: bool,
}

/// How a value of `arrow` travels from the remote, as a wire type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// 64-bit integer.
    Int,
    /// Double.
    Float,
    /// Text.
    Text,
    /// Bytes.
    Bytes,
    /// Boolean.
    Bool,
    /// Array of 64-bit integers.
    IntList,
    /// Array of doubles.
    FloatList,
    /// Array of text.
    TextList,
    /// Array of booleans.
    BoolList,
}

/// The wire type for values of `arrow`.
pub fn wire_of(arrow: &DataType) -> Wire {
    match arrow {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => Wire::Int,
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _) | DataType::Time64(_) | DataType::Time32(_) => Wire::Int,
        DataType::Float16 | DataType::Float32 | DataType::Float64 => Wire::Float,
        DataType::Boolean => Wire::Bool,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => Wire::Bytes,
        DataType::List(item) | DataType::LargeList(item) => match wire_of(item.data_type()) {
            Wire::Int => Wire::IntList,
            Wire::Float => Wire::FloatList,
            Wire::Bool => Wire::BoolList,
            _ => Wire::TextList,
        },
        _ => Wire::Text,
    }
}

/// The remote expression that sends `expr` (of Arrow type `arrow`) as its wire type.
pub fn transport(kind: RemoteKind, expr: &str, arrow: &DataType) -> String {
    use RemoteKind::*;
    match (kind, arrow) {
        (Postgres, DataType::Date32 | DataType::Date64) => format!("(({expr}) - DATE '1970-01-01')::bigint"),
        (Postgres, DataType::Timestamp(_, Some(_))) => format!("(EXTRACT(EPOCH FROM ({expr})) * 1000000)::bigint"),
        (Postgres, DataType::Timestamp(_, None)) => format!("(EXTRACT(EPOCH FROM ({expr})::timestamp) * 1000000)::bigint"),
        (Postgres, DataType::Time64(_) | DataType::Time32(_)) => format!("(EXTRACT(EPOCH FROM ({expr})) * 1000000)::bigint"),
        (Mysql, DataType::Date32 | DataType::Date64) => format!("CAST(DATEDIFF({expr}, '1970-01-01') AS SIGNED)"),
        (Mysql, DataType::Timestamp(_, _)) => format!("CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {expr}) AS SIGNED)"),
        (Mysql, DataType::Time64(_) | DataType::Time32(_)) => format!("CAST((HOUR({expr}) * 3600 + MINUTE({expr}) * 60 + SECOND({expr})) * 1000000 + MICROSECOND({expr}) AS SIGNED)"),
        (_, a) => match (kind, wire_of(a)) {
            (Postgres, Wire::Int) => format!("({expr})::bigint"),
            (Postgres, Wire::Float) => format!("({expr})::double precision"),
            (Postgres, Wire::Bool) => format!("({expr})::boolean"),
            (Postgres, Wire::Bytes) => format!("({expr})::bytea"),
            (Postgres, Wire::IntList) => format!("({expr})::bigint[]"),
            (Postgres, Wire::FloatList) => format!("({expr})::double precision[]"),
            (Postgres, Wire::BoolList) => format!("({expr})::boolean[]"),
            (Postgres, Wire::TextList) => format!("({expr})::text[]"),
            (Postgres, Wire::Text) => format!("({expr})::text"),
            (Mysql, Wire::Int) => format!("CAST({expr} AS SIGNED)"),
            (Mysql, Wire::Float) => format!("CAST({expr} AS DOUBLE)"),
            (Mysql, Wire::Bool) => format!("CAST({expr} AS SIGNED)"),
            (Mysql, Wire::Bytes) => format!("CAST({expr} AS BINARY)"),
            (Mysql, _) => format!("CAST({expr} AS CHAR)"),
        },
    }
}

/// One column's values as they arrive, before conversion to the target Arrow type.
#[derive(Debug)]
pub enum WireColumn {
    /// Integers.
    Int(Int64Builder),
    /// Doubles.
    Float(Float64Builder),
    /// Text.
    Text(StringBuilder),
    /// Bytes.
    Bytes(BinaryBuilder),
    /// Booleans.
    Bool(BooleanBuilder),
    /// Integer arrays.
    IntList(ListBuilder<Int64Builder>),
    /// Double arrays.
    FloatList(ListBuilder<Float64Builder>),
    /// Text arrays.
    TextList(ListBuilder<StringBuilder>),
    /// Boolean arrays.
    BoolList(ListBuilder<BooleanBuilder>),
}

impl WireColumn {
    /// An empty builder for `wire`.
    pub fn new(wire: Wire) -> Self {
        match wire {
            Wire::Int => WireColumn::Int(Int64Builder::new()),
            Wire::Float => WireColumn::Float(Float64Builder::new()),
            Wire::Text => WireColumn::Text(StringBuilder::new()),
            Wire::Bytes => WireColumn::Bytes(BinaryBuilder::new()),
            Wire::Bool => WireColumn::Bool(BooleanBuilder::new()),
            Wire::IntList => WireColumn::IntList(ListBuilder::new(Int64Builder::new())),
            Wire::FloatList => WireColumn::FloatList(ListBuilder::new(Float64Builder::new())),
            Wire::TextList => WireColumn::TextList(ListBuilder::new(StringBuilder::new())),
            Wire::BoolList => WireColumn::BoolList(ListBuilder::new(BooleanBuilder::new())),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            WireColumn::Int(b) => Arc::new(b.finish()),
            WireColumn::Float(b) => Arc::new(b.finish()),
            WireColumn::Text(b) => Arc::new(b.finish()),
            WireColumn::Bytes(b) => Arc::new(b.finish()),
            WireColumn::Bool(b) => Arc::new(b.finish()),
            WireColumn::IntList(b) => Arc::new(b.finish()),
            WireColumn::FloatList(b) => Arc::new(b.finish()),
            WireColumn::TextList(b) => Arc::new(b.finish()),
            WireColumn::BoolList(b) => Arc::new(b.finish()),
        }
    }

    /// The collected values as an array of `target`.
    pub fn finish_as(&mut self, target: &DataType, rows: usize) -> Result<ArrayRef> {
        let raw = self.finish();
        if raw.data_type() == target {
            return Ok(raw);
        }
        if raw.len() != rows {
            return Ok(new_null_array(target, rows));
        }
        let convert = |e: datafusion::arrow::error::ArrowError| Error::internal(format!("remote value does not fit {target}: {e}"));
        match (raw.data_type(), target) {
            // Days, microseconds: reinterpret the integers in the temporal type.
            (DataType::Int64, DataType::Date32) => cast(&cast(&raw, &DataType::Int32).map_err(convert)?, target).map_err(convert),
            (DataType::Int64, DataType::Timestamp(unit, tz)) => {
                let micros = cast(&raw, &DataType::Timestamp(TimeUnit::Microsecond, tz.clone())).map_err(convert)?;
                if *unit == TimeUnit::Microsecond {
                    Ok(micros)
                } else {
                    cast(&micros, target).map_err(convert)
                }
            }
            (DataType::Int64, DataType::Time64(TimeUnit::Microsecond)) => cast(&raw, target).map_err(convert),
            (DataType::Int64, DataType::Boolean) => {
                let ints = raw.as_any().downcast_ref::<datafusion::arrow::array::Int64Array>().expect("int wire");
                Ok(Arc::new(ints.iter().map(|v| v.map(|v| v != 0)).collect::<datafusion::arrow::array::BooleanArray>()))
            }
            _ => cast(&raw, target).map_err(convert),
        }
    }
}

/// The Arrow type of a list whose items are `item`.
pub fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}
