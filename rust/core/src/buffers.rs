//! Output buffers that the kernel may back with huge pages, and prefetches of inputs.

/// Buffers at least this large are advised to use transparent huge pages: one huge page.
const HUGE_PAGE: usize = 2 << 20;

/// `n` zeros, in memory the kernel is asked to back with transparent huge pages, as NumPy
/// asks for its large arrays. Under the common `madvise` setting of transparent huge pages,
/// a fresh output otherwise takes one page fault per 4 KiB on its first write, which costs
/// `all_pairs` (hundreds of MiB of output) more time than the selection itself, and the
/// one-pair methods a third of theirs.
pub(crate) fn zeroed<T: Copy + Default>(n: usize) -> Vec<T> {
    let mut values = vec![T::default(); n];
    advise_huge_pages(&mut values);
    values
}

#[cfg(target_os = "linux")]
fn advise_huge_pages<T>(values: &mut [T]) {
    const PAGE: usize = 4096;
    let bytes = std::mem::size_of_val(values);
    if bytes < HUGE_PAGE {
        return;
    }
    let start = values.as_mut_ptr() as usize;
    let first_page = start.next_multiple_of(PAGE);
    let len = (start + bytes - first_page) / PAGE * PAGE;
    // SAFETY: the whole pages advised lie inside `values`' allocation, which is live; the
    // advice only says how to back those pages and never changes what they hold. Its result
    // is ignored: without huge pages the buffer is as good, only slower to fill.
    unsafe {
        libc::madvise(first_page as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages<T>(_: &mut [T]) {}

/// Asks the processor to bring `values[k]` into cache, if `k` is in range: for reads
/// that run ahead of a stream the hardware prefetcher follows poorly.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn prefetch<T>(values: &[T], k: usize) {
    if k < values.len() {
        // SAFETY: `k` is in bounds; a prefetch only hints, reads nothing and cannot fault.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(values.as_ptr().add(k).cast());
        }
    }
}

/// Elsewhere no hint is given.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(crate) fn prefetch<T>(_: &[T], _: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_and_small_buffers_are_zeros() {
        assert!(zeroed::<i64>(HUGE_PAGE).iter().all(|&v| v == 0));
        assert_eq!(zeroed::<u8>(3), vec![0, 0, 0]);
    }
}
