//! Checkpoints in several files, as Hugging Face lays them out: `model-00001-of-00003.safetensors`
//! and so on, with `model.safetensors.index.json` mapping each key to its shard; or one
//! `model.safetensors`. Flax's msgpack checkpoints (`flax_model.msgpack`, sharded as
//! `flax_model-00001-of-00002.msgpack` with `flax_model.msgpack.index.json`) read the same way.
//! The layouts, the index and the crash-safe commit are [`crate::checkpoint`]'s; this module
//! streams the params into the shards and reads them back.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;

use memmap2::Mmap;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::checkpoint::store::{ready, LocalDir};
use crate::checkpoint::{assign_shards, begin, finish, locate, Format, Index, IndexMetadata, Located};
use crate::error::IoAt;
use crate::header::{Header, Layout, Leaves, Room, Span};
use crate::write::{plan, stream, Framing, Writer, REORDER_BUDGET};
use crate::{Deserializer, Error, Options, Params, Result};

/// Writes `params` into `dir` as Hugging Face does: one `model.safetensors` when it all fits in
/// `max_shard_bytes`, else shards of at most that many tensor bytes (a larger tensor gets a shard
/// of its own) and an index. Shards fill in the order the params visit their leaves; each shard is
/// laid out as the reference writer does and streamed to its file straight from the params. The
/// save is crash-safe (see `checkpoint::commit`); the files of an earlier save are removed.
pub(crate) fn to_dir<T: Serialize + Params + ?Sized>(
    dir: &Path,
    params: &T,
    max_shard_bytes: u64,
    options: &Options,
) -> Result<()> {
    let store = LocalDir::create(dir)?;
    let planned = plan(params)?;
    let (shard_of, shards) = assign_shards(planned.iter().map(|p| p.len as u64), max_shard_bytes);
    let begun = ready(begin(&store, Format::Safetensors, shards))??;
    for (k, name) in begun.names.iter().enumerate() {
        let members: Vec<usize> = (0..planned.len()).filter(|&i| shard_of[i] == k).collect();
        let layout = Layout::new(
            &planned,
            &members,
            options.metadata_for(params).as_deref(),
            Room::HeadOnly,
        )?;
        let framing = Framing::safetensors(layout, &planned, &members);
        store.write_with(name, |out| {
            stream(
                params,
                &planned,
                &framing,
                0..framing.count(),
                &mut Writer(out),
                REORDER_BUDGET,
            )?;
            Ok(())
        })?;
    }
    let index = (shards > 1).then(|| index_of(keys_and_sizes(&planned), &shard_of, &begun.names));
    ready(finish(&store, &begun, index.as_ref()))?
}

/// Each planned tensor's key and size, for [`index_of`].
pub(crate) fn keys_and_sizes(planned: &Leaves) -> impl Iterator<Item = (String, usize)> + '_ {
    (0..planned.len()).map(|i| (planned.key(i).to_owned(), planned[i].len))
}

/// The index of a sharded save: each key's shard, and the total tensor bytes.
pub(crate) fn index_of(keys: impl Iterator<Item = (String, usize)>, shard_of: &[usize], names: &[String]) -> Index {
    let mut total = 0;
    let weight_map = keys
        .zip(shard_of)
        .map(|((key, len), &k)| {
            total += len as u64;
            (key, names[k].clone())
        })
        .collect();
    Index {
        metadata: IndexMetadata {
            total_size: Some(total),
            extra: Default::default(),
        },
        weight_map,
    }
}

/// Maps a file for reading.
fn map(path: &Path) -> Result<Mmap> {
    let file = File::open(path).at(path)?;
    // SAFETY: the map is only read, inside `from_dir`, and dropped before it returns. Another process
    // changing or truncating the file meanwhile would change what is read or fault; checkpoints are
    // not rewritten in place by this crate (writes go to a new file that is renamed over).
    unsafe { Mmap::map(&file) }.at(path)
}

/// Reads params from a checkpoint directory (a sharded index, or a single file) or from the path of
/// an index or a single file.
pub(crate) fn from_dir<T: DeserializeOwned + Params>(path: &Path, options: &Options) -> Result<T> {
    let Located { files, format, index } = locate(path)?;
    let maps = files.iter().map(|f| map(f)).collect::<Result<Vec<_>>>()?;
    let inputs: Vec<&[u8]> = maps.iter().map(|m| &m[..]).collect();
    let headers = inputs
        .iter()
        .zip(&files)
        .map(|(bytes, file)| {
            match format {
                Format::Safetensors => Header::parse(bytes),
                Format::Msgpack => crate::msgpack::parse(bytes),
            }
            .map_err(|e| Error::in_file(file.display(), e))
        })
        .collect::<Result<Vec<_>>>()?;
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    // A msgpack index names keys joined with `/`, not our keys: only its shard files are used.
    let index = index.map(|(_, index)| index).filter(|_| format == Format::Safetensors);
    let merged = merge_shards(headers, &names, index.as_ref())?;
    Deserializer::from_header(inputs, merged, options.clone()).deserialize()
}

/// One header for all the shards: entry `Span::Input(n)` lies in shard `n` (`names[n]`, a path or
/// an object name ending in the file name the index uses). With an index, each key must be in the
/// shard the index names, and every key of the index in some shard.
pub(crate) fn merge_shards(headers: Vec<Header>, names: &[String], index: Option<&Index>) -> Result<Header> {
    let mut merged = Header::default();
    for (n, header) in headers.into_iter().enumerate() {
        let side_base = merged.side.len();
        merged.side.extend_from_slice(&header.side);
        for (i, entry) in header.entries.iter().enumerate() {
            let key = header.key_of(entry);
            if let Some(index) = index {
                let listed = index.weight_map.get(key).map(String::as_str);
                let file_name = names[n].rsplit(['/', '\\']).next();
                if listed != file_name {
                    return Err(Error::InvalidIndex {
                        reason: format!("`{key}` is in {}, but the index lists it in {listed:?}", names[n]),
                    });
                }
            }
            merged.push_from(&header, i, entry.span())?;
            let pushed = merged.entries.last_mut().expect("just pushed");
            match pushed.span() {
                Span::Input(_) => pushed.set_span(Span::Input(n))?,
                Span::Side => {
                    pushed.start += side_base;
                    pushed.end += side_base;
                }
                Span::Owned(_) => {} // only Orbax's reader makes these, never a shard's header
            }
        }
        merged.metadata = merged.metadata.or(header.metadata);
    }
    let mut seen = BTreeSet::new();
    if let Some(dup) = merged.keys().find(|&key| !seen.insert(key)) {
        return Err(Error::DuplicateKey { key: dup.to_owned() });
    }
    if let Some(missing) = index.and_then(|index| index.weight_map.keys().find(|k| !seen.contains(k.as_str()))) {
        return Err(Error::InvalidIndex {
            reason: format!("the index lists `{missing}`, which no shard holds"),
        });
    }
    Ok(merged)
}
