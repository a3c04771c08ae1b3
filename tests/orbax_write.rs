//! `orbax::to_dir` writes what `orbax::from_dir` reads back unchanged. Whether Orbax itself restores
//! it is checked by Orbax: `SAFEJAX_ORBAX_OUT=DIR cargo test --test orbax_write write_for_orbax`
//! then `.venv/bin/python scripts/check_rust_orbax.py DIR`.

mod common;

use std::path::PathBuf;

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
}
