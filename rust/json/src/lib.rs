//! Reading and writing dpov2's datasets as JSON: JSON Lines and LMFlow's
//! `{"type": ..., "instances": [...]}`, straight to and from Arrow record batches: one
//! reader (`read`) and one writer (`write`), sharing one string escaper and unescaper (`text`);
//! the parallel string-column kernels that pairing needs (`strings`); and the UTF-8 check of
//! Arrow strings that every reader of columnar data shares (`utf8`).
//!
//! Nothing here knows about Python or about pair selection; the PyO3 layer converts buffers
//! and errors, and `dpov2-core` selects pairs.

mod copy;
mod read;
mod strings;
mod text;
pub mod utf8;
mod write;

pub use read::{
    Batch, Extra, ExtraKind, Framing, Problem, PromptKind, ReadError, ReadOptions, Reader, Schema,
    MAX_DEPTH, MAX_EXTRAS,
};
pub use strings::{char_lengths, gather, GatherError};
pub use write::{check_rows, write_rows, JsonWriter, Layout, WriteError, WriteProblem};
