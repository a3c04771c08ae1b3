//! The write engine: learn every key and size ([`plan`]), lay the output out once (a
//! [`Framing`]: the bytes that are not tensor data, and where each tensor's bytes go between
//! them), then [`stream`] the tensors' bytes, in file order, into a [`Sink`]: a buffer, a file, a
//! byte range of an object (a multipart upload's part). Each tensor's bytes are copied once, to
//! their place; no buffer is filled with zeros first. safetensors files, their shards and flax
//! msgpack files all go through it.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Write;
use std::ops::Range;
use std::path::Path;

use serde::Serialize;

use crate::checkpoint::store::write_atomic_with;
use crate::header::{Layout, Leaves, Planned, Room, MAX_RANK, METADATA_KEY};
use crate::{Error, LeafRef, Options, Params, Result, Serializer};

/// The first walk: every leaf's key, dtype, shape and size, in the order serde visits them.
pub(crate) fn plan<T: Serialize + Params + ?Sized>(params: &T) -> Result<Leaves> {
    plan_and(params, |_| {})
}

/// [`plan`], handing each accepted leaf to `also` as well.
fn plan_and<T: Serialize + Params + ?Sized>(params: &T, mut also: impl FnMut(&LeafRef<'_>)) -> Result<Leaves> {
    let planned = plan_with(params, |leaf, _| {
        let reason = if leaf.key.is_empty() {
            Some("keys cannot be empty")
        } else if leaf.key == METADATA_KEY {
            Some("the header reserves this key for metadata")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(Error::InvalidKey {
                key: leaf.key.to_owned(),
                reason,
            });
        }
        if leaf.shape.len() > MAX_RANK {
            // The reader refuses such files, as numpy refuses such arrays.
            return Err(Error::ShapeMismatch {
                key: leaf.key.to_owned(),
                expected: format!("at most {MAX_RANK} dimensions"),
                found: leaf.shape.to_vec(),
            });
        }
        also(leaf);
        Ok(())
    })?;
    let mut seen: HashSet<&str, BuildHasherDefault<KeyHasher>> =
        HashSet::with_capacity_and_hasher(planned.len(), Default::default());
    if let Some(dup) = (0..planned.len()).find(|&i| !seen.insert(planned.key(i))) {
        return Err(Error::DuplicateKey {
            key: planned.key(dup).to_owned(),
        });
    }
    Ok(planned)
}

/// The hash of the duplicate check: a multiply per 8 bytes (as rustc's FxHash), for keys that
/// come from the caller's own params; SipHash's resistance to chosen keys would cost a tenth of
/// a small tensor's write.
#[derive(Default)]
struct KeyHasher(u64);

impl KeyHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.add(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    /// The end mark that `str` hashes after its bytes: one step, not a copy into a word.
    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// `n` in decimal, written into `digits`: a list index in a key, a size in a header, without
/// `fmt`'s machinery, which costs more than the rest of a small tensor's key step.
pub(crate) fn decimal(mut n: usize, digits: &mut [u8; 20]) -> &[u8] {
    // Two digits a division.
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let mut start = digits.len();
    while n >= 100 {
        let pair = 2 * (n % 100);
        n /= 100;
        start -= 2;
        digits[start..start + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        start -= 2;
        digits[start..start + 2].copy_from_slice(&PAIRS[2 * n..2 * n + 2]);
    } else {
        start -= 1;
        digits[start] = b'0' + n as u8;
    }
    &digits[start..]
}

/// A walk that plans every leaf, after `check` (given the leaf and its index in the walk) accepts
/// it: what each format's first walk shares.
pub(crate) fn plan_with<T: Serialize + Params + ?Sized>(
    params: &T,
    mut check: impl FnMut(&LeafRef<'_>, usize) -> Result<()>,
) -> Result<Leaves> {
    let mut planned = Leaves::default();
    params.serialize(&mut Serializer::new::<T>(|leaf| {
        check(&leaf, planned.len())?;
        planned.push(leaf.key, leaf.dtype, leaf.shape, leaf.data.len())
    }))?;
    Ok(planned)
}

/// Walks the params again, after [`plan`]: hands each leaf's index in the walk and its bytes to
/// `put`, after checking that the leaf is the one planned there.
pub(crate) fn walk_planned<T: Serialize + Params + ?Sized>(
    params: &T,
    planned: &Leaves,
    mut put: impl FnMut(usize, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut next = 0;
    params.serialize(&mut Serializer::new::<T>(|leaf| {
        let matches = planned
            .get(next)
            .is_some_and(|p| p.len == leaf.data.len() && planned.key(next) == leaf.key);
        if !matches {
            return Err(changed());
        }
        put(next, leaf.data)?;
        next += 1;
        Ok(())
    }))?;
    if next != planned.len() {
        return Err(changed());
    }
    Ok(())
}

fn changed() -> Error {
    Error::SerializedDifferently
}

/// Where a planned output's bytes go, in order (as postcard's `Flavor`): each call takes the
/// next bytes.
pub(crate) trait Sink {
    /// Appends `bytes` to the output.
    fn put(&mut self, bytes: &[u8]) -> Result<()>;
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// A writer (a file, a socket) as a sink.
pub(crate) struct Writer<W: ?Sized>(pub W);

impl<W: Write + ?Sized> Sink for Writer<&mut W> {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.0.write_all(bytes).map_err(Error::stream)
    }
}

/// The bytes of `range` of an output, and only those, gathered into a buffer: a part of an
/// object uploaded in parts. Fed from `start`.
// Used by the remote upload (and the tests).
#[cfg_attr(not(feature = "object-store"), allow(dead_code))]
pub(crate) struct Clip {
    pub(crate) buf: Vec<u8>,
    pos: u64,
    range: Range<u64>,
}

#[cfg_attr(not(feature = "object-store"), allow(dead_code))]
impl Clip {
    pub(crate) fn new(range: Range<u64>, start: u64) -> Clip {
        Clip {
            buf: Vec::with_capacity((range.end - range.start) as usize),
            pos: start,
            range,
        }
    }
}

impl Sink for Clip {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        let end = self.pos + bytes.len() as u64;
        let (from, to) = (self.pos.max(self.range.start), end.min(self.range.end));
        if from < to {
            self.buf
                .extend_from_slice(&bytes[(from - self.pos) as usize..(to - self.pos) as usize]);
        }
        self.pos = end;
        Ok(())
    }
}

/// An output laid out: everything but the tensors' bytes (`frame`, in output order), and where
/// each tensor's bytes go in it. A tensor is one piece, or several (flax msgpack's chunks) with
/// frame bytes between them. Tensors are numbered by their turn in the output, their rank.
#[derive(Debug, Default)]
pub(crate) struct Framing {
    frame: Vec<u8>,
    pieces: Vec<Piece>,
    /// Each rank's first piece, and then the number of pieces.
    first: Vec<usize>,
    /// Each rank's planned leaf.
    pub(crate) order: Vec<usize>,
    data_len: usize,
}

#[derive(Debug, Clone, Copy)]
struct Piece {
    /// Where in `frame` the piece goes.
    cut: usize,
    len: usize,
}

impl Framing {
    /// A safetensors file (or shard) of the planned leaves `members`, laid out by `layout`: its
    /// head, then every tensor in layout order.
    pub(crate) fn safetensors(layout: Layout, planned: &[Planned], members: &[usize]) -> Framing {
        let mut framing = Framing {
            first: Vec::with_capacity(members.len()),
            pieces: Vec::with_capacity(members.len()),
            order: Vec::with_capacity(members.len()),
            frame: layout.head,
            data_len: 0,
        };
        for &j in &layout.order {
            framing.piece(Some(members[j]), planned[members[j]].len);
        }
        framing
    }

    /// The frame bytes still to come, to write into.
    pub(crate) fn frame(&mut self) -> &mut Vec<u8> {
        &mut self.frame
    }

    /// A piece of `len` tensor bytes at this point of the frame: the first piece of the planned
    /// leaf `leaf`'s turn, or (`None`) the next piece of the last one's.
    pub(crate) fn piece(&mut self, leaf: Option<usize>, len: usize) {
        if let Some(leaf) = leaf {
            self.first.push(self.pieces.len());
            self.order.push(leaf);
        }
        self.pieces.push(Piece {
            cut: self.frame.len(),
            len,
        });
        self.data_len += len;
    }

    /// The number of tensors.
    pub(crate) fn count(&self) -> usize {
        self.order.len()
    }

    /// The output's size.
    pub(crate) fn len(&self) -> usize {
        self.frame.len() + self.data_len
    }

    fn pieces(&self, rank: usize) -> Range<usize> {
        self.first[rank]..self.first.get(rank + 1).copied().unwrap_or(self.pieces.len())
    }

    /// The first piece of `rank`; of none for the frame after the last tensor.
    fn first_piece(&self, rank: usize) -> usize {
        self.first.get(rank).copied().unwrap_or(self.pieces.len())
    }

    /// Where in the frame the bytes written with `rank` (the frame's tail, for `count()`) start.
    fn frame_start(&self, rank: usize) -> usize {
        match self.first_piece(rank) {
            0 => 0,
            p => self.pieces[p - 1].cut,
        }
    }

    /// Where in the output the bytes written with `rank` (the frame's tail, for `count()`)
    /// start: the frame before the tensor, then the tensor.
    #[cfg_attr(not(feature = "object-store"), allow(dead_code))]
    pub(crate) fn start(&self, rank: usize) -> u64 {
        let data_before: usize = self.pieces[..self.first_piece(rank)].iter().map(|p| p.len).sum();
        (self.frame_start(rank) + data_before) as u64
    }

    /// The ranks whose bytes (with the frame before them) overlap `range` of the output.
    #[cfg_attr(not(feature = "object-store"), allow(dead_code))]
    pub(crate) fn ranks_within(&self, range: &Range<u64>) -> Range<usize> {
        let mut ends = Vec::with_capacity(self.count());
        let mut data = 0;
        for rank in 0..self.count() {
            let pieces = self.pieces(rank);
            data += self.pieces[pieces.clone()].iter().map(|p| p.len).sum::<usize>();
            ends.push((self.pieces[pieces.end - 1].cut + data) as u64);
        }
        let first = ends.partition_point(|&end| end <= range.start);
        let last = first + ends[first..].partition_point(|&end| end < range.end);
        first..(last + 1).min(self.count())
    }

    /// Writes the tensor of `rank`, whose bytes are `data`, with the frame before it.
    fn put<S: Sink + ?Sized>(&self, rank: usize, mut data: &[u8], sink: &mut S) -> Result<()> {
        let mut at = self.frame_start(rank);
        for piece in &self.pieces[self.pieces(rank)] {
            if at < piece.cut {
                sink.put(&self.frame[at..piece.cut])?;
            }
            let (now, rest) = data.split_at(piece.len);
            sink.put(now)?;
            data = rest;
            at = piece.cut;
        }
        Ok(())
    }

    /// The whole output in one buffer, each planned leaf's bytes given by `data`: the
    /// frame's own allocation, grown to the output's size, so that the frame before the first
    /// tensor (a safetensors file's whole head) is written once, where it stays, rather than
    /// copied into a fresh buffer, whose pages would be faulted in a second time.
    fn into_bytes<'d>(mut self, mut data: impl FnMut(usize) -> &'d [u8]) -> Result<Vec<u8>> {
        let len = self.len();
        let lead = self.pieces.first().map_or(self.frame.len(), |p| p.cut);
        // The frame after the lead is written between the tensors, from a buffer of its own (none,
        // for a safetensors file), its cuts now counted from the lead's end.
        let rest = self.frame.split_off(lead);
        let mut bytes = std::mem::replace(&mut self.frame, rest);
        for piece in &mut self.pieces {
            piece.cut -= lead;
        }
        crate::pages::reserve(&mut bytes, len - lead);
        for (rank, &leaf) in self.order.iter().enumerate() {
            self.put(rank, data(leaf), &mut bytes)?;
        }
        self.finish(&mut bytes)?;
        debug_assert_eq!(bytes.len(), len);
        Ok(bytes)
    }

    /// Writes the frame after the last tensor.
    fn finish<S: Sink + ?Sized>(&self, sink: &mut S) -> Result<()> {
        sink.put(&self.frame[self.frame_start(self.count())..])
    }
}

/// Params whose leaves are all this small, and in all this large, `to_bytes` writes from one walk
/// of the params rather than two: the first walk stages the tensors, in visit order, and the
/// buffer takes them from there in file order. For many small tensors the second walk costs more
/// than the copy it saves (a walk visits every struct, builds every key, for a few bytes each);
/// a large tensor ends the staging, as the copy would then cost more than a walk.
const STAGE_LEAF_MAX: usize = HOLD_SMALL;
const STAGE_MAX: usize = 16 << 20;

pub(crate) fn to_bytes<T: Serialize + Params + ?Sized>(params: &T, options: &Options) -> Result<Vec<u8>> {
    // Room for a few thousand small tensors at once; past it, room for all that may be staged.
    let mut staged: Option<(Vec<u8>, Vec<usize>)> = Some((Vec::with_capacity(1 << 20), Vec::new()));
    let planned = plan_and(params, |leaf| {
        if let Some((bytes, starts)) = &mut staged {
            if leaf.data.len() <= STAGE_LEAF_MAX && bytes.len() + leaf.data.len() <= STAGE_MAX {
                if bytes.capacity() - bytes.len() < leaf.data.len() {
                    // Only the pages touched cost memory, and advised for huge pages they are
                    // faulted in 2 MiB at a time rather than 4 KiB (see `pages.rs`).
                    crate::pages::reserve(bytes, STAGE_MAX - bytes.len());
                }
                starts.push(bytes.len());
                bytes.extend_from_slice(leaf.data);
            } else {
                staged = None;
            }
        }
    })?;
    let metadata = options.metadata_for(params);
    if let Some((staged, starts)) = staged {
        // The head is written into the output's buffer rather than copied there (many small
        // tensors make a large head), then each staged tensor after it, in file order.
        let members = all(&planned);
        let layout = Layout::new(&planned, &members, metadata.as_deref(), Room::WithData)?;
        return Framing::safetensors(layout, &planned, &members)
            .into_bytes(|i| &staged[starts[i]..starts[i] + planned[i].len]);
    }
    let framing = safetensors_framing(&planned, metadata.as_deref())?;
    // One allocation of the final size, not zeroed (recycled heap memory would be written twice),
    // filled in file order as `to_writer` fills any writer: each tensor copied once, from the
    // params. A large buffer asks for huge pages, which cuts the page faults of the first touch
    // (see `pages.rs`).
    let mut bytes = crate::pages::buffer(framing.len());
    stream(
        params,
        &planned,
        &framing,
        0..framing.count(),
        &mut bytes,
        REORDER_BUDGET,
    )?;
    debug_assert_eq!(bytes.len(), framing.len());
    Ok(bytes)
}

/// A safetensors file of every planned leaf.
fn safetensors_framing(planned: &Leaves, metadata: Option<&BTreeMap<String, String>>) -> Result<Framing> {
    let members = all(planned);
    let layout = Layout::new(planned, &members, metadata, Room::HeadOnly)?;
    Ok(Framing::safetensors(layout, planned, &members))
}

/// How many bytes of tensors that arrive before their turn `to_writer` may hold; the rest wait for
/// another walk of the params.
pub(crate) const REORDER_BUDGET: usize = 64 << 20;

/// The largest tensor held whenever it arrives early. Holding copies a tensor once more, into
/// fresh memory; waiting for another walk only visits the leaves again (a few hundred ns each).
/// Structs declare a layer's modules in the order the framework makes them (a convolution before
/// its batch norm) while the file sorts them by key, so most leaves of a model arrive early, and
/// holding them all copied most bytes twice. Small ones are cheaper held; large ones usually come
/// in key order on the next walk (haiku's ResNet50: two walks, 1% of the bytes held, not 99%).
const HOLD_SMALL: usize = 64 << 10;

/// Leaf visits that the walks may make, per byte of tensor data, before large early tensors are
/// held too (within the budget): one per 8 KiB keeps the walks' cost to a few percent of the
/// copy's, and bounds the number of walks when the order is adversarial.
const WAIT_BYTES_PER_VISIT: usize = 8 << 10;

pub(crate) fn to_writer<W: Write, T: Serialize + Params + ?Sized>(
    mut writer: W,
    params: &T,
    options: &Options,
) -> Result<()> {
    let planned = plan(params)?;
    let framing = safetensors_framing(&planned, options.metadata_for(params).as_deref())?;
    write_all(params, &planned, &framing, &mut writer)
}

/// Streams the whole output of `framing` into `writer`, and flushes it.
fn write_all<W: Write, T: Serialize + Params + ?Sized>(
    params: &T,
    planned: &Leaves,
    framing: &Framing,
    writer: &mut W,
) -> Result<()> {
    stream(
        params,
        planned,
        framing,
        0..framing.count(),
        &mut Writer(&mut *writer),
        REORDER_BUDGET,
    )?;
    writer.flush().map_err(Error::stream)
}

/// Writes the tensors of `ranks` (all of them, `0..framing.count()`, for a whole output), with
/// the frame before each and, after the last, the rest of the frame, into `sink` in output order,
/// straight from the params.
///
/// serde visits leaves in the struct's order, the output wants them in its own (a safetensors
/// file by dtype and key, msgpack by dict). A leaf visited
/// on its turn is written at once; one visited early is held if it fits in `budget` and is small
/// ([`HOLD_SMALL`]), else left for a later walk of the params, until the walks have made many
/// visits ([`WAIT_BYTES_PER_VISIT`]): from then on large ones are held too. Each walk writes at
/// least the leaf whose turn it is, so memory stays within the budget and walks are few (one, when
/// the tree is visited in output order). Returns the number of walks.
///
/// Planned leaves that `framing` does not hold (those of other shards), or whose rank is outside
/// `ranks`, are walked past.
pub(crate) fn stream<S: Sink + ?Sized, T: Serialize + Params + ?Sized>(
    params: &T,
    planned: &Leaves,
    framing: &Framing,
    ranks: Range<usize>,
    sink: &mut S,
    budget: usize,
) -> Result<usize> {
    // Each leaf's turn in the output, for the leaves to write now.
    let mut rank = vec![None; planned.len()];
    for r in ranks.clone() {
        rank[framing.order[r]] = Some(r);
    }
    let count = ranks.end;
    let mut next = ranks.start;
    let mut held: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
    let mut held_bytes = 0;
    let patience = 2 * planned.len() + framing.data_len / WAIT_BYTES_PER_VISIT;
    let mut hold_max = HOLD_SMALL;
    let mut walks = 0;
    while next < count {
        walks += 1;
        let before = next;
        walk_planned(params, planned, |i, data| {
            let Some(r) = rank[i] else { return Ok(()) };
            if r == next {
                framing.put(r, data, sink)?;
                next += 1;
                while let Some(data) = held.remove(&next) {
                    framing.put(next, &data, sink)?;
                    held_bytes -= data.len();
                    next += 1;
                }
            } else if r > next && !held.contains_key(&r) && data.len() <= hold_max && held_bytes + data.len() <= budget
            {
                held_bytes += data.len();
                held.insert(r, data.to_vec());
            }
            Ok(())
        })?;
        if next == before {
            return Err(changed());
        }
        if walks * planned.len() >= patience {
            hold_max = usize::MAX;
        }
    }
    if ranks.end == framing.count() {
        framing.finish(sink)?;
    }
    Ok(walks)
}

/// Every planned leaf: the members of a one-file layout.
fn all(planned: &[Planned]) -> Vec<usize> {
    (0..planned.len()).collect()
}

/// Writes `params` to the file at `path`, atomically, each tensor copied once from the params to
/// its place in the file.
pub(crate) fn to_file<T: Serialize + Params + ?Sized>(path: &Path, params: &T, options: &Options) -> Result<()> {
    let planned = plan(params)?;
    let framing = safetensors_framing(&planned, options.metadata_for(params).as_deref())?;
    write_atomic_with(path, |file| {
        // Small tensors gather in the buffer; large ones go straight through it.
        write_all(
            params,
            &planned,
            &framing,
            &mut std::io::BufWriter::with_capacity(1 << 20, file),
        )
    })
}

/// Writes `bytes` to the file at `path`, atomically.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes).map_err(Error::stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dtype, DynTensor, Value};

    /// Leaves visited in key order, but laid out by dtype first: most arrive before their turn.
    fn mixed() -> Value {
        let leaf = |dtype: Dtype, n: usize, fill: u8| {
            let len = dtype.byte_len(n).unwrap();
            Value::Tensor(DynTensor::new(dtype, vec![n], vec![fill; len]).unwrap())
        };
        let dtypes = [
            Dtype::U8,
            Dtype::F32,
            Dtype::I64,
            Dtype::BF16,
            Dtype::F32,
            Dtype::U8,
            Dtype::F64,
        ];
        Value::Dict(
            dtypes
                .iter()
                .enumerate()
                .map(|(i, &d)| (format!("k{i}"), leaf(d, 3 + i, i as u8 + 1)))
                .collect(),
        )
    }

    #[test]
    fn streaming_writes_the_same_bytes_whatever_the_budget() {
        let params = mixed();
        let expected = to_bytes(&params, &Options::new()).unwrap();
        let planned = plan(&params).unwrap();
        let framing = safetensors_framing(&planned, None).unwrap();
        for budget in [0, 1, 8, 40, usize::MAX] {
            let mut out = Vec::new();
            stream(&params, &planned, &framing, 0..framing.count(), &mut out, budget).unwrap();
            assert!(out == expected, "budget {budget}");
        }
    }

    #[test]
    fn large_early_leaves_wait_for_the_second_walk() {
        let big = HOLD_SMALL + 1;
        let leaf = |n: usize, fill: u8| Value::Tensor(DynTensor::new(Dtype::U8, vec![n], vec![fill; n]).unwrap());
        let mut entries = BTreeMap::new();
        // Visited by key: `x0`, `x1`, `x2`; in the file `x2` (F32 sorts before U8) comes first, so
        // the large `x0` and the small `x1` arrive before their turn.
        entries.insert("x0".to_owned(), leaf(big, 1));
        entries.insert("x1".to_owned(), leaf(8, 2));
        entries.insert(
            "x2".to_owned(),
            Value::Tensor(DynTensor::new(Dtype::F32, vec![2], vec![3; 8]).unwrap()),
        );
        let params = Value::Dict(entries);
        let expected = to_bytes(&params, &Options::new()).unwrap();
        let planned = plan(&params).unwrap();
        let framing = safetensors_framing(&planned, None).unwrap();
        let mut out = Vec::new();
        // The first walk holds `x1` but not `x0`, and writes `x2`; the second writes `x0`, `x1`.
        let walks = stream(&params, &planned, &framing, 0..framing.count(), &mut out, usize::MAX).unwrap();
        assert!(out == expected);
        assert_eq!(walks, 2);
    }

    /// A dict whose leaves serialize in reverse key order: the worst order for streaming.
    struct Reversed(Vec<(String, Value)>);

    impl Params for Reversed {
        const SCHEMA: &'static crate::schema::Schema = Value::SCHEMA;
        const IS_LEAFY: bool = true;
    }

    impl Serialize for Reversed {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
            use crate::dynamic::{VALUE_DICT, VALUE_NAME};
            struct Entries<'a>(&'a [(String, Value)]);
            impl Serialize for Entries<'_> {
                fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                    s.collect_map(self.0.iter().rev().map(|(k, t)| (k, t)))
                }
            }
            serializer.serialize_newtype_variant(VALUE_NAME, 1, VALUE_DICT, &Entries(&self.0))
        }
    }

    #[test]
    fn walks_are_bounded_when_every_large_leaf_arrives_early() {
        let n = 40;
        let len = HOLD_SMALL + 1;
        let params = Reversed(
            (0..n)
                .map(|i| {
                    let t = DynTensor::new(Dtype::U8, vec![len], vec![i as u8; len]).unwrap();
                    (format!("k{i:02}"), Value::Tensor(t))
                })
                .collect(),
        );
        let planned = plan(&params).unwrap();
        let framing = safetensors_framing(&planned, None).unwrap();
        let expected = to_bytes(&params, &Options::new()).unwrap();
        // Without a budget, each walk writes one leaf: the last it visits.
        let mut out = Vec::new();
        assert_eq!(
            stream(&params, &planned, &framing, 0..framing.count(), &mut out, 0).unwrap(),
            n
        );
        assert!(out == expected);
        // With one, large leaves wait until the walks have visited 2n + data/8 KiB leaves (400
        // here, 10 walks), then the next walk holds them all.
        let mut out = Vec::new();
        assert_eq!(
            stream(&params, &planned, &framing, 0..framing.count(), &mut out, usize::MAX).unwrap(),
            11
        );
        assert!(out == expected);
    }

    /// `to_bytes` of staged tensors, past the staging's first MiB and with keys whose escapes
    /// outgrow the head's room (each of 40 control characters is 6 bytes escaped): the bytes that
    /// `to_writer` streams.
    #[test]
    fn staged_writes_are_the_streamed_bytes() {
        let prefix = "\u{1}".repeat(40);
        let params = Value::Dict(
            (0..3000u32)
                .map(|i| {
                    let t = DynTensor::new(Dtype::F32, vec![100], vec![i as u8; 400]).unwrap();
                    (format!("{prefix}{i}"), Value::Tensor(t))
                })
                .collect(),
        );
        let staged = to_bytes(&params, &Options::new()).unwrap();
        let mut streamed = Vec::new();
        to_writer(&mut streamed, &params, &Options::new()).unwrap();
        assert!(staged == streamed);
        let head_len = u64::from_le_bytes(staged[..8].try_into().unwrap()) as usize;
        let room: usize = 8 + 64 + 3000 * (prefix.len() + 4 + 96 + 21);
        assert!(head_len > room, "the head ({head_len} bytes) fits the room of {room}");
    }

    /// Every byte range of an output, streamed into a [`Clip`] from the ranks that overlap it,
    /// is that range of the whole output: how a multipart upload makes its parts.
    fn assert_clips_match(params: &Value, planned: &Leaves, framing: &Framing) {
        let mut whole = Vec::new();
        stream(params, planned, framing, 0..framing.count(), &mut whole, usize::MAX).unwrap();
        assert_eq!(whole.len(), framing.len());
        let len = whole.len() as u64;
        for part in [1, 3, 7, 64, len] {
            let mut parts = Vec::new();
            for start in (0..len).step_by(part as usize) {
                let range = start..(start + part).min(len);
                let ranks = framing.ranks_within(&range);
                let mut clip = Clip::new(range.clone(), framing.start(ranks.start));
                stream(params, planned, framing, ranks, &mut clip, 0).unwrap();
                assert_eq!(
                    clip.buf.len() as u64,
                    range.end - range.start,
                    "part size {part} at {start}"
                );
                parts.extend_from_slice(&clip.buf);
            }
            assert!(parts == whole, "part size {part}");
        }
    }

    #[test]
    fn a_byte_range_streams_as_that_range_of_the_file() {
        let params = mixed();
        let planned = plan(&params).unwrap();
        let framing = safetensors_framing(&planned, None).unwrap();
        assert_clips_match(&params, &planned, &framing);
    }

    #[test]
    fn tensors_in_pieces_stream_between_their_frame_bytes() {
        let params = mixed();
        let planned = plan(&params).unwrap();
        // Each tensor in two pieces, reversed order, frame bytes before, between and after.
        let mut framing = Framing::default();
        for i in (0..planned.len()).rev() {
            framing.frame().extend_from_slice(b"<<");
            let half = planned[i].len / 2;
            framing.piece(Some(i), half);
            framing.frame().push(b'|');
            framing.piece(None, planned[i].len - half);
        }
        framing.frame().extend_from_slice(b">>");
        let mut whole = Vec::new();
        stream(&params, &planned, &framing, 0..framing.count(), &mut whole, 0).unwrap();
        let mut expected = Vec::new();
        let staged = staged_leaves(&params);
        for i in (0..planned.len()).rev() {
            let half = planned[i].len / 2;
            expected.extend_from_slice(b"<<");
            expected.extend_from_slice(&staged[i][..half]);
            expected.push(b'|');
            expected.extend_from_slice(&staged[i][half..]);
        }
        expected.extend_from_slice(b">>");
        assert!(whole == expected);
        assert_clips_match(&params, &planned, &framing);
    }

    /// Each leaf's bytes, in visit order.
    fn staged_leaves(params: &Value) -> Vec<Vec<u8>> {
        let mut leaves = Vec::new();
        plan_and(params, |leaf| leaves.push(leaf.data.to_vec())).unwrap();
        leaves
    }

    #[test]
    fn shapes_of_any_rank_are_planned_whole() {
        for rank in [0, 1, 4, 5, 7, 8, 9, 20] {
            let shape: Vec<usize> = (0..rank).map(|d| d % 3 + 1).collect();
            let n: usize = shape.iter().product();
            let leaf = Value::Tensor(DynTensor::new(Dtype::U8, shape.clone(), vec![1; n]).unwrap());
            let params = Value::Dict(BTreeMap::from([("x".to_owned(), leaf)]));
            assert_eq!(&*plan(&params).unwrap()[0].shape, &shape[..], "rank {rank}");
        }
    }

    #[test]
    fn decimals_are_written_as_fmt_writes_them() {
        for n in [0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 12_345, 100_000, usize::MAX] {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }

    #[test]
    fn a_failing_writer_stops_the_write_with_its_error() {
        struct FailAfter(usize);
        impl Write for FailAfter {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                if self.0 < buf.len() {
                    return Err(std::io::Error::other("disk full"));
                }
                self.0 -= buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let err = to_writer(FailAfter(100), &mixed(), &Options::new()).unwrap_err();
        assert_eq!(err.to_string(), "I/O error: disk full");
    }
}
