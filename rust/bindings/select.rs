//! Pair selection and the length penalty (`dpov2-core`).

use dpov2_core::{Inputs, Lengths, MarginFrom, Method, Options, PromptRng, Status, TieOrder};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::arrays::slice;
use crate::errors::Result;
use crate::threads;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(select_pairs, m)?)?;
    m.add_function(wrap_pyfunction!(penalized_rewards, m)?)?;
    m.add_function(wrap_pyfunction!(prompt_rng_below, m)?)?;
    m.add("METHODS", Method::NAMES.to_vec())?;
    m.add("TIE_ORDERS", TieOrder::NAMES.to_vec())?;
    m.add("STATUSES", Status::NAMES.to_vec())?;
    // The thread setting belongs to every entry point; selection is the first to need it.
    threads::register(m)?;
    Ok(())
}

/// Lengths as NumPy holds them: `float64`, `int64` or `int32`, read without conversion.
#[derive(FromPyObject)]
enum LengthArray<'py> {
    F64(PyReadonlyArray1<'py, f64>),
    I64(PyReadonlyArray1<'py, i64>),
    I32(PyReadonlyArray1<'py, i32>),
}

impl LengthArray<'_> {
    fn as_lengths(&self) -> PyResult<Lengths<'_>> {
        Ok(match self {
            Self::F64(a) => Lengths::F64(slice(a, "lengths")?),
            Self::I64(a) => Lengths::I64(slice(a, "lengths")?),
            Self::I32(a) => Lengths::I32(slice(a, "lengths")?),
        })
    }
}

type PairArrays<'py> = (
    Bound<'py, PyArray1<u8>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
);

/// Selects up to `pairs_per_prompt` pairs per prompt; returns (status per prompt,
/// pair_offsets, chosen, rejected).
#[pyfunction]
#[pyo3(signature = (
    scores, offsets, *, method, lengths=None, length_penalty=0.0, seed, first_key=0,
    keep_ties=false, tie_order="dpov2", pairs_per_prompt=1, min_margin=None, margin_scale=1.0,
    margin_from="raw", max_length_ratio=None, max_length_diff=None, duplicate_of=None,
    keys=None, num_threads=None,
))]
#[allow(clippy::too_many_arguments)]
fn select_pairs<'py>(
    py: Python<'py>,
    scores: PyReadonlyArray1<'py, f64>,
    offsets: PyReadonlyArray1<'py, i64>,
    method: &str,
    lengths: Option<LengthArray<'py>>,
    length_penalty: f64,
    seed: u64,
    first_key: u64,
    keep_ties: bool,
    tie_order: &str,
    pairs_per_prompt: usize,
    min_margin: Option<f64>,
    margin_scale: f64,
    margin_from: &str,
    max_length_ratio: Option<f64>,
    max_length_diff: Option<f64>,
    duplicate_of: Option<PyReadonlyArray1<'py, i64>>,
    keys: Option<PyReadonlyArray1<'py, u64>>,
    num_threads: Option<usize>,
) -> Result<PairArrays<'py>> {
    let options = Options {
        method: method.parse::<Method>()?,
        length_penalty,
        seed,
        first_key,
        keep_ties,
        tie_order: tie_order.parse::<TieOrder>()?,
        pairs_per_prompt,
        min_margin,
        margin_scale,
        margin_from: margin_from.parse::<MarginFrom>()?,
        max_length_ratio,
        max_length_diff,
    };
    let inputs = Inputs {
        scores: slice(&scores, "scores")?,
        lengths: lengths.as_ref().map(LengthArray::as_lengths).transpose()?,
        offsets: slice(&offsets, "offsets")?,
        duplicate_of: duplicate_of
            .as_ref()
            .map(|d| slice(d, "duplicate_of"))
            .transpose()?,
        keys: keys.as_ref().map(|k| slice(k, "keys")).transpose()?,
    };
    let selection = py.detach(|| {
        threads::install(num_threads, || dpov2_core::select_pairs(&inputs, &options))
    })??;
    Ok((
        selection.status.into_pyarray(py),
        selection.pair_offsets.into_pyarray(py),
        selection.chosen.into_pyarray(py),
        selection.rejected.into_pyarray(py),
    ))
}

/// `scores - length_penalty * lengths`, element-wise, after validating both arrays.
#[pyfunction]
#[pyo3(signature = (scores, lengths, length_penalty, *, num_threads=None))]
fn penalized_rewards<'py>(
    py: Python<'py>,
    scores: PyReadonlyArray1<'py, f64>,
    lengths: LengthArray<'py>,
    length_penalty: f64,
    num_threads: Option<usize>,
) -> Result<Bound<'py, PyArray1<f64>>> {
    let scores = slice(&scores, "scores")?;
    let lengths = lengths.as_lengths()?;
    let rewards = py.detach(|| {
        threads::install(num_threads, || {
            dpov2_core::penalized_rewards(scores, lengths, length_penalty)
        })
    })??;
    Ok(rewards.into_pyarray(py))
}

/// Successive draws of the stream of prompt `key` under `seed`, draw `i` uniform in
/// `range(bounds[i])`: the draw selection makes, exposed so that tests can compare it with
/// the Python stream on bounds where rejection is common.
#[pyfunction]
fn prompt_rng_below<'py>(
    py: Python<'py>,
    seed: u64,
    key: u64,
    bounds: PyReadonlyArray1<'py, u64>,
) -> Result<Bound<'py, PyArray1<u64>>> {
    let bounds = slice(&bounds, "bounds")?;
    if let Some(i) = bounds.iter().position(|&n| n == 0) {
        return Err(PyValueError::new_err(format!("bounds[{i}] is 0; bounds must be >= 1")).into());
    }
    let mut rng = PromptRng::new(seed, key);
    let draws: Vec<u64> = bounds.iter().map(|&n| rng.below(n)).collect();
    Ok(draws.into_pyarray(py))
}
