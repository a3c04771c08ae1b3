//! Entry points for the fuzz targets in `fuzz/` (not public API): the OCDBT and zarr decoders
//! on arbitrary bytes, without files.

use std::collections::BTreeMap;

use super::kvstore::KvStore;
use super::ocdbt::{decode_manifest, decode_node};
use super::source::{DirEntry, Source};
use super::{invalid, zarr};
use crate::Result;

/// Decodes `data` as an OCDBT manifest and as a B-tree node.
pub fn ocdbt(data: &[u8]) {
    let _ = decode_manifest(data, "manifest");
    let _ = decode_node(data, "", 1 << 20, "node");
}

/// Files held in memory (also the store of zarr's unit tests).
pub(crate) struct Memory(pub(crate) BTreeMap<String, Vec<u8>>);

impl Source for Memory {
    fn read(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        match self.0.get(path) {
            Some(bytes) if bytes.len() as u64 > limit => Err(invalid(path, "over the limit")),
            other => Ok(other.cloned()),
        }
    }
    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let bytes = self.0.get(path).ok_or_else(|| invalid(path, "missing"))?;
        let end = offset.checked_add(len).filter(|&e| e <= bytes.len() as u64);
        let end = end.ok_or_else(|| invalid(path, "out of range"))?;
        Ok(bytes[offset as usize..end as usize].to_vec())
    }
    fn list(&self, dir: &str) -> Result<Vec<DirEntry>> {
        let prefix = format!("{dir}/");
        let mut names: Vec<DirEntry> = Vec::new();
        for key in self.0.keys().filter_map(|k| k.strip_prefix(&prefix)) {
            let (name, is_dir) = match key.split_once('/') {
                Some((first, _)) => (first, true),
                None => (key, false),
            };
            if names.last().is_none_or(|l| l.name != name) {
                names.push(DirEntry {
                    name: name.to_owned(),
                    is_dir,
                });
            }
        }
        Ok(names)
    }
}

/// `data` is array metadata (zarr v2 if its first byte is even, v3 otherwise), a NUL byte, then a
/// chunk stored as chunk `0…0` of the array (`c/0…` for v3); an array of at most 1 MiB is read.
pub fn zarr(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let split = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    let (meta, chunk) = (&rest[..split], rest.get(split + 1..).unwrap_or(&[]));
    let v3 = first % 2 == 1;
    let parsed = if v3 {
        zarr::parse_zarr_json(meta, "a")
    } else {
        zarr::parse_zarray(meta, "a")
    };
    let Ok(array) = parsed else { return };
    if array.byte_len() > 1 << 20 {
        return;
    }
    let zeros = vec!["0"; array.shape.len()];
    let key = match (v3, array.shape.is_empty()) {
        (true, true) => "a/c".to_owned(),
        (true, false) => format!("a/c/{}", zeros.join("/")),
        (false, true) => "a/0".to_owned(),
        (false, false) => format!("a/{}", zeros.join(".")),
    };
    let memory = Memory([(key, chunk.to_vec())].into_iter().collect());
    let store = KvStore::files(&memory, String::new());
    if let Ok(out) = array.read(&store, "a") {
        assert_eq!(out.len(), array.byte_len());
    }
}
