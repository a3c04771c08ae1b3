//! The static description of a param type that `#[derive(Params)]` emits.
//!
//! serde tells a format only a struct's name and its fields' names. The key of a leaf also depends on
//! each struct's style, objax class and field marks, so the derive describes the type once, as a
//! constant, and the serializer and the deserializer walk that description in step with serde.
//! The same description lists the keys a type expects without any file at hand.
//!
//! These types are built by generated code, which reaches them through the doc-hidden
//! `safejax::__private`: they are not part of the documented API and may change in any release.

use crate::Dtype;

/// A child's schema. The derive refers to children through functions, so that a recursive type (a
/// `Box<Self>` field) does not make its constant infinite; a schema built at run time (the CLI
/// checks the structs it generates with one) refers to them directly.
#[derive(Debug, Clone, Copy)]
pub struct SchemaRef(SchemaRefInner);

#[derive(Debug, Clone, Copy)]
enum SchemaRefInner {
    Fn(fn() -> &'static Schema),
    Static(&'static Schema),
}

impl SchemaRef {
    /// The schema that `schema` returns (`<T as Params>::schema`).
    pub const fn new(schema: fn() -> &'static Schema) -> Self {
        SchemaRef(SchemaRefInner::Fn(schema))
    }

    /// A schema at hand.
    pub const fn from_static(schema: &'static Schema) -> Self {
        SchemaRef(SchemaRefInner::Static(schema))
    }

    /// The schema referred to.
    pub fn get(self) -> &'static Schema {
        match self.0 {
            SchemaRefInner::Fn(f) => f(),
            SchemaRefInner::Static(schema) => schema,
        }
    }
}

/// The shape of a param type.
#[derive(Debug)]
pub enum Schema {
    /// A tensor or a scalar.
    Leaf(LeafSchema),
    /// A struct with `#[derive(Params)]`.
    Struct(StructSchema),
    /// `Option<T>`: the whole subtree present, or absent.
    Option(SchemaRef),
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
    pub schema: SchemaRef,
    /// `#[serde(default)]`: the field may be absent from a file.
    pub optional: bool,
    /// `#[safejax(join = "/")]`: how a haiku submodule joins its parent.
    pub join: Option<Join>,
    /// `#[safejax(var = "...")]`: the objax variable type of a leaf.
    pub var: Option<ObjaxVar>,
    /// `#[safejax(class = "...")]` on a field: the objax list class (`Sequential` by default).
    pub class: Option<&'static str>,
    /// `#[safejax(shape = [...])]`: the shape of every leaf under the field.
    pub shape: Option<&'static [Dim]>,
}

/// One dimension of a shape declared with `#[safejax(shape = [...])]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    /// A size: `192`.
    Fixed(usize),
    /// A named size: `d_model`, the same wherever it appears in one load or write.
    Named(&'static str),
    /// `_`: any size.
    Any,
}

/// A sequence of params.
#[derive(Debug)]
pub struct SeqSchema {
    /// The element type.
    pub element: SchemaRef,
    /// `Some(N)` for a fixed-size array.
    pub len: Option<usize>,
}

/// A map of params.
#[derive(Debug)]
pub struct MapSchema {
    /// The value type.
    pub value: SchemaRef,
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

/// An enum whose variants are named in attributes and keys: the variants with their names, and
/// the look-ups both ways (`const`, for the derive's constants), written once.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $ty:ident ($what:literal) {
            $($(#[$variant_meta:meta])* $variant:ident = $name:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $ty {
            $($(#[$variant_meta])* $variant,)*
        }

        impl $ty {
            /// Every variant, in the order of `NAMES`.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),*];

            /// The variants' names: the one table of them (the derive keeps only the names, to
            /// point at a typo).
            pub const NAMES: &'static [&'static str] = &[$($name),*];

            /// The variant's name.
            pub const fn name(self) -> &'static str {
                Self::NAMES[self as usize]
            }

            /// The variant called `name`, if any.
            pub const fn parse(name: &str) -> Option<Self> {
                match position(Self::NAMES, name) {
                    Some(i) => Some(Self::ALL[i]),
                    None => None,
                }
            }

            /// The variant called `name`, which the derive has checked is one.
            pub const fn from_name(name: &str) -> Self {
                match Self::parse(name) {
                    Some(value) => value,
                    None => panic!(concat!("not ", $what)),
                }
            }
        }
    };
}

named_enum! {
    /// How keys join, per struct: see the `keys` module's documentation. The names are those of
    /// `#[safejax(style = "...")]` and the CLI's `--style`.
    pub enum Style ("a safejax key style") {
        /// flax linen: `params.Dense_0.kernel`, list elements `layers_0`.
        Flax = "flax",
        /// flax NNX: `layers.0.kernel`.
        Nnx = "nnx",
        /// haiku: `mlp/~/linear_0.w`.
        Haiku = "haiku",
        /// objax: `(MLP).l1(Linear).w::TrainVar`.
        Objax = "objax",
    }
}

impl std::fmt::Display for Style {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where `name` stands in `names`, in a `const fn`.
const fn position(names: &[&str], name: &str) -> Option<usize> {
    let mut i = 0;
    while i < names.len() {
        if str_eq(names[i], name) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// `a == b`, in a `const fn`.
const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
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

    /// The join written `separator` in `#[safejax(join = "...")]`, which the derive has checked is
    /// one.
    pub const fn from_separator(separator: &str) -> Join {
        if str_eq(separator, Join::Tilde.separator()) {
            Join::Tilde
        } else if str_eq(separator, Join::Slash.separator()) {
            Join::Slash
        } else {
            panic!("not a haiku join")
        }
    }
}

named_enum! {
    /// The objax variable type, written after `::` in keys under its name.
    pub enum ObjaxVar ("an objax variable type") {
        /// `objax.TrainVar`, the default.
        TrainVar = "TrainVar",
        /// `objax.StateVar` (batch norm statistics).
        StateVar = "StateVar",
        /// `objax.RandomState` (a random generator's key).
        RandomState = "RandomState",
    }
}

impl Schema {
    /// Whether this is one leaf (perhaps optional): the whole rest of a key names it.
    pub fn is_leaf(&self) -> bool {
        match self {
            Schema::Leaf(_) => true,
            Schema::Option(inner) => inner.get().is_leaf(),
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
            Schema::Option(inner) => inner.get().is_leafy(),
            Schema::Seq(seq) => seq.element.get().is_leafy(),
            Schema::Map(map) => map.value.get().is_leafy(),
        }
    }
}
