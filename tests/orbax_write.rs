//! `orbax::to_dir` writes what `orbax::from_dir` reads back unchanged. Whether Orbax itself restores
//! it is checked by Orbax: `SAFEJAX_ORBAX_OUT=DIR cargo test --test orbax_write write_for_orbax`
//! then `.venv/bin/python scripts/check_rust_orbax.py DIR`, which also checks the view of
//! `ocp.CheckpointManager` of a root where `Writer::step` wrote a step.

mod common;

use std::path::{Path, PathBuf};

use common::models::FlaxCnn;
use safejax::Value;

fn case_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/orbax")
        .join(name)
}

/// Cases whose every leaf is a jax array (the writer writes jax arrays).
const CASES: [&str; 6] = [
    "flax_cnn",
    "haiku_mlp",
    "haiku_bn_state",
    "nnx_split",
    "dtypes",
    "btree_interior",
];

#[test]
fn what_is_written_reads_back_the_same() {
    let out = tempfile::tempdir().unwrap();
    for case in CASES {
        let tree: Value = safejax::orbax::from_dir(case_dir(case)).unwrap();
        let dir = out.path().join(case);
        safejax::orbax::to_dir(&dir, &tree).unwrap();
        let back: Value = safejax::orbax::from_dir(&dir).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(back, tree, "{case}");
        for file in ["_METADATA", "_sharding", "_CHECKPOINT_METADATA", "manifest.ocdbt"] {
            assert!(dir.join(file).is_file(), "{case}: {file}");
        }
        assert!(!out.path().join(format!("{case}.orbax-checkpoint-tmp")).exists());
    }
}

#[test]
fn typed_params_write_and_an_existing_checkpoint_is_replaced() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("ckpt");
    let cnn: FlaxCnn = safejax::orbax::from_dir(case_dir("flax_cnn")).unwrap();
    safejax::orbax::to_dir(&dir, &cnn).unwrap();
    let other: Value = safejax::orbax::from_dir(case_dir("haiku_mlp")).unwrap();
    safejax::orbax::to_dir(&dir, &other).unwrap();
    let back: Value = safejax::orbax::from_dir(&dir).unwrap();
    assert_eq!(back, other, "the second save replaced the first whole");
    let names: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["ckpt"], "no temporary or old directory is left");
    let back: FlaxCnn = {
        safejax::orbax::to_dir(&dir, &cnn).unwrap();
        safejax::orbax::from_dir(&dir).unwrap()
    };
    assert_eq!(back, cnn);
}

fn sidecar(case: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(case_dir(&format!("{case}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of the Orbax-written manager root (steps 1 to 3 and an unfinished step 4) with step
/// 1000 of flax_cnn written by `Writer::step`, and the sidecar `scripts/check_rust_orbax.py` checks
/// it with: the manager's steps, now with 1000 the latest.
fn write_manager_step(root: &Path) -> serde_json::Value {
    copy_tree(&case_dir("manager"), root);
    let tree: Value = safejax::orbax::from_dir(case_dir("flax_cnn")).unwrap();
    safejax::orbax::Writer::new().step(1000).to_dir(root, &tree).unwrap();
    let mut json = sidecar("manager");
    let tensors = sidecar("flax_cnn")["tensors"].clone();
    json["layout"]["item"] = "1000/default".into();
    json["tensors"] = tensors.clone();
    json["manager"]["latest_step"] = 1000.into();
    json["manager"]["steps"]["1000"] = serde_json::json!({ "tensors": tensors });
    json
}

#[test]
fn a_step_is_written_as_a_manager_saves_it() {
    let out = tempfile::tempdir().unwrap();
    let root = out.path().join("run");
    write_manager_step(&root);
    let step = root.join("1000");
    let text = std::fs::read_to_string(step.join("_CHECKPOINT_METADATA")).unwrap();
    let meta: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        meta["item_handlers"]["default"]
            .as_str()
            .unwrap()
            .ends_with("StandardCheckpointHandler"),
        "{meta}"
    );
    assert!(step.join("default/_METADATA").is_file());
    assert!(
        !step.join("default/_CHECKPOINT_METADATA").exists(),
        "an item of a step has none"
    );
    assert!(!root.join("1000.orbax-checkpoint-tmp").exists());
    // The root loads as its latest step, the step directory as its one item: the same tree.
    let tree: Value = safejax::orbax::from_dir(case_dir("flax_cnn")).unwrap();
    for path in [&root, &step, &step.join("default")] {
        let back: Value = safejax::orbax::from_dir(path).unwrap();
        assert_eq!(back, tree, "{}", path.display());
    }
    // The steps Orbax wrote are untouched, and a step written again replaces only itself.
    let other: Value = safejax::orbax::from_dir(case_dir("haiku_mlp")).unwrap();
    safejax::orbax::Writer::new().step(1000).to_dir(&root, &other).unwrap();
    let back: Value = safejax::orbax::from_dir(&root).unwrap();
    assert_eq!(back, other);
    let step3: Value = safejax::orbax::from_dir(root.join("3")).unwrap();
    let orbax3: Value = safejax::orbax::from_dir(case_dir("manager/3")).unwrap();
    assert_eq!(step3, orbax3);
}

/// Writes the cases for `scripts/check_rust_orbax.py` when `SAFEJAX_ORBAX_OUT` names a directory.
#[test]
fn write_for_orbax() {
    let Some(out) = std::env::var_os("SAFEJAX_ORBAX_OUT") else {
        return;
    };
    let out = PathBuf::from(out);
    for case in CASES {
        let tree: Value = safejax::orbax::from_dir(case_dir(case)).unwrap();
        safejax::orbax::to_dir(out.join(case), &tree).unwrap();
    }
    // A PRNG key is written as its uint32 data (`Value` has no key type): the sidecar for Orbax's
    // check says so, dropping the key implementation of the original.
    let text = std::fs::read_to_string(case_dir("dtypes.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    for tensor in json["tensors"].as_object_mut().unwrap().values_mut() {
        let tensor = tensor.as_object_mut().unwrap();
        tensor.remove("prng_impl");
        tensor.remove("key_shape");
    }
    std::fs::write(out.join("dtypes.json"), serde_json::to_string(&json).unwrap()).unwrap();
    let json = write_manager_step(&out.join("manager_step"));
    std::fs::write(out.join("manager_step.json"), serde_json::to_string(&json).unwrap()).unwrap();
}
