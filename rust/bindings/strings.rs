//! Arrow string columns for pairing (`dpov2_json::char_lengths`, `dpov2_json::gather`): in
//! through the C Data Interface, read in place; the work on the thread pool with the GIL
//! released.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use crate::arrays::slice;
use crate::arrow::{export_batch, import_array, ArrowBatch};
use crate::errors::Result;
use crate::threads;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(char_lengths, m)?)?;
    m.add_function(wrap_pyfunction!(gather_strings, m)?)?;
    Ok(())
}

/// The length in Unicode code points of every value of `texts` (`int64`), as
/// `pyarrow.compute.utf8_length` counts them, a null counting its slot's bytes (normally 0).
#[pyfunction]
#[pyo3(signature = (texts, *, num_threads=None))]
fn char_lengths<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyAny>,
    num_threads: Option<usize>,
) -> Result<Bound<'py, PyArray1<i64>>> {
    let array = import_array(texts)?;
    let lengths = py.detach(|| {
        threads::install(num_threads, || match array.data_type() {
            DataType::Utf8 => Ok(dpov2_json::char_lengths(array.as_string::<i32>())),
            DataType::LargeUtf8 => Ok(dpov2_json::char_lengths(array.as_string::<i64>())),
            other => Err(not_strings("texts", other)),
        })
    })??;
    Ok(lengths.into_pyarray(py))
}

/// The values of `texts` at `indices` (what `texts.take(indices)` gives), as a one-column
/// record batch (column `values`), so that it crosses to Python as a batch does.
#[pyfunction]
#[pyo3(signature = (texts, indices, *, num_threads=None))]
fn gather_strings<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyAny>,
    indices: PyReadonlyArray1<'py, i64>,
    num_threads: Option<usize>,
) -> Result<Bound<'py, ArrowBatch>> {
    let array = import_array(texts)?;
    let indices = slice(&indices, "indices")?;
    let gathered: ArrayRef = py.detach(|| {
        threads::install(num_threads, || match array.data_type() {
            DataType::Utf8 => {
                Ok(Arc::new(dpov2_json::gather(array.as_string::<i32>(), indices)?) as ArrayRef)
            }
            DataType::LargeUtf8 => {
                Ok(Arc::new(dpov2_json::gather(array.as_string::<i64>(), indices)?) as ArrayRef)
            }
            other => Err(not_strings("texts", other)),
        })
    })??;
    let field = Field::new(
        "values",
        gathered.data_type().clone(),
        gathered.null_count() > 0,
    );
    let batch = RecordBatch::try_new(Arc::new(Schema::new(vec![field])), vec![gathered])?;
    Ok(export_batch(py, batch)?)
}

fn not_strings(name: &str, kind: &DataType) -> crate::errors::Error {
    PyTypeError::new_err(format!(
        "{name} must be an Arrow string or large_string array, got type {kind}"
    ))
    .into()
}
