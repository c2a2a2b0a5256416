//! Reading Parquet files (`dpov2-parquet`), and the UTF-8 check of Arrow strings it shares with
//! the other columnar sources.

use std::sync::{Mutex, PoisonError};

use pyo3::prelude::*;

use crate::arrow::{export_batch, import_batch, ArrowBatch};
use crate::errors::{Result, WithFile};
use crate::threads;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ParquetReader>()?;
    m.add_function(wrap_pyfunction!(not_utf8, m)?)?;
    Ok(())
}

/// `(row, field)` of each row's first value that is not UTF-8.
type NotUtf8 = Vec<(u64, String)>;

fn located(bad: Vec<dpov2_parquet::NotUtf8>) -> NotUtf8 {
    bad.into_iter().map(|b| (b.row as u64, b.place)).collect()
}

/// A Parquet file's columns as Arrow record batches (`dpov2_parquet::Reader`), each value
/// that is not UTF-8 a null and a located problem; decoding runs with the GIL released, with
/// each column's pages read and decompressed ahead in threads of their own unless the thread
/// setting (`num_threads`, else `DPOV2_NUM_THREADS`) is 1.
#[pyclass(module = "dpov2._core")]
struct ParquetReader {
    /// Locked only to be shareable between threads, as a Python object must be.
    inner: Mutex<dpov2_parquet::Reader>,
}

#[pymethods]
impl ParquetReader {
    #[new]
    #[pyo3(signature = (path, *, batch_rows, columns=None, num_threads=None))]
    fn new(
        path: String,
        batch_rows: usize,
        columns: Option<Vec<String>>,
        num_threads: Option<usize>,
    ) -> Result<Self> {
        let ahead = threads::resolve(num_threads)? > 1;
        let file = std::fs::File::open(&path).with_file(&path)?;
        let inner =
            dpov2_parquet::Reader::open(file, columns.as_deref(), batch_rows.max(1), ahead)?;
        Ok(Self {
            inner: Mutex::new(inner),
        })
    }

    /// `(batch, problems)` for the next batch, or `None` at the end.
    fn next_batch<'py>(
        &mut self,
        py: Python<'py>,
    ) -> Result<Option<(Bound<'py, ArrowBatch>, NotUtf8)>> {
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        let Some((batch, bad)) = py.detach(|| inner.next_batch())? else {
            return Ok(None);
        };
        Ok(Some((export_batch(py, batch)?, located(bad))))
    }
}

/// `(row, field)` of the first string of each row of `batch` that is not UTF-8, in row order:
/// the check the Parquet reader makes, for Arrow data read otherwise (Arrow IPC files).
#[pyfunction]
fn not_utf8(py: Python<'_>, batch: &Bound<'_, PyAny>) -> Result<NotUtf8> {
    let batch = import_batch(batch)?;
    let fields = batch.schema().fields().clone();
    let (_, bad) = py.detach(|| dpov2_parquet::columns_as_strings(batch.columns(), &fields))?;
    Ok(located(bad))
}
