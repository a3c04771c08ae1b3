//! Element types of typed leaves, and the little-endian byte order of the format.

use std::borrow::Cow;

use bytemuck::{CheckedBitPattern, NoUninit};

use crate::pages::Filler;
use crate::Dtype;

pub(crate) mod sealed {
    /// Keeps `Element` to the types the format defines.
    pub trait Sealed {}
}

/// A Rust type that stores one element of a safetensors dtype: `bool`, `u8`..`u64`, `i8`..`i64`,
/// [`f16`](crate::f16), [`bf16`](crate::bf16), `f32`, `f64`.
///
/// The dtype is fixed by the type, so `Tensor<f32>` only ever holds `F32` data: a file with another
/// dtype is an error (or a conversion, with [`Options::convert_dtypes`](crate::Options::convert_dtypes)).
pub trait Element:
    Copy + Default + PartialEq + std::fmt::Debug + NoUninit + CheckedBitPattern + Send + Sync + 'static + sealed::Sealed
{
    /// The safetensors dtype of this type.
    const DTYPE: Dtype;
}

// The impls, one per dtype that a Rust type holds, come from the dtype table (`dtype.rs`). Not
// every byte is a bool: loads check each (`CheckedBitPattern`).

/// A byte order. The format is little-endian whatever the host; every conversion between elements
/// and bytes takes the host's order as a parameter, so that both branches run in tests on any host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endian {
    /// Least significant byte first: the format's order, and x86's and most ARM hosts'.
    Little,
    /// Most significant byte first (s390x, some PowerPC and MIPS hosts).
    Big,
}

/// The byte order of the host this is compiled for.
pub(crate) const HOST: Endian = if cfg!(target_endian = "little") {
    Endian::Little
} else {
    Endian::Big
};

/// Reverses the bytes of each `size`-byte element: little-endian to native order on a big-endian
/// host, and back.
pub(crate) fn swap_byte_order(bytes: &mut [u8], size: usize) {
    if size > 1 {
        for element in bytes.chunks_exact_mut(size) {
            element.reverse();
        }
    }
}

/// The little-endian bytes of `data`: borrowed on a little-endian host, swapped into a copy on a
/// big-endian one.
pub(crate) fn to_le_bytes<T: Element>(data: &[T]) -> Cow<'_, [u8]> {
    to_le_bytes_on(data, HOST)
}

/// [`to_le_bytes`] on a host of byte order `host`.
fn to_le_bytes_on<T: Element>(data: &[T], host: Endian) -> Cow<'_, [u8]> {
    let native: &[u8] = bytemuck::cast_slice(data);
    match host {
        Endian::Little => Cow::Borrowed(native),
        Endian::Big => {
            let mut swapped = native.to_vec();
            swap_byte_order(&mut swapped, std::mem::size_of::<T>());
            Cow::Owned(swapped)
        }
    }
}

/// Why bytes could not become elements.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The byte count is not a multiple of the element size.
    Length,
    /// A byte pattern that the type cannot hold (a `bool` other than 0 or 1).
    Invalid,
}

/// Copies little-endian bytes into a new `Vec<T>`, each byte once, into memory not zeroed first.
pub(crate) fn vec_from_le_bytes<T: Element>(bytes: &[u8]) -> Result<Vec<T>, DecodeError> {
    vec_from_le_bytes_on(bytes, HOST)
}

/// [`vec_from_le_bytes`] on a host of byte order `host`.
fn vec_from_le_bytes_on<T: Element>(bytes: &[u8], host: Endian) -> Result<Vec<T>, DecodeError> {
    let size = std::mem::size_of::<T>();
    if bytes.len() % size != 0 {
        return Err(DecodeError::Length);
    }
    let mut filler = Filler::new(bytes.len() / size);
    filler.push(bytes);
    filler.finish(host)
}

/// Elements from little-endian bytes that arrive in pieces (a file read in chunks): straight into
/// the vector when the total length is known, else gathered first.
pub(crate) enum Pieces<T> {
    Known(Filler<T>),
    Unknown(Vec<u8>),
    /// More bytes than the known length.
    Overflow,
}

impl<T: Element> Pieces<T> {
    /// For `len` bytes in all, if known.
    pub(crate) fn new(len: Option<usize>) -> Self {
        let size = std::mem::size_of::<T>();
        match len {
            Some(len) if len % size == 0 => Pieces::Known(Filler::new(len / size)),
            _ => Pieces::Unknown(Vec::new()),
        }
    }

    /// Appends the next bytes.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        match self {
            Pieces::Known(filler) => {
                if !filler.push(bytes) {
                    *self = Pieces::Overflow;
                }
            }
            Pieces::Unknown(all) => all.extend_from_slice(bytes),
            Pieces::Overflow => {}
        }
    }

    /// The elements.
    pub(crate) fn finish(self) -> Result<Vec<T>, DecodeError> {
        match self {
            Pieces::Known(filler) => filler.finish(HOST),
            Pieces::Unknown(all) => vec_from_le_bytes(&all),
            Pieces::Overflow => Err(DecodeError::Length),
        }
    }
}

/// Views little-endian bytes as `&[T]` without copying where the host is little-endian and the
/// bytes are aligned for `T`; copies otherwise.
pub(crate) fn slice_from_le_bytes<T: Element>(bytes: &[u8]) -> Result<Cow<'_, [T]>, DecodeError> {
    slice_from_le_bytes_on(bytes, HOST)
}

/// [`slice_from_le_bytes`] on a host of byte order `host`.
fn slice_from_le_bytes_on<T: Element>(bytes: &[u8], host: Endian) -> Result<Cow<'_, [T]>, DecodeError> {
    if host == Endian::Little {
        match bytemuck::checked::try_cast_slice::<u8, T>(bytes) {
            Ok(slice) => return Ok(Cow::Borrowed(slice)),
            Err(bytemuck::checked::CheckedCastError::InvalidBitPattern) => return Err(DecodeError::Invalid),
            Err(_) => {} // misaligned or odd length: the copy below sorts them out
        }
    }
    vec_from_le_bytes_on(bytes, host).map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{bf16, f16};

    #[test]
    fn swap_reverses_each_element() {
        let mut bytes = [1u8, 2, 3, 4, 5, 6, 7, 8];
        swap_byte_order(&mut bytes, 4);
        assert_eq!(bytes, [4, 3, 2, 1, 8, 7, 6, 5]);
        swap_byte_order(&mut bytes, 2);
        assert_eq!(bytes, [3, 4, 1, 2, 7, 8, 5, 6]);
        let mut single = [9u8, 8];
        swap_byte_order(&mut single, 1);
        assert_eq!(single, [9, 8]);
    }

    #[test]
    fn little_endian_encoding_is_explicit() {
        // The bytes of 1.0f32 in the file are 00 00 80 3f on every host.
        assert_eq!(&*to_le_bytes(&[1.0f32]), &[0x00, 0x00, 0x80, 0x3f]);
        assert_eq!(vec_from_le_bytes::<f32>(&[0x00, 0x00, 0x80, 0x3f]).unwrap(), vec![1.0]);
        assert_eq!(vec_from_le_bytes::<u16>(&[0x01, 0x02]).unwrap(), vec![0x0201]);
        assert_eq!(&*to_le_bytes(&[0x0102_0304i32]), &[4, 3, 2, 1]);
    }

    /// Each element type, one sample value, and what its bytes are in either order.
    fn check_both_orders<T: Element + bytemuck::Pod>(value: T, le: &[u8], be: &[u8]) {
        // What a host of each order holds in memory for `value`, simulated on this host: a value
        // whose native bytes are that order's bytes.
        let on_host = |bytes: &[u8]| -> T { bytemuck::pod_read_unaligned(bytes) };
        let native_for = |host: Endian| -> T {
            let order = if cfg!(target_endian = "little") { le } else { be };
            let wanted = match host {
                Endian::Little => le,
                Endian::Big => be,
            };
            if wanted == order {
                value
            } else {
                on_host(wanted)
            }
        };
        for host in [Endian::Little, Endian::Big] {
            let native = native_for(host);
            // Writing: whatever the host holds, the file gets little-endian bytes.
            assert_eq!(&*to_le_bytes_on(&[native, native], host), [le, le].concat(), "{host:?}");
            // Reading: little-endian bytes become what the host holds for `value`.
            let read: Vec<T> = vec_from_le_bytes_on(&[le, le].concat(), host).unwrap();
            assert_eq!(
                bytemuck::cast_slice::<T, u8>(&read),
                bytemuck::cast_slice::<T, u8>(&[native, native]),
                "{host:?}"
            );
            let viewed = slice_from_le_bytes_on::<T>(le, host).unwrap();
            assert_eq!(
                bytemuck::cast_slice::<T, u8>(&viewed),
                bytemuck::cast_slice::<T, u8>(&[native]),
                "{host:?}"
            );
            // A big-endian host never borrows: its elements must be swapped.
            if host == Endian::Big && le.len() > 1 {
                assert!(matches!(viewed, Cow::Owned(_)));
            }
        }
    }

    #[test]
    fn both_byte_orders_convert_to_little_endian() {
        check_both_orders(0x12u8, &[0x12], &[0x12]);
        check_both_orders(-2i8, &[0xfe], &[0xfe]);
        check_both_orders(0x0102u16, &[2, 1], &[1, 2]);
        check_both_orders(-2i16, &[0xfe, 0xff], &[0xff, 0xfe]);
        check_both_orders(0x0102_0304u32, &[4, 3, 2, 1], &[1, 2, 3, 4]);
        check_both_orders(-2i32, &[0xfe, 0xff, 0xff, 0xff], &[0xff, 0xff, 0xff, 0xfe]);
        let u = 0x0102_0304_0506_0708u64;
        check_both_orders(u, &u.to_le_bytes(), &u.to_be_bytes());
        check_both_orders(-3i64, &(-3i64).to_le_bytes(), &(-3i64).to_be_bytes());
        check_both_orders(1.0f32, &[0, 0, 0x80, 0x3f], &[0x3f, 0x80, 0, 0]);
        check_both_orders(-2.5f64, &(-2.5f64).to_le_bytes(), &(-2.5f64).to_be_bytes());
        check_both_orders(f16::ONE, &[0x00, 0x3c], &[0x3c, 0x00]);
        check_both_orders(bf16::ONE, &[0x80, 0x3f], &[0x3f, 0x80]);
    }

    #[test]
    fn the_host_order_is_the_compiled_one() {
        let one = 1u32;
        let host = if bytemuck::bytes_of(&one)[0] == 1 {
            Endian::Little
        } else {
            Endian::Big
        };
        assert_eq!(HOST, host);
    }

    #[test]
    fn bools_are_checked() {
        assert_eq!(vec_from_le_bytes::<bool>(&[0, 1, 1]).unwrap(), vec![false, true, true]);
        assert_eq!(vec_from_le_bytes::<bool>(&[0, 2]), Err(DecodeError::Invalid));
        assert_eq!(slice_from_le_bytes::<bool>(&[3]), Err(DecodeError::Invalid));
    }

    #[test]
    fn views_borrow_when_aligned_and_copy_otherwise() {
        let backing: Vec<u32> = vec![0x3f80_0000, 0x4000_0000, 0];
        let bytes: &[u8] = bytemuck::cast_slice(&backing);
        let aligned = slice_from_le_bytes::<f32>(&bytes[..8]).unwrap();
        assert!(matches!(aligned, Cow::Borrowed(_)));
        assert_eq!(&*aligned, &[1.0, 2.0]);
        let misaligned = slice_from_le_bytes::<u16>(&bytes[1..5]).unwrap();
        assert!(matches!(misaligned, Cow::Owned(_)));
        assert_eq!(vec_from_le_bytes::<f32>(&bytes[..7]), Err(DecodeError::Length));
    }
}
