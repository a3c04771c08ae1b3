//! Property: arbitrary param trees — every leaf dtype, nested containers, empty and 0-d tensors,
//! every key style — round-trip exactly through `to_bytes` / `from_bytes`.
//!
//! Cases: 48 by default; set `PROPTEST_CASES` for more.

mod common;

use std::collections::BTreeMap;

use proptest::prelude::*;
use safejax::{bf16, f16, Element, Params, Tensor};
use serde::{Deserialize, Serialize};

use common::models::AllDtypes;

#[derive(Debug, Clone, Serialize, Deserialize, Params)]
struct Tree {
    all: AllDtypes,
    flag: bool,
    step: i64,
    rate: f32,
    scale: bf16,
    // An empty list writes no key; reading none back is fine only with `#[serde(default)]`.
    #[serde(default)]
    layers: Vec<Layer>,
    maybe: Option<Layer>,
    named: BTreeMap<String, Layer>,
    leaves: BTreeMap<String, Tensor<i32>>,
    gaps: BTreeMap<usize, Tensor<u16>>,
    pair: [Tensor<f64>; 2],
    #[serde(default)]
    nested: Vec<Vec<Tensor<u8>>>,
    opt_leaf: Option<Tensor<f16>>,
    boxed: Box<Layer>,
    hk: HkParams,
    ob: ObMlp,
    nnx: NnxModel,
}

#[derive(Debug, Clone, Serialize, Deserialize, Params)]
struct Layer {
    w: Tensor<f32>,
    b: Option<Tensor<bf16>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Params)]
#[safejax(style = "haiku")]
struct HkParams {
    mlp: HkMlp,
    blocks: BTreeMap<String, Layer>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Params)]
struct HkMlp {
    // An empty list writes no key; reading none back is fine only with `#[serde(default)]`.
    #[serde(default)]
    linear: Vec<Layer>,
    #[safejax(join = "/")]
    gate: Option<Layer>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Params)]
#[safejax(style = "objax", class = "MLP")]
struct ObMlp {
    seq: Vec<Option<Layer>>,
    #[safejax(class = "ModuleList")]
    ml: BTreeMap<usize, Layer>,
    #[safejax(var = "StateVar")]
    mean: Tensor<f32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Params)]
#[safejax(style = "nnx")]
struct NnxModel {
    // An empty list writes no key; reading none back is fine only with `#[serde(default)]`.
    #[serde(default)]
    layers: Vec<Layer>,
    #[serde(default)]
    counts: Vec<u32>,
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

/// Shapes of up to 3 dimensions of up to 3, zeros included, and 0-d.
fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..4, 0..4)
}

fn tensor<T: Element + std::fmt::Debug>(element: impl Strategy<Value = T> + Clone) -> impl Strategy<Value = Tensor<T>> {
    shape().prop_flat_map(move |shape| {
        let n: usize = shape.iter().product();
        prop::collection::vec(element.clone(), n).prop_map(move |data| Tensor::new(shape.clone(), data).unwrap())
    })
}

// Floats from any bit pattern: NaN payloads, infinities, -0.0 and subnormals too.
fn f16s() -> impl Strategy<Value = f16> + Clone {
    any::<u16>().prop_map(f16::from_bits)
}
fn bf16s() -> impl Strategy<Value = bf16> + Clone {
    any::<u16>().prop_map(bf16::from_bits)
}
fn f32s() -> impl Strategy<Value = f32> + Clone {
    any::<u32>().prop_map(f32::from_bits)
}
fn f64s() -> impl Strategy<Value = f64> + Clone {
    any::<u64>().prop_map(f64::from_bits)
}

fn layer() -> impl Strategy<Value = Layer> {
    (tensor(f32s()), prop::option::of(tensor(bf16s()))).prop_map(|(w, b)| Layer { w, b })
}

/// Map keys that read back: no separator of any style.
fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,5}"
}

fn hk() -> impl Strategy<Value = HkParams> {
    (
        prop::collection::vec(layer(), 0..3),
        prop::option::of(layer()),
        prop::collection::btree_map(name(), layer(), 0..3),
    )
        .prop_map(|(linear, gate, blocks)| HkParams {
            mlp: HkMlp { linear, gate },
            blocks,
        })
}

fn ob() -> impl Strategy<Value = ObMlp> {
    (
        // A list's last element is present: trailing gaps hold no key to read back.
        (prop::collection::vec(prop::option::of(layer()), 0..3), layer()),
        prop::collection::btree_map(0usize..6, layer(), 0..3),
        tensor(f32s()),
    )
        .prop_map(|((mut seq, last), ml, mean)| {
            if !seq.is_empty() {
                seq.push(Some(last));
            }
            ObMlp { seq, ml, mean }
        })
}

fn nnx() -> impl Strategy<Value = NnxModel> {
    (
        prop::collection::vec(layer(), 0..3),
        prop::collection::vec(any::<u32>(), 0..3),
    )
        .prop_map(|(layers, counts)| NnxModel { layers, counts })
}

fn tree() -> impl Strategy<Value = Tree> {
    let dtypes = (
        (
            tensor(any::<bool>()),
            tensor(any::<u8>()),
            tensor(any::<i8>()),
            tensor(any::<u16>()),
            tensor(any::<i16>()),
            tensor(any::<u32>()),
            tensor(any::<i32>()),
        ),
        (
            tensor(any::<u64>()),
            tensor(any::<i64>()),
            tensor(f16s()),
            tensor(bf16s()),
            tensor(f32s()),
            tensor(f64s()),
        ),
    );
    let scalars = (any::<bool>(), any::<i64>(), f32s(), bf16s());
    let containers = (
        prop::collection::vec(layer(), 0..3),
        prop::option::of(layer()),
        prop::collection::btree_map(name(), layer(), 0..3),
        prop::collection::btree_map(name(), tensor(any::<i32>()), 0..3),
        prop::collection::btree_map(0usize..8, tensor(any::<u16>()), 0..3),
        [tensor(f64s()), tensor(f64s())],
        // Inner lists are not empty: an empty one has no key, so trailing ones cannot read back.
        prop::collection::vec(prop::collection::vec(tensor(any::<u8>()), 1..3), 0..3),
        prop::option::of(tensor(f16s())),
        layer(),
    );
    (dtypes, scalars, containers, hk(), ob(), nnx()).prop_map(
        |(
            ((b, u8, i8, u16, i16, u32, i32), (u64, i64, f16, bf16, f32, f64)),
            (flag, step, rate, scale),
            (layers, maybe, named, leaves, gaps, pair, nested, opt_leaf, boxed),
            hk,
            ob,
            nnx,
        )| Tree {
            all: AllDtypes {
                b,
                u8,
                i8,
                u16,
                i16,
                u32,
                i32,
                u64,
                i64,
                f16,
                bf16,
                f32,
                f64,
            },
            flag,
            step,
            rate,
            scale,
            layers,
            maybe,
            named,
            leaves,
            gaps,
            pair,
            nested,
            opt_leaf,
            boxed: Box::new(boxed),
            hk,
            ob,
            nnx,
        },
    )
}

/// Every leaf of a tree: its key, dtype, shape and exact bytes. Equal leaves mean equal trees,
/// bit for bit (where `==` on floats would fail on NaN).
fn leaves(tree: &Tree) -> Vec<(String, safejax::Dtype, Vec<usize>, Vec<u8>)> {
    let mut out = Vec::new();
    tree.serialize(&mut safejax::Serializer::new::<Tree>(|leaf| {
        out.push((leaf.key.to_owned(), leaf.dtype, leaf.shape.to_vec(), leaf.data.to_vec()));
        Ok(())
    }))
    .unwrap();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn param_trees_round_trip_exactly(tree in tree()) {
        let bytes = safejax::to_bytes(&tree).unwrap();
        let back: Tree = safejax::from_bytes(&bytes).unwrap();
        prop_assert_eq!(leaves(&back), leaves(&tree));
        prop_assert_eq!(back.layers.len(), tree.layers.len());
        prop_assert_eq!(back.named.keys().collect::<Vec<_>>(), tree.named.keys().collect::<Vec<_>>());
        prop_assert_eq!(back.gaps.keys().collect::<Vec<_>>(), tree.gaps.keys().collect::<Vec<_>>());
        prop_assert_eq!(back.ob.seq.len(), tree.ob.seq.len());
        prop_assert!(safejax::to_bytes(&back).unwrap() == bytes);
    }
}
