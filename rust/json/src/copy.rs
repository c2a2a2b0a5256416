//! Joining the pieces that threads made: the reader's column buffers, the writer's encoded
//! rows. The join is a memory copy of nearly a whole batch, which one thread would do while
//! the others wait, so it is shared out among the pool's threads too.

use rayon::prelude::*;

/// Bytes one task copies: large enough to outweigh handing out the task, small enough that
/// every thread shares the copy of one big piece.
const COPY_BYTES: usize = 1 << 19;

/// Appends `parts` to `bytes`, in order, copying on the current rayon pool.
pub(crate) fn extend_in_parallel(bytes: &mut Vec<u8>, parts: &[&[u8]]) {
    let total: usize = parts.iter().map(|part| part.len()).sum();
    bytes.reserve(total);
    let mut rest = &mut bytes.spare_capacity_mut()[..total];
    let mut tasks = Vec::with_capacity(total / COPY_BYTES + parts.len());
    for chunk in parts.iter().flat_map(|part| part.chunks(COPY_BYTES)) {
        let (to, after) = rest.split_at_mut(chunk.len());
        tasks.push((to, chunk));
        rest = after;
    }
    tasks.into_par_iter().for_each(|(to, from)| {
        // SAFETY: `to` is `from.len()` bytes of `bytes`' spare capacity and `from` a piece's
        // own buffer, so both are valid and they do not overlap. (A safe loop of `write`s
        // compiles to 16-byte moves, far slower than memcpy; `write_copy_of_slice` is past
        // the crate's minimum Rust.)
        unsafe {
            std::ptr::copy_nonoverlapping(from.as_ptr(), to.as_mut_ptr().cast::<u8>(), from.len());
        }
    });
    // SAFETY: the `total` bytes after the length were all written just above.
    unsafe { bytes.set_len(bytes.len() + total) };
}

#[cfg(test)]
mod tests {
    use super::{extend_in_parallel, COPY_BYTES};

    /// Parts empty, shorter than a task, and spanning several tasks (cut mid-part), after
    /// bytes already there: the result is the plain concatenation, on any pool.
    #[test]
    fn parallel_extension_is_the_concatenation() {
        let part = |len: usize, seed: u8| -> Vec<u8> {
            (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
        };
        let parts = [
            part(0, 1),
            part(2 * COPY_BYTES + 3, 2),
            part(5, 3),
            part(COPY_BYTES - 1, 4),
            part(COPY_BYTES, 5),
        ];
        let slices: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
        let mut expected = b"head".to_vec();
        slices.iter().for_each(|p| expected.extend_from_slice(p));
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut bytes = b"head".to_vec();
            pool.install(|| extend_in_parallel(&mut bytes, &slices));
            assert!(bytes == expected, "{threads} threads");
        }
    }
}
