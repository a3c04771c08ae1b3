//! Key styles beyond the fixtures: inheritance, switching styles in a subtree, objax files without
//! variable types, and lists with gaps as maps keyed by index.

mod common;

use std::collections::BTreeMap;

use common::models::{ObjLinear, ObjaxMlp};
use common::{fixture_bytes, leaves_of};
use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

fn t(values: &[f32]) -> Tensor<f32> {
    Tensor::new(vec![values.len()], values.to_vec()).unwrap()
}

fn keys<T: Serialize + Params>(params: &T) -> Vec<String> {
    leaves_of(params).into_keys().collect()
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Params)]
struct Linear {
    w: Tensor<f32>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Params)]
struct Block {
    linear: Vec<Linear>,
    #[safejax(join = "/")]
    gate: Linear,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Params)]
#[safejax(style = "haiku")]
struct Haiku {
    block: Block,
    blocks: Vec<Block>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Params)]
#[safejax(style = "nnx")]
struct Nnx {
    block: Block,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Params)]
#[safejax(style = "objax", class = "Net")]
struct Objax {
    block: Linear,
    seq: Vec<Linear>,
}

/// A flax root holding one subtree in each other style.
#[derive(Debug, PartialEq, Serialize, Deserialize, Params)]
struct Mixed {
    flax: Vec<Linear>,
    haiku: Haiku,
    nnx: Nnx,
    objax: Objax,
}

fn mixed() -> Mixed {
    let block = || Block {
        linear: vec![Linear { w: t(&[1.0]) }, Linear { w: t(&[2.0]) }],
        gate: Linear { w: t(&[3.0]) },
    };
    Mixed {
        flax: vec![Linear { w: t(&[0.0]) }],
        haiku: Haiku {
            block: block(),
            blocks: vec![block()],
        },
        nnx: Nnx {
            block: Block {
                linear: vec![Linear { w: t(&[4.0]) }],
                gate: Linear { w: t(&[5.0]) },
            },
        },
        objax: Objax {
            block: Linear { w: t(&[6.0]) },
            seq: vec![Linear { w: t(&[7.0]) }],
        },
    }
}

#[test]
fn each_struct_style_governs_its_subtree() {
    let params = mixed();
    assert_eq!(
        keys(&params),
        [
            "flax_0.w",
            "haiku.block/gate.w",
            "haiku.block/~/linear_0.w",
            "haiku.block/~/linear_1.w",
            "haiku.blocks_0/gate.w",
            "haiku.blocks_0/~/linear_0.w",
            "haiku.blocks_0/~/linear_1.w",
            "nnx.block.gate.w",
            "nnx.block.linear.0.w",
            "objax.(Net).block(Linear).w::TrainVar",
            "objax.(Net).seq(Sequential)[0](Linear).w::TrainVar",
        ]
    );
    let bytes = safejax::to_bytes(&params).unwrap();
    assert_eq!(safejax::from_bytes::<Mixed>(&bytes).unwrap(), params);
}

#[test]
fn the_same_struct_takes_the_style_of_where_it_stands() {
    // `Block` has no style of its own: under haiku it joins with `/~/`, under nnx with `.`.
    let params = mixed();
    let all = keys(&params);
    assert!(all.iter().any(|k| k == "haiku.block/~/linear_0.w"));
    assert!(all.iter().any(|k| k == "nnx.block.linear.0.w"));
}

#[test]
fn objax_var_types_are_optional_on_read() {
    // objax's own `save_var_collection` writes the names without `::TrainVar`: strip them all.
    let original: ObjaxMlp = safejax::from_bytes(&fixture_bytes("objax_mlp")).unwrap();
    let flat: BTreeMap<String, Tensor<f32>> = leaves_of(&original)
        .into_iter()
        .filter(|(_, leaf)| leaf.dtype == safejax::Dtype::F32)
        .map(|(key, leaf)| {
            let bare = key.rsplit_once("::").unwrap().0.to_owned();
            (
                bare,
                Tensor::new(leaf.shape, leaf.values.iter().map(|&v| v as f32).collect()).unwrap(),
            )
        })
        .collect();
    assert!(flat.contains_key("(MLP).l1(Linear).w"));
    #[derive(Debug, Serialize, Deserialize, Params)]
    #[safejax(style = "objax", class = "MLP")]
    struct NoKeygen {
        l1: ObjLinear,
        seq: Vec<Option<ObjLinear>>,
    }
    let bytes = safejax::to_bytes(&flat).unwrap();
    let loaded: NoKeygen = safejax::Options::new()
        .allow_unknown_keys(true)
        .from_bytes(&bytes)
        .unwrap();
    assert_eq!(Some(&loaded.l1), Some(&original.l1));
    assert_eq!(loaded.seq, original.seq);
    // Written again, the suffix is back.
    assert!(keys(&loaded).iter().all(|k| k.ends_with("::TrainVar")));
}

#[test]
fn a_list_with_gaps_as_a_map_keyed_by_index() {
    #[derive(Debug, Serialize, Deserialize, Params)]
    #[safejax(style = "objax", class = "MLP")]
    struct SeqOnly {
        seq: BTreeMap<usize, ObjLinear>,
    }
    let loaded: SeqOnly = safejax::Options::new()
        .allow_unknown_keys(true)
        .from_bytes(&fixture_bytes("objax_mlp"))
        .unwrap();
    assert_eq!(loaded.seq.keys().copied().collect::<Vec<_>>(), [0, 2]);
    assert_eq!(loaded.seq[&2].w.shape(), &[2, 2]);
}

#[test]
fn a_wrong_style_finds_nothing_and_says_what_it_looked_for() {
    // Reading the haiku MLP as if it were flax: the keys it looks for are named, with the near miss.
    #[derive(Debug, Serialize, Deserialize, Params)]
    struct FlaxMlp {
        mlp: Layers,
    }
    #[derive(Debug, Serialize, Deserialize, Params)]
    struct Layers {
        linear_0: Pair,
    }
    #[derive(Debug, Serialize, Deserialize, Params)]
    struct Pair {
        w: Tensor<f32>,
        b: Tensor<f32>,
    }
    let err = safejax::from_bytes::<FlaxMlp>(&fixture_bytes("haiku_mlp")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "2 missing keys: `mlp.linear_0.b` (did you mean `mlp/~/linear_0.b`?), `mlp.linear_0.w` (did you mean `mlp/~/linear_0.w`?); \
         4 unknown keys: `mlp/~/linear_0.b`, `mlp/~/linear_0.w`, `mlp/~/linear_1.b`, `mlp/~/linear_1.w`"
    );
}
