//! Property: valid files with random bytes flipped, or cut at a random point, never make a loader
//! panic: they load, or return an error. Each mutated file is loaded into the typed struct of its
//! fixture, into flat maps of owned and borrowed tensors (with and without dtype conversion), and
//! read for its metadata.
//!
//! Cases: 64 per property by default; set `PROPTEST_CASES` for more.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::models::{FlaxCnn, HaikuBnState, NnxModel, ObjaxMlp};
use proptest::prelude::*;
use safejax::{bf16, Error, Options, Tensor, TensorView};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

const FIXTURES: [&str; 4] = ["flax_cnn", "haiku_bn_state", "nnx_model", "objax_mlp"];

/// Loads `bytes` every way; any panic fails the property. Returns whether the typed load worked.
fn load_every_way(fixture: usize, bytes: &[u8]) -> bool {
    let lenient = Options::new().allow_unknown_keys(true).convert_dtypes(true);
    let typed = match fixture {
        0 => safejax::from_bytes::<FlaxCnn>(bytes).map(drop),
        1 => safejax::from_bytes::<HaikuBnState>(bytes).map(drop),
        2 => safejax::from_bytes::<NnxModel>(bytes).map(drop),
        _ => safejax::from_bytes::<ObjaxMlp>(bytes).map(drop),
    };
    let _ = lenient.from_bytes::<FlaxCnn>(bytes);
    let _ = safejax::from_bytes::<BTreeMap<String, Tensor<f32>>>(bytes);
    let _ = lenient.from_bytes::<BTreeMap<String, Tensor<bf16>>>(bytes);
    let _ = lenient.from_bytes::<HashMap<String, Tensor<i64>>>(bytes);
    let _ = safejax::from_bytes::<HashMap<String, TensorView<u8>>>(bytes);
    let _ = safejax::read_metadata(bytes);
    if let Ok(de) = safejax::Deserializer::from_slice(bytes) {
        let _ = (de.keys().count(), de.metadata());
    }
    typed.is_ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn flipped_bytes_never_panic(
        fixture in 0..FIXTURES.len(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..8),
        header_only in any::<bool>(),
    ) {
        let mut bytes = common::fixture_bytes(FIXTURES[fixture]);
        // Half the cases flip within the header, where most of the checking is.
        let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let span = if header_only { header_end } else { bytes.len() };
        for (at, xor) in &flips {
            bytes[at.index(span)] ^= xor;
        }
        load_every_way(fixture, &bytes);
    }

    #[test]
    fn truncations_never_panic_and_always_fail(
        fixture in 0..FIXTURES.len(),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = common::fixture_bytes(FIXTURES[fixture]);
        let cut = &bytes[..cut.index(bytes.len())];
        prop_assert!(!load_every_way(fixture, cut));
        let is_truncated = matches!(
            safejax::from_bytes::<BTreeMap<String, Tensor<f32>>>(cut),
            Err(Error::Truncated { .. })
        );
        prop_assert!(is_truncated);
    }
}

/// The fixtures load unharmed, so that the properties start from valid files.
#[test]
fn the_fixtures_load() {
    for (i, name) in FIXTURES.iter().enumerate() {
        assert!(load_every_way(i, &common::fixture_bytes(name)), "{name}");
    }
}
