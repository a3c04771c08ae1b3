//! The OCDBT binary format (tensorstore's Optionally-Cooperative Distributed B+Tree), as Orbax
//! writes it: the envelope every encoded object has, the data file table, the manifest and the
//! B-tree nodes. Pure functions from bytes to values; reading files is [`super::kvstore`]'s job.
//!
//! Field order and limits follow tensorstore's codecs (`kvstore/ocdbt/format/*.cc`); every count
//! is checked against the bytes left before it is allocated, and every length against the format's
//! own limits.

use super::bytes::Bytes;
use super::codec::{crc32c, zstd_bounded};
use super::invalid;
use crate::Result;

pub(crate) const MANIFEST_MAGIC: u32 = 0x0cdb_3a2a;
pub(crate) const BTREE_NODE_MAGIC: u32 = 0x0cdb_20de;
/// Longest data file path and key that the format allows.
const MAX_PATH_LEN: usize = 65535;
const MAX_KEY_LEN: usize = 65535;
/// Most entries one B-tree node may hold.
const MAX_NODE_ARITY: usize = 1024 * 1024;
/// Largest inline value.
const MAX_INLINE_VALUE: usize = 1024 * 1024;
/// Largest decoded manifest: a manifest holds at most a few dozen versions.
pub(crate) const MAX_MANIFEST_BYTES: usize = 16 << 20;

/// Opens an envelope: `u32be magic | u64le length | varint version | varint compression | body |
/// u32le crc32c`. Checks the magic, the length, the version and the checksum, and returns the
/// body, decompressed to at most `limit` bytes.
pub(crate) fn open_envelope(encoded: &[u8], magic: u32, limit: usize, what: &str) -> Result<Vec<u8>> {
    if encoded.len() < 16 {
        return Err(invalid(
            what,
            format_args!("{} bytes, shorter than an OCDBT header", encoded.len()),
        ));
    }
    let (covered, digest) = encoded.split_at(encoded.len() - 4);
    let stored = u32::from_le_bytes(digest.try_into().expect("4 bytes"));
    let mut b = Bytes::new(covered, what);
    let found = b.u32_be()?;
    if found != magic {
        return Err(invalid(
            what,
            format_args!("expected magic {magic:08x}, found {found:08x}"),
        ));
    }
    let length = b.u64_le()?;
    if length != encoded.len() as u64 {
        return Err(invalid(
            what,
            format_args!("the header says {length} bytes, the data is {} bytes", encoded.len()),
        ));
    }
    let actual = crc32c(covered);
    if actual != stored {
        return Err(invalid(
            what,
            format_args!("CRC-32C mismatch: stored {stored:08x}, computed {actual:08x}"),
        ));
    }
    let version = b.varint()?;
    if version != 0 {
        return Err(invalid(what, format_args!("format version {version}, only 0 is known")));
    }
    match b.varint()? {
        0 => Ok(b.take(b.remaining())?.to_vec()),
        1 => zstd_bounded(b.take(b.remaining())?, limit, what),
        other => Err(invalid(what, format_args!("unknown compression format {other}"))),
    }
}

/// A file that holds node or value bytes, relative to the database root: `base` (the part that
/// children's own tables are relative to) then `relative`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DataFile {
    pub base: String,
    pub relative: String,
}

impl DataFile {
    pub(crate) fn path(&self) -> String {
        format!("{}{}", self.base, self.relative)
    }
}

/// Where a node or value is: `length` bytes at `offset` of `file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Location {
    pub file: DataFile,
    pub offset: u64,
    pub length: u64,
}

/// A data file table: prefix-compressed paths, each split into base and relative path.
/// `transitive` is the base path of the file the table was read from.
fn data_file_table(b: &mut Bytes, transitive: &str) -> Result<Vec<DataFile>> {
    // Each file has at least a suffix length and a base length.
    let n = b.count(2, "the number of data files")?;
    let mut prefix = vec![0usize];
    prefix.extend(b.lengths(n.saturating_sub(1), MAX_PATH_LEN, "a data file path prefix length")?);
    let suffix = b.lengths(n, MAX_PATH_LEN, "a data file path suffix length")?;
    let base = b.lengths(n, MAX_PATH_LEN, "a data file base path length")?;
    let mut files: Vec<DataFile> = Vec::with_capacity(n);
    let mut previous: Vec<u8> = Vec::new();
    for i in 0..n {
        if prefix[i] > previous.len() {
            return Err(b.fail(format_args!(
                "data file {i}: prefix length {} exceeds the previous path's {}",
                prefix[i],
                previous.len()
            )));
        }
        let len = prefix[i] + suffix[i];
        if len + transitive.len() > MAX_PATH_LEN {
            return Err(b.fail(format_args!("data file {i}: a path of {len} bytes")));
        }
        if base[i] > len {
            return Err(b.fail(format_args!(
                "data file {i}: base path length {} exceeds its path length {len}",
                base[i]
            )));
        }
        let mut path = previous[..prefix[i]].to_vec();
        path.extend_from_slice(b.take(suffix[i])?);
        let text = std::str::from_utf8(&path).map_err(|_| b.fail(format_args!("data file {i}: path is not UTF-8")))?;
        let (base_part, relative) = text.split_at(base[i]);
        files.push(DataFile {
            base: format!("{transitive}{base_part}"),
            relative: relative.to_owned(),
        });
        previous = path;
    }
    Ok(files)
}

/// Resolves file indexes, offsets and lengths read as columns into locations.
fn locations(b: &mut Bytes, files: &[DataFile], n: usize) -> Result<Vec<Option<Location>>> {
    let ids = b.varints(n)?;
    let offsets = b.varints(n)?;
    let lengths = b.varints(n)?;
    ids.into_iter()
        .zip(offsets)
        .zip(lengths)
        .map(|((id, offset), length)| {
            // tensorstore marks an absent tree (an empty database) with all-ones offset and length.
            if offset == u64::MAX && length == u64::MAX {
                return Ok(None);
            }
            let file = files
                .get(usize::try_from(id).unwrap_or(usize::MAX))
                .ok_or_else(|| b.fail(format_args!("data file id {id} outside the table of {}", files.len())))?;
            if offset.checked_add(length).is_none() {
                return Err(b.fail("a data reference's offset + length overflows"));
            }
            Ok(Some(Location {
                file: file.clone(),
                offset,
                length,
            }))
        })
        .collect()
}

/// The manifest's configuration, as far as reading needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Config {
    /// `false` for a numbered manifest: `manifest.ocdbt` holds only this configuration and the
    /// versions are in `manifest.<16 hex digits>` files.
    pub single: bool,
    pub max_decoded_node_bytes: u64,
}

/// The latest version of a database: its root node (none for an empty database) and height.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Root {
    pub generation: u64,
    pub height: u8,
    pub location: Option<Location>,
    pub num_keys: u64,
}

/// A decoded manifest: the configuration and, unless it is the configuration-only manifest of a
/// numbered database, the latest version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub config: Config,
    pub root: Option<Root>,
}

pub(crate) fn decode_manifest(encoded: &[u8], what: &str) -> Result<Manifest> {
    let body = open_envelope(encoded, MANIFEST_MAGIC, MAX_MANIFEST_BYTES, what)?;
    let mut b = Bytes::new(&body, what);
    b.take(16)?; // uuid
    let single = match b.u8()? {
        0 => true,
        1 => false,
        other => {
            return Err(b.fail(format_args!(
                "manifest kind {other}, expected 0 (single) or 1 (numbered)"
            )))
        }
    };
    let _max_inline_value_bytes = b.varint()?;
    let max_decoded_node_bytes = b.varint()?;
    let arity_log2 = b.u8()?;
    if !(1..=16).contains(&arity_log2) {
        return Err(b.fail(format_args!("version tree arity log2 {arity_log2} outside [1, 16]")));
    }
    match b.varint()? {
        0 => {}
        1 => {
            b.u32_le()?; // zstd level
        }
        other => return Err(b.fail(format_args!("compression method {other}, expected 0 or 1"))),
    }
    let config = Config {
        single,
        max_decoded_node_bytes,
    };
    if !single {
        return Ok(Manifest { config, root: None });
    }
    let files = data_file_table(&mut b, "")?;
    // Inline versions: at most 2^arity_log2 of them, the latest last.
    let n = b.varint_max(1 << arity_log2, "the number of inline versions")? as usize;
    if n == 0 {
        return Err(b.fail("a manifest without versions"));
    }
    let generations = b.varints(n)?;
    if generations.windows(2).any(|w| w[0] >= w[1]) || generations[0] == 0 {
        return Err(b.fail("generation numbers do not increase from 1"));
    }
    let heights: Vec<u8> = (0..n).map(|_| b.u8()).collect::<Result<_>>()?;
    let roots = locations(&mut b, &files, n)?;
    let num_keys = b.varints(n)?;
    b.varints(n)?; // num_tree_bytes
    b.varints(n)?; // num_indirect_value_bytes
    for _ in 0..n {
        b.u64_le()?; // commit time
    }
    // Version tree nodes index older generations, which a reader of the latest does not need;
    // they are still parsed, so that the manifest is checked to its end.
    let m = b.varint_max(64, "the number of version tree nodes")? as usize;
    b.varints(m)?; // generation
    locations(&mut b, &files, m)?;
    b.varints(m)?; // num_generations
    for _ in 0..m {
        b.u64_le()?;
    }
    let node_heights: Vec<u8> = (0..m).map(|_| b.u8()).collect::<Result<_>>()?;
    if node_heights.windows(2).any(|w| w[0] <= w[1]) {
        return Err(b.fail("version tree node heights do not strictly decrease"));
    }
    if !b.is_empty() {
        return Err(b.fail(format_args!("{} trailing bytes", b.remaining())));
    }
    let last = n - 1;
    Ok(Manifest {
        config,
        root: Some(Root {
            generation: generations[last],
            height: heights[last],
            location: roots[last].clone(),
            num_keys: num_keys[last],
        }),
    })
}

/// A leaf entry's value: inline bytes, or a range of a data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Inline(Vec<u8>),
    Indirect(Location),
}

/// An interior entry: the child's first key (relative to the node's inherited prefix), how much of
/// it every key below shares, and where the child is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Child {
    pub key: Vec<u8>,
    pub subtree_common_prefix: usize,
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entries {
    Leaf(Vec<(Vec<u8>, Value)>),
    Interior(Vec<Child>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub height: u8,
    pub entries: Entries,
}

/// Decodes a B-tree node read from a file whose base path is `base` (its data file table's paths
/// are relative to it).
pub(crate) fn decode_node(encoded: &[u8], base: &str, limit: usize, what: &str) -> Result<Node> {
    let body = open_envelope(encoded, BTREE_NODE_MAGIC, limit, what)?;
    let mut b = Bytes::new(&body, what);
    let height = b.u8()?;
    let files = data_file_table(&mut b, base)?;
    // Every entry takes at least a suffix length and one more column byte.
    let n = b.count(2, "the number of entries")?;
    if n == 0 {
        return Err(b.fail("an empty B-tree node"));
    }
    if n > MAX_NODE_ARITY {
        return Err(b.fail(format_args!("{n} entries, more than the limit {MAX_NODE_ARITY}")));
    }
    let mut prefix = vec![0usize];
    prefix.extend(b.lengths(n - 1, MAX_KEY_LEN, "a key prefix length")?);
    let suffix = b.lengths(n, MAX_KEY_LEN, "a key suffix length")?;
    let subtree = if height > 0 {
        b.lengths(n, MAX_KEY_LEN, "a subtree common prefix length")?
    } else {
        Vec::new()
    };
    let mut keys: Vec<Vec<u8>> = Vec::with_capacity(n);
    for i in 0..n {
        let previous: &[u8] = keys.last().map_or(&[], Vec::as_slice);
        if prefix[i] > previous.len() {
            return Err(b.fail(format_args!(
                "key {i}: prefix length {} exceeds the previous key's {}",
                prefix[i],
                previous.len()
            )));
        }
        if prefix[i] + suffix[i] > MAX_KEY_LEN {
            return Err(b.fail(format_args!("key {i}: longer than {MAX_KEY_LEN} bytes")));
        }
        let mut key = previous[..prefix[i]].to_vec();
        key.extend_from_slice(b.take(suffix[i])?);
        if i > 0 && key.as_slice() <= previous {
            return Err(b.fail(format_args!("key {i} is not greater than key {}", i - 1)));
        }
        if height > 0 && subtree[i] > key.len() {
            return Err(b.fail(format_args!(
                "key {i}: subtree common prefix {} exceeds the key's length {}",
                subtree[i],
                key.len()
            )));
        }
        keys.push(key);
    }
    let entries = if height == 0 {
        let lengths = b.varints(n)?;
        let mut inline = Vec::with_capacity(n);
        for (i, &len) in lengths.iter().enumerate() {
            match b.u8()? {
                0 if len > MAX_INLINE_VALUE as u64 => {
                    return Err(b.fail(format_args!("inline value {i} of {len} bytes, above the limit")))
                }
                0 => inline.push(true),
                1 => inline.push(false),
                kind => return Err(b.fail(format_args!("value kind {kind} of entry {i}, expected 0 or 1"))),
            }
        }
        let indirect = inline.iter().filter(|&&i| !i).count();
        let ids = b.varints(indirect)?;
        let offsets = b.varints(indirect)?;
        let mut refs = ids.into_iter().zip(offsets);
        let mut values = Vec::with_capacity(n);
        for (i, key) in keys.into_iter().enumerate() {
            let value = if inline[i] {
                None
            } else {
                let (id, offset) = refs.next().expect("one per indirect value");
                let file = files
                    .get(usize::try_from(id).unwrap_or(usize::MAX))
                    .ok_or_else(|| b.fail(format_args!("data file id {id} outside the table of {}", files.len())))?;
                if offset.checked_add(lengths[i]).is_none() {
                    return Err(b.fail("a value's offset + length overflows"));
                }
                Some(Value::Indirect(Location {
                    file: file.clone(),
                    offset,
                    length: lengths[i],
                }))
            };
            values.push((key, value));
        }
        let mut leaf = Vec::with_capacity(n);
        for (i, (key, value)) in values.into_iter().enumerate() {
            let value = match value {
                Some(v) => v,
                None => Value::Inline(b.take(lengths[i] as usize)?.to_vec()),
            };
            leaf.push((key, value));
        }
        Entries::Leaf(leaf)
    } else {
        let children = locations(&mut b, &files, n)?;
        b.varints(n)?; // num_keys
        b.varints(n)?; // num_tree_bytes
        b.varints(n)?; // num_indirect_value_bytes
        let mut interior = Vec::with_capacity(n);
        for ((key, location), subtree_common_prefix) in keys.into_iter().zip(children).zip(subtree) {
            let location = location.ok_or_else(|| b.fail("an interior entry without a child"))?;
            interior.push(Child {
                key,
                subtree_common_prefix,
                location,
            });
        }
        Entries::Interior(interior)
    };
    if !b.is_empty() {
        return Err(b.fail(format_args!("{} trailing bytes", b.remaining())));
    }
    Ok(Node { height, entries })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Wraps `body` in an uncompressed envelope, as tensorstore does.
    pub(crate) fn envelope(magic: u32, body: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        out.extend_from_slice(&((body.len() + 12 + 2 + 4) as u64).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(body);
        let crc = crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// The hand-written manifest of the reference (orbax-format.md §3), which Orbax accepted.
    fn reference_manifest_body() -> Vec<u8> {
        let mut body = vec![0x29; 16];
        body.extend_from_slice(&[0x00, 0x80, 0x08, 0x80, 0xc2, 0xd7, 0x2f, 0x04, 0x00]);
        body.extend_from_slice(&[0x01, 0x22, 0x00]);
        body.extend_from_slice(b"d/bb12604a9aecb8773d35de34ec76e37c");
        body.extend_from_slice(&[
            0x01, 0x01, 0x00, 0x00, 0xe0, 0x5d, 0xda, 0x0a, 0x0e, 0xda, 0x0a, 0xe0, 0x5d,
        ]);
        body.extend_from_slice(&0x18ed_3f50_24af_412e_u64.to_le_bytes());
        body.push(0x00);
        body
    }

    #[test]
    fn the_reference_manifest_decodes() {
        let encoded = envelope(MANIFEST_MAGIC, &reference_manifest_body());
        assert_eq!(encoded.len(), 102, "as the reference says");
        let manifest = decode_manifest(&encoded, "manifest.ocdbt").unwrap();
        assert!(manifest.config.single);
        assert_eq!(manifest.config.max_decoded_node_bytes, 100_000_000);
        let root = manifest.root.unwrap();
        assert_eq!((root.generation, root.height, root.num_keys), (1, 0, 14));
        let location = root.location.unwrap();
        assert_eq!(location.file.path(), "d/bb12604a9aecb8773d35de34ec76e37c");
        assert_eq!((location.offset, location.length), (12000, 1370));
    }

    #[test]
    fn a_flipped_byte_fails_the_checksum() {
        let mut encoded = envelope(MANIFEST_MAGIC, &reference_manifest_body());
        encoded[40] ^= 1;
        let err = crate::orbax::invalid_orbax(decode_manifest(&encoded, "manifest.ocdbt"));
        assert!(err.contains("CRC-32C mismatch"), "{err}");
        let err = crate::orbax::invalid_orbax(decode_manifest(&encoded[..50], "m"));
        assert!(err.contains("the header says 102 bytes, the data is 50 bytes"), "{err}");
        let err = crate::orbax::invalid_orbax(open_envelope(&encoded, BTREE_NODE_MAGIC, 100, "n"));
        assert!(err.contains("expected magic 0cdb20de, found 0cdb3a2a"), "{err}");
    }

    #[test]
    fn data_file_tables_share_prefixes_and_split_base_paths() {
        // Two files: "ocdbt.process_0/d/aa" (base "ocdbt.process_0/") and "ocdbt.process_0/d/ab".
        let mut body = vec![0x02, 19, 20, 1, 16, 16];
        body.extend_from_slice(b"ocdbt.process_0/d/aab");
        let files = data_file_table(&mut Bytes::new(&body, "t"), "x/").unwrap();
        assert_eq!(files[0].base, "x/ocdbt.process_0/");
        assert_eq!(files[0].relative, "d/aa");
        assert_eq!(files[1].path(), "x/ocdbt.process_0/d/ab");
        let bad = [0x01, 0x02, 0x05, b'a', b'b'];
        let err = crate::orbax::invalid_orbax(data_file_table(&mut Bytes::new(&bad, "t"), ""));
        assert!(err.contains("base path length 5 exceeds its path length 2"), "{err}");
    }

    /// A leaf node of two keys: "a/0" inline "xy", "a/1" out of line in file 0.
    pub(crate) fn leaf_body(height: u8) -> Vec<u8> {
        let mut body = vec![height, 0x01, 0x04, 0x00];
        body.extend_from_slice(b"d/f0");
        body.extend_from_slice(&[0x02, 0x02, 0x03, 0x01]);
        body.extend_from_slice(b"a/01");
        body.extend_from_slice(&[0x02, 0x05, 0x00, 0x01, 0x00, 0x07]);
        body.extend_from_slice(b"xy");
        body
    }

    #[test]
    fn leaf_nodes_decode_inline_and_indirect_values() {
        let node = decode_node(&envelope(BTREE_NODE_MAGIC, &leaf_body(0)), "p/", 1 << 20, "n").unwrap();
        let Entries::Leaf(entries) = node.entries else {
            panic!("a leaf")
        };
        assert_eq!(entries[0], (b"a/0".to_vec(), Value::Inline(b"xy".to_vec())));
        let Value::Indirect(loc) = &entries[1].1 else {
            panic!("indirect")
        };
        assert_eq!(entries[1].0, b"a/1");
        assert_eq!((loc.file.path().as_str(), loc.offset, loc.length), ("p/d/f0", 7, 5));
    }

    #[test]
    fn keys_must_increase() {
        let mut body = leaf_body(0);
        body[15] = b'0'; // the second key becomes "a/" + "0", equal to the first
        let err = crate::orbax::invalid_orbax(decode_node(&envelope(BTREE_NODE_MAGIC, &body), "", 1 << 20, "n"));
        assert!(err.contains("key 1 is not greater than key 0"), "{err}");
    }
}
