//! Plain array fields (`kernel: Array2<f32>`): this format reads and writes ndarray's own serde form.
//!
//! With its `serde` feature, ndarray serializes an array as a struct named `Array` with three fields:
//! `v` (the form's version, 1), `dim` (the shape: a tuple for a fixed rank, a list for `IxDyn`) and
//! `data` (every element, in logical order), and deserializes one from the same struct. We cannot
//! implement serde's traits for ndarray's types, but we do write the serializer and the deserializer:
//! at a leaf of the schema, a struct of that name is taken to be an array. Reading hands the file's
//! shape to `dim` and its elements one by one to `data`; writing collects them back into one
//! little-endian buffer. The leaf's dtype comes from the schema (`A::DTYPE` of the `Params` impl), and
//! its rank (`D::NDIM`) was checked with the other leaves before any value is built.

use serde::de::value::{BorrowedStrDeserializer, SeqDeserializer};
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{self, Impossible, Serialize};

use crate::schema::LeafSchema;
use crate::ser::{reject, reject_nested, tuple_as_seq};
use crate::tensor::element_count;
use crate::{Dtype, Error, Result};

/// The struct name of ndarray's serde form.
pub(crate) const SERDE_NAME: &str = "Array";
/// ndarray's `ARRAY_FORMAT_VERSION`, which its deserializer checks.
const VERSION: u8 = 1;
const FIELD_VERSION: &str = "v";
const FIELD_DIM: &str = "dim";
const FIELD_DATA: &str = "data";

/// Bytes per element of the dtypes that [`Element`](crate::Element) types hold.
fn element_size(dtype: Dtype) -> Result<usize> {
    match dtype.bit_size() {
        bits @ (8 | 16 | 32 | 64) if dtype != Dtype::C64 => Ok(bits / 8),
        _ => Err(Error::msg(format_args!(
            "{dtype} has no Rust element type for an ndarray"
        ))),
    }
}

// ---- reading ----

/// Hands a leaf to ndarray's visitor as its serde form.
pub(crate) fn deserialize_array<'de, V: Visitor<'de>>(
    dtype: Dtype,
    shape: &[usize],
    data: &[u8],
    visitor: V,
) -> Result<V::Value> {
    let size = element_size(dtype)?;
    visitor.visit_map(ArrayAccess {
        dtype,
        size,
        shape,
        data,
        field: 0,
    })
}

struct ArrayAccess<'a> {
    dtype: Dtype,
    size: usize,
    shape: &'a [usize],
    data: &'a [u8],
    field: usize,
}

impl<'de> MapAccess<'de> for ArrayAccess<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        let name = match self.field {
            0 => FIELD_VERSION,
            1 => FIELD_DIM,
            2 => FIELD_DATA,
            _ => return Ok(None),
        };
        seed.deserialize(BorrowedStrDeserializer::new(name)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        self.field += 1;
        match self.field {
            1 => seed.deserialize(VERSION.into_deserializer()),
            2 => seed.deserialize(SeqDeserializer::new(self.shape.iter().map(|&d| d as u64))),
            _ => seed.deserialize(ElementsDeserializer {
                dtype: self.dtype,
                chunks: self.data.chunks_exact(self.size),
            }),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(3 - self.field.min(3))
    }
}

/// The `data` field: a sequence of elements decoded from little-endian bytes.
struct ElementsDeserializer<'a> {
    dtype: Dtype,
    chunks: std::slice::ChunksExact<'a, u8>,
}

impl<'de> de::Deserializer<'de> for ElementsDeserializer<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_seq(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de> SeqAccess<'de> for ElementsDeserializer<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        match self.chunks.next() {
            Some(bytes) => seed
                .deserialize(ElementDeserializer {
                    dtype: self.dtype,
                    bytes,
                })
                .map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.chunks.len())
    }
}

/// One element, handed over as the Rust primitive of its dtype (half floats as their bits, inside
/// the newtype that `half` deserializes).
struct ElementDeserializer<'a> {
    dtype: Dtype,
    bytes: &'a [u8],
}

impl<'de> de::Deserializer<'de> for ElementDeserializer<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.dtype.visit_element(self.bytes, visitor).unwrap_or_else(|| {
            Err(Error::msg(format_args!(
                "{} has no Rust element type for an ndarray",
                self.dtype
            )))
        })
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

// ---- writing ----

/// Collects the fields of ndarray's serde form of one array leaf.
pub(crate) struct ArrayFields {
    dtype: Dtype,
    size: usize,
    shape: Option<Vec<usize>>,
    data: Option<Vec<u8>>,
}

impl ArrayFields {
    pub(crate) fn new(leaf: &LeafSchema) -> Result<Self> {
        let dtype = leaf
            .dtype
            .ok_or_else(|| Error::msg("an ndarray leaf whose schema has no dtype"))?;
        Ok(ArrayFields {
            dtype,
            size: element_size(dtype)?,
            shape: None,
            data: None,
        })
    }

    pub(crate) fn field<T: ?Sized + Serialize>(&mut self, name: &str, value: &T) -> Result<()> {
        match name {
            FIELD_VERSION => {
                let mut version = Vec::new();
                value.serialize(Sizes {
                    out: &mut version,
                    nested: false,
                })?;
                if version != [u64::from(VERSION)] {
                    return Err(Error::msg(format_args!(
                        "ndarray's serde form version {version:?} is not {VERSION}"
                    )));
                }
            }
            FIELD_DIM => {
                let mut dims = Vec::new();
                value.serialize(Sizes {
                    out: &mut dims,
                    nested: false,
                })?;
                let shape = dims
                    .into_iter()
                    .map(usize::try_from)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| Error::msg("an ndarray dimension does not fit a usize"))?;
                self.shape = Some(shape);
            }
            FIELD_DATA => {
                let mut data = Vec::new();
                value.serialize(Elements {
                    dtype: self.dtype,
                    out: &mut data,
                    nested: false,
                })?;
                self.data = Some(data);
            }
            other => {
                return Err(Error::msg(format_args!(
                    "unknown field `{other}` in ndarray's serde form"
                )))
            }
        }
        Ok(())
    }

    /// The dtype, the shape and the elements' bytes.
    pub(crate) fn finish(self) -> Result<(Dtype, Vec<usize>, Vec<u8>)> {
        let (Some(shape), Some(data)) = (self.shape, self.data) else {
            return Err(Error::msg("an ndarray without its `dim` or its `data`"));
        };
        if element_count(&shape).and_then(|n| n.checked_mul(self.size)) != Some(data.len()) {
            return Err(Error::msg(format_args!(
                "ndarray of shape {shape:?} has {} elements",
                data.len() / self.size
            )));
        }
        Ok((self.dtype, shape, data))
    }
}

/// Captures a size (`v`) or a tuple or list of sizes (`dim`).
struct Sizes<'a> {
    out: &'a mut Vec<u64>,
    nested: bool,
}

impl Sizes<'_> {
    fn push(self, value: u64) -> Result<()> {
        self.out.push(value);
        Ok(())
    }

    fn list(self) -> Result<Self> {
        if self.nested {
            return Err(Error::msg("ndarray's serde form: expected a size"));
        }
        Ok(Sizes {
            out: self.out,
            nested: true,
        })
    }
}

impl ser::Serializer for Sizes<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    reject_nested!("ndarray's serde form: ", "sizes");

    fn serialize_u8(self, v: u8) -> Result<()> {
        self.push(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<()> {
        self.push(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<()> {
        self.push(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<()> {
        self.push(v)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self> {
        self.list()
    }
    fn serialize_tuple(self, _: usize) -> Result<Self> {
        self.list()
    }
    reject!("ndarray's serde form: ", "sizes"; serialize_bool(bool), serialize_i8(i8), serialize_i16(i16), serialize_i32(i32),
        serialize_i64(i64), serialize_f32(f32), serialize_f64(f64), serialize_char(char), serialize_str(&str),
        serialize_bytes(&[u8]), serialize_none(), serialize_unit(), serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str));
}

impl ser::SerializeSeq for Sizes<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        value.serialize(Sizes {
            out: &mut *self.out,
            nested: true,
        })
    }
    fn end(self) -> Result<()> {
        Ok(())
    }
}

tuple_as_seq!(Sizes<'_>);

/// Captures the `data` sequence, encoding each element as the leaf's dtype, little-endian.
struct Elements<'a> {
    dtype: Dtype,
    out: &'a mut Vec<u8>,
    nested: bool,
}

impl Elements<'_> {
    /// Appends one element that serde handed over as `found`, if that is how `dtype` arrives.
    fn push(self, found: &str, fits: bool, bytes: &[u8]) -> Result<()> {
        if !self.nested || !fits {
            return Err(Error::msg(format_args!(
                "an ndarray element serializes as {found}, but the leaf's dtype is {}",
                self.dtype
            )));
        }
        self.out.extend_from_slice(bytes);
        Ok(())
    }
}

impl ser::Serializer for Elements<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Self;
    type SerializeTuple = Impossible<(), Error>;
    reject_nested!("ndarray's serde form: ", "elements");

    fn serialize_bool(self, v: bool) -> Result<()> {
        let fits = self.dtype == Dtype::BOOL;
        self.push("a bool", fits, &[u8::from(v)])
    }
    fn serialize_u8(self, v: u8) -> Result<()> {
        let fits = self.dtype == Dtype::U8;
        self.push("a u8", fits, &[v])
    }
    fn serialize_i8(self, v: i8) -> Result<()> {
        let fits = self.dtype == Dtype::I8;
        self.push("an i8", fits, &v.to_le_bytes())
    }
    fn serialize_u16(self, v: u16) -> Result<()> {
        // half's `f16` and `bf16` serialize as a newtype around their bits.
        let fits = matches!(self.dtype, Dtype::U16 | Dtype::F16 | Dtype::BF16);
        self.push("a u16", fits, &v.to_le_bytes())
    }
    fn serialize_i16(self, v: i16) -> Result<()> {
        let fits = self.dtype == Dtype::I16;
        self.push("an i16", fits, &v.to_le_bytes())
    }
    fn serialize_u32(self, v: u32) -> Result<()> {
        let fits = self.dtype == Dtype::U32;
        self.push("a u32", fits, &v.to_le_bytes())
    }
    fn serialize_i32(self, v: i32) -> Result<()> {
        let fits = self.dtype == Dtype::I32;
        self.push("an i32", fits, &v.to_le_bytes())
    }
    fn serialize_u64(self, v: u64) -> Result<()> {
        let fits = self.dtype == Dtype::U64;
        self.push("a u64", fits, &v.to_le_bytes())
    }
    fn serialize_i64(self, v: i64) -> Result<()> {
        let fits = self.dtype == Dtype::I64;
        self.push("an i64", fits, &v.to_le_bytes())
    }
    fn serialize_f32(self, v: f32) -> Result<()> {
        let fits = self.dtype == Dtype::F32;
        self.push("an f32", fits, &v.to_le_bytes())
    }
    fn serialize_f64(self, v: f64) -> Result<()> {
        let fits = self.dtype == Dtype::F64;
        self.push("an f64", fits, &v.to_le_bytes())
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self> {
        if self.nested {
            return Err(Error::msg("ndarray's serde form: expected an element, found a list"));
        }
        if let Some(len) = len {
            self.out.reserve(len.saturating_mul(element_size(self.dtype)?));
        }
        Ok(Elements {
            dtype: self.dtype,
            out: self.out,
            nested: true,
        })
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple> {
        Err(Error::msg("ndarray's serde form: expected elements"))
    }
    reject!("ndarray's serde form: ", "elements"; serialize_char(char), serialize_str(&str), serialize_bytes(&[u8]),
        serialize_none(), serialize_unit(), serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str));
}

impl ser::SerializeSeq for Elements<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        value.serialize(Elements {
            dtype: self.dtype,
            out: &mut *self.out,
            nested: true,
        })
    }
    fn end(self) -> Result<()> {
        Ok(())
    }
}
