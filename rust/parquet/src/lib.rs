//! Reading Parquet files for dpov2 in bounded memory and faster than one thread decodes them.
//!
//! - [`Reader`]: record batches of chosen columns, a row group's pages read and decompressed
//!   ahead in a thread per column chunk ([`pages`]) while the caller's thread decodes them,
//!   so that decompression (about half the work) and decoding overlap.
//! - Strings are decoded as bytes and checked value by value (`dpov2_json::utf8`, the check
//!   every columnar source shares), so that a value that is not UTF-8 (Parquet writers do not
//!   enforce it) becomes a located problem of its row instead of an error for the whole batch.

mod damaged;
mod file;
mod pages;
mod reader;

pub use dpov2_json::utf8::{columns_as_strings, NotUtf8};
pub use reader::{Error, Reader};
