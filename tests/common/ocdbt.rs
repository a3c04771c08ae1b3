//! A minimal OCDBT encoder, for hostile databases no writer would make.

pub fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

pub fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// An uncompressed envelope around `body`.
pub fn envelope(magic: u32, body: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    out.extend_from_slice(&((body.len() + 18) as u64).to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(body);
    let crc = crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A single-file data file table.
pub fn table(path: &str) -> Vec<u8> {
    let mut out = vec![1];
    varint(&mut out, path.len() as u64);
    out.push(0);
    out.extend_from_slice(path.as_bytes());
    out
}

/// A manifest whose one version's root (of `height`) is `length` bytes at `offset` of `path`.
pub fn manifest(path: &str, height: u8, offset: u64, length: u64) -> Vec<u8> {
    let mut body = vec![7; 16];
    body.extend_from_slice(&[0, 0x80, 0x08, 0x80, 0xc2, 0xd7, 0x2f, 0x04, 0x00]);
    body.extend(table(path));
    body.extend_from_slice(&[1, 1, height, 0]);
    varint(&mut body, offset);
    varint(&mut body, length);
    body.extend_from_slice(&[1, 1, 0]);
    body.extend_from_slice(&0u64.to_le_bytes());
    body.push(0);
    envelope(0x0cdb_3a2a, &body)
}
