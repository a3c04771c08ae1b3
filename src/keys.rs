//! The key grammar: how a path through a param tree becomes a safetensors key, per style, and
//! how keys read back into a tree.
//!
//! One [`Cursor`] stands at each node of the tree while it is serialized or resolved against a file;
//! each step down (into a struct, a field, a list element, a map entry) makes the child's cursor. The
//! serializer and the resolver take the same steps, so writing and reading agree on every key by
//! construction. [`parse`] and [`tree`] go the other way, from a file's keys to the tree they
//! describe (for the CLI's `inspect` and `codegen`); a property test (`proptests`) checks that the
//! two directions agree for every style.
//!
//! # The rules
//!
//! A param tree is structs (modules), containers (`Vec`, `Option`, maps, arrays) and leaves (tensors
//! and scalars). Every leaf becomes one key: the names on the path from the root, joined by the
//! rules of the style of the struct that owns each step. Names are serde names (`#[serde(rename)]`
//! applies).
//!
//! The style is set per struct with `#[safejax(style = "...")]`. A struct without it takes the
//! style of the struct that holds it; the root's default is `flax`. So one attribute on the root
//! usually suffices, and a struct marked with another style switches style for its own subtree.
//!
//! | style | module to leaf | module to submodule | element `i` of a `Vec` field `f` | root |
//! |---|---|---|---|---|
//! | flax (linen) | `conv.kernel` | `params.Dense_0` | `f_i` (linen `setup` lists: `layers_0`) | no prefix |
//! | nnx (flax NNX) | `norm.scale` | `block.norm` | `f.i` (`layers.0.kernel`) | no prefix |
//! | haiku | `linear.w` | `mlp/~/linear_0`; a field marked `join = "/"`: `block/gate` | `f_i`, joined as a submodule (`block_group_0/~/block_1`) | no prefix |
//! | objax | `(Linear).w::TrainVar`; `var = "StateVar"` or `"RandomState"` for `::StateVar`, `::RandomState` | `(MLP).l1(Linear)` | `f(Sequential)[i](Linear)`; `class = "ModuleList"` on the field for `(ModuleList)` | `(RootClass)` |
//!
//! What the frameworks' real files fix:
//! - haiku: the topmost haiku struct of a chain stands for haiku's params (or state) dict, whose
//!   keys are module names; its fields are the first names of module paths, and below it
//!   submodules join with `/~/` (or `/`, a module made inside `__call__`). Above it, a flax struct
//!   wrapping `{"params": ..., "state": ...}` joins with `.`: `params.mlp/~/linear_0.w`,
//!   `state.batch_norm/~/mean_ema.counter`. A leaf or a dict of leaves always joins with `.`.
//! - objax: the class in parentheses is the struct's serde name, or `#[safejax(class = "MLP")]` on
//!   the struct. A new objax tree under a struct of another style joins it with `.`
//!   (`model.(MLP).w::TrainVar`). Lists can have gaps (a `Sequential` whose index 1 is an
//!   activation holds no variables): `Vec<Option<T>>`, or a map keyed by index, models them. On
//!   read the `::VarType` suffix is optional (objax's own npz files lack it); on write it is
//!   always there, so that `safejax.objax.deserialize` returns a `VarCollection`.
//! - Scalars (`i32`, `f32`, ...) are 0-d tensors: haiku's `mean_ema.counter` is one.
//! - `Option<T>`: every key of the subtree absent means `None`; some present and some absent is an
//!   error.
//! - A map `BTreeMap<String, T>` / `HashMap<String, T>` adds its keys as names. A root map of
//!   tensors is a flat dict: any file loads into `BTreeMap<String, Tensor<f32>>` key by key.
//! - Nested formats (flax msgpack, Orbax) split keys into dicts at the `.` separators the cursor
//!   records as [`Cursor::breaks`]: every `.` of flax, NNX and haiku keys, none inside an objax key.
//!
//! A worked example (haiku params and state in one flax wrapper):
//!
//! ```text
//! struct Checkpoint { params: HkParams, state: HkState }      flax, the default
//! #[safejax(style = "haiku")] struct HkParams { mlp: Mlp }    "params.mlp"
//! struct Mlp { linear: Vec<Linear> }                          inherits haiku: "params.mlp/~/linear_0"
//! struct Linear { w: Tensor<f32>, b: Tensor<f32> }            "params.mlp/~/linear_0.w"
//! ```

use crate::schema::{FieldSchema, Join, ObjaxVar, StructSchema, Style};

pub(crate) mod parse;
#[cfg(test)]
mod proptests;
pub(crate) mod tree;

/// The objax list class of a list field without `#[safejax(class = "...")]`.
pub const DEFAULT_LIST_CLASS: &str = "Sequential";

/// The position of a node in the tree, and what its key is so far.
///
/// Steps are taken in place (`step_*`, undone with [`Cursor::back`] to a [`Mark`], or around a
/// closure with [`Cursor::below`]): the serializer and the resolver each walk with one cursor, so
/// one key buffer serves every leaf of a walk and no key is formatted. Tests also step by copy
/// (`enter_struct`, `field`, ...): the in-place steps on a clone.
#[derive(Debug, Clone)]
pub(crate) struct Cursor {
    key: String,
    /// Where the key's dict levels meet: positions of the `.` separators that stand for a nesting
    /// of dicts (every `.` of flax, nnx and haiku keys; none inside an objax variable name). A
    /// nested format such as msgpack builds its dicts from these.
    breaks: Vec<usize>,
    place: Place,
}

/// What a cursor knows of its node besides the key.
#[derive(Debug, Clone, Copy)]
struct Place {
    /// The style of the nearest enclosing struct (flax above the root struct).
    style: Style,
    /// Whether a struct encloses this node.
    in_struct: bool,
    /// haiku: whether the enclosing struct is the topmost haiku struct of its chain, which stands
    /// for haiku's params dict: its fields are module names, joined to what is above with `.`.
    haiku_top: bool,
    /// Marks of the field this node hangs under, kept through containers down to the next struct.
    join: Option<Join>,
    var: Option<ObjaxVar>,
    list_class: Option<&'static str>,
}

const ROOT: Place = Place {
    style: Style::Flax,
    in_struct: false,
    haiku_top: false,
    join: None,
    var: None,
    list_class: None,
};

/// Where a cursor stood: [`Cursor::back`] returns it there after in-place steps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    key_len: usize,
    breaks_len: usize,
    place: Place,
}

impl Cursor {
    /// The root of a tree: no key, flax style until a struct says otherwise.
    pub(crate) fn root() -> Self {
        Cursor {
            key: String::new(),
            breaks: Vec::new(),
            place: ROOT,
        }
    }

    /// Returns to the root, keeping the key's buffer.
    pub(crate) fn reset(&mut self) {
        self.key.clear();
        self.breaks.clear();
        self.place = ROOT;
    }

    /// Where the cursor stands now.
    pub(crate) fn mark(&self) -> Mark {
        Mark {
            key_len: self.key.len(),
            breaks_len: self.breaks.len(),
            place: self.place,
        }
    }

    /// Undoes the in-place steps taken since `mark`.
    pub(crate) fn back(&mut self, mark: Mark) {
        self.key.truncate(mark.key_len);
        self.breaks.truncate(mark.breaks_len);
        self.place = mark.place;
    }

    /// The key of this node as far as it goes (a prefix of every key below).
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// Where the dict levels of the key meet (see the field).
    pub(crate) fn breaks(&self) -> &[usize] {
        &self.breaks
    }

    /// Appends `name` after `separator` (none at the root, which has no prefix), and the dict
    /// break that follows.
    fn join(&mut self, separator: &str, name: &str) {
        if !self.key.is_empty() {
            if separator == "." && self.place.style != Style::Objax {
                self.breaks.push(self.key.len());
            }
            self.key.push_str(separator);
        }
        self.key.push_str(name);
    }

    /// Steps into a struct node, in place.
    pub(crate) fn step_struct(&mut self, schema: &StructSchema) {
        let style = schema.style.unwrap_or(self.place.style);
        let parent_style = self.place.in_struct.then_some(self.place.style);
        if style == Style::Objax {
            let class = schema.class.unwrap_or(schema.name);
            if parent_style != Some(Style::Objax) {
                // A new objax tree: its keys start with `(Class)`, joined to a wrapper with `.`.
                self.join(".", "");
            }
            self.push_class(class);
        }
        self.place = Place {
            style,
            in_struct: true,
            haiku_top: style == Style::Haiku && parent_style != Some(Style::Haiku),
            join: None,
            var: None,
            list_class: None,
        };
    }

    fn push_class(&mut self, class: &str) {
        self.key.push('(');
        self.key.push_str(class);
        self.key.push(')');
    }

    /// The separator before a named child (a field or a map entry) of this node.
    fn separator(&self, child_is_leafy: bool, join: Option<Join>) -> &'static str {
        match self.place.style {
            Style::Haiku if !child_is_leafy && !self.place.haiku_top => join.unwrap_or(Join::Tilde).separator(),
            _ => ".",
        }
    }

    /// Steps from a struct into one of its fields, in place.
    pub(crate) fn step_field(&mut self, field: &FieldSchema, child_is_leafy: bool) {
        self.join(self.separator(child_is_leafy, field.join), field.name);
        self.place.join = field.join;
        self.place.var = field.var;
        self.place.list_class = field.class;
    }

    /// Steps into a list (a `Vec`, an array, an index-keyed map), in place: objax shows the
    /// list's class.
    pub(crate) fn step_list(&mut self) {
        if self.place.style == Style::Objax {
            self.push_class(self.place.list_class.unwrap_or(DEFAULT_LIST_CLASS));
        }
    }

    /// What comes before and after the index of an element, and whether it has a prefix.
    fn affixes(&self) -> (&'static str, &'static str) {
        let (before, after) = match self.place.style {
            Style::Flax | Style::Haiku => ("_", ""),
            Style::Nnx => (".", ""),
            Style::Objax => ("[", "]"),
        };
        if self.key.is_empty() && self.place.style != Style::Objax {
            ("", after)
        } else {
            (before, after)
        }
    }

    /// What comes before and after the index in the keys of this list's elements.
    pub(crate) fn element_affixes(&self) -> (String, &'static str) {
        let (before, after) = self.affixes();
        (format!("{}{before}", self.key), after)
    }

    /// Steps from a list (after [`Cursor::step_list`]) into element `index`, in place.
    pub(crate) fn step_element(&mut self, index: usize) {
        let (before, after) = self.affixes();
        if self.place.style == Style::Nnx && !self.key.is_empty() {
            self.breaks.push(self.key.len());
        }
        self.key.push_str(before);
        push_decimal(&mut self.key, index);
        self.key.push_str(after);
    }

    /// Steps from a map keyed by names into the entry `name`, in place.
    pub(crate) fn step_entry(&mut self, name: &str, child_is_leafy: bool) {
        self.join(self.separator(child_is_leafy, self.place.join), name);
    }

    /// Runs `then` at the node that `step` leads to, in place, and steps back: what every walk
    /// with one cursor does at each child.
    pub(crate) fn below<R>(&mut self, step: impl FnOnce(&mut Cursor), then: impl FnOnce(&mut Cursor) -> R) -> R {
        let mark = self.mark();
        step(self);
        let out = then(self);
        self.back(mark);
        out
    }

    /// This cursor after `step`.
    fn stepped(&self, step: impl FnOnce(&mut Cursor)) -> Cursor {
        let mut cursor = self.clone();
        step(&mut cursor);
        cursor
    }

    /// Steps into a struct node.
    #[cfg(test)]
    pub(crate) fn enter_struct(&self, schema: &StructSchema) -> Cursor {
        self.stepped(|c| c.step_struct(schema))
    }

    /// Steps from a struct into one of its fields.
    #[cfg(test)]
    pub(crate) fn field(&self, field: &FieldSchema, child_is_leafy: bool) -> Cursor {
        self.stepped(|c| c.step_field(field, child_is_leafy))
    }

    /// Steps into a list (a `Vec`, an array, an index-keyed map): objax shows the list's class.
    #[cfg(test)]
    pub(crate) fn enter_list(&self) -> Cursor {
        self.stepped(Cursor::step_list)
    }

    /// Steps from a list (after [`Cursor::enter_list`]) into element `index`.
    #[cfg(test)]
    pub(crate) fn element(&self, index: usize) -> Cursor {
        self.stepped(|c| c.step_element(index))
    }

    /// What comes before an entry name of this map node.
    pub(crate) fn entry_prefix(&self, child_is_leafy: bool) -> String {
        self.entry("", child_is_leafy).key
    }

    /// Steps from a map keyed by names into the entry `name`.
    pub(crate) fn entry(&self, name: &str, child_is_leafy: bool) -> Cursor {
        self.stepped(|c| c.step_entry(name, child_is_leafy))
    }

    /// Where an entry name read from a file ends, for a map whose values are not leaves: at the
    /// first separator the style can put after a module name.
    pub(crate) fn entry_name_end(&self, rest: &str) -> usize {
        let stops: &[&str] = match self.place.style {
            Style::Flax | Style::Nnx => &["."],
            Style::Haiku => &[".", "/"],
            Style::Objax => &[".", "(", "[", "::"],
        };
        stops.iter().filter_map(|s| rest.find(s)).min().unwrap_or(rest.len())
    }

    /// Steps from a leaf's node to its full key, in place: objax appends the variable type.
    pub(crate) fn step_leaf(&mut self) {
        if self.place.style == Style::Objax {
            self.key.push_str("::");
            self.key.push_str(self.place.var.unwrap_or(ObjaxVar::TrainVar).name());
        }
    }

    /// The full key of a leaf at this node.
    pub(crate) fn leaf_key(&self) -> String {
        self.stepped(Cursor::step_leaf).key
    }

    /// objax keys carry the variable type, which a reader may find without it (objax's own npz
    /// files): the key to try when [`Cursor::leaf_key`] is absent.
    pub(crate) fn leaf_key_fallback(&self) -> Option<&str> {
        (self.place.style == Style::Objax).then_some(self.key.as_str())
    }

    /// For a leaf-valued map read from a file: the entry name within `rest` (objax drops the
    /// variable type).
    pub(crate) fn leaf_entry_name<'k>(&self, rest: &'k str) -> &'k str {
        match self.place.style {
            Style::Objax => rest.rfind("::").map_or(rest, |i| &rest[..i]),
            _ => rest,
        }
    }
}

/// Appends `n` in decimal: a list index per element of every walk, where `format!` costs more
/// than the rest of the step.
fn push_decimal(key: &mut String, n: usize) {
    key.extend(crate::write::decimal(n, &mut [0; 20]).iter().map(|&d| char::from(d)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{FieldSchema, Schema, StructSchema};

    fn leaf() -> &'static Schema {
        <f32 as crate::Params>::SCHEMA
    }

    const fn field(name: &'static str) -> FieldSchema {
        FieldSchema {
            name,
            schema: crate::schema::SchemaRef::new(leaf),
            optional: false,
            join: None,
            var: None,
            class: None,
            shape: None,
        }
    }

    const fn strukt(name: &'static str, style: Option<Style>) -> StructSchema {
        StructSchema {
            name,
            style,
            class: None,
            fields: &[],
        }
    }

    #[test]
    fn flax_joins_with_dots_and_lists_with_underscores() {
        let root = Cursor::root().enter_struct(&strukt("Root", None));
        let layers = root.field(&field("layers"), false).enter_list().element(1);
        let dense = layers.enter_struct(&strukt("Dense", None));
        assert_eq!(dense.field(&field("kernel"), true).leaf_key(), "layers_1.kernel");
    }

    /// Steps from a struct into element `index` of its list field `name`, a struct `element`.
    fn list_element(cursor: &Cursor, name: &'static str, index: usize, element: &'static str) -> Cursor {
        let list = cursor.field(&field(name), false).enter_list();
        list.element(index).enter_struct(&strukt(element, None))
    }

    /// The key cut at its dict breaks.
    fn path(cursor: &Cursor) -> Vec<String> {
        crate::ser::split_at(&cursor.leaf_key(), cursor.breaks())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn dict_breaks_follow_the_style() {
        let ckpt = Cursor::root().enter_struct(&strukt("Checkpoint", None));
        let params = ckpt
            .field(&field("params"), false)
            .enter_struct(&strukt("P", Some(Style::Haiku)));
        let mlp = params.field(&field("mlp"), false).enter_struct(&strukt("Mlp", None));
        let w = list_element(&mlp, "linear", 0, "L").field(&field("w"), true);
        assert_eq!(path(&w), ["params", "mlp/~/linear_0", "w"]);
        let nnx = Cursor::root().enter_struct(&strukt("M", Some(Style::Nnx)));
        let k = list_element(&nnx, "layers", 1, "L").field(&field("kernel"), true);
        assert_eq!(path(&k), ["layers", "1", "kernel"]);
        let model = ckpt
            .field(&field("model"), false)
            .enter_struct(&strukt("MLP", Some(Style::Objax)));
        assert_eq!(path(&model.field(&field("w"), true)), ["model", "(MLP).w::TrainVar"]);
    }

    #[test]
    fn nnx_lists_are_path_parts() {
        let root = Cursor::root().enter_struct(&strukt("M", Some(Style::Nnx)));
        let layers = root.field(&field("layers"), false).enter_list().element(0);
        let linear = layers.enter_struct(&strukt("Linear", None));
        assert_eq!(linear.field(&field("kernel"), true).leaf_key(), "layers.0.kernel");
    }

    #[test]
    fn haiku_top_struct_is_the_params_dict() {
        let ckpt = Cursor::root().enter_struct(&strukt("Checkpoint", None));
        let params = ckpt
            .field(&field("params"), false)
            .enter_struct(&strukt("HkParams", Some(Style::Haiku)));
        let mlp = params.field(&field("mlp"), false).enter_struct(&strukt("Mlp", None));
        let linear = list_element(&mlp, "linear", 0, "Linear");
        assert_eq!(linear.field(&field("w"), true).leaf_key(), "params.mlp/~/linear_0.w");
        let inner = FieldSchema {
            join: Some(Join::Slash),
            ..field("inner")
        };
        let nested = mlp.field(&inner, false).enter_struct(&strukt("Linear", None));
        assert_eq!(nested.field(&field("b"), true).leaf_key(), "params.mlp/inner.b");
    }

    #[test]
    fn steps_in_place_and_back_agree_with_the_copying_steps() {
        let mut cursor = Cursor::root();
        let root = strukt("MLP", Some(Style::Objax));
        cursor.step_struct(&root);
        let at_root = cursor.mark();
        for (i, index) in [0, 7, 10, 123_456_789, usize::MAX].into_iter().enumerate() {
            cursor.step_field(&field("seq"), false);
            cursor.step_list();
            cursor.step_element(index);
            let copied = Cursor::root()
                .enter_struct(&root)
                .field(&field("seq"), false)
                .enter_list()
                .element(index);
            assert_eq!(cursor.key(), copied.key(), "step {i}");
            assert_eq!(cursor.key(), format!("(MLP).seq(Sequential)[{index}]"));
            assert_eq!(cursor.leaf_key(), copied.leaf_key());
            cursor.back(at_root);
            assert_eq!(cursor.key(), "(MLP)");
            assert_eq!(cursor.leaf_key(), "(MLP)::TrainVar", "the style is restored too");
        }
        let mut nnx = Cursor::root();
        nnx.step_struct(&strukt("M", Some(Style::Nnx)));
        let top = nnx.mark();
        nnx.step_field(&field("layers"), false);
        nnx.step_list();
        nnx.step_element(3);
        assert_eq!((nnx.key(), nnx.breaks()), ("layers.3", &[6][..]));
        nnx.back(top);
        assert_eq!((nnx.key(), nnx.breaks()), ("", &[][..]));
        nnx.reset();
        assert_eq!(nnx.leaf_key(), "");
    }

    #[test]
    fn objax_shows_classes_indices_and_var_types() {
        let mlp = Cursor::root().enter_struct(&strukt("MLP", Some(Style::Objax)));
        let seq = mlp.field(&field("seq"), false).enter_list().element(2);
        let linear = seq.enter_struct(&strukt("Linear", None));
        assert_eq!(
            linear.field(&field("w"), true).leaf_key(),
            "(MLP).seq(Sequential)[2](Linear).w::TrainVar"
        );
        let state = FieldSchema {
            var: Some(ObjaxVar::StateVar),
            ..field("running_mean")
        };
        assert_eq!(mlp.field(&state, true).leaf_key(), "(MLP).running_mean::StateVar");
        let ml = FieldSchema {
            class: Some("ModuleList"),
            ..field("ml")
        };
        assert_eq!(
            mlp.field(&ml, false).enter_list().element(0).key(),
            "(MLP).ml(ModuleList)[0]"
        );
    }
}
