//! Bugs found by the hostile-file corpus, the property tests and fuzzing, each kept as a test.

use std::collections::BTreeMap;

use safejax::{Error, Params, Tensor};
use serde::{Deserialize, Serialize};

fn one() -> Tensor<f32> {
    Tensor::new(vec![1], vec![1.0]).unwrap()
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Params)]
struct Chain {
    w: Tensor<f32>,
    next: Option<Box<Chain>>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Params)]
struct Tree {
    w: Tensor<f32>,
    children: Vec<Tree>,
}

/// A file of `w`, `next.w`, `next.next.w`, ... `n` links long.
fn chain_file(n: usize) -> Vec<u8> {
    let mut flat = BTreeMap::new();
    let mut key = String::new();
    for _ in 0..n {
        flat.insert(format!("{key}w"), one());
        key.push_str("next.");
    }
    safejax::to_bytes(&flat).unwrap()
}

/// `Option<Box<Self>>` used to recurse without end while resolving, whatever the file (a stack
/// overflow, which aborts the process): an absent option is no longer walked.
#[test]
fn recursive_option_resolves() {
    let chain: Chain = safejax::from_bytes(&chain_file(3)).unwrap();
    let third = chain.next.as_ref().unwrap().next.as_ref().unwrap();
    assert!(third.next.is_none());
    let single = Chain { w: one(), next: None };
    let bytes = safejax::to_bytes(&single).unwrap();
    assert_eq!(safejax::from_bytes::<Chain>(&bytes).unwrap(), single);
}

/// A recursive type follows a file's keys as deep as they go: one very long key used to overflow
/// the stack. Nesting is now capped, and deeper files are an error.
#[test]
fn deep_keys_are_refused_not_a_stack_overflow() {
    assert!(safejax::from_bytes::<Chain>(&chain_file(100)).is_ok());
    let err = safejax::from_bytes::<Chain>(&chain_file(300)).unwrap_err();
    assert!(
        matches!(&err, Error::NestingTooDeep { key, max: 256 } if key.starts_with("next.next.")),
        "{err:?}"
    );

    let deep_key = format!("{}w", "children_0.".repeat(20_000));
    let bytes = safejax::to_bytes(&BTreeMap::from([(deep_key, one())])).unwrap();
    let err = safejax::from_bytes::<Tree>(&bytes).unwrap_err();
    assert!(matches!(err, Error::NestingTooDeep { .. }), "{err:?}");
}

#[derive(Debug, Serialize, Deserialize, Params)]
struct Dense {
    kernel: Tensor<f32>,
    bias: Tensor<f32>,
}

/// Suggestions for missing keys ("did you mean ...?") compared every missing key with every
/// unknown one by edit distance: a 0.5 MB file of long near-miss keys took hours to be refused. The
/// work is now bounded, and such a file is refused at once.
#[test]
fn near_miss_suggestions_are_bounded_work() {
    let name = |i: usize| format!("{}{i:05}", "m".repeat(200));
    let mut flat = BTreeMap::new();
    for i in 0..1_000 {
        flat.insert(format!("{}.kernel", name(i)), one());
        flat.insert(format!("{}.kernal", name(i)), one());
    }
    let bytes = safejax::to_bytes(&flat).unwrap();
    let started = std::time::Instant::now();
    let err = safejax::from_bytes::<BTreeMap<String, Dense>>(&bytes).unwrap_err();
    let elapsed = started.elapsed();
    let Error::MissingKeys { keys, hints, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(keys.len(), 1_000);
    assert_eq!(keys[0], format!("{}.bias", name(0)));
    assert_eq!(hints.len(), 1_000);
    assert!(elapsed.as_secs() < 10, "took {elapsed:?}");
}
