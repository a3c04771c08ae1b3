//! Rust source for planned structs.

use std::fmt::Write as _;

use safejax::Dtype;

use super::infer::LeafTy;
use super::plan::{PTy, Plan};

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

fn type_of(t: &PTy, plan: &Plan, lifetimes: &[bool], borrowed: bool) -> (String, bool) {
    match t {
        PTy::Leaf(l) => (leaf_type(l, borrowed), leaf_borrows(l, borrowed)),
        PTy::Map(l) => (
            format!("std::collections::BTreeMap<String, {}>", leaf_type(l, borrowed)),
            leaf_borrows(l, borrowed),
        ),
        PTy::Vec(t) => {
            let (inner, b) = type_of(t, plan, lifetimes, borrowed);
            (format!("Vec<{inner}>"), b)
        }
        PTy::Option(t) => {
            let (inner, b) = type_of(t, plan, lifetimes, borrowed);
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

/// The structs of `plan` as Rust source.
pub fn structs(plan: &Plan, borrowed: bool) -> String {
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
        for f in &s.fields {
            let (ty, borrows) = type_of(&f.ty, plan, &lifetimes, borrowed);
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
            if f.slash {
                out.push_str("    #[safejax(join = \"/\")]\n");
            }
            if let Some(var) = &f.var {
                let _ = writeln!(out, "    #[safejax(var = {var:?})]");
            }
            if let Some(class) = &f.list_class {
                let _ = writeln!(out, "    #[safejax(class = {class:?})]");
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
