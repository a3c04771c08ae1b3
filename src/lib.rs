//! Save and load JAX model parameters (Flax linen and NNX, Haiku, Objax) through serde, as
//! safetensors files, Flax's own msgpack checkpoints and Hugging Face sharded checkpoints.
//!
//! A param tree is a Rust struct with `#[derive(Serialize, Deserialize, Params)]`: its fields are
//! leaves ([`Tensor`], [`TensorView`], scalars), containers of params (`Vec`, `Option`, `Box`,
//! arrays, maps) and other such structs. The derive describes the struct (names, key style, marks),
//! and that description decides every key, so one struct reads and writes the keys the framework
//! that trained the model uses:
//!
//! ```
//! use safejax::{Params, Tensor};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Params)]
//! #[safejax(style = "haiku")]
//! struct HkParams { mlp: Mlp }
//!
//! #[derive(Serialize, Deserialize, Params)]
//! struct Mlp { linear: Vec<Linear> }
//!
//! #[derive(Serialize, Deserialize, Params)]
//! struct Linear { w: Tensor<f32>, b: Tensor<f32> }
//!
//! let linear = Linear { w: Tensor::new(vec![1, 2], vec![1.0, 2.0])?, b: Tensor::new(vec![2], vec![0.0; 2])? };
//! let bytes = safejax::to_bytes(&HkParams { mlp: Mlp { linear: vec![linear] } })?;
//! let keys: Vec<String> = safejax::Deserializer::from_slice(&bytes)?.keys().map(String::from).collect();
//! assert_eq!(keys, ["mlp/~/linear_0.b", "mlp/~/linear_0.w"]);
//! let back: HkParams = safejax::from_bytes(&bytes)?;
//! assert_eq!(back.mlp.linear[0].w.as_slice(), &[1.0, 2.0]);
//! # Ok::<(), safejax::Error>(())
//! ```
//!
//! # Where things are
//!
//! - Writing and reading safetensors: [`to_bytes`], [`to_writer`], [`to_file`] (atomic),
//!   [`from_bytes`] (views borrow the bytes), [`from_file`], [`MappedFile`] (views borrow a
//!   mapping); [`read_metadata`]. [`Options`] sets metadata and how strict a load is; the free
//!   functions use its defaults.
//! - Checkpoint directories in the Hugging Face layout: [`to_dir`], [`from_dir`] (sharded or not,
//!   safetensors or flax msgpack).
//! - Flax msgpack: [`msgpack`]. Object stores (S3 and others, feature `object-store`): `remote`.
//!   ndarray arrays and views as leaves (feature `ndarray`, on by default): `ndarray`.
//! - Files without a struct: [`Value`] (the nested tree of any file), [`DynTensor`] and
//!   [`DynTensorView`] (dtype known at run time); a `BTreeMap<String, Tensor<f32>>` root reads any
//!   file key by key.
//! - Errors: one [`Error`]; it names the key, and for mismatches what was expected and found. A load
//!   reports every missing key at once, and a key the type does not know is an error unless
//!   [`Options::allow_unknown_keys`].
//!
//! # Key styles
//!
//! `#[safejax(style = "flax" | "nnx" | "haiku" | "objax")]` on a struct sets how the keys of its
//! subtree join (a struct without it inherits its parent's; the root's default is flax):
//! `params.Dense_0.kernel` (flax), `layers.0.kernel` (NNX), `mlp/~/linear_0.w` (haiku),
//! `(MLP).seq(Sequential)[0](Linear).w::TrainVar` (objax). Field marks refine it:
//! `#[safejax(join = "/")]`, `#[safejax(var = "StateVar")]`, `#[safejax(class = "ModuleList")]`.
//! The derive's documentation ([`Params`](derive@Params)) lists every attribute; the README, the
//! user's guide, walks through each framework with files its Python side wrote.
//!
//! # Layout and interop
//!
//! With no metadata set, [`to_bytes`] lays a file out as the reference safetensors writer does
//! (tensors by dtype alignment, then key; the header padded to 8 bytes), so a file that Python
//! safejax wrote reads and writes back to the same bytes, and every tensor of a buffer so aligned
//! can be viewed in place.

#![warn(missing_docs)]

#[doc(hidden)]
mod arena;
pub mod checkpoint;
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
pub mod orbax;
mod pages;
mod params;
#[cfg(feature = "object-store")]
pub mod remote;
mod resolve;
mod schema;
mod ser;
mod shape;
mod shard;
mod sniff;
mod tensor;
pub mod torch;
mod with_metadata;
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
pub use error::{Error, ExpectedDim, Result};
pub use half::{bf16, f16};
pub use mmap::MappedFile;
pub use options::Options;
pub use params::{Params, ParamsMapKey};
pub use ser::{LeafRef, Serializer};
pub use tensor::{Tensor, TensorView};
pub use with_metadata::WithMetadata;

/// What `#[derive(Params)]` emits code against, and the key grammar the `safejax` CLI calls: not
/// part of the documented API, so that it may change in any release (as thiserror's `__private`).
#[doc(hidden)]
pub mod __private {
    pub use crate::params::VecElement;
    pub use crate::schema::{
        Dim, FieldSchema, Join, LeafSchema, MapKey, MapSchema, ObjaxVar, Schema, SchemaRef, SeqSchema, StructSchema,
        Style,
    };

    /// The key grammar, for the CLI: reading keys back into a tree, and checking a schema against
    /// a file's keys.
    pub mod keys {
        pub use crate::keys::parse::{detect, is_index, push_step, split_element, steps};
        pub use crate::keys::tree::{build, Child, Join, Leaf, List, Module, Node};
        pub use crate::keys::DEFAULT_LIST_CLASS;
        pub use crate::resolve::{check_keys, field_contents, FieldContents};
    }
}

// The README is the user's guide; its examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

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
/// `model.safetensors.index.json`. Crash-safe: a failed or killed save leaves the old checkpoint
/// or the new one, never a mix; other files in `dir` are kept.
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
