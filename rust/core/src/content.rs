//! What a prompt's texts say, as numbers selection can use: which responses repeat an
//! earlier one byte for byte, and a stable hash of the whole instance to key its draws by.
//! Texts come as byte slices (the caller reads them out of Arrow buffers); the Python
//! reference in `python/dpov2/pairing/content.py` computes the same from `str` values.

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

/// Per response, the index within its prompt of the first response whose text is the same
/// bytes (its own index for a first occurrence). `text(k)` is the flat response `k`; prompt
/// `p` owns `offsets[p]..offsets[p + 1]` (offsets already checked by the caller).
pub fn duplicate_of<'a>(text: impl Fn(usize) -> &'a [u8], offsets: &[usize]) -> Vec<i64> {
    let mut out = Vec::with_capacity(offsets.last().copied().unwrap_or(0));
    for range in offsets.windows(2) {
        let start = range[0];
        for k in start..range[1] {
            let t = text(k);
            let first =
                (start..k).find(|&j| out[j - offsets[0]] == (j - start) as i64 && text(j) == t);
            out.push(first.map_or(k - start, |j| j - start) as i64);
        }
    }
    out
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
}
