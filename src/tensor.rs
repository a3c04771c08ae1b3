//! Typed leaves: owned [`Tensor`], borrowed [`TensorView`], and scalars.
//!
//! A tensor passes through serde as one struct under a private name ([`TENSOR_MAGIC`]) with three
//! fields: `dtype`, `shape`, and `data` as one byte string. This crate's serializer and deserializer
//! recognise the name and move the bytes in one piece; any other serde format sees a plain struct.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::element::{slice_from_le_bytes, to_le_bytes, vec_from_le_bytes, DecodeError, Element, Pieces};
use crate::schema::{LeafSchema, Schema};
use crate::{bf16, f16, Dtype, Error, Params, Result};

/// The private struct name under which tensors pass through serde.
pub(crate) const TENSOR_MAGIC: &str = "$safejax::private::Tensor";
pub(crate) const FIELD_DTYPE: &str = "dtype";
pub(crate) const FIELD_SHAPE: &str = "shape";
pub(crate) const FIELD_DATA: &str = "data";
pub(crate) const FIELDS: &[&str] = &[FIELD_DTYPE, FIELD_SHAPE, FIELD_DATA];

/// Number of elements of a shape, or `None` on overflow.
pub(crate) fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

pub(crate) fn check_len(shape: &[usize], len: usize) -> Result<()> {
    match element_count(shape) {
        Some(n) if n == len => Ok(()),
        expected => Err(Error::ShapeDataMismatch {
            shape: shape.to_vec(),
            expected: expected.unwrap_or(usize::MAX),
            found: len,
        }),
    }
}

/// An owned tensor whose element type, and so dtype, is fixed by `T`.
#[derive(Clone, PartialEq)]
pub struct Tensor<T> {
    shape: Vec<usize>,
    data: Vec<T>,
}

/// The accessors that owned tensors and views share.
macro_rules! element_accessors {
    () => {
        /// The dtype, `T::DTYPE`.
        pub fn dtype(&self) -> Dtype {
            T::DTYPE
        }

        /// Number of elements.
        pub fn len(&self) -> usize {
            self.data.len()
        }

        /// Whether the tensor has no elements (a 0 in its shape).
        pub fn is_empty(&self) -> bool {
            self.data.is_empty()
        }
    };
}

impl<T: Element> Tensor<T> {
    /// A tensor of `shape` holding `data` in row-major order; an error when their sizes disagree.
    pub fn new(shape: Vec<usize>, data: Vec<T>) -> Result<Self> {
        check_len(&shape, data.len())?;
        Ok(Tensor { shape, data })
    }

    /// A 0-d tensor holding one value.
    pub fn scalar(value: T) -> Self {
        Tensor {
            shape: Vec::new(),
            data: vec![value],
        }
    }

    /// A tensor of `shape` filled with `T::default()` (zero, or `false`).
    pub fn zeros(shape: Vec<usize>) -> Result<Self> {
        let n = element_count(&shape).ok_or_else(|| Error::ShapeDataMismatch {
            shape: shape.clone(),
            expected: usize::MAX,
            found: 0,
        })?;
        Ok(Tensor {
            shape,
            data: vec![T::default(); n],
        })
    }

    /// The dimensions.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements in row-major order.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }

    /// The elements in row-major order, to change in place.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// The elements, without copying.
    pub fn into_vec(self) -> Vec<T> {
        self.data
    }

    /// The shape and the elements, without copying.
    pub fn into_parts(self) -> (Vec<usize>, Vec<T>) {
        (self.shape, self.data)
    }

    element_accessors!();

    /// A view borrowing this tensor.
    pub fn view(&self) -> TensorView<'_, T> {
        TensorView {
            shape: self.shape.clone(),
            data: Cow::Borrowed(&self.data),
        }
    }
}

/// A tensor that borrows its elements from the input bytes where they are aligned for `T` (and the
/// host is little-endian), and holds a copy otherwise.
///
/// Load views with [`from_bytes`](crate::from_bytes) and mark the field `#[serde(borrow)]`.
#[derive(Clone, PartialEq)]
pub struct TensorView<'a, T: Clone> {
    shape: Vec<usize>,
    data: Cow<'a, [T]>,
}

impl<'a, T: Element> TensorView<'a, T> {
    /// A view of `data` with `shape`; an error when their sizes disagree.
    pub fn new(shape: Vec<usize>, data: &'a [T]) -> Result<Self> {
        check_len(&shape, data.len())?;
        Ok(TensorView {
            shape,
            data: Cow::Borrowed(data),
        })
    }

    /// The dimensions.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements in row-major order.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }

    /// Whether the elements are borrowed from the input rather than copied.
    pub fn is_borrowed(&self) -> bool {
        matches!(self.data, Cow::Borrowed(_))
    }

    element_accessors!();

    /// The shape and the elements as held: borrowed from the input, or a copy.
    #[cfg_attr(not(feature = "ndarray"), allow(dead_code))]
    pub(crate) fn into_cow_parts(self) -> (Vec<usize>, Cow<'a, [T]>) {
        (self.shape, self.data)
    }

    /// An owned tensor, copying only when the data is borrowed.
    pub fn into_tensor(self) -> Tensor<T> {
        Tensor {
            shape: self.shape,
            data: self.data.into_owned(),
        }
    }
}

impl<T: Element> From<TensorView<'_, T>> for Tensor<T> {
    fn from(view: TensorView<'_, T>) -> Self {
        view.into_tensor()
    }
}

fn debug_tensor<T: fmt::Debug>(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    dtype: Dtype,
    shape: &[usize],
    data: &[T],
) -> fmt::Result {
    const SHOWN: usize = 8;
    write!(f, "{name}<{dtype}>{shape:?} ")?;
    let mut list = f.debug_list();
    list.entries(data.iter().take(SHOWN));
    if data.len() > SHOWN {
        list.entry(&format_args!("... {} more", data.len() - SHOWN));
    }
    list.finish()
}

impl<T: Element> fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_tensor(f, "Tensor", T::DTYPE, &self.shape, &self.data)
    }
}

impl<T: Element> fmt::Debug for TensorView<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_tensor(f, "TensorView", T::DTYPE, &self.shape, &self.data)
    }
}

// ---- serde ----

/// Bytes that serialize with `serialize_bytes`, in one call.
struct RawBytes<'a>(&'a [u8]);

impl Serialize for RawBytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// Serializes a leaf of any dtype from its little-endian bytes.
pub(crate) fn serialize_raw<S: Serializer>(
    serializer: S,
    dtype: Dtype,
    shape: &[usize],
    data: &[u8],
) -> Result<S::Ok, S::Error> {
    let mut state = serializer.serialize_struct(TENSOR_MAGIC, 3)?;
    state.serialize_field(FIELD_DTYPE, dtype.name())?;
    state.serialize_field(FIELD_SHAPE, shape)?;
    state.serialize_field(FIELD_DATA, &RawBytes(data))?;
    state.end()
}

impl<T: Element> Serialize for Tensor<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_raw(serializer, T::DTYPE, &self.shape, &to_le_bytes(&self.data))
    }
}

impl<T: Element> Serialize for TensorView<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_raw(serializer, T::DTYPE, &self.shape, &to_le_bytes(&self.data))
    }
}

/// What a leaf type makes of the `data` bytes, and how it checks them against dtype and shape.
pub(crate) trait LeafData<'de>: Sized {
    type Data;
    /// Bytes borrowed from the input for `'de`.
    fn borrowed(bytes: &'de [u8]) -> Result<Self::Data, DecodeError>;
    /// Bytes lent only for the call.
    fn transient(bytes: &[u8]) -> Result<Self::Data, DecodeError>;
    /// Bytes handed over: kept where the leaf holds bytes, else copied (then freed).
    fn owned(bytes: Vec<u8>) -> Result<Self::Data, DecodeError> {
        Self::transient(&bytes)
    }
    /// Gathers bytes that arrive in pieces (`len` in all, when known) into data.
    type Pieces;
    fn pieces(len: Option<usize>) -> Self::Pieces;
    fn push(pieces: &mut Self::Pieces, bytes: &[u8]);
    fn finish(pieces: Self::Pieces) -> Result<Self::Data, DecodeError>;
    /// Whether `data` is what a tensor of `dtype` and `shape` holds.
    fn check(dtype: Dtype, shape: &[usize], data: &Self::Data) -> Result<(), String>;
    /// What the leaf is, for messages.
    fn expecting(f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

/// Owned elements of `T`.
pub(crate) struct Owned<T>(PhantomData<T>);
/// Elements of `T` borrowed where aligned.
pub(crate) struct Borrowed<T>(PhantomData<T>);

fn check_typed<T: Element>(dtype: Dtype, shape: &[usize], len: usize) -> Result<(), String> {
    if dtype != T::DTYPE {
        return Err(format!("dtype mismatch: expected {}, found {dtype}", T::DTYPE));
    }
    check_len(shape, len).map_err(|e| e.to_string())
}

impl<'de, T: Element> LeafData<'de> for Owned<T> {
    type Data = Vec<T>;
    fn borrowed(bytes: &'de [u8]) -> Result<Vec<T>, DecodeError> {
        vec_from_le_bytes(bytes)
    }
    fn transient(bytes: &[u8]) -> Result<Vec<T>, DecodeError> {
        vec_from_le_bytes(bytes)
    }
    type Pieces = Pieces<T>;
    fn pieces(len: Option<usize>) -> Pieces<T> {
        Pieces::new(len)
    }
    fn push(pieces: &mut Pieces<T>, bytes: &[u8]) {
        pieces.push(bytes)
    }
    fn finish(pieces: Pieces<T>) -> Result<Vec<T>, DecodeError> {
        pieces.finish()
    }
    fn check(dtype: Dtype, shape: &[usize], data: &Vec<T>) -> Result<(), String> {
        check_typed::<T>(dtype, shape, data.len())
    }
    fn expecting(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} tensor", T::DTYPE)
    }
}

impl<'de, T: Element> LeafData<'de> for Borrowed<T> {
    type Data = Cow<'de, [T]>;
    fn borrowed(bytes: &'de [u8]) -> Result<Cow<'de, [T]>, DecodeError> {
        slice_from_le_bytes(bytes)
    }
    fn transient(bytes: &[u8]) -> Result<Cow<'de, [T]>, DecodeError> {
        vec_from_le_bytes(bytes).map(Cow::Owned)
    }
    type Pieces = Pieces<T>;
    fn pieces(len: Option<usize>) -> Pieces<T> {
        Pieces::new(len)
    }
    fn push(pieces: &mut Pieces<T>, bytes: &[u8]) {
        pieces.push(bytes)
    }
    fn finish(pieces: Pieces<T>) -> Result<Cow<'de, [T]>, DecodeError> {
        pieces.finish().map(Cow::Owned)
    }
    fn check(dtype: Dtype, shape: &[usize], data: &Cow<'de, [T]>) -> Result<(), String> {
        check_typed::<T>(dtype, shape, data.len())
    }
    fn expecting(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} tensor", T::DTYPE)
    }
}

fn decode_error<E: de::Error>(err: DecodeError) -> E {
    match err {
        DecodeError::Length => E::custom("tensor data is not a whole number of elements"),
        DecodeError::Invalid => E::custom("tensor data holds a value its dtype cannot (a BOOL other than 0 or 1)"),
    }
}

/// Deserializes the `data` field: bytes in one piece, or a sequence of pieces, each bytes (a file
/// read in chunks) or one byte (self-describing formats that write bytes as a list). `len` is the
/// data's size, when the dtype and shape came first.
struct DataSeed<L> {
    len: Option<usize>,
    leaf: PhantomData<L>,
}

impl<'de, L: LeafData<'de>> DeserializeSeed<'de> for DataSeed<L> {
    type Value = L::Data;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<L::Data, D::Error> {
        deserializer.deserialize_bytes(self)
    }
}

impl<'de, L: LeafData<'de>> Visitor<'de> for DataSeed<L> {
    type Value = L::Data;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tensor bytes")
    }
    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<L::Data, E> {
        L::borrowed(v).map_err(decode_error)
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<L::Data, E> {
        L::transient(v).map_err(decode_error)
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<L::Data, E> {
        L::owned(v).map_err(decode_error)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<L::Data, A::Error> {
        let mut pieces = L::pieces(self.len);
        let mut push = |bytes: &[u8]| L::push(&mut pieces, bytes);
        while seq.next_element_seed(PieceSeed(&mut push))?.is_some() {}
        L::finish(pieces).map_err(decode_error)
    }
}

/// One piece of the `data` field, handed to the closure: bytes, or one byte as a number.
struct PieceSeed<'p, F>(&'p mut F);

impl<'de, F: FnMut(&[u8])> DeserializeSeed<'de> for PieceSeed<'_, F> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_u8(self)
    }
}

impl<'de, F: FnMut(&[u8])> Visitor<'de> for PieceSeed<'_, F> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte or bytes")
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<(), E> {
        (self.0)(v);
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        let byte = u8::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))?;
        (self.0)(&[byte]);
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        let byte = u8::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))?;
        (self.0)(&[byte]);
        Ok(())
    }
}

/// Reads a leaf's three fields, in any order.
struct LeafVisitor<L>(PhantomData<L>);

impl<'de, L: LeafData<'de>> Visitor<'de> for LeafVisitor<L> {
    type Value = (Dtype, Vec<usize>, L::Data);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        L::expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut dtype, mut shape, mut data) = (None, None, None);
        while let Some(field) = map.next_key::<Cow<'de, str>>()? {
            match &*field {
                FIELD_DTYPE => dtype = Some(map.next_value::<Dtype>()?),
                FIELD_SHAPE => shape = Some(map.next_value::<Vec<usize>>()?),
                FIELD_DATA => {
                    let len = match (dtype, &shape) {
                        (Some(dtype), Some(shape)) => element_count(shape).and_then(|n| dtype.byte_len(n)),
                        _ => None,
                    };
                    data = Some(map.next_value_seed(DataSeed::<L> { len, leaf: PhantomData })?)
                }
                other => return Err(de::Error::unknown_field(other, FIELDS)),
            }
        }
        let dtype = dtype.ok_or_else(|| de::Error::missing_field(FIELD_DTYPE))?;
        let shape = shape.ok_or_else(|| de::Error::missing_field(FIELD_SHAPE))?;
        let data = data.ok_or_else(|| de::Error::missing_field(FIELD_DATA))?;
        L::check(dtype, &shape, &data).map_err(de::Error::custom)?;
        Ok((dtype, shape, data))
    }
}

/// Deserializes a leaf through the private tensor name.
pub(crate) fn deserialize_leaf<'de, L: LeafData<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<(Dtype, Vec<usize>, L::Data), D::Error> {
    deserializer.deserialize_struct(TENSOR_MAGIC, FIELDS, LeafVisitor::<L>(PhantomData))
}

impl<'de, T: Element> Deserialize<'de> for Tensor<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (_, shape, data) = deserialize_leaf::<Owned<T>, D>(deserializer)?;
        Ok(Tensor { shape, data })
    }
}

impl<'de: 'a, 'a, T: Element> Deserialize<'de> for TensorView<'a, T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (_, shape, data) = deserialize_leaf::<Borrowed<T>, D>(deserializer)?;
        Ok(TensorView { shape, data })
    }
}

// ---- Params ----

impl<T: Element> Params for Tensor<T> {
    const SCHEMA: &'static Schema = &Schema::Leaf(LeafSchema {
        dtype: Some(T::DTYPE),
        rank: None,
    });
    const IS_LEAFY: bool = true;
}

impl<T: Element> Params for TensorView<'_, T> {
    const SCHEMA: &'static Schema = &Schema::Leaf(LeafSchema {
        dtype: Some(T::DTYPE),
        rank: None,
    });
    const IS_LEAFY: bool = true;
}

macro_rules! scalar_params {
    ($($ty:ty),*) => {$(
        impl Params for $ty {
            const SCHEMA: &'static Schema = &Schema::Leaf(LeafSchema { dtype: Some(<$ty as Element>::DTYPE), rank: Some(0) });
            const IS_LEAFY: bool = true;
        }
    )*};
}

scalar_params!(bool, u8, i8, u16, i16, u32, i32, u64, i64, f16, bf16, f32, f64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_sizes() {
        assert!(Tensor::new(vec![2, 3], vec![0.0f32; 6]).is_ok());
        let err = Tensor::new(vec![2, 3], vec![0.0f32; 5]).unwrap_err();
        assert_eq!(err.to_string(), "shape [2, 3] holds 6 elements, but the data has 5");
        let t = Tensor::scalar(3i32);
        assert_eq!((t.shape(), t.as_slice()), (&[][..], &[3][..]));
        assert!(Tensor::<f32>::zeros(vec![usize::MAX, 2]).is_err());
    }

    #[test]
    fn other_formats_see_a_plain_struct() {
        let t = Tensor::new(vec![2], vec![1u8, 2]).unwrap();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"dtype":"U8","shape":[2],"data":[1,2]}"#);
        let back: Tensor<u8> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
        let wrong = serde_json::from_str::<Tensor<i8>>(&json).unwrap_err();
        assert!(
            wrong.to_string().contains("dtype mismatch: expected I8, found U8"),
            "{wrong}"
        );
    }
}
