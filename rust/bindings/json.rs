//! Reading and writing JSON datasets (`dpov2-json`).

use numpy::{IntoPyArray, PyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::arrow::{export_batch, import_batch, ArrowBatch};
use crate::errors::{Result, WithFile};
use crate::threads;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<JsonReader>()?;
    m.add_class::<JsonEncoder>()?;
    m.add_function(wrap_pyfunction!(check_batches, m)?)?;
    Ok(())
}

/// `(row, byte, field, message)` of each problem row of a batch.
type Problems = Vec<(u64, u64, Option<String>, String)>;

/// A batch for Python: `(columns, first_row, bytes consumed, problems)`.
type ReadBatch<'py> = (Bound<'py, ArrowBatch>, u64, u64, Problems);

/// The one JSON reader (`dpov2_json::Reader`) over an open file: batches as Arrow record
/// batches, problem rows as data; reading and parsing run with the GIL released, on the
/// thread pool `num_threads` names.
#[pyclass(module = "dpov2._core")]
struct JsonReader {
    file: String,
    num_threads: Option<usize>,
    inner: dpov2_json::Reader<std::fs::File>,
}

#[pymethods]
impl JsonReader {
    #[new]
    #[pyo3(signature = (
        path, *, framing, schema, max_rows, max_bytes, extras=Vec::new(), num_threads=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        path: String,
        framing: &str,
        schema: &str,
        max_rows: usize,
        max_bytes: usize,
        extras: Vec<(String, String)>,
        num_threads: Option<usize>,
    ) -> Result<Self> {
        let framing = match framing {
            "lines" => dpov2_json::Framing::Lines,
            "lmflow" => dpov2_json::Framing::Lmflow,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown framing '{other}'; expected lines or lmflow"
                ))
                .into())
            }
        };
        let schema = match schema {
            "scored" => dpov2_json::Schema::Scored,
            "paired" => dpov2_json::Schema::Paired,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown schema '{other}'; expected scored or paired"
                ))
                .into())
            }
        };
        let extras = extras
            .into_iter()
            .map(|(name, kind)| {
                let kind = match kind.as_str() {
                    "float64" => dpov2_json::ExtraKind::Float64,
                    "int64" => dpov2_json::ExtraKind::Int64,
                    "string" => dpov2_json::ExtraKind::Utf8,
                    other => {
                        return Err(PyValueError::new_err(format!(
                            "extra member '{name}': unknown type '{other}'; expected float64, \
                             int64 or string"
                        )))
                    }
                };
                Ok(dpov2_json::Extra { name, kind })
            })
            .collect::<PyResult<Vec<_>>>()?;
        if max_rows == 0 || max_bytes == 0 {
            return Err(PyValueError::new_err("max_rows and max_bytes must be at least 1").into());
        }
        threads::resolve(num_threads)?;
        let file = std::fs::File::open(&path).with_file(&path)?;
        let options = dpov2_json::ReadOptions {
            framing,
            schema,
            max_rows,
            max_bytes,
        };
        Ok(Self {
            num_threads,
            inner: dpov2_json::Reader::new(file, options)
                .with_extras(extras)
                .map_err(PyValueError::new_err)?,
            file: path,
        })
    }

    /// `(batch, first_row, bytes consumed, problems)` for the next batch, or `None` at the end.
    fn next_batch<'py>(&mut self, py: Python<'py>) -> Result<Option<ReadBatch<'py>>> {
        let (inner, num_threads) = (&mut self.inner, self.num_threads);
        let batch = py
            .detach(|| threads::install(num_threads, || inner.next_batch()))?
            .with_file(&self.file)?;
        let Some(batch) = batch else {
            return Ok(None);
        };
        let problems = batch
            .problems
            .into_iter()
            .map(|p| (p.row, p.byte, p.field, p.message))
            .collect();
        Ok(Some((
            export_batch(py, batch.columns)?,
            batch.first_row,
            batch.bytes,
            problems,
        )))
    }

    /// LMFlow's `type` member, once read (`None` for JSON Lines).
    #[getter]
    fn dataset_type(&self) -> Option<String> {
        self.inner.dataset_type().map(String::from)
    }
}

/// Writes a JSON dataset batch by batch (`dpov2_json::JsonWriter`): JSON Lines or LMFlow
/// JSON, whose separators and row numbers run across batches. Encoding runs with the GIL
/// released; the bytes come back as a NumPy `uint8` array owning the encoder's buffer (no
/// copy: `bytes` would copy every batch's output once more, on the writing thread).
#[pyclass(module = "dpov2._core")]
struct JsonEncoder {
    /// `None` once finished.
    writer: Option<dpov2_json::JsonWriter>,
    num_threads: Option<usize>,
}

#[pymethods]
impl JsonEncoder {
    /// JSON Lines: one object per line, encoded on the pool `num_threads` names.
    #[staticmethod]
    #[pyo3(signature = (*, num_threads=None))]
    fn json_lines(num_threads: Option<usize>) -> PyResult<Self> {
        threads::resolve(num_threads)?;
        Ok(Self {
            writer: Some(dpov2_json::JsonWriter::json_lines()),
            num_threads,
        })
    }

    /// LMFlow JSON: `{"type": dataset_type, "instances": [...]}`, encoded on the pool
    /// `num_threads` names.
    #[staticmethod]
    #[pyo3(signature = (dataset_type, *, num_threads=None))]
    fn lmflow(dataset_type: &str, num_threads: Option<usize>) -> PyResult<Self> {
        threads::resolve(num_threads)?;
        Ok(Self {
            writer: Some(dpov2_json::JsonWriter::lmflow(dataset_type)),
            num_threads,
        })
    }

    /// The JSON of every row of `batches` (objects with `__arrow_c_array__`, such as a
    /// table's `to_batches()`), after what came before. All or nothing: on error (an
    /// `InputError` naming the row and column) the encoder is as it was.
    fn encode<'py>(
        &mut self,
        py: Python<'py>,
        batches: Vec<Bound<'py, PyAny>>,
    ) -> Result<Bound<'py, PyArray1<u8>>> {
        let batches = batches
            .iter()
            .map(import_batch)
            .collect::<Result<Vec<_>>>()?;
        let mut writer = self.writer()?.clone();
        let out = py.detach(|| {
            threads::install(self.num_threads, || {
                let mut out = Vec::new();
                for batch in &batches {
                    writer.write(batch, &mut out)?;
                }
                Ok::<_, dpov2_json::WriteError>(out)
            })
        })??;
        self.writer = Some(writer);
        Ok(out.into_pyarray(py))
    }

    /// What completes the dataset (LMFlow's closing brackets); the encoder is done after.
    fn finish<'py>(&mut self, py: Python<'py>) -> Result<Bound<'py, PyBytes>> {
        let writer = self.writer()?.clone();
        self.writer = None;
        let mut out = Vec::new();
        writer.finish(&mut out);
        Ok(PyBytes::new(py, &out))
    }
}

impl JsonEncoder {
    fn writer(&self) -> Result<&dpov2_json::JsonWriter> {
        self.writer
            .as_ref()
            .ok_or_else(|| PyValueError::new_err("the JSON encoder is finished").into())
    }
}

/// Refuses what JSON writing refuses (non-finite floats, strings that are not UTF-8) in
/// `batches`, for writers of other formats; rows in the error count from `first_row`.
#[pyfunction]
fn check_batches(py: Python<'_>, batches: Vec<Bound<'_, PyAny>>, first_row: usize) -> Result<()> {
    let batches = batches
        .iter()
        .map(import_batch)
        .collect::<Result<Vec<_>>>()?;
    py.detach(|| {
        let mut row = first_row;
        for batch in &batches {
            dpov2_json::check_rows(batch).map_err(|err| err.offset_rows(row))?;
            row += batch.num_rows();
        }
        Ok::<_, dpov2_json::WriteError>(())
    })?;
    Ok(())
}
