//! `safejax codegen`: Rust structs with `#[derive(Serialize, Deserialize, Params)]` that load a
//! checkpoint.
//!
//! The keys are read as a tree by the rules of their style (by the library, which builds them), typed (`infer`: structs,
//! `Vec` for runs of list elements, `Option` for parts that list elements lack), planned (`plan`:
//! one struct per shape, names, attributes), and checked against the file by the rules `safejax`
//! reads with (`check`) before they are printed (`emit`). The check also says what the file fixes
//! of each field (the shape of its tensors, the length of its lists), which `emit` declares:
//! `#[safejax(shape = [...])]` on every tensor, and arrays (or `#[safejax(len = N)]` past serde's
//! 32) where every list of a field has one length, so that the structs refuse a file with a layer missing or a tensor transposed. Keys that structs cannot express fall
//! back to a map of tensors, for a subtree or, failing that, for the whole file, with a note that
//! says why.

mod check;
mod emit;
mod infer;
mod names;
mod plan;

use anyhow::{bail, Result};
use safejax::__private::{keys, Style};
use safejax::Dtype;

use crate::source::{Checkpoint, Format};

/// What `codegen` generates.
pub struct Options {
    /// The key style; detected from the keys when `None`.
    pub style: Option<Style>,
    /// `TensorView<'a, T>` leaves instead of `Tensor<T>`.
    pub borrowed: bool,
    /// The root struct's name.
    pub root: String,
    /// Fixed-length arrays for lists whose length the file fixes, instead of `Vec`.
    pub arrays: bool,
}

/// The generated source, and notes for the user about it.
pub struct Generated {
    pub source: String,
    pub notes: Vec<String>,
}

/// Structs for `leaves` (key, dtype, shape, in file order) read by `style`, checked.
fn structs(
    style: Style,
    leaves: &[(String, Dtype, Vec<usize>)],
    root: &str,
) -> Result<(plan::Plan, check::Facts, Vec<String>), String> {
    let tree = keys::build(style, leaves)?;
    let root_ty = infer::infer(style, &tree, leaves.len())?;
    let plan = plan::plan(&root_ty, root);
    let keys: Vec<&str> = leaves.iter().map(|(k, _, _)| k.as_str()).collect();
    let shapes: Vec<&[usize]> = leaves.iter().map(|(_, _, s)| s.as_slice()).collect();
    let outcome = check::check(&plan, &keys, &shapes)?;
    let mut notes = Vec::new();
    if let Some(first) = outcome.without_var.first() {
        notes.push(format!(
            "{} objax keys have no `::VarType` (e.g. `{first}`): they load, and are written back with one",
            outcome.without_var.len()
        ));
    }
    if has_maps(&plan) {
        notes.push(
            "some keys do not fit a tree of modules and tensors; they load into `BTreeMap` fields, keyed by the \
             rest of the key"
                .to_owned(),
        );
    }
    Ok((plan, outcome.facts, notes))
}

/// Every leaf type of the plan's fields.
fn plan_leaves(plan: &plan::Plan) -> Vec<infer::LeafTy> {
    fn collect(t: &plan::PTy, out: &mut Vec<infer::LeafTy>) {
        match t {
            plan::PTy::Leaf(l) | plan::PTy::Map(l) => out.push(l.clone()),
            plan::PTy::Vec(t) | plan::PTy::Option(t) => collect(t, out),
            plan::PTy::Struct(_) => {}
        }
    }
    let mut out = Vec::new();
    for f in plan.structs.iter().flat_map(|s| &s.fields) {
        collect(&f.ty, &mut out);
    }
    out
}

/// The comment that names the `use` lines the code needs, and no more: `Params` and serde's
/// derives for structs, `Tensor` or `TensorView` where a leaf's type is one.
fn imports(structs: bool, leaves: &[infer::LeafTy], borrowed: bool) -> String {
    let types: Vec<String> = leaves.iter().map(|l| emit::leaf_type(l, borrowed)).collect();
    let mut names = Vec::new();
    if structs {
        names.push("Params");
    }
    for name in ["Tensor", "TensorView"] {
        if types.iter().any(|t| t.starts_with(&format!("{name}<"))) {
            names.push(name);
        }
    }
    let mut lines = Vec::new();
    match names[..] {
        [] => {}
        [one] => lines.push(format!("`use safejax::{one};`")),
        _ => lines.push(format!("`use safejax::{{{}}};`", names.join(", "))),
    }
    if structs {
        lines.push("`use serde::{Deserialize, Serialize};`".to_owned());
    }
    if lines.is_empty() {
        return "// Needs no imports.\n".to_owned();
    }
    format!("// Needs {}.\n", lines.join(" and "))
}

fn has_maps(plan: &plan::Plan) -> bool {
    fn map(t: &plan::PTy) -> bool {
        match t {
            plan::PTy::Map(_) => true,
            plan::PTy::Vec(t) | plan::PTy::Option(t) => map(t),
            _ => false,
        }
    }
    plan.structs.iter().any(|s| s.fields.iter().any(|f| map(&f.ty)))
}

/// Generates the structs for an opened checkpoint.
pub fn run(ckpt: &Checkpoint, options: &Options) -> Result<Generated> {
    if !names::is_type_ident(&options.root) {
        bail!(
            "--root `{}` cannot name a struct (use a Rust identifier that is not a keyword or a name the code uses)",
            options.root
        );
    }
    let contents = ckpt.contents()?;
    let mut leaves: Vec<(String, Dtype, Vec<usize>)> = contents
        .entries
        .iter()
        .map(|e| (e.key.clone(), e.tensor.dtype(), e.tensor.shape().to_vec()))
        .collect();
    // Fields follow the file: msgpack's dict order (so that the structs write the same bytes),
    // or, for safetensors, whose layout does not depend on it, the keys in natural order.
    if ckpt.format == Format::Safetensors {
        leaves.sort_by(|a, b| crate::fmt::natural(&a.0, &b.0));
    }
    let style = options.style.unwrap_or_else(|| keys::detect(contents.keys()));
    let root = &options.root;

    let (body, imports, mut notes) = match structs(style, &leaves, root) {
        Ok((plan, facts, notes)) => {
            let imports = imports(true, &plan_leaves(&plan), options.borrowed);
            (
                emit::structs(&plan, &facts, options.borrowed, options.arrays),
                imports,
                notes,
            )
        }
        Err(reason) => {
            let first = leaves.first().map(|(_, d, _)| *d);
            let same = first.filter(|d| leaves.iter().all(|(_, x, _)| x == d));
            let leaf = infer::LeafTy {
                dtype: same.and_then(infer::supported),
                scalar: false,
                shape: None,
            };
            let note =
                format!("no structs for these keys as {style} keys: {reason}; every key loads into one flat map");
            let body = format!("// {note}\n{}", emit::flat_map(root, &leaf, options.borrowed));
            (body, imports(false, &[leaf], options.borrowed), vec![note])
        }
    };

    // How to load it.
    let path = ckpt.path.display().to_string();
    let single = ckpt.files.len() == 1 && !ckpt.is_sharded();
    let file = ckpt
        .files
        .first()
        .map(|f| f.path.display().to_string())
        .unwrap_or_default();
    let load = match (ckpt.format, options.borrowed, single) {
        (_, false, _) if ckpt.path.is_dir() || ckpt.is_sharded() => format!("safejax::from_dir({path:?})?"),
        (Format::Safetensors, false, _) => format!("safejax::from_file({path:?})?"),
        (Format::Msgpack, false, _) => format!("safejax::msgpack::from_file({path:?})?"),
        (Format::Safetensors, true, true) => format!("safejax::from_bytes(&std::fs::read({file:?})?)?"),
        (Format::Msgpack, true, true) => format!("safejax::msgpack::from_bytes(&std::fs::read({file:?})?)?"),
        (_, true, false) => {
            notes.push(
                "a sharded checkpoint loads with `safejax::from_dir`, which needs owned tensors: generate without \
                 --borrowed to load it"
                    .to_owned(),
            );
            format!("safejax::from_dir({path:?})? (owned tensors only)")
        }
    };
    let mut source = String::new();
    source.push_str(&format!(
        "// Generated by `safejax codegen` from {path:?} ({}, {style} keys, {} tensors).\n",
        ckpt.layout(),
        leaves.len()
    ));
    source.push_str(&imports);
    if options.borrowed && single {
        source.push_str(&format!(
            "// Load: `let bytes = std::fs::read({file:?})?;` then `let ckpt: {root} = {}(&bytes)?;`.\n",
            if ckpt.format == Format::Msgpack {
                "safejax::msgpack::from_bytes"
            } else {
                "safejax::from_bytes"
            }
        ));
    } else {
        source.push_str(&format!("// Load: `let ckpt: {root} = {load};`.\n"));
    }
    if !contents.metadata.is_empty() {
        let entries: Vec<String> = contents
            .metadata
            .iter()
            .map(|(k, v)| format!(".metadata({k:?}, {v:?})"))
            .collect();
        source.push_str(&format!(
            "// Its metadata is written back by `safejax::Options::new(){}`.\n",
            entries.join("")
        ));
    }
    source.push('\n');
    source.push_str(&body);
    Ok(Generated { source, notes })
}
