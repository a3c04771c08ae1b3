//! [`Options`]: metadata to write, and how strictly to read.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{write, Deserializer, Params, Result};

/// Settings for writing and reading; the free functions use the defaults.
///
/// ```
/// # use safejax::{Options, Params, Tensor};
/// # use serde::{Serialize, Deserialize};
/// # #[derive(Serialize, Deserialize, Params)]
/// # struct Dense { kernel: Tensor<f32> }
/// # let params = Dense { kernel: Tensor::new(vec![1], vec![1.0])? };
/// let opts = Options::new().metadata("format", "flax");
/// let bytes = opts.to_bytes(&params)?;
/// assert_eq!(safejax::read_metadata(&bytes)?["format"], "flax");
/// # Ok::<(), safejax::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) allow_unknown_keys: bool,
    pub(crate) convert_dtypes: bool,
}

impl Options {
    /// The defaults: no metadata, unknown keys and dtype mismatches are errors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry to the `__metadata__` written with the file. With none, no `__metadata__` is
    /// written, as Python safejax does.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Whether keys in the file that the type does not use are accepted (default `false`: an error
    /// that lists them, so that a misnamed field cannot go unnoticed).
    pub fn allow_unknown_keys(mut self, allow: bool) -> Self {
        self.allow_unknown_keys = allow;
        self
    }

    /// Whether a leaf whose dtype differs from the file's is converted (default `false`: an error).
    /// Floats convert among `f16`, `bf16`, `f32`, `f64` (rounding to nearest); integers among each
    /// other where every value fits. Other pairs stay errors.
    pub fn convert_dtypes(mut self, convert: bool) -> Self {
        self.convert_dtypes = convert;
        self
    }

    /// The `__metadata__` to write with `params`: the params' own (a [`WithMetadata`](crate::WithMetadata)),
    /// then these options' entries; `None` when both are empty, so that no `__metadata__` is written.
    pub(crate) fn metadata_for<T: Params + ?Sized>(&self, params: &T) -> Option<Cow<'_, BTreeMap<String, String>>> {
        self.metadata_over(params.file_metadata())
    }

    /// These options' entries written over `own`; `None` when both are empty.
    pub(crate) fn metadata_over(
        &self,
        own: Option<&BTreeMap<String, String>>,
    ) -> Option<Cow<'_, BTreeMap<String, String>>> {
        match own.filter(|m| !m.is_empty()) {
            None => (!self.metadata.is_empty()).then_some(Cow::Borrowed(&self.metadata)),
            Some(own) => {
                let mut merged = own.clone();
                merged.extend(self.metadata.iter().map(|(k, v)| (k.clone(), v.clone())));
                Some(Cow::Owned(merged))
            }
        }
    }

    /// Writes `params` to a new buffer.
    pub fn to_bytes<T: Serialize + Params + ?Sized>(&self, params: &T) -> Result<Vec<u8>> {
        write::to_bytes(params, self)
    }

    /// Writes `params` to `writer`.
    pub fn to_writer<W: Write, T: Serialize + Params + ?Sized>(&self, writer: W, params: &T) -> Result<()> {
        write::to_writer(writer, params, self)
    }

    /// Writes `params` to the file at `path`, atomically: the file holds the old contents or the
    /// new, never a part.
    pub fn to_file<T: Serialize + Params + ?Sized>(&self, path: impl AsRef<Path>, params: &T) -> Result<()> {
        write::to_file(path.as_ref(), params, self)
    }

    /// Writes `params` into a checkpoint directory, sharded above `max_shard_bytes` (see
    /// [`to_dir`](crate::to_dir)).
    pub fn to_dir<T: Serialize + Params + ?Sized>(
        &self,
        dir: impl AsRef<Path>,
        params: &T,
        max_shard_bytes: u64,
    ) -> Result<()> {
        crate::shard::to_dir(dir.as_ref(), params, max_shard_bytes, self)
    }

    /// Reads params from a checkpoint directory, sharded or not (see [`from_dir`](crate::from_dir)).
    pub fn from_dir<T: DeserializeOwned + Params>(&self, path: impl AsRef<Path>) -> Result<T> {
        crate::shard::from_dir(path.as_ref(), self)
    }

    /// Reads params from the bytes of a file; [`TensorView`](crate::TensorView) leaves borrow them.
    pub fn from_bytes<'de, T: Deserialize<'de> + Params>(&self, bytes: &'de [u8]) -> Result<T> {
        Deserializer::with_options(bytes, self.clone())?.deserialize()
    }

    /// Reads params from the file at `path`: the header, then each tensor when its leaf is built,
    /// in chunks copied straight into the leaf, so that memory never holds the file besides the
    /// params. (Loading views instead, from a [`MappedFile`](crate::MappedFile), reads nothing.)
    pub fn from_file<T: DeserializeOwned + Params>(&self, path: impl AsRef<Path>) -> Result<T> {
        Deserializer::from_file(path.as_ref(), self.clone())?.deserialize()
    }
}
