//! Both directions of the key grammar, for every style, on random param trees: keys built by
//! [`Cursor`] (as the serializer builds them) are read back by [`tree::build`] into the tree the
//! model describes, and the resolver reads them back with the model's schema, claiming every key.
//!
//! The expected trees are written from the style table in the module docs, independently of the
//! code under test. A model is made from a list of choices (bytes), so that proptest shrinks a
//! failure to a small tree.

use proptest::prelude::*;

use super::tree::{self, Child, Join as TreeJoin, Leaf, List, Module, Node};
use super::{Cursor, DEFAULT_LIST_CLASS};
use crate::resolve::check_keys;
use crate::schema::{FieldSchema, Join, LeafSchema, ObjaxVar, Schema, SchemaRef, SeqSchema, StructSchema, Style};
use crate::Dtype;

/// A node of a random param tree: what decides its keys.
#[derive(Debug, Clone)]
enum M {
    Leaf,
    Struct(MStruct),
    /// A `Vec` of `len` elements alike.
    List(Box<M>, usize),
}

#[derive(Debug, Clone)]
struct MStruct {
    name: String,
    style: Option<Style>,
    class: Option<String>,
    fields: Vec<MField>,
}

#[derive(Debug, Clone)]
struct MField {
    name: String,
    join: Option<Join>,
    var: Option<ObjaxVar>,
    list_class: Option<&'static str>,
    node: M,
}

/// Draws decisions from proptest's bytes; 0 once they run out, which makes the smallest tree.
struct Choices<'a> {
    bytes: &'a [u8],
    at: usize,
    names: usize,
}

impl Choices<'_> {
    fn pick(&mut self, n: usize) -> usize {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        usize::from(b) % n
    }

    /// A fresh lowercase name: no digit or separator, so that no name reads as a list element.
    fn name(&mut self) -> String {
        self.names += 1;
        let mut n = self.names;
        let mut out = String::new();
        while n > 0 {
            out.push(char::from(b'a' + (n % 26) as u8));
            n /= 26;
        }
        out
    }

    fn class(&mut self) -> String {
        let name = self.name();
        let mut chars = name.chars();
        let first = chars.next().expect("a name").to_ascii_uppercase();
        std::iter::once(first).chain(chars).collect()
    }

    /// A struct of `style` (set on it when `explicit`): a leaf first (every struct has keys), then
    /// leaves, submodules and lists. `top` is haiku's params dict, which must hold a module.
    fn strukt(&mut self, style: Style, explicit: bool, depth: usize, top: bool) -> MStruct {
        let mut fields = vec![self.leaf_field(style)];
        let extra = self.pick(3) + usize::from(top);
        for i in 0..extra {
            let kind = if depth == 0 {
                0
            } else if top && i == 0 {
                1
            } else {
                self.pick(4)
            };
            let field = match kind {
                0 => self.leaf_field(style),
                1 => {
                    let explicit = self.pick(2) == 0;
                    let child = self.strukt(style, explicit, depth - 1, false);
                    self.module_field(style, top, M::Struct(child))
                }
                2 => {
                    let child = self.strukt(style, false, depth - 1, false);
                    let len = 1 + self.pick(3);
                    self.module_field(style, top, M::List(Box::new(M::Struct(child)), len))
                }
                _ => {
                    let mut field = self.leaf_field(style);
                    field.node = M::List(Box::new(M::Leaf), 1 + self.pick(3));
                    field.list_class = self.list_class(style);
                    field
                }
            };
            fields.push(field);
        }
        let class = (style == Style::Objax && self.pick(2) == 0).then(|| self.class());
        MStruct {
            name: self.class(),
            style: explicit.then_some(style),
            class,
            fields,
        }
    }

    fn leaf_field(&mut self, style: Style) -> MField {
        let var = match (style, self.pick(4)) {
            (Style::Objax, 1) => Some(ObjaxVar::StateVar),
            (Style::Objax, 2) => Some(ObjaxVar::RandomState),
            (Style::Objax, 3) => Some(ObjaxVar::TrainVar),
            _ => None,
        };
        MField {
            name: self.name(),
            join: None,
            var,
            list_class: None,
            node: M::Leaf,
        }
    }

    fn module_field(&mut self, style: Style, top: bool, node: M) -> MField {
        let join = match (style, top, self.pick(3)) {
            (Style::Haiku, false, 1) => Some(Join::Slash),
            (Style::Haiku, false, 2) => Some(Join::Tilde),
            _ => None,
        };
        let list_class = if matches!(node, M::List(..)) {
            self.list_class(style)
        } else {
            None
        };
        MField {
            name: self.name(),
            join,
            var: None,
            list_class,
            node,
        }
    }

    fn list_class(&mut self, style: Style) -> Option<&'static str> {
        (style == Style::Objax && self.pick(2) == 0).then_some("ModuleList")
    }

    /// The root of a tree of `style`: haiku and objax trees sometimes sit in a flax wrapper
    /// (`{"params": ..., "step": ...}`).
    fn root(&mut self, style: Style) -> MStruct {
        let wrapped = matches!(style, Style::Haiku | Style::Objax) && self.pick(2) == 0;
        if !wrapped {
            let explicit = style != Style::Flax || self.pick(2) == 0;
            return self.strukt(style, explicit, 2, style == Style::Haiku);
        }
        let mut fields = Vec::new();
        if self.pick(2) == 0 {
            fields.push(self.leaf_field(Style::Flax));
        }
        for _ in 0..1 + self.pick(2) {
            let inner = self.strukt(style, true, 2, style == Style::Haiku);
            fields.push(MField {
                name: self.name(),
                join: None,
                var: None,
                list_class: None,
                node: M::Struct(inner),
            });
        }
        MStruct {
            name: self.class(),
            style: None,
            class: None,
            fields,
        }
    }
}

impl M {
    fn is_leafy(&self) -> bool {
        match self {
            M::Leaf => true,
            M::Struct(_) => false,
            M::List(element, _) => element.is_leafy(),
        }
    }
}

/// The keys of the tree, in the order the serializer visits them, by the library's [`Cursor`].
fn keys(m: &M, schema: &'static Schema, cursor: &Cursor, out: &mut Vec<String>) {
    match (m, schema) {
        (M::Leaf, _) => out.push(cursor.leaf_key()),
        (M::Struct(s), Schema::Struct(ss)) => {
            let inside = cursor.enter_struct(ss);
            for (f, fs) in s.fields.iter().zip(ss.fields) {
                keys(&f.node, fs.schema.get(), &inside.field(fs, f.node.is_leafy()), out);
            }
        }
        (M::List(element, len), Schema::Seq(seq)) => {
            let list = cursor.enter_list();
            for i in 0..*len {
                keys(element, seq.element.get(), &list.element(i), out);
            }
        }
        _ => unreachable!("the schema is made from the model"),
    }
}

/// The schema `#[derive(Params)]` would emit for the model's structs.
fn schema(m: &M) -> &'static Schema {
    let leak = |s: Schema| -> &'static Schema { Box::leak(Box::new(s)) };
    match m {
        M::Leaf => leak(Schema::Leaf(LeafSchema {
            dtype: Some(Dtype::F32),
            rank: None,
        })),
        M::List(element, _) => leak(Schema::Seq(SeqSchema {
            element: SchemaRef::from_static(schema(element)),
            len: None,
        })),
        M::Struct(s) => {
            let fields: Vec<FieldSchema> = s
                .fields
                .iter()
                .map(|f| FieldSchema {
                    name: f.name.clone().leak(),
                    schema: SchemaRef::from_static(schema(&f.node)),
                    optional: false,
                    join: f.join,
                    var: f.var,
                    class: f.list_class,
                    shape: None,
                })
                .collect();
            leak(Schema::Struct(StructSchema {
                name: s.name.clone().leak(),
                style: s.style,
                class: s.class.clone().map(|c| &*c.leak()),
                fields: fields.leak(),
            }))
        }
    }
}

// The expected trees, one writer per style, from the style table.

fn leaf(key: String, var: Option<ObjaxVar>) -> Node {
    Node::Leaf(Leaf {
        key,
        dtype: Dtype::F32,
        shape: vec![],
        var: var.map(|v| v.name().to_owned()),
    })
}

fn child(name: impl Into<String>, join: TreeJoin, node: Node) -> Child {
    Child {
        name: name.into(),
        join,
        node,
    }
}

fn module(children: Vec<Child>, class: Option<String>, haiku_top: Option<bool>) -> Node {
    Node::Module(Module {
        class,
        haiku_top,
        children,
    })
}

fn dot(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

/// flax (`layers_0.kernel`) and NNX (`layers.0.kernel`): every `.` a dict level.
fn expect_dotted(s: &MStruct, key: &str, nnx: bool) -> Vec<Child> {
    let node = |m: &M, key: String| match m {
        M::Leaf => leaf(key, None),
        M::Struct(c) => module(expect_dotted(c, &key, nnx), None, None),
        M::List(..) => unreachable!("no lists of lists"),
    };
    let mut out = Vec::new();
    for f in &s.fields {
        let at = dot(key, &f.name);
        match &f.node {
            M::List(element, len) if nnx => {
                let elements =
                    (0..*len).map(|i| child(i.to_string(), TreeJoin::Dot, node(element, dot(&at, &i.to_string()))));
                out.push(child(&f.name, TreeJoin::Dot, module(elements.collect(), None, None)));
            }
            M::List(element, len) => {
                for i in 0..*len {
                    let name = format!("{}_{i}", f.name);
                    out.push(child(&name, TreeJoin::Dot, node(element, dot(key, &name))));
                }
            }
            m => out.push(child(&f.name, TreeJoin::Dot, node(m, at))),
        }
    }
    out
}

/// haiku: the top struct's fields are module names (`mlp`), below which submodules join with
/// `/~/` or `/` and list elements are submodules `linear_0`; parameters join with `.`.
fn expect_haiku(s: &MStruct, path: &str, top: bool) -> Vec<Child> {
    let mut out = Vec::new();
    for f in &s.fields {
        let (join, sep) = match (top, f.join) {
            (true, _) => (TreeJoin::Dot, "."),
            (false, Some(Join::Slash)) => (TreeJoin::Slash, "/"),
            (false, _) => (TreeJoin::Tilde, "/~/"),
        };
        let joined = |name: &str| {
            if path.is_empty() {
                name.to_owned()
            } else {
                format!("{path}{sep}{name}")
            }
        };
        let submodule = |c: &MStruct, at: String| module(expect_haiku(c, &at, false), None, Some(false));
        match &f.node {
            M::Leaf => out.push(child(&f.name, TreeJoin::Dot, leaf(dot(path, &f.name), None))),
            M::Struct(c) => out.push(child(&f.name, join, submodule(c, joined(&f.name)))),
            M::List(element, len) => {
                for i in 0..*len {
                    let name = format!("{}_{i}", f.name);
                    out.push(match &**element {
                        M::Leaf => child(&name, TreeJoin::Dot, leaf(dot(path, &name), None)),
                        M::Struct(c) => child(&name, join, submodule(c, joined(&name))),
                        M::List(..) => unreachable!("no lists of lists"),
                    });
                }
            }
        }
    }
    out
}

/// objax: `(Root).field(Class).list(Sequential)[0](Class).leaf::TrainVar`.
fn expect_objax(s: &MStruct, key: &str) -> Vec<Child> {
    let class = |c: &MStruct| c.class.clone().unwrap_or_else(|| c.name.clone());
    let node = |m: &M, at: String, var: Option<ObjaxVar>| match m {
        M::Leaf => {
            let var = var.unwrap_or(ObjaxVar::TrainVar);
            leaf(format!("{at}::{}", var.name()), Some(var))
        }
        M::Struct(c) => {
            let at = format!("{at}({})", class(c));
            module(expect_objax(c, &at), Some(class(c)), None)
        }
        M::List(..) => unreachable!("no lists of lists"),
    };
    let mut out = Vec::new();
    for f in &s.fields {
        let at = format!("{key}.{}", f.name);
        let n = match &f.node {
            M::List(element, len) => {
                let list_class = f.list_class.unwrap_or(DEFAULT_LIST_CLASS);
                let elems = (0..*len)
                    .map(|i| (i, node(element, format!("{at}({list_class})[{i}]"), f.var)))
                    .collect();
                Node::List(List {
                    class: list_class.to_owned(),
                    elems,
                })
            }
            m => node(m, at, f.var),
        };
        out.push(child(&f.name, TreeJoin::Dot, n));
    }
    out
}

fn expect(style: Style, root: &MStruct) -> Node {
    let wrapped = root.style.is_none() && style != Style::Flax;
    match style {
        Style::Flax | Style::Nnx => module(expect_dotted(root, "", style == Style::Nnx), None, None),
        Style::Haiku if !wrapped => module(expect_haiku(root, "", true), None, Some(true)),
        Style::Objax if !wrapped => {
            let class = root.class.clone().unwrap_or_else(|| root.name.clone());
            module(expect_objax(root, &format!("({class})")), Some(class), None)
        }
        Style::Haiku | Style::Objax => {
            let children = root
                .fields
                .iter()
                .map(|f| match &f.node {
                    M::Leaf => child(&f.name, TreeJoin::Dot, leaf(f.name.clone(), None)),
                    M::Struct(s) if style == Style::Haiku => child(
                        &f.name,
                        TreeJoin::Dot,
                        module(expect_haiku(s, &f.name, true), None, Some(true)),
                    ),
                    M::Struct(s) => {
                        let class = s.class.clone().unwrap_or_else(|| s.name.clone());
                        let at = format!("{}.({class})", f.name);
                        child(&f.name, TreeJoin::Dot, module(expect_objax(s, &at), Some(class), None))
                    }
                    M::List(..) => unreachable!("wrappers hold trees and leaves"),
                })
                .collect();
            module(children, None, Some(false).filter(|_| style == Style::Haiku))
        }
    }
}

fn style() -> impl Strategy<Value = Style> {
    prop::sample::select(Style::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn keys_built_read_back_as_the_same_tree(style in style(), bytes in prop::collection::vec(any::<u8>(), 0..48)) {
        let mut choices = Choices { bytes: &bytes, at: 0, names: 0 };
        let root = choices.root(style);
        let model = M::Struct(root.clone());
        let schema = schema(&model);
        let mut built = Vec::new();
        keys(&model, schema, &Cursor::root(), &mut built);

        let mut unique = built.clone();
        unique.sort();
        unique.dedup();
        prop_assert_eq!(unique.len(), built.len(), "two leaves share a key: {:?}", built);

        // Keys to tree.
        let leaves: Vec<(String, Dtype, Vec<usize>)> = built.iter().map(|k| (k.clone(), Dtype::F32, vec![])).collect();
        let parsed = tree::build(style, &leaves).map_err(TestCaseError::fail)?;
        prop_assert_eq!(&parsed, &expect(style, &root), "keys {:?}", built);

        // Keys to the schema's tree: the resolver claims every key, spelled as it writes them.
        let refs: Vec<&str> = built.iter().map(String::as_str).collect();
        let respelled = check_keys(schema, &refs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(respelled.is_empty(), "{:?}", respelled);

        // objax keys without their `::VarType` read too, and are written back with it.
        if style == Style::Objax {
            let bare: Vec<&str> = refs.iter().map(|k| k.rsplit_once("::").map_or(*k, |(body, _)| body)).collect();
            let respelled = check_keys(schema, &bare).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let written: Vec<(usize, String)> = built.iter().cloned().enumerate().filter(|(_, k)| k.contains("::")).collect();
            let mut respelled = respelled;
            respelled.sort();
            prop_assert_eq!(respelled, written);
        }
    }
}
