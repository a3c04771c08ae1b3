//! Rust source for planned structs.

use std::fmt::Write as _;

use safejax::Dtype;

use super::check::{Facts, FieldFacts};
use super::infer::LeafTy;
use super::plan::{PTy, Plan};

/// The longest array serde reads and writes (its impls stop at 32): longer lists stay `Vec`, with
/// `#[safejax(len = N)]`.
const MAX_ARRAY: usize = 32;

/// The Rust element type of a dtype, written so that it resolves with only
/// `use safejax::{Params, Tensor, TensorView};` in scope.
fn element(dtype: Dtype) -> Option<&'static str> {
    dtype.rust_type()
}

/// The Rust type of a leaf.
pub fn leaf_type(leaf: &LeafTy, borrowed: bool) -> String {
    match (leaf.dtype.and_then(element), leaf.scalar, borrowed) {
        (Some(e), true, _) => e.to_owned(),
        (Some(e), false, false) => format!("Tensor<{e}>"),
        (Some(e), false, true) => format!("TensorView<'a, {e}>"),
        (None, _, false) => "safejax::DynTensor".to_owned(),
        (None, _, true) => "safejax::DynTensorView<'a>".to_owned(),
    }
}

/// Whether a leaf type borrows.
fn leaf_borrows(leaf: &LeafTy, borrowed: bool) -> bool {
    borrowed && !(leaf.scalar && leaf.dtype.and_then(element).is_some())
}

/// Which structs take a lifetime (hold a view somewhere).
fn lifetimes(plan: &Plan, borrowed: bool) -> Vec<bool> {
    fn borrows(t: &PTy, plan: &Plan, memo: &mut Vec<Option<bool>>, borrowed: bool) -> bool {
        match t {
            PTy::Leaf(l) | PTy::Map(l) => leaf_borrows(l, borrowed),
            PTy::Vec(t) | PTy::Option(t) => borrows(t, plan, memo, borrowed),
            PTy::Struct(id) => {
                if let Some(b) = memo[*id] {
                    return b;
                }
                let b = plan.structs[*id]
                    .fields
                    .iter()
                    .any(|f| borrows(&f.ty, plan, memo, borrowed));
                memo[*id] = Some(b);
                b
            }
        }
    }
    let mut memo = vec![None; plan.structs.len()];
    (0..plan.structs.len())
        .map(|id| borrows(&PTy::Struct(id), plan, &mut memo, borrowed))
        .collect()
}

/// How lists print: `lens` are the lengths the file fixes, by list depth, when arrays are asked for.
#[derive(Clone, Copy)]
struct Lists<'f> {
    lens: Option<&'f [Option<usize>]>,
    depth: usize,
}

impl Lists<'_> {
    /// The length the file fixes for a list at this depth of elements `element`: a list with gaps
    /// (`Option` elements) has none, its length follows the last element present.
    fn fixed_len(&self, element: &PTy) -> Option<usize> {
        let len = (*self.lens?.get(self.depth)?)?;
        (len > 0 && !matches!(element, PTy::Option(_))).then_some(len)
    }

    /// The length of an array for a list at this depth of elements `element`.
    fn array_len(&self, element: &PTy) -> Option<usize> {
        self.fixed_len(element).filter(|&len| len <= MAX_ARRAY)
    }

    /// `len = N` for a field that is a list too long for an array: the `Vec` checks its length
    /// as the array would. Only the field's own list can carry it, not a list inside.
    fn len_mark(&self, field: &PTy) -> Option<String> {
        let PTy::Vec(element) = field else {
            return None;
        };
        let len = self.fixed_len(element).filter(|&len| len > MAX_ARRAY)?;
        Some(format!("len = {len}"))
    }

    fn inner(self) -> Self {
        Lists {
            depth: self.depth + 1,
            ..self
        }
    }
}

fn type_of(t: &PTy, plan: &Plan, lifetimes: &[bool], borrowed: bool, lists: Lists) -> (String, bool) {
    match t {
        PTy::Leaf(l) => (leaf_type(l, borrowed), leaf_borrows(l, borrowed)),
        PTy::Map(l) => (
            format!("std::collections::BTreeMap<String, {}>", leaf_type(l, borrowed)),
            leaf_borrows(l, borrowed),
        ),
        PTy::Vec(t) => {
            let (inner, b) = type_of(t, plan, lifetimes, borrowed, lists.inner());
            match lists.array_len(t) {
                Some(len) => (format!("[{inner}; {len}]"), b),
                None => (format!("Vec<{inner}>"), b),
            }
        }
        PTy::Option(t) => {
            let (inner, b) = type_of(t, plan, lifetimes, borrowed, lists);
            (format!("Option<{inner}>"), b)
        }
        PTy::Struct(id) => {
            let name = &plan.structs[*id].name;
            if lifetimes[*id] {
                (format!("{name}<'a>"), true)
            } else {
                (name.clone(), false)
            }
        }
    }
}

/// `shape = [...]` for a field whose leaves (not scalars) all have one rank: sizes where they
/// agree, `_` where they differ.
fn shape_mark(facts: Option<&FieldFacts>) -> Option<String> {
    let shape = facts?.shape.as_ref().filter(|s| !s.is_empty())?;
    let dims: Vec<String> = shape
        .iter()
        .map(|d| d.map_or_else(|| "_".to_owned(), |d| d.to_string()))
        .collect();
    Some(format!("shape = [{}]", dims.join(", ")))
}

/// The structs of `plan` as Rust source; with `arrays`, lists whose length `facts` fix print as
/// arrays, or as `Vec`s with `len` where too long for an array.
pub fn structs(plan: &Plan, facts: &Facts, borrowed: bool, arrays: bool) -> String {
    let lifetimes = lifetimes(plan, borrowed);
    let mut out = String::new();
    for (id, s) in plan.structs.iter().enumerate() {
        if id > 0 {
            out.push('\n');
        }
        out.push_str("#[derive(Debug, Serialize, Deserialize, Params)]\n");
        let mut attrs = Vec::new();
        if let Some(style) = s.style_attr {
            attrs.push(format!("style = \"{}\"", style.name()));
        }
        if let Some(class) = s.class_attr() {
            attrs.push(format!("class = {class:?}"));
        }
        if !attrs.is_empty() {
            let _ = writeln!(out, "#[safejax({})]", attrs.join(", "));
        }
        let generics = if lifetimes[id] { "<'a>" } else { "" };
        if s.fields.is_empty() {
            let _ = writeln!(out, "pub struct {}{generics} {{}}", s.name);
            continue;
        }
        let _ = writeln!(out, "pub struct {}{generics} {{", s.name);
        for (i, f) in s.fields.iter().enumerate() {
            let field_facts = facts.get(&(id, i));
            let lists = Lists {
                lens: field_facts.filter(|_| arrays).map(|f| f.lens.as_slice()),
                depth: 0,
            };
            let (ty, borrows) = type_of(&f.ty, plan, &lifetimes, borrowed, lists);
            let mut serde = Vec::new();
            if f.ident != f.name {
                serde.push(format!("rename = {:?}", f.name));
            }
            if borrows {
                serde.push("borrow".to_owned());
            }
            if !serde.is_empty() {
                let _ = writeln!(out, "    #[serde({})]", serde.join(", "));
            }
            let mut marks = Vec::new();
            if f.slash {
                marks.push("join = \"/\"".to_owned());
            }
            if let Some(var) = &f.var {
                marks.push(format!("var = {var:?}"));
            }
            if let Some(class) = &f.list_class {
                marks.push(format!("class = {class:?}"));
            }
            marks.extend(lists.len_mark(&f.ty));
            marks.extend(shape_mark(field_facts));
            if !marks.is_empty() {
                let _ = writeln!(out, "    #[safejax({})]", marks.join(", "));
            }
            let _ = writeln!(out, "    pub {}: {ty},", f.ident);
        }
        out.push_str("}\n");
    }
    out
}

/// A flat map of every key, for files whose keys structs cannot express.
pub fn flat_map(root: &str, leaf: &LeafTy, borrowed: bool) -> String {
    let generics = if leaf_borrows(leaf, borrowed) { "<'a>" } else { "" };
    format!(
        "pub type {root}{generics} = std::collections::BTreeMap<String, {}>;\n",
        leaf_type(leaf, borrowed)
    )
}
