//! Column types of mutable tables: their SQL names, Arrow types, and how values are stored.
//!
//! Both catalog backends store every value in one of four storage classes (64-bit integer,
//! double, text, bytes), so one codec serves SQLite and Postgres and every type round-trips
//! exactly: booleans as 0/1, dates as days and timestamps as microseconds since the epoch,
//! decimals as canonical text (exact at any precision), vectors as little-endian f32 bytes.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Date32Array, Decimal128Array, FixedSizeListArray, Float32Array,
    Float64Array, Int16Array, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Field, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, TimeUnit,
    TimestampMicrosecondType,
};
use datafusion::sql::sqlparser::ast::{self, ExactNumberInfo};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The SQL types a mutable table column may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// BOOLEAN
    Boolean,
    /// SMALLINT (16 bits)
    SmallInt,
    /// INT / INTEGER (32 bits)
    Int,
    /// BIGINT (64 bits)
    BigInt,
    /// REAL (32-bit float)
    Real,
    /// DOUBLE [PRECISION] (64-bit float)
    Double,
    /// DECIMAL(p, s) / NUMERIC(p, s), p ≤ 38
    Decimal {
        /// Total digits.
        precision: u8,
        /// Digits after the point.
        scale: i8,
    },
    /// TEXT / VARCHAR
    Text,
    /// BYTEA / BLOB
    Bytea,
    /// DATE
    Date,
    /// TIMESTAMP (without time zone), microseconds
    Timestamp,
    /// TIMESTAMPTZ, microseconds, UTC
    TimestampTz,
    /// JSON, kept as text
    Json,
    /// VECTOR(n) / FLOAT4[n]: fixed-size float vector
    Vector {
        /// Dimensions.
        dims: u32,
    },
}

pub use crate::catalog::StorageClass;

/// One stored value, ready to bind.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    /// NULL of a storage class.
    Null(StorageClass),
    /// An integer.
    Int(i64),
    /// A float.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl ColumnType {
    /// The type named by SQL `ty`, or a clear error listing the supported ones.
    pub fn from_sql(ty: &ast::DataType, column: &str) -> Result<Self> {
        use ast::DataType as D;
        let t = match ty {
            D::Boolean | D::Bool => ColumnType::Boolean,
            D::SmallInt(_) | D::Int2(_) => ColumnType::SmallInt,
            D::Int(_) | D::Integer(_) | D::Int4(_) => ColumnType::Int,
            D::BigInt(_) | D::Int8(_) => ColumnType::BigInt,
            D::Real | D::Float4 => ColumnType::Real,
            D::Double(_) | D::DoublePrecision | D::Float8 | D::Float64 => ColumnType::Double,
            D::Decimal(info) | D::Numeric(info) | D::Dec(info) => {
                let (precision, scale) = match info {
                    ExactNumberInfo::PrecisionAndScale(p, s) => (*p, *s),
                    ExactNumberInfo::Precision(p) => (*p, 0),
                    ExactNumberInfo::None => (38, 10),
                };
                if !(1..=38).contains(&precision) || scale < 0 || scale as u64 > precision {
                    return Err(column_error(column, format!("DECIMAL({precision}, {scale}) is out of range; precision 1–38, scale 0–precision")));
                }
                ColumnType::Decimal { precision: precision as u8, scale: scale as i8 }
            }
            D::Text | D::Varchar(_) | D::CharVarying(_) | D::Char(_) | D::Character(_) | D::String(_) | D::Nvarchar(_) => ColumnType::Text,
            D::Bytea | D::Blob(_) | D::Varbinary(_) | D::Binary(_) => ColumnType::Bytea,
            D::Date => ColumnType::Date,
            D::Timestamp(_, tz) => match tz {
                ast::TimezoneInfo::Tz | ast::TimezoneInfo::WithTimeZone => ColumnType::TimestampTz,
                _ => ColumnType::Timestamp,
            },
            D::JSON | D::JSONB => ColumnType::Json,
            D::Array(ast::ArrayElemTypeDef::SquareBracket(inner, Some(n))) if is_float4(inner) => ColumnType::Vector { dims: *n as u32 },
            D::Custom(name, args) if name.to_string().eq_ignore_ascii_case("vector") => match args.first().and_then(|a| a.parse::<u32>().ok()) {
                Some(dims) if dims > 0 => ColumnType::Vector { dims },
                _ => return Err(column_error(column, "VECTOR needs its dimensions, e.g. VECTOR(384)".to_string())),
            },
            D::Custom(name, _) if name.to_string().eq_ignore_ascii_case("timestamptz") => ColumnType::TimestampTz,
            other => {
                return Err(column_error(
                    column,
                    format!(
                        "type {other} is not supported; use BOOLEAN, SMALLINT, INT, BIGINT, REAL, DOUBLE, DECIMAL(p,s), TEXT, \
                         VARCHAR, BYTEA, DATE, TIMESTAMP, TIMESTAMPTZ, JSON or VECTOR(n)"
                    ),
                ))
            }
        };
        Ok(t)
    }

    /// The Arrow type of the column in queries.
    pub fn arrow_type(&self) -> DataType {
        match self {
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::SmallInt => DataType::Int16,
            ColumnType::Int => DataType::Int32,
            ColumnType::BigInt => DataType::Int64,
            ColumnType::Real => DataType::Float32,
            ColumnType::Double => DataType::Float64,
            ColumnType::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            ColumnType::Text | ColumnType::Json => DataType::Utf8,
            ColumnType::Bytea => DataType::Binary,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ColumnType::Vector { dims } => {
                DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), *dims as i32)
            }
        }
    }

    /// How the backend stores it.
    pub fn storage(&self) -> StorageClass {
        match self {
            ColumnType::Boolean
            | ColumnType::SmallInt
            | ColumnType::Int
            | ColumnType::BigInt
            | ColumnType::Date
            | ColumnType::Timestamp
            | ColumnType::TimestampTz => StorageClass::Integer,
            ColumnType::Real | ColumnType::Double => StorageClass::Real,
            ColumnType::Decimal { .. } | ColumnType::Text | ColumnType::Json => StorageClass::Text,
            ColumnType::Bytea | ColumnType::Vector { .. } => StorageClass::Blob,
        }
    }

    /// Whether stored values order the same way as the column's values, so range
    /// predicates can run in the backend.
    pub fn orders_in_storage(&self) -> bool {
        matches!(self.storage(), StorageClass::Integer | StorageClass::Real)
    }

    /// The SQL spelling, for `DESCRIBE`-like output and messages.
    pub fn sql_name(&self) -> String {
        match self {
            ColumnType::Boolean => "BOOLEAN".into(),
            ColumnType::SmallInt => "SMALLINT".into(),
            ColumnType::Int => "INT".into(),
            ColumnType::BigInt => "BIGINT".into(),
            ColumnType::Real => "REAL".into(),
            ColumnType::Double => "DOUBLE".into(),
            ColumnType::Decimal { precision, scale } => format!("DECIMAL({precision},{scale})"),
            ColumnType::Text => "TEXT".into(),
            ColumnType::Bytea => "BYTEA".into(),
            ColumnType::Date => "DATE".into(),
            ColumnType::Timestamp => "TIMESTAMP".into(),
            ColumnType::TimestampTz => "TIMESTAMPTZ".into(),
            ColumnType::Json => "JSON".into(),
            ColumnType::Vector { dims } => format!("VECTOR({dims})"),
        }
    }

    /// Row `row` of `array` (already of [`Self::arrow_type`]) as a stored value.
    pub fn encode(&self, array: &ArrayRef, row: usize) -> std::result::Result<Stored, String> {
        if array.is_null(row) {
            return Ok(Stored::Null(self.storage()));
        }
        Ok(match self {
            ColumnType::Boolean => Stored::Int(array.as_boolean().value(row) as i64),
            ColumnType::SmallInt => Stored::Int(array.as_primitive::<Int16Type>().value(row) as i64),
            ColumnType::Int => Stored::Int(array.as_primitive::<Int32Type>().value(row) as i64),
            ColumnType::BigInt => Stored::Int(array.as_primitive::<Int64Type>().value(row)),
            ColumnType::Date => Stored::Int(array.as_primitive::<Date32Type>().value(row) as i64),
            ColumnType::Timestamp | ColumnType::TimestampTz => Stored::Int(array.as_primitive::<TimestampMicrosecondType>().value(row)),
            ColumnType::Real => real(array.as_primitive::<Float32Type>().value(row) as f64)?,
            ColumnType::Double => real(array.as_primitive::<Float64Type>().value(row))?,
            ColumnType::Decimal { scale, .. } => Stored::Text(decimal_text(array.as_primitive::<Decimal128Type>().value(row), *scale)),
            ColumnType::Text | ColumnType::Json => Stored::Text(array.as_string::<i32>().value(row).to_string()),
            ColumnType::Bytea => Stored::Blob(array.as_binary::<i32>().value(row).to_vec()),
            ColumnType::Vector { .. } => {
                let list = array.as_fixed_size_list().value(row);
                let floats = list.as_primitive::<Float32Type>();
                if floats.null_count() > 0 {
                    return Err("a vector may not contain NULL elements".into());
                }
                Stored::Blob(floats.values().iter().flat_map(|f| f.to_le_bytes()).collect())
            }
        })
    }

    /// Build the column's Arrow array from stored values.
    pub fn decode(&self, values: Vec<Stored>) -> std::result::Result<ArrayRef, String> {
        let int = |v: &Stored| match v {
            Stored::Int(i) => Ok(Some(*i)),
            Stored::Null(_) => Ok(None),
            other => Err(format!("expected an integer, found {other:?}")),
        };
        let float = |v: &Stored| match v {
            Stored::Real(f) => Ok(Some(*f)),
            Stored::Int(i) => Ok(Some(*i as f64)),
            Stored::Null(_) => Ok(None),
            other => Err(format!("expected a float, found {other:?}")),
        };
        let text = |v: Stored| match v {
            Stored::Text(s) => Ok(Some(s)),
            Stored::Null(_) => Ok(None),
            other => Err(format!("expected text, found {other:?}")),
        };
        let blob = |v: Stored| match v {
            Stored::Blob(b) => Ok(Some(b)),
            Stored::Null(_) => Ok(None),
            other => Err(format!("expected bytes, found {other:?}")),
        };
        let ints = || values.iter().map(int).collect::<std::result::Result<Vec<_>, _>>();
        let array: ArrayRef = match self {
            ColumnType::Boolean => Arc::new(BooleanArray::from(ints()?.into_iter().map(|v| v.map(|i| i != 0)).collect::<Vec<_>>())),
            ColumnType::SmallInt => Arc::new(Int16Array::from(ints()?.into_iter().map(|v| v.map(|i| i as i16)).collect::<Vec<_>>())),
            ColumnType::Int => Arc::new(Int32Array::from(ints()?.into_iter().map(|v| v.map(|i| i as i32)).collect::<Vec<_>>())),
            ColumnType::BigInt => Arc::new(Int64Array::from(ints()?)),
            ColumnType::Date => Arc::new(Date32Array::from(ints()?.into_iter().map(|v| v.map(|i| i as i32)).collect::<Vec<_>>())),
            ColumnType::Timestamp => Arc::new(TimestampMicrosecondArray::from(ints()?)),
            ColumnType::TimestampTz => Arc::new(TimestampMicrosecondArray::from(ints()?).with_timezone("UTC")),
            ColumnType::Real => Arc::new(Float32Array::from(
                values.iter().map(|v| float(v).map(|o| o.map(|f| f as f32))).collect::<std::result::Result<Vec<_>, _>>()?,
            )),
            ColumnType::Double => Arc::new(Float64Array::from(values.iter().map(float).collect::<std::result::Result<Vec<_>, _>>()?)),
            ColumnType::Decimal { precision, scale } => {
                let parsed = values
                    .into_iter()
                    .map(|v| text(v).and_then(|t| t.map(|s| parse_decimal(&s, *scale)).transpose()))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                Arc::new(Decimal128Array::from(parsed).with_precision_and_scale(*precision, *scale).map_err(|e| e.to_string())?)
            }
            ColumnType::Text | ColumnType::Json => {
                Arc::new(StringArray::from(values.into_iter().map(text).collect::<std::result::Result<Vec<_>, _>>()?))
            }
            ColumnType::Bytea => {
                let bytes = values.into_iter().map(blob).collect::<std::result::Result<Vec<_>, _>>()?;
                Arc::new(BinaryArray::from(bytes.iter().map(|b| b.as_deref()).collect::<Vec<_>>()))
            }
            ColumnType::Vector { dims } => {
                let dims = *dims as usize;
                let mut flat = Vec::with_capacity(values.len() * dims);
                let mut valid = Vec::with_capacity(values.len());
                for v in values {
                    match blob(v)? {
                        Some(b) if b.len() == dims * 4 => {
                            flat.extend(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
                            valid.push(true);
                        }
                        Some(b) => return Err(format!("a stored vector has {} bytes, expected {}", b.len(), dims * 4)),
                        None => {
                            flat.extend(std::iter::repeat_n(0.0, dims));
                            valid.push(false);
                        }
                    }
                }
                let item = Arc::new(Field::new("item", DataType::Float32, true));
                let nulls = valid.iter().any(|v| !v).then(|| valid.into());
                Arc::new(FixedSizeListArray::try_new(item, dims as i32, Arc::new(Float32Array::from(flat)), nulls).map_err(|e| e.to_string())?)
            }
        };
        Ok(array)
    }
}

fn is_float4(ty: &ast::DataType) -> bool {
    matches!(ty, ast::DataType::Real | ast::DataType::Float4 | ast::DataType::Float(_))
}

fn real(v: f64) -> std::result::Result<Stored, String> {
    // SQLite turns NaN into NULL; refusing it keeps both backends exact and alike.
    if v.is_nan() {
        Err("NaN cannot be stored in a mutable table".into())
    } else {
        Ok(Stored::Real(v))
    }
}

fn column_error(column: &str, message: String) -> Error {
    Error::invalid(column, format!("column '{column}': {message}"))
}

/// `value × 10^-scale` written exactly (`-12.30` for 1230 at scale 2).
pub fn decimal_text(value: i128, scale: i8) -> String {
    let negative = value < 0;
    let digits = value.unsigned_abs().to_string();
    let scale = scale.max(0) as usize;
    let text = if scale == 0 {
        digits
    } else {
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        format!("{int}.{frac}")
    };
    if negative {
        format!("-{text}")
    } else {
        text
    }
}

/// The inverse of [`decimal_text`].
pub fn parse_decimal(text: &str, scale: i8) -> std::result::Result<i128, String> {
    let scale = scale.max(0) as usize;
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if frac.len() > scale {
        return Err(format!("stored decimal '{text}' has more than {scale} fractional digits"));
    }
    let digits = format!("{int}{frac:0<scale$}");
    let magnitude: i128 = digits.parse().map_err(|_| format!("stored decimal '{text}' is not a number"))?;
    Ok(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_text_round_trips() {
        for (v, s) in [(0i128, 2i8), (5, 2), (-5, 2), (1230, 2), (-99999, 0), (i128::MAX / 10, 10), (-(10i128.pow(37)), 5)] {
            let t = decimal_text(v, s);
            assert_eq!(parse_decimal(&t, s).unwrap(), v, "{t}");
        }
        assert_eq!(decimal_text(-5, 2), "-0.05");
        assert_eq!(decimal_text(1230, 2), "12.30");
    }
}
