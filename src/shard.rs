//! Checkpoints in several files, as Hugging Face lays them out: `model-00001-of-00003.safetensors`
//! and so on, with `model.safetensors.index.json` mapping each key to its shard; or one
//! `model.safetensors`. Flax's msgpack checkpoints (`flax_model.msgpack`, sharded as
//! `flax_model-00001-of-00002.msgpack` with `flax_model.msgpack.index.json`) read the same way.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::IoAt;
use crate::header::{Header, Layout, Planned, Span};
use crate::write::{plan, walk_planned, write_atomic};
use crate::{Deserializer, Error, Options, Params, Result};

/// The single-file name.
pub(crate) const SINGLE: &str = "model.safetensors";
/// The index of a sharded checkpoint.
pub(crate) const INDEX: &str = "model.safetensors.index.json";
const MSGPACK_SINGLE: &str = "flax_model.msgpack";
const MSGPACK_INDEX: &str = "flax_model.msgpack.index.json";

/// `model.safetensors.index.json`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Index {
    pub metadata: IndexMetadata,
    pub weight_map: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct IndexMetadata {
    pub total_size: u64,
}

fn shard_name(stem: &str, extension: &str, n: usize, of: usize) -> String {
    format!("{stem}-{n:05}-of-{of:05}.{extension}")
}

/// Whether `name` is a shard file name of ours (`model-00001-of-00002.safetensors`).
pub(crate) fn is_shard_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("model-").and_then(|r| r.strip_suffix(".safetensors")) else {
        return false;
    };
    let bytes = rest.as_bytes();
    bytes.len() == 14
        && rest[..5].bytes().all(|b| b.is_ascii_digit())
        && &rest[5..9] == "-of-"
        && rest[9..].bytes().all(|b| b.is_ascii_digit())
}

/// Writes `params` into `dir` as Hugging Face does: one `model.safetensors` when it all fits in
/// `max_shard_bytes`, else shards of at most that many tensor bytes (a larger tensor gets a shard
/// of its own) and an index. Shards fill in the order the params visit their leaves; each shard is
/// laid out as the reference writer does. Shard files left from an earlier save are removed.
pub(crate) fn to_dir<T: Serialize + Params + ?Sized>(
    dir: &Path,
    params: &T,
    max_shard_bytes: u64,
    options: &Options,
) -> Result<()> {
    std::fs::create_dir_all(dir).at(dir)?;
    let planned = plan(params)?;
    let (shard_of, names) = assign_shards(&planned, max_shard_bytes);
    let shards = names.len();
    for (k, name) in names.iter().enumerate() {
        let members: Vec<usize> = (0..planned.len()).filter(|&i| shard_of[i] == k).collect();
        let subset: Vec<_> = members.iter().map(|&i| planned[i].clone()).collect();
        let layout = Layout::new(&subset, options.metadata_map())?;
        let mut local = HashMap::with_capacity(members.len());
        for (j, &i) in members.iter().enumerate() {
            local.insert(i, layout.offsets[j]);
        }
        let mut bytes = Vec::with_capacity(layout.file_len());
        bytes.extend_from_slice(&layout.head);
        bytes.resize(layout.file_len(), 0);
        let head = layout.head.len();
        let data = &mut bytes[head..];
        walk_planned(params, &planned, |i, leaf| {
            if let Some(&offset) = local.get(&i) {
                data[offset..offset + leaf.len()].copy_from_slice(leaf);
            }
            Ok(())
        })?;
        write_atomic(&dir.join(name), &bytes)?;
    }
    if shards > 1 {
        write_atomic(&dir.join(INDEX), index_json(&planned, &shard_of, &names)?.as_bytes())?;
    }
    remove_stale(dir, &names)
}

/// The index of a sharded checkpoint, as transformers writes it (`json.dumps(index, indent=2,
/// sort_keys=True)` and a newline): the total tensor bytes, and each key's shard.
pub(crate) fn index_json(planned: &[Planned], shard_of: &[usize], names: &[String]) -> Result<String> {
    let index = Index {
        metadata: IndexMetadata {
            total_size: planned.iter().map(|p| p.len as u64).sum(),
        },
        weight_map: planned
            .iter()
            .zip(shard_of)
            .map(|(p, &k)| (p.key.clone(), names[k].clone()))
            .collect(),
    };
    let mut json =
        serde_json::to_string_pretty(&index).map_err(|e| Error::msg(format_args!("cannot write the index: {e}")))?;
    json.push('\n');
    Ok(json)
}

/// Which shard each planned tensor goes to, and the shards' file names: greedy, in visit order, as
/// transformers' `shard_checkpoint` does.
pub(crate) fn assign_shards(planned: &[Planned], max_shard_bytes: u64) -> (Vec<usize>, Vec<String>) {
    let mut shard_of = Vec::with_capacity(planned.len());
    let (mut shards, mut current) = (0usize, 0u64);
    for p in planned {
        let len = p.len as u64;
        if shards == 0 || (current > 0 && current.saturating_add(len) > max_shard_bytes) {
            shards += 1;
            current = 0;
        }
        current += len;
        shard_of.push(shards - 1);
    }
    let shards = shards.max(1);
    let names = if shards == 1 {
        vec![SINGLE.to_owned()]
    } else {
        (1..=shards)
            .map(|n| shard_name("model", "safetensors", n, shards))
            .collect()
    };
    (shard_of, names)
}

/// Removes the files of an earlier save that the new one does not use.
fn remove_stale(dir: &Path, written: &[String]) -> Result<()> {
    let keep: BTreeSet<&str> = written.iter().map(String::as_str).collect();
    let sharded = written.len() > 1;
    for entry in std::fs::read_dir(dir).at(dir)? {
        let name = entry.at(dir)?.file_name();
        let Some(name) = name.to_str() else { continue };
        let stale = !keep.contains(name) && (is_shard_name(name) || name == SINGLE || (name == INDEX && !sharded));
        if stale {
            let stale = dir.join(name);
            std::fs::remove_file(&stale).at(&stale)?;
        }
    }
    Ok(())
}

/// Checks a shard file name from an index: a plain file name in the index's directory, with the
/// extension of the format.
pub(crate) fn checked_shard<'n>(name: &'n str, extension: &str) -> Result<&'n str> {
    let plain = !name.is_empty()
        && !name.contains(['/', '\\', '\0'])
        && name != "."
        && name != ".."
        && !Path::new(name).is_absolute()
        && name.ends_with(extension);
    if plain {
        Ok(name)
    } else {
        Err(Error::InvalidIndex {
            reason: format!("the index names shard `{name}`, which is not a `{extension}` file beside it"),
        })
    }
}

/// The format of a checkpoint's files.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Safetensors,
    Msgpack,
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
    let index = index.filter(|_| format == Format::Safetensors);
    let merged = merge_shards(headers, &names, index.as_ref())?;
    Deserializer::from_header(inputs, merged, options.clone()).deserialize()
}

/// One header for all the shards: entry `Span::Input(n)` lies in shard `n` (`names[n]`, a path or
/// an object name ending in the file name the index uses). With an index, each key must be in the
/// shard the index names, and every key of the index in some shard.
pub(crate) fn merge_shards(headers: Vec<Header>, names: &[String], index: Option<&Index>) -> Result<Header> {
    let mut merged = Header {
        entries: Vec::new(),
        metadata: None,
        side: Vec::new(),
    };
    for (n, header) in headers.into_iter().enumerate() {
        let side_base = merged.side.len();
        merged.side.extend_from_slice(&header.side);
        merged.metadata = merged.metadata.or(header.metadata);
        for mut entry in header.entries {
            match entry.span {
                Span::Input(_) => entry.span = Span::Input(n),
                Span::Side => {
                    entry.start += side_base;
                    entry.end += side_base;
                }
            }
            if let Some(index) = index {
                let listed = index.weight_map.get(&entry.key).map(String::as_str);
                let file_name = names[n].rsplit(['/', '\\']).next();
                if listed != file_name {
                    return Err(Error::InvalidIndex {
                        reason: format!(
                            "`{}` is in {}, but the index lists it in {listed:?}",
                            entry.key, names[n]
                        ),
                    });
                }
            }
            merged.entries.push(entry);
        }
    }
    let mut seen = BTreeSet::new();
    if let Some(dup) = merged.entries.iter().find(|e| !seen.insert(e.key.as_str())) {
        return Err(Error::DuplicateKey { key: dup.key.clone() });
    }
    if let Some(missing) = index.and_then(|index| index.weight_map.keys().find(|k| !seen.contains(k.as_str()))) {
        return Err(Error::InvalidIndex {
            reason: format!("the index lists `{missing}`, which no shard holds"),
        });
    }
    Ok(merged)
}

/// The files of a checkpoint, their format, and its index if sharded.
struct Located {
    files: Vec<PathBuf>,
    format: Format,
    index: Option<Index>,
}

/// Reads the index `name` in `dir`, if there is one, with its shard files.
fn read_index(dir: &Path, name: &str, format: Format) -> Result<Option<Located>> {
    let index_path = dir.join(name);
    if !index_path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&index_path).at(&index_path)?;
    let index: Index = serde_json::from_str(&text).map_err(|e| Error::InvalidIndex {
        reason: format!("{}: not a shard index: {e}", index_path.display()),
    })?;
    let extension = if format == Format::Msgpack {
        ".msgpack"
    } else {
        ".safetensors"
    };
    let mut files = BTreeSet::new();
    for shard in index.weight_map.values() {
        files.insert(checked_shard(shard, extension)?.to_owned());
    }
    Ok(Some(Located {
        files: files.into_iter().map(|f| dir.join(f)).collect(),
        format,
        index: Some(index),
    }))
}

fn locate(path: &Path) -> Result<Located> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if path.is_file() {
        let dir = path.parent().unwrap_or(Path::new("."));
        for (suffix, format) in [
            (".safetensors.index.json", Format::Safetensors),
            (".msgpack.index.json", Format::Msgpack),
        ] {
            if name.ends_with(suffix) {
                return read_index(dir, name, format)?.ok_or_else(|| unreachable_index(path));
            }
        }
        let format = if name.ends_with(".msgpack") {
            Format::Msgpack
        } else {
            Format::Safetensors
        };
        return Ok(Located {
            files: vec![path.to_owned()],
            format,
            index: None,
        });
    }
    for (index, single, format) in [
        (INDEX, SINGLE, Format::Safetensors),
        (MSGPACK_INDEX, MSGPACK_SINGLE, Format::Msgpack),
    ] {
        if let Some(found) = read_index(path, index, format)? {
            return Ok(found);
        }
        if path.join(single).is_file() {
            return Ok(Located {
                files: vec![path.join(single)],
                format,
                index: None,
            });
        }
    }
    Err(Error::NoCheckpoint {
        path: path.display().to_string(),
        looked_for: vec![INDEX, SINGLE, MSGPACK_INDEX, MSGPACK_SINGLE],
    })
}

fn unreachable_index(path: &Path) -> Error {
    Error::io(path, std::io::ErrorKind::NotFound.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_are_recognized() {
        assert_eq!(
            shard_name("model", "safetensors", 2, 13),
            "model-00002-of-00013.safetensors"
        );
        assert!(is_shard_name("model-00002-of-00013.safetensors"));
        assert!(!is_shard_name("model-2-of-13.safetensors"));
        assert!(!is_shard_name("model.safetensors"));
        assert!(!is_shard_name("model-00002-of-00013.safetensors.tmp"));
    }

    #[test]
    fn shard_names_from_an_index_stay_in_its_directory() {
        assert!(checked_shard("model-00001-of-00002.safetensors", ".safetensors").is_ok());
        for bad in [
            "../model.safetensors",
            "/etc/passwd.safetensors",
            "a/b.safetensors",
            "model.bin",
            "",
            "..",
        ] {
            assert!(checked_shard(bad, ".safetensors").is_err(), "{bad}");
        }
    }
}
