//! Files written by the real frameworks through Python safejax 0.5.0 (`scripts/gen_fixtures.py`)
//! load into typed structs with the values the frameworks recorded, and write back byte for byte.

mod common;

use common::models::*;
use common::{expected_leaves, expected_values, fixture_bytes, leaves_of, widen};
use safejax::{Params, TensorView};
use serde::{Deserialize, Serialize};
/// Asserts that `loaded` holds the values the fixture's JSON records for `key`.
fn assert_values<T: Copy + Into<f64>>(name: &str, key: &str, loaded: &[T]) {
    assert_eq!(widen(loaded), expected_values(name, key), "{name}: `{key}`");
}

/// Loads fixture `name` as `T`, checks every leaf against the recorded keys, dtypes, shapes and
/// values, and checks that writing it back gives the very same bytes.
fn check_fixture<T: Serialize + for<'de> Deserialize<'de> + Params>(name: &str) -> T {
    let bytes = fixture_bytes(name);
    let params: T = safejax::from_bytes(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let loaded = leaves_of(&params);
    let expected = expected_leaves(name);
    assert_eq!(
        loaded.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{name}: keys"
    );
    for (key, leaf) in &expected {
        assert_eq!(&loaded[key], leaf, "{name}: {key}");
    }
    let written = safejax::to_bytes(&params).unwrap();
    assert!(
        written == bytes,
        "{name}: written bytes differ from the Python safejax file"
    );
    params
}

#[test]
fn flax_cnn_variables_with_a_bf16_dense() {
    let cnn: FlaxCnn = check_fixture("flax_cnn");
    assert_eq!(cnn.params.head.kernel.shape(), &[3, 2]);
    assert_eq!(cnn.params.head.kernel.dtype(), safejax::Dtype::BF16);
    assert_eq!(
        cnn.params
            .head
            .kernel
            .as_slice()
            .iter()
            .map(|v| v.to_f64())
            .collect::<Vec<_>>(),
        expected_values("flax_cnn", "params.Dense_0.kernel")
    );
    assert_values(
        "flax_cnn",
        "batch_stats.BatchNorm_0.var",
        cnn.batch_stats.batch_norm.var.as_slice(),
    );
    assert_eq!(cnn.params.conv.kernel.shape(), &[3, 3, 1, 4]);
}

#[test]
fn flax_setup_list_of_layers() {
    let mlp: SetupMlp = check_fixture("flax_setup_mlp");
    assert_eq!(mlp.layers.len(), 2);
    assert_values("flax_setup_mlp", "layers_1.kernel", mlp.layers[1].kernel.as_slice());
}

#[test]
fn nnx_list_indices_are_path_parts() {
    let model: NnxModel = check_fixture("nnx_model");
    assert_eq!(model.layers.len(), 2);
    assert_values("nnx_model", "bn.mean", model.bn.mean.as_slice());
}

#[test]
fn haiku_mlp() {
    let mlp: HaikuMlp = check_fixture("haiku_mlp");
    assert_eq!(mlp.mlp.linear.len(), 2);
    assert_values("haiku_mlp", "mlp/~/linear_0.w", mlp.mlp.linear[0].w.as_slice());
}

#[test]
fn haiku_modules_made_in_call_join_with_a_slash() {
    let nested: HaikuNested = check_fixture("haiku_nested");
    assert_values("haiku_nested", "nested/inner.b", nested.nested.inner.b.as_slice());
}

#[test]
fn haiku_params_and_state_with_scalar_counters() {
    let ckpt: HaikuBnState = check_fixture("haiku_bn_state");
    let counter = expected_values("haiku_bn_state", "state.batch_norm/~/mean_ema.counter");
    assert_eq!(vec![ckpt.state.batch_norm.mean_ema.counter as f64], counter);
    assert_values("haiku_bn_state", "params.linear.w", ckpt.params.linear.w.as_slice());
}

#[test]
fn haiku_resnet_params_and_state() {
    let resnet: HaikuResNet = check_fixture("haiku_resnet");
    let groups = &resnet.params.res_net.block_group;
    assert_eq!(groups.iter().map(|g| g.block.len()).collect::<Vec<_>>(), [2, 1, 1, 1]);
    // Only the first block of each group has a projection shortcut.
    assert!(groups[0].block[0].shortcut_conv.is_some() && groups[0].block[1].shortcut_conv.is_none());
    assert_values(
        "haiku_resnet",
        "params.res_net/~/block_group_3/~/block_0/~/conv_1.w",
        groups[3].block[0].conv[1].w.as_slice(),
    );
}

#[test]
fn objax_var_collection_with_gaps_and_var_types() {
    let mlp: ObjaxMlp = check_fixture("objax_mlp");
    assert_eq!(mlp.seq.len(), 3);
    assert!(mlp.seq[0].is_some() && mlp.seq[1].is_none() && mlp.seq[2].is_some());
    assert_values(
        "objax_mlp",
        "(MLP).drop(Dropout).keygen(Generator)._key::RandomState",
        mlp.drop.keygen.key.as_slice(),
    );
}

#[test]
fn borrowed_views_of_a_fixture() {
    #[derive(Serialize, Deserialize, Params)]
    #[safejax(style = "haiku")]
    struct Mlp<'a> {
        #[serde(borrow)]
        mlp: Layers<'a>,
    }
    #[derive(Serialize, Deserialize, Params)]
    struct Layers<'a> {
        #[serde(borrow)]
        linear: Vec<Linear<'a>>,
    }
    #[derive(Serialize, Deserialize, Params)]
    struct Linear<'a> {
        #[serde(borrow)]
        w: TensorView<'a, f32>,
        #[serde(borrow)]
        b: TensorView<'a, f32>,
    }
    // An 8-aligned copy, so that every f32 tensor of the reference layout is aligned.
    let file = fixture_bytes("haiku_mlp");
    let mut words = vec![0u64; file.len().div_ceil(8)];
    let aligned = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..file.len()];
    aligned.copy_from_slice(&file);
    let mlp: Mlp = safejax::from_bytes(aligned).unwrap();
    assert!(mlp.mlp.linear.iter().all(|l| l.w.is_borrowed() && l.b.is_borrowed()));
    assert_values("haiku_mlp", "mlp/~/linear_1.w", mlp.mlp.linear[1].w.as_slice());
    assert!(safejax::to_bytes(&mlp).unwrap() == file);
}
