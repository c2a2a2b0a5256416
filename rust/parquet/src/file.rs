//! A file that several threads read at once, each at its own position.
//!
//! arrow-rs reads a `File` through clones that share one file position, so two threads reading
//! column chunks at once would move each other's position. Here every read says where it
//! starts (`pread`), and nothing is shared but the descriptor.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use parquet::errors::Result;
use parquet::file::reader::{ChunkReader, Length};

/// Buffer of a reader of page headers: a header is small, and its page is read apart.
const HEADER_BUFFER: usize = 16 << 10;

pub(crate) struct SharedFile {
    file: Arc<File>,
    len: u64,
}

impl SharedFile {
    pub fn new(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(Self {
            file: Arc::new(file),
            len,
        })
    }
}

impl Length for SharedFile {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for SharedFile {
    type T = BufReader<At>;

    fn get_read(&self, start: u64) -> Result<Self::T> {
        let at = At {
            file: Arc::clone(&self.file),
            position: start,
        };
        Ok(BufReader::with_capacity(HEADER_BUFFER, at))
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes> {
        let mut buffer = vec![0; length];
        self.file.read_exact_at(&mut buffer, start)?;
        Ok(buffer.into())
    }
}

/// Reads from its own position of a shared file.
pub(crate) struct At {
    file: Arc<File>,
    position: u64,
}

impl Read for At {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.position)?;
        self.position += n as u64;
        Ok(n)
    }
}
