//! A Hugging Face `FlaxBertModel` saved by the real transformers (`save_pretrained`, msgpack and
//! safetensors, sharded and not) loads into one typed struct, with the values transformers recorded.

mod common;

use common::models::FlaxBert;
use common::{expected_leaves, fixture_path, leaves_of};

#[test]
fn every_save_pretrained_layout_loads_into_one_struct() {
    let expected = expected_leaves("hf_bert/expected");
    assert_eq!(expected.len(), 39);
    let mut loaded = Vec::new();
    for layout in ["msgpack", "msgpack_sharded", "safetensors", "safetensors_sharded"] {
        let bert: FlaxBert =
            safejax::from_dir(fixture_path(&format!("hf_bert/{layout}"))).unwrap_or_else(|e| panic!("{layout}: {e}"));
        assert_eq!(leaves_of(&bert), expected, "{layout}");
        assert_eq!(bert.encoder.layer.len(), 2);
        loaded.push(bert);
    }
    assert!(loaded.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn the_single_safetensors_file_writes_back_unchanged() {
    let path = fixture_path("hf_bert/safetensors/model.safetensors");
    let file = std::fs::read(&path).unwrap();
    assert_eq!(
        safejax::read_metadata(&file).unwrap().get("format").map(String::as_str),
        Some("flax")
    );
    let bert: FlaxBert = safejax::from_bytes(&file).unwrap();
    let written = safejax::Options::new()
        .metadata("format", "flax")
        .to_bytes(&bert)
        .unwrap();
    assert!(written == file);
}
