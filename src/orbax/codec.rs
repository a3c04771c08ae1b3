//! The two byte codecs Orbax checkpoints use: CRC-32C (OCDBT envelopes, zarr v3 shard indexes) and
//! zstd, decoded with a bound on the output so that a small hostile input cannot claim gigabytes.

use std::cell::RefCell;
use std::io::Read;

use zstd::zstd_safe::{DCtx, WriteBuf};

use super::invalid;
use crate::Result;

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), one table of 256 entries built at
/// compile time. The checksummed data are node envelopes and shard indexes, which are small:
/// a byte-at-a-time table is fast enough and needs no dependency.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

pub(crate) fn crc32c(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |crc, &b| {
        CRC32C_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8)
    })
}

/// Decodes zstd frames whose total output is not known in advance (OCDBT nodes and manifests),
/// refusing more than `limit` bytes of output.
pub(crate) fn zstd_bounded(input: &[u8], limit: usize, what: &str) -> Result<Vec<u8>> {
    let decoder =
        zstd::stream::read::Decoder::with_buffer(input).map_err(|e| invalid(what, format_args!("zstd: {e}")))?;
    let mut out = Vec::with_capacity(input.len().saturating_mul(4).min(limit));
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| invalid(what, format_args!("zstd: {e}")))?;
    if out.len() > limit {
        return Err(invalid(
            what,
            format_args!("zstd output exceeds the limit of {limit} bytes"),
        ));
    }
    Ok(out)
}

/// Decodes zstd frames that must give exactly `expected` bytes (a zarr chunk) into `out`: a slice
/// of `expected` bytes, or an empty vector with room for them (a leaf's own buffer, whose memory
/// the decoder then writes once, never zeroed first). The decoder writes within `out`'s capacity
/// only: a frame that decodes to more is an error, never a larger buffer.
pub(crate) fn zstd_exact<C: WriteBuf + ?Sized>(input: &[u8], out: &mut C, expected: usize, what: &str) -> Result<()> {
    // One decompression context per thread: creating one costs more than decoding a small chunk
    // (benches/zstd.rs: 5 µs against 0.2 µs for a 768-byte chunk).
    thread_local! {
        static CONTEXT: RefCell<DCtx<'static>> = RefCell::new(DCtx::create());
    }
    let written = CONTEXT
        .with(|context| context.borrow_mut().decompress(out, input))
        .map_err(|code| {
            let name = zstd::zstd_safe::get_error_name(code);
            if name.contains("too small") {
                invalid(
                    what,
                    format_args!("zstd chunk decodes to more than the {expected} bytes its shape needs"),
                )
            } else {
                invalid(what, format_args!("zstd: {name}"))
            }
        })?;
    if written != expected {
        let reason = if written > expected {
            format!("zstd chunk decodes to more than the {expected} bytes its shape needs")
        } else {
            format!("zstd chunk decodes to {written} bytes, its shape needs {expected}")
        };
        return Err(invalid(what, reason));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        // The standard check value of CRC-32C.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn zstd_output_is_bounded() {
        let zeros = vec![0u8; 1 << 20];
        let frame = zstd::bulk::compress(&zeros, 3).unwrap();
        assert!(frame.len() < 1000);
        assert_eq!(zstd_bounded(&frame, 1 << 20, "t").unwrap(), zeros);
        let err = crate::orbax::invalid_orbax(zstd_bounded(&frame, 1000, "t"));
        assert!(err.contains("exceeds the limit of 1000 bytes"), "{err}");

        let mut exact = vec![1u8; 1 << 20];
        zstd_exact(&frame, &mut exact[..], 1 << 20, "t").unwrap();
        assert!(exact.iter().all(|&b| b == 0));
        let mut small = vec![0u8; 4096];
        let err = crate::orbax::invalid_orbax(zstd_exact(&frame, &mut small[..], 4096, "t"));
        assert!(err.contains("decodes to more than the 4096 bytes"), "{err}");
        let mut large = vec![0u8; (1 << 20) + 1];
        let err = crate::orbax::invalid_orbax(zstd_exact(&frame, &mut large[..], (1 << 20) + 1, "t"));
        assert!(
            err.contains("decodes to 1048576 bytes, its shape needs 1048577"),
            "{err}"
        );

        // Into a vector's spare capacity: filled to the length, or refused past its capacity.
        let mut into = Vec::with_capacity(1 << 20);
        zstd_exact(&frame, &mut into, 1 << 20, "t").unwrap();
        assert_eq!(into, zeros);
        let mut short = Vec::with_capacity(4096);
        let err = crate::orbax::invalid_orbax(zstd_exact(&frame, &mut short, 4096, "t"));
        assert!(err.contains("decodes to more than the 4096 bytes"), "{err}");
    }
}
