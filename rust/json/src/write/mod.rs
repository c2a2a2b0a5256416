//! The one JSON writer: Arrow record batches to JSON Lines or LMFlow JSON.
//!
//! Each row becomes one object, keys in column order (`{"prompt": "...", "margin": 0.5}`,
//! with a space after `:` and `,` as Python's `json.dumps` writes). Strings are escaped per
//! RFC 8259 and written as UTF-8; floats in the shortest form that reads back exactly;
//! integers exactly; nulls as `null`; lists, structs and dictionary-encoded values as what
//! they hold. A value that cannot be written faithfully (a non-finite float, a string that is
//! not UTF-8) is an error naming its row and column, never `null` or an approximation, and
//! [`check_rows`] applies the same rules for formats that are not JSON.

mod encode;
mod error;
mod quick;

use std::ops::Range;

use arrow_array::RecordBatch;
use rayon::prelude::*;

use crate::copy::extend_in_parallel;

use encode::{Encode, Fault, Object, Step, Unsupported};
pub use error::{WriteError, WriteProblem};

/// How rows are laid out around their objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// JSON Lines: each object followed by `\n`.
    Lines,
    /// Elements of a JSON array: objects separated by `,\n`. `continued` when elements were
    /// written before this batch, so that its first object needs a separator too.
    Elements { continued: bool },
}

/// Rows per piece when a batch is written in parallel: large enough that a piece costs far
/// more than handing it to a thread and concatenating it.
const PIECE_ROWS: usize = 4096;

/// Appends every row of `batch` to `out` as a JSON object, framed by `layout`. Large batches
/// are written in pieces on rayon's current pool, concatenated in order.
///
/// On error `out` is as it was, and the error names the first row at fault (rows counted from
/// the batch's first) and the column path of the value.
pub fn write_rows(
    batch: &RecordBatch,
    out: &mut Vec<u8>,
    layout: Layout,
) -> Result<(), WriteError> {
    let mark = out.len();
    let result = run(batch, layout, Unsupported::Refuse, out);
    if result.is_err() {
        out.truncate(mark);
    }
    result
}

/// Checks every value of `batch` against the rules JSON writing follows: no non-finite
/// floats, no strings that are not UTF-8. For writers of other formats (Parquet), so that all
/// formats refuse the same values; columns of types JSON cannot hold are not looked into.
pub fn check_rows(batch: &RecordBatch) -> Result<(), WriteError> {
    // Most batches are proved fine far faster than they are encoded; the others are encoded,
    // which finds what is wrong and where.
    if quick::surely_writable(batch) {
        return Ok(());
    }
    run(batch, Layout::Lines, Unsupported::Skip, &mut Vec::new())
}

/// Writes (or, with `Unsupported::Skip`, only encodes and drops) the rows of `batch`.
fn run(
    batch: &RecordBatch,
    layout: Layout,
    unsupported: Unsupported,
    out: &mut Vec<u8>,
) -> Result<(), WriteError> {
    let schema = batch.schema();
    let rows = Object::new(schema.fields(), batch.columns(), unsupported)
        .map_err(|fault| located(fault, None))?;
    let keep = unsupported == Unsupported::Refuse;
    let pieces = pieces(batch.num_rows());
    if pieces.len() == 1 {
        return write_range(&rows, 0..batch.num_rows(), layout, keep, out);
    }
    let written: Vec<Result<Vec<u8>, WriteError>> = pieces
        .into_par_iter()
        .map(|range| {
            let mut piece = Vec::new();
            write_range(&rows, range, layout, keep, &mut piece).map(|()| piece)
        })
        .collect();
    let written = written.into_iter().collect::<Result<Vec<_>, _>>()?;
    let parts: Vec<&[u8]> = written.iter().map(|piece| &piece[..]).collect();
    extend_in_parallel(out, &parts);
    Ok(())
}

/// Row ranges that split `rows` for the current pool: one range when that has one thread or
/// the batch is small.
fn pieces(rows: usize) -> Vec<Range<usize>> {
    let threads = rayon::current_num_threads();
    let count = (rows / PIECE_ROWS).min(4 * threads);
    if threads == 1 || count < 2 {
        return std::iter::once(0..rows).collect();
    }
    (0..count)
        .map(|k| k * rows / count..(k + 1) * rows / count)
        .collect()
}

fn write_range(
    rows: &Object<'_>,
    range: Range<usize>,
    layout: Layout,
    keep: bool,
    out: &mut Vec<u8>,
) -> Result<(), WriteError> {
    for i in range {
        if let Layout::Elements { continued } = layout {
            if i > 0 || continued {
                out.extend_from_slice(b",\n");
            }
        }
        rows.encode(i, out)
            .map_err(|fault| located(fault, Some(i)))?;
        if layout == Layout::Lines {
            out.push(b'\n');
        }
        if !keep {
            out.clear();
        }
    }
    Ok(())
}

/// The error for `fault`, its path (innermost step first) read outwards into `prompt[1].role`.
fn located(fault: Fault, row: Option<usize>) -> WriteError {
    let mut column = String::new();
    for step in fault.path.iter().rev() {
        match step {
            Step::Field(name) if column.is_empty() => column.push_str(name),
            Step::Field(name) => {
                column.push('.');
                column.push_str(name);
            }
            Step::Index(k) => column.push_str(&format!("[{k}]")),
            Step::AnyIndex => column.push_str("[]"),
        }
    }
    WriteError {
        row,
        column,
        problem: fault.problem,
    }
}

/// A JSON dataset written batch by batch: JSON Lines, or LMFlow's
/// `{"type": ..., "instances": [...]}` whose header, separators and closing brackets span the
/// batches. Rows in errors count from the first row of the dataset.
#[derive(Debug, Clone)]
pub struct JsonWriter {
    /// The LMFlow dataset type, or `None` for JSON Lines.
    dataset_type: Option<String>,
    rows: usize,
    started: bool,
}

impl JsonWriter {
    /// JSON Lines: one object per line.
    pub fn json_lines() -> Self {
        Self::new(None)
    }

    /// LMFlow JSON: `{"type": "<dataset_type>", "instances": [` then the objects, separated
    /// by `,\n`, then `]}`.
    pub fn lmflow(dataset_type: &str) -> Self {
        Self::new(Some(dataset_type.to_owned()))
    }

    fn new(dataset_type: Option<String>) -> Self {
        Self {
            dataset_type,
            rows: 0,
            started: false,
        }
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Appends `batch`'s rows (after the header, before the first batch). On error neither
    /// `out` nor the writer has changed.
    pub fn write(&mut self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), WriteError> {
        let mark = out.len();
        let started = self.started;
        self.start(out);
        let layout = match self.dataset_type {
            None => Layout::Lines,
            Some(_) => Layout::Elements {
                continued: self.rows > 0,
            },
        };
        if let Err(err) = write_rows(batch, out, layout) {
            out.truncate(mark);
            self.started = started;
            return Err(err.offset_rows(self.rows));
        }
        self.rows += batch.num_rows();
        Ok(())
    }

    /// Appends what completes the dataset (for LMFlow, the header if no batch came, and the
    /// closing brackets).
    pub fn finish(mut self, out: &mut Vec<u8>) {
        self.start(out);
        if self.dataset_type.is_some() {
            out.extend_from_slice(b"\n]}\n");
        }
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        if let Some(dataset_type) = &self.dataset_type {
            out.extend_from_slice(b"{\"type\": \"");
            // A Rust string is UTF-8: the escaper cannot refuse it.
            let _ = crate::text::escape_into(dataset_type.as_bytes(), out);
            out.extend_from_slice(b"\", \"instances\": [\n");
        }
    }
}
