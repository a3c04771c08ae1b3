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

/// `msgpack::to_dir` writes what `FlaxBertModel.save_pretrained(dir, max_shard_size=2500)` wrote:
/// the same shard files, the same index (keys joined with `/`, the total size), byte for byte.
#[test]
fn sharded_msgpack_is_written_as_transformers_writes_it() {
    let theirs = fixture_path("hf_bert/msgpack_sharded");
    let bert: FlaxBert = safejax::from_dir(&theirs).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "{}").unwrap();
    safejax::msgpack::to_dir(dir.path(), &bert, 2500).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&theirs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("flax_model"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 5, "{names:?}");
    for name in &names {
        let (a, b) = (
            std::fs::read(theirs.join(name)).unwrap(),
            std::fs::read(dir.path().join(name)).unwrap(),
        );
        assert!(a == b, "{name} differs from transformers'");
    }
    let mut ours: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    ours.sort();
    assert_eq!(ours, [&["config.json".to_owned()][..], &names].concat());
    let back: FlaxBert = safejax::from_dir(dir.path()).unwrap();
    assert!(back == bert);

    // Everything in one shard: a plain `flax_model.msgpack` (transformers' own bytes), no index,
    // and the shards of the save before are gone.
    safejax::msgpack::to_dir(dir.path(), &bert, u64::MAX).unwrap();
    let single = std::fs::read(fixture_path("hf_bert/msgpack/flax_model.msgpack")).unwrap();
    assert!(std::fs::read(dir.path().join("flax_model.msgpack")).unwrap() == single);
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

/// `WithMetadata` keeps the file's `__metadata__` (transformers wrote `format: flax`) through a
/// load and a save: unchanged params write back the same bytes, with no option set.
#[test]
fn with_metadata_keeps_the_files_metadata_through_load_and_save() {
    let path = fixture_path("hf_bert/safetensors/model.safetensors");
    let file = std::fs::read(&path).unwrap();
    let ckpt: safejax::WithMetadata<FlaxBert> = safejax::from_file(&path).unwrap();
    assert_eq!(ckpt.metadata.get("format").map(String::as_str), Some("flax"));
    assert!(safejax::to_bytes(&ckpt).unwrap() == file);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.safetensors");
    safejax::to_file(&out, &ckpt).unwrap();
    assert!(std::fs::read(&out).unwrap() == file);
    // A plain struct carries none: its output has no `__metadata__`, as Python safejax writes.
    assert!(safejax::read_metadata(&safejax::to_bytes(&ckpt.params).unwrap())
        .unwrap()
        .is_empty());
    // The sharded layout gives its shards' metadata; msgpack has none.
    let sharded: safejax::WithMetadata<FlaxBert> =
        safejax::from_dir(fixture_path("hf_bert/safetensors_sharded")).unwrap();
    assert_eq!(sharded.metadata, ckpt.metadata);
    assert_eq!(sharded.params, ckpt.params);
    let msgpack: safejax::WithMetadata<FlaxBert> = safejax::from_dir(fixture_path("hf_bert/msgpack")).unwrap();
    assert!(msgpack.metadata.is_empty());
    // A sharded save writes the metadata into every shard.
    let shards = tempfile::tempdir().unwrap();
    safejax::to_dir(shards.path(), &ckpt, 2500).unwrap();
    let written: Vec<_> = std::fs::read_dir(shards.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    assert!(written.len() > 1, "{written:?}");
    for shard in written {
        assert_eq!(
            safejax::read_metadata(&std::fs::read(&shard).unwrap()).unwrap(),
            ckpt.metadata,
            "{shard:?}"
        );
    }
}

/// Options' entries are written over the params' own.
#[test]
fn options_metadata_is_written_over_with_metadata() {
    let path = fixture_path("hf_bert/safetensors/model.safetensors");
    let ckpt: safejax::WithMetadata<FlaxBert> = safejax::from_file(&path).unwrap();
    let bytes = safejax::Options::new()
        .metadata("format", "pt")
        .metadata("note", "x")
        .to_bytes(&ckpt)
        .unwrap();
    let meta = safejax::read_metadata(&bytes).unwrap();
    assert_eq!(meta["format"], "pt");
    assert_eq!(meta["note"], "x");
}
