//! The typed ResNet50 of the benchmarks (`benches/common/resnet50.rs`) loads a file with the
//! exact keys, dtypes and shapes of haiku's ResNet50 (`benches/data/resnet50.json`, made by
//! `scripts/resnet50_keys.py` from the real model), and writes it back byte for byte.

#[path = "../benches/common/mod.rs"]
mod common;

use std::collections::BTreeSet;

use common::resnet50::{self, Owned, Views};
use safejax::{Dtype, MappedFile, Serializer};
use serde::Serialize;

#[test]
fn the_typed_resnet50_round_trips_every_key() {
    let specs = resnet50::specs();
    assert_eq!(specs.len(), 479);
    let params = specs.iter().filter(|s| s.key.starts_with("params.")).count();
    assert_eq!(params, 161);
    let params_bytes: usize = specs
        .iter()
        .filter(|s| s.key.starts_with("params."))
        .map(|s| s.shape.iter().product::<usize>() * 4)
        .sum();
    assert_eq!(params_bytes, 102_228_128);

    let file = resnet50::file();
    // Laid out as Python safejax lays it out: `safejax.haiku.serialize` hands the flattened tensors
    // to `safetensors.flax.save`, the safetensors crate's `serialize`. The same tensors through
    // that writer give the same bytes.
    let reference = safetensors::SafeTensors::deserialize(&file).unwrap();
    let rewritten = safetensors::serialize(reference.tensors(), None).unwrap();
    assert!(rewritten == file, "not the reference writer's layout");
    let de = safejax::Deserializer::from_slice(&file).unwrap();
    let in_file: BTreeSet<&str> = de.keys().collect();
    let listed: BTreeSet<&str> = specs.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(in_file, listed);

    // Unknown keys are errors by default, and missing ones always: the struct has every key.
    let owned: Owned = safejax::from_bytes(&file).unwrap();
    assert!(safejax::to_bytes(&owned).unwrap() == file);

    // The struct's leaves are the listed ones, with their dtypes and shapes.
    let mut leaves = Vec::new();
    owned
        .serialize(&mut Serializer::new::<Owned>(|leaf| {
            leaves.push((leaf.key.to_owned(), leaf.dtype, leaf.shape.to_vec()));
            Ok(())
        }))
        .unwrap();
    let mut expected: Vec<_> = specs
        .iter()
        .map(|s| (s.key.clone(), s.dtype, s.shape.clone()))
        .collect();
    leaves.sort();
    expected.sort();
    assert_eq!(leaves, expected);
    assert_eq!(leaves.iter().filter(|l| l.1 == Dtype::I32).count(), 106);

    let views: Views = safejax::from_bytes(&file).unwrap();
    let w = &views.params.res_net50.block_group[3].block[0]
        .shortcut_conv
        .as_ref()
        .unwrap()
        .w;
    assert_eq!(w.shape(), &[1, 1, 1024, 2048]);
    assert!(w.is_borrowed());
    assert!(safejax::to_bytes(&views).unwrap() == file);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resnet50.safetensors");
    safejax::to_file(&path, &owned).unwrap();
    // SAFETY: the test's own file, not modified while mapped.
    let map = unsafe { MappedFile::open(&path) }.unwrap();
    assert!(map.as_bytes() == file.as_slice());
    let mapped: Views = map.deserialize().unwrap();
    assert!(mapped.params.res_net50.logits.w.is_borrowed());
    assert_eq!(mapped.state.res_net50.block_group[2].block.len(), 6);
}
