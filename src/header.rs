//! The safetensors header: parsed and checked on read, laid out as the reference writer does on write.
//!
//! A file is an 8-byte little-endian header length `n`, `n` bytes of JSON, then the tensor data. Every
//! size read from the file goes through checked arithmetic, the header length is capped before any
//! allocation, and the entries must cover the data exactly: no gaps, no overlaps, no trailing bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::arena::{Arena, Slot};
use crate::{Dtype, Error, Result};

/// The largest header accepted, as in the safetensors crate.
pub(crate) const MAX_HEADER_LEN: u64 = 100_000_000;
/// The key of the metadata map in the header.
pub(crate) const METADATA_KEY: &str = "__metadata__";
const LEN_BYTES: usize = 8;

/// One tensor entry of a header. Its key and shape are held by the header, in one buffer each
/// ([`Header::key_of`], [`Header::shape_of`]): a header of many small tensors costs an entry of
/// 40 bytes and its text per tensor, not two allocations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    key: Slot,
    shape: Slot,
    /// Byte range within its input (the whole file), or within the side buffer.
    pub start: usize,
    pub end: usize,
    /// The [`Span`], packed beside the dtype so that the entry is 40 bytes, not 56.
    span_index: u32,
    span_kind: SpanKind,
    pub dtype: Dtype,
}

/// A shape as a header keeps it: each dimension in LEB128, seven bits a byte, the last byte of each
/// with its top bit clear. A dimension of `d` decimal digits takes at most `d` bytes, so a shape
/// costs no more than its JSON text; as `usize`s, a 64-dimension shape of one-digit sizes would
/// cost four times its text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dims<'h>(&'h [u8]);

impl<'h> Dims<'h> {
    /// How many dimensions.
    pub(crate) fn len(self) -> usize {
        self.0.iter().filter(|&&b| b < 0x80).count()
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn iter(self) -> DimsIter<'h> {
        DimsIter {
            bytes: self.0,
            left: self.len(),
        }
    }

    pub(crate) fn to_vec(self) -> Vec<usize> {
        self.iter().collect()
    }

    /// Appends `shape` to `out` in this form.
    fn encode(shape: &[usize], out: &mut Vec<u8>) {
        for &dim in shape {
            let mut rest = dim;
            while rest >= 0x80 {
                out.push((rest & 0x7f) as u8 | 0x80);
                rest >>= 7;
            }
            out.push(rest as u8);
        }
    }
}

/// The dimensions of a [`Dims`], in order.
pub(crate) struct DimsIter<'h> {
    bytes: &'h [u8],
    left: usize,
}

impl Iterator for DimsIter<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let (mut dim, mut shift) = (0usize, 0);
        for (i, &b) in self.bytes.iter().enumerate() {
            // Only `Dims::encode` wrote these bytes, from `usize`s: no shift passes the width.
            dim |= usize::from(b & 0x7f) << shift;
            if b < 0x80 {
                self.bytes = &self.bytes[i + 1..];
                self.left -= 1;
                return Some(dim);
            }
            shift += 7;
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for DimsIter<'_> {}

/// [`Span`]'s variant, stored apart from its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpanKind {
    Input,
    Side,
    Owned,
}

impl Entry {
    /// Where the entry's bytes are.
    pub(crate) fn span(&self) -> Span {
        let n = self.span_index as usize;
        match self.span_kind {
            SpanKind::Input => Span::Input(n),
            SpanKind::Side => Span::Side,
            SpanKind::Owned => Span::Owned(n),
        }
    }

    /// Moves the entry's bytes to `span`.
    pub(crate) fn set_span(&mut self, span: Span) -> Result<()> {
        let (kind, n) = match span {
            Span::Input(n) => (SpanKind::Input, n),
            Span::Side => (SpanKind::Side, 0),
            Span::Owned(n) => (SpanKind::Owned, n),
        };
        // Inputs and buffers number at most one per entry, and a header holds far fewer than 2^32.
        self.span_index = u32::try_from(n).map_err(|_| Error::header(format_args!("input {n} is past the last")))?;
        self.span_kind = kind;
        Ok(())
    }
}

/// Where an entry's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Span {
    /// In input number `n` (a file, or one shard of a checkpoint): lent to leaves for the
    /// input's lifetime.
    Input(usize),
    /// In the header's side buffer: bytes a reader had to assemble (msgpack chunks, plain numbers).
    Side,
    /// The whole of the deserializer's own buffer number `n` (an Orbax array, decoded): handed
    /// over to the leaf, which keeps it where it can hold bytes (`Value`, `DynTensor`).
    Owned(usize),
}

/// A parsed and validated header.
#[derive(Debug, Default)]
pub(crate) struct Header {
    /// The entries in the order the header lists them.
    pub entries: Vec<Entry>,
    /// The entries' keys.
    keys: Arena<String>,
    /// The entries' shapes.
    dims: Arena<Vec<u8>>,
    /// Where [`Header::push`] encodes a shape before the arena takes it (kept, so that a push
    /// allocates nothing of its own).
    encoding: Vec<u8>,
    pub metadata: Option<Metadata>,
    /// Bytes of entries with [`Span::Side`].
    pub side: Vec<u8>,
}

impl Header {
    /// Appends an entry.
    pub(crate) fn push(
        &mut self,
        key: &str,
        dtype: Dtype,
        shape: &[usize],
        range: (usize, usize),
        span: Span,
    ) -> Result<()> {
        self.encoding.clear();
        Dims::encode(shape, &mut self.encoding);
        let shape = self.dims.push(&self.encoding);
        self.push_entry(key, dtype, shape, range, span)
    }

    /// Appends an entry whose shape the arena has taken (`None` if it was full).
    fn push_entry(
        &mut self,
        key: &str,
        dtype: Dtype,
        shape: Option<Slot>,
        (start, end): (usize, usize),
        span: Span,
    ) -> Result<()> {
        // A header is capped at 100 MB; the readers of other formats make one entry per tensor.
        let full = || Error::header("its keys and shapes are too many to hold");
        let mut entry = Entry {
            key: self.keys.push(key).ok_or_else(full)?,
            shape: shape.ok_or_else(full)?,
            start,
            end,
            span_index: 0,
            span_kind: SpanKind::Side,
            dtype,
        };
        entry.set_span(span)?;
        self.entries.push(entry);
        Ok(())
    }

    /// The key of `entry`, one of this header's entries.
    pub(crate) fn key_of(&self, entry: &Entry) -> &str {
        self.keys.get(entry.key)
    }

    /// The shape of `entry`, one of this header's entries.
    pub(crate) fn shape_of(&self, entry: &Entry) -> Dims<'_> {
        Dims(self.dims.get(entry.shape))
    }

    /// The key of entry `i`.
    pub(crate) fn key(&self, i: usize) -> &str {
        self.key_of(&self.entries[i])
    }

    /// The shape of entry `i`.
    pub(crate) fn shape(&self, i: usize) -> Dims<'_> {
        self.shape_of(&self.entries[i])
    }

    /// The keys, in the order of the entries.
    pub(crate) fn keys(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.entries.iter().map(|e| self.key_of(e))
    }

    /// Appends entry `i` of `other` (its bytes still where `other` said), with another span.
    pub(crate) fn push_from(&mut self, other: &Header, i: usize, span: Span) -> Result<()> {
        let entry = &other.entries[i];
        // The shape as `other` encoded it.
        let shape = self.dims.push(other.shape_of(entry).0);
        self.push_entry(other.key_of(entry), entry.dtype, shape, (entry.start, entry.end), span)
    }

    /// Parses the header of a whole file held in `bytes` and checks the entries against the data.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Header> {
        Self::parse_head(bytes, bytes.len())
    }

    /// Parses the header from `head`, the start of a file of `file_len` bytes, and checks the
    /// entries against the data. `head` holds the length prefix and the header, or is the whole
    /// file if that is shorter: [`data_start`] tells how much to read.
    pub(crate) fn parse_head(head: &[u8], file_len: usize) -> Result<Header> {
        let data_start = data_start(head)?;
        if head.len() < data_start {
            return Err(Error::Truncated {
                what: "the header",
                needed: data_start as u64,
                found: head.len() as u64,
            });
        }
        let mut header = Self::parse_json(&head[LEN_BYTES..data_start])?;
        header.check_coverage(file_len - data_start)?;
        // From here on, offsets are within the whole file.
        for entry in &mut header.entries {
            entry.start += data_start;
            entry.end += data_start;
        }
        Ok(header)
    }

    /// Parses the JSON text of a header; entry offsets stay relative to the data section. Each entry
    /// is checked as it is read, so that the header is held once, as entries.
    pub(crate) fn parse_json(json: &[u8]) -> Result<Header> {
        let text = std::str::from_utf8(json).map_err(|e| Error::header(format_args!("not UTF-8: {e}")))?;
        if !text.starts_with('{') {
            return Err(Error::header("does not start with `{`"));
        }
        let mut found = None;
        let mut json = serde_json::Deserializer::from_str(text);
        let mut header = Header::default();
        // Reserved once from their bound: a growing vector would hold the entries up to three
        // times over while it moves.
        header.entries.reserve_exact(entry_count_bound(text));
        let parsed = json
            .deserialize_map(HeaderVisitor {
                error: &mut found,
                header: &mut header,
            })
            .and_then(|()| json.end());
        parsed.map_err(|e| match (e.classify(), found) {
            // What the visitor found about one entry or the metadata, unless the JSON ended there.
            (serde_json::error::Category::Eof, _) | (_, None) => {
                Error::header(format_args!("not a valid header object: {e}"))
            }
            (_, Some(err)) => err,
        })?;
        let mut by_key: Vec<&str> = header.keys().collect();
        by_key.sort_unstable();
        if let Some(pair) = by_key.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(Error::DuplicateKey {
                key: pair[0].to_owned(),
            });
        }
        Ok(header)
    }

    /// Checks that the entries tile `data_len` bytes exactly.
    pub(crate) fn check_coverage(&self, data_len: usize) -> Result<()> {
        let mut order: Vec<&Entry> = self.entries.iter().collect();
        order.sort_by_key(|e| (e.start, e.end));
        let mut covered = 0usize;
        let mut previous: Option<&Entry> = None;
        for entry in order {
            if entry.start < covered {
                let previous = previous.expect("only a tensor ends past 0");
                return Err(Error::OverlappingData {
                    key: self.key_of(entry).to_owned(),
                    start: entry.start as u64,
                    previous: self.key_of(previous).to_owned(),
                    previous_end: covered as u64,
                });
            }
            if entry.start > covered {
                return Err(Error::DataGap {
                    start: covered as u64,
                    end: entry.start as u64,
                    next: self.key_of(entry).to_owned(),
                });
            }
            if entry.end > covered {
                covered = entry.end;
                previous = Some(entry);
            }
        }
        match covered.cmp(&data_len) {
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Less => Err(Error::TrailingBytes {
                len: (data_len - covered) as u64,
            }),
            std::cmp::Ordering::Greater => Err(Error::Truncated {
                what: "the tensor data",
                needed: covered as u64,
                found: data_len as u64,
            }),
        }
    }
}

/// Where the data starts in a file that starts with `prefix` (at least its 8 length bytes).
pub(crate) fn data_start(prefix: &[u8]) -> Result<usize> {
    // The length is capped at MAX_HEADER_LEN, so the cast and the sum cannot overflow.
    Ok(LEN_BYTES + read_header_len(prefix)? as usize)
}

/// Reads and caps the header length.
pub(crate) fn read_header_len(bytes: &[u8]) -> Result<u64> {
    let Some(prefix) = bytes.first_chunk::<LEN_BYTES>() else {
        return Err(Error::Truncated {
            what: "the header length",
            needed: LEN_BYTES as u64,
            found: bytes.len() as u64,
        });
    };
    let len = u64::from_le_bytes(*prefix);
    if len > MAX_HEADER_LEN {
        return Err(Error::HeaderTooLarge {
            len,
            max: MAX_HEADER_LEN,
        });
    }
    if len < 2 {
        return Err(Error::header(format_args!(
            "length {len} is too small for a JSON object"
        )));
    }
    Ok(len)
}

/// The most dimensions a tensor may have: numpy's limit (`NPY_MAXDIMS`), so any array of JAX or
/// numpy fits. It also bounds what a shape costs to hold.
pub(crate) const MAX_RANK: usize = 64;

/// One header entry as written in JSON, before it is checked.
#[derive(Deserialize)]
struct RawEntry {
    dtype: RawDtype,
    shape: RawShape,
    data_offsets: (u64, u64),
}

/// A dtype name, parsed as it is read: no string is allocated unless the name is unknown, for the
/// error. A header lists one per tensor, so this is on the per-tensor path of every load.
struct RawDtype(std::result::Result<Dtype, String>);

impl<'de> Deserialize<'de> for RawDtype {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DtypeVisitor;
        impl Visitor<'_> for DtypeVisitor {
            type Value = RawDtype;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a dtype name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<RawDtype, E> {
                Ok(RawDtype(name.parse().map_err(|_| name.to_owned())))
            }
        }
        deserializer.deserialize_str(DtypeVisitor)
    }
}

/// A shape, refused as soon as it has more than [`MAX_RANK`] dimensions. Dimensions are kept as
/// `usize`, what the entry holds, unless one does not fit (only on a 32-bit target), in which case
/// the shape as written is kept for the error. Shapes of up to [`INLINE_RANK`] dimensions (every
/// shape of a real model) are read without an allocation.
enum RawShape {
    Inline([usize; INLINE_RANK], u8),
    Dims(Vec<usize>),
    TooLarge(Vec<u64>),
}

const INLINE_RANK: usize = 8;

impl<'de> Deserialize<'de> for RawShape {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ShapeVisitor;
        impl<'de> Visitor<'de> for ShapeVisitor {
            type Value = RawShape;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a list of at most {MAX_RANK} dimensions")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawShape, A::Error> {
                let too_many = || de::Error::custom(format_args!("a shape has at most {MAX_RANK} dimensions"));
                let mut dims = [0usize; MAX_RANK];
                let mut rank = 0;
                while let Some(dim) = seq.next_element::<u64>()? {
                    if rank == MAX_RANK {
                        return Err(too_many());
                    }
                    let Ok(fits) = usize::try_from(dim) else {
                        // Read on as written: the error shows the shape.
                        let mut wide: Vec<u64> = dims[..rank].iter().map(|&d| d as u64).collect();
                        wide.push(dim);
                        while let Some(dim) = seq.next_element::<u64>()? {
                            if wide.len() == MAX_RANK {
                                return Err(too_many());
                            }
                            wide.push(dim);
                        }
                        return Ok(RawShape::TooLarge(wide));
                    };
                    dims[rank] = fits;
                    rank += 1;
                }
                if rank <= INLINE_RANK {
                    let mut inline = [0usize; INLINE_RANK];
                    inline[..rank].copy_from_slice(&dims[..rank]);
                    Ok(RawShape::Inline(inline, rank as u8))
                } else {
                    Ok(RawShape::Dims(dims[..rank].to_vec()))
                }
            }
        }
        deserializer.deserialize_seq(ShapeVisitor)
    }
}

impl RawEntry {
    /// Checks the entry and appends it to `header`.
    fn check(self, key: &str, header: &mut Header) -> Result<()> {
        let dtype = match self.dtype.0 {
            Ok(dtype) => dtype,
            Err(found) => {
                return Err(Error::UnknownDtype {
                    key: key.to_owned(),
                    found,
                })
            }
        };
        let wide = |shape: &[usize]| shape.iter().map(|&d| d as u64).collect();
        let shape: &[usize] = match &self.shape {
            RawShape::Inline(dims, rank) => &dims[..usize::from(*rank)],
            RawShape::Dims(dims) => dims,
            RawShape::TooLarge(shape) => {
                return Err(Error::ShapeOverflow {
                    key: key.to_owned(),
                    shape: shape.clone(),
                })
            }
        };
        let bits = crate::tensor::element_count(shape).and_then(|n| n.checked_mul(dtype.bit_size()));
        let Some(bits) = bits else {
            return Err(Error::ShapeOverflow {
                key: key.to_owned(),
                shape: wide(shape),
            });
        };
        if bits % 8 != 0 {
            return Err(Error::InvalidEntry {
                key: key.to_owned(),
                reason: format!("{dtype} shape {shape:?} does not fill a whole number of bytes"),
            });
        }
        let bytes = bits / 8;
        let (start, end) = self.data_offsets;
        let (start, end) = match (usize::try_from(start), usize::try_from(end)) {
            (Ok(s), Ok(e)) if s <= e => (s, e),
            _ => {
                return Err(Error::InvalidEntry {
                    key: key.to_owned(),
                    reason: format!("data offsets [{start}, {end}] are not a valid range"),
                })
            }
        };
        if end - start != bytes {
            return Err(Error::DataSizeMismatch {
                key: key.to_owned(),
                dtype,
                shape: wide(shape),
                expected: bytes as u64,
                found: (end - start) as u64,
            });
        }
        header.push(key, dtype, shape, (start, end), Span::Input(0))
    }
}

/// A key as the JSON text holds it: borrowed unless it has escapes.
struct KeyText<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for KeyText<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = KeyText<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<KeyText<'de>, E> {
                Ok(KeyText(key.into()))
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<KeyText<'de>, E> {
                Ok(KeyText(key.to_owned().into()))
            }
            fn visit_string<E: de::Error>(self, key: String) -> Result<KeyText<'de>, E> {
                Ok(KeyText(key.into()))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Reads the header object, checking each entry as it comes. Its own findings go to `error`, for
/// [`Header::parse_json`] to report in place of the JSON parser's wrapping.
struct HeaderVisitor<'e> {
    error: &'e mut Option<Error>,
    /// What is read, entry by entry.
    header: &'e mut Header,
}

/// The shortest entry a header can hold: `"":{"dtype":"U8","shape":[],"data_offsets":[0,0]}`.
const MIN_ENTRY_LEN: usize = 49;

/// How many entries the header `text` holds at most: one per object opened after the first, and
/// no more than the shortest entry allows. Reserving this many spares the doubling of a growing
/// vector, which at its peak holds the entries up to three times over; and it is exact for
/// headers without braces in their strings, whatever the keys' lengths.
fn entry_count_bound(text: &str) -> usize {
    let objects = text.bytes().filter(|&b| b == b'{').count().saturating_sub(1);
    objects.min(text.len() / MIN_ENTRY_LEN)
}

impl<'de> Visitor<'de> for HeaderVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a safetensors header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen_metadata = false;
        while let Some(KeyText(key)) = map.next_key::<KeyText<'de>>()? {
            if key == METADATA_KEY {
                if std::mem::replace(&mut seen_metadata, true) {
                    return Err(self.fail(Error::DuplicateKey { key: key.into_owned() }));
                }
                self.header.metadata = match map.next_value::<&'de serde_json::value::RawValue>() {
                    Ok(raw) => match Metadata::check(raw.get()) {
                        Ok(metadata) => metadata,
                        Err(e) => {
                            *self.error = Some(Error::InvalidMetadata { reason: e.to_string() });
                            return Err(de::Error::custom(e));
                        }
                    },
                    Err(e) => {
                        *self.error = Some(Error::InvalidMetadata { reason: e.to_string() });
                        return Err(e);
                    }
                };
            } else {
                let raw = match map.next_value::<RawEntry>() {
                    Ok(raw) => raw,
                    Err(e) => {
                        *self.error = Some(Error::InvalidEntry {
                            key: key.into_owned(),
                            reason: e.to_string(),
                        });
                        return Err(e);
                    }
                };
                if let Err(err) = raw.check(&key, self.header) {
                    return Err(self.fail(err));
                }
            }
        }
        Ok(())
    }
}

impl HeaderVisitor<'_> {
    fn fail<E: de::Error>(self, err: Error) -> E {
        let message = err.to_string();
        *self.error = Some(err);
        E::custom(message)
    }
}

/// A header's `__metadata__`: checked when the header is read, but kept as its JSON text and made a
/// map only when asked for. Most loads never look at it, and a map of many short strings costs
/// several times its text (a `String` is 24 bytes before its contents, a B-tree node more).
#[derive(Debug, Default)]
pub(crate) struct Metadata {
    json: Box<str>,
    map: OnceLock<BTreeMap<String, String>>,
}

impl Metadata {
    /// Checks that `json` is a map of strings to strings (`None` for `null`), without building it.
    fn check(json: &str) -> serde_json::Result<Option<Metadata>> {
        if !serde_json::from_str::<CheckMetadata>(json)?.0 {
            return Ok(None);
        }
        Ok(Some(Metadata {
            json: json.into(),
            map: OnceLock::new(),
        }))
    }

    /// The map, parsed the first time it is asked for.
    pub(crate) fn map(&self) -> &BTreeMap<String, String> {
        self.map
            .get_or_init(|| serde_json::from_str(&self.json).expect("checked when the header was read"))
    }

    /// The map, owned.
    pub(crate) fn into_map(self) -> BTreeMap<String, String> {
        match self.map.into_inner() {
            Some(map) => map,
            None => serde_json::from_str(&self.json).expect("checked when the header was read"),
        }
    }
}

/// Deserializes `__metadata__` to check its form, holding none of it: `true` for a map of strings
/// to strings, `false` for `null`.
struct CheckMetadata(bool);

impl<'de> Deserialize<'de> for CheckMetadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_option(CheckMetadata(false))
    }
}

impl<'de> Visitor<'de> for CheckMetadata {
    type Value = CheckMetadata;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of strings to strings")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self, E> {
        Ok(CheckMetadata(false))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self, E> {
        Ok(CheckMetadata(false))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(CheckMetadata(true))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        while map.next_entry::<AnyString, AnyString>()?.is_some() {}
        Ok(CheckMetadata(true))
    }
}

/// A string, checked and dropped (escaped strings pass through serde_json's reused scratch buffer).
struct AnyString;

impl<'de> Deserialize<'de> for AnyString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(AnyString)
    }
}

impl Visitor<'_> for AnyString {
    type Value = AnyString;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self, E> {
        Ok(AnyString)
    }
}

/// Reads only the metadata of a file's header.
pub(crate) fn read_metadata(bytes: &[u8]) -> Result<BTreeMap<String, String>> {
    Ok(Header::parse(bytes)?
        .metadata
        .map(Metadata::into_map)
        .unwrap_or_default())
}

// ---- writing ----

/// One tensor of the file being written.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    /// Where its key is in [`Leaves`]' keys.
    key: Slot,
    pub dtype: Dtype,
    pub shape: crate::ser::Dims,
    pub len: usize,
}

/// The tensors of the file being written, in the order the params visit them (as a slice of
/// [`Planned`]), with their keys in an arena, as a read [`Header`] holds them, rather than a
/// `String` each: a write of many small tensors would otherwise spend a tenth of its instructions
/// allocating and freeing them.
#[derive(Debug, Default)]
pub(crate) struct Leaves {
    planned: Vec<Planned>,
    keys: Arena<String>,
}

impl Leaves {
    /// Plans the next tensor.
    pub(crate) fn push(&mut self, key: &str, dtype: Dtype, shape: &[usize], len: usize) -> Result<()> {
        let key = self.keys.push(key).ok_or_else(|| Error::InvalidKey {
            key: key.to_owned(),
            reason: "the params' keys are too many to hold",
        })?;
        self.planned.push(Planned {
            key,
            dtype,
            shape: shape.into(),
            len,
        });
        Ok(())
    }

    /// The key of tensor `i`.
    pub(crate) fn key(&self, i: usize) -> &str {
        self.keys.get(self.planned[i].key)
    }
}

impl std::ops::Deref for Leaves {
    type Target = [Planned];

    fn deref(&self) -> &[Planned] {
        &self.planned
    }
}

/// Where each tensor goes: the reference writer's order (dtype descending, then key), and the
/// header bytes padded with spaces to a multiple of 8, which give each tensor's offset.
pub(crate) struct Layout {
    /// The length prefix and the header, ready to write.
    pub head: Vec<u8>,
    /// The planned tensors' indices in file order.
    pub order: Vec<usize>,
}

/// What a [`Layout`]'s head buffer holds room for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Room {
    /// The head alone (it is written out, then the tensors stream after it).
    HeadOnly,
    /// The head and then the tensors' bytes: a whole file in one buffer.
    WithData,
}

impl Layout {
    /// The file of the planned tensors `members` (all of them, or a shard's), its head in a
    /// buffer of its own or (`Room::WithData`) with room for the tensors' bytes after it: the
    /// start of a whole file in memory, so that the head is written where it stays.
    pub(crate) fn new(
        leaves: &Leaves,
        members: &[usize],
        metadata: Option<&BTreeMap<String, String>>,
        room: Room,
    ) -> Result<Layout> {
        let order = file_order(leaves, members);
        let mut offsets = vec![0; members.len()];
        let mut data_len = 0usize;
        for &j in &order {
            offsets[j] = data_len;
            data_len = data_len
                .checked_add(leaves[members[j]].len)
                .ok_or_else(|| Error::msg("total tensor size overflows usize"))?;
        }
        // The JSON goes straight after the length, which is known only once it is written. Room
        // for the longest entry of each key and rank (two offsets and each dimension of 20 digits,
        // the longest dtype name), unless its key needs escapes: the buffer grows then.
        let head_room = LEN_BYTES
            + 64
            + members
                .iter()
                .map(|&i| leaves.key(i).len() + 96 + 21 * leaves[i].shape.len())
                .sum::<usize>();
        let mut head = if room == Room::WithData {
            crate::pages::buffer(head_room.saturating_add(data_len))
        } else {
            Vec::with_capacity(head_room)
        };
        head.extend_from_slice(&[0; LEN_BYTES]);
        write_json(&mut head, leaves, members, &order, &offsets, metadata)?;
        let padded = (head.len() - LEN_BYTES).next_multiple_of(LEN_BYTES);
        if padded as u64 > MAX_HEADER_LEN {
            return Err(Error::HeaderTooLarge {
                len: padded as u64,
                max: MAX_HEADER_LEN,
            });
        }
        head.resize(LEN_BYTES + padded, b' ');
        head[..LEN_BYTES].copy_from_slice(&(padded as u64).to_le_bytes());
        Ok(Layout { head, order })
    }
}

/// The reference writer's order of the planned tensors `members`: dtype descending, then key (as
/// indices into `members`).
///
/// Keys are unique (the plan refuses duplicates), so any sort gives the same order. A model's keys
/// share long prefixes (`layer_`, `params.encoder.`), where comparing strings costs most: each
/// key is compared first by the 8 bytes after the prefix all keys share, as an integer, and only
/// on a tie by the whole key.
fn file_order(leaves: &Leaves, members: &[usize]) -> Vec<usize> {
    let key = |j: usize| leaves.key(members[j]);
    let first = members.first().map_or("", |_| key(0)).as_bytes();
    let shared = (0..members.len()).fold(first.len(), |n, j| {
        n.min(key(j).bytes().zip(first).take_while(|(a, b)| a == *b).count())
    });
    let window = |key: &str| {
        let mut bytes = [0u8; 8];
        let rest = &key.as_bytes()[shared..];
        let n = rest.len().min(8);
        bytes[..n].copy_from_slice(&rest[..n]);
        // Bytes past the key's end are 0, the least byte, which keeps the order of keys that
        // differ within the window; keys equal in it are told apart by the full comparison.
        u64::from_be_bytes(bytes)
    };
    let mut sortable: Vec<(std::cmp::Reverse<Dtype>, u64, usize)> = (0..members.len())
        .map(|j| (std::cmp::Reverse(leaves[members[j]].dtype), window(key(j)), j))
        .collect();
    sortable.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then_with(|| key(a.2).cmp(key(b.2))));
    sortable.into_iter().map(|(_, _, j)| j).collect()
}

/// Writes the header's JSON as serde_json writes a map (compact, keys escaped as it escapes them):
/// the metadata, then each planned tensor of `members` in file order.
fn write_json(
    out: &mut Vec<u8>,
    leaves: &Leaves,
    members: &[usize],
    order: &[usize],
    offsets: &[usize],
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<()> {
    let json_error = |e: serde_json::Error| Error::msg(format_args!("cannot write the header: {e}"));
    out.push(b'{');
    if let Some(metadata) = metadata {
        write_str(out, METADATA_KEY)?;
        out.push(b':');
        serde_json::to_writer(&mut *out, metadata).map_err(json_error)?;
    }
    for (n, &j) in order.iter().enumerate() {
        if n > 0 || metadata.is_some() {
            out.push(b',');
        }
        let p = &leaves[members[j]];
        write_str(out, leaves.key(members[j]))?;
        out.extend_from_slice(b":{\"dtype\":\"");
        out.extend_from_slice(p.dtype.name().as_bytes());
        out.extend_from_slice(b"\",\"shape\":[");
        for (d, &dim) in p.shape.iter().enumerate() {
            if d > 0 {
                out.push(b',');
            }
            push_decimal(out, dim);
        }
        out.extend_from_slice(b"],\"data_offsets\":[");
        push_decimal(out, offsets[j]);
        out.push(b',');
        push_decimal(out, offsets[j] + p.len);
        out.extend_from_slice(b"]}");
    }
    out.push(b'}');
    Ok(())
}

/// A JSON string: most keys need no escape and are copied as they are; the others go through
/// serde_json, so that every key is escaped as serde_json escapes it.
fn write_str(out: &mut Vec<u8>, s: &str) -> Result<()> {
    // No early exit: the loop then runs on whole vectors of bytes.
    let needs_escape = s
        .bytes()
        .fold(false, |any, b| any | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if needs_escape {
        return serde_json::to_writer(&mut *out, s)
            .map_err(|e| Error::msg(format_args!("cannot write the header: {e}")));
    }
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
    Ok(())
}

fn push_decimal(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(crate::write::decimal(n, &mut [0; 20]));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(json: &str) -> Vec<u8> {
        [&(json.len() as u64).to_le_bytes()[..], json.as_bytes()].concat()
    }

    #[test]
    fn shapes_are_kept_in_no_more_bytes_than_their_digits() {
        let shapes: [&[usize]; 5] = [&[], &[0], &[127, 128, 16_383, 16_384], &[usize::MAX, 1], &[9; MAX_RANK]];
        for shape in shapes {
            let mut encoded = Vec::new();
            Dims::encode(shape, &mut encoded);
            let dims = Dims(&encoded);
            assert_eq!((dims.len(), dims.is_empty()), (shape.len(), shape.is_empty()));
            assert_eq!(dims.to_vec(), shape);
            assert_eq!(dims.iter().size_hint(), (shape.len(), Some(shape.len())));
            let digits: usize = shape.iter().map(|d| d.to_string().len()).sum();
            assert!(encoded.len() <= digits, "{shape:?}: {} bytes", encoded.len());
        }
    }

    /// What BENCHMARKS.md counts per entry of a header and per planned leaf of a write.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn an_entry_is_40_bytes_and_a_planned_leaf_64() {
        assert_eq!(std::mem::size_of::<Entry>(), 40);
        assert_eq!(std::mem::size_of::<Planned>(), 64);
    }

    #[test]
    fn keys_with_escapes_are_read_unescaped_and_checked_for_duplicates() {
        let entry = |key: &str, start: u32| {
            format!(
                r#""{key}":{{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1,2],"data_offsets":[{start},{}]}}"#,
                start + 2
            )
        };
        let json = format!(
            "{{{},{},{}}}",
            entry(r"a\u002eb", 0),
            entry(r#"q\"x"#, 2),
            entry("plain", 4)
        );
        let mut bytes = file(&json);
        bytes.extend_from_slice(&[0; 6]);
        let header = Header::parse(&bytes).unwrap();
        assert_eq!(header.keys().collect::<Vec<_>>(), ["a.b", "q\"x", "plain"]);
        assert_eq!(
            header.shape(1).to_vec(),
            [1, 1, 1, 1, 1, 1, 1, 1, 1, 2],
            "a shape past the inline rank"
        );
        // `a.b` spelled twice, once escaped: one key.
        let json = format!("{{{},{}}}", entry(r"a\u002eb", 0), entry("a.b", 2));
        let mut bytes = file(&json);
        bytes.extend_from_slice(&[0; 4]);
        let err = Header::parse(&bytes).unwrap_err();
        assert!(matches!(&err, Error::DuplicateKey { key } if key == "a.b"), "{err:?}");
    }

    #[test]
    fn metadata_is_checked_at_once_and_parsed_when_asked() {
        let bytes = file(r#"{"__metadata__":{"a\"b":"c\nd","\u00e9":""}}"#);
        let header = Header::parse(&bytes).unwrap();
        let metadata = header.metadata.as_ref().unwrap();
        assert!(metadata.map.get().is_none(), "not parsed before it is asked for");
        let expected = BTreeMap::from([("a\"b".to_owned(), "c\nd".to_owned()), ("é".to_owned(), String::new())]);
        assert_eq!(metadata.map(), &expected);
        assert_eq!(read_metadata(&bytes).unwrap(), expected);
        assert!(Header::parse(&file(r#"{"__metadata__":null}"#))
            .unwrap()
            .metadata
            .is_none());
        let err = Header::parse(&file(r#"{"__metadata__":{"a":"b","c":["d"]}}"#)).unwrap_err();
        assert!(matches!(err, Error::InvalidMetadata { .. }), "{err:?}");
    }

    /// A header entry as the reference writer serializes it.
    #[derive(serde::Serialize)]
    struct EntryJson<'a> {
        dtype: Dtype,
        shape: &'a [usize],
        data_offsets: (usize, usize),
    }

    /// The header as serde_json writes it from a map, which is what the reference writer does.
    #[test]
    fn the_header_is_written_as_serde_json_writes_it() {
        let mut planned = Leaves::default();
        let keys = ["b", "a\"q", "tab\there", "\u{1}ctl\\", "é", "a", "layer_10", "layer_9"];
        for (i, key) in keys.iter().enumerate() {
            let dtype = if i % 3 == 0 { Dtype::F32 } else { Dtype::BF16 };
            planned.push(key, dtype, &vec![i; i % 3], i * 4).unwrap();
        }
        let all: Vec<usize> = (0..planned.len()).collect();
        let metadata = BTreeMap::from([("format".to_owned(), "pt\n\"x\"".to_owned())]);
        for metadata in [None, Some(&metadata)] {
            let layout = Layout::new(&planned, &all, metadata, Room::HeadOnly).unwrap();
            let mut order: Vec<usize> = (0..planned.len()).collect();
            order.sort_by(|&a, &b| {
                planned[b]
                    .dtype
                    .cmp(&planned[a].dtype)
                    .then_with(|| planned.key(a).cmp(planned.key(b)))
            });
            assert_eq!(layout.order, order);
            let mut offsets = vec![0; planned.len()];
            let mut at = 0;
            for &i in &order {
                offsets[i] = at;
                at += planned[i].len;
            }
            let mut json = String::from("{");
            if let Some(metadata) = metadata {
                json += &format!("\"__metadata__\":{},", serde_json::to_string(metadata).unwrap());
            }
            for &i in &order {
                let p = &planned[i];
                let entry = EntryJson {
                    dtype: p.dtype,
                    shape: &p.shape,
                    data_offsets: (offsets[i], offsets[i] + p.len),
                };
                json += &format!(
                    "{}:{},",
                    serde_json::to_string(planned.key(i)).unwrap(),
                    serde_json::to_string(&entry).unwrap()
                );
            }
            json.pop();
            json += "}";
            let text = std::str::from_utf8(&layout.head[LEN_BYTES..]).unwrap();
            assert_eq!(text.trim_end_matches(' '), json);
            assert_eq!(layout.head.len() % LEN_BYTES, 0);
            assert_eq!(
                &layout.head[..LEN_BYTES],
                &((layout.head.len() - LEN_BYTES) as u64).to_le_bytes()
            );
        }
    }

    #[test]
    fn the_entry_bound_holds_the_shortest_entries() {
        let entry = r#""":{"dtype":"U8","shape":[],"data_offsets":[0,0]}"#;
        assert_eq!(entry.len(), MIN_ENTRY_LEN);
        let text = format!("{{{entry}}}");
        assert_eq!(entry_count_bound(&text), 1);
        // Braces in strings count, but never past what the length allows.
        let braces = format!(r#"{{"__metadata__":{{"a":"{}"}}}}"#, "{".repeat(500));
        assert_eq!(entry_count_bound(&braces), braces.len() / MIN_ENTRY_LEN);
    }
}
