//! Writing flax msgpack: one walk learns every leaf's path, dtype and size, so the whole file can be
//! laid out (dicts in the order the params visit them, arrays above the chunk size split as flax
//! splits them) as a [`Framing`]; the write engine then streams each tensor's bytes, once, into
//! the output (a buffer, or the shard's file).

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use super::{numpy_name, CHUNKED, EXT_NDARRAY};
use crate::checkpoint::store::{ready, LocalDir};
use crate::checkpoint::{assign_shards, begin, finish, Format};
use crate::header::Leaves;
use crate::shard::index_of;
use crate::write::{plan_with, stream, Framing, Sink, Writer, REORDER_BUDGET};
use crate::{Dtype, Error, Params, Result};

/// A dict of the output, children in first-seen order.
#[derive(Default)]
struct Dict {
    children: Vec<(String, Item)>,
    index: HashMap<String, usize>,
}

enum Item {
    Dict(Dict),
    Leaf(usize),
}

impl Dict {
    /// Places leaf `leaf` at `path`, making dicts on the way.
    fn insert(&mut self, path: &[&str], leaf: usize, key: &str) -> Result<()> {
        let (name, rest) = path.split_first().expect("a leaf has a name");
        let slot = match self.index.get(*name) {
            Some(&i) => i,
            None => {
                let item = if rest.is_empty() {
                    Item::Leaf(leaf)
                } else {
                    Item::Dict(Dict::default())
                };
                self.children.push(((*name).to_owned(), item));
                self.index.insert((*name).to_owned(), self.children.len() - 1);
                if rest.is_empty() {
                    return Ok(());
                }
                self.children.len() - 1
            }
        };
        match (&mut self.children[slot].1, rest.is_empty()) {
            (Item::Dict(dict), false) => dict.insert(rest, leaf, key),
            // A leaf where a dict is, or a dict where a leaf is: the keys cannot be told apart.
            _ => Err(Error::DuplicateKey { key: key.to_owned() }),
        }
    }
}

/// Lays the dicts out: their bytes into the frame, a piece for each tensor's bytes.
struct Encoder<'p> {
    framing: Framing,
    planned: &'p Leaves,
    chunk_bytes: usize,
}

impl Encoder<'_> {
    fn out(&mut self) -> &mut Vec<u8> {
        self.framing.frame()
    }

    fn dict(&mut self, dict: &Dict) -> Result<()> {
        rmp::encode::write_map_len(self.out(), len_u32(dict.children.len())?).map_err(encode_error)?;
        for (name, item) in &dict.children {
            rmp::encode::write_str(self.out(), name).map_err(encode_error)?;
            match item {
                Item::Dict(child) => self.dict(child)?,
                Item::Leaf(i) => self.leaf(*i)?,
            }
        }
        Ok(())
    }

    fn leaf(&mut self, i: usize) -> Result<()> {
        let p = &self.planned[i];
        if p.len > self.chunk_bytes {
            return self.chunked(i);
        }
        self.ndarray(p.dtype, &p.shape, p.len, self.planned.key(i))?;
        self.framing.piece(Some(i), p.len);
        Ok(())
    }

    /// An ndarray extension holding `(shape, dtype name, bytes)`, up to its bytes.
    fn ndarray(&mut self, dtype: Dtype, shape: &[usize], len: usize, key: &str) -> Result<()> {
        let name = numpy_name(dtype).ok_or_else(|| Error::at(key, format_args!("numpy has no dtype for {dtype}")))?;
        let mut head = Vec::with_capacity(16 + 9 * shape.len());
        rmp::encode::write_array_len(&mut head, 3).map_err(encode_error)?;
        rmp::encode::write_array_len(&mut head, len_u32(shape.len())?).map_err(encode_error)?;
        for &d in shape {
            rmp::encode::write_uint(&mut head, d as u64).map_err(encode_error)?;
        }
        rmp::encode::write_str(&mut head, name).map_err(encode_error)?;
        rmp::encode::write_bin_len(&mut head, len_u32(len)?).map_err(encode_error)?;
        rmp::encode::write_ext_meta(self.out(), len_u32(head.len() + len)?, EXT_NDARRAY).map_err(encode_error)?;
        self.out().extend_from_slice(&head);
        Ok(())
    }

    /// flax's chunked form: the flat array cut into pieces of at most the chunk size.
    fn chunked(&mut self, i: usize) -> Result<()> {
        let p = &self.planned[i];
        let element = (p.dtype.bit_size() / 8).max(1);
        let per_chunk = (self.chunk_bytes / element).max(1) * element;
        let out = self.framing.frame();
        rmp::encode::write_map_len(out, 3).map_err(encode_error)?;
        rmp::encode::write_str(out, CHUNKED).map_err(encode_error)?;
        rmp::encode::write_bool(out, true).map_err(encode_error)?;
        rmp::encode::write_str(out, "shape").map_err(encode_error)?;
        rmp::encode::write_map_len(out, len_u32(p.shape.len())?).map_err(encode_error)?;
        for (axis, &d) in p.shape.iter().enumerate() {
            rmp::encode::write_str(out, &axis.to_string()).map_err(encode_error)?;
            rmp::encode::write_uint(out, d as u64).map_err(encode_error)?;
        }
        rmp::encode::write_str(out, "chunks").map_err(encode_error)?;
        let count = p.len.div_ceil(per_chunk);
        rmp::encode::write_map_len(out, len_u32(count)?).map_err(encode_error)?;
        let (dtype, key, total) = (p.dtype, self.planned.key(i).to_owned(), p.len);
        for c in 0..count {
            let len = per_chunk.min(total - c * per_chunk);
            rmp::encode::write_str(self.out(), &c.to_string()).map_err(encode_error)?;
            self.ndarray(dtype, &[len / element], len, &key)?;
            // The first chunk starts the leaf's turn; the others follow it.
            self.framing.piece((c == 0).then_some(i), len);
        }
        Ok(())
    }
}

fn encode_error(e: impl std::fmt::Display) -> Error {
    Error::msg(format_args!("msgpack encoding failed: {e}"))
}

fn len_u32(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::msg(format_args!("{n} is too large for msgpack")))
}

/// The leaves of the params, planned for msgpack: each one's key, dtype and size, and its dict
/// path.
struct Plan {
    planned: Leaves,
    paths: Vec<Vec<String>>,
}

/// The first walk: every leaf and its path, checked to make a tree of dicts.
fn plan<T: Serialize + Params + ?Sized>(params: &T) -> Result<Plan> {
    let mut paths = Vec::new();
    let mut root = Dict::default();
    let planned = plan_with(params, |leaf, i| {
        let path: Vec<&str> = leaf.path().collect();
        if path.iter().any(|part| part.is_empty()) {
            return Err(Error::InvalidKey {
                key: leaf.key.to_owned(),
                reason: "dict keys cannot be empty",
            });
        }
        root.insert(&path, i, leaf.key)?;
        paths.push(path.iter().map(|&p| p.to_owned()).collect());
        Ok(())
    })?;
    Ok(Plan { planned, paths })
}

/// Lays out the msgpack file of the planned leaves `members` (all of them, or a shard's): their
/// dicts, and where each tensor's bytes go.
fn layout(plan: &Plan, members: &[usize], chunk_bytes: usize) -> Result<Framing> {
    let mut root = Dict::default();
    for &i in members {
        let path: Vec<&str> = plan.paths[i].iter().map(String::as_str).collect();
        root.insert(&path, i, plan.planned.key(i))?;
    }
    let mut encoder = Encoder {
        framing: Framing::default(),
        planned: &plan.planned,
        chunk_bytes,
    };
    encoder.dict(&root)?;
    Ok(encoder.framing)
}

/// Streams the msgpack file laid out by `framing` into `sink`.
fn encode<T: Serialize + Params + ?Sized, S: Sink + ?Sized>(
    params: &T,
    plan: &Plan,
    framing: &Framing,
    sink: &mut S,
) -> Result<()> {
    stream(params, &plan.planned, framing, 0..framing.count(), sink, REORDER_BUDGET)?;
    Ok(())
}

pub(crate) fn to_bytes<T: Serialize + Params + ?Sized>(params: &T, chunk_bytes: usize) -> Result<Vec<u8>> {
    let plan = plan(params)?;
    let all: Vec<usize> = (0..plan.planned.len()).collect();
    let framing = layout(&plan, &all, chunk_bytes)?;
    let mut out = Vec::with_capacity(framing.len());
    encode(params, &plan, &framing, &mut out)?;
    Ok(out)
}

/// Writes `params` into `dir` as transformers saves a Flax model: one `flax_model.msgpack` when
/// it all fits in `max_shard_bytes`, else `flax_model-0000k-of-0000n.msgpack` shards filled in
/// visit order (a larger tensor gets a shard of its own), each the nested dicts of its tensors,
/// and `flax_model.msgpack.index.json` naming each tensor by its dict path joined with `/`. The
/// save is crash-safe, as [`crate::to_dir`]'s.
pub(crate) fn to_dir<T: Serialize + Params + ?Sized>(
    dir: &Path,
    params: &T,
    max_shard_bytes: u64,
    chunk_bytes: usize,
) -> Result<()> {
    let store = LocalDir::create(dir)?;
    let plan = plan(params)?;
    let (shard_of, shards) = assign_shards(plan.planned.iter().map(|p| p.len as u64), max_shard_bytes);
    let begun = ready(begin(&store, Format::Msgpack, shards))??;
    for (k, name) in begun.names.iter().enumerate() {
        let members: Vec<usize> = (0..plan.planned.len()).filter(|&i| shard_of[i] == k).collect();
        let framing = layout(&plan, &members, chunk_bytes)?;
        store.write_with(name, |out| encode(params, &plan, &framing, &mut Writer(out)))?;
    }
    let index = (shards > 1).then(|| {
        let keys = plan
            .paths
            .iter()
            .zip(plan.planned.iter())
            .map(|(path, p)| (path.join("/"), p.len));
        index_of(keys, &shard_of, &begun.names)
    });
    ready(finish(&store, &begun, index.as_ref()))?
}
