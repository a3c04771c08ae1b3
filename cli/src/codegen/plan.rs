//! From structural types to the structs to print: structs of one shape become one struct, each
//! gets a name (from the names of the fields that hold it), its fields Rust names, and the
//! `#[safejax]` attributes that make its keys.

use std::collections::{BTreeSet, HashMap};

use safejax::__private::keys::Join;
use safejax::__private::{ObjaxVar, Style};
use safejax::Dtype;

use super::infer::{LeafTy, Role, StructTy, Ty};
use super::names::{camel, field_ident, is_reserved_type, singular, strip_index, words};
use safejax::__private::keys::is_index;

/// A field's type, with structs by index into [`Plan::structs`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PTy {
    Leaf(LeafTy),
    Struct(usize),
    Vec(Box<PTy>),
    Option(Box<PTy>),
    Map(LeafTy),
}

impl PTy {
    /// The struct inside, if any, and whether it is inside a list.
    fn inner_struct(&self) -> Option<(usize, bool)> {
        match self {
            PTy::Struct(id) => Some((*id, false)),
            PTy::Option(t) => t.inner_struct(),
            PTy::Vec(t) => t.inner_struct().map(|(id, _)| (id, true)),
            PTy::Leaf(_) | PTy::Map(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldDef {
    /// The Rust name.
    pub ident: String,
    /// The name in keys (serde's).
    pub name: String,
    pub ty: PTy,
    /// `#[safejax(join = "/")]`.
    pub slash: bool,
    /// `#[safejax(var = "...")]`, for other variable types than objax's default `TrainVar`.
    pub var: Option<String>,
    /// `#[safejax(class = "...")]`: the objax list class, if not `Sequential`.
    pub list_class: Option<String>,
}

#[derive(Debug)]
pub struct StructDef {
    pub name: String,
    /// `None` for a struct of tensors only, whose keys are the same in every style but objax.
    pub role: Option<Role>,
    /// `#[safejax(style = "...")]`, where the style differs from a parent's.
    pub style_attr: Option<Style>,
    /// The objax class shown in keys.
    pub class: Option<String>,
    pub fields: Vec<FieldDef>,
}

impl StructDef {
    /// `#[safejax(class = "...")]`: when the struct's name is not the class.
    pub fn class_attr(&self) -> Option<&str> {
        self.class.as_deref().filter(|c| *c != self.name)
    }
}

/// The structs to print; the root is `structs[0]`.
#[derive(Debug)]
pub struct Plan {
    pub structs: Vec<StructDef>,
}

/// The canonical form of a struct: what makes two structs the same.
type Key = (
    Option<Role>,
    Option<String>,
    Vec<(String, PTy, bool, Option<String>, Option<String>)>,
);

struct Interner {
    structs: Vec<StructDef>,
    index: HashMap<Key, usize>,
}

impl Interner {
    fn ty(&mut self, ty: &Ty) -> PTy {
        match ty {
            Ty::Leaf(l) => PTy::Leaf(l.clone()),
            Ty::Map(l) => PTy::Map(l.clone()),
            Ty::Vec(t) => PTy::Vec(Box::new(self.ty(t))),
            Ty::Option(t) => PTy::Option(Box::new(self.ty(t))),
            Ty::Struct(s) => PTy::Struct(self.strukt(s)),
        }
    }

    fn strukt(&mut self, s: &StructTy) -> usize {
        let fields: Vec<FieldDef> = s
            .fields
            .iter()
            .map(|f| FieldDef {
                ident: String::new(),
                name: f.name.clone(),
                ty: self.ty(&f.ty),
                slash: f.join == Join::Slash,
                var: f.var.clone().filter(|v| v != ObjaxVar::TrainVar.name()),
                list_class: f.list_class.clone(),
            })
            .collect();
        // Tensors only (no list, whose elements each style names its own way): the same keys in
        // flax, NNX and haiku.
        let plain = |t: &PTy| match t {
            PTy::Option(inner) => matches!(**inner, PTy::Leaf(_)),
            t => matches!(t, PTy::Leaf(_) | PTy::Map(_)),
        };
        let role = (s.role == Role::Objax || !fields.iter().all(|f| plain(&f.ty))).then_some(s.role);
        let mut canonical: Vec<_> = fields
            .iter()
            .map(|f| {
                (
                    f.name.clone(),
                    f.ty.clone(),
                    f.slash,
                    f.var.clone(),
                    f.list_class.clone(),
                )
            })
            .collect();
        canonical.sort();
        let key = (role, s.class.clone(), canonical);
        if let Some(&id) = self.index.get(&key) {
            return id;
        }
        let id = self.structs.len();
        self.structs.push(StructDef {
            name: String::new(),
            role,
            style_attr: None,
            class: s.class.clone(),
            fields,
        });
        self.index.insert(key, id);
        id
    }
}

/// Where a struct is used: the field's name words, the struct holding it, the top-level field
/// above it.
struct Use {
    hint: Vec<String>,
    parent: usize,
    top: Option<Vec<String>>,
}

/// Plans the structs for `root`, named `root_name`.
pub fn plan(root: &StructTy, root_name: &str) -> Plan {
    let mut interner = Interner {
        structs: Vec::new(),
        index: HashMap::new(),
    };
    let root_id = interner.strukt(root);
    let mut structs = interner.structs;

    // Uses, in the order a reader meets them (root first, depth first).
    let order = preorder(&structs, root_id, false);
    let mut uses: HashMap<usize, Vec<Use>> = HashMap::new();
    collect_uses(&structs, root_id, &[], None, &mut vec![false; structs.len()], &mut uses);
    // The first use names a struct's parent and top-level field in its candidate names: the first
    // by name, not by the file's order, so that every format of a model gives the same names. Uses
    // alike in name and top-level field go by their parent's place in the by-name order, which is
    // the same in every format (and names that parent before the struct).
    let by_name = preorder(&structs, root_id, true);
    let mut rank = vec![usize::MAX; structs.len()];
    for (r, &id) in by_name.iter().enumerate() {
        rank[id] = r;
    }
    for u in uses.values_mut() {
        u.sort_by(|a, b| (&a.hint, &a.top, rank[a.parent]).cmp(&(&b.hint, &b.top, rank[b.parent])));
    }
    // How often each name is used for any struct: the tie-breaker between names.
    let mut popularity: HashMap<Vec<String>, usize> = HashMap::new();
    for u in uses.values().flatten() {
        *popularity.entry(u.hint.clone()).or_default() += 1;
    }

    // Styles: an attribute where a use sits under a struct of another style (the root under flax).
    for &id in &order {
        let Some(role) = structs[id].role else { continue };
        let wanted = role.style();
        let differs = if id == root_id {
            wanted != Style::Flax
        } else {
            uses.get(&id).into_iter().flatten().any(|u| {
                let parent = structs[u.parent].role.map_or(Style::Flax, Role::style);
                parent != wanted
            })
        };
        if differs {
            structs[id].style_attr = Some(wanted);
        }
    }

    // Names, given depth first in the order of field names, not of the file: where two structs
    // would take one name, which gets it does not depend on the format the model was saved in.
    let mut taken: HashMap<String, usize> = HashMap::new();
    for &id in &by_name {
        let name = if id == root_id {
            root_name.to_owned()
        } else {
            let no_uses = Vec::new();
            let uses = uses.get(&id).unwrap_or(&no_uses);
            let base = match &structs[id].class {
                Some(class) => camel(&words(class)),
                None => base_name(&structs[id], uses, &popularity),
            };
            let mut candidates = Vec::new();
            let parent_name = uses.first().map(|u| structs[u.parent].name.clone()).unwrap_or_default();
            let top = uses.first().and_then(|u| u.top.as_ref()).map(|t| camel(t));
            if is_reserved_type(&base) {
                candidates.push(format!("{parent_name}{base}"));
            } else {
                candidates.push(base.clone());
                if let Some(&holder) = taken.get(&base) {
                    if erased(&structs, &PTy::Struct(holder)) == erased(&structs, &PTy::Struct(id)) {
                        if let Some(suffix) = dtype_suffix(&structs, id) {
                            candidates.push(format!("{base}{suffix}"));
                        }
                    }
                }
                // A longer name of a field that holds it: `WordEmbeddings`.
                if structs[id].class.is_none() {
                    candidates.extend(favourite(uses, &popularity).map(|h| camel(h)));
                }
                if let Some(top) = top.filter(|t| *t != base) {
                    candidates.push(format!("{top}{base}"));
                }
                candidates.push(format!("{parent_name}{base}"));
            }
            let free = |n: &String| !taken.contains_key(n) && !is_reserved_type(n) && n != root_name;
            match candidates.into_iter().find(free) {
                Some(name) => name,
                None => (2..).map(|n| format!("{base}{n}")).find(free).expect("a free name"),
            }
        };
        taken.insert(name.clone(), id);
        structs[id].name = name;
    }

    // Field names, unique within each struct.
    for s in &mut structs {
        let mut used = BTreeSet::new();
        for f in &mut s.fields {
            let base = field_ident(&f.name);
            let mut ident = base.clone();
            let mut n = 2;
            while !used.insert(ident.clone()) {
                ident = format!("{base}_{n}");
                n += 1;
            }
            f.ident = ident;
        }
    }

    // Put the structs in reading order, the root first.
    let mut position = vec![0; structs.len()];
    for (p, &id) in order.iter().enumerate() {
        position[id] = p;
    }
    let remap = |t: &PTy| remap(t, &position);
    let mut ordered: Vec<Option<StructDef>> = structs.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(order.len());
    for &id in &order {
        let mut s = ordered[id].take().expect("each struct once");
        for f in &mut s.fields {
            f.ty = remap(&f.ty);
        }
        out.push(s);
    }
    Plan { structs: out }
}

/// Records where each struct is used, depth first from `id` (named by `own_hint` and under the
/// top-level field `top`).
fn collect_uses(
    structs: &[StructDef],
    id: usize,
    own_hint: &[String],
    top: Option<&Vec<String>>,
    seen: &mut Vec<bool>,
    uses: &mut HashMap<usize, Vec<Use>>,
) {
    seen[id] = true;
    for f in &structs[id].fields {
        let Some((child, in_list)) = f.ty.inner_struct() else {
            continue;
        };
        let mut hint = if is_index(&f.name) {
            // An NNX list of differing elements: `layers.0` is a layer, named after what it holds
            // that the others do not (T5's `layer.0` is a `SelfAttentionLayer`).
            let mut hint = distinctive_field(structs, id, child).map(words).unwrap_or_default();
            hint.extend(singular(own_hint.to_vec()));
            hint
        } else {
            words(strip_index(&f.name))
        };
        if in_list {
            hint = singular(hint);
        }
        let child_top = top.cloned().unwrap_or_else(|| hint.clone());
        uses.entry(child).or_default().push(Use {
            hint: hint.clone(),
            parent: id,
            top: Some(child_top.clone()),
        });
        if !seen[child] {
            collect_uses(structs, child, &hint, Some(&child_top), seen, uses);
        }
    }
}

/// The first field by name of `child` that the structs of `parent`'s other index fields (`0`,
/// `1`, ...) lack, if they are other structs.
fn distinctive_field(structs: &[StructDef], parent: usize, child: usize) -> Option<&str> {
    let siblings: Vec<usize> = structs[parent]
        .fields
        .iter()
        .filter(|f| is_index(&f.name))
        .filter_map(|f| f.ty.inner_struct().map(|(id, _)| id))
        .filter(|&id| id != child)
        .collect();
    if siblings.is_empty() {
        return None;
    }
    let mut names: Vec<&str> = structs[child].fields.iter().map(|f| f.name.as_str()).collect();
    names.sort_unstable();
    names.into_iter().find(|name| {
        siblings
            .iter()
            .all(|&s| structs[s].fields.iter().all(|f| f.name != *name))
    })
}

/// The structs reachable from `root`, depth first, in field order (`by_name`: in the order of the
/// fields' names).
fn preorder(structs: &[StructDef], root: usize, by_name: bool) -> Vec<usize> {
    fn visit(structs: &[StructDef], id: usize, by_name: bool, seen: &mut Vec<bool>, out: &mut Vec<usize>) {
        if std::mem::replace(&mut seen[id], true) {
            return;
        }
        out.push(id);
        let mut fields: Vec<&FieldDef> = structs[id].fields.iter().collect();
        if by_name {
            fields.sort_by(|a, b| a.name.cmp(&b.name));
        }
        for f in fields {
            if let Some((child, _)) = f.ty.inner_struct() {
                visit(structs, child, by_name, seen, out);
            }
        }
    }
    let mut out = Vec::new();
    visit(structs, root, by_name, &mut vec![false; structs.len()], &mut out);
    out
}

fn remap(t: &PTy, position: &[usize]) -> PTy {
    match t {
        PTy::Struct(id) => PTy::Struct(position[*id]),
        PTy::Vec(t) => PTy::Vec(Box::new(remap(t, position))),
        PTy::Option(t) => PTy::Option(Box::new(remap(t, position))),
        other => other.clone(),
    }
}

/// The distinct names of the fields that hold a struct, with how often each holds it.
fn distinct(uses: &[Use]) -> Vec<(&Vec<String>, usize)> {
    let mut distinct: Vec<(&Vec<String>, usize)> = Vec::new();
    for u in uses {
        match distinct.iter_mut().find(|(h, _)| *h == &u.hint) {
            Some((_, n)) => *n += 1,
            None => distinct.push((&u.hint, 1)),
        }
    }
    distinct
}

/// The name of the fields that hold a struct most often (then: that name most used in the file,
/// then the first in alphabetical order, which does not depend on the order of the file).
fn favourite<'u>(uses: &'u [Use], popularity: &HashMap<Vec<String>, usize>) -> Option<&'u Vec<String>> {
    let distinct = distinct(uses);
    let score = |(h, n): &(&Vec<String>, usize)| (*n, popularity.get(*h).copied().unwrap_or(0));
    let best = distinct.iter().map(score).max()?;
    distinct.iter().filter(|d| score(d) == best).map(|(h, _)| *h).min()
}

/// JAX's names for the modules whose tensors are named by convention: (the tensors, the name).
/// Flax's `Dense` holds `kernel` and `bias`, its `LayerNorm` `scale` and `bias`, `RMSNorm`
/// `scale`, `Embed` `embedding`.
const CONVENTIONS: &[(&[&str], &str)] = &[
    (&["bias", "kernel"], "Dense"),
    (&["kernel"], "DenseNoBias"),
    (&["bias", "scale"], "LayerNorm"),
    (&["scale"], "RmsNorm"),
    (&["embedding"], "Embed"),
];

/// The JAX convention a struct of tensors only follows, by the names of its tensors.
fn convention(s: &StructDef) -> Option<&'static str> {
    if !s.fields.iter().all(|f| matches!(&f.ty, PTy::Leaf(l) if !l.scalar)) {
        return None;
    }
    let mut names: Vec<&str> = s.fields.iter().map(|f| f.name.as_str()).collect();
    names.sort_unstable();
    CONVENTIONS
        .iter()
        .find(|(tensors, _)| *tensors == names.as_slice())
        .map(|(_, name)| *name)
}

/// A struct's name from the names of the fields that hold it: the words they end with in common
/// (`initial_conv`, `conv`, `shortcut_conv`: `Conv`); where they have none, the JAX convention of
/// its tensors (`wte`, `wpe`: `Embed`), else the favourite.
fn base_name(s: &StructDef, uses: &[Use], popularity: &HashMap<Vec<String>, usize>) -> String {
    let distinct = distinct(uses);
    let Some(&(first, _)) = distinct.first() else {
        return "Module".to_owned();
    };
    let mut common = first.len();
    for (h, _) in &distinct {
        let shared = first
            .iter()
            .rev()
            .zip(h.iter().rev())
            .take_while(|(a, b)| a == b)
            .count();
        common = common.min(shared);
    }
    if common > 0 {
        return camel(&first[first.len() - common..]);
    }
    if let Some(name) = convention(s).filter(|_| distinct.len() > 1) {
        return name.to_owned();
    }
    favourite(uses, popularity).map_or_else(|| "Module".to_owned(), |h| camel(h))
}

/// A struct's layout (fields, kinds, tensor shapes) with dtypes left out, to tell structs that
/// differ only by dtype.
fn erased(structs: &[StructDef], t: &PTy) -> String {
    match t {
        PTy::Leaf(l) => format!("leaf{}{:?}", if l.scalar { "0" } else { "" }, l.shape),
        PTy::Map(_) => "map".to_owned(),
        PTy::Vec(t) => format!("vec<{}>", erased(structs, t)),
        PTy::Option(t) => format!("option<{}>", erased(structs, t)),
        PTy::Struct(id) => {
            let s = &structs[*id];
            let mut fields: Vec<String> = s
                .fields
                .iter()
                .map(|f| {
                    format!(
                        "{}:{}:{}:{:?}:{:?}",
                        f.name,
                        erased(structs, &f.ty),
                        f.slash,
                        f.var,
                        f.list_class
                    )
                })
                .collect();
            fields.sort();
            format!("{:?}{:?}{{{}}}", s.role, s.class, fields.join(","))
        }
    }
}

/// `Bf16` for a struct whose tensors are all bf16.
fn dtype_suffix(structs: &[StructDef], id: usize) -> Option<String> {
    fn collect(structs: &[StructDef], t: &PTy, out: &mut BTreeSet<Option<Dtype>>) {
        match t {
            PTy::Leaf(l) | PTy::Map(l) => {
                out.insert(l.dtype);
            }
            PTy::Vec(t) | PTy::Option(t) => collect(structs, t, out),
            PTy::Struct(id) => {
                for f in &structs[*id].fields {
                    collect(structs, &f.ty, out);
                }
            }
        }
    }
    let mut dtypes = BTreeSet::new();
    collect(structs, &PTy::Struct(id), &mut dtypes);
    match dtypes.into_iter().collect::<Vec<_>>()[..] {
        [Some(dtype)] => Some(camel(&words(&dtype.name().to_ascii_lowercase()))),
        _ => None,
    }
}
