//! Every Rust error type turned into its Python exception, in one place; the functions of the
//! other files only use `?`.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

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

impl From<dpov2_json::SplitError> for Error {
    fn from(err: dpov2_json::SplitError) -> Self {
        Self(match err {
            dpov2_json::SplitError::Io(io) => PyErr::from(io),
            syntax => PyValueError::new_err(syntax.to_string()),
        })
    }
}

/// A value the writers refuse: `dpov2.errors.InputError` with its row and field (the column
/// path) set, and the problem as the message.
impl From<dpov2_json::WriteError> for Error {
    fn from(err: dpov2_json::WriteError) -> Self {
        Self(Python::attach(|py| {
            let input_error = || -> PyResult<PyErr> {
                let class = py.import("dpov2.errors")?.getattr("InputError")?;
                let kwargs = pyo3::types::PyDict::new(py);
                kwargs.set_item("row", err.row)?;
                kwargs.set_item("field", &err.column)?;
                let value = class.call((err.problem.to_string(),), Some(&kwargs))?;
                Ok(PyErr::from_value(value))
            };
            input_error().unwrap_or_else(|failed| failed)
        }))
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
