//! Writing Orbax's default layout (what `StandardCheckpointer().save` writes): an OCDBT database
//! of zarr v2 arrays, one zstd chunk each, with `_METADATA`, `_sharding` and
//! `_CHECKPOINT_METADATA`; written into `<name>.orbax-checkpoint-tmp` and moved into place (the
//! checkpoint layer's directory commit). Or the same item as a `CheckpointManager` step.
//!
//! The database is one leaf B-tree node: zarr metadata and chunks up to 1024 bytes inline, larger
//! chunks out of line in the same data file, as tensorstore does with Orbax's configuration. Each
//! chunk is compressed as the serializer reaches its leaf and appended to the data file at once,
//! so memory holds the params and one compressed chunk, never the data file.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::json;

use super::codec::crc32c;
use super::invalid;
use super::ocdbt::{BTREE_NODE_MAGIC, MANIFEST_MAGIC};
use crate::checkpoint::commit_dir;
use crate::checkpoint::store::{sync_dir, write_synced};
use crate::error::IoAt;
use crate::{Error, Params, Result, Serializer};

/// Orbax's OCDBT configuration.
const MAX_INLINE_VALUE_BYTES: usize = 1024;
const MAX_DECODED_NODE_BYTES: u64 = 100_000_000;
/// Orbax's zarr v2 compressor level.
const ZSTD_LEVEL: i32 = 1;
const HANDLER: &str = "orbax.checkpoint._src.handlers.standard_checkpoint_handler.StandardCheckpointHandler";

struct Array {
    path: Vec<String>,
    name: String,
    shape: Vec<usize>,
    zarray: Stored,
    chunk: Stored,
}

/// Where a value of the database is: in the B-tree node, or at a byte range of the data file.
enum Stored {
    Inline(Vec<u8>),
    Indirect { offset: u64, len: u64 },
}

/// The data file, written as values arrive: out-of-line values in the order of the leaves, then
/// the B-tree node.
struct DataFile {
    file: BufWriter<fs::File>,
    path: PathBuf,
    len: u64,
}

impl DataFile {
    fn create(path: PathBuf) -> Result<Self> {
        let file = fs::File::create(&path).at(&path)?;
        Ok(DataFile {
            file: BufWriter::with_capacity(1 << 20, file),
            path,
            len: 0,
        })
    }

    fn append(&mut self, bytes: &[u8]) -> Result<u64> {
        let offset = self.len;
        self.file.write_all(bytes).at(&self.path)?;
        self.len += bytes.len() as u64;
        Ok(offset)
    }

    /// Keeps a value of up to [`MAX_INLINE_VALUE_BYTES`] for the node; appends a larger one.
    fn put(&mut self, value: &[u8]) -> Result<Stored> {
        if value.len() <= MAX_INLINE_VALUE_BYTES {
            return Ok(Stored::Inline(value.to_vec()));
        }
        let offset = self.append(value)?;
        Ok(Stored::Indirect {
            offset,
            len: value.len() as u64,
        })
    }

    fn finish(self) -> Result<()> {
        let file = self
            .file
            .into_inner()
            .map_err(|e| Error::io(&self.path, e.into_error()))?;
        file.sync_all().at(&self.path)
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// An envelope with a zstd body, as tensorstore writes with Orbax's configuration.
fn envelope(magic: u32, body: &[u8]) -> Result<Vec<u8>> {
    let compressed = zstd::bulk::compress(body, 0).map_err(|e| Error::msg(format_args!("zstd: {e}")))?;
    let mut out = magic.to_be_bytes().to_vec();
    out.extend_from_slice(&((12 + 2 + compressed.len() + 4) as u64).to_le_bytes());
    out.extend_from_slice(&[0, 1]); // version 0, zstd
    out.extend_from_slice(&compressed);
    let crc = crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// A data file table of one file.
fn one_file_table(out: &mut Vec<u8>, path: &str) {
    out.push(1);
    varint(out, path.len() as u64);
    out.push(0);
    out.extend_from_slice(path.as_bytes());
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Base64 with the URL-safe alphabet and padding (Python's `base64.urlsafe_b64encode`).
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A tree path as Python prints the tuple (`('params', 'w')`), the key of `_METADATA`'s entries.
fn tuple_repr(path: &[String]) -> String {
    let parts: Vec<String> = path
        .iter()
        .map(|p| format!("'{}'", p.replace('\\', "\\\\").replace('\'', "\\'")))
        .collect();
    if parts.len() == 1 {
        format!("({},)", parts[0])
    } else {
        format!("({})", parts.join(", "))
    }
}

/// Serializes `params`, compressing each leaf into one chunk appended to `data` as it comes.
fn arrays_of<T: Serialize + Params + ?Sized>(params: &T, data: &mut DataFile) -> Result<Vec<Array>> {
    let mut arrays = Vec::new();
    let mut compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(|e| Error::msg(format_args!("zstd: {e}")))?;
    // One buffer for every chunk, as large as the largest leaf needs.
    let mut compressed = Vec::new();
    params.serialize(&mut Serializer::new::<T>(|leaf| {
        let dtype = leaf.dtype.zarr_v2_name().ok_or_else(|| {
            invalid(
                leaf.key,
                format_args!("{} has no zarr v2 name that Orbax reads", leaf.dtype),
            )
        })?;
        let zarray = json!({
            "chunks": leaf.shape, "compressor": {"id": "zstd", "level": ZSTD_LEVEL},
            "dimension_separator": ".", "dtype": dtype, "fill_value": null, "filters": null,
            "order": "C", "shape": leaf.shape, "zarr_format": 2,
        });
        let zarray = serde_json::to_vec(&zarray).map_err(|e| Error::msg(e.to_string()))?;
        compressed.clear();
        compressed.reserve(zstd::zstd_safe::compress_bound(leaf.data.len()));
        compressor
            .compress_to_buffer(leaf.data, &mut compressed)
            .map_err(|e| Error::msg(format_args!("zstd at `{}`: {e}", leaf.key)))?;
        arrays.push(Array {
            path: leaf.path().map(str::to_owned).collect(),
            name: leaf.key.to_owned(),
            shape: leaf.shape.to_vec(),
            zarray: data.put(&zarray)?,
            chunk: data.put(&compressed)?,
        });
        Ok(())
    }))?;
    arrays.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(pair) = arrays.windows(2).find(|p| p[0].name == p[1].name) {
        return Err(Error::DuplicateKey {
            key: pair[0].name.clone(),
        });
    }
    Ok(arrays)
}

/// Appends the B-tree node of `arrays` (whose out-of-line values `data` holds) to `data`, which is
/// `data_file` in the database; returns the manifest.
fn database(arrays: &[Array], data: &mut DataFile, data_file: &str, now: u64) -> Result<Vec<u8>> {
    let mut entries: Vec<(Vec<u8>, &Stored)> = Vec::new();
    for array in arrays {
        let chunk_key = if array.shape.is_empty() {
            "0".to_owned()
        } else {
            vec!["0"; array.shape.len()].join(".")
        };
        entries.push((format!("{}/.zarray", array.name).into_bytes(), &array.zarray));
        entries.push((format!("{}/{chunk_key}", array.name).into_bytes(), &array.chunk));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let indirect_bytes = data.len;
    let mut body = vec![0u8]; // height 0: a leaf
    one_file_table(&mut body, data_file);
    varint(&mut body, entries.len() as u64);
    let prefixes: Vec<usize> = (1..entries.len())
        .map(|i| common_prefix(&entries[i - 1].0, &entries[i].0))
        .collect();
    for &p in &prefixes {
        varint(&mut body, p as u64);
    }
    for (i, (key, _)) in entries.iter().enumerate() {
        let prefix = if i == 0 { 0 } else { prefixes[i - 1] };
        varint(&mut body, (key.len() - prefix) as u64);
    }
    for (i, (key, _)) in entries.iter().enumerate() {
        let prefix = if i == 0 { 0 } else { prefixes[i - 1] };
        body.extend_from_slice(&key[prefix..]);
    }
    for (_, value) in &entries {
        let len = match value {
            Stored::Inline(bytes) => bytes.len() as u64,
            Stored::Indirect { len, .. } => *len,
        };
        varint(&mut body, len);
    }
    for (_, value) in &entries {
        body.push(u8::from(matches!(value, Stored::Indirect { .. })));
    }
    let offsets: Vec<u64> = entries
        .iter()
        .filter_map(|(_, value)| match value {
            Stored::Indirect { offset, .. } => Some(*offset),
            Stored::Inline(_) => None,
        })
        .collect();
    // Every out-of-line value is in file 0.
    body.extend(std::iter::repeat_n(0, offsets.len()));
    for &offset in &offsets {
        varint(&mut body, offset);
    }
    for (_, value) in &entries {
        if let Stored::Inline(bytes) = value {
            body.extend_from_slice(bytes);
        }
    }
    if body.len() as u64 > MAX_DECODED_NODE_BYTES {
        return Err(Error::msg("too many arrays for one OCDBT node"));
    }
    let node = envelope(BTREE_NODE_MAGIC, &body)?;
    let node_offset = data.append(&node)?;

    let mut manifest = now.to_le_bytes().repeat(2); // uuid: any 16 bytes unique to this database
    manifest.push(0); // single manifest
    varint(&mut manifest, MAX_INLINE_VALUE_BYTES as u64);
    varint(&mut manifest, MAX_DECODED_NODE_BYTES);
    manifest.push(4); // version tree arity log2
    manifest.push(1); // zstd, level 0 (the default)
    manifest.extend_from_slice(&0i32.to_le_bytes());
    one_file_table(&mut manifest, data_file);
    manifest.extend_from_slice(&[1, 1, 0, 0]); // one version: generation 1, height 0, file 0
    varint(&mut manifest, node_offset);
    varint(&mut manifest, node.len() as u64);
    varint(&mut manifest, entries.len() as u64);
    varint(&mut manifest, node.len() as u64);
    varint(&mut manifest, indirect_bytes);
    manifest.extend_from_slice(&now.to_le_bytes());
    manifest.push(0); // no version tree nodes
    envelope(MANIFEST_MAGIC, &manifest)
}

/// Writes the checkpoint of `params` into the empty directory `dir`.
fn write_item<T: Serialize + Params + ?Sized>(dir: &Path, params: &T, now: u64) -> Result<()> {
    // A name unique to this save, as tensorstore's random 32 hex digits are.
    let data_file = format!("d/{now:024x}{:08x}", std::process::id());
    fs::create_dir_all(dir.join("d")).at(&dir.join("d"))?;
    let mut data = DataFile::create(dir.join(&data_file))?;
    let arrays = arrays_of(params, &mut data)?;
    let manifest = database(&arrays, &mut data, &data_file, now)?;
    data.finish()?;
    write_synced(&dir.join("manifest.ocdbt"), &manifest)?;
    let mut tree = serde_json::Map::new();
    let mut sharding = serde_json::Map::new();
    for array in &arrays {
        let keys: Vec<_> = array.path.iter().map(|k| json!({"key": k, "key_type": 2})).collect();
        tree.insert(
            tuple_repr(&array.path),
            json!({"key_metadata": keys, "value_metadata":
                {"value_type": "jax.Array", "skip_deserialize": false, "write_shape": array.shape}}),
        );
        sharding.insert(
            base64url(array.name.as_bytes()),
            json!("{\"sharding_type\": \"SingleDeviceSharding\", \"device_str\": \"cpu:0\"}"),
        );
    }
    let metadata = json!({"tree_metadata": tree, "use_ocdbt": true, "use_zarr3": false,
        "store_array_data_equal_to_fill_value": true, "custom_metadata": null});
    write_synced(&dir.join("_METADATA"), &json_bytes(&metadata)?)?;
    write_synced(
        &dir.join("_sharding"),
        &json_bytes(&serde_json::Value::Object(sharding))?,
    )?;
    sync_dir(&dir.join("d"))?;
    sync_dir(dir)
}

fn json_bytes(value: &serde_json::Value) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::msg(e.to_string()))
}

/// `_CHECKPOINT_METADATA` of a checkpoint directory (an item, or a manager's step) in `dir`:
/// `item_handlers` is the handler's name for an item, a map of item name to handler for a step.
fn write_checkpoint_metadata(dir: &Path, item_handlers: serde_json::Value, now: u64) -> Result<()> {
    let checkpoint = json!({"item_handlers": item_handlers, "metrics": {}, "performance_metrics": {},
        "init_timestamp_nsecs": now, "commit_timestamp_nsecs": now, "custom_metadata": {}});
    write_synced(&dir.join("_CHECKPOINT_METADATA"), &json_bytes(&checkpoint)?)
}

/// The item directory of a `CheckpointManager` step, as `CheckpointManager(root).save(step,
/// args=StandardSave(tree))` names it.
const MANAGER_ITEM: &str = "default";

/// Writes `params` at `path`: the item itself, or with `step` step `step` of the
/// `CheckpointManager` whose root is `path` (`<path>/<step>/default/` plus the step's
/// `_CHECKPOINT_METADATA` naming that item, as the manager's own save lays it out).
pub(crate) fn to_dir<T: Serialize + Params + ?Sized>(path: &Path, params: &T, step: Option<u64>) -> Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // Orbax's own mark, so that Orbax and `from_dir` skip an unfinished save as one of Orbax's.
    let mark = ".orbax-checkpoint-tmp";
    match step {
        None => commit_dir(path, mark, |tmp| {
            write_item(tmp, params, now)?;
            write_checkpoint_metadata(tmp, json!(HANDLER), now)
        }),
        Some(step) => commit_dir(&path.join(step.to_string()), mark, |tmp| {
            let item = tmp.join(MANAGER_ITEM);
            fs::create_dir(&item).at(&item)?;
            write_item(&item, params, now)?;
            write_checkpoint_metadata(tmp, json!({ MANAGER_ITEM: HANDLER }), now)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_tuples_as_python_prints_them() {
        assert_eq!(
            base64url(b"batch_stats.BatchNorm_0.mean"),
            "YmF0Y2hfc3RhdHMuQmF0Y2hOb3JtXzAubWVhbg=="
        );
        assert_eq!(base64url(b"ab"), "YWI=");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8=");
        assert_eq!(tuple_repr(&["params".into(), "w".into()]), "('params', 'w')");
        assert_eq!(tuple_repr(&["step".into()]), "('step',)");
    }
}
