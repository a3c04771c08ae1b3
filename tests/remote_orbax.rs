//! Orbax checkpoints read from object_store's in-memory store (no server needed): every fixture
//! layout loads as it does from its local directory, one layer of eight moves a fraction of the
//! checkpoint, and hostile data file names are refused as locally.

mod common;
mod remote_support;

use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use remote_support::*;
use safejax::remote::blocking;
use safejax::{Error, Value};

use common::models::FlaxCnn;
use common::ocdbt::manifest;
use common::{fixture_bytes, orbax_case_dir, orbax_cases};

#[test]
fn every_orbax_fixture_loads_from_a_store_as_from_its_directory() {
    let (_, remote) = counting();
    let loaded = runtime().block_on(orbax_fixtures_load_as_locally(&remote, "orbax"));
    // All but the five of dtypes safejax has no name for (refused alike).
    assert_eq!(loaded, orbax_cases().len() - 5);
}

#[test]
fn one_layer_of_eight_moves_a_fraction_of_the_checkpoint() {
    let (store, remote) = counting();
    let loads = runtime().block_on(orbax_one_layer_of_eight(&store, &remote, "mlp8"));
    let (layer, _) = loads.layer;
    let (whole, _) = loads.whole;
    assert!(layer * 4 < loads.total, "{loads:?}");
    assert!(layer * 3 < whole, "{loads:?}");
}

#[test]
fn the_kernels_of_a_whole_load_come_in_one_request_per_data_file() {
    // Every kernel is one value stored out of line (8.7 kB each, the sidecar says); Orbax put
    // them back to back in two data files. Even with no gap merged, touching ranges are one
    // request: the whole load takes one request more than one layer's (the second file), not
    // one per kernel. The bias vectors are inline in the B-tree leaf, read with it.
    let (store, remote) = counting();
    let remote = remote.coalesce_gap(0);
    let loads = runtime().block_on(orbax_one_layer_of_eight(&store, &remote, "mlp8"));
    let (_, layer_requests) = loads.layer;
    let (_, whole_requests) = loads.whole;
    assert_eq!(whole_requests, layer_requests + 1, "{loads:?}");
}

#[test]
fn a_manager_root_and_a_chosen_item_load_from_a_store() {
    let (store, remote) = counting();
    let rt = runtime();
    rt.block_on(upload_dir(store.as_ref(), &orbax_case_dir("manager"), "runs/manager"));
    rt.block_on(upload_dir(
        store.as_ref(),
        &orbax_case_dir("composite"),
        "runs/composite",
    ));
    let expected: FlaxCnn = safejax::from_bytes(&fixture_bytes("flax_cnn")).unwrap();
    // The latest finished step, 3, holds the fixture's values; 4.orbax-checkpoint-tmp is skipped.
    let latest: FlaxCnn = rt.block_on(remote.orbax_from_dir(&Path::from("runs/manager"))).unwrap();
    assert_eq!(latest, expected);
    let reader = safejax::orbax::Reader::new().item("params");
    let params: FlaxCnn = rt
        .block_on(remote.orbax_from_dir_with(&Path::from("runs/composite"), &reader))
        .unwrap();
    assert_eq!(params, expected);
    let missing = safejax::orbax::Reader::new().item("nope");
    let err = rt
        .block_on(remote.orbax_from_dir_with::<FlaxCnn>(&Path::from("runs/composite"), &missing))
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidOrbax { path, .. } if path == "5"),
        "{err:?}"
    );
}

#[test]
fn the_blocking_api_reads_orbax() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    runtime().block_on(upload_dir(store.as_ref(), &orbax_case_dir("zarr3_no_ocdbt"), "ckpt"));
    let remote = blocking::Remote::new(store).unwrap();
    let tree: Value = remote.orbax_from_dir(&Path::from("ckpt")).unwrap();
    assert_eq!(
        tree,
        safejax::orbax::from_dir::<Value>(orbax_case_dir("zarr3_no_ocdbt")).unwrap()
    );
}

#[test]
fn data_file_names_that_leave_the_checkpoint_are_refused() {
    let (store, remote) = counting();
    let rt = runtime();
    rt.block_on(upload_dir(store.as_ref(), &orbax_case_dir("flax_cnn"), "ckpt/flax_cnn"));
    // The object a `..` name would reach exists: only the check stops it.
    rt.block_on(store.put(&Path::from("outside"), PutPayload::from(vec![0u8; 64])))
        .unwrap();
    for name in ["../../outside", "/outside", "d/..\\..\\outside"] {
        let hostile = manifest(name, 0, 0, 10);
        rt.block_on(store.put(&Path::from("ckpt/flax_cnn/manifest.ocdbt"), PutPayload::from(hostile)))
            .unwrap();
        let err = rt
            .block_on(remote.orbax_from_dir::<Value>(&Path::from("ckpt/flax_cnn")))
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidOrbax { path, .. } if path == name),
            "{name}: {err:?}"
        );
    }
}
