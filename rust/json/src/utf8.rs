//! String columns checked as UTF-8 value by value, and the values that are not, located.
//!
//! Arrow's string types promise UTF-8, but Parquet and Arrow IPC writers do not enforce it, and
//! arrow-rs refuses a whole batch for one bad value. So strings are decoded as bytes
//! ([`as_bytes`] gives the type to decode them as) and turned back into strings here
//! ([`as_strings`]): a buffer that is UTF-8 as a whole, every value starting on a character, is
//! taken in one SIMD pass; otherwise each value is checked, and one that is not UTF-8 becomes a
//! null and a [`NotUtf8`] naming its row and its place in the row, such as `output[1].text`.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{BinaryViewType, ByteArrayType, GenericBinaryType, GenericStringType};
use arrow_array::{
    Array, ArrayRef, GenericByteArray, GenericListArray, OffsetSizeTrait, StringViewArray,
    StructArray,
};
use arrow_buffer::{ArrowNativeType, BooleanBuffer, NullBuffer};
use arrow_schema::{ArrowError, DataType, Field, FieldRef, Fields};

/// A value that is not UTF-8: the row (index into the array checked) and its place in the row,
/// empty for the row's own value, else list items and struct fields, as `[1].text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotUtf8 {
    pub row: usize,
    pub place: String,
    /// The place as positions (list item, struct field), to find a row's first bad value.
    order: Vec<usize>,
}

impl NotUtf8 {
    /// The same value placed under the column `name`: its field, as `output[1].text`.
    pub fn under(self, name: &str) -> Self {
        Self {
            place: format!("{name}{}", self.place),
            ..self
        }
    }
}

/// `kind` with every string type that lies under lists and structs only made the byte type of
/// the same offsets, which decodes without a check. Other nestings (maps, fixed-size lists) keep
/// their strings, which the decoder then checks itself.
pub fn as_bytes(kind: &DataType) -> DataType {
    match kind {
        DataType::Utf8 => DataType::Binary,
        DataType::LargeUtf8 => DataType::LargeBinary,
        DataType::Utf8View => DataType::BinaryView,
        DataType::List(item) => DataType::List(field_as_bytes(item)),
        DataType::LargeList(item) => DataType::LargeList(field_as_bytes(item)),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(field_as_bytes).collect()),
        other => other.clone(),
    }
}

fn field_as_bytes(field: &FieldRef) -> FieldRef {
    Arc::new(
        field
            .as_ref()
            .clone()
            .with_data_type(as_bytes(field.data_type())),
    )
}

/// `array`, read with [`as_bytes`] of `kind` (or already of `kind`, strings unchecked, as Arrow
/// IPC hands them), as `kind`: every string checked, those that are not UTF-8 made null and
/// returned, the first of each row only, rows in order.
pub fn as_strings(
    array: &ArrayRef,
    kind: &DataType,
) -> Result<(ArrayRef, Vec<NotUtf8>), ArrowError> {
    let (array, mut bad) = checked(array, kind)?;
    bad.sort_by(|a, b| (a.row, &a.order).cmp(&(b.row, &b.order)));
    bad.dedup_by_key(|b| b.row);
    Ok((array, bad))
}

/// A batch's `columns`, read with [`as_bytes`] of their `fields`' types, as those types (see
/// [`as_strings`]), with each row's first value that is not UTF-8, placed under its column's
/// name (as `output[1].text`), rows in order.
pub fn columns_as_strings(
    columns: &[ArrayRef],
    fields: &Fields,
) -> Result<(Vec<ArrayRef>, Vec<NotUtf8>), ArrowError> {
    let mut checked_columns = Vec::with_capacity(columns.len());
    let mut bad = Vec::new();
    for (column, field) in columns.iter().zip(fields) {
        let (column, column_bad) = as_strings(column, field.data_type())?;
        bad.extend(column_bad.into_iter().map(|b| b.under(field.name())));
        checked_columns.push(column);
    }
    // Stable: of several bad values in a row, the one of the first column stays.
    bad.sort_by_key(|b| b.row);
    bad.dedup_by_key(|b| b.row);
    Ok((checked_columns, bad))
}

fn checked(array: &ArrayRef, kind: &DataType) -> Result<(ArrayRef, Vec<NotUtf8>), ArrowError> {
    Ok(match (array.data_type(), kind) {
        (DataType::Binary, DataType::Utf8) => bytes::<GenericBinaryType<i32>>(array.as_binary()),
        (DataType::LargeBinary, DataType::LargeUtf8) => {
            bytes::<GenericBinaryType<i64>>(array.as_binary())
        }
        (DataType::Utf8, DataType::Utf8) => bytes::<GenericStringType<i32>>(array.as_string()),
        (DataType::LargeUtf8, DataType::LargeUtf8) => {
            bytes::<GenericStringType<i64>>(array.as_string())
        }
        (DataType::BinaryView, DataType::Utf8View) => views(array.as_binary_view()),
        (DataType::Utf8View, DataType::Utf8View) => {
            views(&array.as_string_view().clone().to_binary_view())
        }
        (DataType::List(_), DataType::List(item)) => list::<i32>(array.as_list(), item)?,
        (DataType::LargeList(_), DataType::LargeList(item)) => list::<i64>(array.as_list(), item)?,
        (DataType::Struct(_), DataType::Struct(fields)) if !fields.is_empty() => {
            structs(array.as_struct(), fields)?
        }
        _ => (Arc::clone(array), Vec::new()),
    })
}

/// Whether `value` is UTF-8.
fn is_utf8(value: &[u8]) -> bool {
    simdutf8::basic::from_utf8(value).is_ok()
}

/// Whether every value `offsets` cut from `values` is UTF-8, proven in one pass over all the
/// bytes they span: those are UTF-8, and each value starts on a character (not on a
/// continuation byte), since UTF-8 cut where characters start gives UTF-8 pieces. `false` also
/// for offsets outside `values`.
pub fn cut_at_characters<O: ArrowNativeType>(offsets: &[O], values: &[u8]) -> bool {
    let (first, last) = (offsets[0].as_usize(), offsets[offsets.len() - 1].as_usize());
    let Some(bytes) = values.get(first..last) else {
        return false;
    };
    is_utf8(bytes)
        && offsets.iter().all(|o| {
            let at = o.as_usize();
            at == last || (first..last).contains(&at) && (bytes[at - first] as i8) >= -0x40
        })
}

/// Offset-based strings (or bytes) as strings of the same offsets.
fn bytes<T: ByteArrayType>(array: &GenericByteArray<T>) -> (ArrayRef, Vec<NotUtf8>)
where
    T::Offset: OffsetSizeTrait,
{
    let bad: Vec<usize> = if cut_at_characters(array.value_offsets(), array.value_data()) {
        Vec::new()
    } else {
        (0..array.len())
            .filter(|&i| array.is_valid(i) && !is_utf8(array.value(i).as_ref()))
            .collect()
    };
    let nulls = without(array.nulls(), array.len(), &bad);
    // SAFETY: every value that stays valid was just found UTF-8 (as the whole buffer, or one by
    // one); the offsets are the array's own, checked when it was made.
    let strings = unsafe {
        GenericByteArray::<GenericStringType<T::Offset>>::new_unchecked(
            array.offsets().clone(),
            array.values().clone(),
            nulls,
        )
    };
    (Arc::new(strings), located(bad))
}

/// View strings (or bytes) as view strings.
fn views(array: &arrow_array::GenericByteViewArray<BinaryViewType>) -> (ArrayRef, Vec<NotUtf8>) {
    let bad: Vec<usize> = (0..array.len())
        .filter(|&i| array.is_valid(i) && !is_utf8(array.value(i)))
        .collect();
    let nulls = without(array.nulls(), array.len(), &bad);
    let (views, buffers, _) = array.clone().into_parts();
    // SAFETY: as in `bytes`: each valid value was checked to be UTF-8.
    let strings = unsafe { StringViewArray::new_unchecked(views, buffers, nulls) };
    (Arc::new(strings), located(bad))
}

fn located(rows: Vec<usize>) -> Vec<NotUtf8> {
    rows.into_iter()
        .map(|row| NotUtf8 {
            row,
            place: String::new(),
            order: Vec::new(),
        })
        .collect()
}

/// `nulls` with the rows `bad` made null too.
fn without(nulls: Option<&NullBuffer>, len: usize, bad: &[usize]) -> Option<NullBuffer> {
    if bad.is_empty() {
        return nulls.cloned();
    }
    let mut valid: Vec<bool> = (0..len)
        .map(|i| nulls.is_none_or(|n| n.is_valid(i)))
        .collect();
    for &i in bad {
        valid[i] = false;
    }
    Some(NullBuffer::new(BooleanBuffer::from(valid)))
}

/// A field for `values` under `field`'s name and metadata, nullable if they now hold nulls.
pub fn refit(field: &FieldRef, values: &ArrayRef) -> FieldRef {
    let nullable = field.is_nullable() || values.null_count() > 0;
    Arc::new(
        Field::new(field.name(), values.data_type().clone(), nullable)
            .with_metadata(field.metadata().clone()),
    )
}

fn list<O: OffsetSizeTrait>(
    array: &GenericListArray<O>,
    item: &FieldRef,
) -> Result<(ArrayRef, Vec<NotUtf8>), ArrowError> {
    let (values, bad) = checked(array.values(), item.data_type())?;
    let offsets = array.value_offsets();
    let bad = bad
        .into_iter()
        .map(|b| {
            // The list whose items hold value `b.row`: the last one starting at or before it.
            let list = offsets.partition_point(|o| o.as_usize() <= b.row) - 1;
            let k = b.row - offsets[list].as_usize();
            let mut order = vec![k];
            order.extend(b.order);
            NotUtf8 {
                row: list,
                place: format!("[{k}]{}", b.place),
                order,
            }
        })
        .collect();
    let lists = GenericListArray::<O>::try_new(
        refit(item, &values),
        array.offsets().clone(),
        values,
        array.nulls().cloned(),
    )?;
    Ok((Arc::new(lists), bad))
}

fn structs(array: &StructArray, fields: &Fields) -> Result<(ArrayRef, Vec<NotUtf8>), ArrowError> {
    let mut columns = Vec::with_capacity(fields.len());
    let mut refitted = Vec::with_capacity(fields.len());
    let mut bad = Vec::new();
    for (i, (column, field)) in array.columns().iter().zip(fields.iter()).enumerate() {
        let (column, column_bad) = checked(column, field.data_type())?;
        bad.extend(column_bad.into_iter().map(|b| {
            let mut order = vec![i];
            order.extend(b.order);
            NotUtf8 {
                row: b.row,
                place: format!(".{}{}", field.name(), b.place),
                order,
            }
        }));
        refitted.push(refit(field, &column));
        columns.push(column);
    }
    let structs = StructArray::try_new(refitted.into(), columns, array.nulls().cloned())?;
    Ok((Arc::new(structs), bad))
}

#[cfg(test)]
mod tests {
    use arrow_array::{BinaryArray, Float64Array, ListArray, StringArray};
    use arrow_buffer::{OffsetBuffer, ScalarBuffer};
    use proptest::prelude::*;

    use super::*;

    /// `output`-like lists of `{text, score}` from each row's texts, as bytes.
    fn responses(rows: &[&[&[u8]]]) -> ArrayRef {
        let texts: Vec<&[u8]> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        let scores = Float64Array::from(vec![0.5; texts.len()]);
        let fields = Fields::from(vec![
            Field::new("text", DataType::Binary, true),
            Field::new("score", DataType::Float64, true),
        ]);
        let items = StructArray::new(
            fields.clone(),
            vec![Arc::new(BinaryArray::from(texts)), Arc::new(scores)],
            None,
        );
        let offsets = OffsetBuffer::from_lengths(rows.iter().map(|r| r.len()));
        let item = Arc::new(Field::new("item", DataType::Struct(fields), true));
        Arc::new(ListArray::new(item, offsets, Arc::new(items), None))
    }

    fn string_kind(array: &ArrayRef) -> DataType {
        let DataType::List(item) = array.data_type() else {
            unreachable!()
        };
        let DataType::Struct(fields) = item.data_type() else {
            unreachable!()
        };
        let fields: Fields = fields
            .iter()
            .map(|f| match f.data_type() {
                DataType::Binary => Arc::new(f.as_ref().clone().with_data_type(DataType::Utf8)),
                _ => Arc::clone(f),
            })
            .collect();
        DataType::List(Arc::new(Field::new("item", DataType::Struct(fields), true)))
    }

    #[test]
    fn a_value_that_is_not_utf8_is_a_null_placed_in_its_row() {
        let array = responses(&[&[b"a", "é".as_bytes()], &[b"b", b"\xff", b"\xfe"]]);
        let kind = string_kind(&array);
        let (strings, bad) = as_strings(&array, &kind).unwrap();
        assert_eq!(strings.data_type(), &kind);
        assert_eq!(
            bad.into_iter()
                .map(|b| (b.row, b.place))
                .collect::<Vec<_>>(),
            vec![(1, "[1].text".to_string())],
        );
        let lists = strings.as_list::<i32>();
        let texts = lists
            .values()
            .as_struct()
            .column(0)
            .as_string::<i32>()
            .clone();
        assert_eq!(
            texts.iter().collect::<Vec<_>>(),
            vec![Some("a"), Some("é"), Some("b"), None, None]
        );
    }

    #[test]
    fn a_value_cut_inside_a_character_is_not_utf8() {
        // "aé" as a whole is UTF-8, but the second value starts inside "é".
        let values = arrow_buffer::Buffer::from("aé".as_bytes());
        let offsets = OffsetBuffer::new(ScalarBuffer::from(vec![0i32, 2, 3]));
        let array: ArrayRef = Arc::new(BinaryArray::new(offsets, values, None));
        let (_, bad) = as_strings(&array, &DataType::Utf8).unwrap();
        assert_eq!(bad.iter().map(|b| b.row).collect::<Vec<_>>(), vec![0, 1]);
        assert!(!cut_at_characters(&[0i32, 2, 3], "aé".as_bytes()));
        assert!(cut_at_characters(&[0i32, 1, 3], "aé".as_bytes()));
    }

    #[test]
    fn a_row_names_its_first_bad_value_and_columns_their_names() {
        let prompts: ArrayRef = Arc::new(BinaryArray::from(vec![&b"ok"[..], b"\xff"]));
        let outputs = responses(&[&[b"\xff", b"\xfe"], &[b"\xff"]]);
        let fields = Fields::from(vec![
            Field::new("input", DataType::Utf8, true),
            Field::new("output", string_kind(&outputs), true),
        ]);
        let (columns, bad) = columns_as_strings(&[prompts, outputs], &fields).unwrap();
        assert_eq!(columns[0].data_type(), &DataType::Utf8);
        assert_eq!(
            bad.into_iter()
                .map(|b| (b.row, b.place))
                .collect::<Vec<_>>(),
            vec![(0, "output[0].text".to_string()), (1, "input".to_string())],
        );
    }

    #[test]
    fn strings_already_typed_are_checked_the_same() {
        // Arrow IPC hands strings over unchecked.
        let values = arrow_buffer::Buffer::from(&b"ok\xff"[..]);
        let offsets = OffsetBuffer::new(ScalarBuffer::from(vec![0i32, 2, 3]));
        // SAFETY: only to build the unchecked input this check exists for; never read as str.
        let array: ArrayRef =
            Arc::new(unsafe { StringArray::new_unchecked(offsets, values, None) });
        let (strings, bad) = as_strings(&array, &DataType::Utf8).unwrap();
        assert_eq!(bad.iter().map(|b| b.row).collect::<Vec<_>>(), vec![1]);
        assert_eq!(
            strings.as_string::<i32>().iter().collect::<Vec<_>>(),
            vec![Some("ok"), None]
        );
    }

    proptest! {
        /// Exactly the values std refuses are found, and the others come out unchanged; among
        /// them, texts cut anywhere into consecutive values, which are UTF-8 as a whole.
        #[test]
        fn bad_values_are_those_std_refuses(
            pieces in prop::collection::vec(
                prop_oneof![
                    any::<String>().prop_map(|s| vec![s.into_bytes()]),
                    prop::collection::vec(any::<u8>(), 0..6).prop_map(|v| vec![v]),
                    ("[é漢🙂a]{1,6}", any::<prop::sample::Index>()).prop_map(|(s, at)| {
                        let (a, b) = s.as_bytes().split_at(at.index(s.len() + 1));
                        vec![a.to_vec(), b.to_vec()]
                    }),
                ],
                0..20,
            )
        ) {
            let values: Vec<Vec<u8>> = pieces.into_iter().flatten().collect();
            let array: ArrayRef = Arc::new(BinaryArray::from(
                values.iter().map(Vec::as_slice).collect::<Vec<_>>(),
            ));
            let (strings, bad) = as_strings(&array, &DataType::Utf8).unwrap();
            let expected: Vec<usize> = (0..values.len())
                .filter(|&i| std::str::from_utf8(&values[i]).is_err())
                .collect();
            prop_assert_eq!(bad.iter().map(|b| b.row).collect::<Vec<_>>(), expected);
            let strings = strings.as_string::<i32>();
            for (i, value) in values.iter().enumerate() {
                let got = strings.is_valid(i).then(|| strings.value(i).as_bytes());
                let want = std::str::from_utf8(value).ok().map(str::as_bytes);
                prop_assert_eq!(got, want);
            }
        }
    }
}
