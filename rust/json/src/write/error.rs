//! What the writer refuses, and where: the row and the column path of the value.

use std::fmt;

use arrow_schema::DataType;

/// A value (or column) that is not written, with where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteError {
    /// The row (0-based, counted from the first row written), or `None` for a whole column
    /// (an unsupported type).
    pub row: Option<usize>,
    /// The column and the path to the value inside it: `prompt[1].content`; `[]` stands for
    /// any list element where no row is known.
    pub column: String,
    pub problem: WriteProblem,
}

impl WriteError {
    /// The same error with its row counted `rows` further on: for batches after the first.
    pub fn offset_rows(mut self, rows: usize) -> Self {
        self.row = self.row.map(|row| row + rows);
        self
    }
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(row) = self.row {
            write!(f, "row {row}, ")?;
        }
        write!(f, "column '{}': {}", self.column, self.problem)
    }
}

impl std::error::Error for WriteError {}

/// Why a value is not written.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteProblem {
    /// NaN or an infinity: JSON has no such numbers, and every format refuses them alike.
    NonFinite(f64),
    /// A string that is not UTF-8 (Arrow and Parquet do not check); `byte` is the index of the
    /// first bad byte in the string.
    InvalidUtf8 { byte: usize },
    /// An Arrow type with no JSON form here (binary, decimal, temporal, map, union, ...).
    Unsupported(DataType),
    /// Offsets or dictionary keys that point outside their data: a malformed array.
    Malformed(String),
}

impl fmt::Display for WriteProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NonFinite(value) => write!(
                f,
                "{value} is not a finite number; non-finite numbers are not written"
            ),
            Self::InvalidUtf8 { byte } => write!(
                f,
                "the string is not valid UTF-8 (from its byte {byte}); strings must be UTF-8"
            ),
            Self::Unsupported(kind) => write!(
                f,
                "Arrow type {kind} has no JSON form; expected strings, integers, floats, \
                 booleans, nulls, lists, structs or dictionary-encoded values"
            ),
            Self::Malformed(what) => write!(f, "malformed Arrow array: {what}"),
        }
    }
}
