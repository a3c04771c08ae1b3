//! Orbax checkpoints of haiku ResNet50's shapes (479 leaves, 102.7 MB), read and written here, to
//! compare with Orbax's own restore and save of the same checkpoints (`scripts/bench_orbax.py`,
//! which writes them; `scripts/bench_orbax.sh` runs both and prints the ratios).
//!
//! `SAFEJAX_ORBAX_BENCH_DIR` names the directory `bench_orbax.py` saved into: `DIR/random/`
//! (float leaves uniform in [-1, 1)) and `DIR/compressible/` (7 in 8 zero), both in Orbax's
//! default layout. Without it the benchmark says so and measures nothing, so that
//! `cargo bench --no-run` builds it anywhere. For each checkpoint, with its files in the page
//! cache:
//!
//! - `read_value`: `orbax::from_dir` into a [`Value`] (every leaf, as stored);
//! - `read_typed`: `orbax::from_dir` into the typed ResNet50 of `benches/common/resnet50.rs`;
//! - `write`: `orbax::to_dir` of that typed tree into a new directory (removed between runs,
//!   untimed), Orbax's default layout as `ocp.StandardCheckpointer().save` writes it.
//!
//! `copy_fresh`, a copy of the tree's bytes into fresh memory, is the floor every load pays once.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, SamplingMode, Throughput};
use safejax::Value;

#[path = "common/mod.rs"]
mod common;

use common::resnet50;

const DIR_VAR: &str = "SAFEJAX_ORBAX_BENCH_DIR";

/// The checkpoints `scripts/bench_orbax.py` writes, by directory name.
const VARIANTS: [&str; 2] = ["random", "compressible"];

fn tree_bytes(tree: &Value) -> u64 {
    tree.leaves().map(|(_, t)| t.as_bytes().len() as u64).sum()
}

fn warm(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            warm(&path);
        } else {
            black_box(std::fs::read(&path).unwrap());
        }
    }
}

fn orbax(c: &mut Criterion) {
    let Some(root) = std::env::var_os(DIR_VAR).map(PathBuf::from) else {
        eprintln!(
            "benches/orbax.rs: {DIR_VAR} is not set; run scripts/bench_orbax.sh (or scripts/bench_orbax.py DIR, \
             then {DIR_VAR}=DIR cargo bench --bench orbax)"
        );
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    for variant in VARIANTS {
        let dir = root.join(variant);
        warm(&dir);
        let tree: Value = safejax::orbax::from_dir(&dir).unwrap();
        let bytes = tree_bytes(&tree);
        let typed: resnet50::Owned = safejax::orbax::from_dir(&dir).unwrap();
        let mut g = c.benchmark_group(format!("orbax_{variant}"));
        g.sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(5))
            .throughput(Throughput::Bytes(bytes));
        let flat: Vec<u8> = tree.leaves().flat_map(|(_, t)| t.as_bytes().iter().copied()).collect();
        g.bench_function("copy_fresh", |b| b.iter(|| black_box(&flat[..]).to_vec()));
        g.bench_function("read_value", |b| {
            b.iter(|| safejax::orbax::from_dir::<Value>(black_box(&dir)).unwrap())
        });
        g.bench_function("read_typed", |b| {
            b.iter(|| safejax::orbax::from_dir::<resnet50::Owned>(black_box(&dir)).unwrap())
        });
        let out = scratch.path().join(variant);
        g.bench_function("write", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let _ = std::fs::remove_dir_all(&out);
                    let t = Instant::now();
                    safejax::orbax::to_dir(&out, black_box(&typed)).unwrap();
                    total += t.elapsed();
                }
                total
            })
        });
        g.finish();
        // The write is the checkpoint read: the same tree, key for key.
        let back: Value = safejax::orbax::from_dir(&out).unwrap();
        assert!(back == tree, "{variant}: the written checkpoint reads back differently");
    }
}

criterion_group!(benches, orbax);

fn main() {
    common::fresh_memory();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
