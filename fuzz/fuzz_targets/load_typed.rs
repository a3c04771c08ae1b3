//! Any bytes, loaded into a struct with many leaf types and containers: never a panic, and what
//! loads writes back and loads again to the same value.
#![no_main]

#[path = "../common/models.rs"]
mod models;

use libfuzzer_sys::fuzz_target;
use safejax::Options;

use models::{Model, Views};

fuzz_target!(|data: &[u8]| {
    let _ = safejax::from_bytes::<Model>(data);
    let lenient = Options::new().allow_unknown_keys(true).convert_dtypes(true);
    if let Ok(model) = lenient.from_bytes::<Model>(data) {
        let bytes = safejax::to_bytes(&model).expect("what loads writes back");
        let again: Model = safejax::from_bytes(&bytes).expect("what is written loads");
        // Compared as bytes: NaN payloads make `==` on floats useless.
        assert!(safejax::to_bytes(&again).unwrap() == bytes);
    }
    let _ = lenient.from_bytes::<Views>(data);
    let _ = safejax::read_metadata(data);
    if let Ok(de) = safejax::Deserializer::from_slice(data) {
        let _ = de.keys().count();
        let _ = de.metadata();
        let _ = de.deserialize::<Views>();
    }
});
