//! Writing files: learn every key and size, lay the file out as the reference safetensors writer
//! does, then copy each tensor's bytes once, to its final place.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::checkpoint::store::write_atomic_with;
use crate::header::{Layout, Planned, MAX_RANK, METADATA_KEY};
use crate::{Error, LeafRef, Options, Params, Result, Serializer};

/// The first walk: every leaf's key, dtype, shape and size, in the order serde visits them.
pub(crate) fn plan<T: Serialize + Params + ?Sized>(params: &T) -> Result<Vec<Planned>> {
    plan_and(params, |_| {})
}

/// [`plan`], handing each accepted leaf to `also` as well.
fn plan_and<T: Serialize + Params + ?Sized>(params: &T, mut also: impl FnMut(&LeafRef<'_>)) -> Result<Vec<Planned>> {
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
    let mut seen = HashSet::with_capacity(planned.len());
    if let Some(dup) = planned.iter().find(|p| !seen.insert(p.key.as_str())) {
        return Err(Error::DuplicateKey { key: dup.key.clone() });
    }
    Ok(planned)
}

/// A walk that plans every leaf, after `check` (given the leaf and its index in the walk) accepts
/// it: what each format's first walk shares.
pub(crate) fn plan_with<T: Serialize + Params + ?Sized>(
    params: &T,
    mut check: impl FnMut(&LeafRef<'_>, usize) -> Result<()>,
) -> Result<Vec<Planned>> {
    let mut planned = Vec::new();
    params.serialize(&mut Serializer::new::<T>(|leaf| {
        check(&leaf, planned.len())?;
        planned.push(Planned {
            key: leaf.key.to_owned(),
            dtype: leaf.dtype,
            shape: leaf.shape.to_vec(),
            len: leaf.data.len(),
        });
        Ok(())
    }))?;
    Ok(planned)
}

/// Walks the params again, after [`plan`]: hands each leaf's index in the walk and its bytes to
/// `put`, after checking that the leaf is the one planned there.
pub(crate) fn walk_planned<T: Serialize + Params + ?Sized>(
    params: &T,
    planned: &[Planned],
    mut put: impl FnMut(usize, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut next = 0;
    params.serialize(&mut Serializer::new::<T>(|leaf| {
        let matches = planned
            .get(next)
            .is_some_and(|p| p.key == leaf.key && p.len == leaf.data.len());
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
    Error::msg("the params serialized differently on the second pass (a `Serialize` impl that is not deterministic?)")
}

/// Params whose leaves are all this small, and in all this large, `to_bytes` writes from one walk
/// of the params rather than two: the first walk stages the tensors, in visit order, and the
/// buffer takes them from there in file order. For many small tensors the second walk costs more
/// than the copy it saves (a walk visits every struct, builds every key, for a few bytes each);
/// a large tensor ends the staging, as the copy would then cost more than a walk.
const STAGE_LEAF_MAX: usize = HOLD_SMALL;
const STAGE_MAX: usize = 16 << 20;

pub(crate) fn to_bytes<T: Serialize + Params + ?Sized>(params: &T, options: &Options) -> Result<Vec<u8>> {
    let mut staged: Option<(Vec<u8>, Vec<usize>)> = Some((Vec::new(), Vec::new()));
    let planned = plan_and(params, |leaf| {
        if let Some((bytes, starts)) = &mut staged {
            if leaf.data.len() <= STAGE_LEAF_MAX && bytes.len() + leaf.data.len() <= STAGE_MAX {
                starts.push(bytes.len());
                bytes.extend_from_slice(leaf.data);
            } else {
                staged = None;
            }
        }
    })?;
    let layout = Layout::new(&planned, options.metadata_for(params).as_deref())?;
    if let Some((staged, starts)) = staged {
        let mut bytes = crate::pages::buffer(layout.file_len());
        bytes.extend_from_slice(&layout.head);
        for &i in &layout.order {
            bytes.extend_from_slice(&staged[starts[i]..starts[i] + planned[i].len]);
        }
        debug_assert_eq!(bytes.len(), layout.file_len());
        return Ok(bytes);
    }
    // One allocation of the final size, not zeroed (recycled heap memory would be written twice),
    // filled in file order as `to_writer` fills any writer: each tensor copied once, from the
    // params. A large buffer asks for huge pages, which cuts the page faults of the first touch
    // (see `pages.rs`).
    let mut bytes = crate::pages::buffer(layout.file_len());
    bytes.extend_from_slice(&layout.head);
    stream(params, &planned, &all(&planned), &layout, &mut bytes, REORDER_BUDGET)?;
    debug_assert_eq!(bytes.len(), layout.file_len());
    Ok(bytes)
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
    let layout = Layout::new(&planned, options.metadata_for(params).as_deref())?;
    writer.write_all(&layout.head).map_err(Error::stream)?;
    stream(params, &planned, &all(&planned), &layout, &mut writer, REORDER_BUDGET)?;
    writer.flush().map_err(Error::stream)?;
    Ok(())
}

/// Writes the tensors to `writer` in file order, straight from the params.
///
/// serde visits leaves in the struct's order, the file wants them by dtype and key. A leaf visited
/// on its turn is written at once; one visited early is held if it fits in `budget` and is small
/// ([`HOLD_SMALL`]), else left for a later walk of the params, until the walks have made many
/// visits ([`WAIT_BYTES_PER_VISIT`]): from then on large ones are held too. Each walk writes at
/// least the leaf whose turn it is, so memory stays within the budget and walks are few (one, when
/// the tree is visited in file order). Returns the number of walks.
///
/// `layout` lays out the planned leaves `members` (indices into `planned`, all of them for one
/// file, a shard's for a shard); the other leaves are walked past.
pub(crate) fn stream<W: Write + ?Sized, T: Serialize + Params + ?Sized>(
    params: &T,
    planned: &[Planned],
    members: &[usize],
    layout: &Layout,
    writer: &mut W,
    budget: usize,
) -> Result<usize> {
    // Each member leaf's turn in the file; leaves of other files (shards) have none.
    let mut rank = vec![None; planned.len()];
    for (r, &j) in layout.order.iter().enumerate() {
        rank[members[j]] = Some(r);
    }
    let count = members.len();
    let mut next = 0;
    let mut held: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
    let mut held_bytes = 0;
    let patience = 2 * planned.len() + layout.data_len / WAIT_BYTES_PER_VISIT;
    let mut hold_max = HOLD_SMALL;
    let mut walks = 0;
    while next < count {
        walks += 1;
        let before = next;
        walk_planned(params, planned, |i, data| {
            let Some(r) = rank[i] else { return Ok(()) };
            if r == next {
                writer.write_all(data).map_err(Error::stream)?;
                next += 1;
                while let Some(data) = held.remove(&next) {
                    writer.write_all(&data).map_err(Error::stream)?;
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
    let layout = Layout::new(&planned, options.metadata_for(params).as_deref())?;
    write_atomic_with(path, |file| {
        // Small tensors gather in the buffer; large ones go straight through it.
        let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
        writer.write_all(&layout.head).map_err(Error::stream)?;
        stream(params, &planned, &all(&planned), &layout, &mut writer, REORDER_BUDGET)?;
        writer.flush().map_err(Error::stream)?;
        Ok(())
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
        let layout = Layout::new(&planned, None).unwrap();
        for budget in [0, 1, 8, 40, usize::MAX] {
            let mut out = layout.head.clone();
            stream(&params, &planned, &all(&planned), &layout, &mut out, budget).unwrap();
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
        let layout = Layout::new(&planned, None).unwrap();
        let mut out = layout.head.clone();
        // The first walk holds `x1` but not `x0`, and writes `x2`; the second writes `x0`, `x1`.
        let walks = stream(&params, &planned, &all(&planned), &layout, &mut out, usize::MAX).unwrap();
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
        let layout = Layout::new(&planned, None).unwrap();
        let expected = to_bytes(&params, &Options::new()).unwrap();
        // Without a budget, each walk writes one leaf: the last it visits.
        let mut out = layout.head.clone();
        assert_eq!(
            stream(&params, &planned, &all(&planned), &layout, &mut out, 0).unwrap(),
            n
        );
        assert!(out == expected);
        // With one, large leaves wait until the walks have visited 2n + data/8 KiB leaves (400
        // here, 10 walks), then the next walk holds them all.
        let mut out = layout.head.clone();
        assert_eq!(
            stream(&params, &planned, &all(&planned), &layout, &mut out, usize::MAX).unwrap(),
            11
        );
        assert!(out == expected);
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
