//! `safejax convert --layout torch|flax`: the arguments of a layout change, turned into a
//! `safejax::torch::Mapping` (the rules are the library's), the `--dry-run` report, and the
//! `--reference` check.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use regex::Regex;
use safejax::torch::{check_reference, Converted, Entry, Mapping};
use safejax::DynTensorView;

use crate::source::Checkpoint;

/// The target layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// PyTorch's names and axis orders (candle, burn, transformers' PyTorch models).
    Torch,
    /// flax's names and axis orders.
    Flax,
}

impl Layout {
    /// The `format` metadata of the output: what transformers' loaders key on.
    pub fn format(self) -> &'static str {
        match self {
            Layout::Torch => "pt",
            Layout::Flax => "flax",
        }
    }
}

/// The command-line arguments of a layout change (flattened into `convert`'s).
#[derive(clap::Args)]
pub struct Args {
    /// Map names and axis orders to PyTorch's (`torch`: kernels to `weight`, transposed or
    /// OIHW, `scale`/`embedding` to `weight`, `mean`/`var` to `running_*`, roots dropped;
    /// metadata `format: pt`) or back (`flax`). Ambiguous kernels are refused until --keep or
    /// --permute decides.
    #[arg(long, value_enum)]
    layout: Option<Layout>,
    /// With --layout: source keys matching this regex keep the axis order they are stored in
    /// (repeatable).
    #[arg(long, value_name = "REGEX", requires = "layout")]
    keep: Vec<String>,
    /// With --layout: source keys matching REGEX get their axes in this order, like
    /// `c_attn\.kernel$=1,0` (repeatable).
    #[arg(long, value_name = "REGEX=AXES", requires = "layout", value_parser = parse_permute)]
    permute: Vec<(String, Vec<usize>)>,
    /// With --layout: rewrite target names matching REGEX (`$1` for groups), like
    /// `^=bert.` (repeatable, in order).
    #[arg(long, value_name = "REGEX=TO", requires = "layout", value_parser = parse_rename)]
    rename: Vec<(String, String)>,
    /// With --layout: put this name (and a `.`) in front of every target key.
    #[arg(long, value_name = "NAME", requires = "layout")]
    prefix: Option<String>,
    /// With --layout: linen list names `layers_0` become `layers.0` (torch) or back (flax).
    #[arg(long, requires = "layout")]
    list_names: bool,
    /// With --layout: fail unless the result has exactly this checkpoint's keys and shapes
    /// (every missing, unexpected and mis-shaped key is listed); for --layout flax it also
    /// chooses names that PyTorch's alone cannot tell (`scale` or `weight`).
    #[arg(long, value_name = "CKPT", requires = "layout")]
    reference: Option<std::path::PathBuf>,
    /// With --layout: print the mapping (source, target, shapes, permutation, rule) and write
    /// nothing.
    #[arg(long, requires = "layout")]
    dry_run: bool,
    /// With --dry-run: print it as JSON.
    #[arg(long, requires = "dry_run")]
    json: bool,
}

impl Args {
    /// The layout change asked for, if any, and `Some(json)` for a dry run.
    pub fn options(self) -> (Option<Options>, Option<bool>) {
        let dry_run = self.dry_run.then_some(self.json);
        let options = self.layout.map(|layout| Options {
            layout,
            keep: self.keep,
            permute: self.permute,
            rename: self.rename,
            prefix: self.prefix,
            list_names: self.list_names,
            reference: self.reference,
        });
        (options, dry_run)
    }
}

/// A layout change.
pub struct Options {
    /// Where to.
    pub layout: Layout,
    /// Regexes of source keys whose layout stays as stored.
    pub keep: Vec<String>,
    /// `REGEX=AXES`: source keys whose axes go in this order.
    pub permute: Vec<(String, Vec<usize>)>,
    /// `REGEX=TO`: target names rewritten (regex replacement syntax, `$1`).
    pub rename: Vec<(String, String)>,
    /// A name put in front of every target key.
    pub prefix: Option<String>,
    /// Linen list names `layers_0` as `layers.0` (and back).
    pub list_names: bool,
    /// A checkpoint whose keys and shapes the result must have.
    pub reference: Option<std::path::PathBuf>,
}

/// Parses `REGEX=1,0,2`.
pub fn parse_permute(text: &str) -> Result<(String, Vec<usize>), String> {
    let (pattern, axes) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("`{text}` is not `REGEX=AXES` (like `c_attn\\.kernel$=1,0`)"))?;
    let axes = axes
        .split(',')
        .map(|a| a.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| format!("`{text}`: the axes must be numbers separated by commas, like 1,0"))?;
    Ok((pattern.to_owned(), axes))
}

/// Parses `REGEX=TO`.
pub fn parse_rename(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((pattern, to)) if !pattern.is_empty() => Ok((pattern.to_owned(), to.to_owned())),
        _ => Err(format!("`{text}` is not `REGEX=TO` (like `^bert\\.=`)")),
    }
}

fn regex(pattern: &str, flag: &str) -> Result<Regex> {
    Regex::new(pattern).with_context(|| format!("{flag} `{pattern}`"))
}

impl Options {
    /// The library's mapping for these arguments (and the reference's keys when the direction
    /// needs them to choose names).
    fn mapping(&self, reference: Option<&BTreeMap<String, Vec<usize>>>) -> Result<Mapping> {
        let mut m = match self.layout {
            Layout::Torch => Mapping::to_torch(),
            Layout::Flax => Mapping::to_flax(),
        }
        .list_names(self.list_names);
        for pattern in &self.keep {
            let re = regex(pattern, "--keep")?;
            m = m.keep(move |key| re.is_match(key));
        }
        for (pattern, axes) in &self.permute {
            let re = regex(pattern, "--permute")?;
            m = m.permute(move |key| re.is_match(key), axes.clone());
        }
        for (pattern, to) in &self.rename {
            let re = regex(pattern, "--rename")?;
            let to = to.clone();
            m = m.rename(move |name| {
                re.is_match(name)
                    .then(|| re.replace_all(name, to.as_str()).into_owned())
            });
        }
        if let Some(prefix) = &self.prefix {
            m = m.prefix(prefix);
        }
        if let (Layout::Flax, Some(r)) = (self.layout, reference) {
            m = m.reference(r.clone());
        }
        Ok(m)
    }

    /// The reference checkpoint's keys and shapes.
    fn reference(&self) -> Result<Option<BTreeMap<String, Vec<usize>>>> {
        let Some(path) = &self.reference else { return Ok(None) };
        let ckpt = Checkpoint::open(path).with_context(|| format!("--reference {}", path.display()))?;
        let contents = ckpt.contents()?;
        Ok(Some(
            contents
                .entries
                .iter()
                .map(|e| (e.key.clone(), e.tensor.shape().to_vec()))
                .collect(),
        ))
    }

    /// Errors unless the result's keys and shapes are the reference's.
    fn check<'a>(
        &self,
        reference: Option<&BTreeMap<String, Vec<usize>>>,
        result: impl IntoIterator<Item = (&'a str, &'a [usize])>,
    ) -> Result<()> {
        if let Some(reference) = reference {
            let check = check_reference(result, reference);
            if !check.is_match() {
                bail!(
                    "the result does not match --reference {}: {check}",
                    self.reference.as_ref().expect("a reference").display()
                );
            }
        }
        Ok(())
    }

    /// Maps the tensors (checked against the reference, if any).
    pub fn apply(&self, tensors: &BTreeMap<String, DynTensorView<'_>>) -> Result<Converted> {
        let reference = self.reference()?;
        let converted = self
            .mapping(reference.as_ref())?
            .apply_views(tensors.iter().map(|(k, t)| (k.as_str(), t)))?;
        self.check(
            reference.as_ref(),
            converted.tensors.iter().map(|(k, t)| (k.as_str(), t.shape())),
        )?;
        Ok(converted)
    }

    /// `--dry-run`: the mapping, as text or JSON, without writing (checked against the reference).
    pub fn dry_run(&self, input: &Checkpoint, json: bool) -> Result<String> {
        let contents = input.contents()?;
        let reference = self.reference()?;
        let entries = self
            .mapping(reference.as_ref())?
            .plan(contents.entries.iter().map(|e| (e.key.as_str(), e.tensor.shape())))?;
        self.check(
            reference.as_ref(),
            entries
                .iter()
                .filter_map(|e| Some((e.target.as_deref()?, e.target_shape.as_slice()))),
        )?;
        if json {
            let list: Vec<serde_json::Value> = entries.iter().map(entry_json).collect();
            let doc = serde_json::json!({
                "layout": self.layout.format(),
                "metadata": {"format": self.layout.format()},
                "keys": list,
            });
            return Ok(serde_json::to_string_pretty(&doc)? + "\n");
        }
        let mut text = String::new();
        for e in &entries {
            let target = e.target.as_deref().unwrap_or("(dropped)");
            let perm = e
                .permutation
                .as_ref()
                .map(|p| format!(" permute {p:?}"))
                .unwrap_or_default();
            text.push_str(&format!(
                "{} {:?} -> {target} {:?} ({}{perm})\n",
                e.source, e.shape, e.target_shape, e.rule
            ));
        }
        Ok(text)
    }
}

fn entry_json(e: &Entry) -> serde_json::Value {
    serde_json::json!({
        "source": e.source,
        "target": e.target,
        "shape": e.shape,
        "target_shape": e.target_shape,
        "permutation": e.permutation,
        "rule": e.rule.name(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_and_rename_arguments_parse() {
        assert_eq!(
            parse_permute("c_attn\\.kernel$=1,0"),
            Ok(("c_attn\\.kernel$".into(), vec![1, 0]))
        );
        assert_eq!(parse_permute("a=b=2, 0 ,1"), Ok(("a=b".into(), vec![2, 0, 1])));
        assert!(parse_permute("kernel").is_err());
        assert!(parse_permute("kernel=x").is_err());
        assert_eq!(parse_rename("^bert\\.="), Ok(("^bert\\.".into(), String::new())));
        assert!(parse_rename("=x").is_err());
    }
}
