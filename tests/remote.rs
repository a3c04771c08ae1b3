//! `safejax::remote` on object_store's in-memory and local stores (no server needed): round trips,
//! partial loads that move only what the type needs, failed uploads that leave nothing behind,
//! clear errors for missing and corrupt objects, the blocking API and URLs.

mod common;
mod remote_support;

use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use remote_support::*;
use safejax::remote::{blocking, Remote, DEFAULT_FIRST_READ};
use safejax::{Error, Options, Params, Tensor, Value};
use serde::{Deserialize, Serialize};

use common::models::{Dense, HaikuResNet};
use common::{fixture_bytes, fixture_path};

#[test]
fn every_fixture_round_trips_through_a_memory_store() {
    let (store, remote) = counting();
    runtime().block_on(fixtures_round_trip(&remote, "single"));
    // Small files: one put each, no multipart upload.
    assert_eq!(store.counters.get(&store.counters.puts), 8);
    assert_eq!(store.counters.get(&store.counters.uploads), 0);
}

#[test]
fn every_fixture_round_trips_in_small_parts() {
    // 128-byte parts: every fixture is a multipart upload, made part by part from the params,
    // and the objects are still the very bytes Python safejax wrote.
    let (store, remote) = counting();
    let remote = remote.part_size(128).concurrency(3);
    runtime().block_on(fixtures_round_trip(&remote, "parts"));
    let c = &store.counters;
    assert_eq!(
        (c.get(&c.puts), c.get(&c.uploads), c.get(&c.completed)),
        (0, 8, 8),
        "{c:?}"
    );
    let total: usize = [
        "flax_cnn",
        "flax_setup_mlp",
        "haiku_bn_state",
        "haiku_mlp",
        "haiku_nested",
    ]
    .into_iter()
    .chain(["haiku_resnet", "nnx_model", "objax_mlp"])
    .map(|name| fixture_bytes(name).len().div_ceil(128))
    .sum();
    assert_eq!(c.get(&c.parts), total);
    assert_eq!(c.get(&c.aborts), 0);
}

#[test]
fn a_subset_load_moves_about_the_subset_not_the_file() {
    let (store, remote) = counting();
    let remote = remote.options(Options::new().allow_unknown_keys(true));
    let params = stack(8, 256);
    let path = Path::from("stack.safetensors");
    let rt = runtime();
    rt.block_on(remote.to_object(&path, &params)).unwrap();
    let file_len = rt.block_on(store.head(&path)).unwrap().size;

    store.counters.reset_reads();
    let layer: ThirdLayer = rt.block_on(remote.from_object(&path)).unwrap();
    assert_eq!(layer.layer, params.layers[3]);
    let subset = (256 * 256 + 256) * 4;
    let moved = store.counters.bytes_read();
    eprintln!(
        "subset load: {moved} bytes in {} requests (subset {subset} bytes, file {file_len} bytes)",
        store.counters.reads()
    );
    // The first read (header and some data), then the layer's two tensors, adjacent: one range.
    assert_eq!(store.counters.reads(), 2);
    assert!(moved <= subset + DEFAULT_FIRST_READ as u64, "{moved}");
    assert!(moved * 5 < file_len, "{moved} of {file_len}");

    store.counters.reset_reads();
    let all: Stack = rt.block_on(remote.from_object(&path)).unwrap();
    assert_eq!(all, params);
    let moved_all = store.counters.bytes_read();
    eprintln!("whole load: {moved_all} bytes in {} requests", store.counters.reads());
    assert!(moved_all >= file_len, "{moved_all} < {file_len}");
}

/// `params.Dense_0` alone of the flax CNN fixture.
#[derive(Debug, Serialize, Deserialize, Params)]
struct CnnHead {
    params: HeadOnly,
}

#[derive(Debug, Serialize, Deserialize, Params)]
struct HeadOnly {
    #[serde(rename = "Dense_0")]
    head: Dense<safejax::bf16>,
}

#[test]
fn with_no_gap_and_no_speculation_exactly_the_header_and_the_subset_move() {
    let (store, remote) = counting();
    let remote = remote
        .options(Options::new().allow_unknown_keys(true))
        .first_read(8)
        .coalesce_gap(0);
    let bytes = fixture_bytes("flax_cnn");
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let path = Path::from("cnn.safetensors");
    let rt = runtime();
    rt.block_on(store.put(&path, PutPayload::from(bytes.clone()))).unwrap();
    let head: CnnHead = rt.block_on(remote.from_object(&path)).unwrap();
    let expected: common::models::FlaxCnn = safejax::from_bytes(&bytes).unwrap();
    assert_eq!(head.params.head, expected.params.head);
    let subset = 2 * (head.params.head.kernel.as_slice().len() + head.params.head.bias.as_slice().len()) as u64;
    assert_eq!(store.counters.bytes_read(), 8 + header_len + subset);
    // The length, the header, and the two tensors (bias and kernel lie side by side).
    assert_eq!(store.counters.reads(), 3);
}

#[test]
fn a_small_file_loads_with_one_request() {
    let (store, remote) = counting();
    let bytes = fixture_bytes("haiku_resnet");
    assert!(bytes.len() < DEFAULT_FIRST_READ);
    let path = Path::from("resnet.safetensors");
    let rt = runtime();
    rt.block_on(store.put(&path, PutPayload::from(bytes.clone()))).unwrap();
    let resnet: HaikuResNet = rt.block_on(remote.from_object(&path)).unwrap();
    assert_eq!(resnet, safejax::from_bytes::<HaikuResNet>(&bytes).unwrap());
    assert_eq!(store.counters.reads(), 1);
    assert_eq!(store.counters.bytes_read(), bytes.len() as u64);
}

#[test]
fn a_header_longer_than_the_first_read_takes_a_second() {
    let (store, remote) = counting();
    let remote = remote.first_read(100).coalesce_gap(0);
    let bytes = fixture_bytes("objax_mlp");
    let path = Path::from("objax.safetensors");
    let rt = runtime();
    rt.block_on(store.put(&path, PutPayload::from(bytes.clone()))).unwrap();
    let mlp: common::models::ObjaxMlp = rt.block_on(remote.from_object(&path)).unwrap();
    assert_eq!(mlp, safejax::from_bytes(&bytes).unwrap());
    // 100 bytes, the rest of the header, then the data section in one range (every tensor).
    assert_eq!(store.counters.reads(), 3);
    assert_eq!(store.counters.bytes_read(), bytes.len() as u64);
}

#[test]
fn sharded_checkpoints_are_the_files_to_dir_writes() {
    let (store, remote) = counting();
    let value: Value = safejax::from_file(fixture_path("haiku_resnet.safetensors")).unwrap();
    let local = tempfile::tempdir().unwrap();
    safejax::to_dir(local.path(), &value, 4 * 1024).unwrap();
    let rt = runtime();
    let prefix = Path::from("ckpt/resnet");
    rt.block_on(remote.to_dir(&prefix, &value, 4 * 1024)).unwrap();

    let mut local_names: Vec<String> = std::fs::read_dir(local.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    local_names.sort();
    assert!(local_names.len() > 3, "{local_names:?}");
    let remote_names = rt.block_on(list(store.as_ref(), &prefix));
    assert_eq!(
        remote_names,
        local_names
            .iter()
            .map(|n| format!("ckpt/resnet/{n}"))
            .collect::<Vec<_>>()
    );
    for name in &local_names {
        let stored = rt
            .block_on(async { store.get(&prefix.clone().join(name.as_str())).await?.bytes().await })
            .unwrap();
        assert!(stored == std::fs::read(local.path().join(name)).unwrap(), "{name}");
    }

    // Read back by prefix, by index, and into the typed struct.
    let back: Value = rt.block_on(remote.from_dir(&prefix)).unwrap();
    assert_eq!(back, value);
    let index = prefix.clone().join("model.safetensors.index.json");
    let back: Value = rt.block_on(remote.from_dir(&index)).unwrap();
    assert_eq!(back, value);
    let typed: HaikuResNet = rt.block_on(remote.from_dir(&prefix)).unwrap();
    assert_eq!(
        typed,
        safejax::from_file(fixture_path("haiku_resnet.safetensors")).unwrap()
    );

    // Saved again in one file: the shards and the index of the first save are gone.
    rt.block_on(remote.to_dir(&prefix, &value, u64::MAX)).unwrap();
    assert_eq!(
        rt.block_on(list(store.as_ref(), &prefix)),
        ["ckpt/resnet/model.safetensors"]
    );
    let back: Value = rt.block_on(remote.from_dir(&prefix)).unwrap();
    assert_eq!(back, value);
}

#[test]
fn a_subset_of_a_sharded_checkpoint_reads_only_its_shard() {
    let (store, remote) = counting();
    let remote = remote.options(Options::new().allow_unknown_keys(true)).first_read(4096);
    let params = stack(8, 256);
    let prefix = Path::from("sharded");
    let rt = runtime();
    // A layer is 257 KiB: one shard each.
    rt.block_on(remote.to_dir(&prefix, &params, 300 << 10)).unwrap();
    let names = rt.block_on(list(store.as_ref(), &prefix));
    assert_eq!(names.len(), 9, "{names:?}");
    let index_len = rt
        .block_on(store.head(&prefix.clone().join("model.safetensors.index.json")))
        .unwrap()
        .size;

    store.counters.reset_reads();
    let layer: ThirdLayer = rt.block_on(remote.from_dir(&prefix)).unwrap();
    assert_eq!(layer.layer, params.layers[3]);
    let subset = (256 * 256 + 256) * 4;
    let moved = store.counters.bytes_read();
    eprintln!(
        "sharded subset load: {moved} bytes in {} requests (subset {subset})",
        store.counters.reads()
    );
    // The index, 8 headers, and one range of the fourth shard.
    assert_eq!(store.counters.reads(), 10);
    assert!(moved <= index_len + 8 * 4096 + subset, "{moved}");

    let all: Stack = rt.block_on(remote.from_dir(&prefix)).unwrap();
    assert_eq!(all, params);
}

#[test]
fn a_failed_upload_leaves_no_object_and_keeps_the_old_one() {
    let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let rt = runtime();
    let path = Path::from("ckpt/model.safetensors");
    let old = stack(1, 8);
    rt.block_on(Remote::new(memory.clone()).to_object(&path, &old)).unwrap();

    let mut failing = CountingStore::new(memory.clone());
    failing.fail_after_parts = Some(2);
    let failing = Arc::new(failing);
    let remote = Remote::new(failing.clone()).part_size(64 << 10).concurrency(2);
    let err = rt.block_on(remote.to_object(&path, &stack(4, 128))).unwrap_err();
    assert_eq!(injected_failure(&err), Some("ckpt/model.safetensors"), "{err:?}");
    let c = &failing.counters;
    assert_eq!((c.get(&c.uploads), c.get(&c.aborts), c.get(&c.aborts_ok)), (1, 1, 1));
    assert_eq!(c.get(&c.completed), 0);
    // The old checkpoint is still there, whole.
    let back: Stack = rt.block_on(Remote::new(memory.clone()).from_object(&path)).unwrap();
    assert_eq!(back, old);

    let fresh = Path::from("ckpt/fresh.safetensors");
    assert!(rt.block_on(remote.to_object(&fresh, &stack(4, 128))).is_err());
    assert!(!rt.block_on(exists(memory.as_ref(), &fresh)));
    assert_eq!(
        rt.block_on(list(memory.as_ref(), &Path::from("ckpt"))),
        ["ckpt/model.safetensors"]
    );
}

#[test]
fn a_failed_sharded_save_deletes_the_shards_it_wrote() {
    let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut failing = CountingStore::new(memory.clone());
    failing.fail_after_parts = Some(1);
    failing.fail_only = Some("model-00003-of-00004".to_owned());
    let failing = Arc::new(failing);
    // Each layer (66 KiB) is a shard of two 64 KiB parts; the third shard fails at its second part.
    let remote = Remote::new(failing.clone()).part_size(64 << 10).concurrency(2);
    let rt = runtime();
    let prefix = Path::from("sharded");
    let err = rt
        .block_on(remote.to_dir(&prefix, &stack(4, 128), 70 << 10))
        .unwrap_err();
    assert_eq!(
        injected_failure(&err),
        Some("sharded/model-00003-of-00004.safetensors"),
        "{err:?}"
    );
    let c = &failing.counters;
    assert!(
        c.get(&c.completed) >= 1,
        "some shards were written before the failure: {c:?}"
    );
    assert!(c.get(&c.aborts) >= 1);
    assert_eq!(rt.block_on(list(memory.as_ref(), &prefix)), Vec::<String>::new());
}

#[test]
fn a_sharded_save_over_another_never_replaces_a_shard_its_index_lists() {
    let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let rt = runtime();
    let prefix = Path::from("over");
    let params = stack(4, 128);
    let plain = Remote::new(memory.clone());
    rt.block_on(plain.to_dir(&prefix, &params, 70 << 10)).unwrap();
    let first = rt.block_on(list(memory.as_ref(), &prefix));
    assert_eq!(first.len(), 5, "{first:?}");
    // A save of as many shards that fails at its third shard leaves the first save, complete.
    let mut failing = CountingStore::new(memory.clone());
    failing.fail_after_parts = Some(1);
    failing.fail_only = Some("-00003-of-00004".to_owned());
    let failing = Remote::new(Arc::new(failing)).part_size(64 << 10).concurrency(2);
    assert!(rt.block_on(failing.to_dir(&prefix, &params, 70 << 10)).is_err());
    assert_eq!(rt.block_on(list(memory.as_ref(), &prefix)), first);
    assert_eq!(rt.block_on(plain.from_dir::<Stack>(&prefix)).unwrap(), params);
    // One that succeeds writes its shards under new names, commits its index, then deletes the
    // first save's shards.
    rt.block_on(plain.to_dir(&prefix, &params, 70 << 10)).unwrap();
    let second = rt.block_on(list(memory.as_ref(), &prefix));
    assert_eq!(second.len(), 5, "{second:?}");
    for name in &second {
        assert!(
            name.ends_with("model.safetensors.index.json") || !first.contains(name),
            "{name}"
        );
    }
    assert_eq!(rt.block_on(plain.from_dir::<Stack>(&prefix)).unwrap(), params);
}

#[test]
fn a_missing_object_is_a_clear_error() {
    let (_, remote) = counting();
    let rt = runtime();
    let err = rt
        .block_on(remote.from_object::<Stack>(&Path::from("nowhere/model.safetensors")))
        .unwrap_err();
    let Error::Remote { path, source } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(path, "nowhere/model.safetensors");
    assert!(matches!(source, object_store::Error::NotFound { .. }), "{source:?}");
    assert!(
        err.to_string().starts_with("object `nowhere/model.safetensors`: "),
        "{err}"
    );

    let err = rt
        .block_on(remote.from_dir::<Stack>(&Path::from("nowhere")))
        .unwrap_err();
    let Error::NoCheckpoint { path, looked_for } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(path, "Counting(InMemory)/nowhere");
    assert_eq!(looked_for, &["model.safetensors.index.json", "model.safetensors"]);
}

#[test]
fn corrupt_objects_are_clear_errors() {
    let (store, remote) = counting();
    corrupt_objects_are_refused(store.as_ref(), &remote, &runtime());
}

#[test]
fn metadata_goes_with_the_object() {
    let (store, remote) = counting();
    let remote = remote.options(Options::new().metadata("format", "flax"));
    let rt = runtime();
    let path = Path::from("meta.safetensors");
    rt.block_on(remote.to_object(&path, &stack(2, 4))).unwrap();
    let bytes = rt.block_on(async { store.get(&path).await?.bytes().await }).unwrap();
    assert_eq!(safejax::read_metadata(&bytes).unwrap()["format"], "flax");
    assert!(
        bytes
            == Options::new()
                .metadata("format", "flax")
                .to_bytes(&stack(2, 4))
                .unwrap()
    );
}

#[test]
fn the_blocking_api_and_file_urls() {
    let value: Value = safejax::from_file(fixture_path("haiku_bn_state.safetensors")).unwrap();
    let remote = blocking::Remote::new(Arc::new(InMemory::new())).unwrap();
    let path = Path::from("bn.safetensors");
    remote.to_object(&path, &value).unwrap();
    assert_eq!(remote.from_object::<Value>(&path).unwrap(), value);

    // file:// URLs: a single file, and a directory written by the local `to_dir`.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bn.safetensors");
    let url = format!("file://{}", file.display());
    blocking::to_url(&url, &value).unwrap();
    assert!(std::fs::read(&file).unwrap() == fixture_bytes("haiku_bn_state"));
    assert_eq!(blocking::from_url::<Value>(&url).unwrap(), value);
    let sharded = dir.path().join("sharded");
    safejax::to_dir(&sharded, &value, 64).unwrap();
    assert!(sharded.join("model.safetensors.index.json").exists());
    let back: Value = blocking::from_url(&format!("file://{}", sharded.display())).unwrap();
    assert_eq!(back, value);

    // Inside a runtime, the blocking API says so instead of panicking.
    let err = runtime()
        .block_on(async { remote.from_object::<Value>(&path) })
        .unwrap_err();
    assert!(matches!(err, Error::BlockingInAsync), "{err:?}");
    assert!(err.to_string().contains("inside an async runtime"), "{err}");
}

#[test]
fn a_url_that_is_not_one_is_an_error() {
    // Text that is not a URL: the parser's error is the source.
    let err = Remote::parse_url("not a url").unwrap_err();
    let Error::InvalidUrl { url, source } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(url, "not a url");
    assert!(source.downcast_ref::<url::ParseError>().is_some(), "{source:?}");
    assert!(err.to_string().starts_with("invalid URL `not a url`: "), "{err}");

    // A URL of a scheme no store serves: object_store's error is the source.
    let err = Remote::parse_url("ftp://host/x").unwrap_err();
    let Error::InvalidUrl { url, source } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(url, "ftp://host/x");
    assert!(source.downcast_ref::<object_store::Error>().is_some(), "{source:?}");
    assert!(err.to_string().starts_with("invalid URL `ftp://host/x`: "), "{err}");
}

#[test]
fn scalars_and_empty_tensors_load_from_fetched_ranges() {
    #[derive(Debug, PartialEq, Serialize, Deserialize, Params)]
    struct Odd {
        step: i64,
        empty: Tensor<f32>,
        big: Tensor<f32>,
    }
    let odd = Odd {
        step: 7,
        empty: Tensor::new(vec![0, 3], vec![]).unwrap(),
        big: Tensor::new(vec![5000], (0..5000).map(|i| i as f32).collect()).unwrap(),
    };
    let (_, remote) = counting();
    let remote = remote.first_read(8).coalesce_gap(0);
    let rt = runtime();
    let path = Path::from("odd.safetensors");
    rt.block_on(remote.to_object(&path, &odd)).unwrap();
    assert_eq!(rt.block_on(remote.from_object::<Odd>(&path)).unwrap(), odd);
}
