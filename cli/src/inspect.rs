//! `safejax inspect`: the key tree of a checkpoint, folded by module, with dtypes, shapes,
//! parameter counts and sizes, and its metadata.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use anyhow::Result;
use safejax::Dtype;
use serde_json::{json, Value as Json};

use crate::fmt;
use crate::source::{Checkpoint, Contents};
use safejax::__private::{keys, Style};

/// What `inspect` prints.
pub struct Options {
    /// The style to cut keys by; detected from the keys when `None`.
    pub style: Option<Style>,
    /// How many levels of the tree to show; all when `None`.
    pub depth: Option<usize>,
    /// JSON instead of text.
    pub json: bool,
}

/// A node of the key tree.
#[derive(Default)]
struct Node {
    /// This node's step of the key (`Dense_0`, `/~/linear_0`, `[0](Linear)`).
    label: String,
    /// The key up to and including this node.
    key: String,
    /// A tensor at this very key.
    leaf: Option<(Dtype, Vec<usize>)>,
    children: Vec<Node>,
    tensors: u64,
    params: u64,
    bytes: u64,
}

impl Node {
    fn is_module(&self) -> bool {
        self.leaf.is_none() && !self.children.is_empty()
    }
}

/// The number of elements of a shape (1 for a scalar).
pub fn elements(shape: &[usize]) -> u64 {
    shape.iter().map(|&d| d as u64).product()
}

/// Builds the tree of `contents`' keys, cut into steps by `style`.
fn tree(contents: &Contents<'_>, style: Style) -> Node {
    #[derive(Default)]
    struct Building {
        node: Node,
        index: HashMap<String, usize>,
        children: Vec<Building>,
    }
    let mut root = Building::default();
    for entry in &contents.entries {
        let (dtype, shape) = (entry.tensor.dtype(), entry.tensor.shape().to_vec());
        let params = elements(&shape);
        let bytes = entry.tensor.as_bytes().len() as u64;
        let mut at = &mut root;
        let mut key = String::new();
        for step in keys::steps(style, &entry.key) {
            keys::push_step(&mut key, &step);
            at.node.tensors += 1;
            at.node.params += params;
            at.node.bytes += bytes;
            let i = match at.index.get(&step) {
                Some(&i) => i,
                None => {
                    at.index.insert(step.clone(), at.children.len());
                    at.children.push(Building {
                        node: Node {
                            label: step,
                            key: key.clone(),
                            ..Node::default()
                        },
                        ..Building::default()
                    });
                    at.children.len() - 1
                }
            };
            at = &mut at.children[i];
        }
        at.node.tensors += 1;
        at.node.params += params;
        at.node.bytes += bytes;
        at.node.leaf = Some((dtype, shape));
    }
    fn finish(b: Building) -> Node {
        let mut node = b.node;
        node.children = b.children.into_iter().map(finish).collect();
        node.children.sort_by(|x, y| fmt::natural(&x.label, &y.label));
        node
    }
    finish(root)
}

/// Folds chains of modules with one submodule each into one line: `encoder.layer`.
fn fold(mut node: Node) -> Node {
    node.children = node.children.into_iter().map(fold_chain).collect();
    node
}

fn fold_chain(mut node: Node) -> Node {
    while node.is_module() && node.children.len() == 1 && node.children[0].is_module() {
        let child = node.children.pop().expect("one child");
        keys::push_step(&mut node.label, &child.label);
        node.key = child.key;
        node.children = child.children;
    }
    fold(node)
}

/// Tensors, params and bytes per dtype.
fn by_dtype(contents: &Contents<'_>) -> BTreeMap<Dtype, (u64, u64, u64)> {
    let mut out: BTreeMap<Dtype, (u64, u64, u64)> = BTreeMap::new();
    for e in &contents.entries {
        let slot = out.entry(e.tensor.dtype()).or_default();
        slot.0 += 1;
        slot.1 += elements(e.tensor.shape());
        slot.2 += e.tensor.as_bytes().len() as u64;
    }
    out
}

/// Runs `inspect` on an opened checkpoint and returns what to print.
pub fn run(ckpt: &Checkpoint, options: &Options) -> Result<String> {
    let contents = ckpt.contents()?;
    let style = options.style.unwrap_or_else(|| keys::detect(contents.keys()));
    let root = tree(&contents, style);
    if options.json {
        let mut text = serde_json::to_string_pretty(&to_json(ckpt, &contents, style, &root))?;
        text.push('\n');
        return Ok(text);
    }
    Ok(text(ckpt, &contents, style, &fold(root), options.depth))
}

fn text(ckpt: &Checkpoint, contents: &Contents<'_>, style: Style, root: &Node, depth: Option<usize>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", ckpt.path.display());
    let mut field = |name: &str, value: String| {
        let label = if name.is_empty() {
            String::new()
        } else {
            format!("{name}:")
        };
        let _ = writeln!(out, "  {label:<10}{value}");
    };
    field("format", ckpt.layout());
    field("style", style.to_string());
    field("tensors", fmt::count(root.tensors));
    field("params", fmt::count(root.params));
    field("size", format!("{} of tensor data", fmt::bytes(root.bytes)));
    // The dtypes that hold the most bytes first.
    let mut dtypes: Vec<(Dtype, (u64, u64, u64))> = by_dtype(contents).into_iter().collect();
    dtypes.sort_by_key(|(dtype, (_, _, bytes))| (std::cmp::Reverse(*bytes), *dtype));
    let dtypes: Vec<String> = dtypes
        .iter()
        .map(|(dtype, (tensors, params, _))| {
            let s = if *tensors == 1 { "" } else { "s" };
            format!("{dtype} ({tensors} tensor{s}, {} params)", fmt::count(*params))
        })
        .collect();
    field(
        "dtypes",
        if dtypes.is_empty() {
            "none".to_owned()
        } else {
            dtypes.join(", ")
        },
    );
    if contents.metadata.is_empty() {
        field("metadata", "none".to_owned());
    }
    let mut first = true;
    for (k, v) in &contents.metadata {
        let line = format!("{k} = {v}").replace('\n', " ");
        if first {
            field("metadata", line);
            first = false;
        } else {
            field("", line);
        }
    }
    if ckpt.is_sharded() {
        let counts = per_file(ckpt, contents);
        for (n, (file, (tensors, bytes))) in ckpt.files.iter().zip(counts).enumerate() {
            let name = file
                .path
                .file_name()
                .map_or_else(|| file.path.display().to_string(), |n| n.to_string_lossy().into_owned());
            let line = format!("{name} ({tensors} tensors, {})", fmt::bytes(bytes));
            field(if n == 0 { "shards" } else { "" }, line);
        }
    }

    // The tree, in columns.
    let mut rows: Vec<[String; 5]> = Vec::new();
    fn walk(node: &Node, level: usize, depth: Option<usize>, rows: &mut Vec<[String; 5]>) {
        if depth.is_some_and(|d| level >= d) {
            return;
        }
        for child in &node.children {
            let (dtype, shape) = match &child.leaf {
                Some((dtype, shape)) => (dtype.to_string(), fmt::shape(shape)),
                None => (String::new(), String::new()),
            };
            rows.push([
                format!("{}{}", "  ".repeat(level), child.label),
                dtype,
                shape,
                fmt::count(child.params),
                fmt::bytes(child.bytes),
            ]);
            walk(child, level + 1, depth, rows);
        }
    }
    walk(root, 0, depth, &mut rows);
    if rows.is_empty() {
        return out;
    }
    let header = ["KEY", "DTYPE", "SHAPE", "PARAMS", "SIZE"].map(str::to_owned);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    out.push('\n');
    for row in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:>w4$}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4],
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// Tensors and bytes in each file of the checkpoint.
fn per_file(ckpt: &Checkpoint, contents: &Contents<'_>) -> Vec<(u64, u64)> {
    let mut counts = vec![(0u64, 0u64); ckpt.files.len()];
    // An Orbax checkpoint lists no files: its arrays are chunks inside an OCDBT database.
    for e in &contents.entries {
        if let Some(count) = counts.get_mut(e.file) {
            count.0 += 1;
            count.1 += e.tensor.as_bytes().len() as u64;
        }
    }
    counts
}

fn to_json(ckpt: &Checkpoint, contents: &Contents<'_>, style: Style, root: &Node) -> Json {
    fn node_json(node: &Node) -> Json {
        let mut obj = json!({
            "name": node.label,
            "key": node.key,
            "tensors": node.tensors,
            "params": node.params,
            "bytes": node.bytes,
        });
        if let Some((dtype, shape)) = &node.leaf {
            obj["dtype"] = json!(dtype.name());
            obj["shape"] = json!(shape);
        }
        if !node.children.is_empty() {
            obj["children"] = Json::Array(node.children.iter().map(node_json).collect());
        }
        obj
    }
    let files: Vec<Json> = ckpt
        .files
        .iter()
        .zip(per_file(ckpt, contents))
        .map(|(f, (tensors, bytes))| json!({"path": f.path.display().to_string(), "tensors": tensors, "bytes": bytes}))
        .collect();
    let dtypes: serde_json::Map<String, Json> = by_dtype(contents)
        .into_iter()
        .map(|(d, (tensors, params, bytes))| {
            (
                d.name().to_owned(),
                json!({"tensors": tensors, "params": params, "bytes": bytes}),
            )
        })
        .collect();
    let keys: Vec<Json> = contents
        .entries
        .iter()
        .map(|e| {
            json!({
                "key": e.key,
                "dtype": e.tensor.dtype().name(),
                "shape": e.tensor.shape(),
                "params": elements(e.tensor.shape()),
                "bytes": e.tensor.as_bytes().len(),
                "file": e.file,
            })
        })
        .collect();
    json!({
        "path": ckpt.path.display().to_string(),
        "format": ckpt.format_name(),
        "sharded": ckpt.is_sharded(),
        "index": ckpt.index.as_ref().map(|i| i.display().to_string()),
        "files": files,
        "style": style.name(),
        "metadata": contents.metadata,
        "tensors": root.tensors,
        "params": root.params,
        "bytes": root.bytes,
        "dtypes": dtypes,
        "keys": keys,
        "tree": node_json(root),
    })
}
