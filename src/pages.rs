//! Fresh buffers for whole files and large tensors, backed by transparent huge pages where the
//! kernel offers them.
//!
//! Copying into a fresh allocation costs more in page faults than in the copy: each 4 KiB page is
//! faulted in and cleared by the kernel on first touch. On the benchmark machine (BENCHMARKS.md),
//! copying haiku ResNet50's 102.7 MB into a touched buffer took 8.8 ms, into a fresh allocation
//! 56 ms, and into a fresh mapping advised for transparent huge pages (`MADV_HUGEPAGE`: one fault
//! per 2 MiB) 14 ms. Kernels commonly enable huge pages only for ranges so advised
//! (`/sys/kernel/mm/transparent_hugepage/enabled` = `madvise`), so large buffers ask for them:
//! with the advice `to_bytes` of that model takes 18 ms (the safetensors crate, 65 ms), and an
//! owned load 42 ms instead of 61 ms.

/// Buffers at least this large are advised: only they hold a whole aligned 2 MiB page. Only the
/// aligned 2 MiB pages inside the new buffer are advised, memory that the buffer alone occupies.
/// glibc's `malloc` serves buffers from 32 MiB up (and, until it raises its threshold, from
/// 128 KiB) with a mapping of their own, unmapped with them; smaller ones from its heap, which
/// keeps the advice after the buffer is freed: later allocations there may get huge pages too
/// (glibc leaves freed heap memory resident, so this costs no memory until it trims the heap).
const ADVISE_MIN: usize = 2 << 20;

use std::mem::MaybeUninit;

/// An empty buffer with room for `len` bytes, to be filled with writes. Its memory is not zeroed
/// first: a buffer that the allocator recycles from its heap would be written twice.
pub(crate) fn buffer(len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len);
    advise_huge_pages(bytes.spare_capacity_mut());
    bytes
}

/// A new vector of the elements whose in-memory bytes are `bytes` (of any alignment), copied once
/// into memory that is not zeroed first; `bytes.len()` must be a multiple of the element size.
pub(crate) fn vec_from_bytes<T: bytemuck::Pod>(bytes: &[u8]) -> Vec<T> {
    let size = std::mem::size_of::<T>();
    assert!(size > 0 && bytes.len() % size == 0, "a whole number of elements");
    let n = bytes.len() / size;
    let mut data: Vec<T> = Vec::with_capacity(n);
    let spare_bytes = as_uninit_bytes(&mut data.spare_capacity_mut()[..n]);
    advise_huge_pages(spare_bytes);
    // SAFETY: `spare_bytes` is `n * size == bytes.len()` bytes of the vector's own allocation, which
    // `bytes` (a shared borrow of other memory) cannot overlap; u8 copies need no alignment.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), spare_bytes.as_mut_ptr().cast::<u8>(), bytes.len()) };
    // SAFETY: the first `n` elements were just written in full, and every bit pattern is a valid
    // `T` (`Pod`); `n` is within the capacity reserved above.
    unsafe { data.set_len(n) };
    data
}

/// The bytes of uninitialized elements.
fn as_uninit_bytes<T: bytemuck::Pod>(spare: &mut [MaybeUninit<T>]) -> &mut [MaybeUninit<u8>] {
    let len = std::mem::size_of_val(spare);
    // SAFETY: the same memory, borrowed uniquely for the same lifetime, as bytes that may be
    // uninitialized: `MaybeUninit<u8>` has no validity requirement and alignment 1, and `T: Pod`
    // has no padding that a byte view could expose as something else.
    unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<MaybeUninit<u8>>(), len) }
}

/// Asks the kernel to back the whole 2 MiB pages inside `buf` with transparent huge pages, when
/// `buf` is large. Only a hint: the contents do not change, and failure (a kernel without
/// transparent huge pages) changes nothing.
#[cfg(target_os = "linux")]
fn advise_huge_pages(buf: &mut [MaybeUninit<u8>]) {
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
fn advise_huge_pages(_buf: &mut [MaybeUninit<u8>]) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_have_room_whatever_their_size() {
        for len in [0, 1, 4096, ADVISE_MIN + 12345] {
            let bytes = buffer(len);
            assert!(bytes.is_empty() && bytes.capacity() >= len);
        }
    }

    #[test]
    fn vectors_hold_the_bytes_whatever_their_size() {
        for n in [0, 1, 1000, ADVISE_MIN / 4 + 3] {
            let values: Vec<u32> = (0..n as u32).map(|i| i.wrapping_mul(2_654_435_761)).collect();
            let bytes: &[u8] = bytemuck::cast_slice(&values);
            // Unaligned input too.
            let mut shifted = vec![0u8; bytes.len() + 1];
            shifted[1..].copy_from_slice(bytes);
            assert!(vec_from_bytes::<u32>(bytes) == values);
            assert!(vec_from_bytes::<u32>(&shifted[1..]) == values);
        }
    }
}
