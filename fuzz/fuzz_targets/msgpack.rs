//! Any bytes as a flax msgpack checkpoint, schema-free and into flat maps: never a panic, and
//! what loads writes back and loads again the same.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use safejax::{Options, Tensor, Value};

fuzz_target!(|data: &[u8]| {
    let convert = Options::new().convert_dtypes(true);
    let _ = safejax::msgpack::from_bytes_with::<BTreeMap<String, Tensor<f32>>>(data, &convert);
    if let Ok(value) = safejax::msgpack::from_bytes::<Value>(data) {
        let bytes = safejax::msgpack::to_bytes(&value).expect("what loads writes back");
        let again: Value = safejax::msgpack::from_bytes(&bytes).expect("what is written loads");
        assert_eq!(again, value);
    }
});
