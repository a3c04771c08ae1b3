//! The axis permutes of `safejax::torch` (`permute_bytes`: simplified shape, tiled transpose on
//! bytes) against the per-element baseline (unravel each output index, read the input element it
//! names) and a plain copy of the same bytes (the floor), in the same run:
//!
//! - `linear_f32`: a 4096 × 4096 f32 kernel transposed (64 MiB), the shape of a large linear layer;
//! - `linear_bf16`: the same in bf16 (32 MiB), two-byte elements;
//! - `conv_f32`: a 3 × 3 × 512 × 512 HWIO f32 kernel to OIHW (9 MiB).
//!
//! `cargo bench --bench torch`; BENCHMARKS.md has the figures.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use safejax::torch::permute_bytes;
use safejax::Dtype;

/// The definition, one element at a time.
fn naive(input: &[u8], elem: usize, shape: &[usize], perm: &[usize]) -> Vec<u8> {
    let out_shape: Vec<usize> = perm.iter().map(|&a| shape[a]).collect();
    let mut strides = vec![1; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * shape[k + 1];
    }
    let mut out = vec![0u8; input.len()];
    for (flat, dst) in out.chunks_exact_mut(elem).enumerate() {
        let (mut rem, mut offset) = (flat, 0);
        for k in (0..out_shape.len()).rev() {
            offset += (rem % out_shape[k]) * strides[perm[k]];
            rem /= out_shape[k];
        }
        dst.copy_from_slice(&input[offset * elem..(offset + 1) * elem]);
    }
    out
}

fn workloads(c: &mut Criterion) {
    let cases: [(&str, Dtype, &[usize], &[usize]); 3] = [
        ("linear_f32", Dtype::F32, &[4096, 4096], &[1, 0]),
        ("linear_bf16", Dtype::BF16, &[4096, 4096], &[1, 0]),
        ("conv_f32", Dtype::F32, &[3, 3, 512, 512], &[3, 2, 0, 1]),
    ];
    for (name, dtype, shape, perm) in cases {
        let elem = dtype.bit_size() / 8;
        let len = shape.iter().product::<usize>() * elem;
        let input: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4093) as u8).collect();
        assert_eq!(
            permute_bytes(&input, dtype, shape, perm).unwrap(),
            naive(&input, elem, shape, perm),
            "{name}"
        );
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(len as u64));
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(4));
        group.bench_function("copy", |b| b.iter(|| black_box(input.clone())));
        group.bench_function("tiled", |b| {
            b.iter(|| black_box(permute_bytes(&input, dtype, shape, perm).unwrap()))
        });
        group.bench_function("naive", |b| b.iter(|| black_box(naive(&input, elem, shape, perm))));
        group.finish();
    }
}

criterion_group!(benches, workloads);
criterion_main!(benches);
