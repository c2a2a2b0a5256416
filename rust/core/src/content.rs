//! What a prompt's texts say, as numbers selection can use: which responses repeat an
//! earlier one byte for byte, and a stable hash of the whole instance to key its draws by.
//! Texts come as byte slices (the caller reads them out of Arrow buffers); the Python
//! reference in `python/dpov2/pairing/content.py` computes the same from `str` values.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use rayon::prelude::*;

use crate::PairError;

const FNV_OFFSET: u64 = 0xCBF2_9CE4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01B3;

/// FNV-1a, 64 bits, over a stream of bytes.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(FNV_OFFSET)
    }
}

impl Fnv1a {
    pub fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
    }

    /// `bytes` preceded by its length (8 bytes, little-endian): a sequence of pieces hashes
    /// differently from any other split of the same bytes.
    pub fn piece(&mut self, bytes: &[u8]) {
        self.bytes(&(bytes.len() as u64).to_le_bytes());
        self.bytes(bytes);
    }

    pub fn finish(self) -> u64 {
        self.0
    }
}

/// The content key of one instance: FNV-1a over the number of prompt pieces (8 bytes,
/// little-endian), each prompt piece (the text, or each message's role then content) and
/// each response text, every piece preceded by its length.
pub fn content_key<'a>(
    prompt: impl ExactSizeIterator<Item = &'a [u8]>,
    responses: impl Iterator<Item = &'a [u8]>,
) -> u64 {
    let mut hash = Fnv1a::default();
    hash.bytes(&(prompt.len() as u64).to_le_bytes());
    prompt.for_each(|piece| hash.piece(piece));
    responses.for_each(|text| hash.piece(text));
    hash.finish()
}

/// Prompts per parallel task of [`duplicate_of`]: enough work (thousands of texts) to
/// outweigh a task's start and its own hash table.
const PROMPTS_PER_TASK: usize = 256;

/// Per response, the index within its prompt of the first response whose text is the same
/// bytes (its own index for a first occurrence). `text(k)` is the flat response `k`; prompt
/// `p` owns `offsets[p]..offsets[p + 1]` (offsets already checked by the caller).
///
/// Only texts of equal byte length can be equal, so a text whose length no earlier text of
/// its prompt has is a first occurrence without a look at its bytes: most responses, whose
/// lengths differ. The others are hashed and looked up among the first occurrences of their
/// length, equality confirmed byte for byte on a hash match, so the work stays linear in
/// the bytes however many responses a prompt has. Prompts are independent, so runs of them
/// are done in parallel on the current rayon pool, each run writing its own part of the
/// result.
pub fn duplicate_of<'a>(text: impl Fn(usize) -> &'a [u8] + Sync, offsets: &[usize]) -> Vec<i64> {
    duplicate_of_hashed(text, offsets, BuildHasherDefault::<WordHasher>::default())
}

/// [`duplicate_of`] with the hash given, so tests can force every text to collide.
fn duplicate_of_hashed<'a, S: BuildHasher + Clone + Send + Sync>(
    text: impl Fn(usize) -> &'a [u8] + Sync,
    offsets: &[usize],
    hasher: S,
) -> Vec<i64> {
    let (Some(&first), Some(&last)) = (offsets.first(), offsets.last()) else {
        return Vec::new();
    };
    let mut out = vec![0; last - first];
    // Each task: the offsets of its prompts (shared with the next task at the boundary) and
    // the part of `out` they own.
    let mut tasks = Vec::with_capacity(offsets.len() / PROMPTS_PER_TASK + 1);
    let mut rest = out.as_mut_slice();
    let prompts = offsets.len() - 1;
    for a in (0..prompts).step_by(PROMPTS_PER_TASK) {
        let bounds = &offsets[a..=(a + PROMPTS_PER_TASK).min(prompts)];
        let (mine, after) = rest.split_at_mut(bounds[bounds.len() - 1] - bounds[0]);
        tasks.push((bounds, mine));
        rest = after;
    }
    tasks.into_par_iter().for_each(|(bounds, out)| {
        // Per length, the first text of the prompt with it, until a second one comes: then
        // that first text moves to `first` (it is a first occurrence of its bytes), which
        // from then on holds every first occurrence of that length.
        let mut lengths: HashMap<usize, Option<usize>, S> = HashMap::with_hasher(hasher.clone());
        let mut first: HashMap<&[u8], i64, S> = HashMap::with_hasher(hasher.clone());
        let base = bounds[0];
        for range in bounds.windows(2) {
            let (start, end) = (range[0], range[1]);
            lengths.clear();
            first.clear();
            // Keeps the tables (whose clearing costs their capacity) sized to this prompt.
            lengths.shrink_to(end - start);
            first.shrink_to(end - start);
            for k in start..end {
                let bytes = text(k);
                out[k - base] = match lengths.entry(bytes.len()) {
                    Entry::Vacant(slot) => {
                        slot.insert(Some(k));
                        (k - start) as i64
                    }
                    Entry::Occupied(mut slot) => {
                        if let Some(j) = slot.get_mut().take() {
                            first.insert(text(j), (j - start) as i64);
                        }
                        *first.entry(bytes).or_insert((k - start) as i64)
                    }
                };
            }
        }
    });
    out
}

/// A fast, non-cryptographic hash of bytes, eight at a time (the FxHash step, then the
/// SplitMix64 finaliser so that every bit of the result depends on every input bit).
/// Equal hashes are only a hint: [`duplicate_of`] confirms equality on the bytes.
#[derive(Default)]
struct WordHasher(u64);

impl WordHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517C_C1B7_2722_0A95);
    }
}

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for chunk in &mut words {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            // Zero padding is unambiguous: `[u8]` hashes its length before its bytes.
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(word));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// `offsets` (of `n_prompts + 1` entries over `n` responses) as indices, with the errors
/// selection gives for offsets that do not delimit the responses.
pub fn checked_offsets(offsets: &[i64], n: usize) -> Result<Vec<usize>, PairError> {
    let (&first, _) = offsets.split_first().ok_or(PairError::EmptyOffsets)?;
    if first != 0 {
        return Err(PairError::OffsetsStart(first));
    }
    for (prompt, w) in offsets.windows(2).enumerate() {
        let (start, end) = (w[0], w[1]);
        if end < start {
            return Err(PairError::OffsetsDecrease { prompt, start, end });
        }
        if end > n as i64 {
            return Err(PairError::OffsetsPastEnd {
                prompt,
                end,
                n_scores: n,
            });
        }
    }
    let end = offsets[offsets.len() - 1];
    if end != n as i64 {
        return Err(PairError::OffsetsShort { end, n_scores: n });
    }
    Ok(offsets.iter().map(|&o| o as usize).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_published_values() {
        // Test vectors of the FNV reference (Landon Curt Noll's fnv test suite).
        let hash = |s: &[u8]| {
            let mut h = Fnv1a::default();
            h.bytes(s);
            h.finish()
        };
        assert_eq!(hash(b""), 0xCBF2_9CE4_8422_2325);
        assert_eq!(hash(b"a"), 0xAF63_DC4C_8601_EC8C);
        assert_eq!(hash(b"foobar"), 0x8594_4171_F739_67E8);
    }

    #[test]
    fn pieces_are_told_apart_from_other_splits() {
        let one = content_key([&b"ab"[..]].into_iter(), [&b"c"[..]].into_iter());
        let other = content_key([&b"a"[..]].into_iter(), [&b"bc"[..]].into_iter());
        assert_ne!(one, other);
    }

    #[test]
    fn copies_point_at_the_first_occurrence_within_their_prompt() {
        let texts: [&[u8]; 6] = [b"a", b"b", b"a", b"a", b"x", b"x"];
        let got = duplicate_of(|k| texts[k], &[0, 4, 5, 6]);
        assert_eq!(got, vec![0, 1, 0, 0, 0, 0]);
    }

    /// The definition: for each response, the first earlier (or same) response of its
    /// prompt with equal bytes, by comparing with every one.
    fn by_comparison(texts: &[Vec<u8>], offsets: &[usize]) -> Vec<i64> {
        let mut out = Vec::new();
        for w in offsets.windows(2) {
            for k in w[0]..w[1] {
                let first = (w[0]..=k).find(|&j| texts[j] == texts[k]).unwrap_or(k);
                out.push((first - w[0]) as i64);
            }
        }
        out
    }

    /// Texts that are easy to confuse: empty ones, ones that differ only in their last byte
    /// (also past the first eight bytes), a prefix of another, zero bytes at the end, many
    /// copies; over prompts of one, none and many responses.
    fn tricky_texts() -> (Vec<Vec<u8>>, Vec<usize>) {
        let long = b"0123456789abcdef".repeat(5);
        let mut texts: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"ab".to_vec(),
            b"ab\0".to_vec(),
            b"".to_vec(),
            b"ab".to_vec(),
            b"ab\0\0".to_vec(),
        ];
        for last in [b'x', b'y', b'x', b'z', b'y'] {
            let mut t = long.clone();
            t.push(last);
            texts.push(t);
        }
        texts.push(long.clone());
        texts.push(long[..long.len() - 1].to_vec());
        texts.extend((0..200).map(|i| vec![b'c'; 1 + i % 3]));
        texts.push(b"alone".to_vec());
        let n = texts.len();
        (texts, vec![0, 6, 6, 13, n - 1, n])
    }

    #[test]
    fn only_equal_bytes_are_copies() {
        let (texts, offsets) = tricky_texts();
        let got = duplicate_of(|k| &texts[k][..], &offsets);
        assert_eq!(got, by_comparison(&texts, &offsets));
        assert_eq!(&got[..6], [0, 1, 2, 0, 1, 5]);
        assert_eq!(&got[6..13], [0, 1, 0, 3, 1, 5, 6]);
    }

    /// Prompts enough for many parallel tasks (of 0 to 12 responses, so task boundaries
    /// fall between all kinds of prompts), on a pool of several threads: the same result as
    /// the definition.
    #[test]
    fn prompts_split_over_tasks_give_the_same_copies() {
        let (texts, _) = tricky_texts();
        let many: Vec<Vec<u8>> = texts
            .iter()
            .cycle()
            .take(40 * texts.len())
            .cloned()
            .collect();
        let (mut offsets, mut size) = (vec![0], 0);
        while offsets[offsets.len() - 1] < many.len() {
            size = (size * 7 + 3) % 13;
            offsets.push((offsets[offsets.len() - 1] + size).min(many.len()));
        }
        assert!(offsets.len() > 3 * PROMPTS_PER_TASK);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        let got = pool.install(|| duplicate_of(|k| &many[k][..], &offsets));
        assert_eq!(got, by_comparison(&many, &offsets));
    }

    /// Every text hashes to the same value.
    #[derive(Default)]
    struct Collide;

    impl Hasher for Collide {
        fn write(&mut self, _: &[u8]) {}
        fn finish(&self) -> u64 {
            7
        }
    }

    #[test]
    fn colliding_hashes_never_merge_different_texts() {
        let (texts, offsets) = tricky_texts();
        let forced = BuildHasherDefault::<Collide>::default();
        let got = duplicate_of_hashed(|k| &texts[k][..], &offsets, forced);
        assert_eq!(got, by_comparison(&texts, &offsets));
    }
}
