//! A cursor over untrusted bytes: LEB128 varints, fixed-width integers and counts that are checked
//! against the bytes left before anything is allocated for them.

use super::invalid;
use crate::Result;

pub(crate) struct Bytes<'a> {
    input: &'a [u8],
    pos: usize,
    /// What is being decoded, for error messages (`manifest.ocdbt`, `d/1234…`).
    what: &'a str,
}

impl<'a> Bytes<'a> {
    pub(crate) fn new(input: &'a [u8], what: &'a str) -> Self {
        Bytes { input, pos: 0, what }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.input.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn fail(&self, reason: impl std::fmt::Display) -> crate::Error {
        invalid(self.what, format_args!("{reason} (at byte {})", self.pos))
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.fail(format_args!("needs {n} more bytes, {} left", self.remaining())));
        }
        let bytes = &self.input[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32_be(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    pub(crate) fn u32_le(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    pub(crate) fn u64_le(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    /// An unsigned LEB128 varint of at most 64 bits.
    pub(crate) fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let byte = self.u8()?;
            let part = u64::from(byte & 0x7f);
            if i == 9 && byte > 1 {
                return Err(self.fail("a varint overflows 64 bits"));
            }
            value |= part << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.fail("a varint overflows 64 bits"))
    }

    /// A varint that must fit in `max`.
    pub(crate) fn varint_max(&mut self, max: u64, what: &str) -> Result<u64> {
        let value = self.varint()?;
        if value > max {
            return Err(self.fail(format_args!("{what} is {value}, more than the limit {max}")));
        }
        Ok(value)
    }

    /// A varint used as a length or index.
    pub(crate) fn usize(&mut self, max: usize, what: &str) -> Result<usize> {
        Ok(self.varint_max(max as u64, what)? as usize)
    }

    /// A count of items of which each takes at least `min_bytes` more bytes of input: a count
    /// that cannot fit in what is left is refused before any allocation.
    pub(crate) fn count(&mut self, min_bytes: usize, what: &str) -> Result<usize> {
        let n = self.varint()?;
        let fits = (self.remaining() / min_bytes.max(1)) as u64;
        if n > fits {
            return Err(self.fail(format_args!(
                "{what} is {n}, but only {} bytes are left",
                self.remaining()
            )));
        }
        Ok(n as usize)
    }

    /// `n` varints.
    pub(crate) fn varints(&mut self, n: usize) -> Result<Vec<u64>> {
        (0..n).map(|_| self.varint()).collect()
    }

    /// `n` varints, each at most `max`.
    pub(crate) fn lengths(&mut self, n: usize, max: usize, what: &str) -> Result<Vec<usize>> {
        (0..n).map(|_| self.usize(max, what)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_decode_and_overflow_is_refused() {
        let mut b = Bytes::new(&[0x00, 0x7f, 0x80, 0x01, 0xe0, 0x5d], "t");
        assert_eq!(b.varints(4).unwrap(), vec![0, 127, 128, 12000]);
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Bytes::new(&max, "t").varint().unwrap(), u64::MAX);
        let over = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(Bytes::new(&over, "t").varint().is_err());
        assert!(Bytes::new(&[0x80], "t").varint().is_err(), "truncated");
    }

    #[test]
    fn counts_beyond_the_input_are_refused() {
        let mut b = Bytes::new(&[0x05, 1, 2, 3], "t");
        let err = crate::orbax::invalid_orbax(b.count(1, "the number of files"));
        assert!(
            err.contains("the number of files is 5, but only 3 bytes are left"),
            "{err}"
        );
        assert_eq!(Bytes::new(&[0x03, 1, 2, 3], "t").count(1, "n").unwrap(), 3);
    }
}
