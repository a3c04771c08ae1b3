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
    wrong_format(Format::Safetensors, head, path, error)
}

/// `error`, from reading `head` as flax msgpack, or that the input is safetensors if it looks so.
pub(crate) fn msgpack_error(head: &[u8], path: Option<&Path>, error: Error) -> Error {
    wrong_format(Format::Msgpack, head, path, error)
}

/// The two single-file formats: what each is called, how its start looks, and what reads it.
#[derive(Clone, Copy)]
enum Format {
    Safetensors,
    Msgpack,
}

impl Format {
    fn other(self) -> Format {
        match self {
            Format::Safetensors => Format::Msgpack,
            Format::Msgpack => Format::Safetensors,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Safetensors => "safetensors",
            Format::Msgpack => "flax msgpack",
        }
    }

    fn looks_like(self, head: &[u8]) -> bool {
        match self {
            Format::Safetensors => looks_like_safetensors(head),
            Format::Msgpack => looks_like_msgpack(head),
        }
    }

    /// The function that reads this format from a path (`from_path`) or from bytes.
    fn reader(self, from_path: bool) -> &'static str {
        match (self, from_path) {
            (Format::Safetensors, true) => "safejax::from_file",
            (Format::Safetensors, false) => "safejax::from_bytes",
            (Format::Msgpack, true) => "safejax::msgpack::from_file",
            (Format::Msgpack, false) => "safejax::msgpack::from_bytes",
        }
    }
}

/// [`Error::WrongFormat`] if `head`, read as `expected`, looks like the other format (naming the
/// function to call instead); else `error`.
fn wrong_format(expected: Format, head: &[u8], path: Option<&Path>, error: Error) -> Error {
    let found = expected.other();
    if !found.looks_like(head) {
        return error;
    }
    Error::WrongFormat {
        path: path.map(Path::to_owned),
        found: found.name(),
        expected: expected.name(),
        instead: found.reader(path.is_some()),
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
