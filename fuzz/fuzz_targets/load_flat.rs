//! Any bytes, loaded into flat maps of tensors: never a panic, and what loads round-trips.
#![no_main]

use std::collections::{BTreeMap, HashMap};

use libfuzzer_sys::fuzz_target;
use safejax::{bf16, Options, Tensor, TensorView};

fuzz_target!(|data: &[u8]| {
    let convert = Options::new().convert_dtypes(true);
    let _ = safejax::from_bytes::<BTreeMap<String, Tensor<f32>>>(data);
    let _ = convert.from_bytes::<BTreeMap<String, Tensor<bf16>>>(data);
    let _ = convert.from_bytes::<HashMap<String, Tensor<i64>>>(data);
    let _ = safejax::from_bytes::<BTreeMap<String, Tensor<bool>>>(data);
    let _ = safejax::from_bytes::<HashMap<String, TensorView<u16>>>(data);
    if let Ok(flat) = convert.from_bytes::<BTreeMap<String, Tensor<u8>>>(data) {
        let bytes = safejax::to_bytes(&flat).expect("what loads writes back");
        let again: BTreeMap<String, Tensor<u8>> =
            safejax::from_bytes(&bytes).expect("what is written loads");
        assert_eq!(again, flat);
    }
});
