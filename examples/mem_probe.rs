//! Peak memory of writes and loads of a large model, for `scripts/bench_memory.sh`.
//!
//! ```sh
//! cargo run --release --example mem_probe -- make /tmp/model.safetensors 1024   # a 1 GiB model file
//! /usr/bin/time -v target/release/examples/mem_probe to_file /tmp/out.safetensors 1024
//! /usr/bin/time -v target/release/examples/mem_probe mapped /tmp/model.safetensors
//! ```
//!
//! Modes (sizes in MiB; models are a list of layers of two equal f32 tensors, 64 tensors in all):
//!
//! - `make PATH MIB`: writes a model file to load (not measured);
//! - `to_file PATH MIB`: builds the model, then writes it with `to_file`;
//! - `to_bytes MIB`: builds the model, then writes it into one buffer with `to_bytes`;
//! - `mapped PATH`: maps the file and loads views of every tensor, reading none;
//! - `mapped_read PATH`: the same, then reads every tensor;
//! - `from_file PATH`: loads owned tensors with `from_file`;
//! - `read_then_from_bytes PATH`: reads the whole file, then loads owned tensors from the bytes;
//! - `orbax_value DIR`, `orbax_typed DIR`: loads an Orbax checkpoint of haiku ResNet50's shapes
//!   (`scripts/bench_orbax.py`) into a `Value`, or into the typed ResNet50;
//! - `orbax_write DIR OUT`: loads the typed ResNet50 from `DIR`, then writes it to `OUT` with
//!   `orbax::to_dir` (the peak is reset after the load: it is of the write alone, model included).
//!
//! Each prints one line of `key=value` pairs: the model's size, the resident memory at the
//! interesting points (from `/proc/self/status`: `VmRSS`, and `VmHWM`, the peak) and how long the
//! measured step took (`ms`; building the model is not part of it).

#[path = "../benches/common/mod.rs"]
mod common;

use std::time::Instant;

use common::Many;
use safejax::{MappedFile, Tensor, TensorView};

const TENSORS: usize = 64;

/// A `/proc/self/status` field in bytes (0 where there is none).
fn status(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib << 10)
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1u64 << 20) as f64)
}

fn report(mode: &str, model_bytes: u64, points: &[(&str, u64)], seconds: f64) {
    let mut line = format!("mode={mode} model_mib={}", mib(model_bytes));
    for (name, bytes) in points {
        line += &format!(" {name}_mib={}", mib(*bytes));
    }
    line += &format!(" peak_mib={} ms={:.3}", mib(status("VmHWM")), seconds * 1e3);
    println!("{line}");
}

fn model_bytes(model: &Many<Tensor<f32>>) -> u64 {
    model.layer.iter().map(|l| 4 * (l.w.len() + l.b.len()) as u64).sum()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> &str { args.get(i).map(String::as_str).unwrap_or_else(|| usage()) };
    let size = |i: usize| -> usize { arg(i).parse::<usize>().unwrap_or_else(|_| usage()) << 20 };
    let mode = arg(0);
    let start_rss = status("VmRSS");
    match mode {
        "make" => {
            let model = common::big_model(size(2), TENSORS);
            safejax::to_file(arg(1), &model).unwrap();
        }
        "to_file" | "to_bytes" => {
            let model = common::big_model(size(if mode == "to_file" { 2 } else { 1 }), TENSORS);
            let built = status("VmRSS");
            let t = Instant::now();
            let len = if mode == "to_file" {
                safejax::to_file(arg(1), &model).unwrap();
                0
            } else {
                let bytes = safejax::to_bytes(&model).unwrap();
                std::hint::black_box(&bytes);
                bytes.len()
            };
            let seconds = t.elapsed().as_secs_f64();
            std::hint::black_box(len);
            report(
                mode,
                model_bytes(&model),
                &[("start", start_rss), ("built", built)],
                seconds,
            );
        }
        "mapped" | "mapped_read" => {
            let t = Instant::now();
            // SAFETY: the probe's own file, not modified while mapped.
            let map = unsafe { MappedFile::open(arg(1)) }.unwrap();
            let model: Many<TensorView<'_, f32>> = map.deserialize().unwrap();
            let seconds = t.elapsed().as_secs_f64();
            let loaded = status("VmRSS");
            let bytes: u64 = model.layer.iter().map(|l| 4 * (l.w.len() + l.b.len()) as u64).sum();
            assert!(model.layer.iter().all(|l| l.w.is_borrowed() && l.b.is_borrowed()));
            let mut points = vec![("start", start_rss), ("loaded", loaded)];
            if mode == "mapped_read" {
                let sum: f64 = model
                    .layer
                    .iter()
                    .flat_map(|l| [&l.w, &l.b])
                    .map(|t| t.as_slice().iter().map(|&x| x as f64).sum::<f64>())
                    .sum();
                std::hint::black_box(sum);
                points.push(("read", status("VmRSS")));
            }
            report(mode, bytes, &points, seconds);
        }
        "from_file" | "read_then_from_bytes" => {
            let t = Instant::now();
            let model: Many<Tensor<f32>> = if mode == "from_file" {
                safejax::from_file(arg(1)).unwrap()
            } else {
                let bytes = std::fs::read(arg(1)).unwrap();
                safejax::from_bytes(&bytes).unwrap()
            };
            let seconds = t.elapsed().as_secs_f64();
            report(
                mode,
                model_bytes(&model),
                &[("start", start_rss), ("loaded", status("VmRSS"))],
                seconds,
            );
        }
        "orbax_value" | "orbax_typed" => {
            // Large buffers freed during the load (stored chunks, and for the typed load each
            // array's decoded bytes once copied) go back to the kernel, as at glibc's default
            // threshold: the peak is then what the load holds, not what the allocator keeps.
            common::fresh_memory();
            let t = Instant::now();
            if mode == "orbax_value" {
                let tree: safejax::Value = safejax::orbax::from_dir(arg(1)).unwrap();
                assert_eq!(tree.leaves().count(), common::resnet50::specs().len());
                std::hint::black_box(&tree);
            } else {
                let model: common::resnet50::Owned = safejax::orbax::from_dir(arg(1)).unwrap();
                std::hint::black_box(&model);
            }
            let seconds = t.elapsed().as_secs_f64();
            let points = [("start", start_rss), ("loaded", status("VmRSS"))];
            report(mode, resnet50_bytes(), &points, seconds);
        }
        "orbax_write" => {
            common::fresh_memory();
            let model: common::resnet50::Owned = safejax::orbax::from_dir(arg(1)).unwrap();
            let built = status("VmRSS");
            // Lowers the peak (VmHWM) to the resident memory now (Linux 4.0 and later).
            std::fs::write("/proc/self/clear_refs", "5").unwrap();
            let t = Instant::now();
            safejax::orbax::to_dir(arg(2), &model).unwrap();
            let seconds = t.elapsed().as_secs_f64();
            report(
                mode,
                resnet50_bytes(),
                &[("start", start_rss), ("built", built)],
                seconds,
            );
        }
        _ => usage(),
    }
}

/// The bytes of haiku ResNet50's leaves (`benches/data/resnet50.json`).
fn resnet50_bytes() -> u64 {
    common::resnet50::specs()
        .iter()
        .map(|s| (s.shape.iter().product::<usize>() * s.dtype.bit_size() / 8) as u64)
        .sum()
}

fn usage() -> ! {
    eprintln!(
        "usage: mem_probe make PATH MIB | to_file PATH MIB | to_bytes MIB | mapped PATH | mapped_read PATH \
         | from_file PATH | read_then_from_bytes PATH | orbax_value DIR | orbax_typed DIR | orbax_write DIR OUT"
    );
    std::process::exit(2)
}
