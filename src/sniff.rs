//! Telling the two file formats apart, so that a file given to the wrong reader is named for what
//! it is rather than reported as a corrupt file of the other format.
//!
//! A safetensors file starts with its header's length as a little-endian `u64` (below 100 MB, so
//! bytes 4..8 are zero) and then `{`; a flax msgpack file starts with a msgpack map (fixmap
//! `0x80..=0x8f`, map16 `0xde`, map32 `0xdf`), the params' top-level dict. Neither start is
//! possible in the other format: a msgpack map is at least 2^63 bytes of header when read as a
//! length, and a header length is a positive fixint or a smaller map than the JSON after it holds.

use std::path::Path;

use crate::header::MAX_HEADER_LEN;
use crate::Error;

/// Whether `head` (a file's first bytes) starts as a flax msgpack file does.
pub(crate) fn looks_like_msgpack(head: &[u8]) -> bool {
    matches!(head.first(), Some(0x80..=0x8f | 0xde | 0xdf))
}

/// Whether `head` (a file's first bytes, at least nine of them) starts as a safetensors file does.
pub(crate) fn looks_like_safetensors(head: &[u8]) -> bool {
    let Some(len) = head.get(..8) else {
        return false;
    };
    let len = u64::from_le_bytes(len.try_into().expect("8 bytes"));
    (2..=MAX_HEADER_LEN).contains(&len) && head.get(8) == Some(&b'{')
}

/// `error`, from reading `head` as safetensors, or that the input is flax msgpack if it looks so.
pub(crate) fn safetensors_error(head: &[u8], path: Option<&Path>, error: Error) -> Error {
    let instead = if path.is_some() {
        "safejax::msgpack::from_file"
    } else {
        "safejax::msgpack::from_bytes"
    };
    wrong_format(
        looks_like_msgpack(head),
        path,
        ("flax msgpack", "safetensors", instead),
        error,
    )
}

/// `error`, from reading `head` as flax msgpack, or that the input is safetensors if it looks so.
pub(crate) fn msgpack_error(head: &[u8], path: Option<&Path>, error: Error) -> Error {
    let instead = if path.is_some() {
        "safejax::from_file"
    } else {
        "safejax::from_bytes"
    };
    wrong_format(
        looks_like_safetensors(head),
        path,
        ("safetensors", "flax msgpack", instead),
        error,
    )
}

/// [`Error::WrongFormat`] with what was `found`, what `expected` and the function to call
/// `instead`, if the input looks like the other format; else `error`.
fn wrong_format(
    other: bool,
    path: Option<&Path>,
    (found, expected, instead): (&'static str, &'static str, &'static str),
    error: Error,
) -> Error {
    if !other {
        return error;
    }
    Error::WrongFormat {
        path: path.map(Path::to_owned),
        found,
        expected,
        instead,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_is_recognised_and_not_the_other() {
        let safetensors = b"\x10\0\0\0\0\0\0\0{\"__metadata__\":{}}";
        assert!(looks_like_safetensors(safetensors));
        assert!(!looks_like_msgpack(safetensors));
        for msgpack in [&b"\x81\xa6params"[..], b"\xde\x00\x02", b"\xdf\0\0\0\x02"] {
            assert!(looks_like_msgpack(msgpack));
            assert!(!looks_like_safetensors(msgpack));
        }
        assert!(!looks_like_safetensors(b"\x10\0\0\0\0\0\0\0["));
        assert!(!looks_like_safetensors(b"\x10\0\0\0\0\0\0"));
        assert!(!looks_like_msgpack(b""));
    }
}
