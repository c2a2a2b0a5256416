//! Every Rust error type turned into its Python exception, in one place; the functions of the
//! other files only use `?`.

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

create_exception!(
    _core,
    ParquetError,
    PyValueError,
    "A Parquet file that arrow-rs cannot read (a damaged footer, page or column chunk), with its message; `dpov2.formats.parquet` words it for the user."
);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ParquetError", m.py().get_type::<ParquetError>())?;
    Ok(())
}

pub struct Error(PyErr);

impl From<Error> for PyErr {
    fn from(err: Error) -> Self {
        err.0
    }
}

impl From<dpov2_core::PairError> for Error {
    fn from(err: dpov2_core::PairError) -> Self {
        Self(PyValueError::new_err(err.to_string()))
    }
}

/// A value the writers refuse: `dpov2.errors.InputError` with its row and field (the column
/// path) set, and the problem as the message.
impl From<dpov2_json::WriteError> for Error {
    fn from(err: dpov2_json::WriteError) -> Self {
        let row = err.row.map(|row| row as u64);
        Self(input_error(
            err.problem.to_string(),
            None,
            row,
            None,
            Some(err.column),
        ))
    }
}

/// Indices that do not fit the string array gathered from (a bug of the caller's, not of a
/// user's file).
impl From<dpov2_json::GatherError> for Error {
    fn from(err: dpov2_json::GatherError) -> Self {
        Self(PyValueError::new_err(err.to_string()))
    }
}

/// Arrow data that arrow-rs refuses: a malformed export or mismatched columns.
impl From<arrow_schema::ArrowError> for Error {
    fn from(err: arrow_schema::ArrowError) -> Self {
        Self(PyValueError::new_err(err.to_string()))
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Self(PyErr::from(err))
    }
}

impl From<PyErr> for Error {
    fn from(err: PyErr) -> Self {
        Self(err)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// `dpov2.errors.InputError(message, file=..., row=..., byte=..., field=...)`: a user's file at
/// fault, with the location as attributes (the CLI prints it on one line, exit code 2).
pub fn input_error(
    message: String,
    file: Option<&str>,
    row: Option<u64>,
    byte: Option<u64>,
    field: Option<String>,
) -> PyErr {
    Python::attach(|py| {
        let raised = (|| -> PyResult<PyErr> {
            let class = py.import("dpov2.errors")?.getattr("InputError")?;
            let kwargs = PyDict::new(py);
            kwargs.set_item("file", file)?;
            kwargs.set_item("row", row)?;
            kwargs.set_item("byte", byte)?;
            kwargs.set_item("field", field)?;
            Ok(PyErr::from_value(class.call((message,), Some(&kwargs))?))
        })();
        raised.unwrap_or_else(|err| err)
    })
}

/// A file that is not Parquet, or damaged; or a column it lacks (the caller asks only for
/// columns the footer lists).
impl From<dpov2_parquet::Error> for Error {
    fn from(err: dpov2_parquet::Error) -> Self {
        Self(ParquetError::new_err(err.to_string()))
    }
}

/// Errors that need the name of the file they concern to become an `InputError`.
pub trait WithFile<T> {
    fn with_file(self, file: &str) -> Result<T>;
}

impl<T> WithFile<T> for std::result::Result<T, dpov2_json::ReadError> {
    fn with_file(self, file: &str) -> Result<T> {
        self.map_err(|err| {
            Error(match err {
                dpov2_json::ReadError::Io(io) => {
                    input_error(format!("cannot read: {io}"), Some(file), None, None, None)
                }
                dpov2_json::ReadError::Structure { byte, row, message } => {
                    input_error(message, Some(file), row, Some(byte), None)
                }
            })
        })
    }
}

impl<T> WithFile<T> for std::io::Result<T> {
    fn with_file(self, file: &str) -> Result<T> {
        self.map_err(|io| {
            Error(input_error(
                format!("cannot open: {io}"),
                Some(file),
                None,
                None,
                None,
            ))
        })
    }
}
