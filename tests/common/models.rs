//! Typed param structs for every fixture that `scripts/gen_fixtures.py` makes with the real
//! frameworks. Shared by the tests and by `examples/interop_write.rs`.
#![allow(dead_code)]

use safejax::{bf16, f16, Params, Tensor};
use serde::{Deserialize, Serialize};

// ---- flax linen ----

/// `nn.Dense` params, in f32 or bf16.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct Dense<T: safejax::Element> {
    pub kernel: Tensor<T>,
    pub bias: Tensor<T>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct Conv {
    pub kernel: Tensor<f32>,
    pub bias: Tensor<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct BatchNormParams {
    pub scale: Tensor<f32>,
    pub bias: Tensor<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct BatchNormStats {
    pub mean: Tensor<f32>,
    pub var: Tensor<f32>,
}

/// `flax_cnn`: the whole variables of an `@nn.compact` CNN, one Dense in bf16.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct FlaxCnn {
    pub params: CnnParams,
    pub batch_stats: CnnStats,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct CnnParams {
    #[serde(rename = "Conv_0")]
    pub conv: Conv,
    #[serde(rename = "BatchNorm_0")]
    pub batch_norm: BatchNormParams,
    // flax names modules as they are called: `Dense(2)(Dense(3)(x))` calls Dense(3) first, but it
    // was constructed second, so it is Dense_1 yet comes first in the variables dict.
    #[serde(rename = "Dense_1")]
    pub hidden: Dense<f32>,
    #[serde(rename = "Dense_0")]
    pub head: Dense<bf16>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct CnnStats {
    #[serde(rename = "BatchNorm_0")]
    pub batch_norm: BatchNormStats,
}

/// `flax_setup_mlp`: a `setup()` list of Dense layers and a head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct SetupMlp {
    pub layers: Vec<Dense<f32>>,
    pub head: Dense<f32>,
}

// ---- flax NNX ----

/// `nnx_model`: an `nnx.List` of Linear layers and a BatchNorm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
#[safejax(style = "nnx")]
pub struct NnxModel {
    pub layers: Vec<Dense<f32>>,
    pub bn: NnxBatchNorm,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct NnxBatchNorm {
    pub scale: Tensor<f32>,
    pub bias: Tensor<f32>,
    pub mean: Tensor<f32>,
    pub var: Tensor<f32>,
}

// ---- haiku ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct HkLinear {
    pub w: Tensor<f32>,
    pub b: Tensor<f32>,
}

/// `haiku_mlp`: `hk.nets.MLP([3, 2])`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
#[safejax(style = "haiku")]
pub struct HaikuMlp {
    pub mlp: HkMlp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct HkMlp {
    pub linear: Vec<HkLinear>,
}

/// `haiku_nested`: modules made inside `__call__` join with `/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
#[safejax(style = "haiku")]
pub struct HaikuNested {
    pub nested: Nested,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct Nested {
    #[safejax(join = "/")]
    pub linear: HkLinear,
    #[safejax(join = "/")]
    pub inner: HkLinear,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct HkConv {
    pub w: Tensor<f32>,
    pub b: Tensor<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct HkBatchNorm {
    pub scale: Tensor<f32>,
    pub offset: Tensor<f32>,
}

/// haiku's `ExponentialMovingAverage` state; `counter` is a 0-d `i32`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct Ema {
    pub average: Tensor<f32>,
    pub hidden: Tensor<f32>,
    pub counter: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct HkBatchNormState {
    pub mean_ema: Ema,
    pub var_ema: Ema,
}

/// `haiku_bn_state`: params and state in one file, as the safejax README does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct HaikuBnState {
    pub params: BnParams,
    pub state: BnState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
#[safejax(style = "haiku")]
pub struct BnParams {
    pub conv2_d: HkConv,
    pub batch_norm: HkBatchNorm,
    pub linear: HkLinear,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
#[safejax(style = "haiku")]
pub struct BnState {
    pub batch_norm: HkBatchNormState,
}

/// `haiku_resnet`: a small `hk.nets.ResNet`, params and state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct HaikuResNet {
    pub params: ResNetParams,
    pub state: ResNetState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
#[safejax(style = "haiku")]
pub struct ResNetParams {
    pub res_net: ResNet,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct ConvW {
    pub w: Tensor<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct ResNet {
    pub initial_conv: ConvW,
    pub initial_batchnorm: HkBatchNorm,
    pub block_group: Vec<BlockGroup>,
    pub logits: HkLinear,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct BlockGroup {
    pub block: Vec<Block>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct Block {
    pub conv: Vec<ConvW>,
    pub batchnorm: Vec<HkBatchNorm>,
    pub shortcut_conv: Option<ConvW>,
    pub shortcut_batchnorm: Option<HkBatchNorm>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
#[safejax(style = "haiku")]
pub struct ResNetState {
    pub res_net: ResNetStateTree,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct ResNetStateTree {
    pub initial_batchnorm: HkBatchNormState,
    pub block_group: Vec<BlockGroupState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct BlockGroupState {
    pub block: Vec<BlockState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct BlockState {
    pub batchnorm: Vec<HkBatchNormState>,
    pub shortcut_batchnorm: Option<HkBatchNormState>,
}

// ---- objax ----

/// `objax_mlp`: a var collection with BatchNorm state, a `Sequential` whose index 1 (a relu) holds
/// no variables, a `ModuleList` and a Dropout's random state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
#[safejax(style = "objax", class = "MLP")]
pub struct ObjaxMlp {
    pub l1: ObjLinear,
    pub bn: BatchNorm1D,
    pub seq: Vec<Option<ObjLinear>>,
    pub drop: Dropout,
    #[safejax(class = "ModuleList")]
    pub ml: Vec<ObjLinear>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
#[serde(rename = "Linear")]
pub struct ObjLinear {
    pub w: Tensor<f32>,
    pub b: Tensor<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct BatchNorm1D {
    pub beta: Tensor<f32>,
    pub gamma: Tensor<f32>,
    #[safejax(var = "StateVar")]
    pub running_mean: Tensor<f32>,
    #[safejax(var = "StateVar")]
    pub running_var: Tensor<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct Dropout {
    pub keygen: Generator,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct Generator {
    #[serde(rename = "_key")]
    #[safejax(var = "RandomState")]
    pub key: Tensor<u32>,
}

// ---- Hugging Face FlaxBertModel ----

/// The params of a `FlaxBertModel` (`scripts/gen_hf_fixtures.py` makes a tiny one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct FlaxBert {
    pub embeddings: BertEmbeddings,
    pub encoder: BertEncoder,
    pub pooler: BertPooler,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct BertEmbeddings {
    pub word_embeddings: Embed,
    pub position_embeddings: Embed,
    pub token_type_embeddings: Embed,
    #[serde(rename = "LayerNorm")]
    pub layer_norm: LayerNorm,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct Embed {
    pub embedding: Tensor<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct LayerNorm {
    pub scale: Tensor<f32>,
    pub bias: Tensor<f32>,
}

/// transformers names its layers `"0"`, `"1"`, ...: list indices as path parts, as NNX does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
#[safejax(style = "nnx")]
pub struct BertEncoder {
    pub layer: Vec<BertLayer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct BertLayer {
    pub attention: BertAttention,
    pub intermediate: BertDense,
    pub output: BertOutput,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct BertAttention {
    #[serde(rename = "self")]
    pub self_attention: BertSelfAttention,
    pub output: BertOutput,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct BertSelfAttention {
    pub query: Dense<f32>,
    pub key: Dense<f32>,
    pub value: Dense<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct BertDense {
    pub dense: Dense<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct BertOutput {
    pub dense: Dense<f32>,
    #[serde(rename = "LayerNorm")]
    pub layer_norm: LayerNorm,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct BertPooler {
    pub dense: Dense<f32>,
}

/// One tensor of every element type, in the order of the dtype table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct AllDtypes {
    pub b: Tensor<bool>,
    pub u8: Tensor<u8>,
    pub i8: Tensor<i8>,
    pub u16: Tensor<u16>,
    pub i16: Tensor<i16>,
    pub u32: Tensor<u32>,
    pub i32: Tensor<i32>,
    pub u64: Tensor<u64>,
    pub i64: Tensor<i64>,
    pub f16: Tensor<f16>,
    pub bf16: Tensor<bf16>,
    pub f32: Tensor<f32>,
    pub f64: Tensor<f64>,
}
