//! Schema-free loading: any fixture opens as a `Value` or a flat map of `DynTensor`s, through the same
//! code path as typed structs, and writes back unchanged.

mod common;

use std::collections::BTreeMap;

use common::{decode, expected_leaves, fixture_bytes};
use safejax::{Dtype, DynTensor, DynTensorView, Params, Tensor, Value};
use serde::{Deserialize, Serialize};

const FIXTURES: [&str; 8] = [
    "flax_cnn",
    "flax_setup_mlp",
    "nnx_model",
    "haiku_mlp",
    "haiku_nested",
    "haiku_bn_state",
    "haiku_resnet",
    "objax_mlp",
];

#[test]
fn every_fixture_opens_as_a_value_and_writes_back_unchanged() {
    for name in FIXTURES {
        let file = fixture_bytes(name);
        let value: Value = safejax::from_bytes(&file).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = expected_leaves(name);
        let leaves: BTreeMap<String, &DynTensor> = value.leaves().collect();
        assert_eq!(leaves.len(), expected.len(), "{name}");
        for (key, leaf) in &expected {
            let tensor = leaves
                .get(key)
                .unwrap_or_else(|| panic!("{name}: {key} not found in the value"));
            assert_eq!(
                (tensor.dtype(), tensor.shape()),
                (leaf.dtype, &leaf.shape[..]),
                "{name}: {key}"
            );
            assert_eq!(decode(tensor.dtype(), tensor.as_bytes()), leaf.values, "{name}: {key}");
        }
        assert!(
            safejax::to_bytes(&value).unwrap() == file,
            "{name}: written back differently"
        );
    }
}

#[test]
fn values_nest_at_dict_levels() {
    let value: Value = safejax::from_bytes(&fixture_bytes("haiku_bn_state")).unwrap();
    let Some(Value::Dict(state)) = value.get("state") else {
        panic!("no state dict")
    };
    assert_eq!(
        state.keys().collect::<Vec<_>>(),
        ["batch_norm/~/mean_ema", "batch_norm/~/var_ema"]
    );
    let counter = value
        .get("state.batch_norm/~/mean_ema.counter")
        .and_then(Value::as_tensor)
        .unwrap();
    assert_eq!((counter.dtype(), counter.shape()), (Dtype::I32, &[][..]));
}

#[test]
fn a_flat_map_of_dyn_tensors_holds_any_file() {
    let file = fixture_bytes("objax_mlp");
    let flat: BTreeMap<String, DynTensor> = safejax::from_bytes(&file).unwrap();
    assert_eq!(flat.len(), 13);
    let key = &flat["(MLP).drop(Dropout).keygen(Generator)._key::RandomState"];
    assert_eq!(key.dtype(), Dtype::U32);
    let typed: Tensor<u32> = key.to_tensor().unwrap();
    assert_eq!(typed.shape(), &[2]);
    assert!(key.to_tensor::<f32>().is_err());
    assert!(safejax::to_bytes(&flat).unwrap() == file);
    // Views borrow, whatever the alignment, since bytes need none.
    let views: BTreeMap<String, DynTensorView> = safejax::from_bytes(&file).unwrap();
    assert!(views.values().all(DynTensorView::is_borrowed));
}

#[test]
fn typed_and_dynamic_leaves_mix_in_one_struct() {
    #[derive(Debug, Serialize, Deserialize, Params)]
    struct Partly {
        params: BTreeMap<String, Value>,
        batch_stats: Stats,
    }
    #[derive(Debug, Serialize, Deserialize, Params)]
    struct Stats {
        #[serde(rename = "BatchNorm_0")]
        batch_norm: BTreeMap<String, Tensor<f32>>,
    }
    let file = fixture_bytes("flax_cnn");
    let partly: Partly = safejax::from_bytes(&file).unwrap();
    assert_eq!(partly.params.len(), 4);
    assert_eq!(partly.batch_stats.batch_norm["var"].shape(), &[4]);
    assert!(safejax::to_bytes(&partly).unwrap() == file);
}

#[test]
fn dyn_tensors_convert_and_check_sizes() {
    let t = DynTensor::from(Tensor::new(vec![2], vec![1.5f32, -2.0]).unwrap());
    let half = t.convert(Dtype::BF16).unwrap();
    assert_eq!(half.as_bytes().len(), 4);
    assert_eq!(decode(Dtype::BF16, half.as_bytes()), [1.5, -2.0]);
    assert!(t.convert(Dtype::I32).is_err());
    assert!(DynTensor::new(Dtype::F32, vec![3], vec![0; 8]).is_err());
    assert!(
        DynTensor::new(Dtype::F4, vec![3], vec![0; 2]).is_err(),
        "3 F4 elements do not fill whole bytes"
    );
}
