//! Keys, read by the rules of a style, as a tree of modules, lists and tensors: the inverse of how
//! [`Cursor`](super::Cursor) builds them. `safejax codegen` types this tree into structs.
//!
//! - flax, NNX: every `.` is a dict level.
//! - haiku: `wrapper.wrapper.module/~/sub/call.param`: the part before the last `.` is a module
//!   path whose first name is a field of the topmost haiku struct (which stands for haiku's params
//!   dict), joined below with `/~/` or `/`; the parts before it are flax wrappers (`params`,
//!   `state`).
//! - objax: `wrapper.(Root).field(Class).list(Sequential)[i](Class).leaf::VarType`.
//!
//! Where keys cannot all be modules and tensors (a key that is a tensor and also holds others),
//! the nearest enclosing dict becomes a map of tensors, keyed by the rest of each key.

use std::collections::{BTreeMap, HashSet};

use super::parse::{haiku_modules, is_index};
use crate::schema::Style;
use crate::Dtype;

/// How a child's name joins its parent's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Join {
    /// `.`: flax, NNX, haiku parameters and wrappers, objax attributes.
    Dot,
    /// `/~/`: a haiku submodule made in `__init__`.
    Tilde,
    /// `/`: a haiku module made in `__call__`.
    Slash,
}

/// A tensor of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    /// The full key.
    pub key: String,
    /// Its dtype in the file.
    pub dtype: Dtype,
    /// Its shape in the file.
    pub shape: Vec<usize>,
    /// The objax variable type after `::`, if the key has one.
    pub var: Option<String>,
}

/// A node of the tree.
#[derive(Debug, PartialEq)]
pub enum Node {
    /// A tensor.
    Leaf(Leaf),
    /// A dict level.
    Module(Module),
    /// An objax list: `seq(Sequential)[0]...`.
    List(List),
    /// Every key below, as a map of tensors keyed by the rest of the key.
    Map(Vec<Leaf>),
}

/// A dict level: a module, a flax wrapper, haiku's params dict.
#[derive(Debug, Default, PartialEq)]
pub struct Module {
    /// The objax class shown in parentheses.
    pub class: Option<String>,
    /// haiku: whether this is the topmost haiku module of its chain (haiku's params dict), or a
    /// flax wrapper or module below (`false`); `None` when no key says.
    pub haiku_top: Option<bool>,
    /// In the order the file first shows them.
    pub children: Vec<Child>,
}

/// A named child of a module.
#[derive(Debug, PartialEq)]
pub struct Child {
    /// Its name in keys.
    pub name: String,
    /// How the name joins the parent's key.
    pub join: Join,
    /// What it is.
    pub node: Node,
}

/// An objax list, possibly with gaps.
#[derive(Debug, PartialEq)]
pub struct List {
    /// The list's class (`Sequential`, `ModuleList`).
    pub class: String,
    /// The elements the keys show, by index.
    pub elems: BTreeMap<usize, Node>,
}

/// One step from a node to its child.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hop {
    Field(String, Join),
    Index(usize),
}

/// What a key says a node is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Module {
        class: Option<String>,
        haiku_top: Option<bool>,
    },
    List {
        class: String,
    },
    Leaf,
}

/// A key read by a style's rules.
#[derive(Debug)]
struct Parsed {
    root: Kind,
    hops: Vec<(Hop, Kind)>,
    var: Option<String>,
}

/// Reads `key` by the rules of `style`. `wrappers` are the haiku wrapper paths (the dicts above
/// haiku's params dicts) that the other keys show.
fn parse(style: Style, key: &str, wrappers: &HashSet<String>) -> Result<Parsed, String> {
    let module = |haiku_top: Option<bool>| Kind::Module { class: None, haiku_top };
    let dot = |name: &str| Hop::Field(name.to_owned(), Join::Dot);
    match style {
        Style::Flax | Style::Nnx => {
            let parts: Vec<&str> = key.split('.').collect();
            let hops = parts
                .iter()
                .enumerate()
                .map(|(i, p)| (dot(p), if i + 1 == parts.len() { Kind::Leaf } else { module(None) }))
                .collect();
            Ok(Parsed {
                root: module(None),
                hops,
                var: None,
            })
        }
        Style::Haiku => {
            let parts: Vec<&str> = key.split('.').collect();
            let n = parts.len();
            if n == 1 || wrappers.contains(&parts[..n - 1].join(".")) {
                // A tensor of a flax dict (`step`, `opt.count`), not of a haiku module: it says
                // nothing of where haiku's params dicts are.
                let hops = parts
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (dot(p), if i + 1 == n { Kind::Leaf } else { module(None) }))
                    .collect();
                return Ok(Parsed {
                    root: module(None),
                    hops,
                    var: None,
                });
            }
            // Wrappers, then the module path (its first name a field of the top struct), then
            // the parameter.
            let top_at = n - 2;
            let kind_at = |depth: usize| module(Some(depth == top_at));
            let mut hops = Vec::new();
            for (i, part) in parts[..top_at].iter().enumerate() {
                hops.push((dot(part), kind_at(i + 1)));
            }
            for (sep, name) in haiku_modules(parts[n - 2]) {
                let join = match sep {
                    "" => Join::Dot,
                    "/~/" => Join::Tilde,
                    _ => Join::Slash,
                };
                hops.push((Hop::Field(name.to_owned(), join), module(Some(false))));
            }
            hops.push((dot(parts[n - 1]), Kind::Leaf));
            Ok(Parsed {
                root: kind_at(0),
                hops,
                var: None,
            })
        }
        Style::Objax => parse_objax(key),
    }
}

/// The pieces of an objax key.
#[derive(Debug, PartialEq)]
enum Token<'k> {
    Class(&'k str),
    Name(&'k str),
    Index(usize),
}

fn check_class(class: &str, key: &str) -> Result<(), String> {
    if class.is_empty() || class.chars().any(|c| c.is_whitespace() || "()[].:".contains(c)) {
        return Err(format!(
            "`{key}`: `{class}` cannot be an objax class in a struct attribute"
        ));
    }
    Ok(())
}

fn parse_objax(key: &str) -> Result<Parsed, String> {
    let bad = |why: &str| format!("`{key}` is not an objax key: {why}");
    if !key.contains('(') {
        // A tensor of a flax dict around the objax trees (`step`).
        return parse(Style::Flax, key, &HashSet::new());
    }
    let (body, var) = match key.rfind("::") {
        Some(i) => (&key[..i], Some(key[i + 2..].to_owned())),
        None => (key, None),
    };
    let open = body.find('(').ok_or_else(|| bad("no `(Class)`"))?;
    let mut hops = Vec::new();
    if open > 0 {
        // Flax wrappers around the objax tree: `model.(MLP)...`.
        let prefix = body[..open]
            .strip_suffix('.')
            .ok_or_else(|| bad("no `.` before the root class"))?;
        for name in prefix.split('.') {
            hops.push((
                Hop::Field(name.to_owned(), Join::Dot),
                Kind::Module {
                    class: None,
                    haiku_top: None,
                },
            ));
        }
    }
    let mut tokens = Vec::new();
    let mut rest = &body[open..];
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('(') {
            let close = r.find(')').ok_or_else(|| bad("unclosed `(`"))?;
            tokens.push(Token::Class(&r[..close]));
            rest = &r[close + 1..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let close = r.find(']').ok_or_else(|| bad("unclosed `[`"))?;
            let digits = &r[..close];
            let index = digits
                .parse()
                .ok()
                .filter(|_| is_index(digits))
                .ok_or_else(|| bad("a list index is not a number"))?;
            tokens.push(Token::Index(index));
            rest = &r[close + 1..];
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '(', '[']).unwrap_or(r.len());
            if end == 0 {
                return Err(bad("an empty name"));
            }
            tokens.push(Token::Name(&r[..end]));
            rest = &r[end..];
        } else {
            return Err(bad("expected `.name`, `(Class)` or `[index]`"));
        }
    }
    let mut tokens = tokens.into_iter().peekable();
    let Some(Token::Class(root_class)) = tokens.next() else {
        return Err(bad("no root class"));
    };
    check_class(root_class, key)?;
    let root_kind = Kind::Module {
        class: Some(root_class.to_owned()),
        haiku_top: None,
    };
    let root = if hops.is_empty() {
        root_kind
    } else {
        hops.last_mut().expect("a wrapper").1 = root_kind;
        Kind::Module {
            class: None,
            haiku_top: None,
        }
    };
    while let Some(token) = tokens.next() {
        let hop = match token {
            Token::Name(name) => Hop::Field(name.to_owned(), Join::Dot),
            Token::Index(i) => Hop::Index(i),
            Token::Class(_) => return Err(bad("two classes in a row")),
        };
        if matches!(hop, Hop::Index(_)) && !matches!(hops.last(), Some((_, Kind::List { .. }))) {
            return Err(bad("an index outside a list"));
        }
        let kind = match tokens.peek() {
            None => Kind::Leaf,
            Some(Token::Class(class)) => {
                let class = (*class).to_owned();
                check_class(&class, key)?;
                tokens.next();
                if matches!(tokens.peek(), Some(Token::Index(_))) {
                    Kind::List { class }
                } else {
                    Kind::Module {
                        class: Some(class),
                        haiku_top: None,
                    }
                }
            }
            Some(_) => return Err(bad("a name without a class before more of the key")),
        };
        hops.push((hop, kind));
    }
    if !matches!(hops.last(), Some((_, Kind::Leaf))) {
        return Err(bad("it ends at a module"));
    }
    Ok(Parsed { root, hops, var })
}

/// Two keys disagree about what the node at `depth` hops of key `key` is.
struct Conflict {
    key: usize,
    depth: usize,
}

/// The tree of `keys` (with their dtypes and shapes) read by `style`; an error saying why when
/// they cannot make one (an objax key that does not parse, or keys that disagree at the root).
pub fn build(style: Style, leaves: &[(String, Dtype, Vec<usize>)]) -> Result<Node, String> {
    // haiku: the dicts above the params dicts, as the keys with a module path show them.
    let mut wrappers = HashSet::new();
    if style == Style::Haiku {
        for (key, _, _) in leaves {
            let parts: Vec<&str> = key.split('.').collect();
            for i in 1..parts.len().saturating_sub(1) {
                wrappers.insert(parts[..i].join("."));
            }
        }
    }
    let parsed = leaves
        .iter()
        .map(|(key, _, _)| parse(style, key, &wrappers))
        .collect::<Result<Vec<_>, String>>()?;
    let mut opaque: Vec<Vec<Hop>> = Vec::new();
    loop {
        let conflict = match try_build(leaves, &parsed, &opaque) {
            Ok(node) => return Ok(node),
            Err(conflict) => conflict,
        };
        let hops = &parsed[conflict.key].hops;
        let candidate = (1..=conflict.depth.min(hops.len())).rev().find(|&j| {
            let prefix: Vec<Hop> = hops[..j].iter().map(|(h, _)| h.clone()).collect();
            let plain = hops[..j].iter().all(|(hop, kind)| {
                matches!(hop, Hop::Field(_, Join::Dot)) && matches!(kind, Kind::Module { class: None, .. })
            });
            if !plain || opaque.contains(&prefix) {
                return false;
            }
            // Every key below must read as `prefix.rest`, the keys of a map of tensors there.
            let dotted: Vec<&str> = prefix
                .iter()
                .map(|h| match h {
                    Hop::Field(name, _) => name.as_str(),
                    Hop::Index(_) => unreachable!("plain hops are fields"),
                })
                .collect();
            let start = format!("{}.", dotted.join("."));
            parsed.iter().zip(leaves).all(|(p, (key, _, _))| {
                let below = p.hops.len() >= j && p.hops[..j].iter().map(|(h, _)| h).eq(prefix.iter());
                !below || key.starts_with(&start)
            })
        });
        match candidate {
            Some(j) => {
                let prefix: Vec<Hop> = hops[..j].iter().map(|(h, _)| h.clone()).collect();
                // A map here takes the place of any map below it.
                opaque.retain(|o| !o.starts_with(&prefix));
                opaque.push(prefix);
            }
            None => {
                let key = &leaves[conflict.key].0;
                return Err(format!(
                    "`{key}` does not fit the tree of the other keys (a name that is both a tensor and a \
                     module, or modules of different classes)"
                ));
            }
        }
    }
}

fn try_build(leaves: &[(String, Dtype, Vec<usize>)], parsed: &[Parsed], opaque: &[Vec<Hop>]) -> Result<Node, Conflict> {
    let mut root: Option<Node> = None;
    for (k, (p, (key, dtype, shape))) in parsed.iter().zip(leaves).enumerate() {
        let conflict = |depth| Conflict { key: k, depth };
        let leaf = Leaf {
            key: key.clone(),
            dtype: *dtype,
            shape: shape.clone(),
            var: p.var.clone(),
        };
        let root = root.get_or_insert_with(|| new_node(&p.root));
        merge(root, &p.root).map_err(|()| conflict(0))?;
        let cut = opaque
            .iter()
            .find(|o| p.hops.len() > o.len() && p.hops[..o.len()].iter().map(|(h, _)| h).eq(o.iter()))
            .map(Vec::len);
        let mut at = root;
        for (depth, (hop, kind)) in p.hops.iter().enumerate() {
            if Some(depth) == cut {
                match at {
                    Node::Map(list) => list.push(leaf),
                    _ => return Err(conflict(depth)),
                }
                break;
            }
            let to_map = Some(depth + 1) == cut;
            at = child(at, hop, kind, to_map).map_err(|()| conflict(depth + 1))?;
            if matches!(kind, Kind::Leaf) {
                *at = Node::Leaf(leaf);
                break;
            }
        }
    }
    Ok(root.unwrap_or_else(|| Node::Module(Module::default())))
}

fn new_node(kind: &Kind) -> Node {
    match kind {
        Kind::Module { class, haiku_top } => Node::Module(Module {
            class: class.clone(),
            haiku_top: *haiku_top,
            children: Vec::new(),
        }),
        Kind::List { class } => Node::List(List {
            class: class.clone(),
            elems: BTreeMap::new(),
        }),
        // Filled by the caller.
        Kind::Leaf => Node::Map(Vec::new()),
    }
}

/// Checks that `node` can be what `kind` says, and records what it adds.
fn merge(node: &mut Node, kind: &Kind) -> Result<(), ()> {
    match (node, kind) {
        (Node::Module(m), Kind::Module { class, haiku_top }) => {
            if &m.class != class {
                return Err(());
            }
            match (m.haiku_top, haiku_top) {
                (Some(a), Some(b)) if a != *b => return Err(()),
                (None, Some(b)) => m.haiku_top = Some(*b),
                _ => {}
            }
            Ok(())
        }
        (Node::List(l), Kind::List { class }) if &l.class == class => Ok(()),
        _ => Err(()),
    }
}

/// The child of `node` at `hop`, made if new; `to_map` makes it a map of tensors.
fn child<'n>(node: &'n mut Node, hop: &Hop, kind: &Kind, to_map: bool) -> Result<&'n mut Node, ()> {
    let slot = match (node, hop) {
        (Node::Module(m), Hop::Field(name, join)) => {
            let i = match m.children.iter().position(|c| &c.name == name) {
                Some(i) => {
                    if m.children[i].join != *join {
                        return Err(());
                    }
                    i
                }
                None => {
                    let node = if to_map { Node::Map(Vec::new()) } else { new_node(kind) };
                    m.children.push(Child {
                        name: name.clone(),
                        join: *join,
                        node,
                    });
                    m.children.len() - 1
                }
            };
            &mut m.children[i].node
        }
        (Node::List(l), Hop::Index(i)) => {
            l.elems
                .entry(*i)
                .or_insert_with(|| if to_map { Node::Map(Vec::new()) } else { new_node(kind) })
        }
        _ => return Err(()),
    };
    if to_map {
        return if matches!(slot, Node::Map(_)) {
            Ok(slot)
        } else {
            Err(())
        };
    }
    if matches!(kind, Kind::Leaf) {
        // A fresh leaf slot is an empty map placeholder; anything else is already taken.
        return match slot {
            Node::Map(list) if list.is_empty() => Ok(slot),
            _ => Err(()),
        };
    }
    merge(slot, kind)?;
    Ok(slot)
}
