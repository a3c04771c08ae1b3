//! Fresh buffers for whole files and large tensors, backed by transparent huge pages where the
//! kernel offers them.
//!
//! Copying into a fresh allocation costs more in page faults than in the copy: each 4 KiB page is
//! faulted in and cleared by the kernel on first touch. Measured on the benchmark machine for
//! 102 MB (see BENCHMARKS.md), a copy into a touched buffer took 17 ms, into a fresh one 100 ms,
//! and into a fresh one advised for transparent huge pages (`MADV_HUGEPAGE`, one fault per 2 MiB)
//! 26 ms. Linux kernels commonly enable huge pages only for ranges so advised
//! (`/sys/kernel/mm/transparent_hugepage/enabled` = `madvise`), so large buffers ask for them.

/// Buffers at least this large are advised. glibc's `malloc` serves them with a mapping of their
/// own (its mmap threshold never exceeds 32 MiB on 64-bit hosts), which `free` unmaps, so the
/// advice covers this buffer alone and leaves with it; smaller buffers come from the heap, where
/// pages are often touched already.
const ADVISE_MIN: usize = 32 << 20;

/// A fresh zeroed buffer of `len` bytes, to be overwritten.
pub(crate) fn zeroed_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    advise_huge_pages(&mut bytes);
    bytes
}

/// A fresh zeroed vector of `n` elements, to be overwritten.
pub(crate) fn zeroed_vec<T: bytemuck::Pod>(n: usize) -> Vec<T> {
    let mut data: Vec<T> = bytemuck::allocation::zeroed_vec(n);
    advise_huge_pages(bytemuck::cast_slice_mut(&mut data));
    data
}

/// Asks the kernel to back the whole 2 MiB pages inside `buf` with transparent huge pages, when
/// `buf` is large. Only a hint: the contents do not change, and failure (a kernel without
/// transparent huge pages) changes nothing.
#[cfg(target_os = "linux")]
fn advise_huge_pages(buf: &mut [u8]) {
    const HUGE_PAGE: usize = 2 << 20;
    if buf.len() < ADVISE_MIN {
        return;
    }
    let start = buf.as_mut_ptr() as usize;
    let (first, end) = (
        (start + HUGE_PAGE - 1) & !(HUGE_PAGE - 1),
        (start + buf.len()) & !(HUGE_PAGE - 1),
    );
    if first < end {
        // SAFETY: `first..end` lies inside `buf`, memory this process owns and holds a unique
        // borrow of, and starts on a page boundary, as madvise requires. MADV_HUGEPAGE changes
        // only how the kernel backs the range with physical memory, never its contents or its
        // mapping, so no Rust reference to the memory is affected. The result is ignored: on
        // failure the pages are simply small.
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_buf: &mut [u8]) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_zeroed_whatever_their_size() {
        for len in [0, 1, 4096, ADVISE_MIN + 12345] {
            let bytes = zeroed_bytes(len);
            assert_eq!(bytes.len(), len);
            assert!(bytes.iter().all(|&b| b == 0));
        }
        let data: Vec<f32> = zeroed_vec(ADVISE_MIN / 4 + 3);
        assert_eq!(data.len(), ADVISE_MIN / 4 + 3);
        assert!(data.iter().all(|&x| x == 0.0));
    }
}
