//! Flax's own msgpack checkpoints: what `flax.serialization.to_bytes` writes and `from_bytes` /
//! `msgpack_restore` read, and what Hugging Face Flax models save as `flax_model.msgpack`.
//!
//! The same `Params` structs, key styles, typed leaves and error rules apply as for safetensors:
//! a nested msgpack dict is the tree that a safetensors file flattens with `.`. Arrays are
//! msgpack extensions holding `(shape, dtype name, raw bytes)`; numpy scalars, plain numbers and
//! complex numbers load as 0-d tensors; arrays flax split into `__msgpack_chunked_array__` pieces
//! load whole, and arrays larger than flax's chunk size (1 GiB) are written split the same way.
//!
//! ```
//! # use safejax::{bf16, Params, Tensor};
//! # use serde::{Deserialize, Serialize};
//! #[derive(Serialize, Deserialize, Params)]
//! struct Dense { kernel: Tensor<f32>, bias: Tensor<f32> }
//!
//! let dense = Dense { kernel: Tensor::new(vec![1, 2], vec![1.0, 2.0])?, bias: Tensor::new(vec![2], vec![0.0; 2])? };
//! let bytes = safejax::msgpack::to_bytes(&dense)?;
//! let back: Dense = safejax::msgpack::from_bytes(&bytes)?;
//! assert_eq!(back.kernel.as_slice(), &[1.0, 2.0]);
//! # Ok::<(), safejax::Error>(())
//! ```

mod read;
mod write;

pub(crate) use read::parse;

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::IoAt;
use crate::{Deserializer, Dtype, Options, Params, Result};

/// flax's msgpack extension codes.
const EXT_NDARRAY: i8 = 1;
const EXT_NATIVE_COMPLEX: i8 = 2;
const EXT_NPSCALAR: i8 = 3;
/// The marker key of a chunked array.
const CHUNKED: &str = "__msgpack_chunked_array__";
/// `flax.serialization.MAX_CHUNK_SIZE`: arrays above it are written in pieces.
const MAX_CHUNK_BYTES: usize = 1 << 30;

/// numpy's dtype names and ours: the dtype table's (`dtype.rs`).
fn dtype_from_numpy(name: &str) -> Option<Dtype> {
    Dtype::from_numpy_name(name)
}

fn numpy_name(dtype: Dtype) -> Option<&'static str> {
    dtype.numpy_name()
}

/// Writes `params` in flax's msgpack format.
pub fn to_bytes<T: Serialize + Params + ?Sized>(params: &T) -> Result<Vec<u8>> {
    write::to_bytes(params, MAX_CHUNK_BYTES)
}

/// Writes `params` in flax's msgpack format to the file at `path`, atomically.
pub fn to_file<T: Serialize + Params + ?Sized>(path: impl AsRef<Path>, params: &T) -> Result<()> {
    crate::write::write_atomic(path.as_ref(), &to_bytes(params)?)
}

/// Writes `params` into the directory `dir` as transformers saves a Flax model: one
/// `flax_model.msgpack` if every tensor fits in `max_shard_bytes`, else
/// `flax_model-00001-of-0000N.msgpack` shards of at most that many tensor bytes (a larger tensor
/// gets a shard of its own) and `flax_model.msgpack.index.json`. Like [`crate::to_dir`], a failed
/// or killed save leaves the old checkpoint; files of an earlier save are removed, other files
/// are kept. [`crate::from_dir`] reads it.
pub fn to_dir<T: Serialize + Params + ?Sized>(dir: impl AsRef<Path>, params: &T, max_shard_bytes: u64) -> Result<()> {
    write::to_dir(dir.as_ref(), params, max_shard_bytes, MAX_CHUNK_BYTES)
}

/// Reads params from flax msgpack bytes.
pub fn from_bytes<'de, T: Deserialize<'de> + Params>(bytes: &'de [u8]) -> Result<T> {
    from_bytes_with(bytes, &Options::new())
}

/// Reads params from flax msgpack bytes, with [`Options`] (unknown keys, dtype conversion).
pub fn from_bytes_with<'de, T: Deserialize<'de> + Params>(bytes: &'de [u8], options: &Options) -> Result<T> {
    Deserializer::from_msgpack(bytes, options.clone())?.deserialize()
}

/// Reads params from the flax msgpack file at `path`.
pub fn from_file<T: DeserializeOwned + Params>(path: impl AsRef<Path>) -> Result<T> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).at(path)?;
    let de = Deserializer::from_header(vec![&bytes], parse_input(&bytes, Some(path))?, Options::new());
    de.deserialize()
}

impl<'de> Deserializer<'de> {
    /// Parses flax msgpack bytes, ready to be read into param types.
    pub fn from_msgpack(bytes: &'de [u8], options: Options) -> Result<Self> {
        Ok(Deserializer::from_header(
            vec![bytes],
            parse_input(bytes, None)?,
            options,
        ))
    }
}

/// Parses the msgpack `bytes` (of the file at `path`, if they are one's).
fn parse_input(bytes: &[u8], path: Option<&Path>) -> Result<crate::header::Header> {
    read::parse(bytes).map_err(|e| crate::sniff::msgpack_error(bytes, path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Tensor, Value};

    #[test]
    fn numpy_names_round_trip() {
        let named: Vec<Dtype> = Dtype::all().filter(|d| numpy_name(*d).is_some()).collect();
        assert_eq!(named.len(), 18);
        for dtype in named {
            assert_eq!(dtype_from_numpy(numpy_name(dtype).unwrap()), Some(dtype));
        }
        assert_eq!(dtype_from_numpy("float8_e4m3fn"), Some(Dtype::F8_E4M3));
        assert_eq!(numpy_name(Dtype::F4), None);
    }

    #[test]
    fn arrays_above_the_chunk_size_are_split_and_read_whole() {
        let big = Tensor::new(vec![5, 3], (0..15).map(|i| i as f32).collect()).unwrap();
        let value = Value::Dict([("w".to_owned(), Value::Tensor(big.clone().into()))].into());
        let bytes = write::to_bytes(&value, 16).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains(CHUNKED), "written in chunks");
        let back: Value = from_bytes(&bytes).unwrap();
        assert_eq!(
            back.get("w")
                .and_then(Value::as_tensor)
                .unwrap()
                .to_tensor::<f32>()
                .unwrap(),
            big
        );
    }
}
