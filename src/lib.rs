#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod convert;
mod de;
mod dtype;
mod dynamic;
mod element;
mod error;
mod header;
mod keys;
mod mmap;
pub mod msgpack;
#[cfg(feature = "ndarray")]
pub mod ndarray;
mod options;
mod pages;
mod params;
#[cfg(feature = "object-store")]
pub mod remote;
mod resolve;
pub mod schema;
mod ser;
mod shard;
mod tensor;
pub mod torch;
mod write;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use de::Deserializer;
pub use dtype::{Dtype, UnknownDtype};
pub use dynamic::{DynTensor, DynTensorView, Value};
pub use element::Element;
pub use error::{Error, Result};
pub use half::{bf16, f16};
pub use mmap::MappedFile;
pub use options::Options;
pub use params::{Params, ParamsMapKey};
pub use ser::{LeafRef, Serializer};
pub use tensor::{Tensor, TensorView};

/// `#[derive(Params)]`: describes a param struct's keys. See the crate documentation.
#[cfg(feature = "derive")]
pub use safejax_derive::Params;

/// Writes `params` to a new buffer, laid out as the reference safetensors writer does.
pub fn to_bytes<T: Serialize + Params + ?Sized>(params: &T) -> Result<Vec<u8>> {
    Options::new().to_bytes(params)
}

/// Writes `params` to `writer`.
pub fn to_writer<W: Write, T: Serialize + Params + ?Sized>(writer: W, params: &T) -> Result<()> {
    Options::new().to_writer(writer, params)
}

/// Writes `params` to the file at `path`, atomically: a failed or killed write leaves the old file.
pub fn to_file<T: Serialize + Params + ?Sized>(path: impl AsRef<Path>, params: &T) -> Result<()> {
    Options::new().to_file(path, params)
}

/// Reads params from the bytes of a safetensors file; [`TensorView`] leaves borrow from `bytes`.
pub fn from_bytes<'de, T: Deserialize<'de> + Params>(bytes: &'de [u8]) -> Result<T> {
    Options::new().from_bytes(bytes)
}

/// Reads params from the safetensors file at `path`.
pub fn from_file<T: DeserializeOwned + Params>(path: impl AsRef<Path>) -> Result<T> {
    Options::new().from_file(path)
}

/// Writes `params` into the directory `dir` as Hugging Face lays out checkpoints: one
/// `model.safetensors` if every tensor fits in `max_shard_bytes`, else
/// `model-00001-of-0000N.safetensors` shards of at most that many tensor bytes and
/// `model.safetensors.index.json`.
pub fn to_dir<T: Serialize + Params + ?Sized>(dir: impl AsRef<Path>, params: &T, max_shard_bytes: u64) -> Result<()> {
    Options::new().to_dir(dir, params, max_shard_bytes)
}

/// Reads params from a checkpoint directory: a sharded index with its shards, or a single
/// `model.safetensors` (or flax's `flax_model.msgpack`, sharded or not). `path` may also name the
/// index or the single file. Shards are mapped and read lazily.
pub fn from_dir<T: DeserializeOwned + Params>(path: impl AsRef<Path>) -> Result<T> {
    Options::new().from_dir(path)
}

/// The `__metadata__` of a safetensors file (empty when it has none).
pub fn read_metadata(bytes: &[u8]) -> Result<BTreeMap<String, String>> {
    header::read_metadata(bytes)
}
