//! Benchmarks of writing and loading, against the floor of a plain copy and against the
//! safetensors crate, on three workloads:
//!
//! - `resnet50`: the params and state of haiku's ResNet50 (479 leaves, 102.7 MB), with the keys,
//!   dtypes and shapes of the real model (`benches/data/resnet50.json`), loaded into typed structs;
//! - `sweep`: one f32 tensor of 1 MiB to 1 GiB;
//! - `many_small`: 10 000 tensors of 64 f32 each (the per-tensor overhead).
//!
//! Every function of a group handles the same bytes, so criterion's throughput (bytes per second)
//! compares directly. The baselines, in the same run:
//!
//! - `memcpy_touched`: the file's bytes copied into a buffer that is already touched (the bandwidth
//!   floor: no page faults);
//! - `memcpy_fresh`: copied into a fresh allocation (page faults included, and freeing it);
//! - `memcpy_fresh_thp`: copied into a fresh anonymous mapping advised for transparent huge pages;
//! - `safetensors_serialize`: the safetensors crate's `serialize` of the same tensors;
//! - `safetensors_deserialize`: its `SafeTensors::deserialize` (borrows, parses the header);
//! - `safetensors_deserialize_copy`: the same, then each tensor's bytes copied into a `Vec`;
//! - `fs_write_sync`: the file's bytes written to a new file and synced (the floor of `to_file`,
//!   which also syncs, for durability, and renames; `to_writer_file` writes without either).
//!
//! Every large allocation is fresh memory from the kernel (see `fresh_memory`), as in a process
//! that writes or loads a model once, so page faults count; files are in the page cache.
//!
//! `cargo bench --bench serde` runs them all (about 8 minutes); `cargo bench --bench serde --
//! resnet50` one group. `scripts/bench_report.py` turns criterion's results into the tables of
//! BENCHMARKS.md and the chart.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};
use safejax::{MappedFile, Params, Tensor, TensorView};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[path = "common/mod.rs"]
mod common;

use common::{resnet50, Many, One};

/// The baselines that copy the file's bytes.
fn copy_baselines(g: &mut BenchmarkGroup<'_, WallTime>, id: impl Fn(&str) -> BenchmarkId, file: &[u8]) {
    let mut touched = vec![1u8; file.len()];
    g.bench_function(id("memcpy_touched"), |b| {
        b.iter(|| touched.copy_from_slice(black_box(file)))
    });
    g.bench_function(id("memcpy_fresh"), |b| b.iter(|| black_box(file).to_vec()));
    g.bench_function(id("memcpy_fresh_thp"), |b| {
        b.iter(|| {
            let mut map = memmap2::MmapMut::map_anon(file.len()).unwrap();
            #[cfg(target_os = "linux")]
            map.advise(memmap2::Advice::HugePage).unwrap();
            map.copy_from_slice(black_box(file));
            map
        })
    });
}

/// The safetensors crate on the same file: serialize its tensors, load them (borrowing, then
/// copying each out).
fn safetensors_baselines(g: &mut BenchmarkGroup<'_, WallTime>, id: impl Fn(&str) -> BenchmarkId, file: &[u8]) {
    let st = safetensors::SafeTensors::deserialize(file).unwrap();
    let views = st.tensors();
    g.bench_function(id("safetensors_serialize"), |b| {
        b.iter(|| safetensors::serialize(views.iter().map(|(k, v)| (k, v)), None).unwrap())
    });
    g.bench_function(id("safetensors_deserialize"), |b| {
        b.iter(|| safetensors::SafeTensors::deserialize(black_box(file)).unwrap().len())
    });
    g.bench_function(id("safetensors_deserialize_copy"), |b| {
        b.iter(|| {
            let st = safetensors::SafeTensors::deserialize(black_box(file)).unwrap();
            st.iter()
                .map(|(name, t)| (name.to_owned(), t.data().to_vec()))
                .collect::<Vec<_>>()
        })
    });
}

/// This crate's writes of `model`, whose file is `file`.
fn writes<T: Serialize + Params>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    id: impl Fn(&str) -> BenchmarkId,
    model: &T,
    file: &[u8],
    dir: Option<&Path>,
) {
    assert!(safejax::to_bytes(model).unwrap() == file);
    g.bench_function(id("to_bytes"), |b| {
        b.iter(|| safejax::to_bytes(black_box(model)).unwrap())
    });
    // A buffer the caller reuses: its pages are touched, its capacity suffices.
    let mut buf = vec![1u8; file.len()];
    buf.clear();
    g.bench_function(id("to_writer_reused"), |b| {
        b.iter(|| {
            buf.clear();
            safejax::to_writer(&mut buf, black_box(model)).unwrap();
        })
    });
    assert!(buf.is_empty() || buf == file);
    if let Some(dir) = dir {
        let path = dir.join("to_file.safetensors");
        g.bench_function(id("to_file"), |b| {
            b.iter(|| safejax::to_file(&path, black_box(model)).unwrap())
        });
        // (Absent when a filter skipped the benchmark.)
        assert!(!path.exists() || std::fs::read(&path).unwrap() == file);
        // Without the temporary file, the syncs and the rename: what Python's `save_file` does.
        let plain = dir.join("to_writer_file.safetensors");
        g.bench_function(id("to_writer_file"), |b| {
            b.iter(|| {
                let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&plain).unwrap());
                safejax::to_writer(file, black_box(model)).unwrap();
            })
        });
        // What `to_file` does at least: write the bytes and sync them.
        let floor = dir.join("fs_write_sync.safetensors");
        g.bench_function(id("fs_write_sync"), |b| {
            b.iter(|| {
                use std::io::Write;
                let mut f = std::fs::File::create(&floor).unwrap();
                f.write_all(black_box(file)).unwrap();
                f.sync_all().unwrap();
            })
        });
    }
}

/// This crate's loads of `file` into `Owned` and `Views`.
fn loads<Owned, Views>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    id: impl Fn(&str) -> BenchmarkId,
    file: &[u8],
    dir: &Path,
    from_file: bool,
) where
    Owned: DeserializeOwned + Params,
    Views: for<'a> ViewsOf<'a>,
{
    g.bench_function(id("from_bytes_owned"), |b| {
        b.iter(|| safejax::from_bytes::<Owned>(black_box(file)).unwrap())
    });
    g.bench_function(id("from_bytes_views"), |b| {
        b.iter(|| {
            let views = <Views as ViewsOf<'_>>::load(black_box(file));
            black_box(&views);
        })
    });
    let path = dir.join("load.safetensors");
    std::fs::write(&path, file).unwrap();
    if from_file {
        g.bench_function(id("from_file_owned"), |b| {
            b.iter(|| safejax::from_file::<Owned>(black_box(&path)).unwrap())
        });
    }
    g.bench_function(id("mmap_views"), |b| {
        b.iter(|| {
            // SAFETY: the benchmark's own file, not modified while mapped.
            let map = unsafe { MappedFile::open(black_box(&path)) }.unwrap();
            let views = <Views as ViewsOf<'_>>::load(map.as_bytes());
            black_box(&views);
        })
    });
}

/// A view type for each lifetime: `Checkpoint<TensorView<'a, f32>>` and the like.
trait ViewsOf<'a> {
    type Views: Deserialize<'a> + Params;
    fn load(bytes: &'a [u8]) -> Self::Views {
        safejax::from_bytes(bytes).unwrap()
    }
}

/// Picks the views of `One`, `Many` and the ResNet50 checkpoint.
struct OneViews;
struct ManyViews;
struct ResNetViews;

impl<'a> ViewsOf<'a> for OneViews {
    type Views = One<TensorView<'a, f32>>;
}
impl<'a> ViewsOf<'a> for ManyViews {
    type Views = Many<TensorView<'a, f32>>;
}
impl<'a> ViewsOf<'a> for ResNetViews {
    type Views = resnet50::Views<'a>;
}

fn resnet50(c: &mut Criterion) {
    let file = resnet50::file();
    let model: resnet50::Owned = safejax::from_bytes(&file).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("resnet50");
    g.throughput(Throughput::Bytes(file.len() as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let id = |f: &str| BenchmarkId::from_parameter(f);
    copy_baselines(&mut g, id, &file);
    writes(&mut g, id, &model, &file, Some(dir.path()));
    loads::<resnet50::Owned, ResNetViews>(&mut g, id, &file, dir.path(), true);
    safetensors_baselines(&mut g, id, &file);
    g.finish();
}

/// Tensor sizes of the sweep, in MiB.
const SWEEP_MIB: &[usize] = &[1, 4, 16, 64, 256, 1024];

fn sweep(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("sweep");
    g.warm_up_time(Duration::from_secs(1));
    for &mib in SWEEP_MIB {
        let model = One::new(mib << 20);
        let file = safejax::to_bytes(&model).unwrap();
        g.throughput(Throughput::Bytes(file.len() as u64));
        // Flat sampling (the same number of iterations in each sample) keeps the large sizes to a
        // few seconds each; the 1 GiB case takes 10 samples.
        match mib {
            ..16 => g.sampling_mode(SamplingMode::Auto).sample_size(20),
            16..256 => g.sampling_mode(SamplingMode::Flat).sample_size(20),
            _ => g.sampling_mode(SamplingMode::Flat).sample_size(10),
        };
        g.measurement_time(Duration::from_secs(if mib >= 256 { 4 } else { 2 }));
        let id = |f: &str| BenchmarkId::new(f, format!("{mib}MiB"));
        copy_baselines(&mut g, id, &file);
        writes(&mut g, id, &model, &file, None);
        loads::<One<Tensor<f32>>, OneViews>(&mut g, id, &file, dir.path(), true);
        safetensors_baselines(&mut g, id, &file);
    }
    g.finish();
}

fn many_small(c: &mut Criterion) {
    const TENSORS: usize = 10_000;
    let model = Many::new(TENSORS, 64);
    let file = safejax::to_bytes(&model).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("many_small");
    // Elements: one per tensor, so criterion's rate is tensors per second.
    g.throughput(Throughput::Elements(TENSORS as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    let id = |f: &str| BenchmarkId::from_parameter(f);
    copy_baselines(&mut g, id, &file);
    writes(&mut g, id, &model, &file, Some(dir.path()));
    loads::<Many<Tensor<f32>>, ManyViews>(&mut g, id, &file, dir.path(), true);
    safetensors_baselines(&mut g, id, &file);
    g.finish();
}

criterion_group!(benches, resnet50, sweep, many_small);

fn main() {
    common::fresh_memory();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
