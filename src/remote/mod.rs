//! Checkpoints on object stores: S3 and S3-compatible stores, Google Cloud Storage, Azure, local
//! files and memory, through the [`object_store`] crate (feature `object-store`). The Rust
//! counterpart of Python safejax's `fs=` argument.
//!
//! A [`Remote`] wraps any [`ObjectStore`] and reads and writes checkpoints on it, as single objects
//! ([`to_object`](Remote::to_object), [`from_object`](Remote::from_object)) or in the sharded
//! Hugging Face layout under a prefix ([`to_dir`](Remote::to_dir), [`from_dir`](Remote::from_dir)).
//! [`Remote::parse_url`] makes one from a URL (`s3://bucket/ckpt.safetensors`, `file:///…`,
//! `memory:///…`); [`to_url`] and [`from_url`] do it in one call. The API is async (it needs a
//! tokio runtime); [`blocking`] wraps it for callers without one.
//!
//! - **Writes** make each object's bytes part by part, straight from the params, and upload them
//!   as they are made: an object larger than [`part_size`](Remote::part_size) is a multipart
//!   upload with up to [`concurrency`](Remote::concurrency) parts in flight, aborted on any error,
//!   so that a failed write leaves no object behind. Shards upload in parallel, and the index goes
//!   last; a failed sharded save deletes the shards it wrote.
//! - **Reads** fetch each object's header with one ranged request (the first
//!   [`first_read`](Remote::first_read) bytes, and a second request only for a longer header),
//!   match the type to the header, then fetch only the byte ranges of the tensors the type takes,
//!   merging ranges less than [`coalesce_gap`](Remote::coalesce_gap) apart. A type that names a
//!   subset of the checkpoint (with [`Options::allow_unknown_keys`]) moves about the subset's
//!   bytes, not the checkpoint's; shards it takes nothing from are read no further than their
//!   header.
//!
//! Safetensors checkpoints are read and written here, and Orbax checkpoints read
//! ([`orbax_from_dir`](Remote::orbax_from_dir)): an item, a step or a `CheckpointManager` root
//! under a prefix, in any layout [`crate::orbax`] reads from a directory. A type that names a
//! subset moves the metadata (`_METADATA`, the OCDBT manifest and B-tree nodes) and the chunks of
//! the arrays it takes, fetched as tensor ranges are. Flax msgpack is not read here.

mod dir;
mod fetch;
mod orbax;
mod upload;

pub mod blocking;

use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub use object_store;
use object_store::path::Path;
use object_store::ObjectStore;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::write::plan;
use crate::{Error, Options, Params, Result};

/// The default size of each part of a multipart upload: 8 MiB.
pub const DEFAULT_PART_SIZE: usize = 8 << 20;
/// The default size of the first ranged read of an object: 64 KiB.
pub const DEFAULT_FIRST_READ: usize = 64 << 10;
/// The default gap below which two fetched ranges are merged into one request: 64 KiB.
pub const DEFAULT_COALESCE_GAP: u64 = 64 << 10;
/// The default number of requests in flight.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// Checkpoints on one [`ObjectStore`]: how to write and read them there.
///
/// ```
/// use std::sync::Arc;
/// use safejax::remote::object_store::{memory::InMemory, path::Path};
/// use safejax::remote::Remote;
/// use safejax::Value;
///
/// async fn save_and_load(remote: &Remote, value: &Value) -> safejax::Result<Value> {
///     remote.to_object(&Path::from("ckpt.safetensors"), value).await?;
///     remote.from_object(&Path::from("ckpt.safetensors")).await
/// }
///
/// let value: Value = safejax::from_file("tests/fixtures/haiku_mlp.safetensors")?;
/// let remote = Remote::new(Arc::new(InMemory::new()));
/// let runtime = tokio::runtime::Builder::new_current_thread().build()?;
/// assert_eq!(runtime.block_on(save_and_load(&remote, &value))?, value);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    options: Options,
    part_size: usize,
    concurrency: usize,
    first_read: usize,
    coalesce_gap: u64,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("store", &format_args!("{}", self.store))
            .field("options", &self.options)
            .field("part_size", &self.part_size)
            .field("concurrency", &self.concurrency)
            .field("first_read", &self.first_read)
            .field("coalesce_gap", &self.coalesce_gap)
            .finish()
    }
}

impl Remote {
    /// Checkpoints on `store`, with default [`Options`] and transfer settings.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Remote {
            store,
            options: Options::new(),
            part_size: DEFAULT_PART_SIZE,
            concurrency: DEFAULT_CONCURRENCY,
            first_read: DEFAULT_FIRST_READ,
            coalesce_gap: DEFAULT_COALESCE_GAP,
        }
    }

    /// The store for `url` and the object path in it, with settings taken from the environment
    /// (`AWS_*`, `GOOGLE_*` and `AZURE_*` variables, as object_store's builders read them).
    ///
    /// `s3://bucket/path` (and `s3a://`), `gs://bucket/path`, `az://container/path`,
    /// `file:///abs/path`, `memory:///path` (a new, empty store each time), and `https://` URLs
    /// of these clouds.
    pub fn parse_url(url: &str) -> Result<(Self, Path)> {
        Self::parse_url_opts(url, std::iter::empty::<(String, String)>())
    }

    /// As [`parse_url`](Remote::parse_url), with store settings in `options` taking precedence
    /// over the environment: keys as object_store's builders name them (for S3:
    /// `endpoint`, `region`, `access_key_id`, `secret_access_key`, `allow_http`,
    /// `virtual_hosted_style_request`, …).
    pub fn parse_url_opts<K, V>(url: &str, options: impl IntoIterator<Item = (K, V)>) -> Result<(Self, Path)>
    where
        K: AsRef<str>,
        V: Into<String>,
    {
        let invalid = |source: Box<dyn std::error::Error + Send + Sync>| Error::InvalidUrl {
            url: url.to_owned(),
            source,
        };
        let parsed = url::Url::parse(url).map_err(|e| invalid(e.into()))?;
        let from_env =
            std::env::vars().filter(|(k, _)| ["AWS_", "GOOGLE_", "AZURE_"].iter().any(|prefix| k.starts_with(prefix)));
        let options = from_env
            .collect::<Vec<_>>()
            .into_iter()
            .chain(options.into_iter().map(|(k, v)| (k.as_ref().to_owned(), v.into())));
        let (store, path) = object_store::parse_url_opts(&parsed, options).map_err(|e| invalid(e.into()))?;
        Ok((Remote::new(Arc::from(store)), path))
    }

    /// How to read and write: metadata written with the checkpoint, whether keys the type lacks are
    /// accepted (what lets a type name a subset), dtype conversion.
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// The size of each part of a multipart upload (default 8 MiB); objects no larger are written
    /// with one request. S3 takes parts of at least 5 MiB (but the last).
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(1);
        self
    }

    /// How many requests go at once: parts of an upload, shards, fetched ranges (default 8). A
    /// save holds up to `concurrency` parts of each of `concurrency` shards in memory.
    pub fn concurrency(mut self, requests: usize) -> Self {
        self.concurrency = requests.max(1);
        self
    }

    /// How many bytes the first read of an object asks for (default 64 KiB): the header length
    /// and, usually, the whole header. Tensors that lie within it are not fetched again.
    pub fn first_read(mut self, bytes: usize) -> Self {
        self.first_read = bytes;
        self
    }

    /// Tensor ranges less than this many bytes apart are fetched in one request, gap included
    /// (default 64 KiB); 0 merges only ranges that touch.
    pub fn coalesce_gap(mut self, bytes: u64) -> Self {
        self.coalesce_gap = bytes;
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Writes `params` to the object at `path`, as [`to_file`](crate::to_file) writes a file:
    /// whole or not at all.
    pub async fn to_object<T: Serialize + Params + ?Sized>(&self, path: &Path, params: &T) -> Result<()> {
        let planned = plan(params)?;
        let members: Vec<usize> = (0..planned.len()).collect();
        let object = upload::ObjectLayout::new(&planned, &members, self)?;
        upload::put_object(self, path, params, &planned, &object, &AtomicBool::new(false)).await
    }

    /// Reads params from the safetensors object at `path`, fetching its header and the tensors `T`
    /// takes.
    pub async fn from_object<T: DeserializeOwned + Params>(&self, path: &Path) -> Result<T> {
        fetch::load(self, std::slice::from_ref(path), None).await
    }

    /// Writes `params` under the prefix `dir` as [`to_dir`](crate::to_dir) writes a directory: one
    /// `model.safetensors` if every tensor fits in `max_shard_bytes`, else shards and
    /// `model.safetensors.index.json`, written last. Shard objects of an earlier save that the new
    /// one does not use are deleted. On an error, the objects written are deleted again.
    pub async fn to_dir<T: Serialize + Params + ?Sized>(
        &self,
        dir: &Path,
        params: &T,
        max_shard_bytes: u64,
    ) -> Result<()> {
        dir::to_dir(self, dir, params, max_shard_bytes).await
    }

    /// Reads params from a checkpoint: `path` is a prefix holding `model.safetensors.index.json`
    /// and its shards, or `model.safetensors`; or the index object; or a `.safetensors` object.
    /// Only the tensors `T` takes are fetched.
    pub async fn from_dir<T: DeserializeOwned + Params>(&self, path: &Path) -> Result<T> {
        dir::from_dir(self, path).await
    }
}

impl Remote {
    /// Reads params from the Orbax checkpoint under the prefix `path`, as
    /// [`orbax::from_dir`](crate::orbax::from_dir) reads a directory: an item (the prefix holding
    /// `_METADATA`), a step (its single tree item) or a `CheckpointManager` root (its latest
    /// finished step), with this `Remote`'s [`Options`]. Only the chunks of the arrays `T` takes
    /// are fetched, their ranges merged as [`coalesce_gap`](Remote::coalesce_gap) says.
    ///
    /// The reader decodes on the runtime's blocking threads (`spawn_blocking`), hence
    /// `T: Send + 'static`.
    pub async fn orbax_from_dir<T>(&self, path: &Path) -> Result<T>
    where
        T: DeserializeOwned + Params + Send + 'static,
    {
        let reader = crate::orbax::Reader::new().options(self.options.clone());
        orbax::from_dir(self, &reader, path).await
    }

    /// As [`orbax_from_dir`](Remote::orbax_from_dir), with the [`Options`] and the item of a
    /// step of several items that `reader` has (not this `Remote`'s options).
    pub async fn orbax_from_dir_with<T>(&self, path: &Path, reader: &crate::orbax::Reader) -> Result<T>
    where
        T: DeserializeOwned + Params + Send + 'static,
    {
        orbax::from_dir(self, reader, path).await
    }
}

/// Writes `params` to the object that `url` names (see [`Remote::parse_url`]).
pub async fn to_url<T: Serialize + Params + ?Sized>(url: &str, params: &T) -> Result<()> {
    let (remote, path) = Remote::parse_url(url)?;
    remote.to_object(&path, params).await
}

/// Reads params from the checkpoint that `url` names: a `.safetensors` object, an index, or a
/// prefix holding either (see [`Remote::from_dir`]).
pub async fn from_url<T: DeserializeOwned + Params>(url: &str) -> Result<T> {
    let (remote, path) = Remote::parse_url(url)?;
    remote.from_dir(&path).await
}
