//! The key-value view of an item directory that zarr arrays are read through: an OCDBT database
//! (its latest version's B-tree, walked once into a sorted map of keys to values) or plain files.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::invalid;
use super::ocdbt::{decode_manifest, decode_node, Entries, Location, Value, MAX_MANIFEST_BYTES};
use super::source::Source;
use crate::Result;

/// The largest encoded B-tree node read (tensorstore writes nodes of at most a few MB; Orbax's
/// `max_decoded_node_bytes` is 100 MB).
const MAX_NODE_BYTES: u64 = 256 << 20;
/// The largest plain file read whole (metadata files; chunk files are bounded by their shape).
pub(crate) const MAX_FILE_BYTES: u64 = 64 << 30;

pub(crate) enum KvStore<'s> {
    /// An OCDBT database: every key of its latest version.
    Ocdbt {
        source: &'s dyn Source,
        entries: BTreeMap<Vec<u8>, Value>,
    },
    /// Files below `prefix` (which ends with `/` or is empty).
    Files { source: &'s dyn Source, prefix: String },
}

impl<'s> KvStore<'s> {
    /// Opens the OCDBT database whose `manifest.ocdbt` is in `dir` (`""` or ending with `/`).
    pub(crate) fn ocdbt(source: &'s dyn Source, dirs: &[String]) -> Result<Self> {
        let mut entries = BTreeMap::new();
        for dir in dirs {
            read_database(source, dir, &mut entries)?;
        }
        Ok(KvStore::Ocdbt { source, entries })
    }

    pub(crate) fn files(source: &'s dyn Source, prefix: String) -> Self {
        KvStore::Files { source, prefix }
    }

    /// The value of `key`, or `None`; at most `limit` bytes.
    pub(crate) fn get(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        match self {
            KvStore::Ocdbt { source, entries } => match entries.get(key.as_bytes()) {
                None => Ok(None),
                Some(Value::Inline(bytes)) => Ok(Some(bytes.clone())),
                Some(Value::Indirect(location)) => {
                    if location.length > limit {
                        return Err(invalid(
                            key,
                            format_args!("a value of {} bytes, more than the {limit} expected", location.length),
                        ));
                    }
                    read_location(*source, location).map(Some)
                }
            },
            KvStore::Files { source, prefix } => source.read(&format!("{prefix}{key}"), limit),
        }
    }

    /// Tells the source which data file ranges the values below each of `dirs` (the arrays about
    /// to be read) lie in, so that a store fetches them together rather than one by one. Plain
    /// files have one chunk per file: nothing to merge.
    pub(crate) fn prefetch(&self, dirs: &[&str]) -> Result<()> {
        let KvStore::Ocdbt { source, entries } = self else {
            return Ok(());
        };
        let mut ranges = Vec::new();
        for dir in dirs {
            for (_, value) in below(entries, &format!("{dir}/")) {
                if let Value::Indirect(location) = value {
                    let end = location.offset.saturating_add(location.length);
                    ranges.push((location.file.path(), location.offset..end));
                }
            }
        }
        source.prefetch(&ranges)
    }

    /// The keys below `dir/` (an array's chunk keys), relative to it.
    pub(crate) fn keys_under(&self, dir: &str) -> Result<Vec<String>> {
        let start = format!("{dir}/");
        match self {
            KvStore::Ocdbt { entries, .. } => Ok(below(entries, &start)
                .filter_map(|(k, _)| std::str::from_utf8(&k[start.len()..]).ok().map(str::to_owned))
                .collect()),
            KvStore::Files { source, prefix } => {
                let mut out = Vec::new();
                list_files(*source, &format!("{prefix}{dir}"), "", &mut out, 0)?;
                Ok(out)
            }
        }
    }
}

/// The entries whose keys start with `start`, in key order.
fn below<'e>(entries: &'e BTreeMap<Vec<u8>, Value>, start: &'e str) -> impl Iterator<Item = (&'e Vec<u8>, &'e Value)> {
    entries
        .range::<[u8], _>((Bound::Included(start.as_bytes()), Bound::Unbounded))
        .take_while(move |(k, _)| k.starts_with(start.as_bytes()))
}

/// Every file below `dir`, as paths relative to it; at most 32 levels deep.
fn list_files(source: &dyn Source, dir: &str, relative: &str, out: &mut Vec<String>, depth: usize) -> Result<()> {
    if depth > 32 {
        return Err(invalid(dir, "directories nested deeper than 32 levels"));
    }
    for entry in source.list(dir)? {
        let rel = format!("{relative}{}", entry.name);
        if entry.is_dir {
            list_files(
                source,
                &format!("{dir}/{}", entry.name),
                &format!("{rel}/"),
                out,
                depth + 1,
            )?;
        } else {
            out.push(rel);
        }
    }
    Ok(())
}

fn read_location(source: &dyn Source, location: &Location) -> Result<Vec<u8>> {
    source.read_range(&location.file.path(), location.offset, location.length)
}

/// Reads the database in `dir`: its manifest (or, for a numbered one, the latest
/// `manifest.<16 hex digits>`), then every B-tree node of the latest version.
fn read_database(source: &dyn Source, dir: &str, entries: &mut BTreeMap<Vec<u8>, Value>) -> Result<()> {
    let path = format!("{dir}manifest.ocdbt");
    let bytes = source
        .read(&path, MAX_MANIFEST_BYTES as u64)?
        .ok_or_else(|| invalid(&path, "missing"))?;
    let mut manifest = decode_manifest(&bytes, &path)?;
    if !manifest.config.single {
        let latest = source
            .list(dir.trim_end_matches('/'))?
            .into_iter()
            .filter_map(|e| {
                let hex = e.name.strip_prefix("manifest.")?;
                (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok()).flatten()
            })
            .max()
            .ok_or_else(|| invalid(&path, "a numbered manifest without any manifest.<generation> file"))?;
        let numbered = format!("{dir}manifest.{latest:016x}");
        let bytes = source
            .read(&numbered, MAX_MANIFEST_BYTES as u64)?
            .ok_or_else(|| invalid(&numbered, "missing"))?;
        manifest = decode_manifest(&bytes, &numbered)?;
        if !manifest.config.single {
            return Err(invalid(&numbered, "a numbered manifest that refers to another"));
        }
    }
    let root = manifest.root.expect("a single manifest has a root");
    let Some(location) = root.location else { return Ok(()) };
    let limit = manifest.config.max_decoded_node_bytes.min(MAX_NODE_BYTES) as usize;
    walk(source, dir, &location, root.height, Vec::new(), limit, entries)
}

/// Reads the node at `location`, which must have height `height`, and adds its keys (each after
/// `inherited`). Heights strictly decrease on the way down, so a node that refers to itself or to
/// an ancestor is an error, not a loop.
fn walk(
    source: &dyn Source,
    dir: &str,
    location: &Location,
    height: u8,
    inherited: Vec<u8>,
    limit: usize,
    entries: &mut BTreeMap<Vec<u8>, Value>,
) -> Result<()> {
    let path = format!("{dir}{}", location.file.path());
    if location.length > MAX_NODE_BYTES {
        return Err(invalid(
            &path,
            format_args!("a B-tree node of {} bytes", location.length),
        ));
    }
    let encoded = source.read_range(&path, location.offset, location.length)?;
    let what = format!("{path} (B-tree node at byte {})", location.offset);
    // The node's own data file paths are relative to the base path of the file it is in.
    let node = decode_node(&encoded, &location.file.base, limit, &what)?;
    if node.height != height {
        return Err(invalid(
            &what,
            format_args!("expected a node of height {height}, found height {}", node.height),
        ));
    }
    match node.entries {
        Entries::Leaf(leaf) => {
            for (key, value) in leaf {
                let mut full = inherited.clone();
                full.extend_from_slice(&key);
                let value = match value {
                    Value::Indirect(mut loc) => {
                        loc.file.base = format!("{dir}{}", loc.file.base);
                        Value::Indirect(loc)
                    }
                    inline => inline,
                };
                entries.insert(full, value);
            }
        }
        Entries::Interior(children) => {
            let Some(child_height) = height.checked_sub(1) else {
                unreachable!("a node of height 0 is a leaf")
            };
            for child in children {
                let mut prefix = inherited.clone();
                prefix.extend_from_slice(&child.key[..child.subtree_common_prefix]);
                walk(source, dir, &child.location, child_height, prefix, limit, entries)?;
            }
        }
    }
    Ok(())
}
