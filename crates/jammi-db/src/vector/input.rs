//! Validation of user data on import and append: everything is checked before anything is
//! written, and every error names the column, the row id or the value at fault.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float32Type, Schema, SchemaRef};

use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

use crate::error::{Error, Result};

/// Names that the vector table's own columns use.
const RESERVED: &[&str] = &["id", "embedding", "_distance", "_rank", "_key"];

/// Validated rows in the table's canonical layout.
#[derive(Debug)]
pub struct PreparedRows {
    /// `id`, payload columns, `embedding` (FixedSizeList<Float32, dims>).
    pub batches: Vec<RecordBatch>,
    /// Row-major vectors, as given (not normalised).
    pub vectors: Vec<f32>,
    /// Dimensions.
    pub dims: usize,
    /// Rows.
    pub rows: usize,
    /// Canonical schema.
    pub schema: SchemaRef,
}

fn bad(table: &str, message: impl Into<String>) -> Error {
    Error::InvalidVectors { table: table.to_string(), message: message.into() }
}

/// Check and convert `batches` read from the user's file.
///
/// `expected_dims` and `expected_schema` are given on append: the new rows must fit the table.
pub fn prepare(
    table: &str,
    batches: &[RecordBatch],
    id_column: &str,
    vector_column: &str,
    expected_dims: Option<usize>,
    existing_ids: &HashSet<IdValue>,
) -> Result<PreparedRows> {
    let schema = batches.first().map(|b| b.schema()).ok_or_else(|| bad(table, "the input has no rows"))?;
    let mut preparer = Preparer::new(table, &schema, id_column, vector_column, expected_dims, existing_ids)?;
    let mut vectors = Vec::new();
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        out.extend(preparer.push(batch, &mut vectors)?);
    }
    let (dims, schema) = preparer.finish()?;
    Ok(PreparedRows { rows: vectors.len() / dims, batches: out, vectors, dims, schema })
}

/// Checks and converts the user's rows batch by batch, so an import can stream its input:
/// the columns once, then each batch's ids (unique across every batch), dimensions and
/// values.
pub struct Preparer<'a> {
    table: String,
    id_column: String,
    vector_column: String,
    id_type: DataType,
    payload: Vec<Arc<Field>>,
    dims: Option<usize>,
    seen: SeenIds,
    existing: &'a HashSet<IdValue>,
    out_schema: Option<SchemaRef>,
}

impl<'a> Preparer<'a> {
    /// Check the input's columns (`schema`). `expected_dims` is given on append.
    pub fn new(table: &str, schema: &SchemaRef, id_column: &str, vector_column: &str, expected_dims: Option<usize>, existing: &'a HashSet<IdValue>) -> Result<Self> {
        let columns = || schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ");
        let id_field = schema
            .field_with_name(id_column)
            .map_err(|_| bad(table, format!("id column '{id_column}' does not exist; columns are: {}", columns())))?;
        let id_type = match id_field.data_type() {
            t if t.is_integer() => DataType::Int64,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
            other => {
                return Err(bad(table, format!("id column '{id_column}' has type {other}; expected an integer or text type")))
            }
        };
        let vector_field = schema
            .field_with_name(vector_column)
            .map_err(|_| bad(table, format!("vector column '{vector_column}' does not exist; columns are: {}", columns())))?;
        let element_ok = |t: &DataType| matches!(t, DataType::Float32 | DataType::Float64 | DataType::Float16);
        match vector_field.data_type() {
            DataType::FixedSizeList(f, _) | DataType::List(f) | DataType::LargeList(f) if element_ok(f.data_type()) => {}
            other => {
                return Err(bad(
                    table,
                    format!("vector column '{vector_column}' has type {other}; expected FixedSizeList<Float32> or List<Float32>"),
                ))
            }
        }
        let payload: Vec<Arc<Field>> = schema
            .fields()
            .iter()
            .filter(|f| f.name() != id_column && f.name() != vector_column)
            .cloned()
            .collect();
        if let Some(clash) = payload.iter().find(|f| RESERVED.contains(&f.name().as_str())) {
            return Err(bad(table, format!("payload column '{}' clashes with a vector-table column; rename it", clash.name())));
        }
        Ok(Preparer {
            table: table.to_string(),
            id_column: id_column.to_string(),
            vector_column: vector_column.to_string(),
            id_type,
            payload,
            dims: expected_dims,
            seen: SeenIds::default(),
            existing,
            out_schema: None,
        })
    }

    /// The table the rows are for (for messages).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The dimensions, once a row has shown them (or as expected on append).
    pub fn dims(&self) -> Option<usize> {
        self.dims
    }

    /// The table's layout of the rows, once a row has been prepared.
    pub fn schema(&self) -> Option<&SchemaRef> {
        self.out_schema.as_ref()
    }

    /// `batch` in the table's layout (`None` when it has no rows), its vectors appended to
    /// `vectors`, row after row.
    pub fn push(&mut self, batch: &RecordBatch, vectors: &mut Vec<f32>) -> Result<Option<RecordBatch>> {
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        let table = self.table.as_str();
        let (id_column, vector_column) = (self.id_column.as_str(), self.vector_column.as_str());
        let schema = batch.schema();
        let index_of = |name: &str| schema.index_of(name).map_err(|_| bad(table, format!("column '{name}' is missing from part of the input")));
        let ids = cast(batch.column(index_of(id_column)?), &self.id_type).map_err(|e| bad(table, format!("id column '{id_column}': {e}")))?;
        let id_at = |row: usize| -> IdValue { IdValue::from_array(&ids, row) };
        if ids.null_count() > 0 {
            return Err(bad(table, format!("id column '{id_column}' has NULL values; every row needs an id")));
        }
        if let Some(row) = self.seen.first_repeat(&ids, self.existing) {
            return Err(bad(table, format!("id {} appears more than once; ids must be unique", id_at(row))));
        }

        let column = batch.column(index_of(vector_column)?);
        let (lists_values, lengths) = list_parts(column, table, vector_column)?;
        for row in 0..batch.num_rows() {
            if column.is_null(row) {
                return Err(bad(table, format!("row with id {} has a NULL vector", id_at(row))));
            }
            let (start, len) = lengths[row];
            let expected = *self.dims.get_or_insert(len);
            if len != expected {
                return Err(bad(table, format!("row with id {} has {len} dimensions; expected {expected}", id_at(row))));
            }
            if len == 0 {
                return Err(bad(table, format!("row with id {} has an empty vector", id_at(row))));
            }
            let values = &lists_values.values()[start..start + len];
            if let Some(pos) = values.iter().position(|v| !v.is_finite()) {
                let what = if values[pos].is_nan() { "NaN" } else { "an infinite value" };
                return Err(bad(table, format!("row with id {} has {what} at dimension {pos}", id_at(row))));
            }
            vectors.extend_from_slice(values);
        }
        let dims = self.dims.unwrap_or(0);
        // The embedding column shares the input's values (every row has `dims` values, one
        // after another), rather than copying them a second time.
        let first = lengths.first().map_or(0, |(start, _)| *start);
        let embedding = FixedSizeListArray::try_new(
            Arc::new(Field::new("item", DataType::Float32, false)),
            dims as i32,
            Arc::new(lists_values.slice(first, batch.num_rows() * dims)),
            None,
        )
        .map_err(|e| bad(table, e.to_string()))?;
        let mut arrays: Vec<ArrayRef> = vec![ids];
        for f in &self.payload {
            arrays.push(Arc::clone(batch.column(index_of(f.name())?)));
        }
        arrays.push(Arc::new(embedding));
        let out_schema = self
            .out_schema
            .get_or_insert_with(|| {
                let mut fields = vec![Arc::new(Field::new("id", self.id_type.clone(), false))];
                fields.extend(self.payload.iter().cloned());
                fields.push(Arc::new(Field::new("embedding", arrays.last().map_or(DataType::Null, |a| a.data_type().clone()), false)));
                Arc::new(Schema::new(fields))
            })
            .clone();
        RecordBatch::try_new(out_schema, arrays).map(Some).map_err(|e| bad(table, e.to_string()))
    }

    /// The dimensions and the table's layout; an error when no row came.
    pub fn finish(self) -> Result<(usize, SchemaRef)> {
        match (self.dims, self.out_schema) {
            (Some(dims), Some(schema)) => Ok((dims, schema)),
            _ => Err(bad(&self.table, "the input has no rows")),
        }
    }
}

/// The first batch of `input` with rows, prepared, and its vectors: an input that ends
/// before any row is an error ("the input has no rows").
pub async fn first_rows(preparer: &mut Preparer<'_>, input: &mut SendableRecordBatchStream) -> Result<(RecordBatch, Vec<f32>)> {
    let mut vectors = Vec::new();
    while let Some(batch) = input.next().await {
        if let Some(rows) = preparer.push(&batch?, &mut vectors)? {
            return Ok((rows, vectors));
        }
    }
    Err(bad(&preparer.table, "the input has no rows"))
}

/// Batches already in hand as an input stream (rows a query produced, or embedded ones).
pub fn stream_of(table: &str, batches: Vec<RecordBatch>) -> Result<SendableRecordBatchStream> {
    let schema = batches.first().map(|b| b.schema()).ok_or_else(|| bad(table, "the input has no rows"))?;
    Ok(Box::pin(RecordBatchStreamAdapter::new(schema, futures::stream::iter(batches.into_iter().map(Ok)))))
}

/// The float values of a list column (cast to f32) and each row's (start, len).
fn list_parts(column: &ArrayRef, table: &str, name: &str) -> Result<(Float32Array, Vec<(usize, usize)>)> {
    let err = |e: &dyn std::fmt::Display| bad(table, format!("vector column '{name}': {e}"));
    let (values, spans): (ArrayRef, Vec<(usize, usize)>) = match column.data_type() {
        DataType::FixedSizeList(_, size) => {
            let list = column.as_fixed_size_list();
            let size = *size as usize;
            let base = list.offset() * size;
            (Arc::clone(list.values()), (0..list.len()).map(|i| (base + i * size, size)).collect())
        }
        DataType::List(_) => {
            let list = column.as_list::<i32>();
            let offsets = list.value_offsets();
            (Arc::clone(list.values()), (0..list.len()).map(|i| (offsets[i] as usize, (offsets[i + 1] - offsets[i]) as usize)).collect())
        }
        DataType::LargeList(_) => {
            let list = column.as_list::<i64>();
            let offsets = list.value_offsets();
            (Arc::clone(list.values()), (0..list.len()).map(|i| (offsets[i] as usize, (offsets[i + 1] - offsets[i]) as usize)).collect())
        }
        other => return Err(err(&format!("unsupported type {other}"))),
    };
    let values = cast(&values, &DataType::Float32).map_err(|e| err(&e))?;
    let values = values.as_primitive::<Float32Type>().clone();
    if values.null_count() > 0 {
        return Err(bad(table, format!("vector column '{name}' has NULL elements inside vectors")));
    }
    Ok((values, spans))
}

/// Every vector of column `column` (query files): one `Vec<f32>` per row.
pub fn vectors_of(batches: &[RecordBatch], column: &str, location: &str) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::new();
    for batch in batches {
        let array = batch.column_by_name(column).ok_or_else(|| {
            let names: Vec<_> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
            bad(location, format!("query column '{column}' does not exist; columns are: {}", names.join(", ")))
        })?;
        let (values, spans) = list_parts(array, location, column)?;
        for (row, (start, len)) in spans.into_iter().enumerate() {
            if array.is_null(row) {
                return Err(bad(location, format!("query row {} has a NULL vector", out.len())));
            }
            out.push(values.values()[start..start + len].to_vec());
        }
    }
    Ok(out)
}

/// The ids an import has seen, to refuse one that comes again (in a later segment too). Kept
/// as plain integers or strings: this set is what grows with the input, so it is as small as
/// the ids allow (an integer id costs ~9 bytes, not an `IdValue`'s 33).
#[derive(Default)]
struct SeenIds {
    ints: HashSet<i64>,
    texts: HashSet<Box<str>>,
}

impl SeenIds {
    /// The first row of `ids` (Int64 or Utf8) that is in `existing` or was seen before;
    /// records every id up to it.
    fn first_repeat(&mut self, ids: &ArrayRef, existing: &HashSet<IdValue>) -> Option<usize> {
        if let Some(ints) = ids.as_any().downcast_ref::<Int64Array>() {
            ints.values().iter().position(|&id| !self.ints.insert(id) || (!existing.is_empty() && existing.contains(&IdValue::Int(id))))
        } else if let Some(texts) = ids.as_any().downcast_ref::<StringArray>() {
            texts.iter().position(|id| {
                let id = id.unwrap_or_default();
                !self.texts.insert(id.into()) || (!existing.is_empty() && existing.contains(&IdValue::Text(id.to_string())))
            })
        } else {
            None
        }
    }
}

/// An id value, for duplicate detection and messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdValue {
    /// Integer id.
    Int(i64),
    /// Text id.
    Text(String),
}

impl IdValue {
    /// The id at `row` of an Int64 or Utf8 array.
    pub fn from_array(array: &ArrayRef, row: usize) -> IdValue {
        if let Some(ints) = array.as_any().downcast_ref::<Int64Array>() {
            IdValue::Int(ints.value(row))
        } else if let Some(text) = array.as_any().downcast_ref::<StringArray>() {
            IdValue::Text(text.value(row).to_string())
        } else {
            IdValue::Text(format!("#{row}"))
        }
    }
}

impl std::fmt::Display for IdValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdValue::Int(i) => write!(f, "{i}"),
            IdValue::Text(s) => write!(f, "'{s}'"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::ListArray;
    use datafusion::arrow::datatypes::Float64Type;

    /// Every row's vector as the prepared embedding column holds it.
    fn embedding_values(rows: &PreparedRows) -> Vec<f32> {
        let mut out = Vec::new();
        for batch in &rows.batches {
            let list = batch.column_by_name("embedding").unwrap().as_fixed_size_list();
            for i in 0..list.len() {
                out.extend_from_slice(list.value(i).as_primitive::<Float32Type>().values());
            }
        }
        out
    }

    fn batch(vectors: ArrayRef, ids: Vec<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("v", vectors.data_type().clone(), true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(ids)), vectors]).unwrap()
    }

    #[test]
    fn the_embedding_column_holds_each_rows_vector_whatever_the_input_layout() {
        // A fixed-size list that is a slice of a longer one (its values start past the first row).
        let values = Float32Array::from(vec![9.0, 9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let fixed = FixedSizeListArray::try_new(Arc::new(Field::new("item", DataType::Float32, true)), 2, Arc::new(values), None).unwrap().slice(1, 3);
        let prepared = prepare("t", &[batch(Arc::new(fixed), vec![1, 2, 3])], "id", "v", None, &HashSet::new()).unwrap();
        assert_eq!(prepared.vectors, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(embedding_values(&prepared), prepared.vectors);

        // Lists of doubles, sliced, over two batches.
        let doubles = ListArray::from_iter_primitive::<Float64Type, _, _>(vec![
            Some(vec![Some(7.0), Some(7.0)]),
            Some(vec![Some(0.5), Some(1.5)]),
            Some(vec![Some(-1.0), Some(2.0)]),
        ]);
        let first = batch(Arc::new(doubles.slice(1, 1)), vec![10]);
        let second = batch(Arc::new(doubles.slice(2, 1)), vec![11]);
        let prepared = prepare("t", &[first, second], "id", "v", None, &HashSet::new()).unwrap();
        assert_eq!(prepared.vectors, vec![0.5, 1.5, -1.0, 2.0]);
        assert_eq!(embedding_values(&prepared), prepared.vectors);
    }
}
