//! `dpov2._core`: the Python face of `dpov2-core` (pair selection), `dpov2-json` (reading and
//! writing JSON datasets) and `dpov2-parquet` (reading Parquet files).
//!
//! Every function here only converts: NumPy arrays in (read as slices, no copy), the GIL
//! released around the Rust call, Rust errors out as Python exceptions (all mapped in
//! `errors.rs`), results handed to NumPy without a copy. Callers normally go through the
//! `dpov2` package, which makes contiguous arrays of the right dtype first.

mod arrays;
pub mod arrow;
mod errors;
mod json;
mod parquet;
mod select;
mod strings;
mod texts;
mod threads;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    select::register(m)?;
    texts::register(m)?;
    strings::register(m)?;
    json::register(m)?;
    arrow::register(m)?;
    parquet::register(m)?;
    errors::register(m)?;
    Ok(())
}
