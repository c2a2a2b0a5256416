//! A quick pass that proves a batch has nothing [`super::check_rows`] refuses, without encoding
//! it: every string UTF-8 (one validation of each column's bytes, plus a look at each value's
//! first byte) and every float finite. It only ever answers "surely fine" or "look closer":
//! anything it does not prove (a type it does not know, a null slot holding bytes or NaN, a
//! malformed array) goes to the encoder, which stays the one definition of what is refused
//! and says where.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type};
use arrow_array::{Array, GenericListArray, GenericStringArray, OffsetSizeTrait, RecordBatch};
use arrow_schema::DataType;

use crate::utf8;

/// Whether every value of `batch` is surely one that JSON writing takes.
pub(super) fn surely_writable(batch: &RecordBatch) -> bool {
    batch.columns().iter().all(|c| array_ok(c.as_ref()))
}

fn array_ok(array: &dyn Array) -> bool {
    match array.data_type() {
        DataType::Null
        | DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => true,
        DataType::Float32 => array
            .as_primitive::<Float32Type>()
            .values()
            .iter()
            .all(|v| v.is_finite()),
        DataType::Float64 => array
            .as_primitive::<Float64Type>()
            .values()
            .iter()
            .all(|v| v.is_finite()),
        DataType::Utf8 => strings_ok(array.as_string::<i32>()),
        DataType::LargeUtf8 => strings_ok(array.as_string::<i64>()),
        DataType::List(_) => list_ok(array.as_list::<i32>()),
        DataType::LargeList(_) => list_ok(array.as_list::<i64>()),
        // arrow-rs slices a struct's children with it.
        DataType::Struct(_) => array
            .as_struct()
            .columns()
            .iter()
            .all(|c| array_ok(c.as_ref())),
        _ => false,
    }
}

fn strings_ok<O: OffsetSizeTrait>(array: &GenericStringArray<O>) -> bool {
    utf8::cut_at_characters(array.value_offsets(), array.value_data())
}

fn list_ok<O: OffsetSizeTrait>(array: &GenericListArray<O>) -> bool {
    let offsets = array.value_offsets();
    let (first, last) = (offsets[0].as_usize(), offsets[offsets.len() - 1].as_usize());
    first <= last
        && last <= array.values().len()
        && array_ok(array.values().slice(first, last - first).as_ref())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
    use arrow_buffer::{Buffer, OffsetBuffer, ScalarBuffer};

    use proptest::prelude::*;

    use super::surely_writable;
    use crate::write::{run, Layout, Unsupported};

    fn batch(column: ArrayRef) -> RecordBatch {
        RecordBatch::try_from_iter([("c", column)]).unwrap()
    }

    fn raw_strings(offsets: Vec<i32>, bytes: &[u8]) -> ArrayRef {
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
        // SAFETY (of the test): the bytes need not be UTF-8 for what is tested here, and the
        // array is only read as bytes.
        Arc::new(unsafe { StringArray::new_unchecked(offsets, Buffer::from(bytes), None) })
    }

    #[test]
    fn valid_strings_and_finite_floats_pass() {
        assert!(surely_writable(&batch(Arc::new(StringArray::from(vec![
            "a",
            "é",
            "",
            "日本😀"
        ])))));
        assert!(surely_writable(&batch(Arc::new(Float64Array::from(vec![
            1.0, -0.0, 1e308
        ])))));
    }

    #[test]
    fn what_the_encoder_would_refuse_does_not_pass() {
        assert!(!surely_writable(&batch(Arc::new(Float64Array::from(
            vec![1.0, f64::NAN]
        )))));
        // Valid as a whole, but the second value starts inside "é".
        assert!(!surely_writable(&batch(raw_strings(
            vec![0, 2, 3],
            "aé".as_bytes()
        ))));
        assert!(!surely_writable(&batch(raw_strings(vec![0, 1], b"\xff"))));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Never "fine" where the encoder refuses; "fine" for valid strings and finite floats.
        #[test]
        fn passes_exactly_when_the_encoder_takes_every_value(
            bytes in proptest::collection::vec(
                prop_oneof![Just(0xC3u8), Just(0xA9u8), Just(b'a'), Just(0xFFu8), Just(0xE6u8)],
                0..24,
            ),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
            floats in proptest::collection::vec(
                prop_oneof![Just(1.5), Just(f64::NAN), Just(f64::INFINITY), Just(-0.0)],
                0..4,
            ),
        ) {
            let mut offsets: Vec<i32> =
                cuts.iter().map(|c| c.index(bytes.len() + 1) as i32).collect();
            offsets.extend([0, bytes.len() as i32]);
            offsets.sort_unstable();
            let strings = batch(raw_strings(offsets, &bytes));
            let numbers = batch(Arc::new(Float64Array::from(floats)));
            for b in [strings, numbers] {
                let encoded = run(&b, Layout::Lines, Unsupported::Skip, &mut Vec::new());
                prop_assert_eq!(surely_writable(&b), encoded.is_ok());
            }
        }
    }
}
