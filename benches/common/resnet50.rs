//! A typed haiku ResNet50: the params and state of `hk.nets.ResNet50(num_classes=1000)` made with
//! `hk.transform_with_state`, as Python safejax writes them
//! (`safejax.haiku.serialize({"params": params, "state": state})`).
//!
//! `benches/data/resnet50.json` lists every key, dtype and shape of the real model; it is made by
//! `scripts/resnet50_keys.py`. [`file`] builds a safetensors file of that exact layout filled with
//! random values, and [`Checkpoint`] loads it key for key: 161 params tensors (102.2 MB) and 318
//! state leaves (BatchNorm moving averages and their `i32` counters), 479 leaves in all.
//!
//! The structs are generic over the leaf: `Checkpoint<Tensor<f32>>` owns its tensors,
//! `Checkpoint<TensorView<'a, f32>>` borrows them from the file's bytes. Fields are declared in the
//! order haiku makes the modules (a convolution before its batch norm), as a user would write them,
//! not in the file's key order.

use std::collections::BTreeMap;

use safejax::{Dtype, DynTensor, Params, Tensor, TensorView};
use serde::{Deserialize, Serialize};

/// `{"params": params, "state": state}`.
#[derive(Serialize, Deserialize, Params)]
pub struct Checkpoint<L> {
    pub params: ResNetParams<L>,
    pub state: ResNetState<L>,
}

/// The owned checkpoint.
pub type Owned = Checkpoint<Tensor<f32>>;
/// The checkpoint borrowing its tensors from the file's bytes.
pub type Views<'a> = Checkpoint<TensorView<'a, f32>>;

#[derive(Serialize, Deserialize, Params)]
#[safejax(style = "haiku")]
pub struct ResNetParams<L> {
    pub res_net50: ResNet<L>,
}

#[derive(Serialize, Deserialize, Params)]
pub struct ResNet<L> {
    pub initial_conv: ConvW<L>,
    pub initial_batchnorm: BatchNorm<L>,
    /// `block_group_0` … `block_group_3`, of 3, 4, 6 and 3 bottleneck blocks.
    pub block_group: Vec<BlockGroup<L>>,
    pub logits: Linear<L>,
}

#[derive(Serialize, Deserialize, Params)]
pub struct BlockGroup<L> {
    pub block: Vec<Block<L>>,
}

/// A bottleneck block: three convolutions, each with its batch norm, and on the first block of a
/// group a projection shortcut.
#[derive(Serialize, Deserialize, Params)]
pub struct Block<L> {
    pub conv: Vec<ConvW<L>>,
    pub batchnorm: Vec<BatchNorm<L>>,
    pub shortcut_conv: Option<ConvW<L>>,
    pub shortcut_batchnorm: Option<BatchNorm<L>>,
}

/// `hk.Conv2D(with_bias=False)`.
#[derive(Serialize, Deserialize, Params)]
pub struct ConvW<L> {
    pub w: L,
}

#[derive(Serialize, Deserialize, Params)]
pub struct BatchNorm<L> {
    pub scale: L,
    pub offset: L,
}

#[derive(Serialize, Deserialize, Params)]
pub struct Linear<L> {
    pub w: L,
    pub b: L,
}

#[derive(Serialize, Deserialize, Params)]
#[safejax(style = "haiku")]
pub struct ResNetState<L> {
    pub res_net50: ResNetStateTree<L>,
}

#[derive(Serialize, Deserialize, Params)]
pub struct ResNetStateTree<L> {
    pub initial_batchnorm: BatchNormState<L>,
    pub block_group: Vec<BlockGroupState<L>>,
}

#[derive(Serialize, Deserialize, Params)]
pub struct BlockGroupState<L> {
    pub block: Vec<BlockState<L>>,
}

#[derive(Serialize, Deserialize, Params)]
pub struct BlockState<L> {
    pub batchnorm: Vec<BatchNormState<L>>,
    pub shortcut_batchnorm: Option<BatchNormState<L>>,
}

/// `hk.BatchNorm`'s state: two `hk.ExponentialMovingAverage`s.
#[derive(Serialize, Deserialize, Params)]
pub struct BatchNormState<L> {
    pub mean_ema: Ema<L>,
    pub var_ema: Ema<L>,
}

#[derive(Serialize, Deserialize, Params)]
pub struct Ema<L> {
    pub average: L,
    pub hidden: L,
    pub counter: i32,
}

/// One leaf of the real model.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Spec {
    pub key: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

#[derive(Deserialize)]
struct Listing {
    tensors: Vec<Spec>,
}

/// `benches/data/resnet50.json`, as written by `scripts/resnet50_keys.py`.
pub const JSON: &str = include_str!("../data/resnet50.json");

/// Every leaf of the real model, in the order haiku lists them.
pub fn specs() -> Vec<Spec> {
    serde_json::from_str::<Listing>(JSON)
        .expect("benches/data/resnet50.json")
        .tensors
}

/// The bytes of a safetensors file with the keys, dtypes and shapes of the real model and random
/// values (counters are 1), laid out as Python safejax lays it out (the safetensors crate's
/// `serialize`, which Python safejax calls: `tests/resnet50.rs` compares the two).
pub fn file() -> Vec<u8> {
    let leaves: BTreeMap<String, DynTensor> = specs()
        .into_iter()
        .enumerate()
        .map(|(i, spec)| {
            let n: usize = spec.shape.iter().product();
            let bytes: Vec<u8> = match spec.dtype {
                Dtype::F32 => super::random_f32(n, i as u64)
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
                Dtype::I32 => (0..n).flat_map(|_| 1i32.to_le_bytes()).collect(),
                other => panic!("unexpected dtype {other} in resnet50.json"),
            };
            (spec.key, DynTensor::new(spec.dtype, spec.shape, bytes).unwrap())
        })
        .collect();
    safejax::to_bytes(&leaves).unwrap()
}
