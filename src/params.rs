//! The `Params` trait: the types that can stand in a param tree, and their schemas.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use crate::schema::{MapKey, MapSchema, Schema, SchemaRef, SeqSchema};

/// A type that can stand in a param tree: a struct with `#[derive(Params)]`, a leaf (a tensor or a
/// scalar), or a container of params (`Vec`, `Option`, `Box`, arrays, maps keyed by `String` or by
/// list index).
///
/// Implement it with `#[derive(Params)]`; the derive describes the struct's fields, names, style and
/// marks in a schema (doc-hidden: its form may change in any release), which the serializer and
/// the deserializer follow.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a safejax param type",
    label = "`{Self}` is not a param type",
    note = "param fields are tensors (`Tensor<T>`, `TensorView<'a, T>`), scalars (`f32`, `i32`, `bf16`, ...), \
            structs with `#[derive(Params)]`, or `Vec`, `Option`, `Box`, arrays and maps of those"
)]
pub trait Params {
    /// The description of this type that keys are built from.
    #[doc(hidden)]
    const SCHEMA: &'static Schema;

    /// Whether this type is a leaf or holds leaves without a struct between (for compile-time
    /// checks of field attributes in the derive).
    #[doc(hidden)]
    const IS_LEAFY: bool = false;

    /// Whether this type is a list (`Vec`, array, index-keyed map), possibly under `Option`/`Box`.
    #[doc(hidden)]
    const IS_LIST: bool = false;

    /// `SCHEMA` as a function, the form that schemas use to refer to children.
    #[doc(hidden)]
    fn schema() -> &'static Schema {
        Self::SCHEMA
    }

    /// Whether the value takes the `__metadata__` of the file it is read from (only
    /// [`WithMetadata`](crate::WithMetadata)): the map is parsed from the header only then.
    #[doc(hidden)]
    const KEEPS_FILE_METADATA: bool = false;

    /// The `__metadata__` this value carries to the file it is written to ([`WithMetadata`](crate::WithMetadata)).
    #[doc(hidden)]
    fn file_metadata(&self) -> Option<&BTreeMap<String, String>> {
        None
    }

    /// Takes the `__metadata__` of the file this value was read from ([`WithMetadata`](crate::WithMetadata)).
    #[doc(hidden)]
    fn set_file_metadata(&mut self, _metadata: &BTreeMap<String, String>) {}
}

impl<T: Params + ?Sized> Params for Box<T> {
    const SCHEMA: &'static Schema = T::SCHEMA;
    const IS_LEAFY: bool = T::IS_LEAFY;
    const IS_LIST: bool = T::IS_LIST;
}

impl<T: Params> Params for Option<T> {
    const SCHEMA: &'static Schema = &Schema::Option(SchemaRef::new(T::schema));
    const IS_LEAFY: bool = T::IS_LEAFY;
    const IS_LIST: bool = T::IS_LIST;
}

impl<T: Params> Params for Vec<T> {
    const SCHEMA: &'static Schema = &Schema::Seq(SeqSchema {
        element: SchemaRef::new(T::schema),
        len: None,
    });
    const IS_LEAFY: bool = T::IS_LEAFY;
    const IS_LIST: bool = true;
}

impl<T: Params, const N: usize> Params for [T; N] {
    const SCHEMA: &'static Schema = &Schema::Seq(SeqSchema {
        element: SchemaRef::new(T::schema),
        len: Some(N),
    });
    const IS_LEAFY: bool = T::IS_LEAFY;
    const IS_LIST: bool = true;
}

/// The element type of a `Vec`, for `#[safejax(len = N)]`: the derive describes such a field as
/// `[Element; N]`, whose schema already holds the length that loads and writes check.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`len` declares the length of a `Vec`, but the field's type `{Self}` is not a `Vec`",
    label = "not a `Vec`",
    note = "an array `[T; N]` has its length already; `len` goes on a `Vec<T>` field itself, not on one \
            under `Option` or `Box`"
)]
pub trait VecElement {
    /// `T` of `Vec<T>`.
    type Element: Params;
}

impl<T: Params> VecElement for Vec<T> {
    type Element = T;
}

/// A map key type: `String` keys are names, integer keys are list indices (a list with gaps).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot key a map of params",
    note = "map keys are `String` (names) or `usize`/`u32`/`u64` (list indices)"
)]
pub trait ParamsMapKey {
    /// How the key reads in a safetensors key.
    const KIND: MapKey;
}

impl ParamsMapKey for String {
    const KIND: MapKey = MapKey::Name;
}
impl ParamsMapKey for usize {
    const KIND: MapKey = MapKey::Index;
}
impl ParamsMapKey for u32 {
    const KIND: MapKey = MapKey::Index;
}
impl ParamsMapKey for u64 {
    const KIND: MapKey = MapKey::Index;
}

impl<K: ParamsMapKey, T: Params> Params for BTreeMap<K, T> {
    const SCHEMA: &'static Schema = &Schema::Map(MapSchema {
        value: SchemaRef::new(T::schema),
        key: K::KIND,
    });
    const IS_LEAFY: bool = T::IS_LEAFY;
    const IS_LIST: bool = matches!(K::KIND, MapKey::Index);
}

impl<K: ParamsMapKey, T: Params, S: BuildHasher> Params for HashMap<K, T, S> {
    const SCHEMA: &'static Schema = &Schema::Map(MapSchema {
        value: SchemaRef::new(T::schema),
        key: K::KIND,
    });
    const IS_LEAFY: bool = T::IS_LEAFY;
    const IS_LIST: bool = matches!(K::KIND, MapKey::Index);
}
