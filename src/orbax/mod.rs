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
pub(crate) mod source;
mod write;
mod zarr;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::de::DeserializeOwned;

use self::kvstore::{KvStore, MAX_FILE_BYTES};
use self::source::{LocalDir, Source};
use self::zarr::ArrayMeta;
use crate::header::{Header, Span};
use crate::resolve::resolve;
use crate::schema::Schema;
use crate::{Deserializer, Error, Options, Params, Result};

/// The message of the error `result` must be, an [`Error::InvalidOrbax`], for the decoders' tests:
/// any other error, or a success, fails the test.
#[cfg(test)]
fn invalid_orbax<T>(result: Result<T>) -> String {
    match result {
        Err(err @ Error::InvalidOrbax { .. }) => err.to_string(),
        Err(other) => panic!("not an invalid Orbax checkpoint: {other:?}"),
        Ok(_) => panic!("accepted"),
    }
}

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
/// A `CheckpointManager` sees a directory as a step only in its own layout (the item in
/// `<step>/default/`): write steps with [`Writer::step`].
pub fn to_dir<T: serde::Serialize + Params + ?Sized>(path: impl AsRef<Path>, params: &T) -> Result<()> {
    Writer::new().to_dir(path, params)
}

/// Writing with settings: a plain item ([`to_dir`]), or a step of a `CheckpointManager`.
///
/// ```
/// # use safejax::Value;
/// let params: Value = safejax::orbax::from_dir("tests/fixtures/orbax/flax_cnn")?;
/// let root = tempfile::tempdir().unwrap();
/// // `ocp.CheckpointManager(root).restore(1000)` reads it, and `latest_step()` is 1000.
/// safejax::orbax::Writer::new().step(1000).to_dir(root.path(), &params)?;
/// let back: Value = safejax::orbax::from_dir(root.path())?;
/// assert_eq!(back, params);
/// # Ok::<(), safejax::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Writer {
    step: Option<u64>,
}

impl Writer {
    /// The defaults: a plain item, as [`to_dir`] writes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes step `step` of the `CheckpointManager` whose root is the path given to
    /// [`to_dir`](Writer::to_dir), as `CheckpointManager(root).save(step,
    /// args=StandardSave(params))` lays it out: the item in `<root>/<step>/default/` and the
    /// step's `_CHECKPOINT_METADATA` naming it. The step directory is committed whole, as the item
    /// is; other steps are left alone.
    pub fn step(mut self, step: u64) -> Self {
        self.step = Some(step);
        self
    }

    /// Writes `params` at `path` (see [`to_dir`] and [`step`](Writer::step)).
    pub fn to_dir<T: serde::Serialize + Params + ?Sized>(&self, path: impl AsRef<Path>, params: &T) -> Result<()> {
        write::to_dir(path.as_ref(), params, self.step)
    }
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

    /// Reads params of type `T` from the checkpoint in `source`. Only the arrays `T` takes are
    /// read: from an object store, a type naming one layer fetches that layer's chunks and no
    /// other's.
    pub(crate) fn read<T: DeserializeOwned + Params>(&self, source: &dyn Source) -> Result<T> {
        let item = layout::find_item(source, self.item.as_deref())?;
        let (store, arrays) = open_item(source, &item)?;
        // Each key named as the type may have it; shapes as stored. The bytes are not read yet.
        let header_of = |keys: &mut dyn Iterator<Item = &str>| -> Result<Header> {
            let mut header = Header::default();
            for (key, (_, array)) in keys.zip(&arrays) {
                header.push(key, array.dtype, &array.shape, (0, 0), Span::Side)?;
            }
            Ok(header)
        };
        let allow_unknown = self.options.allow_unknown_keys;
        let mut header = header_of(&mut arrays.iter().map(|(key, _)| key.as_str()))?;
        let mut resolved = resolve(T::SCHEMA, &header, allow_unknown).map(|r| claimed(&r));
        // NNX state saved from `nnx.split` ends every path in `value`; a typed struct of the same
        // model (as `nnx.state` saved with safejax has it) loads with that level dropped.
        let nnx_split = !arrays.is_empty() && arrays.iter().all(|(key, _)| key.ends_with(".value"));
        if resolved.is_err() && nnx_split && !matches!(T::SCHEMA, Schema::Any) {
            header = header_of(&mut arrays.iter().map(|(key, _)| &key[..key.len() - ".value".len()]))?;
            resolved = resolve(T::SCHEMA, &header, allow_unknown).map(|r| claimed(&r));
        }
        // Only the arrays the type takes are read (the others can only be unknown keys that are
        // allowed): each is read from where it is stored, and named in the header as the type has it.
        let wanted = resolved?
            .into_iter()
            .map(|i| {
                let (dir, array) = &arrays[i];
                (dir.as_str(), header.key(i), array)
            })
            .collect();
        let (buffers, header) = read_arrays(&store, &item, wanted)?;
        Deserializer::from_buffers(buffers, header, self.options.clone()).deserialize::<T>()
    }
}

/// The entries a resolved tree takes, each once, in entry order.
fn claimed(resolved: &crate::resolve::Resolved<'_>) -> Vec<usize> {
    let mut claimed = Vec::new();
    resolved.entries(&mut claimed);
    claimed.sort_unstable();
    claimed.dedup();
    claimed
}

/// An item's arrays: the key-value store they are in, and each array's key and zarr metadata in
/// the order of `_METADATA`.
type Arrays<'s> = (KvStore<'s>, Vec<(String, ArrayMeta)>);

/// Opens the item at `item` (a prefix: `""` or ending with `/`): its `_METADATA`, its database
/// and every array's zarr metadata, but no chunk.
fn open_item<'s>(source: &'s dyn Source, item: &str) -> Result<Arrays<'s>> {
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
        arrays.push((key, array));
    }
    Ok((store, arrays))
}

/// Reads each `wanted` array (the directory it is stored under, the key its header entry gets, its
/// metadata) into a buffer of its own, with a header entry per array ([`Span::Owned`]). Threads,
/// one per core, take the arrays in key order from a shared counter and decode each into its
/// buffer; the error reported is that of the first failing array in key order, whatever the
/// threads' timing.
fn read_arrays(
    store: &KvStore,
    item: &str,
    mut wanted: Vec<(&str, &str, &ArrayMeta)>,
) -> Result<(Vec<Vec<u8>>, Header)> {
    let mut total = 0usize;
    for (_, _, array) in &wanted {
        total = total
            .checked_add(array.byte_len())
            .ok_or_else(|| invalid(item, "the arrays hold more bytes than fit in memory"))?;
    }
    // Key order: the order in which arrays are decoded and in which their errors count.
    wanted.sort_by(|a, b| a.0.cmp(b.0));
    let dirs: Vec<&str> = wanted.iter().map(|(dir, _, _)| *dir).collect();
    store.prefetch(&dirs)?;
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(wanted.len())
        .max(1);
    let next = AtomicUsize::new(0);
    // The first array in key order that failed so far: arrays after it are not decoded.
    let first_failure = AtomicUsize::new(usize::MAX);
    let wanted_ref = &wanted;
    let decoded: Vec<Vec<(usize, Result<Vec<u8>>)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= wanted_ref.len() || i > first_failure.load(Ordering::Relaxed) {
                            return done;
                        }
                        let (dir, _, array) = wanted_ref[i];
                        let result = array.read(store, dir);
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
    let mut buffers: Vec<Option<Result<Vec<u8>>>> = (0..wanted.len()).map(|_| None).collect();
    for (i, result) in decoded.into_iter().flatten() {
        buffers[i] = Some(result);
    }
    let mut owned = Vec::with_capacity(wanted.len());
    let mut header = Header::default();
    for (n, ((_, key, array), buffer)) in wanted.into_iter().zip(buffers).enumerate() {
        // Every array before the first failure was decoded: the first `None` comes after an error.
        let buffer = buffer.expect("decoded: no earlier array failed")?;
        header.push(key, array.dtype, &array.shape, (0, buffer.len()), Span::Owned(n))?;
        owned.push(buffer);
    }
    Ok((owned, header))
}
