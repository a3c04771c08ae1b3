//! Sharded checkpoints in the Hugging Face layout: written, read back, checked, and refused when an
//! index points outside its directory or disagrees with its shards.

mod common;

use std::collections::BTreeMap;

use common::models::HaikuResNet;
use common::{fixture_bytes, leaves_of};
use safejax::{Error, Options};

fn resnet() -> HaikuResNet {
    safejax::from_bytes(&fixture_bytes("haiku_resnet")).unwrap()
}

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Asserts that `from_dir(dir)` loads `params`.
fn assert_dir_holds(dir: &std::path::Path, params: &HaikuResNet) {
    let back: HaikuResNet = safejax::from_dir(dir).unwrap();
    assert_eq!(&back, params);
}

#[test]
fn shards_and_an_index_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let params = resnet();
    let total: usize = leaves_of(&params)
        .values()
        .map(|l| l.values.len() * l.dtype.bit_size() / 8)
        .sum();
    Options::new()
        .metadata("format", "flax")
        .to_dir(dir.path(), &params, 8 * 1024)
        .unwrap();
    let names = files(dir.path());
    let shards: Vec<&String> = names.iter().filter(|n| n.ends_with(".safetensors")).collect();
    assert!(shards.len() >= 3, "{names:?}");
    assert_eq!(shards[0], &format!("model-00001-of-{:05}.safetensors", shards.len()));
    assert!(names.contains(&"model.safetensors.index.json".to_owned()));

    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("model.safetensors.index.json")).unwrap())
            .unwrap();
    assert_eq!(index["metadata"]["total_size"].as_u64(), Some(total as u64));
    let weight_map = index["weight_map"].as_object().unwrap();
    assert_eq!(weight_map.len(), leaves_of(&params).len());
    for shard in &shards {
        let bytes = std::fs::read(dir.path().join(shard)).unwrap();
        assert_eq!(safejax::read_metadata(&bytes).unwrap()["format"], "flax");
        let tensors: BTreeMap<String, safejax::DynTensor> = safejax::from_bytes(&bytes).unwrap();
        let tensor_bytes: usize = tensors.values().map(|t| t.as_bytes().len()).sum();
        assert!(tensor_bytes <= 8 * 1024, "{shard} holds {tensor_bytes} tensor bytes");
        assert!(tensors.keys().all(|k| weight_map[k] == shard.as_str()));
    }

    assert_dir_holds(dir.path(), &params);
    let via_index: HaikuResNet = safejax::from_dir(dir.path().join("model.safetensors.index.json")).unwrap();
    assert_eq!(via_index, params);
}

#[test]
fn one_file_when_everything_fits_and_stale_shards_go() {
    let dir = tempfile::tempdir().unwrap();
    let params = resnet();
    safejax::to_dir(dir.path(), &params, 4096).unwrap();
    assert!(files(dir.path()).len() > 2);
    safejax::to_dir(dir.path(), &params, 1 << 30).unwrap();
    assert_eq!(files(dir.path()), ["model.safetensors"]);
    assert!(std::fs::read(dir.path().join("model.safetensors")).unwrap() == fixture_bytes("haiku_resnet"));
    assert_dir_holds(dir.path(), &params);
}

#[test]
fn a_tensor_larger_than_the_shard_size_gets_a_shard_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let params = resnet();
    safejax::to_dir(dir.path(), &params, 1).unwrap();
    let shards = files(dir.path()).iter().filter(|n| n.ends_with(".safetensors")).count();
    assert_eq!(shards, leaves_of(&params).len());
}

fn sharded_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    safejax::to_dir(dir.path(), &resnet(), 8 * 1024).unwrap();
    dir
}

fn edit_index(dir: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("model.safetensors.index.json");
    let mut index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut index);
    std::fs::write(path, serde_json::to_string(&index).unwrap()).unwrap();
}

#[test]
fn shard_names_outside_the_directory_are_refused() {
    for bad in [
        "../model-00001-of-00002.safetensors",
        "/tmp/x.safetensors",
        "sub/model.safetensors",
        "model.bin",
    ] {
        let dir = sharded_dir();
        edit_index(dir.path(), |index| {
            let first = index["weight_map"]
                .as_object_mut()
                .unwrap()
                .values_mut()
                .next()
                .unwrap();
            *first = serde_json::json!(bad);
        });
        let err = safejax::from_dir::<HaikuResNet>(dir.path()).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidIndex { reason } if reason.contains(bad)),
            "{bad}: {err:?}"
        );
    }
}

#[test]
fn an_index_that_disagrees_with_its_shards_is_refused() {
    let dir = sharded_dir();
    edit_index(dir.path(), |index| {
        let map = index["weight_map"].as_object_mut().unwrap();
        let (key, shard) = map.iter().next().map(|(k, v)| (k.clone(), v.clone())).unwrap();
        let other = map.values().find(|v| **v != shard).unwrap().clone();
        map.insert(key, other);
    });
    let err = safejax::from_dir::<HaikuResNet>(dir.path()).unwrap_err();
    assert!(matches!(err, Error::InvalidIndex { .. }), "{err:?}");

    let dir = sharded_dir();
    edit_index(dir.path(), |index| {
        index["weight_map"]
            .as_object_mut()
            .unwrap()
            .insert("ghost".into(), "model-00001-of-00002.safetensors".into());
    });
    assert!(safejax::from_dir::<HaikuResNet>(dir.path()).is_err());
}

#[test]
fn a_directory_without_a_checkpoint_says_what_it_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let err = safejax::from_dir::<HaikuResNet>(dir.path()).unwrap_err();
    let Error::NoCheckpoint { path, looked_for } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(path, &dir.path().display().to_string());
    assert_eq!(
        looked_for,
        &[
            "model.safetensors.index.json",
            "model.safetensors",
            "flax_model.msgpack.index.json",
            "flax_model.msgpack"
        ]
    );
}

#[test]
fn a_msgpack_checkpoint_directory_reads_too() {
    let dir = tempfile::tempdir().unwrap();
    let params = resnet();
    safejax::msgpack::to_file(dir.path().join("flax_model.msgpack"), &params).unwrap();
    assert_dir_holds(dir.path(), &params);
}
