//! Fresh buffers for whole files and large tensors, backed by transparent huge pages where the
//! kernel offers them.
//!
//! Copying into a fresh allocation costs more in page faults than in the copy: each 4 KiB page is
//! faulted in and cleared by the kernel on first touch. On the benchmark machine (BENCHMARKS.md),
//! copying haiku ResNet50's 102.7 MB into a touched buffer took 11 ms, into a fresh allocation
//! 61 ms, and into a fresh mapping advised for transparent huge pages (`MADV_HUGEPAGE`: one fault
//! per 2 MiB) 14 ms. Kernels commonly enable huge pages only for ranges so advised
//! (`/sys/kernel/mm/transparent_hugepage/enabled` = `madvise`), so large buffers ask for them:
//! with the advice `to_bytes` of that model takes 18 ms (the safetensors crate, 66 ms), and an
//! owned load 40 to 44 ms (without it 61 ms; the safetensors crate's load and copy, 60 ms).

/// Buffers at least this large are advised: only they hold a whole aligned 2 MiB page. Only the
/// aligned 2 MiB pages inside the new buffer are advised, memory that the buffer alone occupies.
/// glibc's `malloc` serves buffers from 32 MiB up (and, until it raises its threshold, from
/// 128 KiB) with a mapping of their own, unmapped with them; smaller ones from its heap, which
/// keeps the advice after the buffer is freed: later allocations there may get huge pages too
/// (glibc leaves freed heap memory resident, so this costs no memory until it trims the heap).
const ADVISE_MIN: usize = 2 << 20;

use std::mem::MaybeUninit;

use bytemuck::{CheckedBitPattern, NoUninit};

use crate::element::{DecodeError, Endian};

/// An empty buffer with room for `len` bytes, to be filled with writes. Its memory is not zeroed
/// first: a buffer that the allocator recycles from its heap would be written twice.
pub(crate) fn buffer(len: usize) -> Vec<u8> {
    try_buffer(len).unwrap_or_else(|| std::alloc::handle_alloc_error(std::alloc::Layout::array::<u8>(len).unwrap()))
}

/// [`buffer`], or `None` where the memory cannot be had (a size read from an untrusted file).
pub(crate) fn try_buffer(len: usize) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(len).ok()?;
    advise_huge_pages(bytes.spare_capacity_mut());
    Some(bytes)
}

/// Grows `bytes` to room for `additional` more bytes (exactly, as `Vec::reserve_exact`), the new
/// room advised for huge pages as [`buffer`] advises its own: a buffer that starts small and
/// turns out large.
pub(crate) fn reserve(bytes: &mut Vec<u8>, additional: usize) {
    bytes.reserve_exact(additional);
    advise_huge_pages(bytes.spare_capacity_mut());
}

/// A vector of `n` elements filled with bytes that arrive in one piece or several (a file read in
/// chunks), each byte copied once into memory that is not zeroed first.
pub(crate) struct Filler<T> {
    data: Vec<T>,
    n: usize,
    /// How many bytes of the first `n` elements are written.
    filled: usize,
}

impl<T: NoUninit + CheckedBitPattern> Filler<T> {
    /// Room for `n` elements.
    pub(crate) fn new(n: usize) -> Self {
        let mut data = Vec::with_capacity(n);
        advise_huge_pages(as_uninit_bytes(&mut data.spare_capacity_mut()[..n]));
        Filler { data, n, filled: 0 }
    }

    /// Appends the next bytes, in memory order; `false`, writing nothing, if they overflow.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> bool {
        let room = self.n * std::mem::size_of::<T>() - self.filled;
        if bytes.len() > room {
            return false;
        }
        let spare = as_uninit_bytes(&mut self.data.spare_capacity_mut()[..self.n]);
        let to = &mut spare[self.filled..self.filled + bytes.len()];
        // SAFETY: `to` is `bytes.len()` bytes of the vector's own allocation, which `bytes` (a
        // shared borrow of other memory) cannot overlap; u8 copies need no alignment.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), to.as_mut_ptr().cast::<u8>(), bytes.len()) };
        self.filled += bytes.len();
        true
    }

    /// The elements, once every byte has arrived and the bytes are valid elements (with the
    /// little-endian bytes of the format swapped to native order on a `host` that is big-endian).
    pub(crate) fn finish(mut self, host: Endian) -> Result<Vec<T>, DecodeError> {
        let size = std::mem::size_of::<T>();
        if self.filled != self.n * size {
            return Err(DecodeError::Length);
        }
        let spare = as_uninit_bytes(&mut self.data.spare_capacity_mut()[..self.n]);
        // SAFETY: all `n * size` bytes were written by `push`, so they are initialized u8s.
        let bytes = unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<u8>(), spare.len()) };
        if host == Endian::Big {
            crate::element::swap_byte_order(bytes, size);
        }
        match bytemuck::checked::try_cast_slice::<u8, T>(bytes) {
            Ok(_) => {}
            Err(bytemuck::checked::CheckedCastError::InvalidBitPattern) => return Err(DecodeError::Invalid),
            Err(_) => unreachable!("the vector's own memory is aligned and a whole number of elements"),
        }
        // SAFETY: the first `n` elements are initialized and each is a valid `T` (just checked; for
        // numbers every bit pattern is); `n` is within the capacity reserved in `new`.
        unsafe { self.data.set_len(self.n) };
        Ok(self.data)
    }
}

/// The bytes of uninitialized elements.
fn as_uninit_bytes<T: NoUninit>(spare: &mut [MaybeUninit<T>]) -> &mut [MaybeUninit<u8>] {
    let len = std::mem::size_of_val(spare);
    // SAFETY: the same memory, borrowed uniquely for the same lifetime, as bytes that may be
    // uninitialized: `MaybeUninit<u8>` has no validity requirement and alignment 1. (What is
    // written through it becomes a `T` only after `Filler::finish` checks it.)
    unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<MaybeUninit<u8>>(), len) }
}

/// Asks the kernel to back the whole 2 MiB pages inside `buf` with transparent huge pages, when
/// `buf` is large. Only a hint: the contents do not change, and failure (a kernel without
/// transparent huge pages) changes nothing.
#[cfg(target_os = "linux")]
fn advise_huge_pages(buf: &mut [MaybeUninit<u8>]) {
    if let Some(std::ops::Range { start: first, end }) = huge_pages_inside(buf.as_mut_ptr() as usize, buf.len()) {
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

/// The whole 2 MiB pages inside the `len` bytes at address `start`, if the buffer is large enough
/// to be advised and holds one.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn huge_pages_inside(start: usize, len: usize) -> Option<std::ops::Range<usize>> {
    const HUGE_PAGE: usize = 2 << 20;
    if len < ADVISE_MIN {
        return None;
    }
    let first = start.checked_add(HUGE_PAGE - 1)? & !(HUGE_PAGE - 1);
    let end = start.checked_add(len)? & !(HUGE_PAGE - 1);
    (first < end).then_some(first..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_huge_pages_inside_the_buffer_are_advised() {
        const MIB: usize = 1 << 20;
        // Aligned: every page of the buffer.
        assert_eq!(huge_pages_inside(4 * MIB, 6 * MIB), Some(4 * MIB..10 * MIB));
        // Unaligned at both ends: the pages between, never a byte outside.
        assert_eq!(huge_pages_inside(4 * MIB + 1, 6 * MIB), Some(6 * MIB..10 * MIB));
        assert_eq!(huge_pages_inside(3 * MIB, 6 * MIB + 4096), Some(4 * MIB..8 * MIB));
        // Large enough, but no whole page inside.
        assert_eq!(huge_pages_inside(MIB, ADVISE_MIN + MIB - 1), None);
        // Too small to advise, even when aligned.
        assert_eq!(huge_pages_inside(4 * MIB, ADVISE_MIN - 1), None);
        // At the top of the address space, nothing overflows.
        assert_eq!(huge_pages_inside(usize::MAX - MIB, 4 * MIB), None);
        for (start, len) in [(12345, 5 * MIB), (2 * MIB - 1, 3 * MIB), (7 * MIB + 3, 9 * MIB)] {
            let pages = huge_pages_inside(start, len).unwrap();
            assert!(start <= pages.start && pages.end <= start + len);
            assert!(pages.start % (2 * MIB) == 0 && pages.end % (2 * MIB) == 0);
        }
    }

    #[test]
    fn vectors_hold_the_bytes_whatever_their_size() {
        for n in [0, 1, 1000, ADVISE_MIN / 4 + 3] {
            let values: Vec<u32> = (0..n as u32).map(|i| i.wrapping_mul(2_654_435_761)).collect();
            let bytes: &[u8] = bytemuck::cast_slice(&values);
            // In one piece, unaligned, and in pieces that split elements.
            let mut shifted = vec![0u8; bytes.len() + 1];
            shifted[1..].copy_from_slice(bytes);
            let mut one = Filler::<u32>::new(n);
            assert!(one.push(&shifted[1..]));
            assert!(one.finish(crate::element::HOST).unwrap() == values);
            let mut pieces = Filler::<u32>::new(n);
            for chunk in bytes.chunks(4093) {
                assert!(pieces.push(chunk));
            }
            assert!(pieces.finish(crate::element::HOST).unwrap() == values);
        }
    }

    #[test]
    fn fillers_check_length_and_validity() {
        let mut short = Filler::<u16>::new(2);
        assert!(short.push(&[1, 2, 3]));
        assert_eq!(short.finish(crate::element::HOST), Err(DecodeError::Length));
        let mut over = Filler::<u16>::new(1);
        assert!(!over.push(&[1, 2, 3]));
        assert!(over.push(&[1, 0]));
        assert_eq!(over.finish(crate::element::HOST), Ok(vec![1]));
        let mut bools = Filler::<bool>::new(3);
        assert!(bools.push(&[0, 1]) && bools.push(&[2]));
        assert_eq!(bools.finish(crate::element::HOST), Err(DecodeError::Invalid));
        let mut bools = Filler::<bool>::new(2);
        assert!(bools.push(&[1, 0]));
        assert_eq!(bools.finish(crate::element::HOST), Ok(vec![true, false]));
    }
}
