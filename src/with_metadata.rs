//! [`WithMetadata`]: params together with the `__metadata__` of the file they came from.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::schema::Schema;
use crate::Params;

/// Params and the string metadata of their file, kept together so that a load and a save keep it.
///
/// A load into `WithMetadata<T>` fills `metadata` with the file's `__metadata__` (empty when the
/// file has none; a sharded directory gives its shards' metadata, a msgpack file has none); a save
/// writes `metadata` back, so that unchanged params give the same bytes. Hugging Face's
/// transformers, for one, refuses a Flax safetensors file without `format: flax`.
///
/// ```
/// # use safejax::{Params, Tensor, WithMetadata};
/// # use serde::{Serialize, Deserialize};
/// #[derive(Serialize, Deserialize, Params)]
/// struct Dense { kernel: Tensor<f32> }
///
/// let file = safejax::Options::new()
///     .metadata("format", "flax")
///     .to_bytes(&Dense { kernel: Tensor::new(vec![2], vec![1.0, 2.0])? })?;
/// let mut ckpt: WithMetadata<Dense> = safejax::from_bytes(&file)?;
/// assert_eq!(ckpt.metadata["format"], "flax");
/// assert_eq!(safejax::to_bytes(&ckpt)?, file); // unchanged params: the same bytes
/// ckpt.params.kernel.as_mut_slice()[0] = 3.0;
/// let changed = safejax::to_bytes(&ckpt)?;
/// assert_eq!(safejax::read_metadata(&changed)?["format"], "flax");
/// # Ok::<(), safejax::Error>(())
/// ```
///
/// Entries set with [`Options::metadata`](crate::Options::metadata) are written on top of these
/// (an option wins over an entry of the same key). Other serde formats see only `params`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WithMetadata<T> {
    /// The file's `__metadata__`, written back on save.
    pub metadata: BTreeMap<String, String>,
    /// The params.
    pub params: T,
}

impl<T> WithMetadata<T> {
    /// `params` with `metadata`.
    pub fn new(metadata: BTreeMap<String, String>, params: T) -> Self {
        WithMetadata { metadata, params }
    }
}

// The keys are the params' own: the metadata lives in the header, not in the tree.
impl<T: Params> Params for WithMetadata<T> {
    const SCHEMA: &'static Schema = T::SCHEMA;
    const IS_LEAFY: bool = T::IS_LEAFY;
    const IS_LIST: bool = T::IS_LIST;
    const KEEPS_FILE_METADATA: bool = true;

    fn file_metadata(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.metadata)
    }

    fn set_file_metadata(&mut self, metadata: &BTreeMap<String, String>) {
        self.metadata.clone_from(metadata);
    }
}

impl<T: Serialize> Serialize for WithMetadata<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.params.serialize(serializer)
    }
}

// The metadata is filled in by safejax's loaders after the params are read (see
// `Params::set_file_metadata`); other deserializers leave it empty.
impl<'de, T: Deserialize<'de>> Deserialize<'de> for WithMetadata<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(|params| WithMetadata {
            metadata: BTreeMap::new(),
            params,
        })
    }
}
