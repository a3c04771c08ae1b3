//! Schema-free loading: tensors whose dtype is known only at run time, and a nested [`Value`] that
//! holds any file. They go through the same resolver and deserializer as typed structs.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, EnumAccess, VariantAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::convert::convert;
use crate::element::{vec_from_le_bytes, DecodeError, Element};
use crate::schema::{LeafSchema, MapKey, MapSchema, Schema, SchemaRef};
use crate::tensor::{deserialize_leaf, element_count, serialize_raw, LeafData};
use crate::{Dtype, Error, Params, Result, Tensor};

fn check_bytes(dtype: Dtype, shape: &[usize], len: usize) -> Result<(), String> {
    match element_count(shape).and_then(|n| dtype.byte_len(n)) {
        Some(expected) if expected == len => Ok(()),
        Some(expected) => Err(format!("{dtype} shape {shape:?} needs {expected} bytes, found {len}")),
        None => Err(format!("{dtype} shape {shape:?} overflows")),
    }
}

/// A tensor of any safetensors dtype, known at run time: its shape and the little-endian bytes of
/// its elements. Any leaf of any file loads into it.
#[derive(Clone, PartialEq, Eq)]
pub struct DynTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

/// The accessors that owned and borrowed dynamic tensors share.
macro_rules! dyn_accessors {
    () => {
        /// The dtype.
        pub fn dtype(&self) -> Dtype {
            self.dtype
        }

        /// The dimensions.
        pub fn shape(&self) -> &[usize] {
            &self.shape
        }

        /// The elements' little-endian bytes.
        pub fn as_bytes(&self) -> &[u8] {
            &self.data
        }
    };
}

impl DynTensor {
    /// A tensor of `dtype` and `shape` holding `data` (little-endian, row-major); an error when the
    /// byte count does not fit.
    pub fn new(dtype: Dtype, shape: Vec<usize>, data: Vec<u8>) -> Result<Self> {
        check_bytes(dtype, &shape, data.len()).map_err(Error::msg)?;
        Ok(DynTensor { dtype, shape, data })
    }

    dyn_accessors!();

    /// The elements' little-endian bytes, without copying.
    pub fn into_bytes(self) -> Vec<u8> {
        self.data
    }

    /// The elements as `T`; an error unless the dtype is `T`'s.
    pub fn to_tensor<T: Element>(&self) -> Result<Tensor<T>> {
        if self.dtype != T::DTYPE {
            return Err(Error::msg(format_args!(
                "dtype mismatch: expected {}, found {}",
                T::DTYPE,
                self.dtype
            )));
        }
        let data = vec_from_le_bytes(&self.data)
            .map_err(|_| Error::msg(format_args!("the bytes are not valid {} elements", self.dtype)))?;
        Tensor::new(self.shape.clone(), data)
    }

    /// The tensor converted to `dtype`: among floats, or among integers where every value fits.
    pub fn convert(&self, dtype: Dtype) -> Result<DynTensor> {
        if dtype == self.dtype {
            return Ok(self.clone());
        }
        let data = convert(&self.data, self.dtype, dtype).map_err(|reason| Error::Conversion {
            key: String::new(),
            from: self.dtype,
            to: dtype,
            reason,
        })?;
        Ok(DynTensor {
            dtype,
            shape: self.shape.clone(),
            data,
        })
    }
}

impl<T: Element> From<Tensor<T>> for DynTensor {
    fn from(tensor: Tensor<T>) -> Self {
        let data = crate::element::to_le_bytes(tensor.as_slice()).into_owned();
        DynTensor {
            dtype: T::DTYPE,
            shape: tensor.shape().to_vec(),
            data,
        }
    }
}

impl fmt::Debug for DynTensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DynTensor<{}>{:?} ({} bytes)",
            self.dtype,
            self.shape,
            self.data.len()
        )
    }
}

/// A [`DynTensor`] that borrows its bytes from the input (bytes need no alignment, so it always
/// borrows when loaded with [`from_bytes`](crate::from_bytes)).
#[derive(Clone, PartialEq, Eq)]
pub struct DynTensorView<'a> {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Cow<'a, [u8]>,
}

impl<'a> DynTensorView<'a> {
    /// A view of `data` as a tensor of `dtype` and `shape`.
    pub fn new(dtype: Dtype, shape: Vec<usize>, data: &'a [u8]) -> Result<Self> {
        check_bytes(dtype, &shape, data.len()).map_err(Error::msg)?;
        Ok(DynTensorView {
            dtype,
            shape,
            data: Cow::Borrowed(data),
        })
    }

    dyn_accessors!();

    /// Whether the bytes are borrowed from the input.
    pub fn is_borrowed(&self) -> bool {
        matches!(self.data, Cow::Borrowed(_))
    }

    /// An owned tensor.
    pub fn to_owned_tensor(&self) -> DynTensor {
        DynTensor {
            dtype: self.dtype,
            shape: self.shape.clone(),
            data: self.data.to_vec(),
        }
    }
}

impl fmt::Debug for DynTensorView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DynTensorView<{}>{:?} ({} bytes)",
            self.dtype,
            self.shape,
            self.data.len()
        )
    }
}

impl Serialize for DynTensor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_raw(serializer, self.dtype, &self.shape, &self.data)
    }
}

impl Serialize for DynTensorView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_raw(serializer, self.dtype, &self.shape, &self.data)
    }
}

struct OwnedBytes;
struct BorrowedBytes;

impl<'de> LeafData<'de> for OwnedBytes {
    type Data = Vec<u8>;
    fn borrowed(bytes: &'de [u8]) -> Result<Vec<u8>, DecodeError> {
        Ok(bytes.to_vec())
    }
    fn transient(bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
        Ok(bytes.to_vec())
    }
    fn owned(bytes: Vec<u8>) -> Result<Vec<u8>, DecodeError> {
        Ok(bytes)
    }
    type Pieces = Vec<u8>;
    fn pieces(len: Option<usize>) -> Vec<u8> {
        crate::pages::buffer(len.unwrap_or(0))
    }
    fn push(pieces: &mut Vec<u8>, bytes: &[u8]) {
        pieces.extend_from_slice(bytes)
    }
    fn finish(pieces: Vec<u8>) -> Result<Vec<u8>, DecodeError> {
        Ok(pieces)
    }
    fn check(dtype: Dtype, shape: &[usize], data: &Vec<u8>) -> Result<(), String> {
        check_bytes(dtype, shape, data.len())
    }
    fn expecting(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tensor")
    }
}

impl<'de> LeafData<'de> for BorrowedBytes {
    type Data = Cow<'de, [u8]>;
    fn borrowed(bytes: &'de [u8]) -> Result<Cow<'de, [u8]>, DecodeError> {
        Ok(Cow::Borrowed(bytes))
    }
    fn transient(bytes: &[u8]) -> Result<Cow<'de, [u8]>, DecodeError> {
        Ok(Cow::Owned(bytes.to_vec()))
    }
    fn owned(bytes: Vec<u8>) -> Result<Cow<'de, [u8]>, DecodeError> {
        Ok(Cow::Owned(bytes))
    }
    type Pieces = Vec<u8>;
    fn pieces(len: Option<usize>) -> Vec<u8> {
        crate::pages::buffer(len.unwrap_or(0))
    }
    fn push(pieces: &mut Vec<u8>, bytes: &[u8]) {
        pieces.extend_from_slice(bytes)
    }
    fn finish(pieces: Vec<u8>) -> Result<Cow<'de, [u8]>, DecodeError> {
        Ok(Cow::Owned(pieces))
    }
    fn check(dtype: Dtype, shape: &[usize], data: &Cow<'de, [u8]>) -> Result<(), String> {
        check_bytes(dtype, shape, data.len())
    }
    fn expecting(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tensor")
    }
}

impl<'de> Deserialize<'de> for DynTensor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (dtype, shape, data) = deserialize_leaf::<OwnedBytes, D>(deserializer)?;
        Ok(DynTensor { dtype, shape, data })
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for DynTensorView<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (dtype, shape, data) = deserialize_leaf::<BorrowedBytes, D>(deserializer)?;
        Ok(DynTensorView { dtype, shape, data })
    }
}

/// A leaf of any dtype and rank.
pub(crate) const ANY_LEAF_SCHEMA: LeafSchema = LeafSchema {
    dtype: None,
    rank: None,
};
pub(crate) const ANY_LEAF: Schema = Schema::Leaf(ANY_LEAF_SCHEMA);

impl Params for DynTensor {
    const SCHEMA: &'static Schema = &ANY_LEAF;
    const IS_LEAFY: bool = true;
}

impl Params for DynTensorView<'_> {
    const SCHEMA: &'static Schema = &ANY_LEAF;
    const IS_LEAFY: bool = true;
}

/// Any file as a tree of dicts: the key `params.Dense_0.kernel` is
/// `value["params"]["Dense_0"]["kernel"]`. Keys split at the `.` of dict levels, as Python's
/// `safejax.utils.unflatten_dict` does.
///
/// ```
/// # use safejax::{Params, Tensor, Value};
/// let file = std::fs::read("tests/fixtures/flax_cnn.safetensors")?;
/// let value: Value = safejax::from_bytes(&file)?;
/// let kernel = value.get("params.Dense_0.kernel").and_then(Value::as_tensor).unwrap();
/// assert_eq!(kernel.dtype(), safejax::Dtype::BF16);
/// assert_eq!(value.leaves().count(), 10);
/// assert!(safejax::to_bytes(&value)? == file);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A leaf.
    Tensor(DynTensor),
    /// A dict level.
    Dict(BTreeMap<String, Value>),
}

pub(crate) const VALUE_NAME: &str = "$safejax::private::Value";
pub(crate) const VALUE_TENSOR: &str = "Tensor";
pub(crate) const VALUE_DICT: &str = "Dict";
const VARIANTS: &[&str] = &[VALUE_TENSOR, VALUE_DICT];

/// A dict of values, the shape of a [`Value::Dict`].
pub(crate) const ANY_DICT: Schema = Schema::Map(MapSchema {
    value: SchemaRef::new(<Value as Params>::schema),
    key: MapKey::Name,
});

impl Params for Value {
    const SCHEMA: &'static Schema = &Schema::Any;
    const IS_LEAFY: bool = true;
}

impl Value {
    /// The value at a `.`-separated path (`"params.Dense_0.kernel"`), if there is one.
    pub fn get(&self, path: &str) -> Option<&Value> {
        path.split('.').try_fold(self, |value, name| match value {
            Value::Dict(dict) => dict.get(name),
            Value::Tensor(_) => None,
        })
    }

    /// The tensor, if this is a leaf.
    pub fn as_tensor(&self) -> Option<&DynTensor> {
        match self {
            Value::Tensor(t) => Some(t),
            Value::Dict(_) => None,
        }
    }

    /// Every leaf with its `.`-joined path, in key order.
    pub fn leaves(&self) -> impl Iterator<Item = (String, &DynTensor)> {
        let mut out = Vec::new();
        collect_leaves(self, String::new(), &mut out);
        out.into_iter()
    }
}

fn collect_leaves<'v>(value: &'v Value, path: String, out: &mut Vec<(String, &'v DynTensor)>) {
    match value {
        Value::Tensor(t) => out.push((path, t)),
        Value::Dict(dict) => {
            for (name, child) in dict {
                let child_path = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                collect_leaves(child, child_path, out);
            }
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Tensor(t) => serializer.serialize_newtype_variant(VALUE_NAME, 0, VALUE_TENSOR, t),
            Value::Dict(d) => serializer.serialize_newtype_variant(VALUE_NAME, 1, VALUE_DICT, d),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_enum(VALUE_NAME, VARIANTS, ValueVisitor(PhantomData))
    }
}

struct ValueVisitor<'de>(PhantomData<&'de ()>);

impl<'de> Visitor<'de> for ValueVisitor<'de> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tensor or a dict of values")
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (variant, access) = data.variant::<String>()?;
        match variant.as_str() {
            VALUE_TENSOR => access.newtype_variant().map(Value::Tensor),
            VALUE_DICT => access.newtype_variant().map(Value::Dict),
            other => Err(de::Error::unknown_variant(other, VARIANTS)),
        }
    }
}
