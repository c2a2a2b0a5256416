//! Pair selection and the length penalty (`dpov2-core`).

use dpov2_core::{Method, Options};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::arrays::slice;
use crate::errors::Result;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(select_pairs, m)?)?;
    m.add_function(wrap_pyfunction!(penalized_rewards, m)?)?;
    m.add("METHODS", Method::NAMES.to_vec())?;
    Ok(())
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
) -> Result<PairArrays<'py>> {
    let options = Options {
        method: method.parse::<Method>()?,
        length_penalty,
        seed,
        first_key,
        keep_ties,
    };
    let scores = slice(&scores, "scores")?;
    let offsets = slice(&offsets, "offsets")?;
    let lengths = lengths.as_ref().map(|l| slice(l, "lengths")).transpose()?;
    let selection = py.detach(|| {
        with_threads(num_threads, || {
            dpov2_core::select_pairs(scores, lengths, offsets, &options)
        })
    })??;
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
) -> Result<Bound<'py, PyArray1<f64>>> {
    let scores = slice(&scores, "scores")?;
    let lengths = slice(&lengths, "lengths")?;
    let rewards = py.detach(|| dpov2_core::penalized_rewards(scores, lengths, length_penalty))?;
    Ok(rewards.into_pyarray(py))
}
