//! Arrow ↔ Postgres: column types, result rows (text or binary, as the client asks) and
//! parameter values.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldInfo};
use pgwire::api::Type;
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;
use rust_decimal::Decimal;

use crate::error::{Result, ServerError};

/// The Postgres type a column of `data_type` is sent as.
pub(crate) fn pg_type(data_type: &DataType) -> Type {
    match data_type {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 => Type::INT8,
        DataType::UInt64 | DataType::Decimal128(..) | DataType::Decimal256(..) => Type::NUMERIC,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => Type::BYTEA,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Time32(_) | DataType::Time64(_) => Type::TIME,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => match f.data_type() {
            DataType::Float16 | DataType::Float32 => Type::FLOAT4_ARRAY,
            DataType::Float64 => Type::FLOAT8_ARRAY,
            DataType::Int8 | DataType::Int16 => Type::INT2_ARRAY,
            DataType::Int32 => Type::INT4_ARRAY,
            DataType::Int64 => Type::INT8_ARRAY,
            DataType::Boolean => Type::BOOL_ARRAY,
            _ => Type::TEXT_ARRAY,
        },
        _ => Type::TEXT,
    }
}

/// Field descriptions of `schema`, each column in the format `format` gives it.
pub(crate) fn fields(schema: &SchemaRef, format: &Format) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| FieldInfo::new(f.name().clone(), None, None, pg_type(f.data_type()), format.format_for(i)))
        .collect()
}

/// Every row of `batches` encoded for `fields`.
pub(crate) fn rows(fields: &Arc<Vec<FieldInfo>>, batches: &[RecordBatch]) -> Vec<PgWireResult<DataRow>> {
    let mut encoder = DataRowEncoder::new(Arc::clone(fields));
    let mut out = Vec::with_capacity(batches.iter().map(|b| b.num_rows()).sum());
    for batch in batches {
        for row in 0..batch.num_rows() {
            let encoded = batch.columns().iter().zip(fields.iter()).try_for_each(|(column, field)| encode_cell(&mut encoder, column, row, field));
            out.push(encoded.map(|()| encoder.take_row()));
        }
    }
    out
}

fn encode_cell(encoder: &mut DataRowEncoder, column: &ArrayRef, row: usize, field: &FieldInfo) -> PgWireResult<()> {
    if column.is_null(row) {
        return encoder.encode_field(&None::<i32>);
    }
    let value = ScalarValue::try_from_array(column, row).map_err(|e| pgwire::error::PgWireError::ApiError(Box::new(e)))?;
    let ty = field.datatype();
    match value {
        ScalarValue::Boolean(Some(v)) => encoder.encode_field(&v),
        ScalarValue::Int8(Some(v)) => encoder.encode_field(&i16::from(v)),
        ScalarValue::Int16(Some(v)) => encoder.encode_field(&v),
        ScalarValue::UInt8(Some(v)) => encoder.encode_field(&i16::from(v)),
        ScalarValue::Int32(Some(v)) => encoder.encode_field(&v),
        ScalarValue::UInt16(Some(v)) => encoder.encode_field(&i32::from(v)),
        ScalarValue::Int64(Some(v)) => encoder.encode_field(&v),
        ScalarValue::UInt32(Some(v)) => encoder.encode_field(&i64::from(v)),
        ScalarValue::UInt64(Some(v)) => encoder.encode_field(&Decimal::from(v)),
        ScalarValue::Float16(Some(v)) => encoder.encode_field(&f32::from(v)),
        ScalarValue::Float32(Some(v)) => encoder.encode_field(&v),
        ScalarValue::Float64(Some(v)) => encoder.encode_field(&v),
        ScalarValue::Decimal128(Some(v), _, s) => match Decimal::try_from_i128_with_scale(v, u32::from(s.max(0) as u8)) {
            Ok(d) => encoder.encode_field(&d),
            Err(_) => encoder.encode_field(&value_text(column, row)),
        },
        ScalarValue::Date32(Some(days)) => match NaiveDate::from_num_days_from_ce_opt(days + 719_163) {
            Some(d) => encoder.encode_field(&d),
            None => encoder.encode_field(&value_text(column, row)),
        },
        ScalarValue::Binary(Some(b)) | ScalarValue::LargeBinary(Some(b)) | ScalarValue::BinaryView(Some(b)) | ScalarValue::FixedSizeBinary(_, Some(b)) => encoder.encode_field(&b),
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => encoder.encode_field(&s),
        ScalarValue::TimestampSecond(Some(v), ref tz) => timestamp(encoder, v * 1_000_000, tz.is_some(), column, row),
        ScalarValue::TimestampMillisecond(Some(v), ref tz) => timestamp(encoder, v * 1_000, tz.is_some(), column, row),
        ScalarValue::TimestampMicrosecond(Some(v), ref tz) => timestamp(encoder, v, tz.is_some(), column, row),
        ScalarValue::TimestampNanosecond(Some(v), ref tz) => timestamp(encoder, v.div_euclid(1_000), tz.is_some(), column, row),
        ScalarValue::Time64Microsecond(Some(v)) => time(encoder, v * 1_000, column, row),
        ScalarValue::Time64Nanosecond(Some(v)) => time(encoder, v, column, row),
        ref list @ (ScalarValue::List(_) | ScalarValue::LargeList(_) | ScalarValue::FixedSizeList(_)) if *ty != Type::TEXT_ARRAY => {
            encode_list(encoder, list, ty)
        }
        _ if *ty == Type::TEXT_ARRAY => encoder.encode_field(&list_texts(column, row)),
        _ => encoder.encode_field(&value_text(column, row)),
    }
}

fn timestamp(encoder: &mut DataRowEncoder, micros: i64, with_zone: bool, column: &ArrayRef, row: usize) -> PgWireResult<()> {
    match DateTime::<Utc>::from_timestamp_micros(micros) {
        Some(t) if with_zone => encoder.encode_field(&t),
        Some(t) => encoder.encode_field(&t.naive_utc()),
        None => encoder.encode_field(&value_text(column, row)),
    }
}

fn time(encoder: &mut DataRowEncoder, nanos: i64, column: &ArrayRef, row: usize) -> PgWireResult<()> {
    let secs = nanos.div_euclid(1_000_000_000);
    match NaiveTime::from_num_seconds_from_midnight_opt(secs as u32, nanos.rem_euclid(1_000_000_000) as u32) {
        Some(t) => encoder.encode_field(&t),
        None => encoder.encode_field(&value_text(column, row)),
    }
}

fn encode_list(encoder: &mut DataRowEncoder, list: &ScalarValue, ty: &Type) -> PgWireResult<()> {
    let values = match list {
        ScalarValue::List(a) => a.values().clone(),
        ScalarValue::LargeList(a) => a.values().clone(),
        ScalarValue::FixedSizeList(a) => a.values().clone(),
        _ => unreachable!("called with lists only"),
    };
    let items: Vec<ScalarValue> = (0..values.len()).map(|i| ScalarValue::try_from_array(&values, i)).collect::<std::result::Result<_, _>>().map_err(|e| pgwire::error::PgWireError::ApiError(Box::new(e)))?;
    let float = |v: &ScalarValue| v.cast_to(&DataType::Float64).ok().and_then(|v| if let ScalarValue::Float64(f) = v { f } else { None });
    let int = |v: &ScalarValue| v.cast_to(&DataType::Int64).ok().and_then(|v| if let ScalarValue::Int64(i) = v { i } else { None });
    match *ty {
        Type::FLOAT4_ARRAY => encoder.encode_field(&items.iter().map(|v| float(v).map(|f| f as f32)).collect::<Vec<_>>()),
        Type::FLOAT8_ARRAY => encoder.encode_field(&items.iter().map(float).collect::<Vec<_>>()),
        Type::INT2_ARRAY => encoder.encode_field(&items.iter().map(|v| int(v).map(|i| i as i16)).collect::<Vec<_>>()),
        Type::INT4_ARRAY => encoder.encode_field(&items.iter().map(|v| int(v).map(|i| i as i32)).collect::<Vec<_>>()),
        Type::INT8_ARRAY => encoder.encode_field(&items.iter().map(int).collect::<Vec<_>>()),
        Type::BOOL_ARRAY => encoder.encode_field(&items.iter().map(|v| if let ScalarValue::Boolean(b) = v { *b } else { None }).collect::<Vec<_>>()),
        _ => encoder.encode_field(&items.iter().map(|v| (!v.is_null()).then(|| v.to_string())).collect::<Vec<_>>()),
    }
}

fn list_texts(column: &ArrayRef, row: usize) -> Vec<Option<String>> {
    match ScalarValue::try_from_array(column, row) {
        Ok(ScalarValue::List(a)) => {
            let values = a.values();
            (0..values.len()).map(|i| (!values.is_null(i)).then(|| ScalarValue::try_from_array(values, i).map(|v| v.to_string()).unwrap_or_default())).collect()
        }
        _ => vec![Some(value_text(column, row))],
    }
}

/// A cell as DataFusion displays it.
fn value_text(column: &ArrayRef, row: usize) -> String {
    datafusion::arrow::util::display::array_value_to_string(column, row).unwrap_or_default()
}

/// The Postgres type of a parameter whose Arrow type DataFusion inferred.
pub(crate) fn param_type(data_type: Option<&DataType>) -> Type {
    data_type.map(pg_type).unwrap_or(Type::UNKNOWN)
}

/// Decode parameter `index` (raw bytes in `format`) of Postgres type `ty`.
pub(crate) fn decode_param<S: Clone>(portal: &pgwire::api::portal::Portal<S>, index: usize, ty: &Type) -> Result<ScalarValue> {
    let bad = |e: pgwire::error::PgWireError| ServerError::BadRequest(format!("parameter ${}: cannot read it as {ty}: {e}", index + 1));
    Ok(match *ty {
        Type::BOOL => ScalarValue::Boolean(portal.parameter::<bool>(index, ty).map_err(bad)?),
        Type::INT2 => ScalarValue::Int16(portal.parameter::<i16>(index, ty).map_err(bad)?),
        Type::INT4 => ScalarValue::Int32(portal.parameter::<i32>(index, ty).map_err(bad)?),
        Type::INT8 => ScalarValue::Int64(portal.parameter::<i64>(index, ty).map_err(bad)?),
        Type::FLOAT4 => ScalarValue::Float32(portal.parameter::<f32>(index, ty).map_err(bad)?),
        Type::FLOAT8 => ScalarValue::Float64(portal.parameter::<f64>(index, ty).map_err(bad)?),
        Type::NUMERIC => match portal.parameter::<Decimal>(index, ty).map_err(bad)? {
            Some(d) => ScalarValue::Float64(d.to_string().parse().ok()),
            None => ScalarValue::Float64(None),
        },
        Type::DATE => ScalarValue::Date32(portal.parameter::<NaiveDate>(index, ty).map_err(bad)?.map(|d| d.signed_duration_since(unix_epoch()).num_days() as i32)),
        Type::TIMESTAMP => ScalarValue::TimestampMicrosecond(portal.parameter::<NaiveDateTime>(index, ty).map_err(bad)?.map(|t| t.and_utc().timestamp_micros()), None),
        Type::TIMESTAMPTZ => {
            ScalarValue::TimestampMicrosecond(portal.parameter::<DateTime<chrono::FixedOffset>>(index, ty).map_err(bad)?.map(|t| t.timestamp_micros()), Some("UTC".into()))
        }
        Type::FLOAT4_ARRAY => list(portal.parameter::<Vec<Option<f32>>>(index, ty).map_err(bad)?.map(|v| v.into_iter().map(ScalarValue::Float32).collect()), DataType::Float32),
        Type::FLOAT8_ARRAY => list(portal.parameter::<Vec<Option<f64>>>(index, ty).map_err(bad)?.map(|v| v.into_iter().map(ScalarValue::Float64).collect()), DataType::Float64),
        Type::INT8_ARRAY => list(portal.parameter::<Vec<Option<i64>>>(index, ty).map_err(bad)?.map(|v| v.into_iter().map(ScalarValue::Int64).collect()), DataType::Int64),
        Type::BYTEA => ScalarValue::Binary(portal.parameter::<Vec<u8>>(index, ty).map_err(bad)?),
        // Text, varchar, unknown (the client left the type to the server) and anything else:
        // the value's text; DataFusion casts it where the statement needs another type.
        _ => ScalarValue::Utf8(portal.parameter::<String>(index, &Type::TEXT).map_err(bad)?),
    })
}

fn unix_epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()
}

fn list(items: Option<Vec<ScalarValue>>, item_type: DataType) -> ScalarValue {
    match items {
        Some(items) => ScalarValue::List(ScalarValue::new_list_nullable(&items, &item_type)),
        None => ScalarValue::try_from(DataType::List(Arc::new(datafusion::arrow::datatypes::Field::new_list_field(item_type, true)))).unwrap_or(ScalarValue::Null),
    }
}
