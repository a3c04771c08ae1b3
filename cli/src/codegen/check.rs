//! Checks planned structs against the file's keys before they are printed, by reading the keys the
//! way `safejax` will: the same key steps per style (its `keys.rs`) and the same matching of a type
//! to a file (its `resolve.rs`: lists take the indices the keys show, options all or nothing, maps
//! the keys left under their prefix). Structs that pass read every key of the file and no other,
//! and write each key back as it was.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::plan::{FieldDef, PTy, Plan, StructDef};
use crate::style::Style;

/// The position of a node in the tree, and its key so far: `safejax`'s `Cursor`.
#[derive(Debug, Clone)]
struct Cursor<'p> {
    key: String,
    style: Style,
    in_struct: bool,
    haiku_top: bool,
    slash: bool,
    var: Option<&'p str>,
    list_class: Option<&'p str>,
}

impl<'p> Cursor<'p> {
    fn root() -> Self {
        Cursor {
            key: String::new(),
            style: Style::Flax,
            in_struct: false,
            haiku_top: false,
            slash: false,
            var: None,
            list_class: None,
        }
    }

    fn joined(&self, separator: &str, name: &str) -> String {
        if self.key.is_empty() {
            name.to_owned()
        } else {
            format!("{}{separator}{name}", self.key)
        }
    }

    fn enter_struct(&self, s: &'p StructDef) -> Self {
        let style = s.style_attr.unwrap_or(self.style);
        let parent_style = self.in_struct.then_some(self.style);
        let key = if style == Style::Objax {
            let class = s.class.as_deref().unwrap_or(&s.name);
            if parent_style == Some(Style::Objax) {
                format!("{}({class})", self.key)
            } else {
                self.joined(".", &format!("({class})"))
            }
        } else {
            self.key.clone()
        };
        Cursor {
            key,
            style,
            in_struct: true,
            haiku_top: style == Style::Haiku && parent_style != Some(Style::Haiku),
            slash: false,
            var: None,
            list_class: None,
        }
    }

    fn separator(&self, child_is_leafy: bool, slash: bool) -> &'static str {
        match self.style {
            Style::Haiku if !child_is_leafy && !self.haiku_top => {
                if slash {
                    "/"
                } else {
                    "/~/"
                }
            }
            _ => ".",
        }
    }

    fn field(&self, f: &'p FieldDef) -> Self {
        Cursor {
            key: self.joined(self.separator(f.ty.is_leafy(), f.slash), &f.name),
            slash: f.slash,
            var: f.var.as_deref(),
            list_class: f.list_class.as_deref(),
            ..self.clone()
        }
    }

    fn enter_list(&self) -> Self {
        let mut list = self.clone();
        if self.style == Style::Objax {
            list.key = format!("{}({})", self.key, self.list_class.unwrap_or("Sequential"));
        }
        list
    }

    fn element_affixes(&self) -> (String, &'static str) {
        let (before, after) = match self.style {
            Style::Flax | Style::Haiku => ("_", ""),
            Style::Nnx => (".", ""),
            Style::Objax => ("[", "]"),
        };
        if self.key.is_empty() && self.style != Style::Objax {
            (String::new(), after)
        } else {
            (format!("{}{before}", self.key), after)
        }
    }

    fn element(&self, index: usize) -> Self {
        let (before, after) = self.element_affixes();
        Cursor {
            key: format!("{before}{index}{after}"),
            ..self.clone()
        }
    }

    fn entry_prefix(&self) -> String {
        self.joined(self.separator(true, self.slash), "")
    }

    fn entry(&self, name: &str) -> Self {
        Cursor {
            key: self.joined(self.separator(true, self.slash), name),
            ..self.clone()
        }
    }

    fn leaf_key(&self) -> String {
        if self.style == Style::Objax {
            format!("{}::{}", self.key, self.var.unwrap_or("TrainVar"))
        } else {
            self.key.clone()
        }
    }

    fn leaf_entry_name<'k>(&self, rest: &'k str) -> &'k str {
        match self.style {
            Style::Objax => rest.rfind("::").map_or(rest, |i| &rest[..i]),
            _ => rest,
        }
    }
}

/// The walk's state.
struct Check<'k, 'p> {
    plan: &'p Plan,
    index: BTreeMap<&'k str, usize>,
    claimed: Vec<bool>,
    found: usize,
    missing: Vec<String>,
    partly: Vec<String>,
    /// objax keys found without their `::VarType`, which is written back.
    without_var: Vec<String>,
}

impl<'k, 'p> Check<'k, 'p> {
    fn node(&mut self, ty: &'p PTy, cursor: &Cursor<'p>) {
        match ty {
            PTy::Leaf(_) => self.leaf(cursor),
            PTy::Struct(id) => {
                let s = &self.plan.structs[*id];
                let inside = cursor.enter_struct(s);
                for f in &s.fields {
                    self.node(&f.ty, &inside.field(f));
                }
            }
            PTy::Option(inner) => {
                let (found, missing) = self.probe(|c| c.node(inner, cursor));
                if found > 0 && !missing.is_empty() {
                    self.partly.push(cursor.key.clone());
                }
            }
            PTy::Vec(element) => {
                let list = cursor.enter_list();
                let len = self.indices(&list).last().map_or(0, |&i| i + 1);
                for i in 0..len {
                    self.node(element, &list.element(i));
                }
            }
            PTy::Map(_) => {
                let prefix = cursor.entry_prefix();
                let mut names: Vec<&'k str> = self
                    .index
                    .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .filter(|(_, &i)| !self.claimed[i])
                    .map(|(&key, _)| cursor.leaf_entry_name(&key[prefix.len()..]))
                    .filter(|name| !name.is_empty())
                    .collect();
                names.sort_unstable();
                names.dedup();
                for name in names {
                    // An entry the file shows is kept if any of it is found.
                    let (found, missing) = self.probe(|c| c.leaf(&cursor.entry(name)));
                    if found > 0 {
                        self.missing.extend(missing);
                    }
                }
            }
        }
    }

    fn leaf(&mut self, cursor: &Cursor<'p>) {
        let key = cursor.leaf_key();
        let (entry, fallback) = match self.index.get(key.as_str()) {
            Some(&i) => (Some(i), false),
            None if cursor.style == Style::Objax => (self.index.get(cursor.key.as_str()).copied(), true),
            None => (None, false),
        };
        match entry {
            Some(i) if !self.claimed[i] => {
                self.claimed[i] = true;
                self.found += 1;
                if fallback {
                    self.without_var.push(cursor.key.clone());
                }
            }
            _ => self.missing.push(key),
        }
    }

    /// Runs `walk`; returns how many keys it took and the keys it found missing (taken back).
    fn probe(&mut self, walk: impl FnOnce(&mut Self)) -> (usize, Vec<String>) {
        let (found, missing) = (self.found, self.missing.len());
        walk(self);
        (self.found - found, self.missing.split_off(missing))
    }

    fn indices(&self, list: &Cursor<'p>) -> Vec<usize> {
        let (before, after) = list.element_affixes();
        let mut found = Vec::new();
        for (key, _) in self
            .index
            .range::<str, _>((Bound::Included(before.as_str()), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(&before))
        {
            let rest = &key[before.len()..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 || !rest[digits..].starts_with(after) {
                continue;
            }
            if let Ok(i) = rest[..digits].parse::<usize>() {
                if i < self.claimed.len() {
                    found.push(i);
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        found
    }
}

/// What reading the file with the planned structs would do.
pub struct Outcome {
    /// objax keys without `::VarType` in the file, which writing back adds.
    pub without_var: Vec<String>,
}

/// Reads `keys` with the plan as `safejax` would; an error naming the keys that would be missing,
/// partly present or left over.
pub fn check(plan: &Plan, keys: &[&str]) -> Result<Outcome, String> {
    let mut check = Check {
        plan,
        index: keys.iter().enumerate().map(|(i, k)| (*k, i)).collect(),
        claimed: vec![false; keys.len()],
        found: 0,
        missing: Vec::new(),
        partly: Vec::new(),
        without_var: Vec::new(),
    };
    let root = PTy::Struct(0);
    check.node(&root, &Cursor::root());
    let unclaimed: Vec<&str> = keys
        .iter()
        .zip(&check.claimed)
        .filter(|(_, c)| !**c)
        .map(|(k, _)| *k)
        .collect();
    let show = |v: &[String]| {
        v.iter()
            .take(3)
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !check.missing.is_empty() {
        return Err(format!(
            "the structs would look for keys the file lacks: {}",
            show(&check.missing)
        ));
    }
    if !check.partly.is_empty() {
        return Err(format!(
            "optional parts would be partly present: {}",
            show(&check.partly)
        ));
    }
    if !unclaimed.is_empty() {
        let unclaimed: Vec<String> = unclaimed.iter().map(|k| k.to_string()).collect();
        return Err(format!("the structs would not read {}", show(&unclaimed)));
    }
    Ok(Outcome {
        without_var: check.without_var,
    })
}
