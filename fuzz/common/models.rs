//! Param types that the fuzz targets load into: several leaf dtypes, every container, each style,
//! and recursive types.
#![allow(dead_code)]

use std::collections::BTreeMap;

use safejax::{bf16, f16, Params, Tensor, TensorView};
use serde::{Deserialize, Serialize};

// ---- load_typed: one struct with many leaf types and containers ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct Model {
    pub dense: Dense,
    #[serde(rename = "Embed_0")]
    pub embed: Option<Tensor<bf16>>,
    pub layers: Vec<Dense>,
    pub stats: BTreeMap<String, Tensor<f16>>,
    pub step: i32,
    pub flag: Option<bool>,
    pub ids: Tensor<u64>,
    pub pair: [Tensor<i8>; 2],
    pub gaps: BTreeMap<usize, Tensor<i16>>,
    pub mask: Option<Tensor<bool>>,
    pub wide: Option<Tensor<f64>>,
    pub counts: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct Dense {
    pub kernel: Tensor<f32>,
    pub bias: Tensor<f32>,
}

/// Leaves borrowed from the input where they are aligned.
#[derive(Debug, Serialize, Deserialize, Params)]
pub struct Views<'a> {
    #[serde(borrow)]
    pub dense: Option<DenseView<'a>>,
    #[serde(borrow)]
    pub stats: BTreeMap<String, TensorView<'a, f16>>,
    #[serde(borrow)]
    pub ids: Option<TensorView<'a, u64>>,
}

#[derive(Debug, Serialize, Deserialize, Params)]
pub struct DenseView<'a> {
    #[serde(borrow)]
    pub kernel: TensorView<'a, f32>,
    #[serde(borrow)]
    pub bias: TensorView<'a, f32>,
}

// ---- resolve_keys: every style, with maps and index lists; all leaves U8 ----

pub type Leaf = Tensor<u8>;

/// `{"params": ..., "state": ...}` around haiku's dicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct HkCheckpoint {
    pub params: HkParams,
    pub state: Option<BTreeMap<String, BTreeMap<String, Leaf>>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
#[safejax(style = "haiku")]
pub struct HkParams {
    pub mlp: Option<HkMlp>,
    pub linear: Option<HkLinear>,
    pub blocks: BTreeMap<String, HkLinear>,
    pub extra: BTreeMap<String, Leaf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct HkMlp {
    pub linear: Vec<HkLinear>,
    #[safejax(join = "/")]
    pub inner: Option<HkLinear>,
    pub sub: Option<Box<HkMlp>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct HkLinear {
    pub w: Leaf,
    pub b: Option<Leaf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
#[safejax(style = "objax", class = "MLP")]
pub struct ObMlp {
    pub l1: Option<ObLinear>,
    pub seq: Vec<Option<ObLinear>>,
    #[safejax(class = "ModuleList")]
    pub ml: BTreeMap<usize, ObLinear>,
    pub named: BTreeMap<String, ObLinear>,
    #[safejax(var = "StateVar")]
    pub stat: Option<Leaf>,
    #[safejax(var = "RandomState")]
    pub keys: BTreeMap<String, Leaf>,
    pub rec: Vec<ObMlp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
#[safejax(class = "Linear")]
pub struct ObLinear {
    pub w: Leaf,
    pub b: Option<Leaf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
#[safejax(style = "nnx")]
pub struct NnxModel {
    pub layers: Vec<NnxLinear>,
    pub blocks: BTreeMap<usize, NnxLinear>,
    pub bn: Option<BTreeMap<String, Leaf>>,
    pub children: Vec<NnxModel>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct NnxLinear {
    pub kernel: Leaf,
    pub bias: Option<Leaf>,
}

/// flax, recursive through every container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct Chain {
    pub w: Option<Leaf>,
    pub next: Option<Box<Chain>>,
    pub kids: Vec<Chain>,
    pub named: BTreeMap<String, Chain>,
    #[serde(rename = "Dense_0")]
    pub dense: Option<BTreeMap<usize, Leaf>>,
}
