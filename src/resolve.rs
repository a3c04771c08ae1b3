//! Matches a type's [`Schema`] against a file's entries before any value is built.
//!
//! The walk takes the same key steps as the serializer ([`Cursor`]) and produces a tree of the
//! entries each node of the type takes. Doing this first means every missing key, every partly
//! present `Option` and every unknown key can be reported at once, with suggestions, instead of
//! failing at the first; serde then only walks a tree known to fit.

use crate::dynamic::ANY_LEAF_SCHEMA;
use crate::header::Header;
use crate::keys::Cursor;
use crate::schema::{FieldSchema, LeafSchema, MapKey, Schema, SeqSchema, StructSchema};
use crate::shape::DimBindings;
use crate::{Error, Result};

/// A node of the type, matched to the file: 24 bytes. Children are boxed slices and map names are
/// borrowed from the file's keys. A map of leaves of one kind, what a flat map of many small
/// tensors is, keeps 12 bytes an entry ([`LeafMap`]): the tree is held next to the header and the
/// output until the last leaf is built.
#[derive(Debug)]
pub(crate) enum Resolved<'h> {
    /// A leaf and the index of its header entry (a `u32`: [`resolve_keys`] refuses more).
    Leaf {
        entry: u32,
        schema: &'static LeafSchema,
        /// The field whose `shape = [...]` the leaf must have, if any.
        shaped_by: Option<&'static FieldSchema>,
    },
    /// The struct's fields that are present, in declaration order.
    Struct(Box<[(&'static FieldSchema, Resolved<'h>)]>),
    Seq(Box<[Resolved<'h>]>),
    /// Entries by name: a part of a key, or a list index as the key spells it.
    Map(Box<[(&'h str, Resolved<'h>)]>),
    /// A map whose entries are all leaves of one schema and declared shape.
    Leaves(Box<LeafMap>),
    None,
    Some(Box<Resolved<'h>>),
    /// A leaf the file lacks (reported before deserialization starts).
    Missing,
}

/// The entries of a map of leaves of one kind.
#[derive(Debug)]
pub(crate) struct LeafMap {
    pub schema: &'static LeafSchema,
    pub shaped_by: Option<&'static FieldSchema>,
    /// By name, as [`Resolved::Map`]'s entries.
    pub entries: Box<[MapLeaf]>,
}

/// One entry of a [`LeafMap`]: the header entry, and where in its key the map's name for it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MapLeaf {
    pub entry: u32,
    pub name: (u32, u32),
}

impl MapLeaf {
    /// The name, within `key`, the key of the leaf's entry.
    pub(crate) fn name<'k>(&self, key: &'k str) -> &'k str {
        &key[self.name.0 as usize..self.name.1 as usize]
    }
}

impl Resolved<'_> {
    /// Appends the header entries this tree reads, in the order the type visits them: what a
    /// partial load must fetch.
    pub(crate) fn entries(&self, out: &mut Vec<usize>) {
        match self {
            Resolved::Leaf { entry, .. } => out.push(*entry as usize),
            Resolved::Leaves(map) => out.extend(map.entries.iter().map(|leaf| leaf.entry as usize)),
            Resolved::Struct(fields) => fields.iter().for_each(|(_, node)| node.entries(out)),
            Resolved::Seq(elements) => elements.iter().for_each(|node| node.entries(out)),
            Resolved::Map(entries) => entries.iter().for_each(|(_, node)| node.entries(out)),
            Resolved::Some(inner) => inner.entries(out),
            Resolved::None | Resolved::Missing => {}
        }
    }
}

/// The walk's state: which entries are taken, which keys are missing.
struct Resolver<'h> {
    /// The file's keys, by entry index.
    keys: Vec<&'h str>,
    /// Entry indices sorted by key, for exact look-ups and prefix scans by binary search: a
    /// quarter of the memory of a `BTreeMap`, built by one sort.
    sorted: Vec<u32>,
    claimed: Vec<bool>,
    found: usize,
    missing: Vec<String>,
    partly_present: Vec<(String, Vec<String>)>,
    /// How many schema nodes enclose the one being resolved.
    depth: usize,
    /// The first key at which nesting went past [`MAX_DEPTH`].
    too_deep: Option<String>,
    /// Entries found under another spelling than the one written back (objax keys without their
    /// variable type), with the written key.
    respelled: Vec<(usize, String)>,
    /// The field being resolved, if it declares a shape: for the leaves under it.
    shaped_by: Option<&'static FieldSchema>,
    /// Inside the probe of a list's absent first element: lists there are not probed in turn (a
    /// recursive `Vec<Self>` would never end).
    in_absent_element: bool,
}

/// A map's entries as they are resolved: kept as a [`LeafMap`] while every entry is a leaf of one
/// kind whose name lies in its own key, as nodes from the first that is not.
enum MapBuilder<'h> {
    Leaves(
        Vec<MapLeaf>,
        Option<(&'static LeafSchema, Option<&'static FieldSchema>)>,
    ),
    Nodes(Vec<(&'h str, Resolved<'h>)>),
}

impl<'h> MapBuilder<'h> {
    fn with_capacity(n: usize) -> Self {
        MapBuilder::Leaves(Vec::with_capacity(n), None)
    }

    /// Adds the entry `name` (a part of one of `keys`), resolved to `node`.
    fn push(&mut self, name: &'h str, node: Resolved<'h>, keys: &[&'h str]) {
        if let (
            MapBuilder::Leaves(leaves, kind),
            Resolved::Leaf {
                entry,
                schema,
                shaped_by,
            },
        ) = (&mut *self, &node)
        {
            let key = keys[*entry as usize];
            // Where `name` lies in `key`, if it is a part of it (names are cut from keys).
            let start = (name.as_ptr() as usize).wrapping_sub(key.as_ptr() as usize);
            let same_kind = kind.get_or_insert((schema, *shaped_by));
            if start <= key.len()
                && name.len() <= key.len() - start
                && std::ptr::eq(same_kind.0, *schema)
                && same_kind.1.map(std::ptr::from_ref) == shaped_by.map(std::ptr::from_ref)
            {
                // Keys are within a header capped at 100 MB.
                let name = (start as u32, (start + name.len()) as u32);
                leaves.push(MapLeaf { entry: *entry, name });
                return;
            }
        }
        if let MapBuilder::Leaves(leaves, kind) = self {
            let nodes = match kind {
                Some((schema, shaped_by)) => leaves
                    .iter()
                    .map(|leaf| {
                        let node = Resolved::Leaf {
                            entry: leaf.entry,
                            schema,
                            shaped_by: *shaped_by,
                        };
                        (leaf.name(keys[leaf.entry as usize]), node)
                    })
                    .collect(),
                None => Vec::new(),
            };
            *self = MapBuilder::Nodes(nodes);
        }
        if let MapBuilder::Nodes(nodes) = self {
            nodes.push((name, node));
        }
    }

    fn finish(self) -> Resolved<'h> {
        match self {
            MapBuilder::Leaves(leaves, Some((schema, shaped_by))) => Resolved::Leaves(Box::new(LeafMap {
                schema,
                shaped_by,
                entries: leaves.into_boxed_slice(),
            })),
            MapBuilder::Leaves(_, None) => Resolved::Map(Box::new([])),
            MapBuilder::Nodes(nodes) => Resolved::Map(nodes.into_boxed_slice()),
        }
    }
}

/// The deepest nesting of schema nodes resolved. Only a recursive type (`Vec<Self>`,
/// `Option<Box<Self>>`) can nest deeper than its declaration, and only as deep as a file's keys go:
/// without a limit, a file with one very long key would overflow the stack.
pub(crate) const MAX_DEPTH: usize = 256;

/// Matches `schema` against `header`. Unless `allow_unknown`, entries the type does not take are an
/// error. Declared shapes are checked here, before any tensor is read (or, remotely, fetched).
pub(crate) fn resolve<'h>(schema: &'static Schema, header: &'h Header, allow_unknown: bool) -> Result<Resolved<'h>> {
    let keys = header.keys().collect();
    let (tree, _) = resolve_keys(schema, keys, allow_unknown)?;
    check_shapes(&tree, header, &mut DimBindings::default())?;
    Ok(tree)
}

/// Checks the leaves of `tree` that declare a shape, in the order the type visits them (the order
/// that decides which leaf binds a named dimension).
fn check_shapes(tree: &Resolved, header: &Header, dims: &mut DimBindings) -> Result<()> {
    match tree {
        Resolved::Leaf {
            entry,
            shaped_by: Some(field),
            ..
        } => check_shape(*entry, field, header, dims),
        Resolved::Leaves(map) => match map.shaped_by {
            Some(field) => map
                .entries
                .iter()
                .try_for_each(|leaf| check_shape(leaf.entry, field, header, dims)),
            None => Ok(()),
        },
        Resolved::Leaf { shaped_by: None, .. } | Resolved::None | Resolved::Missing => Ok(()),
        Resolved::Struct(fields) => fields.iter().try_for_each(|(_, node)| check_shapes(node, header, dims)),
        Resolved::Seq(elements) => elements.iter().try_for_each(|node| check_shapes(node, header, dims)),
        Resolved::Map(entries) => entries
            .iter()
            .try_for_each(|(_, node)| check_shapes(node, header, dims)),
        Resolved::Some(inner) => check_shapes(inner, header, dims),
    }
}

/// Checks header entry `entry` against the shape `field` declares.
fn check_shape(entry: u32, field: &'static FieldSchema, header: &Header, dims: &mut DimBindings) -> Result<()> {
    let entry = entry as usize;
    let declared = field.shape.unwrap_or_default();
    dims.check(header.key(entry), declared, &header.shape(entry).to_vec())
}

/// Reads `keys` (a file's, in any order) with `schema`, as loading that file would, without any
/// tensor: `Ok` with the keys that writing the params back spells otherwise (an objax key without
/// its `::VarType`, by index into `keys`, and as written), or the error the load would give.
/// The CLI checks the structs it generates with it.
pub fn check_keys(schema: &'static Schema, keys: &[&str]) -> Result<Vec<(usize, String)>> {
    let (_, respelled) = resolve_keys(schema, keys.to_vec(), false)?;
    Ok(respelled)
}

/// What one field of one struct holds in a file: the CLI declares the shapes and list lengths
/// that a file shows from these.
#[derive(Debug)]
pub struct FieldContents {
    /// The field (its schema, as the caller built it).
    pub field: &'static FieldSchema,
    /// The leaves below the field, by index into the keys, not counting those of a struct inside.
    pub leaves: Vec<usize>,
    /// The lists below the field, not inside a struct, as (depth, length): depth 0 is the field's
    /// own list, 1 a list in its elements.
    pub lists: Vec<(usize, usize)>,
}

/// Reads `keys` with `schema` as [`check_keys`] does and reports what each field of each struct
/// holds, in the order a load visits them.
pub fn field_contents(schema: &'static Schema, keys: &[&str]) -> Result<Vec<FieldContents>> {
    let (tree, _) = resolve_keys(schema, keys.to_vec(), false)?;
    let mut out = Vec::new();
    collect_structs(&tree, &mut out);
    Ok(out)
}

/// The contents of the fields of the structs in `node`.
fn collect_structs(node: &Resolved, out: &mut Vec<FieldContents>) {
    match node {
        Resolved::Struct(fields) => {
            for (field, node) in fields {
                let mut contents = FieldContents {
                    field,
                    leaves: Vec::new(),
                    lists: Vec::new(),
                };
                collect_field(node, 0, &mut contents, out);
                out.push(contents);
            }
        }
        Resolved::Some(inner) => collect_structs(inner, out),
        Resolved::Seq(elements) => elements.iter().for_each(|node| collect_structs(node, out)),
        Resolved::Map(entries) => entries.iter().for_each(|(_, node)| collect_structs(node, out)),
        Resolved::Leaf { .. } | Resolved::Leaves(_) | Resolved::None | Resolved::Missing => {}
    }
}

/// Adds what `node`, `depth` lists below a field, holds to the field's `contents`.
fn collect_field(node: &Resolved, depth: usize, contents: &mut FieldContents, out: &mut Vec<FieldContents>) {
    match node {
        Resolved::Leaf { entry, .. } => contents.leaves.push(*entry as usize),
        Resolved::Leaves(map) => contents
            .leaves
            .extend(map.entries.iter().map(|leaf| leaf.entry as usize)),
        Resolved::Seq(elements) => {
            contents.lists.push((depth, elements.len()));
            for node in elements {
                collect_field(node, depth + 1, contents, out);
            }
        }
        Resolved::Some(inner) => collect_field(inner, depth, contents, out),
        Resolved::Map(entries) => entries
            .iter()
            .for_each(|(_, node)| collect_field(node, depth, contents, out)),
        Resolved::Struct(_) => collect_structs(node, out),
        Resolved::None | Resolved::Missing => {}
    }
}

fn resolve_keys<'h>(
    schema: &'static Schema,
    keys: Vec<&'h str>,
    allow_unknown: bool,
) -> Result<(Resolved<'h>, Vec<(usize, String)>)> {
    let Ok(count) = u32::try_from(keys.len()) else {
        // A header is capped at 100 MB, so it holds far fewer entries.
        return Err(Error::msg(format_args!("{} keys are too many", keys.len())));
    };
    let mut sorted: Vec<u32> = (0..count).collect();
    sorted.sort_unstable_by(|&a, &b| keys[a as usize].cmp(keys[b as usize]));
    let mut resolver = Resolver {
        sorted,
        claimed: vec![false; keys.len()],
        keys,
        found: 0,
        missing: Vec::new(),
        partly_present: Vec::new(),
        depth: 0,
        too_deep: None,
        respelled: Vec::new(),
        shaped_by: None,
        in_absent_element: false,
    };
    let tree = resolver.node(schema, &mut Cursor::root());
    let respelled = std::mem::take(&mut resolver.respelled);
    if resolver.fails(allow_unknown) {
        // Dropped before the error is built: a tree of thousands of nodes, none of them used.
        drop(tree);
        return Err(resolver.error(allow_unknown));
    }
    Ok((tree, respelled))
}

impl<'h> Resolver<'h> {
    /// The entry whose key is `key`.
    fn get(&self, key: &str) -> Option<usize> {
        let at = self.sorted.partition_point(|&i| self.keys[i as usize] < key);
        let &i = self.sorted.get(at)?;
        (self.keys[i as usize] == key).then_some(i as usize)
    }

    /// The keys that start with `prefix`, in order, with their entries.
    fn keys_under<'s>(&'s self, prefix: &'s str) -> impl Iterator<Item = (&'h str, usize)> + 's {
        let at = self.sorted.partition_point(|&i| self.keys[i as usize] < prefix);
        self.sorted[at..]
            .iter()
            .map(|&i| (self.keys[i as usize], i as usize))
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    /// Resolves the node `cursor` stands at, and leaves the cursor there: each step into a child
    /// is taken in place and undone, so that the walk keeps one key buffer and formats no key.
    fn node(&mut self, schema: &'static Schema, cursor: &mut Cursor) -> Resolved<'h> {
        if self.depth >= MAX_DEPTH {
            self.too_deep.get_or_insert_with(|| cursor.key().to_owned());
            return Resolved::Missing;
        }
        self.depth += 1;
        let node = self.node_inner(schema, cursor);
        self.depth -= 1;
        node
    }

    /// Whether any key of the file starts with `prefix`: every key below a node starts with the
    /// node's key, so without one the node's subtree is absent.
    fn any_key_under(&self, prefix: &str) -> bool {
        self.keys_under(prefix).next().is_some()
    }

    fn node_inner(&mut self, schema: &'static Schema, cursor: &mut Cursor) -> Resolved<'h> {
        match schema {
            Schema::Leaf(leaf) => self.leaf(leaf, cursor),
            Schema::Struct(s) => self.structure(s, cursor),
            // An absent option is not walked: a recursive `Option<Box<Self>>` would never end.
            Schema::Option(_) if !self.any_key_under(cursor.key()) => Resolved::None,
            Schema::Option(inner) => {
                let (found, resolved, missing) = self.probe(|r| r.node(inner.get(), cursor));
                match (found, missing.is_empty()) {
                    (0, _) => Resolved::None,
                    (_, true) => Resolved::Some(Box::new(resolved)),
                    (_, false) => {
                        self.partly_present.push((cursor.key().to_owned(), missing));
                        Resolved::None
                    }
                }
            }
            Schema::Seq(seq) => self.seq(seq, cursor),
            Schema::Any => {
                // A leaf where the file has the key itself, else a dict of what lies below.
                match self.get(cursor.key()) {
                    Some(entry) if !self.claimed[entry] => {
                        self.claimed[entry] = true;
                        self.found += 1;
                        Resolved::Leaf {
                            entry: entry as u32,
                            schema: &ANY_LEAF_SCHEMA,
                            shaped_by: self.shaped_by,
                        }
                    }
                    _ => self.named_map(schema, cursor),
                }
            }
            Schema::Map(map) => {
                let value = map.value.get();
                match map.key {
                    MapKey::Name => self.named_map(value, cursor),
                    MapKey::Index => cursor.below(Cursor::step_list, |list| {
                        let mut map = MapBuilder::with_capacity(0);
                        for (i, digits) in self.indices(list) {
                            let (found, node, missing) =
                                list.below(|c| c.step_element(i), |c| self.probe(|r| r.node(value, c)));
                            if self.keep_if_found(found, missing) {
                                map.push(digits, node, &self.keys);
                            }
                        }
                        map.finish()
                    }),
                }
            }
        }
    }

    fn leaf(&mut self, schema: &'static LeafSchema, cursor: &mut Cursor) -> Resolved<'h> {
        // objax: the key without its variable type, a prefix of the full key.
        let fallback_len = cursor.leaf_key_fallback().map(str::len);
        cursor.below(Cursor::step_leaf, |cursor| {
            let mut entry = self.get(cursor.key());
            // The key as written back, where the file spells it otherwise.
            let mut respelled = None;
            if let (None, Some(len)) = (entry, fallback_len) {
                entry = self.get(&cursor.key()[..len]);
                respelled = entry.map(|_| cursor.key().to_owned());
            }
            match entry {
                Some(entry) if !self.claimed[entry] => {
                    self.claimed[entry] = true;
                    self.found += 1;
                    if let Some(key) = respelled {
                        self.respelled.push((entry, key));
                    }
                    Resolved::Leaf {
                        entry: entry as u32,
                        schema,
                        shaped_by: self.shaped_by,
                    }
                }
                // Absent, or taken: two paths of the type lead to one key, the second finds it taken.
                _ => {
                    self.missing.push(cursor.key().to_owned());
                    Resolved::Missing
                }
            }
        })
    }

    fn structure(&mut self, schema: &'static StructSchema, cursor: &mut Cursor) -> Resolved<'h> {
        cursor.below(
            |c| c.step_struct(schema),
            |inside| {
                let mut fields = Vec::with_capacity(schema.fields.len());
                for field in schema.fields {
                    let child = field.schema.get();
                    // A declared shape holds for the leaves of this field only (the derive allows
                    // it on leafy fields, which hold no struct to declare shapes of its own).
                    let outer = std::mem::replace(&mut self.shaped_by, field.shape.map(|_| field));
                    inside.below(
                        |c| c.step_field(field, child.is_leafy()),
                        |c| self.field(field, child, c, &mut fields),
                    );
                    self.shaped_by = outer;
                }
                Resolved::Struct(fields.into_boxed_slice())
            },
        )
    }

    fn field(
        &mut self,
        field: &'static FieldSchema,
        child: &'static Schema,
        cursor: &mut Cursor,
        fields: &mut Vec<(&'static FieldSchema, Resolved<'h>)>,
    ) {
        if field.optional {
            // `#[serde(default)]`: absent is fine; partly present is not.
            if !self.any_key_under(cursor.key()) {
                return;
            }
            let (found, node, missing) = self.probe(|r| r.node(child, cursor));
            if found == 0 {
                return;
            }
            if !missing.is_empty() {
                self.partly_present.push((cursor.key().to_owned(), missing));
            }
            fields.push((field, node));
        } else {
            let mut node = self.node(child, cursor);
            if let (Schema::Seq(seq), Resolved::Seq(elements)) = (child, &node) {
                if elements.is_empty() && !self.in_absent_element {
                    if let Some(first) = self.require_first_element(seq, cursor) {
                        node = Resolved::Seq(Box::new([first]));
                    }
                }
            }
            fields.push((field, node));
        }
    }

    /// A required `Vec` field none of whose elements is in the file: as serde treats a missing
    /// field, an error (unless `#[serde(default)]`), naming the keys of the first element. A
    /// silently empty list would load a file that lacks all of a model's layers.
    fn require_first_element(&mut self, seq: &'static SeqSchema, cursor: &mut Cursor) -> Option<Resolved<'h>> {
        self.in_absent_element = true;
        let (found, node, missing) = cursor.below(
            |c| {
                c.step_list();
                c.step_element(0);
            },
            |first| self.probe(|r| r.node(seq.element.get(), first)),
        );
        self.in_absent_element = false;
        self.missing.extend(missing);
        // An element found under another spelling than the list's indices show.
        (found > 0).then_some(node)
    }

    fn seq(&mut self, seq: &'static SeqSchema, cursor: &mut Cursor) -> Resolved<'h> {
        let element = seq.element.get();
        cursor.below(Cursor::step_list, |list| {
            let len = match seq.len {
                Some(n) => n,
                None => self.indices(list).last().map_or(0, |&(i, _)| i + 1),
            };
            let elements = (0..len).map(|i| list.below(|c| c.step_element(i), |c| self.node(element, c)));
            Resolved::Seq(elements.collect())
        })
    }

    /// The indices that the file's keys show for a list, ascending. An index beyond the number of
    /// entries in the file cannot be a real list (each element needs an entry, and gaps come from
    /// absent activations, not from thousands of them): such keys are left unclaimed, to be
    /// reported as unknown, rather than making a huge list. Each index comes with its digits as a
    /// key spells them.
    fn indices(&self, list: &Cursor) -> Vec<(usize, &'h str)> {
        let (before, after) = list.element_affixes();
        let mut found: Vec<(usize, &'h str)> = Vec::new();
        for (key, _) in self.keys_under(&before) {
            let rest = &key[before.len()..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 || !rest[digits..].starts_with(after) {
                continue;
            }
            if let Ok(i) = rest[..digits].parse::<usize>() {
                if i < self.keys.len() && found.last() != Some(&(i, &rest[..digits])) {
                    found.push((i, &rest[..digits]));
                }
            }
        }
        // By index, and for one index its shortest spelling first: the one without leading zeros,
        // which is the one the walk finds.
        found.sort_unstable_by_key(|&(i, digits)| (i, digits.len()));
        found.dedup_by_key(|&mut (i, _)| i);
        found
    }

    fn named_map(&mut self, value: &'static Schema, cursor: &mut Cursor) -> Resolved<'h> {
        let leafy = value.is_leafy();
        let whole_rest = value.is_leaf();
        let prefix = cursor.entry_prefix(leafy);
        let mut names: Vec<&'h str> = self
            .keys_under(&prefix)
            .filter(|&(_, i)| !self.claimed[i])
            .map(|(key, _)| {
                let rest = &key[prefix.len()..];
                if whole_rest {
                    cursor.leaf_entry_name(rest)
                } else {
                    &rest[..cursor.entry_name_end(rest)]
                }
            })
            .filter(|name| !name.is_empty())
            .collect();
        names.sort_unstable();
        names.dedup();
        let mut map = MapBuilder::with_capacity(names.len());
        for name in names {
            let (found, node, missing) =
                cursor.below(|c| c.step_entry(name, leafy), |c| self.probe(|r| r.node(value, c)));
            if self.keep_if_found(found, missing) {
                map.push(name, node, &self.keys);
            }
        }
        map.finish()
    }

    /// Runs `walk` and reports how many entries it took, its result, and the keys it found missing
    /// (which are taken back out of the missing list, for the caller to judge).
    fn probe(&mut self, walk: impl FnOnce(&mut Self) -> Resolved<'h>) -> (usize, Resolved<'h>, Vec<String>) {
        let (found_before, missing_before) = (self.found, self.missing.len());
        let node = walk(self);
        let missing = self.missing.split_off(missing_before);
        (self.found - found_before, node, missing)
    }

    /// For a map entry or list element discovered from the file: kept if any of it was found, with
    /// its missing keys put back as missing.
    fn keep_if_found(&mut self, found: usize, missing: Vec<String>) -> bool {
        if found == 0 {
            return false;
        }
        self.missing.extend(missing);
        true
    }

    /// Whether the walk found the file and the type at odds: [`Resolver::error`] tells how.
    fn fails(&self, allow_unknown: bool) -> bool {
        self.too_deep.is_some()
            || !self.partly_present.is_empty()
            || !self.missing.is_empty()
            || (!allow_unknown && self.claimed.iter().any(|&c| !c))
    }

    /// What [`Resolver::fails`] found, with suggestions: missing and unknown keys together (the
    /// unknown ones unless `allow_unknown`).
    fn error(self, allow_unknown: bool) -> Error {
        if let Some(key) = self.too_deep {
            return Error::NestingTooDeep { key, max: MAX_DEPTH };
        }
        if let Some((key, missing)) = self.partly_present.into_iter().next() {
            return Error::PartlyPresent { key, missing };
        }
        let taken = |wanted: bool| -> Vec<&str> {
            let claimed = self.claimed.iter();
            self.keys
                .iter()
                .zip(claimed)
                .filter(|(_, &c)| c == wanted)
                .map(|(k, _)| *k)
                .collect()
        };
        let mut missing = self.missing;
        let mut unused = taken(false);
        missing.sort_unstable();
        unused.sort_unstable();
        // One budget for the suggestions of both lists: they are one error.
        let mut budget = HINT_BUDGET;
        let hints = missing
            .iter()
            .map(|k| nearest(k, unused.iter().copied(), &mut budget))
            .collect();
        let unknown = if allow_unknown { Vec::new() } else { unused };
        let expected = if unknown.is_empty() { Vec::new() } else { taken(true) };
        let unknown_hints = unknown
            .iter()
            .map(|k| nearest(k, expected.iter().copied(), &mut budget))
            .collect();
        let unknown = unknown.into_iter().map(str::to_owned).collect();
        if missing.is_empty() {
            Error::UnknownKeys {
                keys: unknown,
                hints: unknown_hints,
            }
        } else {
            Error::MissingKeys {
                keys: missing,
                hints,
                unknown,
                unknown_hints,
            }
        }
    }
}

/// How many cells of edit-distance tables all the suggestions of one error may fill: about a
/// tenth of a second. Suggestions are a courtesy; a file of many long near-miss keys must not turn
/// them into hours of work.
const HINT_BUDGET: usize = 20_000_000;

/// The candidate nearest to `key` by edit distance, if it is near enough to be a likely typo.
/// Candidates whose length alone puts them too far are skipped; `budget` is what is left of
/// [`HINT_BUDGET`], and once it runs out there are no more suggestions.
fn nearest<'a>(key: &str, candidates: impl Iterator<Item = &'a str>, budget: &mut usize) -> Option<String> {
    let len = key.chars().count();
    let limit = (len / 3).max(2);
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        // Byte lengths bound char counts from above, and the distance is at least the difference
        // of the char counts.
        if candidate.len() + limit < len || len + limit < candidate.chars().count() {
            continue;
        }
        let cost = len.saturating_mul(candidate.len()).max(1);
        if cost > *budget {
            return best.map(|(_, c)| c.to_owned());
        }
        *budget -= cost;
        let d = edit_distance(key, candidate);
        if d <= limit && best.is_none_or(|b| (d, candidate) < b) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, c)| c.to_owned())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names and entries of a resolved map, whichever form it took.
    fn map_of<'h>(tree: &Resolved<'h>, keys: &[&'h str]) -> Vec<(&'h str, Option<u32>)> {
        match tree {
            Resolved::Leaves(map) => map
                .entries
                .iter()
                .map(|leaf| (leaf.name(keys[leaf.entry as usize]), Some(leaf.entry)))
                .collect(),
            Resolved::Map(entries) => entries
                .iter()
                .map(|(name, node)| match node {
                    Resolved::Leaf { entry, .. } => (*name, Some(*entry)),
                    _ => (*name, None),
                })
                .collect(),
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn a_map_of_leaves_keeps_no_node_per_entry() {
        use crate::{Params, Tensor};
        use std::collections::BTreeMap;
        let keys = ["b", "a", "c"];
        let (tree, _) = resolve_keys(<BTreeMap<String, Tensor<f32>>>::SCHEMA, keys.to_vec(), false).unwrap();
        assert!(matches!(tree, Resolved::Leaves(_)), "{tree:?}");
        assert_eq!(map_of(&tree, &keys), [("a", Some(1)), ("b", Some(0)), ("c", Some(2))]);
        // The sizes BENCHMARKS.md counts: 12 bytes an entry of such a map, 24 a node elsewhere.
        if cfg!(target_pointer_width = "64") {
            assert_eq!(
                (std::mem::size_of::<MapLeaf>(), std::mem::size_of::<Resolved>()),
                (12, 24)
            );
        }
    }

    #[test]
    fn a_map_that_stops_being_leaves_keeps_the_leaves_before() {
        use crate::dynamic::Value;
        use crate::Params;
        // `a` and `b` are leaves, `c` a dict: the leaves found first become nodes, in order.
        let keys = ["c.x", "b", "a", "c.y"];
        let (tree, _) = resolve_keys(Value::SCHEMA, keys.to_vec(), false).unwrap();
        assert!(matches!(tree, Resolved::Map(_)), "{tree:?}");
        assert_eq!(map_of(&tree, &keys), [("a", Some(2)), ("b", Some(1)), ("c", None)]);
        // Leaves only: one `LeafMap`, the names cut from the keys.
        let keys = ["w", "v"];
        let (tree, _) = resolve_keys(Value::SCHEMA, keys.to_vec(), false).unwrap();
        assert_eq!(map_of(&tree, &keys), [("v", Some(1)), ("w", Some(0))]);
        assert!(matches!(tree, Resolved::Leaves(_)), "{tree:?}");
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("kernel", "kernel"), 0);
        assert_eq!(edit_distance("kernel", "kernal"), 1);
        assert_eq!(edit_distance("Dense_0.kernel", "Dense_0.bias"), 6);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn suggestions_are_near_misses_only() {
        let keys = ["params.Dense_0.kernel", "params.Dense_0.bias"];
        assert_eq!(
            nearest("params.dense_0.kernel", keys.into_iter(), &mut 1000).as_deref(),
            Some("params.Dense_0.kernel")
        );
        assert_eq!(nearest("batch_stats.mean", keys.into_iter(), &mut 1000), None);
        // Out of budget, no suggestion.
        assert_eq!(nearest("params.dense_0.kernel", keys.into_iter(), &mut 10), None);
    }
}
