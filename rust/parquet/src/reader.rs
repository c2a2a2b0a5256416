//! [`Reader`]: a Parquet file's chosen columns as record batches of a set number of rows.

use std::fs::File;
use std::sync::Arc;

use arrow_array::{RecordBatch, RecordBatchOptions};
use arrow_schema::{ArrowError, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReader;
use parquet::arrow::{
    parquet_to_arrow_field_levels, parquet_to_arrow_schema, parquet_to_arrow_schema_by_columns,
    ProjectionMask,
};
use parquet::basic::{ConvertedType, LogicalType, Type as PhysicalType};
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaDataReader;
use parquet::schema::types::{SchemaDescriptor, Type, TypePtr};

use crate::damaged::unless_panic;
use crate::file::SharedFile;
use crate::pages::FileRowGroups;
use dpov2_json::utf8::{as_bytes, columns_as_strings, refit, NotUtf8};

/// Why a file could not be read: its footer, a page or a column chunk is damaged or not
/// Parquet, or the file system failed. The message is arrow-rs's own.
#[derive(Debug)]
pub enum Error {
    Parquet(ParquetError),
    Arrow(ArrowError),
    /// A column asked for that the file does not have.
    NoColumn(String),
    /// What arrow-rs panicked with, on a file damaged in a way it does not check.
    Damaged(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Parquet(err) => write!(f, "{err}"),
            Self::Arrow(err) => write!(f, "{err}"),
            Self::NoColumn(name) => write!(f, "no column '{name}'"),
            Self::Damaged(message) => write!(f, "damaged: {message}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<ParquetError> for Error {
    fn from(err: ParquetError) -> Self {
        Self::Parquet(err)
    }
}

impl From<ArrowError> for Error {
    fn from(err: ArrowError) -> Self {
        Self::Arrow(err)
    }
}

/// A Parquet file's chosen top-level columns as record batches of `batch_rows` rows (the last
/// one fewer), with their Arrow types as the file's Arrow schema gives them (as pyarrow reads
/// them). Strings are checked value by value (`dpov2_json::utf8`): a value that is not UTF-8 is a
/// null in the batch and a [`NotUtf8`] beside it.
pub struct Reader {
    batches: ParquetRecordBatchReader,
    schema: SchemaRef,
}

impl Reader {
    /// Opens `file` for its `columns` (all when `None`; either way in the file's order), each
    /// batch `batch_rows` rows. With `ahead`, each column chunk's pages are read and decompressed
    /// in a thread of its own ([`crate::pages`]); without, on the caller's.
    pub fn open(
        file: File,
        columns: Option<&[String]>,
        batch_rows: usize,
        ahead: bool,
    ) -> Result<Self, Error> {
        unless_panic(|| Self::try_open(file, columns, batch_rows, ahead))
    }

    fn try_open(
        file: File,
        columns: Option<&[String]>,
        batch_rows: usize,
        ahead: bool,
    ) -> Result<Self, Error> {
        let metadata = Arc::new(ParquetMetaDataReader::new().parse_and_finish(&file)?);
        let parquet_schema = metadata.file_metadata().schema_descr();
        let key_values = metadata.file_metadata().key_value_metadata();
        let roots = parquet_schema.root_schema().get_fields();
        let indices: Vec<usize> = match columns {
            None => (0..roots.len()).collect(),
            Some(names) => names
                .iter()
                .map(|name| {
                    roots
                        .iter()
                        .position(|root| root.name() == name)
                        .ok_or_else(|| Error::NoColumn(name.clone()))
                })
                .collect::<Result<_, _>>()?,
        };
        let mask = ProjectionMask::roots(parquet_schema, indices);
        // What pyarrow would give, and the same with strings as bytes to decode.
        let schema = Arc::new(Schema::new(
            parquet_to_arrow_schema_by_columns(parquet_schema, mask.clone(), key_values)?
                .fields()
                .clone(),
        ));
        let hint = parquet_to_arrow_schema(parquet_schema, key_values)?
            .fields()
            .iter()
            .map(|field| {
                field
                    .as_ref()
                    .clone()
                    .with_data_type(as_bytes(field.data_type()))
            })
            .collect();
        let levels =
            parquet_to_arrow_field_levels(&unannotated(parquet_schema)?, mask, Some(&hint))?;
        let row_groups = FileRowGroups {
            reader: Arc::new(SharedFile::new(file).map_err(ParquetError::from)?),
            metadata,
            ahead,
        };
        let batches = ParquetRecordBatchReader::try_new_with_row_groups(
            &levels,
            &row_groups,
            batch_rows,
            None,
        )?;
        Ok(Self { batches, schema })
    }

    /// The next batch and its values that are not UTF-8 (placed under their column's name, as
    /// `output[1].text`, first per row, rows in order), or `None` after the last.
    pub fn next_batch(&mut self) -> Result<Option<(RecordBatch, Vec<NotUtf8>)>, Error> {
        unless_panic(|| self.try_next_batch())
    }

    fn try_next_batch(&mut self) -> Result<Option<(RecordBatch, Vec<NotUtf8>)>, Error> {
        let Some(batch) = self.batches.next().transpose()? else {
            return Ok(None);
        };
        let (columns, bad) = columns_as_strings(batch.columns(), self.schema.fields())?;
        let fields: Vec<_> = self
            .schema
            .fields()
            .iter()
            .zip(&columns)
            .map(|(field, column)| refit(field, column))
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        let batch =
            RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)?;
        Ok(Some((batch, bad)))
    }
}

/// `schema` with its strings as plain byte arrays: arrow-rs decodes a column annotated as a
/// string only as a string, checking it whole, and takes a hint of bytes only for bytes.
fn unannotated(schema: &SchemaDescriptor) -> Result<SchemaDescriptor, ParquetError> {
    Ok(SchemaDescriptor::new(Arc::new(as_plain_bytes(
        &schema.root_schema_ptr(),
    )?)))
}

fn as_plain_bytes(node: &TypePtr) -> Result<Type, ParquetError> {
    let info = node.get_basic_info();
    let id = info.has_id().then(|| info.id());
    Ok(match node.as_ref() {
        Type::PrimitiveType { physical_type, .. }
            if *physical_type == PhysicalType::BYTE_ARRAY
                && (matches!(info.logical_type_ref(), Some(LogicalType::String))
                    || info.converted_type() == ConvertedType::UTF8) =>
        {
            Type::primitive_type_builder(info.name(), PhysicalType::BYTE_ARRAY)
                .with_repetition(info.repetition())
                .with_id(id)
                .build()?
        }
        Type::PrimitiveType { .. } => node.as_ref().clone(),
        Type::GroupType { fields, .. } => {
            let fields = fields
                .iter()
                .map(|f| as_plain_bytes(f).map(Arc::new))
                .collect::<Result<Vec<_>, _>>()?;
            let mut group = Type::group_type_builder(info.name())
                .with_converted_type(info.converted_type())
                .with_logical_type(info.logical_type_ref().cloned())
                .with_id(id)
                .with_fields(fields);
            if info.has_repetition() {
                group = group.with_repetition(info.repetition());
            }
            group.build()?
        }
    })
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, SeekFrom, Write};

    use arrow_array::cast::AsArray;
    use arrow_array::{Array, ArrayRef, Float64Array, ListArray, StringArray, StructArray};
    use arrow_buffer::OffsetBuffer;
    use arrow_schema::{DataType, Field, Fields};
    use arrow_select::concat::concat_batches;
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::WriterProperties;

    use super::*;

    /// Scored rows: `input`, and `output` lists of `{text, score}`, `n` rows of up to 4
    /// responses with texts of a few hundred bytes, some of them not ASCII.
    fn scored(n: usize) -> RecordBatch {
        let prompts = StringArray::from_iter_values((0..n).map(|i| format!("prompt {i} é")));
        let sizes: Vec<usize> = (0..n).map(|i| i % 5).collect();
        let total: usize = sizes.iter().sum();
        let texts = StringArray::from_iter_values((0..total).map(|k| "ü".repeat(k % 300)));
        let scores = Float64Array::from_iter_values((0..total).map(|k| k as f64 / 7.0));
        let fields = Fields::from(vec![
            Field::new("text", DataType::Utf8, true),
            Field::new("score", DataType::Float64, true),
        ]);
        let items = StructArray::new(
            fields.clone(),
            vec![Arc::new(texts), Arc::new(scores)],
            None,
        );
        let item = Arc::new(Field::new("item", DataType::Struct(fields), true));
        let outputs = ListArray::new(
            item,
            OffsetBuffer::from_lengths(sizes),
            Arc::new(items),
            None,
        );
        let extra = Float64Array::from_iter_values((0..n).map(|i| i as f64));
        RecordBatch::try_from_iter([
            ("input", Arc::new(prompts) as ArrayRef),
            ("output", Arc::new(outputs) as ArrayRef),
            ("extra", Arc::new(extra) as ArrayRef),
        ])
        .unwrap()
    }

    /// `batch` written as Parquet with small row groups and pages, so that a read crosses many.
    fn written(batch: &RecordBatch, compression: Compression) -> File {
        let props = WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(97))
            .set_data_page_size_limit(4096)
            .set_write_batch_size(13)
            .build();
        let mut file = tempfile();
        let mut writer =
            ArrowWriter::try_new(file.try_clone().unwrap(), batch.schema(), Some(props)).unwrap();
        writer.write(batch).unwrap();
        writer.close().unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        file
    }

    fn tempfile() -> File {
        let dir = std::env::temp_dir();
        let path = dir.join(format!(
            "dpov2-parquet-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        file
    }

    fn read_all(
        file: File,
        columns: Option<&[String]>,
        batch_rows: usize,
        ahead: bool,
    ) -> Result<Vec<RecordBatch>, Error> {
        let mut reader = Reader::open(file, columns, batch_rows, ahead)?;
        let mut batches = Vec::new();
        while let Some((batch, bad)) = reader.next_batch()? {
            assert!(bad.is_empty());
            batches.push(batch);
        }
        Ok(batches)
    }

    #[test]
    fn batches_of_chosen_columns_equal_what_was_written_with_or_without_reading_ahead() {
        let batch = scored(1000);
        let columns = ["input".to_string(), "output".to_string()];
        let expected = batch.project(&[0, 1]).unwrap();
        for compression in [
            Compression::SNAPPY,
            Compression::ZSTD(ZstdLevel::default()),
            Compression::UNCOMPRESSED,
        ] {
            for ahead in [false, true] {
                let file = written(&batch, compression);
                let batches = read_all(file, Some(&columns), 71, ahead).unwrap();
                assert!(batches[..batches.len() - 1]
                    .iter()
                    .all(|b| b.num_rows() == 71));
                let read = concat_batches(&batches[0].schema(), &batches).unwrap();
                assert_eq!(
                    read.columns(),
                    expected.columns(),
                    "{compression:?} ahead {ahead}"
                );
                assert_eq!(read.schema().fields(), expected.schema().fields());
            }
        }
    }

    #[test]
    fn all_columns_in_file_order_when_none_are_named() {
        let batch = scored(50);
        let batches = read_all(written(&batch, Compression::SNAPPY), None, 1000, true).unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0], batch);
    }

    #[test]
    fn a_string_that_is_not_utf8_is_a_null_and_a_problem_of_its_row() {
        let batch = scored(30);
        let outputs = batch.column(1).as_list::<i32>();
        let items = outputs.values().as_struct();
        let texts = items.column(0).as_string::<i32>();
        // Response 1 of row 7 (rows 0..7 hold 0+1+2+3+4+0+1 = 11 responses) made "\xff".
        let mut values = Vec::new();
        let mut offsets = vec![0i32];
        for (k, text) in texts.iter().enumerate() {
            values.extend_from_slice(if k == 12 {
                b"\xff"
            } else {
                text.unwrap().as_bytes()
            });
            offsets.push(values.len() as i32);
        }
        // SAFETY: only to write the invalid string a Parquet writer would; never read as str.
        let bad_texts = unsafe {
            StringArray::new_unchecked(
                OffsetBuffer::new(offsets.into()),
                arrow_buffer::Buffer::from(values),
                None,
            )
        };
        let (fields, mut columns, _) = items.clone().into_parts();
        columns[0] = Arc::new(bad_texts);
        let items = StructArray::new(fields, columns, None);
        let (item, offsets, _, _) = outputs.clone().into_parts();
        let outputs = ListArray::new(item, offsets, Arc::new(items), None);
        let mut columns = batch.columns().to_vec();
        columns[1] = Arc::new(outputs);
        let bad = RecordBatch::try_new(batch.schema(), columns).unwrap();
        let mut reader =
            Reader::open(written(&bad, Compression::SNAPPY), None, 1000, true).unwrap();
        let (read, problems) = reader.next_batch().unwrap().unwrap();
        assert_eq!(
            problems
                .into_iter()
                .map(|p| (p.row, p.place))
                .collect::<Vec<_>>(),
            vec![(7, "output[1].text".to_string())]
        );
        let texts = read
            .column(1)
            .as_list::<i32>()
            .values()
            .as_struct()
            .column(0)
            .clone();
        assert!(texts.is_null(12));
        assert_eq!(texts.null_count(), 1);
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_panic() {
        let batch = scored(300);
        // Not Parquet at all.
        let mut junk = tempfile();
        junk.write_all(b"{\"input\": 1}\n").unwrap();
        assert!(matches!(
            Reader::open(junk, None, 10, true),
            Err(Error::Parquet(_))
        ));
        // A page's bytes overwritten: the footer reads, a batch does not.
        let mut file = written(&batch, Compression::SNAPPY);
        file.seek(SeekFrom::Start(200)).unwrap();
        file.write_all(&[0xAB; 3000]).unwrap();
        for ahead in [false, true] {
            let err = read_all(file.try_clone().unwrap(), None, 50, ahead).unwrap_err();
            assert!(matches!(err, Error::Parquet(_) | Error::Arrow(_)), "{err}");
        }
        let missing = ["nope".to_string()];
        let err = Reader::open(
            written(&batch, Compression::SNAPPY),
            Some(&missing),
            10,
            true,
        );
        assert!(matches!(err, Err(Error::NoColumn(name)) if name == "nope"));
    }
}
