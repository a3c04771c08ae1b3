//! Orbax checkpoints written by the real orbax-checkpoint 0.12.8 (`scripts/gen_orbax_fixtures.py`)
//! load with the exact values their sidecar JSON records, as `Value` and into the same typed
//! structs as the safetensors fixtures of the same trees.

mod common;

use std::collections::BTreeMap;

use common::models::*;
use common::{
    expected_leaves, fixture_bytes, leaves_from_json, leaves_of, orbax_case_dir, orbax_cases, value_leaves, Leaf,
};
use safejax::{Dtype, Error, Options, Params, Tensor, Value};
use serde::{Deserialize, Serialize};

fn sidecar(name: &str) -> serde_json::Value {
    let path = orbax_case_dir(&format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("sidecar")).unwrap()
}

fn assert_same(name: &str, got: &BTreeMap<String, Leaf>, expected: &BTreeMap<String, Leaf>) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{name}: keys"
    );
    for (key, leaf) in expected {
        let found = &got[key];
        assert_eq!((found.dtype, &found.shape), (leaf.dtype, &leaf.shape), "{name}: {key}");
        let same = found
            .values
            .iter()
            .zip(&leaf.values)
            .all(|(a, b)| a == b || (a.is_nan() && b.is_nan()));
        assert!(
            same && found.values.len() == leaf.values.len(),
            "{name}: {key}: {:?} != {:?}",
            found.values,
            leaf.values
        );
    }
}

/// The dtype a case holds that safejax has no name for, if any.
fn unnamed_dtype(json: &serde_json::Value) -> Option<(String, String)> {
    json["tensors"].as_object().unwrap().iter().find_map(|(key, t)| {
        let dtype = t["dtype"].as_str().unwrap();
        dtype.parse::<Dtype>().is_err().then(|| (key.clone(), dtype.to_owned()))
    })
}

#[test]
fn every_fixture_loads_with_its_recorded_values() {
    let names = orbax_cases();
    assert_eq!(names.len(), 30, "the 30 cases of scripts/gen_orbax_fixtures.py");
    let mut failures = Vec::new();
    let mut compared = 0;
    for name in &names {
        let json = sidecar(name);
        let result: safejax::Result<Value> = safejax::orbax::from_dir(orbax_case_dir(name));
        if let Some((key, dtype)) = unnamed_dtype(&json) {
            // int4, int2, float4 and two float8 kinds: an error naming the key and the dtype.
            let err = result.expect_err(name);
            assert!(
                matches!(&err, Error::UnknownDtype { key: k, found } if *k == key && *found == dtype),
                "{name}: {err:?}"
            );
            assert_eq!(
                err.to_string(),
                format!("unknown dtype at `{key}`: found `{dtype}`"),
                "{name}"
            );
            continue;
        }
        match result {
            Ok(value) => {
                let expected = leaves_from_json(&json["tensors"]);
                assert_same(name, &value_leaves(&value), &expected);
                compared += expected.len();
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(compared > 400, "{compared} leaves compared");
}

#[test]
fn a_manager_root_loads_its_latest_finished_step_and_steps_load_alone() {
    let json = sidecar("manager");
    assert_eq!(json["manager"]["latest_step"], 3);
    assert_eq!(json["manager"]["unfinished"][0], "4.orbax-checkpoint-tmp");
    let root: Value = safejax::orbax::from_dir(orbax_case_dir("manager")).unwrap();
    assert_same(
        "manager",
        &value_leaves(&root),
        &leaves_from_json(&json["manager"]["steps"]["3"]["tensors"]),
    );
    for step in ["1", "2", "3"] {
        let expected = leaves_from_json(&json["manager"]["steps"][step]["tensors"]);
        let from_step: Value = safejax::orbax::from_dir(orbax_case_dir("manager").join(step)).unwrap();
        assert_same(step, &value_leaves(&from_step), &expected);
        let from_item: Value = safejax::orbax::from_dir(orbax_case_dir("manager").join(step).join("default")).unwrap();
        assert_same(step, &value_leaves(&from_item), &expected);
    }
    // Step 1's values differ from step 3's: the latest was chosen, not the first.
    assert_ne!(
        leaves_from_json(&json["manager"]["steps"]["1"]["tensors"]),
        leaves_from_json(&json["manager"]["steps"]["3"]["tensors"])
    );
}

#[test]
fn a_composite_step_loads_the_item_chosen_by_name() {
    let json = sidecar("composite");
    let expected = leaves_from_json(&json["tensors"]);
    let reader = safejax::orbax::Reader::new().item("params");
    let value: Value = reader.from_dir(orbax_case_dir("composite")).unwrap();
    assert_same("composite", &value_leaves(&value), &expected);
    let value: Value = reader.from_dir(orbax_case_dir("composite").join("5")).unwrap();
    assert_same("composite", &value_leaves(&value), &expected);
    let err = safejax::orbax::Reader::new()
        .item("extra")
        .from_dir::<Value>(orbax_case_dir("composite/5"))
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidOrbax { path, .. } if path == "."),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "invalid Orbax checkpoint at `.`: no item `extra`; the step holds params",
        "extra is a JSON item, not a tree"
    );
}

#[test]
fn typed_structs_load_as_from_safetensors() {
    // The Orbax fixtures are of the same trees as the safetensors ones but of other random values:
    // compare the keys and the recorded values, and the typed loads against each other.
    let cnn: FlaxCnn = safejax::orbax::from_dir(orbax_case_dir("flax_cnn")).unwrap();
    let expected = leaves_from_json(&sidecar("flax_cnn")["tensors"]);
    assert_same("flax_cnn", &leaves_of(&cnn), &expected);
    let chunked: FlaxCnn = safejax::orbax::from_dir(orbax_case_dir("chunked_zarr3")).unwrap();
    assert_eq!(
        chunked, cnn,
        "chunked zarr3 shards give the same tree as one chunk each"
    );
    assert_eq!(
        expected_leaves("flax_cnn").keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );

    let mlp: HaikuMlp = safejax::orbax::from_dir(orbax_case_dir("haiku_mlp")).unwrap();
    assert_same(
        "haiku_mlp",
        &leaves_of(&mlp),
        &leaves_from_json(&sidecar("haiku_mlp")["tensors"]),
    );
    let bn: HaikuBnState = safejax::orbax::from_dir(orbax_case_dir("haiku_bn_state")).unwrap();
    assert_same(
        "haiku_bn_state",
        &leaves_of(&bn),
        &leaves_from_json(&sidecar("haiku_bn_state")["tensors"]),
    );
}

#[test]
fn nnx_state_loads_with_or_without_its_value_level() {
    let split: NnxModel = safejax::orbax::from_dir(orbax_case_dir("nnx_split")).unwrap();
    let pure: NnxModel = safejax::orbax::from_dir(orbax_case_dir("nnx_pure_dict")).unwrap();
    let recorded_split = leaves_from_json(&sidecar("nnx_split")["tensors"]);
    let stripped: BTreeMap<String, Leaf> = recorded_split
        .into_iter()
        .map(|(k, v)| (k.strip_suffix(".value").unwrap().to_owned(), v))
        .collect();
    assert_same("nnx_split", &leaves_of(&split), &stripped);
    assert_same(
        "nnx_pure_dict",
        &leaves_of(&pure),
        &leaves_from_json(&sidecar("nnx_pure_dict")["tensors"]),
    );
    // `Value` keeps the paths as stored.
    let tree: Value = safejax::orbax::from_dir(orbax_case_dir("nnx_split")).unwrap();
    assert!(tree.get("layers.0.kernel.value").is_some());
    // The same struct loads Python safejax's safetensors of `nnx.state`.
    let _: NnxModel = safejax::from_bytes(&fixture_bytes("nnx_model")).unwrap();
}

/// A flax `TrainState` with `optax.adam`, as the README shows it.
#[derive(Debug, Serialize, Deserialize, Params)]
struct TrainState {
    step: i64,
    params: CnnParams,
    opt_state: OptState,
}

/// optax's chain state is a tuple: `(ScaleByAdamState, EmptyState)`. The `EmptyState` holds no
/// arrays, so only element `0` is in the checkpoint.
#[derive(Debug, Serialize, Deserialize, Params)]
struct OptState {
    #[serde(rename = "0")]
    adam: AdamState,
}

#[derive(Debug, Serialize, Deserialize, Params)]
struct AdamState {
    count: i32,
    mu: CnnParams,
    nu: CnnParams,
}

#[test]
fn a_train_state_with_optax_state_loads_typed() {
    let state: TrainState = safejax::orbax::from_dir(orbax_case_dir("train_state")).unwrap();
    let expected = leaves_from_json(&sidecar("train_state")["tensors"]);
    assert_same("train_state", &leaves_of(&state), &expected);
    assert_eq!(state.step, expected["step"].values[0] as i64);
    assert_eq!(
        state.opt_state.adam.count,
        expected["opt_state.0.count"].values[0] as i32
    );
}

#[test]
fn strict_options_apply_as_in_every_format() {
    #[derive(Debug, Serialize, Deserialize, Params)]
    struct OnlyParams {
        params: CnnParams,
    }
    let dir = orbax_case_dir("flax_cnn");
    let err = safejax::orbax::from_dir::<OnlyParams>(&dir).unwrap_err();
    assert!(
        matches!(&err, Error::UnknownKeys { keys, .. } if keys.iter().any(|k| k == "batch_stats.BatchNorm_0.mean")),
        "unknown keys are named: {err:?}"
    );
    let loose: OnlyParams = safejax::orbax::Reader::new()
        .options(Options::new().allow_unknown_keys(true))
        .from_dir(&dir)
        .unwrap();
    assert_eq!(loose.params.head.kernel.dtype(), Dtype::BF16);

    #[derive(Debug, Serialize, Deserialize, Params)]
    struct WrongDtype {
        #[serde(rename = "Dense_0")]
        dense: Dense<f32>,
    }
    #[derive(Debug, Serialize, Deserialize, Params)]
    struct Root {
        params: WrongDtype,
    }
    let err = safejax::orbax::Reader::new()
        .options(Options::new().allow_unknown_keys(true))
        .from_dir::<Root>(&dir)
        .unwrap_err();
    assert!(
        matches!(&err, Error::DtypeMismatch { key, expected: Dtype::F32, found: Dtype::BF16 }
            if key == "params.Dense_0.kernel"),
        "{err:?}"
    );
    let converted: Root = safejax::orbax::Reader::new()
        .options(Options::new().allow_unknown_keys(true).convert_dtypes(true))
        .from_dir(&dir)
        .unwrap();
    let kernel: Tensor<f32> = converted.params.dense.kernel;
    let want = leaves_from_json(&sidecar("flax_cnn")["tensors"])["params.Dense_0.kernel"]
        .values
        .clone();
    assert_eq!(
        kernel.as_slice().iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
        want
    );
}
