//! Reading and writing dpov2's datasets as JSON: JSON Lines and LMFlow's
//! `{"type": ..., "instances": [...]}`, straight to and from columnar (Arrow-layout) buffers.
//!
//! Nothing here knows about Python or about pair selection; the PyO3 layer converts buffers
//! and errors, and `dpov2-core` selects pairs.

mod instances;
mod read;
mod scored_lines;
mod text;
mod write;

pub use instances::{Chunk, InstanceSplitter, SplitError};
pub use read::{
    Batch, Framing, Problem, PromptKind, ReadError, ReadOptions, Reader, Schema, MAX_DEPTH,
};
pub use scored_lines::{parse_scored_lines, ScoredColumns};
pub use write::{check_rows, write_rows, JsonWriter, Layout, WriteError, WriteProblem};
