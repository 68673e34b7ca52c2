//! Result printing: every output format, streaming batch by batch so a result of any size is
//! never held in memory or in one string.

use std::io::Write;

use anyhow::Result;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;

use crate::cli::OutputFormat;

/// Print every batch of `stream` to `out` in `format`; returns the number of rows.
pub async fn print_stream(
    mut stream: SendableRecordBatchStream,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<u64> {
    let schema = stream.schema();
    let mut printer = Printer::new(format, schema);
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        printer.write(&batch, out)?;
    }
    printer.finish(out)?;
    Ok(rows)
}

/// Print in-memory batches of `schema` (a result received from a server); returns the
/// number of rows.
pub fn print_batches(schema: SchemaRef, batches: &[RecordBatch], format: OutputFormat, out: &mut dyn Write) -> Result<u64> {
    let mut printer = Printer::new(format, schema);
    for batch in batches {
        printer.write(batch, out)?;
    }
    printer.finish(out)?;
    Ok(batches.iter().map(|b| b.num_rows() as u64).sum())
}

/// Print one in-memory batch (used for `source list`).
pub fn print_batch(batch: &RecordBatch, format: OutputFormat, out: &mut dyn Write) -> Result<()> {
    let mut printer = Printer::new(format, batch.schema());
    printer.write(batch, out)?;
    printer.finish(out)
}

enum Printer {
    Table(TablePrinter),
    Csv { started: bool },
    Json { started: bool, any_row: bool },
    Ndjson,
}

/// `batch` with every nested column (lists such as `_retrieved_by`, structs, maps) written
/// out as its display text (`[vector, text]`), which CSV has no other form for.
fn nested_as_text(batch: &RecordBatch) -> Result<RecordBatch> {
    if !batch.schema().fields().iter().any(|f| f.data_type().is_nested()) {
        return Ok(batch.clone());
    }
    let options = FormatOptions::default();
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if field.data_type().is_nested() {
            let formatter = ArrayFormatter::try_new(column.as_ref(), &options)?;
            let text: StringArray = (0..column.len()).map(|i| column.is_valid(i).then(|| formatter.value(i).to_string())).collect();
            fields.push(Field::new(field.name(), DataType::Utf8, field.is_nullable()));
            columns.push(Arc::new(text));
        } else {
            fields.push(field.as_ref().clone());
            columns.push(Arc::clone(column));
        }
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

impl Printer {
    fn new(format: OutputFormat, schema: SchemaRef) -> Self {
        match format {
            OutputFormat::Table => Printer::Table(TablePrinter::new(schema)),
            OutputFormat::Csv => Printer::Csv { started: false },
            OutputFormat::Json => Printer::Json { started: false, any_row: false },
            OutputFormat::Ndjson => Printer::Ndjson,
        }
    }

    fn write(&mut self, batch: &RecordBatch, out: &mut dyn Write) -> Result<()> {
        match self {
            Printer::Table(t) => t.write(batch, out),
            Printer::Csv { started } => {
                let mut writer = arrow::csv::WriterBuilder::new().with_header(!*started).build(&mut *out);
                writer.write(&nested_as_text(batch)?)?;
                *started = true;
                Ok(())
            }
            Printer::Json { started, any_row } => {
                if !*started {
                    out.write_all(b"[")?;
                    *started = true;
                }
                if batch.num_rows() == 0 {
                    return Ok(());
                }
                // Each batch is written as its own array; strip its brackets to splice it in.
                let mut buf = Vec::new();
                {
                    let mut writer = arrow::json::ArrayWriter::new(&mut buf);
                    writer.write(batch)?;
                    writer.finish()?;
                }
                let inner = buf.strip_prefix(b"[").unwrap_or(&buf);
                let inner = inner.strip_suffix(b"]").unwrap_or(inner);
                if *any_row {
                    out.write_all(b",")?;
                }
                out.write_all(inner)?;
                *any_row = true;
                Ok(())
            }
            Printer::Ndjson => {
                let mut writer = arrow::json::LineDelimitedWriter::new(&mut *out);
                writer.write(batch)?;
                writer.finish()?;
                Ok(())
            }
        }
    }

    fn finish(&mut self, out: &mut dyn Write) -> Result<()> {
        match self {
            Printer::Table(t) => t.finish(out),
            Printer::Csv { .. } | Printer::Ndjson => Ok(()),
            Printer::Json { started, .. } => {
                if !*started {
                    out.write_all(b"[")?;
                }
                out.write_all(b"]\n")?;
                Ok(())
            }
        }
    }
}

/// Aligned columns. Widths come from the header and the first batch; later, wider values
/// widen their column from then on (the output stays streaming).
struct TablePrinter {
    schema: SchemaRef,
    widths: Vec<usize>,
    right_align: Vec<bool>,
    header_done: bool,
}

impl TablePrinter {
    fn new(schema: SchemaRef) -> Self {
        let right_align = schema.fields().iter().map(|f| is_numeric(f.data_type())).collect();
        let widths = schema.fields().iter().map(|f| f.name().chars().count()).collect();
        TablePrinter { schema, widths, right_align, header_done: false }
    }

    fn write(&mut self, batch: &RecordBatch, out: &mut dyn Write) -> Result<()> {
        if self.schema.fields().is_empty() {
            return Ok(());
        }
        let options = FormatOptions::default().with_null("NULL");
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        let cells: Vec<Vec<String>> = (0..batch.num_rows())
            .map(|row| formatters.iter().map(|f| sanitize(&f.value(row).to_string())).collect())
            .collect();
        if !self.header_done {
            for row in &cells {
                for (i, cell) in row.iter().enumerate() {
                    self.widths[i] = self.widths[i].max(cell.chars().count());
                }
            }
            self.write_header(out)?;
        }
        for row in cells {
            let line: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, cell)| {
                    let w = self.widths[i].max(cell.chars().count());
                    if self.right_align[i] { format!("{cell:>w$}") } else { format!("{cell:<w$}") }
                })
                .collect();
            writeln!(out, " {} ", line.join(" | ").trim_end())?;
        }
        Ok(())
    }

    fn write_header(&mut self, out: &mut dyn Write) -> Result<()> {
        let names: Vec<String> = self
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| format!("{:<w$}", f.name(), w = self.widths[i]))
            .collect();
        writeln!(out, " {} ", names.join(" | ").trim_end())?;
        let rule: Vec<String> = self.widths.iter().map(|w| "-".repeat(*w)).collect();
        writeln!(out, "-{}-", rule.join("-+-"))?;
        self.header_done = true;
        Ok(())
    }

    fn finish(&mut self, out: &mut dyn Write) -> Result<()> {
        if !self.header_done && !self.schema.fields().is_empty() {
            self.write_header(out)?;
        }
        Ok(())
    }
}

fn is_numeric(t: &DataType) -> bool {
    t.is_numeric()
}

/// Keep one row on one line.
fn sanitize(s: &str) -> String {
    if s.contains(['\n', '\r', '\t']) { s.replace(['\n', '\r', '\t'], " ") } else { s.to_string() }
}

/// What a publish did, in plain words: `published 1 event at offset 7`, `published 3 events
/// at offsets 7 to 9`.
pub fn published(count: i64, first: i64) -> String {
    match count {
        0 => "published no events".to_string(),
        1 => format!("published 1 event at offset {first}"),
        n => format!("published {n} events at offsets {first} to {}", first + n - 1),
    }
}
