//! Reading flax msgpack: the tree of dicts is parsed (tensor bytes stay where they are in the input),
//! chunked arrays are put back together, and the leaves become the entries of a [`Header`], which
//! the shared resolver and deserializer then read as they read a safetensors file.

use std::collections::HashSet;

use rmp::Marker;

use super::{dtype_from_numpy, CHUNKED, EXT_NATIVE_COMPLEX, EXT_NDARRAY, EXT_NPSCALAR};
use crate::header::{Header, Span};
use crate::tensor::element_count;
use crate::{Dtype, Error, Result};

/// Deeper nesting than this is refused, so that hostile input cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

/// A parsed msgpack value.
enum Node {
    /// A dict (or a list, keyed '0', '1', ...) and the offset of its marker in the input.
    Dict(Vec<(String, Node)>, usize),
    /// An ndarray; its bytes are `input[start..end]`.
    Array {
        dtype: Dtype,
        shape: Vec<usize>,
        start: usize,
        end: usize,
    },
    Int(i128),
    Float(f64),
    Bool(bool),
    /// A Python complex whose parts are f32s (a complex128 is refused as it is read).
    Complex(f32, f32),
    Nil,
}

/// What is wrong at byte `offset`; the key path is filled in as the error leaves each dict
/// ([`inside`]).
fn invalid(offset: usize, reason: impl std::fmt::Display) -> Error {
    Error::InvalidMsgpack {
        key: String::new(),
        offset: offset as u64,
        reason: reason.to_string(),
    }
}

/// `error`, which happened in the value under `name` of a dict: its key path gains `name` in
/// front. Only the failing path pays for this, once per level it leaves.
fn inside(name: &str, error: Error) -> Error {
    match error {
        Error::InvalidMsgpack { key, offset, reason } => Error::InvalidMsgpack {
            key: if key.is_empty() {
                name.to_owned()
            } else {
                format!("{name}.{key}")
            },
            offset,
            reason,
        },
        other => other,
    }
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    /// What ends at the end of `input`, for a message about reading past it.
    within: &'static str,
}

impl<'a> Parser<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.input.len())
            .ok_or_else(|| {
                let left = self.input.len() - self.pos;
                invalid(
                    self.pos,
                    format_args!("truncated: {n} bytes needed, {left} left in {}", self.within),
                )
            })?;
        let bytes = &self.input[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn be(&mut self, n: usize) -> Result<u64> {
        Ok(self.take(n)?.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn len(&mut self, n: usize) -> Result<usize> {
        let at = self.pos;
        usize::try_from(self.be(n)?).map_err(|_| invalid(at, "a length exceeds the address space"))
    }

    fn marker(&mut self) -> Result<Marker> {
        Ok(Marker::from_u8(self.take(1)?[0]))
    }

    fn str_len(&mut self, marker: Marker) -> Result<Option<usize>> {
        Ok(match marker {
            Marker::FixStr(n) => Some(n.into()),
            Marker::Str8 | Marker::Bin8 => Some(self.len(1)?),
            Marker::Str16 | Marker::Bin16 => Some(self.len(2)?),
            Marker::Str32 | Marker::Bin32 => Some(self.len(4)?),
            _ => None,
        })
    }

    /// A map key: a string, or an integer (msgpack allows them; flax's reader does too).
    fn key(&mut self) -> Result<String> {
        let at = self.pos;
        let marker = self.marker()?;
        if let Some(n) = self.str_len(marker)? {
            return std::str::from_utf8(self.take(n)?)
                .map(str::to_owned)
                .map_err(|_| invalid(at, "a dict key is not UTF-8"));
        }
        match self.number(marker)? {
            Some(Node::Int(i)) => Ok(i.to_string()),
            _ => Err(invalid(at, "a dict key is neither a string nor an integer")),
        }
    }

    fn number(&mut self, marker: Marker) -> Result<Option<Node>> {
        Ok(Some(match marker {
            Marker::FixPos(n) => Node::Int(n.into()),
            Marker::FixNeg(n) => Node::Int(n.into()),
            Marker::U8 => Node::Int(self.be(1)?.into()),
            Marker::U16 => Node::Int(self.be(2)?.into()),
            Marker::U32 => Node::Int(self.be(4)?.into()),
            Marker::U64 => Node::Int(self.be(8)?.into()),
            Marker::I8 => Node::Int((self.be(1)? as u8 as i8).into()),
            Marker::I16 => Node::Int((self.be(2)? as u16 as i16).into()),
            Marker::I32 => Node::Int((self.be(4)? as u32 as i32).into()),
            Marker::I64 => Node::Int((self.be(8)? as i64).into()),
            Marker::F32 => Node::Float(f32::from_bits(self.be(4)? as u32).into()),
            Marker::F64 => Node::Float(f64::from_bits(self.be(8)?)),
            _ => return Ok(None),
        }))
    }

    fn value(&mut self, depth: usize) -> Result<Node> {
        let at = self.pos;
        if depth > MAX_DEPTH {
            return Err(invalid(at, format_args!("nested deeper than {MAX_DEPTH} levels")));
        }
        let marker = self.marker()?;
        if let Some(number) = self.number(marker)? {
            return Ok(number);
        }
        if self.str_len(marker)?.is_some() {
            return Err(invalid(at, "a string or bytes, not a tensor"));
        }
        let (map_len, array_len, ext_len) = match marker {
            Marker::Null => return Ok(Node::Nil),
            Marker::True => return Ok(Node::Bool(true)),
            Marker::False => return Ok(Node::Bool(false)),
            Marker::FixMap(n) => (Some(n.into()), None, None),
            Marker::Map16 => (Some(self.len(2)?), None, None),
            Marker::Map32 => (Some(self.len(4)?), None, None),
            Marker::FixArray(n) => (None, Some(n.into()), None),
            Marker::Array16 => (None, Some(self.len(2)?), None),
            Marker::Array32 => (None, Some(self.len(4)?), None),
            Marker::FixExt1 => (None, None, Some(1)),
            Marker::FixExt2 => (None, None, Some(2)),
            Marker::FixExt4 => (None, None, Some(4)),
            Marker::FixExt8 => (None, None, Some(8)),
            Marker::FixExt16 => (None, None, Some(16)),
            Marker::Ext8 => (None, None, Some(self.len(1)?)),
            Marker::Ext16 => (None, None, Some(self.len(2)?)),
            Marker::Ext32 => (None, None, Some(self.len(4)?)),
            other => return Err(invalid(at, format_args!("unexpected marker {other:?}"))),
        };
        // Every entry takes at least one byte: a count beyond the input is refused before any
        // allocation.
        let remaining = self.input.len() - self.pos;
        if let Some(n) = map_len {
            if n > remaining {
                return Err(invalid(at, format_args!("a dict of {n} entries in {remaining} bytes")));
            }
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                let key = self.key()?;
                let value = self.value(depth + 1).map_err(|e| inside(&key, e))?;
                entries.push((key, value));
            }
            return Ok(Node::Dict(entries, at));
        }
        if let Some(n) = array_len {
            if n > remaining {
                return Err(invalid(at, format_args!("a list of {n} elements in {remaining} bytes")));
            }
            // flax stores lists as dicts keyed '0', '1', ...; a plain msgpack list reads the same.
            let mut entries = Vec::with_capacity(n);
            for i in 0..n {
                let key = i.to_string();
                let value = self.value(depth + 1).map_err(|e| inside(&key, e))?;
                entries.push((key, value));
            }
            return Ok(Node::Dict(entries, at));
        }
        let len = ext_len.expect("one of the three");
        let kind = self.take(1)?[0] as i8;
        let payload_start = self.pos;
        self.take(len)?;
        let mut payload = Parser {
            input: &self.input[..payload_start + len],
            pos: payload_start,
            within: "the extension",
        };
        match kind {
            EXT_NDARRAY | EXT_NPSCALAR => payload.ndarray(),
            EXT_NATIVE_COMPLEX => {
                let (re, im) = payload.pair()?;
                // safetensors has complex64 only: a Python complex fits when its parts are f32s.
                let (re32, im32) = (re as f32, im as f32);
                if f64::from(re32) != re || f64::from(im32) != im {
                    return Err(invalid(at, "a complex128, which safetensors cannot hold"));
                }
                Ok(Node::Complex(re32, im32))
            }
            other => Err(invalid(at, format_args!("unknown msgpack extension type {other}"))),
        }
    }

    /// flax's ndarray: the msgpack tuple (shape, dtype name, raw bytes).
    fn ndarray(&mut self) -> Result<Node> {
        let at = self.pos;
        if self.marker()? != Marker::FixArray(3) {
            return Err(invalid(at, "an ndarray is not a (shape, dtype, data) tuple"));
        }
        let at = self.pos;
        let dims = match self.marker()? {
            Marker::FixArray(n) => n.into(),
            Marker::Array16 => self.len(2)?,
            Marker::Array32 => self.len(4)?,
            _ => return Err(invalid(at, "an ndarray's shape is not a list")),
        };
        if dims > self.input.len() - self.pos {
            return Err(invalid(at, "an ndarray's shape is longer than the input"));
        }
        let mut shape = Vec::with_capacity(dims);
        for _ in 0..dims {
            let at = self.pos;
            let marker = self.marker()?;
            match self.number(marker)? {
                Some(Node::Int(d)) => {
                    shape.push(usize::try_from(d).map_err(|_| invalid(at, "a negative or huge dimension"))?)
                }
                _ => return Err(invalid(at, "an ndarray dimension is not an integer")),
            }
        }
        let at = self.pos;
        let marker = self.marker()?;
        let name_len = self
            .str_len(marker)?
            .ok_or_else(|| invalid(at, "an ndarray's dtype is not a name"))?;
        let name = std::str::from_utf8(self.take(name_len)?).map_err(|_| invalid(at, "a dtype name is not UTF-8"))?;
        let dtype =
            dtype_from_numpy(name).ok_or_else(|| invalid(at, format_args!("unsupported numpy dtype `{name}`")))?;
        let at = self.pos;
        let marker = self.marker()?;
        let data_len = self
            .str_len(marker)?
            .ok_or_else(|| invalid(at, "an ndarray's data is not bytes"))?;
        let start = self.pos;
        self.take(data_len)?;
        let expected = element_count(&shape).and_then(|n| dtype.byte_len(n));
        if expected != Some(data_len) {
            return Err(invalid(
                at,
                format_args!("{dtype} shape {shape:?} does not match {data_len} bytes of data"),
            ));
        }
        Ok(Node::Array {
            dtype,
            shape,
            start,
            end: start + data_len,
        })
    }

    /// A native complex: the msgpack pair (real, imaginary).
    fn pair(&mut self) -> Result<(f64, f64)> {
        let at = self.pos;
        if self.marker()? != Marker::FixArray(2) {
            return Err(invalid(at, "a complex number is not a (real, imag) pair"));
        }
        let mut part = || -> Result<f64> {
            let at = self.pos;
            let marker = self.marker()?;
            match self.number(marker)? {
                Some(Node::Float(f)) => Ok(f),
                Some(Node::Int(i)) => Ok(i as f64),
                _ => Err(invalid(at, "a complex part is not a number")),
            }
        };
        Ok((part()?, part()?))
    }
}

/// Turns a parsed tree into header entries, keys joined with `.` at each dict level.
struct Flattener<'a> {
    input: &'a [u8],
    /// The entries, and the bytes of those in `Span::Side`.
    header: Header,
    seen: HashSet<String>,
}

impl Flattener<'_> {
    fn push(
        &mut self,
        key: String,
        dtype: Dtype,
        shape: Vec<usize>,
        span: Span,
        start: usize,
        end: usize,
    ) -> Result<()> {
        self.header.push(&key, dtype, &shape, (start, end), span)?;
        if !self.seen.insert(key.clone()) {
            return Err(Error::DuplicateKey { key });
        }
        Ok(())
    }

    fn side(&mut self, key: String, dtype: Dtype, shape: Vec<usize>, bytes: &[u8]) -> Result<()> {
        let start = self.header.side.len();
        self.header.side.extend_from_slice(bytes);
        self.push(key, dtype, shape, Span::Side, start, self.header.side.len())
    }

    fn node(&mut self, key: String, node: Node) -> Result<()> {
        match node {
            Node::Dict(entries, at) if entries.iter().any(|(k, _)| k == CHUNKED) => self.chunked(key, entries, at),
            Node::Dict(entries, _) => {
                for (name, child) in entries {
                    let child_key = if key.is_empty() { name } else { format!("{key}.{name}") };
                    self.node(child_key, child)?;
                }
                Ok(())
            }
            Node::Array {
                dtype,
                shape,
                start,
                end,
            } => self.push(key, dtype, shape, Span::Input(0), start, end),
            Node::Int(i) => match i64::try_from(i) {
                Ok(v) => self.side(key, Dtype::I64, vec![], &v.to_le_bytes()),
                Err(_) => self.side(key, Dtype::U64, vec![], &(i as u64).to_le_bytes()),
            },
            Node::Float(f) => self.side(key, Dtype::F64, vec![], &f.to_le_bytes()),
            Node::Bool(b) => self.side(key, Dtype::BOOL, vec![], &[u8::from(b)]),
            Node::Complex(re, im) => {
                let bytes: Vec<u8> = re.to_le_bytes().into_iter().chain(im.to_le_bytes()).collect();
                self.side(key, Dtype::C64, vec![], &bytes)
            }
            Node::Nil => Ok(()),
        }
    }

    /// flax's `{"__msgpack_chunked_array__": True, "shape": {"0": d0, ...}, "chunks": {"0": a0, ...}}`.
    /// `at` is the offset of its dict.
    fn chunked(&mut self, key: String, entries: Vec<(String, Node)>, at: usize) -> Result<()> {
        let bad = |what: &str| inside(&key, invalid(at, format_args!("chunked array: {what}")));
        let (mut shape, mut chunks) = (None, None);
        for (name, node) in entries {
            match (name.as_str(), node) {
                (CHUNKED, _) => {}
                ("shape", Node::Dict(dims, _)) => shape = Some(dims),
                ("chunks", Node::Dict(parts, _)) => chunks = Some(parts),
                _ => return Err(bad("unexpected entry")),
            }
        }
        let dims = indexed(shape.ok_or_else(|| bad("no shape"))?).ok_or_else(|| bad("shape is not a list"))?;
        let shape = dims
            .into_iter()
            .map(|d| match d {
                Node::Int(d) => usize::try_from(d).ok(),
                _ => None,
            })
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| bad("a dimension is not a size"))?;
        let parts = indexed(chunks.ok_or_else(|| bad("no chunks"))?).ok_or_else(|| bad("chunks are not a list"))?;
        let mut dtype = None;
        let start = self.header.side.len();
        for part in parts {
            let Node::Array {
                dtype: d, start, end, ..
            } = part
            else {
                return Err(bad("a chunk is not an array"));
            };
            if *dtype.get_or_insert(d) != d {
                return Err(bad("chunks of different dtypes"));
            }
            self.header.side.extend_from_slice(&self.input[start..end]);
        }
        let dtype = dtype.ok_or_else(|| bad("no chunks"))?;
        let expected = element_count(&shape).and_then(|n| dtype.byte_len(n));
        if expected != Some(self.header.side.len() - start) {
            return Err(bad("chunks do not fill the shape"));
        }
        let end = self.header.side.len();
        self.push(key, dtype, shape, Span::Side, start, end)
    }
}

/// The values of a dict keyed '0', '1', ... in index order, or `None` if it is not such a dict.
fn indexed(entries: Vec<(String, Node)>) -> Option<Vec<Node>> {
    let mut slots: Vec<Option<Node>> = (0..entries.len()).map(|_| None).collect();
    for (key, node) in entries {
        let i: usize = key.parse().ok()?;
        *slots.get_mut(i)? = Some(node);
    }
    slots.into_iter().collect()
}

/// Parses a whole msgpack file into header entries.
pub(crate) fn parse(input: &[u8]) -> Result<Header> {
    let mut parser = Parser {
        input,
        pos: 0,
        within: "the input",
    };
    let root = parser.value(0)?;
    if parser.pos != input.len() {
        let trailing = input.len() - parser.pos;
        return Err(invalid(
            parser.pos,
            format_args!("{trailing} trailing bytes after the top-level dict"),
        ));
    }
    if !matches!(root, Node::Dict(..)) {
        return Err(invalid(0, "the top level is not a dict"));
    }
    let mut flat = Flattener {
        input,
        header: Header::default(),
        seen: HashSet::new(),
    };
    flat.node(String::new(), root)?;
    Ok(flat.header)
}
