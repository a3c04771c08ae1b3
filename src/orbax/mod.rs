//! Orbax checkpoints (orbax-checkpoint 0.12: `StandardCheckpointer`, `PyTreeCheckpointer`,
//! `CheckpointManager`, the v1 API), read without Python: OCDBT or plain zarr directories, zarr v2
//! or v3 (with `sharding_indexed`), zstd-compressed or not; and written ([`to_dir`]) in Orbax's
//! default layout.
//!
//! A tree path becomes the key the other formats use: its parts joined with `.`
//! (`params.Dense_0.kernel`, haiku's `mlp/~/linear_0.w`), so the structs that load a safetensors
//! or flax msgpack file load the Orbax checkpoint of the same tree. [`Value`](crate::Value) keeps
//! the paths as stored (an NNX state from `nnx.split` keeps its trailing `value` level); typed
//! structs load NNX state with or without it. String leaves (`_strings.json`), `None` and empty
//! containers are not tensors and are skipped.
//!
//! ```
//! # use safejax::{bf16, Params, Tensor, Value};
//! # use serde::Deserialize;
//! #[derive(Deserialize, Params)]
//! struct Dense { kernel: Tensor<bf16>, bias: Tensor<bf16> }
//! #[derive(Deserialize, Params)]
//! struct Params_ { #[serde(rename = "Dense_0")] dense: Dense }
//! #[derive(Deserialize, Params)]
//! struct Cnn { params: Params_ }
//!
//! let dir = "tests/fixtures/orbax/flax_cnn";
//! let cnn: Cnn = safejax::orbax::Reader::new()
//!     .options(safejax::Options::new().allow_unknown_keys(true))
//!     .from_dir(dir)?;
//! assert_eq!(cnn.params.dense.kernel.shape(), &[3, 2]);
//! let tree: Value = safejax::orbax::from_dir(dir)?;
//! assert_eq!(tree.leaves().count(), 10);
//! # Ok::<(), safejax::Error>(())
//! ```
//!
//! Untrusted checkpoints are read with every length and count bounded before allocation, zstd
//! output bounded by the chunk's size, B-tree heights strictly decreasing, checksums verified and
//! every path kept inside the checkpoint directory.

mod bytes;
mod codec;
#[doc(hidden)]
pub mod fuzz;
mod kvstore;
mod layout;
mod metadata;
mod ocdbt;
mod source;
mod write;
mod zarr;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::de::DeserializeOwned;

use self::kvstore::{KvStore, MAX_FILE_BYTES};
use self::source::{LocalDir, Source};
use crate::header::{Entry, Header, Span};
use crate::resolve::resolve;
use crate::schema::Schema;
use crate::{Deserializer, Error, Options, Params, Result};

pub(crate) fn invalid(path: &str, reason: impl std::fmt::Display) -> Error {
    Error::InvalidOrbax {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Reads params from an Orbax checkpoint: the item directory (the one holding `_METADATA`), a step
/// directory (its single tree item), or a `CheckpointManager` root (its latest finished step).
pub fn from_dir<T: DeserializeOwned + Params>(path: impl AsRef<Path>) -> Result<T> {
    Reader::new().from_dir(path)
}

/// Writes `params` as an Orbax checkpoint in the directory `path`, in Orbax's default layout (an
/// OCDBT database of zarr v2 arrays, zstd-compressed, with `_METADATA` and `_sharding`), so that
/// `ocp.StandardCheckpointer().restore(path)` returns the same tree: nested dicts, the same dtypes,
/// shapes and values. The save is atomic as Orbax's own on a local disk: written into
/// `<name>.orbax-checkpoint-tmp`, then moved into place (an existing checkpoint is swapped out in
/// one step on Linux).
pub fn to_dir<T: serde::Serialize + Params + ?Sized>(path: impl AsRef<Path>, params: &T) -> Result<()> {
    write::to_dir(path.as_ref(), params)
}

/// Reading with settings: [`Options`] (unknown keys, dtype conversion) and, for a step of several
/// items (`ocp.args.Composite`), which item to load.
#[derive(Debug, Clone, Default)]
pub struct Reader {
    options: Options,
    item: Option<String>,
}

impl Reader {
    /// The defaults: strict [`Options`], the step's only tree item.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the [`Options`].
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Chooses the item of a step by name (`params` of `<step>/params/`).
    pub fn item(mut self, name: impl Into<String>) -> Self {
        self.item = Some(name.into());
        self
    }

    /// Reads params from the checkpoint at `path` (see [`from_dir`]).
    pub fn from_dir<T: DeserializeOwned + Params>(&self, path: impl AsRef<Path>) -> Result<T> {
        let source = LocalDir::new(path.as_ref())?;
        self.read(&source)
    }

    fn read<T: DeserializeOwned + Params>(&self, source: &dyn Source) -> Result<T> {
        let item = layout::find_item(source, self.item.as_deref())?;
        let (buffers, mut entries) = read_item(source, &item)?;
        // NNX state saved from `nnx.split` ends every path in `value`; a typed struct of the same
        // model (as `nnx.state` saved with safejax has it) loads with that level dropped. Which
        // keys the type takes is settled by resolving them alone: the buffers can be read once.
        let nnx_split = !entries.is_empty() && entries.iter().all(|e| e.key.ends_with(".value"));
        if nnx_split && !matches!(T::SCHEMA, Schema::Any) {
            let stripped: Vec<Entry> = entries
                .iter()
                .map(|e| Entry {
                    key: e.key[..e.key.len() - ".value".len()].to_owned(),
                    ..e.clone()
                })
                .collect();
            let allow_unknown = self.options.allow_unknown_keys;
            if resolve(T::SCHEMA, &header_of(entries.clone()), allow_unknown).is_err()
                && resolve(T::SCHEMA, &header_of(stripped.clone()), allow_unknown).is_ok()
            {
                entries = stripped;
            }
        }
        Deserializer::from_buffers(buffers, header_of(entries), self.options.clone()).deserialize::<T>()
    }
}

fn header_of(entries: Vec<Entry>) -> Header {
    Header {
        entries,
        metadata: None,
        side: Vec::new(),
    }
}

/// Reads every array of the item at `item` (a prefix: `""` or ending with `/`) into a buffer of
/// its own, with a header entry per array ([`Span::Owned`]). Threads, one per core, take the
/// arrays in key order from a shared counter and decode each into its buffer; the error reported
/// is that of the first failing array in key order, whatever the threads' timing.
fn read_item(source: &dyn Source, item: &str) -> Result<(Vec<Vec<u8>>, Vec<Entry>)> {
    let metadata_path = format!("{item}_METADATA");
    let text = source
        .read(&metadata_path, 1 << 30)?
        .ok_or_else(|| invalid(&metadata_path, "missing"))?;
    let meta = metadata::parse(&text, &metadata_path)?;
    let has_manifest = source.read(&format!("{item}manifest.ocdbt"), 1 << 30)?.is_some();
    let store = if meta.use_ocdbt.unwrap_or(has_manifest) {
        let dirs = if has_manifest {
            vec![item.to_owned()]
        } else {
            // A multi-process save that was never merged: the union of the per-process databases.
            let mut dirs = Vec::new();
            for entry in source.list(item.trim_end_matches('/'))? {
                let dir = format!("{item}{}/", entry.name);
                if entry.is_dir
                    && entry.name.starts_with("ocdbt.process_")
                    && source
                        .list(&dir[..dir.len() - 1])?
                        .iter()
                        .any(|e| e.name == "manifest.ocdbt")
                {
                    dirs.push(dir);
                }
            }
            if dirs.is_empty() {
                return Err(invalid(item, "use_ocdbt is set but there is no manifest.ocdbt"));
            }
            dirs
        };
        KvStore::ocdbt(source, &dirs)?
    } else {
        KvStore::files(source, item.to_owned())
    };
    let mut arrays = Vec::with_capacity(meta.arrays.len());
    let mut seen = HashSet::new();
    let mut total = 0usize;
    for parts in &meta.arrays {
        let key = parts.join(".");
        if !seen.insert(key.clone()) {
            return Err(Error::DuplicateKey { key });
        }
        let (first, second) = if meta.use_zarr3 {
            ("zarr.json", ".zarray")
        } else {
            (".zarray", "zarr.json")
        };
        let array = match store.get(&format!("{key}/{first}"), MAX_FILE_BYTES.min(1 << 24))? {
            Some(text) if first == ".zarray" => zarr::parse_zarray(&text, &key)?,
            Some(text) => zarr::parse_zarr_json(&text, &key)?,
            None => match store.get(&format!("{key}/{second}"), 1 << 24)? {
                Some(text) if second == ".zarray" => zarr::parse_zarray(&text, &key)?,
                Some(text) => zarr::parse_zarr_json(&text, &key)?,
                None => {
                    return Err(invalid(
                        &key,
                        "an array in _METADATA with neither .zarray nor zarr.json",
                    ))
                }
            },
        };
        total = total
            .checked_add(array.byte_len())
            .ok_or_else(|| invalid(item, "the arrays hold more bytes than fit in memory"))?;
        arrays.push((key, array));
    }
    // Key order: the order in which arrays are decoded and in which their errors count.
    arrays.sort_by(|a, b| a.0.cmp(&b.0));
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(arrays.len())
        .max(1);
    let next = AtomicUsize::new(0);
    // The first array in key order that failed so far: arrays after it are not decoded.
    let first_failure = AtomicUsize::new(usize::MAX);
    let store = &store;
    let arrays_ref = &arrays;
    let decoded: Vec<Vec<(usize, Result<Vec<u8>>)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= arrays_ref.len() || i > first_failure.load(Ordering::Relaxed) {
                            return done;
                        }
                        let (key, array) = &arrays_ref[i];
                        let result = array.read(store, key);
                        if result.is_err() {
                            first_failure.fetch_min(i, Ordering::Relaxed);
                        }
                        done.push((i, result));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    let mut buffers: Vec<Option<Result<Vec<u8>>>> = (0..arrays.len()).map(|_| None).collect();
    for (i, result) in decoded.into_iter().flatten() {
        buffers[i] = Some(result);
    }
    let mut owned = Vec::with_capacity(arrays.len());
    let mut entries = Vec::with_capacity(arrays.len());
    for (n, ((key, array), buffer)) in arrays.into_iter().zip(buffers).enumerate() {
        // Every array before the first failure was decoded: the first `None` comes after an error.
        let buffer = buffer.expect("decoded: no earlier array failed")?;
        entries.push(Entry {
            key,
            dtype: array.dtype,
            start: 0,
            end: buffer.len(),
            shape: array.shape,
            span: Span::Owned(n),
        });
        owned.push(buffer);
    }
    Ok((owned, entries))
}
