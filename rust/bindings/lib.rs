//! `dpov2._core`: the Python face of `dpov2-core`.
//!
//! Every function here only converts: NumPy arrays in (read as slices, no copy), the GIL
//! released around the core call, `PairError` out as `ValueError` with the core's message,
//! results handed to NumPy without a copy. Shape and dtype problems surface as `TypeError`
//! from the argument conversion; callers normally go through `dpov2.pairing`, which makes
//! contiguous arrays of the right dtype first.

use dpov2_core::{Method, Options, PairError};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

fn value_error(err: PairError) -> PyErr {
    PyValueError::new_err(err.to_string())
}

fn slice<'a, T: numpy::Element>(
    array: &'a PyReadonlyArray1<'_, T>,
    name: &str,
) -> PyResult<&'a [T]> {
    array
        .as_slice()
        .map_err(|_| PyValueError::new_err(format!("{name} must be a contiguous 1-D array")))
}

/// Runs `work` on a pool of `num_threads` threads, or on rayon's global pool
/// (`RAYON_NUM_THREADS`, default: one per core) when `None`.
fn with_threads<T: Send>(
    num_threads: Option<usize>,
    work: impl FnOnce() -> T + Send,
) -> PyResult<T> {
    match num_threads {
        None => Ok(work()),
        Some(0) => Err(PyValueError::new_err("num_threads must be at least 1")),
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map(|pool| pool.install(work))
            .map_err(|e| PyValueError::new_err(format!("cannot start {n} threads: {e}"))),
    }
}

type PairArrays<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<u8>>,
);

/// Selects one pair per prompt; returns (chosen, rejected, status), one entry per prompt.
#[pyfunction]
#[pyo3(signature = (
    scores, offsets, *, method, lengths=None, length_penalty=0.0, seed, first_key=0,
    keep_ties=false, num_threads=None,
))]
#[allow(clippy::too_many_arguments)]
fn select_pairs<'py>(
    py: Python<'py>,
    scores: PyReadonlyArray1<'py, f64>,
    offsets: PyReadonlyArray1<'py, i64>,
    method: &str,
    lengths: Option<PyReadonlyArray1<'py, f64>>,
    length_penalty: f64,
    seed: u64,
    first_key: u64,
    keep_ties: bool,
    num_threads: Option<usize>,
) -> PyResult<PairArrays<'py>> {
    let options = Options {
        method: method.parse::<Method>().map_err(value_error)?,
        length_penalty,
        seed,
        first_key,
        keep_ties,
    };
    let scores = slice(&scores, "scores")?;
    let offsets = slice(&offsets, "offsets")?;
    let lengths = lengths.as_ref().map(|l| slice(l, "lengths")).transpose()?;
    let selection = py
        .detach(|| {
            with_threads(num_threads, || {
                dpov2_core::select_pairs(scores, lengths, offsets, &options)
            })
        })?
        .map_err(value_error)?;
    Ok((
        selection.chosen.into_pyarray(py),
        selection.rejected.into_pyarray(py),
        selection.status.into_pyarray(py),
    ))
}

/// `scores - length_penalty * lengths`, element-wise, after validating both arrays.
#[pyfunction]
fn penalized_rewards<'py>(
    py: Python<'py>,
    scores: PyReadonlyArray1<'py, f64>,
    lengths: PyReadonlyArray1<'py, f64>,
    length_penalty: f64,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let scores = slice(&scores, "scores")?;
    let lengths = slice(&lengths, "lengths")?;
    let rewards = py
        .detach(|| dpov2_core::penalized_rewards(scores, lengths, length_penalty))
        .map_err(value_error)?;
    Ok(rewards.into_pyarray(py))
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(select_pairs, m)?)?;
    m.add_function(wrap_pyfunction!(penalized_rewards, m)?)?;
    m.add("METHODS", Method::NAMES.to_vec())?;
    m.add_class::<InstanceSplitter>()?;
    m.add_function(wrap_pyfunction!(quote_json_strings, m)?)?;
    m.add_function(wrap_pyfunction!(parse_scored_lines, m)?)?;
    Ok(())
}

/// Streams the `instances` of an LMFlow JSON file as NDJSON chunks (`dpov2_core::InstanceSplitter`
/// over the open file); reading and splitting run with the GIL released.
#[pyclass(module = "dpov2._core")]
struct InstanceSplitter {
    inner: dpov2_core::InstanceSplitter<std::fs::File>,
}

#[pymethods]
impl InstanceSplitter {
    #[new]
    fn new(path: std::path::PathBuf) -> PyResult<Self> {
        let file = std::fs::File::open(path)?;
        Ok(Self {
            inner: dpov2_core::InstanceSplitter::new(file),
        })
    }

    /// `(lines, count)` for the next instances (at most `max_instances`, and no more once
    /// `max_bytes` are reached), or `None`.
    fn next_chunk<'py>(
        &mut self,
        py: Python<'py>,
        max_instances: usize,
        max_bytes: usize,
    ) -> PyResult<Option<(Bound<'py, PyArray1<u8>>, usize)>> {
        if max_instances == 0 {
            return Err(PyValueError::new_err("max_instances must be at least 1"));
        }
        let inner = &mut self.inner;
        let chunk = py
            .detach(|| inner.next_chunk(max_instances, max_bytes))
            .map_err(|err| match err {
                dpov2_core::SplitError::Io(io) => PyErr::from(io),
                syntax => PyValueError::new_err(syntax.to_string()),
            })?;
        Ok(chunk.map(|c| (c.lines.into_pyarray(py), c.count)))
    }

    /// The dataset's `type` member, once read.
    #[getter]
    fn dataset_type(&self) -> Option<String> {
        self.inner.dataset_type().map(String::from)
    }

    /// Bytes of the file consumed so far.
    #[getter]
    fn bytes_read(&self) -> u64 {
        self.inner.bytes_read()
    }
}

type StringArrays<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<u8>>);

/// Quoted, escaped JSON string literals for Arrow-style string data: returns the new
/// `(offsets, data)`, offsets starting at 0.
#[pyfunction]
fn quote_json_strings<'py>(
    py: Python<'py>,
    offsets: PyReadonlyArray1<'py, i64>,
    data: PyReadonlyArray1<'py, u8>,
) -> PyResult<StringArrays<'py>> {
    let offsets = slice(&offsets, "offsets")?;
    let data = slice(&data, "data")?;
    let (offsets, data) = py
        .detach(|| dpov2_core::quote_strings(offsets, data))
        .map_err(|err| PyValueError::new_err(err.to_string()))?;
    Ok((offsets.into_pyarray(py), data.into_pyarray(py)))
}

type ScoredArrays<'py> = (
    Bound<'py, PyArray1<i32>>,
    Bound<'py, PyArray1<u8>>,
    Bound<'py, PyArray1<i32>>,
    Bound<'py, PyArray1<i32>>,
    Bound<'py, PyArray1<u8>>,
    Bound<'py, PyArray1<f64>>,
);

/// Scored JSON lines straight to columns: `(prompt_offsets, prompt_data, output_offsets,
/// text_offsets, text_data, scores)`, or `None` when a line is outside the simple case.
#[pyfunction]
fn parse_scored_lines<'py>(
    py: Python<'py>,
    chunk: PyReadonlyArray1<'py, u8>,
    parts: usize,
) -> PyResult<Option<ScoredArrays<'py>>> {
    let chunk = slice(&chunk, "chunk")?;
    let columns = py.detach(|| dpov2_core::parse_scored_lines(chunk, parts));
    Ok(columns.map(|c| {
        (
            c.prompt_offsets.into_pyarray(py),
            c.prompt_data.into_pyarray(py),
            c.output_offsets.into_pyarray(py),
            c.text_offsets.into_pyarray(py),
            c.text_data.into_pyarray(py),
            c.scores.into_pyarray(py),
        )
    }))
}
