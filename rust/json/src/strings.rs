//! Arrow string columns, in parallel on the current rayon pool: the length of every value in
//! characters (for the length penalty) and the gather of values by index (the texts of the
//! pairs). Arrow's own kernels for these (`utf8_length`, `take`) run on one thread; these give
//! the same values.

use arrow_array::{Array, GenericStringArray, OffsetSizeTrait};
use arrow_buffer::{BooleanBufferBuilder, NullBuffer, OffsetBuffer, ScalarBuffer};
use rayon::prelude::*;

/// Values per task: enough to make a task's overhead small beside its work.
const MIN_TASK_VALUES: usize = 4096;

/// The number of Unicode code points of every value of `array`, as Python's `len(str)` and
/// Arrow's `utf8_length` count them: the bytes that are not UTF-8 continuation bytes
/// (`0x80..=0xBF`). The bytes are not checked to be UTF-8 (Arrow's kernel does not check them
/// either); a null counts the bytes its slot spans, normally none.
pub fn char_lengths<O: OffsetSizeTrait>(array: &GenericStringArray<O>) -> Vec<i64> {
    let offsets = array.value_offsets();
    let values = array.value_data();
    offsets
        .par_windows(2)
        .with_min_len(MIN_TASK_VALUES)
        .map(|w| count_chars(&values[w[0].as_usize()..w[1].as_usize()]))
        .collect()
}

/// The bytes of `bytes` that start a UTF-8 sequence (or are ASCII). Summed in `u8`s over
/// blocks of 64 bytes, which LLVM turns into byte-wide vector compares and sums (a count
/// straight into a `usize` widens every byte and runs several times slower).
fn count_chars(bytes: &[u8]) -> i64 {
    // As i8, continuation bytes 0x80..=0xBF are exactly -128..=-65.
    let starts = |block: &[u8]| -> usize {
        block
            .iter()
            .map(|&b| u8::from((b as i8) >= -0x40))
            .fold(0u8, u8::wrapping_add) as usize
    };
    let blocks = bytes.chunks_exact(64);
    let tail = starts(blocks.remainder());
    (blocks.map(starts).sum::<usize>() + tail) as i64
}

/// Why [`gather`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatherError {
    /// `indices[position]` is `index`, not below the array's `len`.
    OutOfBounds {
        position: usize,
        index: i64,
        len: usize,
    },
    /// The gathered values (`bytes` in all) pass what the array's offset type can address.
    TooLarge { bytes: usize },
}

impl std::fmt::Display for GatherError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OutOfBounds {
                position,
                index,
                len,
            } => write!(
                f,
                "index {index} at position {position} is out of bounds; expected 0 to {} \
                 (the array has {len} values)",
                *len as i64 - 1
            ),
            Self::TooLarge { bytes } => write!(
                f,
                "the gathered strings hold {bytes} bytes, more than the array's offset type \
                 addresses; expected a large_string array"
            ),
        }
    }
}

impl std::error::Error for GatherError {}

/// The values of `array` at `indices`, in that order, nulls included: what Arrow's `take`
/// returns, built in one pass of parallel copies (offsets first, then each task copies the
/// bytes of its run of values into its own part of the output).
///
/// # Errors
/// An index outside `0..array.len()`, or more bytes than `O` addresses.
pub fn gather<O: OffsetSizeTrait>(
    array: &GenericStringArray<O>,
    indices: &[i64],
) -> Result<GenericStringArray<O>, GatherError> {
    let len = array.len();
    let source = array.value_offsets();
    let values = array.value_data();
    let mut offsets = Vec::with_capacity(indices.len() + 1);
    offsets.push(O::usize_as(0));
    let mut total = 0usize;
    for (position, &index) in indices.iter().enumerate() {
        let i =
            usize::try_from(index)
                .ok()
                .filter(|&i| i < len)
                .ok_or(GatherError::OutOfBounds {
                    position,
                    index,
                    len,
                })?;
        total += (source[i + 1] - source[i]).as_usize();
        offsets.push(O::from_usize(total).ok_or(GatherError::TooLarge { bytes: total })?);
    }
    let mut out = vec![0u8; total];
    // Split the output at task boundaries; each task fills its part from its indices.
    let tasks = indices.len().div_ceil(MIN_TASK_VALUES).max(1);
    let mut parts = Vec::with_capacity(tasks);
    let mut rest = out.as_mut_slice();
    for t in 0..tasks {
        let (a, b) = (
            t * MIN_TASK_VALUES,
            ((t + 1) * MIN_TASK_VALUES).min(indices.len()),
        );
        let (part, tail) = rest.split_at_mut((offsets[b] - offsets[a]).as_usize());
        parts.push((a, b, part));
        rest = tail;
    }
    parts.into_par_iter().for_each(|(a, b, part)| {
        let mut at = 0;
        for &index in &indices[a..b] {
            let i = index as usize; // checked above
            let value = &values[source[i].as_usize()..source[i + 1].as_usize()];
            part[at..at + value.len()].copy_from_slice(value);
            at += value.len();
        }
    });
    let nulls = array.nulls().filter(|n| n.null_count() > 0).map(|n| {
        let mut bits = BooleanBufferBuilder::new(indices.len());
        for &index in indices {
            bits.append(n.is_valid(index as usize));
        }
        NullBuffer::new(bits.finish())
    });
    // SAFETY: the offsets start at 0 and never decrease (sums of lengths), the last is the
    // length of `out`, and each value is a copy of one of `array`'s values, byte for byte
    // (so UTF-8 if `array` was).
    let offsets = unsafe { OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets)) };
    Ok(unsafe { GenericStringArray::new_unchecked(offsets, out.into(), nulls) })
}

#[cfg(test)]
mod tests {
    use super::{char_lengths, gather, GatherError};
    use arrow_array::{Array, LargeStringArray, StringArray};
    use proptest::prelude::*;

    fn values(array: &StringArray) -> Vec<Option<String>> {
        array.iter().map(|v| v.map(str::to_owned)).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn char_lengths_count_code_points(
            texts in proptest::collection::vec(any::<Option<String>>(), 0..9000),
            cut in 0usize..50,
        ) {
            let array = StringArray::from(texts.clone());
            let cut = cut.min(texts.len());
            let sliced = array.slice(cut, texts.len() - cut);
            let want: Vec<i64> = texts[cut..]
                .iter()
                .map(|t| t.as_ref().map_or(0, |t| t.chars().count() as i64))
                .collect();
            prop_assert_eq!(char_lengths(&sliced), want);
        }

        #[test]
        fn gather_takes_the_values_at_the_indices(
            texts in proptest::collection::vec(any::<Option<String>>(), 1..300),
            picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..9000),
        ) {
            let array = StringArray::from(texts.clone());
            let indices: Vec<i64> = picks.iter().map(|p| p.index(texts.len()) as i64).collect();
            let got = gather(&array, &indices).unwrap();
            got.to_data().validate_full().unwrap();
            let want: Vec<Option<String>> =
                indices.iter().map(|&i| texts[i as usize].clone()).collect();
            prop_assert_eq!(values(&got), want);
        }
    }

    #[test]
    fn gather_reads_a_sliced_array_from_its_offset() {
        let array = LargeStringArray::from(vec!["skipped", "a", "日本", ""]);
        let sliced = array.slice(1, 3);
        let got = gather(&sliced, &[1, 0, 2, 1]).unwrap();
        let got: Vec<&str> = got.iter().map(|v| v.unwrap()).collect();
        assert_eq!(got, ["日本", "a", "", "日本"]);
    }

    #[test]
    fn gather_refuses_an_index_out_of_bounds() {
        let array = StringArray::from(vec!["a", "b"]);
        for bad in [2, -1] {
            assert_eq!(
                gather(&array, &[0, bad]),
                Err(GatherError::OutOfBounds {
                    position: 1,
                    index: bad,
                    len: 2
                })
            );
        }
    }

    #[test]
    fn gather_refuses_more_bytes_than_the_offsets_address() {
        let big = "x".repeat(1 << 20);
        let array = StringArray::from(vec![big.as_str()]);
        let indices = vec![0; 2048]; // 2 GiB
        assert_eq!(
            gather(&array, &indices).map(|a| a.len()),
            Err(GatherError::TooLarge { bytes: 1 << 31 })
        );
    }
}
