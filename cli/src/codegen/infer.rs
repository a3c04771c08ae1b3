//! Types for a key tree: a struct per module, `Vec` for runs of list elements, `Option` where list
//! elements differ by whole parts, scalars for 0-d tensors. Types are structural here; naming and
//! sharing happen in `plan`.

use std::collections::BTreeMap;

use safejax::__private::keys::{self, Join, Leaf, List, Module, Node};
use safejax::__private::{ObjaxVar, Style};
use safejax::Dtype;

use safejax::__private::keys::{is_index, split_element};

/// A tensor leaf: its dtype (`None`: any, a `DynTensor`), whether it is a 0-d scalar, and its
/// shape (`None` at a dimension where the leaves of a list differ; `None` for no shape). Leaves
/// of different shapes are different types, so that a struct is shared only by modules whose
/// declared shapes hold for all of them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeafTy {
    pub dtype: Option<Dtype>,
    pub scalar: bool,
    pub shape: Option<Vec<Option<usize>>>,
}

/// A param type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ty {
    Leaf(LeafTy),
    Struct(Box<StructTy>),
    Vec(Box<Ty>),
    Option(Box<Ty>),
    /// `BTreeMap<String, leaf>`: every key below, keyed by the rest of the key.
    Map(LeafTy),
}

/// What a struct stands for, which decides how its keys join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Flax,
    Nnx,
    /// The topmost haiku struct of a chain: haiku's params dict, whose fields are module names.
    HaikuTop,
    /// A haiku module below the top.
    HaikuModule,
    Objax,
}

impl Role {
    /// The style the struct's keys follow.
    pub fn style(self) -> Style {
        match self {
            Role::Flax => Style::Flax,
            Role::Nnx => Style::Nnx,
            Role::HaikuTop | Role::HaikuModule => Style::Haiku,
            Role::Objax => Style::Objax,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StructTy {
    pub role: Role,
    /// The objax class.
    pub class: Option<String>,
    pub fields: Vec<FieldTy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldTy {
    /// The name in keys (the serde name).
    pub name: String,
    pub ty: Ty,
    /// How the field joins its struct's key (haiku submodules: `/~/` or `/`).
    pub join: Join,
    /// objax: the variable type of the tensors below (`StateVar`...), as the file shows it.
    pub var: Option<String>,
    /// objax: the class of the list below, if not `Sequential`.
    pub list_class: Option<String>,
    /// A lone `base_0` that may be the first element of a list `base` elsewhere.
    pub singleton: bool,
}

/// The element types that `Tensor<T>` holds.
pub fn supported(dtype: Dtype) -> Option<Dtype> {
    dtype.rust_type().map(|_| dtype)
}

/// What the walk knows.
struct Ctx {
    style: Style,
    /// How many keys the file has: a list index at or past it cannot be read back.
    n_keys: usize,
}

/// The type of the whole tree: the root struct.
pub fn infer(style: Style, root: &Node, n_keys: usize) -> Result<StructTy, String> {
    let ctx = Ctx { style, n_keys };
    match root {
        Node::Module(m) => module_struct(&ctx, m, false),
        _ => Err("the keys do not start with a module".to_owned()),
    }
}

fn leaf_ty(leaf: &Leaf) -> LeafTy {
    let dtype = supported(leaf.dtype);
    LeafTy {
        dtype,
        scalar: dtype.is_some() && leaf.shape.is_empty(),
        shape: Some(leaf.shape.iter().copied().map(Some).collect()),
    }
}

/// A node's type, with the objax variable type of its tensors and the class of its list, for the
/// field that holds it.
type Typed = (Ty, Option<String>, Option<String>);

/// The type of `node`, a child of a struct of role `parent`.
fn node_ty(ctx: &Ctx, node: &Node, parent: Role) -> Result<Typed, String> {
    let in_haiku = matches!(parent, Role::HaikuTop | Role::HaikuModule);
    match node {
        Node::Leaf(leaf) => {
            if let Some(var) = &leaf.var {
                if ObjaxVar::parse(var).is_none() {
                    return Err(format!(
                        "`{}`: objax variable type `{var}` is not one of {}",
                        leaf.key,
                        ObjaxVar::NAMES.join(", ")
                    ));
                }
            }
            Ok((Ty::Leaf(leaf_ty(leaf)), leaf.var.clone(), None))
        }
        Node::Map(leaves) => {
            let first = leaves.first().map(leaf_ty);
            let same = first
                .as_ref()
                .filter(|f| f.dtype.is_some() && leaves.iter().all(|l| supported(l.dtype) == f.dtype));
            let dtype = same.and_then(|f| f.dtype);
            Ok((
                Ty::Map(LeafTy {
                    dtype,
                    scalar: false,
                    shape: None,
                }),
                None,
                None,
            ))
        }
        Node::List(list) => {
            let (ty, var) = objax_list(ctx, list)?;
            let class = (list.class != keys::DEFAULT_LIST_CLASS).then(|| list.class.clone());
            Ok((ty, var, class))
        }
        Node::Module(m) => {
            if ctx.style == Style::Nnx && !m.children.is_empty() {
                if let Some(list) = nnx_list(ctx, m)? {
                    return Ok(list);
                }
            }
            let s = module_struct(ctx, m, in_haiku)?;
            Ok((Ty::Struct(Box::new(s)), None, None))
        }
    }
}

/// The role of a module: from the file's style and where it is.
fn role(ctx: &Ctx, m: &Module, in_haiku: bool) -> Role {
    match ctx.style {
        Style::Flax => Role::Flax,
        Style::Nnx => Role::Nnx,
        Style::Haiku if m.haiku_top == Some(true) => Role::HaikuTop,
        Style::Haiku if in_haiku => Role::HaikuModule,
        Style::Haiku => Role::Flax,
        Style::Objax if m.class.is_some() => Role::Objax,
        Style::Objax => Role::Flax,
    }
}

/// The struct of a module, with runs of `base_i` children as `Vec` fields where the style names
/// list elements so.
fn module_struct(ctx: &Ctx, m: &Module, in_haiku: bool) -> Result<StructTy, String> {
    let role = role(ctx, m, in_haiku);
    let mut children: Vec<Option<FieldTy>> = Vec::with_capacity(m.children.len());
    for child in &m.children {
        let (ty, var, list_class) = node_ty(ctx, &child.node, role)?;
        children.push(Some(FieldTy {
            name: child.name.clone(),
            ty,
            join: child.join,
            var,
            list_class,
            singleton: false,
        }));
    }
    if matches!(role, Role::Flax | Role::HaikuTop | Role::HaikuModule) {
        group_lists(ctx, role, &mut children);
    }
    Ok(StructTy {
        role,
        class: m.class.clone(),
        fields: children.into_iter().flatten().collect(),
    })
}

/// Turns runs of fields `base_0`, `base_1`, ... into one `Vec` field `base` (in place of the
/// first), when the names cannot be read otherwise and the elements have one type. A lone
/// `base_0` is marked, to become a list of one if a sibling struct has a list `base`.
fn group_lists(ctx: &Ctx, role: Role, fields: &mut [Option<FieldTy>]) {
    let names: Vec<String> = fields.iter().flatten().map(|f| f.name.clone()).collect();
    let mut groups: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
    for (slot, f) in fields.iter().enumerate() {
        let f = f.as_ref().expect("all fields present before grouping");
        if let Some((base, index)) = split_element(&f.name) {
            // flax names modules of @nn.compact by class, `Dense_0`: those are not lists.
            if role == Role::Flax && base.starts_with(|c: char| c.is_ascii_uppercase()) {
                continue;
            }
            groups.entry(base).or_default().push((slot, index));
        }
    }
    let groups: Vec<(String, Vec<(usize, usize)>)> = groups.into_iter().map(|(b, g)| (b.to_owned(), g)).collect();
    for (base, members) in groups {
        let first = |slot: usize| fields[slot].as_ref().expect("grouped fields are present");
        let join = first(members[0].0).join;
        let prefix = format!("{base}_");
        // Another sibling that a list `base` would read as one of its elements (`base_1x`), or
        // a sibling named `base` itself: the names must stay fields.
        let clash = names.iter().any(|n| {
            n == &base
                || (n.starts_with(&prefix)
                    && n[prefix.len()..].starts_with(|c: char| c.is_ascii_digit())
                    && !members.iter().any(|&(slot, _)| &first(slot).name == n))
        });
        let mixed_join = members.iter().any(|&(slot, _)| first(slot).join != join);
        if clash || mixed_join || !members.iter().any(|&(_, i)| i == 0) {
            continue;
        }
        if members.len() == 1 {
            fields[members[0].0].as_mut().expect("present").singleton = true;
            continue;
        }
        let elements: BTreeMap<usize, (Ty, Option<String>)> = members
            .iter()
            .map(|&(slot, i)| {
                let f = first(slot);
                (i, (f.ty.clone(), f.var.clone()))
            })
            .collect();
        let Some((ty, var)) = list_of(ctx, elements) else {
            continue;
        };
        let slot = members.iter().map(|&(slot, _)| slot).min().expect("members");
        let list_class = first(slot).list_class.clone();
        for &(s, _) in &members {
            fields[s] = None;
        }
        fields[slot] = Some(FieldTy {
            name: base,
            ty,
            join,
            var,
            list_class,
            singleton: false,
        });
    }
}

/// The `Vec` type of list elements by index (with `Option` elements where indices are missing), if
/// they have one type and the list can be read back.
fn list_of(ctx: &Ctx, elements: BTreeMap<usize, (Ty, Option<String>)>) -> Option<(Ty, Option<String>)> {
    let (&last, _) = elements.last_key_value()?;
    if last >= ctx.n_keys {
        return None;
    }
    let gaps = elements.len() != last + 1;
    let mut iter = elements.into_values();
    let (mut ty, var) = iter.next()?;
    for (t, v) in iter {
        if v != var {
            return None;
        }
        ty = unify(&ty, &t)?;
    }
    let element = if gaps && !matches!(ty, Ty::Option(_)) {
        Ty::Option(Box::new(ty))
    } else {
        ty
    };
    Some((Ty::Vec(Box::new(element)), var))
}

/// An NNX dict whose names are all list indices, as a `Vec`; `None` if its elements do not share a
/// type (it stays a struct with fields `0`, `1`, ...).
fn nnx_list(ctx: &Ctx, m: &Module) -> Result<Option<Typed>, String> {
    if !m.children.iter().all(|c| c.join == Join::Dot && is_index(&c.name)) {
        return Ok(None);
    }
    let mut elements = BTreeMap::new();
    for child in &m.children {
        let (ty, var, _) = node_ty(ctx, &child.node, Role::Nnx)?;
        elements.insert(child.name.parse::<usize>().map_err(|e| e.to_string())?, (ty, var));
    }
    Ok(list_of(ctx, elements).map(|(ty, var)| (ty, var, None)))
}

/// An objax list, which must have one element type (objax keys cannot show anything else).
fn objax_list(ctx: &Ctx, list: &List) -> Result<(Ty, Option<String>), String> {
    let mut elements = BTreeMap::new();
    for (&i, node) in &list.elems {
        if let Node::List(inner) = node {
            // A field's list class marks the lists nested in it too.
            if inner.class != list.class {
                return Err(format!(
                    "a `{}` inside a `{}` cannot be written: nested lists share their field's class",
                    inner.class, list.class
                ));
            }
        }
        let (ty, var, _) = node_ty(ctx, node, Role::Objax)?;
        elements.insert(i, (ty, var));
    }
    list_of(ctx, elements).ok_or_else(|| {
        let classes: Vec<String> = list
            .elems
            .values()
            .map(|n| match n {
                Node::Module(m) => m.class.clone().unwrap_or_default(),
                Node::Leaf(_) => "tensor".to_owned(),
                _ => "list".to_owned(),
            })
            .collect();
        format!(
            "the objax list `{}` holds elements of different types ({}), which one Rust `Vec` cannot hold",
            list.class,
            classes.join(", ")
        )
    })
}

/// One type for `a` and `b`, if they can share one: structs whose fields differ by whole fields
/// (made `Option`), lists of such, a lone `base_0` next to a list `base`.
pub fn unify(a: &Ty, b: &Ty) -> Option<Ty> {
    match (a, b) {
        (Ty::Leaf(x), Ty::Leaf(y)) => ((x.dtype, x.scalar) == (y.dtype, y.scalar)).then(|| {
            Ty::Leaf(LeafTy {
                shape: unify_shapes(x.shape.as_deref(), y.shape.as_deref()),
                ..x.clone()
            })
        }),
        (Ty::Map(x), Ty::Map(y)) => Some(Ty::Map(if x == y {
            x.clone()
        } else {
            LeafTy {
                dtype: None,
                scalar: false,
                shape: None,
            }
        })),
        (Ty::Struct(x), Ty::Struct(y)) => unify_structs(x, y).map(|s| Ty::Struct(Box::new(s))),
        (Ty::Vec(x), Ty::Vec(y)) => unify(x, y).map(|t| Ty::Vec(Box::new(t))),
        (Ty::Option(x), Ty::Option(y)) => unify(x, y).map(|t| Ty::Option(Box::new(t))),
        (Ty::Option(x), y) | (y, Ty::Option(x)) => unify(x, y).map(|t| Ty::Option(Box::new(optional_inner(t)))),
        _ => None,
    }
}

/// The shape of list elements of shapes `a` and `b`: sizes where they agree, `None` where they
/// differ; no shape if their ranks differ.
fn unify_shapes(a: Option<&[Option<usize>]>, b: Option<&[Option<usize>]>) -> Option<Vec<Option<usize>>> {
    let (a, b) = (a?, b?);
    (a.len() == b.len()).then(|| a.iter().zip(b).map(|(x, y)| if x == y { *x } else { None }).collect())
}

/// `t` without an outer `Option` (to avoid `Option<Option<T>>`).
fn optional_inner(t: Ty) -> Ty {
    match t {
        Ty::Option(inner) => *inner,
        t => t,
    }
}

fn optional(t: Ty) -> Ty {
    match t {
        Ty::Option(_) => t,
        t => Ty::Option(Box::new(t)),
    }
}

/// Makes each lone `base_0` of `fields` a list `base` where `other` has a list `base`.
fn promote(fields: &mut [FieldTy], other: &[FieldTy]) {
    for f in fields.iter_mut().filter(|f| f.singleton) {
        let Some((base, 0)) = split_element(&f.name) else {
            continue;
        };
        if other.iter().any(|o| o.name == f.name) {
            continue;
        }
        if other
            .iter()
            .any(|o| o.name == base && o.join == f.join && matches!(o.ty, Ty::Vec(_)))
        {
            f.name = base.to_owned();
            f.ty = Ty::Vec(Box::new(f.ty.clone()));
            f.singleton = false;
        }
    }
}

fn unify_structs(a: &StructTy, b: &StructTy) -> Option<StructTy> {
    if a.role != b.role || a.class != b.class {
        return None;
    }
    let (mut fa, mut fb) = (a.fields.clone(), b.fields.clone());
    promote(&mut fa, &b.fields);
    promote(&mut fb, &a.fields);
    // One struct for both only where one holds every part of the other (a block with a shortcut
    // and one without): sublayers that hold different things (T5's attention and feed-forward
    // layers, which share only their norm) stay different structs.
    let within = |x: &[FieldTy], y: &[FieldTy]| x.iter().all(|f| y.iter().any(|g| g.name == f.name));
    if !fa.iter().any(|f| fb.iter().any(|g| g.name == f.name)) || !(within(&fa, &fb) || within(&fb, &fa)) {
        return None;
    }
    let mut fields = Vec::with_capacity(fa.len().max(fb.len()));
    for f in &fa {
        match fb.iter().find(|g| g.name == f.name) {
            Some(g) => {
                if (f.join, &f.var, &f.list_class) != (g.join, &g.var, &g.list_class) {
                    return None;
                }
                fields.push(FieldTy {
                    ty: unify(&f.ty, &g.ty)?,
                    singleton: f.singleton && g.singleton,
                    ..f.clone()
                });
            }
            None => fields.push(FieldTy {
                ty: optional(f.ty.clone()),
                ..f.clone()
            }),
        }
    }
    for g in fb.iter().filter(|g| !fa.iter().any(|f| f.name == g.name)) {
        fields.push(FieldTy {
            ty: optional(g.ty.clone()),
            ..g.clone()
        });
    }
    Some(StructTy {
        role: a.role,
        class: a.class.clone(),
        fields,
    })
}
