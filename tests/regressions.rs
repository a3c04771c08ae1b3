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
    let single = Chain {
        w: one(),
        next: None,
    };
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
