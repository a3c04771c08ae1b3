//! Key parsing and resolution: the input is a list of keys, one per line, made into a valid file of
//! one-byte U8 tensors and loaded into haiku, objax, nnx and recursive flax structs. Never a panic;
//! what loads strictly writes back, and loads again to the same value.
#![no_main]

#[path = "../common/models.rs"]
mod models;

use std::collections::BTreeSet;
use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use safejax::{Options, Params};
use serde::de::DeserializeOwned;
use serde::Serialize;

use models::{Chain, HkCheckpoint, HkParams, NnxModel, ObMlp};

/// A safetensors file with one `[1]`-shaped U8 tensor per key.
fn file_of(keys: &BTreeSet<String>) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    for (i, key) in keys.iter().enumerate() {
        header.insert(
            key.clone(),
            serde_json::json!({"dtype": "U8", "shape": [1], "data_offsets": [i, i + 1]}),
        );
    }
    let json = serde_json::to_vec(&header).unwrap();
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&json);
    bytes.extend((0..keys.len()).map(|i| i as u8));
    bytes
}

fn check<T: DeserializeOwned + Serialize + Params + PartialEq + Debug>(file: &[u8]) {
    let lenient = Options::new().allow_unknown_keys(true);
    let _ = lenient.from_bytes::<T>(file);
    if let Ok(value) = safejax::from_bytes::<T>(file) {
        let bytes = safejax::to_bytes(&value).expect("what loads writes back");
        let again: T = safejax::from_bytes(&bytes).expect("what is written loads");
        assert_eq!(again, value);
    }
}

fuzz_target!(|data: &[u8]| {
    let keys: BTreeSet<String> = data
        .split(|&b| b == b'\n')
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .filter(|key| key != "__metadata__")
        .take(256)
        .collect();
    let file = file_of(&keys);
    check::<HkCheckpoint>(&file);
    check::<HkParams>(&file);
    check::<ObMlp>(&file);
    check::<NnxModel>(&file);
    check::<Chain>(&file);
});
