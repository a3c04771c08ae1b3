//! The serde `Serializer`: walks a param tree in step with its [`Schema`], and hands each leaf to a
//! sink with its full key, dtype, shape and little-endian bytes in one piece.
//!
//! Writing a file takes two walks: one to learn every key and size (so the header and the layout
//! are known before any data moves), one to copy each tensor's bytes once, to its final place.

use std::cell::RefCell;

use serde::ser::{self, Impossible, Serialize};

use crate::dynamic::{ANY_DICT, ANY_LEAF, VALUE_DICT, VALUE_NAME, VALUE_TENSOR};
use crate::keys::{Cursor, Mark};
use crate::schema::{Dim, LeafSchema, MapKey, Schema, StructSchema};
use crate::shape::DimBindings;
use crate::tensor::{element_count, FIELD_DATA, FIELD_DTYPE, FIELD_SHAPE, TENSOR_MAGIC};
use crate::{Dtype, Error, Params, Result};

/// One leaf of a param tree as the serializer sees it.
#[derive(Debug, Clone, Copy)]
pub struct LeafRef<'a> {
    /// The full safetensors key.
    pub key: &'a str,
    /// The dtype.
    pub dtype: Dtype,
    /// The shape (`[]` for scalars).
    pub shape: &'a [usize],
    /// The elements' bytes, little-endian.
    pub data: &'a [u8],
    /// Positions in `key` of the `.` separators between dict levels.
    breaks: &'a [usize],
}

impl<'a> LeafRef<'a> {
    /// The key as a path of dict levels, as the style nests them: `params.mlp/~/linear_0.w` is
    /// `["params", "mlp/~/linear_0", "w"]`; an objax variable name is one level.
    pub fn path(&self) -> impl Iterator<Item = &'a str> {
        split_at(self.key, self.breaks)
    }
}

/// Cuts `key` at the separators at `breaks`.
pub(crate) fn split_at<'k>(key: &'k str, breaks: &'k [usize]) -> impl Iterator<Item = &'k str> {
    let starts = std::iter::once(0).chain(breaks.iter().map(|&b| b + 1));
    let ends = breaks.iter().copied().chain(std::iter::once(key.len()));
    starts.zip(ends).map(move |(start, end)| &key[start..end])
}

/// The serde serializer of this format: it turns a param tree into its leaves, each with its key.
///
/// The `to_*` functions drive it; use it directly to visit the leaves of params without writing a
/// file (to list keys, count parameters, or write to a store of your own):
///
/// ```
/// # use safejax::{Params, Tensor, Serializer};
/// # use serde::Serialize;
/// #[derive(Serialize, Params)]
/// struct Dense { kernel: Tensor<f32>, bias: Tensor<f32> }
///
/// let dense = Dense { kernel: Tensor::new(vec![2, 1], vec![1.0, 2.0])?, bias: Tensor::new(vec![1], vec![0.5])? };
/// let mut keys = Vec::new();
/// let mut serializer = Serializer::new::<Dense>(|leaf| Ok(keys.push(leaf.key.to_owned())));
/// dense.serialize(&mut serializer)?;
/// assert_eq!(keys, ["kernel", "bias"]);
/// # Ok::<(), safejax::Error>(())
/// ```
pub struct Serializer<F> {
    schema: &'static Schema,
    sink: F,
    /// The one key buffer of the walk: each step appends to it, and is undone after its subtree.
    cursor: Cursor,
    /// One write is one binding table for named dimensions, as one load is.
    dims: RefCell<DimBindings>,
}

impl<F: FnMut(LeafRef<'_>) -> Result<()>> Serializer<F> {
    /// A serializer for params of type `T`, calling `sink` with each leaf.
    pub fn new<T: Params + ?Sized>(sink: F) -> Self {
        Serializer {
            schema: T::SCHEMA,
            sink,
            cursor: Cursor::root(),
            dims: RefCell::default(),
        }
    }

    fn root(&mut self) -> NodeSerializer<'_> {
        self.cursor.reset();
        NodeSerializer {
            sink: &mut self.sink,
            schema: self.schema,
            cursor: &mut self.cursor,
            shape: None,
            dims: &self.dims,
        }
    }
}

type Sink<'s> = dyn FnMut(LeafRef<'_>) -> Result<()> + 's;

/// Serializes one node of the tree: the cursor stands at the node, and whoever steps it there
/// steps it back when the node is done.
struct NodeSerializer<'s> {
    sink: &'s mut Sink<'s>,
    schema: &'static Schema,
    cursor: &'s mut Cursor,
    /// The shape the enclosing field declares for its leaves.
    shape: Option<&'static [Dim]>,
    dims: &'s RefCell<DimBindings>,
}

impl<'s> NodeSerializer<'s> {
    fn mismatch(&self, found: &str) -> Error {
        let expected = match self.schema {
            Schema::Leaf(_) => "a tensor or scalar",
            Schema::Struct(_) => "a struct",
            Schema::Option(_) => "an option",
            Schema::Seq(_) => "a list",
            Schema::Map(_) => "a map",
            Schema::Any => "a value",
        };
        Error::at(
            self.cursor.key(),
            format_args!("the value serializes as {found}, but its Params schema expects {expected}"),
        )
    }

    fn leaf_schema(&self, found: &str) -> Result<&'static LeafSchema> {
        match self.schema {
            Schema::Leaf(leaf) => Ok(leaf),
            _ => Err(self.mismatch(found)),
        }
    }

    fn emit(&mut self, dtype: Dtype, shape: &[usize], data: &[u8]) -> Result<()> {
        // The cursor's key is the leaf's but for objax, whose leaf key adds the variable type:
        // borrowed, not copied, in the common case (a copy per leaf per walk adds up).
        let objax_key = self.cursor.leaf_key_fallback().map(|_| self.cursor.leaf_key());
        let key = objax_key.as_deref().unwrap_or(self.cursor.key());
        if let Some(declared) = self.shape {
            self.dims.borrow_mut().check(key, declared, shape)?;
        }
        let breaks = self.cursor.breaks();
        (self.sink)(LeafRef {
            key,
            dtype,
            shape,
            data,
            breaks,
        })
    }

    /// A scalar leaf: encoded in the dtype the schema names (half floats arrive as their bits).
    fn scalar(mut self, value: Scalar, natural: Dtype) -> Result<()> {
        let leaf = self.leaf_schema("a scalar")?;
        let dtype = leaf.dtype.unwrap_or(natural);
        let mut buf = [0u8; 8];
        let len = value.encode(dtype, &mut buf).ok_or_else(|| {
            Error::at(
                self.cursor.leaf_key(),
                format_args!("a {natural} scalar does not fit the leaf's dtype {dtype}"),
            )
        })?;
        self.emit(dtype, &[], &buf[..len])
    }
}

/// A scalar as serde hands it over.
#[derive(Clone, Copy)]
enum Scalar {
    Bool(bool),
    Int(i128),
    Float(f64),
}

impl Scalar {
    /// Writes the value as `dtype` into `buf`, returning its length; `None` if it does not fit.
    fn encode(self, dtype: Dtype, buf: &mut [u8; 8]) -> Option<usize> {
        macro_rules! put {
            ($v:expr) => {{
                let bytes = $v.to_le_bytes();
                buf[..bytes.len()].copy_from_slice(&bytes);
                Some(bytes.len())
            }};
        }
        match (self, dtype) {
            (Scalar::Bool(b), Dtype::BOOL) => put!(u8::from(b)),
            (Scalar::Int(i), Dtype::U8) => put!(u8::try_from(i).ok()?),
            (Scalar::Int(i), Dtype::I8) => put!(i8::try_from(i).ok()?),
            (Scalar::Int(i), Dtype::U16) => put!(u16::try_from(i).ok()?),
            (Scalar::Int(i), Dtype::I16) => put!(i16::try_from(i).ok()?),
            (Scalar::Int(i), Dtype::U32) => put!(u32::try_from(i).ok()?),
            (Scalar::Int(i), Dtype::I32) => put!(i32::try_from(i).ok()?),
            (Scalar::Int(i), Dtype::U64) => put!(u64::try_from(i).ok()?),
            (Scalar::Int(i), Dtype::I64) => put!(i64::try_from(i).ok()?),
            // half's `f16` and `bf16` serialize as a newtype around their bits.
            (Scalar::Int(i), Dtype::F16 | Dtype::BF16) => put!(u16::try_from(i).ok()?),
            (Scalar::Float(f), Dtype::F16) => put!(crate::f16::from_f64(f)),
            (Scalar::Float(f), Dtype::BF16) => put!(crate::bf16::from_f64(f)),
            (Scalar::Float(f), Dtype::F32) => put!(f as f32),
            (Scalar::Float(f), Dtype::F64) => put!(f),
            _ => None,
        }
    }
}

/// The `serialize_*` methods of the plain scalars: each a 0-d leaf of its dtype.
macro_rules! scalars {
    ($($method:ident($ty:ty) => $variant:path, $dtype:ident;)*) => {$(
        // `v.into()` widens to the variant's type, which for bool and f64 is the type itself.
        #[allow(clippy::useless_conversion)]
        fn $method(self, v: $ty) -> Result<()> {
            self.scalar($variant(v.into()), Dtype::$dtype)
        }
    )*};
}

macro_rules! unsupported {
    ($($method:ident($($arg:ty),*) => $what:literal;)*) => {$(
        fn $method(self, $(_: $arg),*) -> Result<()> {
            Err(self.mismatch($what))
        }
    )*};
}

impl<'s> ser::Serializer for NodeSerializer<'s> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = ListSerializer<'s>;
    type SerializeTuple = ListSerializer<'s>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = MapSerializer<'s>;
    type SerializeStruct = StructSerializer<'s>;
    type SerializeStructVariant = Impossible<(), Error>;

    scalars! {
        serialize_bool(bool) => Scalar::Bool, BOOL;
        serialize_i8(i8) => Scalar::Int, I8;
        serialize_i16(i16) => Scalar::Int, I16;
        serialize_i32(i32) => Scalar::Int, I32;
        serialize_i64(i64) => Scalar::Int, I64;
        serialize_u8(u8) => Scalar::Int, U8;
        serialize_u16(u16) => Scalar::Int, U16;
        serialize_u32(u32) => Scalar::Int, U32;
        serialize_u64(u64) => Scalar::Int, U64;
        serialize_f32(f32) => Scalar::Float, F32;
        serialize_f64(f64) => Scalar::Float, F64;
    }

    unsupported! {
        serialize_char(char) => "a char";
        serialize_str(&str) => "a string";
        serialize_bytes(&[u8]) => "bytes outside a tensor";
        serialize_unit() => "a unit";
        serialize_unit_struct(&'static str) => "a unit struct";
        serialize_unit_variant(&'static str, u32, &'static str) => "an enum";
    }

    fn serialize_none(self) -> Result<()> {
        match self.schema {
            Schema::Option(_) => Ok(()),
            _ => Err(self.mismatch("`None`")),
        }
    }

    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<()> {
        match self.schema {
            Schema::Option(inner) => value.serialize(NodeSerializer {
                schema: inner.get(),
                ..self
            }),
            _ => Err(self.mismatch("`Some`")),
        }
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _name: &'static str, value: &T) -> Result<()> {
        // Newtypes (and half's floats, a newtype around their bits) are transparent.
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<()> {
        // A `Value` is a tensor or a dict, by its variant.
        let schema = match (self.schema, name, variant) {
            (Schema::Any, VALUE_NAME, VALUE_TENSOR) => &ANY_LEAF,
            (Schema::Any, VALUE_NAME, VALUE_DICT) => &ANY_DICT,
            _ => return Err(self.mismatch("an enum")),
        };
        value.serialize(NodeSerializer { schema, ..self })
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<ListSerializer<'s>> {
        match self.schema {
            Schema::Seq(seq) => {
                if let (Some(expected), Some(found)) = (seq.len, len) {
                    if expected != found {
                        return Err(Error::LengthMismatch {
                            key: self.cursor.key().to_owned(),
                            expected,
                            found,
                        });
                    }
                }
                self.cursor.step_list();
                Ok(ListSerializer {
                    mark: self.cursor.mark(),
                    cursor: self.cursor,
                    element: seq.element.get(),
                    index: 0,
                    sink: self.sink,
                    shape: self.shape,
                    dims: self.dims,
                })
            }
            _ => Err(self.mismatch("a list")),
        }
    }

    fn serialize_tuple(self, len: usize) -> Result<ListSerializer<'s>> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct> {
        Err(self.mismatch("a tuple struct"))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        Err(self.mismatch("an enum"))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<MapSerializer<'s>> {
        match self.schema {
            Schema::Map(map) => {
                let value = map.value.get();
                if let MapKey::Index = map.key {
                    self.cursor.step_list();
                }
                Ok(MapSerializer {
                    mark: self.cursor.mark(),
                    cursor: self.cursor,
                    value,
                    key_kind: map.key,
                    pending: None,
                    sink: self.sink,
                    shape: self.shape,
                    dims: self.dims,
                })
            }
            _ => Err(self.mismatch("a map")),
        }
    }

    fn serialize_struct(self, name: &'static str, _len: usize) -> Result<StructSerializer<'s>> {
        if name == TENSOR_MAGIC {
            let leaf = self.leaf_schema("a tensor")?;
            return Ok(StructSerializer(StructState::Tensor(TensorSerializer {
                node: self,
                leaf,
                dtype: None,
                shape: None,
                emitted: false,
            })));
        }
        // A plain ndarray field at a leaf: ndarray's own serde form (see `ndarray/serde_form.rs`).
        #[cfg(feature = "ndarray")]
        if let (crate::ndarray::SERDE_NAME, Schema::Leaf(leaf)) = (name, self.schema) {
            let fields = crate::ndarray::ArrayFields::new(leaf).map_err(|e| e.with_key(&self.cursor.leaf_key()))?;
            return Ok(StructSerializer(StructState::Array(self, fields)));
        }
        match self.schema {
            Schema::Struct(schema) => {
                self.cursor.step_struct(schema);
                Ok(StructSerializer(StructState::Params {
                    schema,
                    mark: self.cursor.mark(),
                    cursor: self.cursor,
                    next_field: 0,
                    sink: self.sink,
                    dims: self.dims,
                }))
            }
            _ => Err(self.mismatch(&format!("struct `{name}`"))),
        }
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant> {
        Err(self.mismatch("an enum"))
    }
}

/// Serializes `value` as a `schema` node at the step the cursor stands on (a list element or a
/// map entry), then steps the cursor back to its container's `mark`.
fn serialize_below<T: ?Sized + Serialize>(
    sink: &mut Sink<'_>,
    cursor: &mut Cursor,
    mark: Mark,
    (schema, shape, dims): (&'static Schema, Option<&'static [Dim]>, &RefCell<DimBindings>),
    value: &T,
) -> Result<()> {
    value.serialize(NodeSerializer {
        sink,
        schema,
        cursor: &mut *cursor,
        shape,
        dims,
    })?;
    cursor.back(mark);
    Ok(())
}

/// Serializes the elements of a list.
pub struct ListSerializer<'s> {
    sink: &'s mut Sink<'s>,
    cursor: &'s mut Cursor,
    /// The list's node, where each element steps back to.
    mark: Mark,
    element: &'static Schema,
    index: usize,
    shape: Option<&'static [Dim]>,
    dims: &'s RefCell<DimBindings>,
}

impl ser::SerializeSeq for ListSerializer<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        self.cursor.step_element(self.index);
        self.index += 1;
        let (element, shape) = (self.element, self.shape);
        serialize_below(self.sink, self.cursor, self.mark, (element, shape, self.dims), value)
    }

    fn end(self) -> Result<()> {
        Ok(())
    }
}

/// A tuple is written as the sequence it is: `impl SerializeTuple` by way of `SerializeSeq`.
macro_rules! tuple_as_seq {
    ($ty:ty) => {
        impl ser::SerializeTuple for $ty {
            type Ok = ();
            type Error = Error;

            fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
                ser::SerializeSeq::serialize_element(self, value)
            }

            fn end(self) -> Result<()> {
                ser::SerializeSeq::end(self)
            }
        }
    };
}
pub(crate) use tuple_as_seq;

tuple_as_seq!(ListSerializer<'_>);

/// Serializes the entries of a map: names, or list indices.
pub struct MapSerializer<'s> {
    sink: &'s mut Sink<'s>,
    cursor: &'s mut Cursor,
    /// The map's node, where each entry steps back to.
    mark: Mark,
    value: &'static Schema,
    key_kind: MapKey,
    pending: Option<String>,
    shape: Option<&'static [Dim]>,
    dims: &'s RefCell<DimBindings>,
}

impl MapSerializer<'_> {
    /// A map key must read back as itself: not empty, and, unless the value is one leaf (which
    /// takes the whole rest of a key), free of the separators at which a reader cuts entry names.
    fn check_name(&self, name: &str) -> Result<()> {
        let reason = if name.is_empty() && self.cursor.key().is_empty() {
            "keys cannot be empty"
        } else if name.is_empty() {
            "map keys cannot be empty"
        } else if !self.value.is_leaf() && self.cursor.entry_name_end(name) < name.len() {
            "a map key holds a separator of its key style, so the file would not read back"
        } else {
            return Ok(());
        };
        Err(Error::InvalidKey {
            key: self.cursor.entry(name, self.value.is_leafy()).key().to_owned(),
            reason,
        })
    }
}

impl ser::SerializeMap for MapSerializer<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<()> {
        self.pending = Some(key.serialize(MapKeySerializer)?);
        Ok(())
    }

    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        let name = self
            .pending
            .take()
            .ok_or_else(|| Error::msg("map value without a key"))?;
        match self.key_kind {
            MapKey::Name => {
                self.check_name(&name)?;
                self.cursor.step_entry(&name, self.value.is_leafy());
            }
            MapKey::Index => {
                let index = name
                    .parse()
                    .map_err(|_| Error::at(self.cursor.key(), format_args!("map key `{name}` is not a list index")))?;
                self.cursor.step_element(index);
            }
        }
        let (schema, shape) = (self.value, self.shape);
        serialize_below(self.sink, self.cursor, self.mark, (schema, shape, self.dims), value)
    }

    fn end(self) -> Result<()> {
        Ok(())
    }
}

/// Serializes a struct: a param struct, or a tensor leaf under the private name.
pub struct StructSerializer<'s>(StructState<'s>);

enum StructState<'s> {
    Params {
        sink: &'s mut Sink<'s>,
        schema: &'static StructSchema,
        cursor: &'s mut Cursor,
        /// The struct's node, where each field steps back to.
        mark: Mark,
        next_field: usize,
        dims: &'s RefCell<DimBindings>,
    },
    Tensor(TensorSerializer<'s>),
    #[cfg(feature = "ndarray")]
    Array(NodeSerializer<'s>, crate::ndarray::ArrayFields),
}

impl ser::SerializeStruct for StructSerializer<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: ?Sized + Serialize>(&mut self, name: &'static str, value: &T) -> Result<()> {
        match &mut self.0 {
            StructState::Params {
                sink,
                schema,
                cursor,
                mark,
                next_field,
                dims,
            } => {
                // Fields come in declaration order, some perhaps skipped: look ahead from the last.
                let fields = schema.fields;
                let index = (*next_field..fields.len())
                    .chain(0..*next_field)
                    .find(|&i| fields[i].name == name)
                    .ok_or_else(|| {
                        Error::at(
                            cursor.key(),
                            format_args!("field `{name}` of `{}` is not in its Params schema", schema.name),
                        )
                    })?;
                *next_field = index + 1;
                let field = &fields[index];
                let child = field.schema.get();
                cursor.step_field(field, child.is_leafy());
                value.serialize(NodeSerializer {
                    sink: &mut **sink,
                    schema: child,
                    cursor,
                    shape: field.shape,
                    dims,
                })?;
                cursor.back(*mark);
                Ok(())
            }
            StructState::Tensor(tensor) => tensor.field(name, value),
            #[cfg(feature = "ndarray")]
            StructState::Array(node, fields) => fields
                .field(name, value)
                .map_err(|e| e.with_key(&node.cursor.leaf_key())),
        }
    }

    fn end(self) -> Result<()> {
        match self.0 {
            StructState::Params { .. } => Ok(()),
            #[cfg(feature = "ndarray")]
            StructState::Array(mut node, fields) => {
                let (dtype, shape, data) = fields.finish().map_err(|e| e.with_key(&node.cursor.leaf_key()))?;
                node.emit(dtype, &shape, &data)
            }
            StructState::Tensor(tensor) if tensor.emitted => Ok(()),
            StructState::Tensor(tensor) => Err(Error::at(tensor.node.cursor.leaf_key(), "a tensor without data")),
        }
    }
}

/// Collects a tensor's `dtype` and `shape`, then emits it when its `data` arrives.
struct TensorSerializer<'s> {
    node: NodeSerializer<'s>,
    leaf: &'static LeafSchema,
    dtype: Option<Dtype>,
    shape: Option<Dims>,
    emitted: bool,
}

impl TensorSerializer<'_> {
    fn emit(&mut self, data: &[u8]) -> Result<()> {
        let (Some(dtype), Some(shape)) = (self.dtype, self.shape.as_ref().map(Dims::as_slice)) else {
            return Err(Error::at(
                self.node.cursor.leaf_key(),
                "tensor data before its dtype and shape",
            ));
        };
        let expected = element_count(shape).and_then(|n| dtype.byte_len(n));
        if expected != Some(data.len()) {
            return Err(Error::at(
                self.node.cursor.leaf_key(),
                format_args!("{dtype} shape {shape:?} does not match {} bytes of data", data.len()),
            ));
        }
        if let Some(rank) = self.leaf.rank {
            if rank != shape.len() {
                return Err(Error::ShapeMismatch {
                    key: self.node.cursor.leaf_key(),
                    expected: crate::error::dimensions(rank),
                    found: shape.to_vec(),
                });
            }
        }
        self.node.emit(dtype, shape, data)?;
        self.emitted = true;
        Ok(())
    }

    fn field<T: ?Sized + Serialize>(&mut self, name: &str, value: &T) -> Result<()> {
        match name {
            FIELD_DTYPE => {
                let dtype = value
                    .serialize(DtypeCapture(self.leaf.dtype))?
                    .map_err(|e| Error::at(self.node.cursor.leaf_key(), e))?;
                if let Some(expected) = self.leaf.dtype {
                    if expected != dtype {
                        return Err(Error::DtypeMismatch {
                            key: self.node.cursor.leaf_key(),
                            expected,
                            found: dtype,
                        });
                    }
                }
                self.dtype = Some(dtype);
            }
            FIELD_SHAPE => self.shape = Some(value.serialize(ShapeCapture::default())?),
            FIELD_DATA => value.serialize(DataEmitter { tensor: self })?,
            other => {
                return Err(Error::at(
                    self.node.cursor.leaf_key(),
                    format_args!("unknown tensor field `{other}`"),
                ))
            }
        }
        Ok(())
    }
}

/// Captures a map key: a string, or an integer (list index).
struct MapKeySerializer;

/// Hands the serializer methods of the integer types to `$capture`.
macro_rules! integers {
    ($capture:ident) => {
        $capture!(
            serialize_u8(u8),
            serialize_u16(u16),
            serialize_u32(u32),
            serialize_u64(u64),
            serialize_i8(i8),
            serialize_i16(i16),
            serialize_i32(i32),
            serialize_i64(i64)
        );
    };
}

macro_rules! capture_int {
    ($($method:ident($ty:ty)),*) => {$(
        fn $method(self, v: $ty) -> Result<String> {
            Ok(v.to_string())
        }
    )*};
}

/// Serializer methods that fail with `concat!($prefix, "expected ", $what)`: the `reject!`
/// form lists plain methods; `reject_nested!` gives every compound and wrapper method but
/// sequences and tuples (whose serializers differ), newtype structs passing through. Shared with
/// `ndarray::serde_form`, whose messages carry a prefix.
macro_rules! reject {
    ($prefix:literal, $what:literal; $($method:ident($($arg:ty),*)),* $(,)?) => {$(
        fn $method(self, $(_: $arg),*) -> Result<Self::Ok> {
            Err(Error::msg(concat!($prefix, "expected ", $what)))
        }
    )*};
}
pub(crate) use reject;

macro_rules! reject_nested {
    ($prefix:literal, $what:literal) => {
        type SerializeTupleStruct = Impossible<Self::Ok, Error>;
        type SerializeTupleVariant = Impossible<Self::Ok, Error>;
        type SerializeMap = Impossible<Self::Ok, Error>;
        type SerializeStruct = Impossible<Self::Ok, Error>;
        type SerializeStructVariant = Impossible<Self::Ok, Error>;

        fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<Self::Ok> {
            Err(Error::msg(concat!($prefix, "expected ", $what)))
        }
        fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, value: &T) -> Result<Self::Ok> {
            value.serialize(self)
        }
        fn serialize_newtype_variant<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<Self::Ok> {
            Err(Error::msg(concat!($prefix, "expected ", $what)))
        }
        fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct> {
            Err(Error::msg(concat!($prefix, "expected ", $what)))
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant> {
            Err(Error::msg(concat!($prefix, "expected ", $what)))
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap> {
            Err(Error::msg(concat!($prefix, "expected ", $what)))
        }
        fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct> {
            Err(Error::msg(concat!($prefix, "expected ", $what)))
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant> {
            Err(Error::msg(concat!($prefix, "expected ", $what)))
        }
    };
}
pub(crate) use reject_nested;

/// A serializer that takes no sequence, tuple or other compound.
macro_rules! reject_compound {
    ($what:literal) => {
        type SerializeSeq = Impossible<Self::Ok, Error>;
        type SerializeTuple = Impossible<Self::Ok, Error>;
        reject_nested!("", $what);
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq> {
            Err(Error::msg(concat!("expected ", $what)))
        }
        fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple> {
            Err(Error::msg(concat!("expected ", $what)))
        }
    };
}

impl ser::Serializer for MapKeySerializer {
    type Ok = String;
    type Error = Error;
    reject_compound!("a string or integer map key");

    fn serialize_str(self, v: &str) -> Result<String> {
        Ok(v.to_owned())
    }
    integers!(capture_int);
    reject!("", "a string or integer map key"; serialize_bool(bool), serialize_f32(f32), serialize_f64(f64), serialize_char(char), serialize_bytes(&[u8]), serialize_none(), serialize_unit(), serialize_unit_struct(&'static str), serialize_unit_variant(&'static str, u32, &'static str));
}

/// Reads the tensor's `dtype` name. A typed leaf's schema names its dtype, which the name then
/// almost always is: one comparison rather than a search of the dtype table, per leaf per walk.
struct DtypeCapture(Option<Dtype>);

impl ser::Serializer for DtypeCapture {
    type Ok = std::result::Result<Dtype, crate::dtype::UnknownDtype>;
    type Error = Error;
    reject_compound!("a dtype name");

    fn serialize_str(self, v: &str) -> Result<Self::Ok> {
        Ok(match self.0 {
            Some(expected) if expected.name() == v => Ok(expected),
            _ => v.parse(),
        })
    }
    reject!("", "a dtype name"; serialize_u8(u8), serialize_u16(u16), serialize_u32(u32), serialize_u64(u64), serialize_i8(i8), serialize_i16(i16), serialize_i32(i32), serialize_i64(i64), serialize_bool(bool), serialize_f32(f32), serialize_f64(f64), serialize_char(char), serialize_bytes(&[u8]), serialize_none(), serialize_unit(), serialize_unit_struct(&'static str), serialize_unit_variant(&'static str, u32, &'static str));
}

/// Receives the tensor's `data` and emits the leaf while serde lends the bytes.
struct DataEmitter<'t, 's> {
    tensor: &'t mut TensorSerializer<'s>,
}

impl ser::Serializer for DataEmitter<'_, '_> {
    type Ok = ();
    type Error = Error;
    reject_compound!("tensor bytes");

    fn serialize_bytes(self, data: &[u8]) -> Result<()> {
        self.tensor.emit(data)
    }
    reject!("", "tensor bytes"; serialize_str(&str), serialize_u8(u8), serialize_u16(u16), serialize_u32(u32), serialize_u64(u64), serialize_i8(i8), serialize_i16(i16), serialize_i32(i32), serialize_i64(i64), serialize_bool(bool), serialize_f32(f32), serialize_f64(f64), serialize_char(char), serialize_none(), serialize_unit(), serialize_unit_struct(&'static str), serialize_unit_variant(&'static str, u32, &'static str));
}

/// A tensor's shape: inline up to `INLINE_RANK` dimensions, as almost every tensor has (a
/// convolution's kernel has four), so that a leaf (as serde hands it over, or planned) costs no
/// allocation; on the heap beyond. Kept small: the plan of a write holds one per leaf, and its
/// pages are faulted in fresh.
#[derive(Debug, Clone)]
pub(crate) enum Dims {
    Inline { len: u8, dims: [usize; INLINE_RANK] },
    Heap(Vec<usize>),
}

const INLINE_RANK: usize = 4;

impl Default for Dims {
    fn default() -> Dims {
        Dims::Inline {
            len: 0,
            dims: [0; INLINE_RANK],
        }
    }
}

impl Dims {
    fn push(&mut self, dim: usize) {
        match self {
            Dims::Inline { len, dims } if usize::from(*len) < INLINE_RANK => {
                dims[usize::from(*len)] = dim;
                *len += 1;
            }
            Dims::Inline { dims, .. } => {
                let mut heap = dims.to_vec();
                heap.push(dim);
                *self = Dims::Heap(heap);
            }
            Dims::Heap(heap) => heap.push(dim),
        }
    }

    fn as_slice(&self) -> &[usize] {
        match self {
            Dims::Inline { len, dims } => &dims[..usize::from(*len)],
            Dims::Heap(heap) => heap,
        }
    }
}

impl std::ops::Deref for Dims {
    type Target = [usize];

    fn deref(&self) -> &[usize] {
        self.as_slice()
    }
}

impl From<&[usize]> for Dims {
    fn from(shape: &[usize]) -> Dims {
        if shape.len() > INLINE_RANK {
            return Dims::Heap(shape.to_vec());
        }
        let mut dims = [0; INLINE_RANK];
        dims[..shape.len()].copy_from_slice(shape);
        Dims::Inline {
            // At most `INLINE_RANK`.
            len: shape.len() as u8,
            dims,
        }
    }
}

/// Captures the tensor's `shape`.
#[derive(Default)]
struct ShapeCapture {
    dims: Dims,
}

impl ser::Serializer for ShapeCapture {
    type Ok = Dims;
    type Error = Error;
    type SerializeSeq = Self;
    type SerializeTuple = Impossible<Dims, Error>;
    type SerializeTupleStruct = Impossible<Dims, Error>;
    type SerializeTupleVariant = Impossible<Dims, Error>;
    type SerializeMap = Impossible<Dims, Error>;
    type SerializeStruct = Impossible<Dims, Error>;
    type SerializeStructVariant = Impossible<Dims, Error>;

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self> {
        Ok(ShapeCapture::default())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<Dims> {
        Err(Error::msg("expected a shape"))
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, value: &T) -> Result<Dims> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Dims> {
        Err(Error::msg("expected a shape"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple> {
        Err(Error::msg("expected a shape"))
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct> {
        Err(Error::msg("expected a shape"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        Err(Error::msg("expected a shape"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap> {
        Err(Error::msg("expected a shape"))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct> {
        Err(Error::msg("expected a shape"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant> {
        Err(Error::msg("expected a shape"))
    }
    reject!("", "a shape"; serialize_str(&str), serialize_u8(u8), serialize_u16(u16), serialize_u32(u32), serialize_u64(u64), serialize_i8(i8), serialize_i16(i16), serialize_i32(i32), serialize_i64(i64), serialize_bool(bool), serialize_f32(f32), serialize_f64(f64), serialize_char(char), serialize_bytes(&[u8]), serialize_none(), serialize_unit(), serialize_unit_struct(&'static str), serialize_unit_variant(&'static str, u32, &'static str));
}

impl ser::SerializeSeq for ShapeCapture {
    type Ok = Dims;
    type Error = Error;

    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        self.dims.push(value.serialize(DimCapture)?);
        Ok(())
    }

    fn end(self) -> Result<Dims> {
        Ok(self.dims)
    }
}

/// Reads one dimension of a shape: an integer that fits a `usize`.
struct DimCapture;

macro_rules! capture_dim {
    ($($method:ident($ty:ty)),*) => {$(
        fn $method(self, v: $ty) -> Result<usize> {
            usize::try_from(v).map_err(|_| Error::msg(format_args!("shape dimension `{v}` is not a size")))
        }
    )*};
}

impl ser::Serializer for DimCapture {
    type Ok = usize;
    type Error = Error;
    reject_compound!("a shape dimension");

    integers!(capture_dim);
    reject!("", "a shape dimension"; serialize_str(&str), serialize_bool(bool), serialize_f32(f32), serialize_f64(f64), serialize_char(char), serialize_bytes(&[u8]), serialize_none(), serialize_unit(), serialize_unit_struct(&'static str), serialize_unit_variant(&'static str, u32, &'static str));
}

macro_rules! delegate {
    ($($method:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {$(
        fn $method(self, $($arg: $ty),*) -> Result<$ret> {
            self.root().$method($($arg),*)
        }
    )*};
}

impl<'a, F: FnMut(LeafRef<'_>) -> Result<()> + 'a> ser::Serializer for &'a mut Serializer<F> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = ListSerializer<'a>;
    type SerializeTuple = ListSerializer<'a>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = MapSerializer<'a>;
    type SerializeStruct = StructSerializer<'a>;
    type SerializeStructVariant = Impossible<(), Error>;

    delegate! {
        serialize_bool(v: bool) -> ();
        serialize_i8(v: i8) -> ();
        serialize_i16(v: i16) -> ();
        serialize_i32(v: i32) -> ();
        serialize_i64(v: i64) -> ();
        serialize_u8(v: u8) -> ();
        serialize_u16(v: u16) -> ();
        serialize_u32(v: u32) -> ();
        serialize_u64(v: u64) -> ();
        serialize_f32(v: f32) -> ();
        serialize_f64(v: f64) -> ();
        serialize_char(v: char) -> ();
        serialize_str(v: &str) -> ();
        serialize_bytes(v: &[u8]) -> ();
        serialize_none() -> ();
        serialize_unit() -> ();
        serialize_unit_struct(name: &'static str) -> ();
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str) -> ();
        serialize_seq(len: Option<usize>) -> ListSerializer<'a>;
        serialize_tuple(len: usize) -> ListSerializer<'a>;
        serialize_tuple_struct(name: &'static str, len: usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(name: &'static str, index: u32, variant: &'static str, len: usize) -> Self::SerializeTupleVariant;
        serialize_map(len: Option<usize>) -> MapSerializer<'a>;
        serialize_struct(name: &'static str, len: usize) -> StructSerializer<'a>;
        serialize_struct_variant(name: &'static str, index: u32, variant: &'static str, len: usize) -> Self::SerializeStructVariant;
    }

    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<()> {
        self.root().serialize_some(value)
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, name: &'static str, value: &T) -> Result<()> {
        self.root().serialize_newtype_struct(name, value)
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<()> {
        self.root().serialize_newtype_variant(name, index, variant, value)
    }
}
