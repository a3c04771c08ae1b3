//! Hostile Orbax checkpoints, made by mutating the real fixtures in a temporary directory: each is
//! refused with a specific error, without a panic, a hang or a large allocation.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::ocdbt::{crc32c, envelope, manifest, table, varint};
use safejax::{Error, Value};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/orbax")
        .join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of fixture `name` to mutate; the guard removes it.
fn copy_of(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(name);
    copy_dir(&fixture(name), &dir);
    (tmp, dir)
}

/// The message of the error that loading the checkpoint at `dir` gives, which must be a
/// malformed-checkpoint error (not an I/O error): its text names the file or array and the reason.
fn load_error(dir: &Path) -> String {
    let err = safejax::orbax::from_dir::<Value>(dir).expect_err("a hostile checkpoint loads");
    assert!(matches!(err, Error::InvalidOrbax { .. }), "{err:?}");
    err.to_string()
}

fn assert_error(dir: &Path, expected: &[&str]) {
    let err = load_error(dir);
    eprintln!("refused: {err}");
    for part in expected {
        assert!(err.contains(part), "expected {part:?} in: {err}");
    }
}

#[test]
fn data_file_paths_that_leave_the_checkpoint_are_refused() {
    let (_tmp, dir) = copy_of("flax_cnn");
    fs::write(dir.join("manifest.ocdbt"), manifest("../../outside", 0, 0, 10)).unwrap();
    assert_error(&dir, &["`../../outside`", "the path leaves the checkpoint directory"]);
    fs::write(dir.join("manifest.ocdbt"), manifest("/etc/passwd", 0, 0, 10)).unwrap();
    assert_error(&dir, &["`/etc/passwd`", "the path leaves the checkpoint directory"]);
}

#[cfg(unix)]
#[test]
fn a_symlink_leading_out_is_refused() {
    let (tmp, dir) = copy_of("flax_cnn");
    let node = fs::read_dir(dir.join("d")).unwrap().next().unwrap().unwrap().path();
    let outside = tmp.path().join("outside");
    fs::copy(&node, &outside).unwrap();
    fs::remove_file(&node).unwrap();
    std::os::unix::fs::symlink(&outside, &node).unwrap();
    assert_error(&dir, &["a symlink leads out of the checkpoint directory"]);
}

#[test]
fn an_array_name_that_leaves_the_checkpoint_is_refused() {
    let (_tmp, dir) = copy_of("zarr2_no_ocdbt");
    let meta = fs::read_to_string(dir.join("_METADATA")).unwrap();
    let meta = meta.replacen("\"key\": \"params\"", "\"key\": \"../../params\"", 1);
    assert!(meta.contains("../../params"), "the key was replaced");
    fs::write(dir.join("_METADATA"), meta).unwrap();
    assert_error(&dir, &["the path leaves the checkpoint directory"]);
}

#[test]
fn a_node_that_points_to_itself_is_an_error_not_a_hang() {
    let (_tmp, dir) = copy_of("flax_cnn");
    // An interior node (height 1) whose only child is itself.
    let build = |length: u64| {
        let mut body = vec![1];
        body.extend(table("d/self"));
        body.extend_from_slice(&[1, 1, 0, b'a', 0, 0]);
        varint(&mut body, length);
        body.extend_from_slice(&[1, 1, 0]);
        envelope(0x0cdb_20de, &body)
    };
    let length = build(0).len() as u64;
    let node = build(length);
    assert_eq!(node.len() as u64, length);
    fs::write(dir.join("d/self"), &node).unwrap();
    fs::write(dir.join("manifest.ocdbt"), manifest("d/self", 1, 0, length)).unwrap();
    assert_error(&dir, &["d/self", "expected a node of height 0, found height 1"]);
}

#[test]
fn checksums_are_verified() {
    let (_tmp, dir) = copy_of("flax_cnn");
    let path = dir.join("manifest.ocdbt");
    let mut bytes = fs::read(&path).unwrap();
    bytes[30] ^= 0x10;
    fs::write(&path, bytes).unwrap();
    assert_error(&dir, &["`manifest.ocdbt`", "CRC-32C mismatch"]);

    let (_tmp, dir) = copy_of("flax_cnn");
    let node = fs::read_dir(dir.join("d")).unwrap().next().unwrap().unwrap().path();
    let mut bytes = fs::read(&node).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0x01;
    fs::write(&node, bytes).unwrap();
    assert_error(&dir, &["B-tree node", "CRC-32C mismatch"]);

    let (_tmp, dir) = copy_of("zarr3_no_ocdbt");
    let shard = dir.join("params.Dense_1.kernel/c/0/0");
    let mut bytes = fs::read(&shard).unwrap();
    let at = bytes.len() - 6; // inside the shard index
    bytes[at] ^= 0x01;
    fs::write(&shard, bytes).unwrap();
    assert_error(&dir, &["params.Dense_1.kernel/c/0/0", "shard index CRC-32C mismatch"]);
}

#[test]
fn a_zstd_bomb_is_an_error_not_gigabytes() {
    let (_tmp, dir) = copy_of("zarr2_no_ocdbt");
    // 256 MiB of zeros in a few kB, where the chunk's shape needs 64 * 3 * 4 = 768 bytes.
    let bomb = zstd::bulk::compress(&vec![0u8; 256 << 20], 1).unwrap();
    assert!(bomb.len() < 64 << 10);
    fs::write(dir.join("params.Dense_1.kernel/0.0"), bomb).unwrap();
    assert_error(
        &dir,
        &[
            "params.Dense_1.kernel/0.0",
            "zstd chunk decodes to more than the 768 bytes its shape needs",
        ],
    );
}

#[test]
fn of_several_bad_arrays_the_first_in_key_order_is_reported() {
    let (_tmp, dir) = copy_of("zarr2_no_ocdbt");
    // Arrays are decoded on every core; whichever thread fails first, the error is the same.
    let bomb = zstd::bulk::compress(&vec![0u8; 1 << 20], 1).unwrap();
    for array in [
        "params.Dense_1.kernel/0.0",
        "params.Conv_0.kernel/0.0.0.0",
        "params.Dense_0.bias/0",
    ] {
        fs::write(dir.join(array), &bomb).unwrap();
    }
    for _ in 0..20 {
        match safejax::orbax::from_dir::<Value>(&dir) {
            Err(safejax::Error::InvalidOrbax { path, .. }) => assert_eq!(path, "params.Conv_0.kernel/0.0.0.0"),
            other => panic!("expected an invalid chunk, got {other:?}"),
        }
    }
}

#[test]
fn a_chunk_larger_than_its_shape_allows_is_not_read() {
    let (_tmp, dir) = copy_of("uncompressed_zarr2_no_ocdbt");
    fs::write(dir.join("params.Dense_1.kernel/0.0"), vec![0u8; 1 << 20]).unwrap();
    assert_error(&dir, &["params.Dense_1.kernel/0.0", "more than the limit"]);
}

#[test]
fn counts_are_bounded_before_allocation() {
    let (_tmp, dir) = copy_of("flax_cnn");
    // A manifest claiming 2^60 data files in a few bytes.
    let mut body = vec![7; 16];
    body.extend_from_slice(&[0, 0x80, 0x08, 0x80, 0xc2, 0xd7, 0x2f, 0x04, 0x00]);
    varint(&mut body, 1 << 60);
    body.extend_from_slice(&[0; 8]);
    fs::write(dir.join("manifest.ocdbt"), envelope(0x0cdb_3a2a, &body)).unwrap();
    assert_error(
        &dir,
        &["the number of data files is 1152921504606846976, but only 8 bytes are left"],
    );
}

#[test]
fn shapes_beyond_memory_are_refused_before_allocation() {
    let (_tmp, dir) = copy_of("zarr2_no_ocdbt");
    let path = dir.join("params.Dense_1.kernel/.zarray");
    let text = fs::read_to_string(&path)
        .unwrap()
        .replace("\"shape\":[64,3]", "\"shape\":[4611686018427387904,3]");
    assert!(text.contains("4611686018427387904"), "{text}");
    fs::write(&path, text).unwrap();
    assert_error(
        &dir,
        &["params.Dense_1.kernel/.zarray", "more bytes than fit in memory"],
    );
}

#[test]
fn chunks_outside_the_grid_and_truncated_files_are_refused() {
    let (_tmp, dir) = copy_of("zarr2_no_ocdbt");
    fs::copy(
        dir.join("params.Dense_1.kernel/0.0"),
        dir.join("params.Dense_1.kernel/9.0"),
    )
    .unwrap();
    assert_error(
        &dir,
        &["params.Dense_1.kernel/9.0", "not a chunk of an array of shape [64, 3]"],
    );

    let (_tmp, dir) = copy_of("flax_cnn");
    let node = fs::read_dir(dir.join("d")).unwrap().next().unwrap().unwrap().path();
    let bytes = fs::read(&node).unwrap();
    fs::write(&node, &bytes[..bytes.len() / 2]).unwrap();
    assert_error(&dir, &["asked for, the file has 723"]);

    let (_tmp, dir) = copy_of("zarr3_no_ocdbt");
    let shard = dir.join("params.Dense_1.kernel/c/0/0");
    let mut bytes = fs::read(&shard).unwrap();
    // Point the inner chunk past the shard's end, and fix the index checksum.
    let n = bytes.len();
    bytes[n - 20..n - 12].copy_from_slice(&(n as u64).to_le_bytes());
    let crc = crc32c(&bytes[n - 20..n - 4]);
    bytes[n - 4..].copy_from_slice(&crc.to_le_bytes());
    fs::write(&shard, bytes).unwrap();
    assert_error(&dir, &["inner chunk 0", "lies outside the shard"]);
}

#[test]
fn every_single_byte_flip_of_a_manifest_and_node_is_refused_or_harmless() {
    // Not a proof, a smoke test of the decoders on near-valid input: no panic, no hang.
    let (_tmp, dir) = copy_of("flax_cnn");
    let node = fs::read_dir(dir.join("d")).unwrap().next().unwrap().unwrap().path();
    for path in [dir.join("manifest.ocdbt"), node] {
        let original = fs::read(&path).unwrap();
        for i in (0..original.len()).step_by(7) {
            let mut bytes = original.clone();
            bytes[i] ^= 0x5a;
            fs::write(&path, &bytes).unwrap();
            // The checksum catches every flip.
            let err = load_error(&dir);
            assert!(
                err.contains("CRC-32C mismatch") || err.contains("magic") || err.contains("header says"),
                "{i}: {err}"
            );
        }
        fs::write(&path, &original).unwrap();
    }
}

#[test]
fn the_fuzz_entry_points_survive_mutated_seeds() {
    // What `scripts/fuzz.sh` explores at length, in brief: every seed of the Orbax fuzz targets,
    // truncated and with bytes flipped, decodes to an error or a value, without a panic.
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (target, run) in [
        ("orbax_ocdbt", safejax::orbax::fuzz::ocdbt as fn(&[u8])),
        ("orbax_zarr", safejax::orbax::fuzz::zarr),
    ] {
        let mut seeds = 0;
        for seed in fs::read_dir(corpus.join(target)).unwrap() {
            let bytes = fs::read(seed.unwrap().path()).unwrap();
            seeds += 1;
            run(&bytes);
            for cut in (0..bytes.len()).step_by(13) {
                run(&bytes[..cut]);
            }
            for i in (0..bytes.len()).step_by(5) {
                let mut flipped = bytes.clone();
                flipped[i] = flipped[i].wrapping_add(0x41);
                run(&flipped);
            }
        }
        assert!(seeds >= 2, "{target} has seeds");
    }
}
