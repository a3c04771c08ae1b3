//! From the JAX layout to PyTorch's, and back: the names and axis orders that PyTorch models,
//! candle-transformers and burn's PyTorch adapter load.
//!
//! A JAX checkpoint stores a linear layer's `kernel` as `[in, out]`, a convolution's as
//! `[spatial..., in, out]` (HWIO), norms' `scale`, embeddings' `embedding` and BatchNorm statistics
//! under a `batch_stats` root; PyTorch wants `weight` `[out, in]`, `[out, in, spatial...]` (OIHW),
//! `weight`, `weight` and `running_mean` / `running_var`. [`Mapping::to_torch`] applies the rules of
//! transformers' `modeling_flax_pytorch_utils.py`, tightened where they guess:
//!
//! | JAX leaf (flax / haiku) | rank | PyTorch | rule |
//! |---|---|---|---|
//! | `kernel` / `w` | 2 | `weight`, transposed | `linear` |
//! | `kernel` / `w` of a module whose name holds `conv` | 3 | `weight`, `[out, in, width]` | `conv` |
//! | `kernel` / `w` | 4, 5, ... | `weight`, `[out, in, spatial...]` | `conv` |
//! | `scale`, `embedding` / `embeddings` | any | `weight` | `weight` |
//! | `b`, `offset` (haiku) | any | `bias` | `bias` |
//! | exactly `mean` / `var` (flax BatchNorm's `batch_stats`) | any | `running_mean` / `running_var` | `running_mean` / `running_var` |
//! | haiku `mean_ema.average` / `var_ema.average` | any | `running_mean` / `running_var` of the norm | `running_mean` / `running_var` |
//! | haiku `mean_ema.hidden`, `.counter` (and `var_ema`'s) | any | dropped: PyTorch has no such state | `dropped` |
//! | anything else (`bias`, ViT's `cls_token`, T5's norm `weight`) | any | unchanged | `unchanged` |
//!
//! and for every key: the `params`, `batch_stats` (and haiku `state`) roots go; haiku's `/~/` and `/`
//! joins become `.`; with [`Mapping::list_names`], linen list names `layers_0` become `layers.0`.
//!
//! Kernels whose layout the names cannot tell are refused with an error naming the key, never
//! guessed: a 3-D kernel outside a convolution (a `DenseGeneral` `[in, heads, head_dim]`, or a 1-D
//! convolution the name hides), a `ConvTranspose` kernel (PyTorch's is `[in, out, spatial...]`, and
//! flax may have flipped it), GPT-2's `Conv1D` (`c_attn`, `c_proj`, `c_fc`: its kernel is stored
//! `[out, in]` already, so the transpose is right only for transformers' own `Conv1D`), and a kernel
//! of rank 0 or 1. The caller decides with [`Mapping::keep`] (the layout as stored) or
//! [`Mapping::permute`] (an explicit axis order), by pattern.
//!
//! [`Mapping::to_flax`] inverts the rules. PyTorch names are not enough to invert them everywhere
//! (a 2-D `weight` is a linear layer's or an embedding's, a 1-D one a LayerNorm's `scale` or T5's
//! `weight`): [`Mapping::reference`] gives the target model's keys, and each key takes the first
//! candidate name that the reference has, as transformers' loader does with the model's own keys.
//!
//! Permutes work on the bytes of any dtype (bf16 stays bf16 unless [`Mapping::dtype`] asks for
//! another) with a tiled transpose (see `benches/torch.rs`).
//!
//! ```
//! use safejax::torch::Mapping;
//! let value: safejax::Value = safejax::from_dir("tests/fixtures/hf_vit/safetensors")?;
//! let converted = Mapping::to_torch().apply(&value)?;
//! let conv = converted.entry("embeddings.patch_embeddings.projection.kernel").unwrap();
//! assert_eq!(conv.target.as_deref(), Some("embeddings.patch_embeddings.projection.weight"));
//! assert_eq!(conv.permutation.as_deref(), Some(&[3, 2, 0, 1][..]));
//! assert_eq!(converted.tensors["embeddings.patch_embeddings.projection.weight"].shape(), [8, 3, 4, 4]);
//! safejax::Options::new().metadata("format", "pt").to_file(std::env::temp_dir().join("vit_pt.safetensors"), &converted.tensors)?;
//! # Ok::<(), safejax::Error>(())
//! ```

mod permute;

use std::collections::BTreeMap;
use std::fmt;

use crate::{Dtype, DynTensor, DynTensorView, Error, Result, Value};

pub use permute::permute_bytes_checked as permute_bytes;

/// Which way a [`Mapping`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// JAX (flax linen, NNX, haiku) names and layouts to PyTorch's.
    ToTorch,
    /// PyTorch names and layouts to flax's.
    ToFlax,
}

/// What was done to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// A linear layer's kernel: renamed and transposed.
    Linear,
    /// A convolution kernel: renamed and its axes permuted.
    Conv,
    /// `scale` or `embedding` renamed `weight` (or back), layout unchanged.
    Weight,
    /// haiku's `b` or `offset` renamed `bias`.
    Bias,
    /// A norm's mean: `mean` to `running_mean` (or back).
    RunningMean,
    /// A norm's variance: `var` to `running_var` (or back).
    RunningVar,
    /// Name (apart from roots, joins, list names, prefix) and layout unchanged.
    Unchanged,
    /// Layout kept as stored by [`Mapping::keep`].
    Kept,
    /// Axes permuted as [`Mapping::permute`] said.
    Permuted,
    /// Not written: state the other side has no place for.
    Dropped,
}

impl Rule {
    /// The rule's name, as in `tests/fixtures/hf_flax_to_pytorch.json`.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Linear => "linear",
            Rule::Conv => "conv",
            Rule::Weight => "weight",
            Rule::Bias => "bias",
            Rule::RunningMean => "running_mean",
            Rule::RunningVar => "running_var",
            Rule::Unchanged => "unchanged",
            Rule::Kept => "kept",
            Rule::Permuted => "permuted",
            Rule::Dropped => "dropped",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One key of the mapping: where it came from, where it goes, how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key as in the input.
    pub source: String,
    /// The key written, or `None` when dropped.
    pub target: Option<String>,
    /// The input's shape.
    pub shape: Vec<usize>,
    /// The shape written.
    pub target_shape: Vec<usize>,
    /// The axis order applied (numpy's `transpose(permutation)`), if any.
    pub permutation: Option<Vec<usize>>,
    /// The rule that decided.
    pub rule: Rule,
}

type Matcher = Box<dyn Fn(&str) -> bool + Send + Sync>;
type Renamer = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

enum Override {
    Keep(Matcher),
    Permute(Matcher, Vec<usize>),
}

/// The rules for one conversion: a direction, and the caller's decisions.
pub struct Mapping {
    direction: Direction,
    list_names: bool,
    overrides: Vec<Override>,
    renames: Vec<Renamer>,
    prefix: String,
    dtype: Option<Dtype>,
    reference: Option<BTreeMap<String, Vec<usize>>>,
}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping")
            .field("direction", &self.direction)
            .field("list_names", &self.list_names)
            .field("overrides", &self.overrides.len())
            .field("renames", &self.renames.len())
            .field("prefix", &self.prefix)
            .field("dtype", &self.dtype)
            .field("reference", &self.reference.as_ref().map(BTreeMap::len))
            .finish()
    }
}

/// The result of [`Mapping::apply`]: the tensors to write, and what was done to each key.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The output, flat: target key to tensor. `safejax::to_file(path, &converted.tensors)` writes it.
    pub tensors: BTreeMap<String, DynTensor>,
    /// One entry per input key, in input key order.
    pub entries: Vec<Entry>,
}

impl Converted {
    /// The entry of a source key.
    pub fn entry(&self, source: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.source == source)
    }

    /// The output as a tree of dicts (keys cut at `.`).
    pub fn to_value(&self) -> Result<Value> {
        nest(self.tensors.iter().map(|(k, t)| (k.as_str(), t.clone())))
    }
}

/// Keys of a result compared with a reference: every difference, as transformers' loader reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferenceCheck {
    /// Keys the reference has and the result lacks.
    pub missing: Vec<String>,
    /// Keys the result has and the reference lacks.
    pub unexpected: Vec<String>,
    /// Keys in both whose shapes differ: key, the result's shape, the reference's.
    pub mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl ReferenceCheck {
    /// Whether keys and shapes match exactly.
    pub fn is_match(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }
}

impl fmt::Display for ReferenceCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_match() {
            return f.write_str("every key and shape matches the reference");
        }
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!("{} missing: {}", self.missing.len(), quoted(&self.missing)));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!(
                "{} unexpected: {}",
                self.unexpected.len(),
                quoted(&self.unexpected)
            ));
        }
        if !self.mismatched.is_empty() {
            let list: Vec<String> = self
                .mismatched
                .iter()
                .map(|(k, ours, theirs)| format!("`{k}` is {ours:?}, the reference has {theirs:?}"))
                .collect();
            parts.push(format!("{} mis-shaped: {}", list.len(), list.join(", ")));
        }
        f.write_str(&parts.join("; "))
    }
}

fn quoted(keys: &[String]) -> String {
    keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
}

/// Compares `result` (key to shape) with `reference` (key to shape).
pub fn check_reference<'a>(
    result: impl IntoIterator<Item = (&'a str, &'a [usize])>,
    reference: &BTreeMap<String, Vec<usize>>,
) -> ReferenceCheck {
    let result: BTreeMap<&str, &[usize]> = result.into_iter().collect();
    let mut check = ReferenceCheck::default();
    for (key, shape) in reference {
        match result.get(key.as_str()) {
            None => check.missing.push(key.clone()),
            Some(ours) if *ours != shape.as_slice() => {
                check.mismatched.push((key.clone(), ours.to_vec(), shape.clone()))
            }
            Some(_) => {}
        }
    }
    check.unexpected = result
        .keys()
        .filter(|k| !reference.contains_key(**k))
        .map(|k| k.to_string())
        .collect();
    check
}

/// Permutes a tensor's axes (numpy's `transpose(perm)`) on its bytes; the dtype stays.
pub fn permute(tensor: &DynTensor, perm: &[usize]) -> Result<DynTensor> {
    let data = permute_bytes(tensor.as_bytes(), tensor.dtype(), tensor.shape(), perm)?;
    DynTensor::new(tensor.dtype(), permute::permuted_shape(tensor.shape(), perm), data)
}

/// One key's decision, before any bytes move.
struct Plan {
    target: Option<String>,
    perm: Option<Vec<usize>>,
    rule: Rule,
}

/// The names of a key: `.` between dict levels, and haiku's `/~/` and `/` inside module paths.
fn split_names(key: &str) -> Vec<String> {
    key.split('.')
        .flat_map(|part| part.split("/~/").flat_map(|p| p.split('/')))
        .map(str::to_owned)
        .collect()
}

/// The conv permutation `[spatial..., in, out]` to `[out, in, spatial...]`.
fn conv_perm(rank: usize) -> Vec<usize> {
    let mut p = vec![rank - 1, rank - 2];
    p.extend(0..rank - 2);
    p
}

/// Splits `layers_0` into `layers`, `0`.
fn split_list_name(name: &str) -> Option<(&str, &str)> {
    let (stem, index) = name.rsplit_once('_')?;
    (!stem.is_empty() && !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit())).then_some((stem, index))
}

impl Mapping {
    fn new(direction: Direction) -> Mapping {
        Mapping {
            direction,
            list_names: false,
            overrides: Vec::new(),
            renames: Vec::new(),
            prefix: String::new(),
            dtype: None,
            reference: None,
        }
    }

    /// JAX to PyTorch (the module docs list the rules).
    pub fn to_torch() -> Mapping {
        Mapping::new(Direction::ToTorch)
    }

    /// PyTorch to flax: the rules inverted; give [`reference`](Self::reference) where names alone
    /// cannot decide.
    pub fn to_flax() -> Mapping {
        Mapping::new(Direction::ToFlax)
    }

    /// The direction.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// To PyTorch: linen list names `layers_0` become `layers.0` (every module name ending in `_`
    /// and digits, so `Dense_0` too). To flax: `layers.0` becomes `layers_0`.
    pub fn list_names(mut self, yes: bool) -> Mapping {
        self.list_names = yes;
        self
    }

    /// Keys whose source name `matches` keep the layout they are stored in; the name still follows
    /// the table (a kernel is called `weight`). Decides ambiguous kernels. Earlier decisions win.
    pub fn keep(mut self, matches: impl Fn(&str) -> bool + Send + Sync + 'static) -> Mapping {
        self.overrides.push(Override::Keep(Box::new(matches)));
        self
    }

    /// Keys whose source name `matches` get their axes in order `perm` (numpy's `transpose`); the
    /// name follows the table. Decides ambiguous kernels. Earlier decisions win.
    pub fn permute(mut self, matches: impl Fn(&str) -> bool + Send + Sync + 'static, perm: Vec<usize>) -> Mapping {
        self.overrides.push(Override::Permute(Box::new(matches), perm));
        self
    }

    /// A last say on target names: `rename(target)` gives the new name, or `None` to leave it.
    /// Renames run in the order given, each on the previous one's output.
    pub fn rename(mut self, rename: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Mapping {
        self.renames.push(Box::new(rename));
        self
    }

    /// Put `prefix` (with a `.` after it) in front of every target name (before renames).
    pub fn prefix(mut self, prefix: &str) -> Mapping {
        self.prefix = prefix.trim_end_matches('.').to_owned();
        self
    }

    /// Cast float tensors (f16, bf16, f32, f64) to this float dtype; others stay as they are.
    pub fn dtype(mut self, dtype: Dtype) -> Mapping {
        self.dtype = Some(dtype);
        self
    }

    /// The target model's keys and shapes: where a name has several inverses, the one the reference
    /// has is chosen. Used by [`to_flax`](Self::to_flax).
    pub fn reference(mut self, keys: BTreeMap<String, Vec<usize>>) -> Mapping {
        self.reference = Some(keys);
        self
    }

    /// What would be done to each key (name, dtype not needed: shape only), without moving bytes:
    /// the `--dry-run` of the command line. Errors as [`apply`](Self::apply) does.
    pub fn plan<'a>(&self, keys: impl IntoIterator<Item = (&'a str, &'a [usize])>) -> Result<Vec<Entry>> {
        let keys: Vec<(&str, &[usize])> = keys.into_iter().collect();
        let has_stats = keys.iter().any(|(k, _)| {
            let names = split_names(k);
            matches!(names.last().map(String::as_str), Some("running_mean" | "running_var"))
        });
        let mut undecided = Vec::new();
        let mut reasons = Vec::new();
        let mut entries = Vec::with_capacity(keys.len());
        for (key, shape) in &keys {
            match self.plan_key(key, shape, has_stats) {
                Ok(plan) => {
                    let target_shape = match &plan.perm {
                        Some(p) => permute::permuted_shape(shape, p),
                        None => shape.to_vec(),
                    };
                    entries.push(Entry {
                        source: key.to_string(),
                        target: plan.target,
                        shape: shape.to_vec(),
                        target_shape,
                        permutation: plan.perm,
                        rule: plan.rule,
                    })
                }
                Err(reason) => {
                    undecided.push(key.to_string());
                    reasons.push(reason);
                }
            }
        }
        if !undecided.is_empty() {
            return Err(Error::UndecidedKeys {
                keys: undecided,
                reasons,
            });
        }
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for e in &entries {
            if let Some(t) = &e.target {
                if let Some(first) = seen.insert(t, &e.source) {
                    return Err(Error::TargetCollision {
                        first: first.to_owned(),
                        second: e.source.clone(),
                        target: t.to_owned(),
                    });
                }
            }
        }
        Ok(entries)
    }

    /// Maps a tree (any format, any style) to the target layout.
    pub fn apply(&self, value: &Value) -> Result<Converted> {
        let leaves: Vec<(String, &DynTensor)> = value.leaves().collect();
        self.apply_flat(leaves.iter().map(|(k, t)| (k.as_str(), *t)))
    }

    /// Maps flat keys (as a safetensors file holds them) to the target layout.
    pub fn apply_flat<'a>(&self, tensors: impl IntoIterator<Item = (&'a str, &'a DynTensor)>) -> Result<Converted> {
        let tensors: Vec<(&str, &DynTensor)> = tensors.into_iter().collect();
        let entries = self.plan(tensors.iter().map(|(k, t)| (*k, t.shape())))?;
        let mut out = BTreeMap::new();
        for (entry, (key, tensor)) in entries.iter().zip(&tensors) {
            let Some(target) = &entry.target else { continue };
            let moved = match &entry.permutation {
                Some(p) => permute(tensor, p).map_err(|e| Error::msg(format_args!("`{key}`: {e}")))?,
                None => (*tensor).clone(),
            };
            out.insert(target.clone(), self.cast(key, moved)?);
        }
        Ok(Converted { tensors: out, entries })
    }

    /// Maps borrowed tensors (a loaded file's views) to the target layout; tensors that neither
    /// move nor cast are copied once, into the result.
    pub fn apply_views<'a>(
        &self,
        tensors: impl IntoIterator<Item = (&'a str, &'a DynTensorView<'a>)>,
    ) -> Result<Converted> {
        let tensors: Vec<(&str, &DynTensorView<'_>)> = tensors.into_iter().collect();
        let entries = self.plan(tensors.iter().map(|(k, t)| (*k, t.shape())))?;
        let mut out = BTreeMap::new();
        for (entry, (key, view)) in entries.iter().zip(&tensors) {
            let Some(target) = &entry.target else { continue };
            let moved = match &entry.permutation {
                Some(p) => DynTensor::new(
                    view.dtype(),
                    entry.target_shape.clone(),
                    permute_bytes(view.as_bytes(), view.dtype(), view.shape(), p)
                        .map_err(|e| Error::msg(format_args!("`{key}`: {e}")))?,
                )?,
                None => view.to_owned_tensor(),
            };
            out.insert(target.clone(), self.cast(key, moved)?);
        }
        Ok(Converted { tensors: out, entries })
    }

    fn cast(&self, key: &str, tensor: DynTensor) -> Result<DynTensor> {
        let is_float = |d: Dtype| matches!(d, Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64);
        match self.dtype {
            Some(to) if is_float(tensor.dtype()) && tensor.dtype() != to => tensor.convert(to).map_err(|e| match e {
                Error::Conversion { from, to, reason, .. } => Error::Conversion {
                    key: key.to_owned(),
                    from,
                    to,
                    reason,
                },
                other => other,
            }),
            _ => Ok(tensor),
        }
    }

    /// The caller's decision for a key, if any: `Some(None)` keeps, `Some(Some(p))` permutes.
    fn decision(&self, key: &str, rank: usize) -> std::result::Result<Option<Option<Vec<usize>>>, String> {
        for o in &self.overrides {
            match o {
                Override::Keep(m) if m(key) => return Ok(Some(None)),
                Override::Permute(m, p) if m(key) => {
                    if !permute::is_permutation(p, rank) {
                        return Err(format!(
                            "`{key}`: the permutation {p:?} given for it does not order {rank} axes"
                        ));
                    }
                    let identity = p.iter().enumerate().all(|(k, &a)| k == a);
                    return Ok(Some((!identity).then(|| p.clone())));
                }
                _ => {}
            }
        }
        Ok(None)
    }

    fn plan_key(&self, key: &str, shape: &[usize], has_stats: bool) -> std::result::Result<Plan, String> {
        let rank = shape.len();
        let decision = self.decision(key, rank)?;
        let mut candidates = match self.direction {
            Direction::ToTorch => vec![self.torch_rule(key, rank, decision)?],
            Direction::ToFlax => self.flax_rules(key, rank, has_stats, decision),
        };
        // With a reference, the first candidate it has; else the first.
        let pick = match &self.reference {
            Some(reference) => candidates
                .iter()
                .position(|c| c.target.as_ref().is_some_and(|t| reference.contains_key(t)))
                .unwrap_or(0),
            None => 0,
        };
        let mut plan = candidates.swap_remove(pick);
        if let Some(target) = plan.target.take() {
            let mut name = target;
            for rename in &self.renames {
                if let Some(new) = rename(&name) {
                    name = new;
                }
            }
            plan.target = Some(name);
        }
        Ok(plan)
    }

    fn join(&self, names: &[String]) -> String {
        let mut parts: Vec<&str> = Vec::new();
        if !self.prefix.is_empty() {
            parts.push(&self.prefix);
        }
        parts.extend(names.iter().map(String::as_str));
        parts.join(".")
    }

    fn torch_rule(
        &self,
        key: &str,
        rank: usize,
        decision: Option<Option<Vec<usize>>>,
    ) -> std::result::Result<Plan, String> {
        let mut names = split_names(key);
        if names.len() > 1 && matches!(names[0].as_str(), "params" | "batch_stats" | "state") {
            names.remove(0);
        }
        if self.list_names {
            let leaf = names.pop();
            names = names
                .into_iter()
                .flat_map(|n| match split_list_name(&n) {
                    Some((stem, index)) => vec![stem.to_owned(), index.to_owned()],
                    None => vec![n],
                })
                .collect();
            names.extend(leaf);
        }
        let leaf = names.last().cloned().unwrap_or_default();
        let parent = if names.len() >= 2 {
            names[names.len() - 2].clone()
        } else {
            String::new()
        };
        let parent = parent.as_str();
        let module = parent.to_ascii_lowercase();
        let mut rule = Rule::Unchanged;
        let mut perm = None;
        let mut decision = decision;
        fn rename_leaf(names: &mut [String], to: &str) {
            if let Some(last) = names.last_mut() {
                *last = to.to_owned();
            }
        }
        match leaf.as_str() {
            "kernel" | "w" => {
                rename_leaf(&mut names, "weight");
                match decision.take() {
                    Some(None) => rule = Rule::Kept,
                    Some(Some(p)) => {
                        rule = Rule::Permuted;
                        perm = Some(p);
                    }
                    None => {
                        let (r, p) = torch_kernel(key, parent, &module, rank)?;
                        rule = r;
                        perm = Some(p);
                    }
                }
            }
            "scale" | "embedding" | "embeddings" => {
                rename_leaf(&mut names, "weight");
                rule = Rule::Weight;
            }
            "b" | "offset" => {
                rename_leaf(&mut names, "bias");
                rule = Rule::Bias;
            }
            "mean" => {
                rename_leaf(&mut names, "running_mean");
                rule = Rule::RunningMean;
            }
            "var" => {
                rename_leaf(&mut names, "running_var");
                rule = Rule::RunningVar;
            }
            "average" if matches!(parent, "mean_ema" | "var_ema") => {
                let stat = if parent == "mean_ema" {
                    "running_mean"
                } else {
                    "running_var"
                };
                names.pop();
                rename_leaf(&mut names, stat);
                rule = if parent == "mean_ema" {
                    Rule::RunningMean
                } else {
                    Rule::RunningVar
                };
            }
            "hidden" | "counter" if matches!(parent, "mean_ema" | "var_ema") => {
                return Ok(Plan {
                    target: None,
                    perm: None,
                    rule: Rule::Dropped,
                });
            }
            _ => {}
        }
        // A decision on a key that is not a kernel (a kernel's was taken above).
        match decision {
            Some(None) => rule = Rule::Kept,
            Some(Some(p)) => {
                rule = Rule::Permuted;
                perm = Some(p);
            }
            None => {}
        }
        Ok(Plan {
            target: Some(self.join(&names)),
            perm,
            rule,
        })
    }

    /// The inverses of a PyTorch key, best guess first.
    fn flax_rules(&self, key: &str, rank: usize, has_stats: bool, decision: Option<Option<Vec<usize>>>) -> Vec<Plan> {
        let mut names: Vec<String> = key.split('.').map(str::to_owned).collect();
        if self.list_names {
            let mut joined: Vec<String> = Vec::new();
            for n in names {
                let is_index = !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
                match joined.last_mut() {
                    Some(prev) if is_index => *prev = format!("{prev}_{n}"),
                    _ => joined.push(n),
                }
            }
            names = joined;
        }
        let leaf = names.last().cloned().unwrap_or_default();
        let parent = if names.len() >= 2 {
            names[names.len() - 2].to_ascii_lowercase()
        } else {
            String::new()
        };
        // (leaf name, permutation, rule), best first.
        let mut leaves: Vec<(String, Option<Vec<usize>>, Rule)> = match leaf.as_str() {
            "weight" if rank >= 3 => {
                let p = permute::inverse(&conv_perm(rank));
                vec![("kernel".into(), Some(p), Rule::Conv)]
            }
            "weight" if rank == 2 => {
                let linear = ("kernel".to_owned(), Some(vec![1, 0]), Rule::Linear);
                let embedding = ("embedding".to_owned(), None, Rule::Weight);
                if parent.contains("emb") {
                    vec![embedding, linear]
                } else {
                    vec![linear, embedding]
                }
            }
            "weight" if rank == 1 => vec![
                ("scale".into(), None, Rule::Weight),
                ("weight".into(), None, Rule::Unchanged),
            ],
            "running_mean" => vec![("mean".into(), None, Rule::RunningMean)],
            "running_var" => vec![("var".into(), None, Rule::RunningVar)],
            "num_batches_tracked" => {
                return vec![Plan {
                    target: None,
                    perm: None,
                    rule: Rule::Dropped,
                }]
            }
            _ => vec![(leaf.clone(), None, Rule::Unchanged)],
        };
        if let Some(d) = decision {
            for l in &mut leaves {
                l.2 = if d.is_some() { Rule::Permuted } else { Rule::Kept };
                l.1 = d.clone();
            }
        }
        let is_stat = matches!(leaf.as_str(), "running_mean" | "running_var");
        let root = if is_stat { "batch_stats" } else { "params" };
        // Roots: as flax's BatchNorm models keep them when there are statistics; the reference
        // decides otherwise.
        let roots: Vec<Option<&str>> = if has_stats {
            vec![Some(root), None]
        } else {
            vec![None, Some(root)]
        };
        let mut plans = Vec::new();
        for r in roots {
            for (name, perm, rule) in &leaves {
                let mut parts: Vec<String> = r.map(str::to_owned).into_iter().collect();
                if !self.prefix.is_empty() {
                    parts.push(self.prefix.clone());
                }
                parts.extend(names[..names.len() - 1].iter().cloned());
                parts.push(name.clone());
                plans.push(Plan {
                    target: Some(parts.join(".")),
                    perm: perm.clone(),
                    rule: *rule,
                });
            }
        }
        plans
    }
}

/// The rule for a kernel the caller did not decide on, or why it cannot be decided.
fn torch_kernel(key: &str, parent: &str, module: &str, rank: usize) -> std::result::Result<(Rule, Vec<usize>), String> {
    if module.contains("convtranspose") || module.contains("conv_transpose") || module.contains("deconv") {
        return Err(format!(
            "`{key}` is a transposed convolution's kernel (PyTorch's ConvTranspose weight is [in, out, spatial...], \
             and flax may have flipped it)"
        ));
    }
    if matches!(parent, "c_attn" | "c_proj" | "c_fc") {
        return Err(format!(
            "`{key}` is GPT-2's Conv1D kernel, stored [out, in] already: keep it for nn.Linear, permute 1,0 for \
             transformers' Conv1D"
        ));
    }
    match rank {
        2 => Ok((Rule::Linear, vec![1, 0])),
        3 if module.contains("conv") => Ok((Rule::Conv, conv_perm(3))),
        3 => Err(format!(
            "`{key}` is a 3-D kernel outside a convolution (a DenseGeneral [in, heads, head_dim], or a 1-D \
             convolution whose module name does not say so)"
        )),
        0 | 1 => Err(format!("`{key}` is a kernel of rank {rank}")),
        _ => Ok((Rule::Conv, conv_perm(rank))),
    }
}

/// A tree of dicts from flat `.`-joined keys.
fn nest<'a>(items: impl IntoIterator<Item = (&'a str, DynTensor)>) -> Result<Value> {
    let mut root = BTreeMap::new();
    for (key, tensor) in items {
        let parts: Vec<&str> = key.split('.').collect();
        let mut dict = &mut root;
        for part in &parts[..parts.len() - 1] {
            let slot = dict
                .entry((*part).to_owned())
                .or_insert_with(|| Value::Dict(BTreeMap::new()));
            dict = match slot {
                Value::Dict(d) => d,
                Value::Tensor(_) => return Err(Error::msg(format_args!("`{key}`: a prefix of it is a tensor too"))),
            };
        }
        if dict
            .insert(parts[parts.len() - 1].to_owned(), Value::Tensor(tensor))
            .is_some()
        {
            return Err(Error::msg(format_args!("`{key}` holds other keys and is a tensor too")));
        }
    }
    Ok(Value::Dict(root))
}

#[cfg(test)]
mod tests;
