//! Column chunks whose pages are read and decompressed ahead of the decoder.
//!
//! arrow-rs decodes a column chunk's pages on the thread that asks for a batch, and each page is
//! read and decompressed there too. Here a thread per column chunk reads and decompresses its
//! pages into a channel of [`PAGES_AHEAD`] pages, so that on a second core decompression
//! (about half of decoding snappy-compressed text) runs beside the decoding of the pages before.
//! The next row group's chunk starts as the current one is handed out, so nothing waits at a row
//! group's end. Memory stays bounded: at most two chunks per column are ahead, each holding a
//! few pages.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread;

use parquet::arrow::arrow_reader::RowGroups;
use parquet::column::page::{Page, PageIterator, PageMetadata, PageReader};
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ParquetMetaData, RowGroupMetaData};
use parquet::file::reader::ChunkReader;
use parquet::file::serialized_reader::SerializedPageReader;

use crate::damaged::unless_panic;

/// Pages a column chunk's thread may hold decompressed before the decoder takes them.
const PAGES_AHEAD: usize = 4;

/// The row groups of a file, their pages read ahead (`ahead`) or, with one thread, where the
/// decoder asks for them.
pub(crate) struct FileRowGroups<R> {
    pub reader: Arc<R>,
    pub metadata: Arc<ParquetMetaData>,
    pub ahead: bool,
}

impl<R: ChunkReader + 'static> RowGroups for FileRowGroups<R> {
    fn num_rows(&self) -> usize {
        self.metadata.file_metadata().num_rows() as usize
    }

    fn column_chunks(&self, column: usize) -> Result<Box<dyn PageIterator>> {
        Ok(Box::new(ColumnChunks {
            reader: Arc::clone(&self.reader),
            metadata: Arc::clone(&self.metadata),
            column,
            next_row_group: 0,
            started: None,
            ahead: self.ahead,
        }))
    }

    fn row_groups(&self) -> Box<dyn Iterator<Item = &RowGroupMetaData> + '_> {
        Box::new(self.metadata.row_groups().iter())
    }

    fn metadata(&self) -> &ParquetMetaData {
        &self.metadata
    }
}

/// One column's chunks, row group by row group.
struct ColumnChunks<R> {
    reader: Arc<R>,
    metadata: Arc<ParquetMetaData>,
    column: usize,
    next_row_group: usize,
    /// The chunk of row group `next_row_group`, already reading ahead.
    started: Option<Result<Box<dyn PageReader>>>,
    ahead: bool,
}

impl<R: ChunkReader + 'static> ColumnChunks<R> {
    /// The pages of the chunk of row group `i`, read ahead in their own thread when `ahead`.
    fn open(&self, i: usize) -> Result<Box<dyn PageReader>> {
        let row_group = self.metadata.row_group(i);
        let pages = SerializedPageReader::new(
            Arc::clone(&self.reader),
            row_group.column(self.column),
            row_group.num_rows() as usize,
            None,
        )?;
        if !self.ahead {
            return Ok(Box::new(pages));
        }
        let (sender, receiver) = sync_channel(PAGES_AHEAD);
        thread::Builder::new()
            .name("dpov2-parquet-pages".into())
            .spawn(move || {
                let read = unless_panic(|| {
                    for page in pages {
                        // The decoder has gone (the reader was dropped): stop reading.
                        if sender.send(page).is_err() {
                            break;
                        }
                    }
                    Ok(())
                });
                // The decoder must not take a chunk cut short by a panic for its end.
                if let Err(err) = read {
                    let _ = sender.send(Err(ParquetError::General(err.to_string())));
                }
            })
            .map_err(|err| ParquetError::External(Box::new(err)))?;
        Ok(Box::new(PagesAhead {
            receiver,
            peeked: None,
        }))
    }
}

impl<R: ChunkReader + 'static> Iterator for ColumnChunks<R> {
    type Item = Result<Box<dyn PageReader>>;

    fn next(&mut self) -> Option<Self::Item> {
        let n = self.metadata.num_row_groups();
        if self.next_row_group >= n {
            return None;
        }
        let i = self.next_row_group;
        let chunk = self.started.take().unwrap_or_else(|| self.open(i));
        self.next_row_group += 1;
        if self.ahead && i + 1 < n {
            self.started = Some(self.open(i + 1));
        }
        Some(chunk)
    }
}

impl<R: ChunkReader + 'static> PageIterator for ColumnChunks<R> {}

/// The pages a chunk's thread sends, in order; the chunk ends when the thread does.
struct PagesAhead {
    receiver: Receiver<Result<Page>>,
    peeked: Option<Result<Page>>,
}

impl PagesAhead {
    fn peek(&mut self) -> Option<&Result<Page>> {
        if self.peeked.is_none() {
            self.peeked = self.receiver.recv().ok();
        }
        self.peeked.as_ref()
    }
}

impl Iterator for PagesAhead {
    type Item = Result<Page>;

    fn next(&mut self) -> Option<Self::Item> {
        self.peeked.take().or_else(|| self.receiver.recv().ok())
    }
}

impl PageReader for PagesAhead {
    fn get_next_page(&mut self) -> Result<Option<Page>> {
        self.next().transpose()
    }

    /// What the page's header says, as the serialized reader tells it from the header alone.
    fn peek_next_page(&mut self) -> Result<Option<PageMetadata>> {
        match self.peek() {
            None => Ok(None),
            Some(Err(_)) => Err(self.peeked.take().and_then(Result::err).expect("an error")),
            Some(Ok(page)) => Ok(Some(match page {
                Page::DataPage { num_values, .. } => PageMetadata {
                    num_rows: None,
                    num_levels: Some(*num_values as usize),
                    is_dict: false,
                },
                Page::DataPageV2 {
                    num_values,
                    num_rows,
                    ..
                } => PageMetadata {
                    num_rows: Some(*num_rows as usize),
                    num_levels: Some(*num_values as usize),
                    is_dict: false,
                },
                Page::DictionaryPage { .. } => PageMetadata {
                    num_rows: None,
                    num_levels: None,
                    is_dict: true,
                },
            })),
        }
    }

    fn skip_next_page(&mut self) -> Result<()> {
        self.get_next_page().map(drop)
    }
}
