//! The static description of a param type that `#[derive(Params)]` emits.
//!
//! serde tells a format only a struct's name and its fields' names. The key of a leaf also depends on
//! each struct's style, objax class and field marks, so the derive describes the type once, as a
//! constant, and the serializer and the deserializer walk that description in step with serde.
//! The same description lists the keys a type expects without any file at hand.
//!
//! These types are built by generated code; their fields are public so that the derive can write
//! them as constants, but new fields may be added in minor releases.

use crate::Dtype;

/// A function returning a type's schema. Children are referred to through functions so that a
/// recursive type (a `Box<Self>` field) does not make its constant infinite.
pub type SchemaFn = fn() -> &'static Schema;

/// The shape of a param type.
#[derive(Debug)]
pub enum Schema {
    /// A tensor or a scalar.
    Leaf(LeafSchema),
    /// A struct with `#[derive(Params)]`.
    Struct(StructSchema),
    /// `Option<T>`: the whole subtree present, or absent.
    Option(SchemaFn),
    /// `Vec<T>` (`len: None`) or `[T; N]` (`len: Some(N)`).
    Seq(SeqSchema),
    /// `BTreeMap<K, T>` or `HashMap<K, T>`.
    Map(MapSchema),
    /// [`Value`](crate::Value): a leaf where the file has one, else a dict of `Any`.
    Any,
}

/// A leaf: one safetensors entry.
#[derive(Debug)]
pub struct LeafSchema {
    /// The element type the Rust leaf holds; `None` for a leaf typed at run time.
    pub dtype: Option<Dtype>,
    /// The number of dimensions the leaf requires; `Some(0)` for scalars.
    pub rank: Option<usize>,
}

/// A struct of params.
#[derive(Debug)]
pub struct StructSchema {
    /// The serde name of the struct (after `#[serde(rename)]`).
    pub name: &'static str,
    /// `#[safejax(style = "...")]`; `None` inherits the style of the enclosing struct.
    pub style: Option<Style>,
    /// `#[safejax(class = "...")]`: the objax class shown in keys; `None` uses `name`.
    pub class: Option<&'static str>,
    /// The fields serde sees, in declaration order.
    pub fields: &'static [FieldSchema],
}

/// One field of a struct.
#[derive(Debug)]
pub struct FieldSchema {
    /// The serde name of the field.
    pub name: &'static str,
    /// The field's type.
    pub schema: SchemaFn,
    /// `#[serde(default)]`: the field may be absent from a file.
    pub optional: bool,
    /// `#[safejax(join = "/")]`: how a haiku submodule joins its parent.
    pub join: Option<Join>,
    /// `#[safejax(var = "...")]`: the objax variable type of a leaf.
    pub var: Option<ObjaxVar>,
    /// `#[safejax(class = "...")]` on a field: the objax list class (`Sequential` by default).
    pub class: Option<&'static str>,
}

/// A sequence of params.
#[derive(Debug)]
pub struct SeqSchema {
    /// The element type.
    pub element: SchemaFn,
    /// `Some(N)` for a fixed-size array.
    pub len: Option<usize>,
}

/// A map of params.
#[derive(Debug)]
pub struct MapSchema {
    /// The value type.
    pub value: SchemaFn,
    /// How keys read: names, or list indices (a list with gaps).
    pub key: MapKey,
}

/// The key type of a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapKey {
    /// `String` keys: names.
    Name,
    /// Integer keys: list indices, so a map models a list with gaps.
    Index,
}

/// How keys join, per struct: see the crate's key-style documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Style {
    /// flax linen: `params.Dense_0.kernel`, list elements `layers_0`.
    Flax,
    /// flax NNX: `layers.0.kernel`.
    Nnx,
    /// haiku: `mlp/~/linear_0.w`.
    Haiku,
    /// objax: `(MLP).l1(Linear).w::TrainVar`.
    Objax,
}

impl Style {
    /// The name used in `#[safejax(style = "...")]`.
    pub const fn name(self) -> &'static str {
        match self {
            Style::Flax => "flax",
            Style::Nnx => "nnx",
            Style::Haiku => "haiku",
            Style::Objax => "objax",
        }
    }
}

/// How a haiku submodule joins its parent module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// `/~/`: a submodule made in the parent's `__init__` (haiku's default).
    Tilde,
    /// `/`: a module made inside the parent's `__call__`.
    Slash,
}

impl Join {
    /// The separator in keys.
    pub const fn separator(self) -> &'static str {
        match self {
            Join::Tilde => "/~/",
            Join::Slash => "/",
        }
    }
}

/// The objax variable type, written after `::` in keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjaxVar {
    /// `objax.TrainVar`, the default.
    TrainVar,
    /// `objax.StateVar` (batch norm statistics).
    StateVar,
    /// `objax.RandomState` (a random generator's key).
    RandomState,
}

impl ObjaxVar {
    /// The class name written after `::`.
    pub const fn name(self) -> &'static str {
        match self {
            ObjaxVar::TrainVar => "TrainVar",
            ObjaxVar::StateVar => "StateVar",
            ObjaxVar::RandomState => "RandomState",
        }
    }
}

impl Schema {
    /// Whether this is one leaf (perhaps optional): the whole rest of a key names it.
    pub fn is_leaf(&self) -> bool {
        match self {
            Schema::Leaf(_) => true,
            Schema::Option(inner) => inner().is_leaf(),
            Schema::Struct(_) | Schema::Seq(_) | Schema::Map(_) | Schema::Any => false,
        }
    }

    /// Whether the subtree holds leaves directly, with no struct on the way (a tensor, an
    /// `Option<Tensor>`, a `Vec<f32>`...). Key styles join leaves and modules differently.
    pub fn is_leafy(&self) -> bool {
        match self {
            // A dict joins its names with `.`, as leaves join, in every style.
            Schema::Leaf(_) | Schema::Any => true,
            Schema::Struct(_) => false,
            Schema::Option(inner) => inner().is_leafy(),
            Schema::Seq(seq) => (seq.element)().is_leafy(),
            Schema::Map(map) => (map.value)().is_leafy(),
        }
    }
}
