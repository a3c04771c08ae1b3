//! Which zstd decoder the Orbax reader uses: libzstd's bindings (`zstd`) against the pure-Rust
//! `ruzstd`, decoding the same frames in the same run.
//!
//! - `fixture_chunk`: a real chunk of Orbax 0.12.8's default save (zarr v2, `{"id": "zstd",
//!   "level": 1}`): `params.Dense_1.kernel`, f32[64, 3], from tests/fixtures/orbax/zarr2_no_ocdbt;
//! - `random_f32_8mib` and `smooth_f32_8mib`: 8 MiB chunks of f32 compressed at level 1 as
//!   tensorstore does, one of random values (barely compresses, like trained weights) and one of
//!   values that compress (like a zero-initialised optimizer state with a few updates).
//!
//! Throughput is in decoded bytes. `cargo bench --bench zstd`.

use std::hint::black_box;
use std::io::Read;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// As the reader decodes: one context per thread, reused.
fn libzstd(context: &mut zstd::zstd_safe::DCtx<'_>, frame: &[u8], out: &mut [u8]) {
    let n = context.decompress(out, frame).expect("a valid frame");
    assert_eq!(n, out.len());
}

/// With a new context for every frame (`ZSTD_decompress`).
fn libzstd_new_context(frame: &[u8], out: &mut [u8]) {
    let n = zstd::zstd_safe::decompress(out, frame).expect("a valid frame");
    assert_eq!(n, out.len());
}

fn ruzstd(frame: &[u8], out: &mut [u8]) {
    let mut decoder = ruzstd::decoding::StreamingDecoder::new(frame).expect("a valid frame");
    decoder.read_exact(out).expect("the chunk's bytes");
}

fn f32_bytes(values: impl Iterator<Item = f32>) -> Vec<u8> {
    values.flat_map(f32::to_le_bytes).collect()
}

fn bench(c: &mut Criterion) {
    let chunk = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/orbax/zarr2_no_ocdbt/params.Dense_1.kernel/0.0"
    ))
    .expect("the fixture chunk");
    let n = 2 << 20;
    // A xorshift generator: deterministic values without a dependency.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let random = f32_bytes((0..n).map(|_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }));
    let smooth = f32_bytes((0..n).map(|i| if i % 64 == 0 { (i / 64) as f32 * 1e-3 } else { 0.0 }));
    let cases = [
        ("fixture_chunk", chunk, 64 * 3 * 4),
        (
            "random_f32_8mib",
            zstd::bulk::compress(&random, 1).unwrap(),
            random.len(),
        ),
        (
            "smooth_f32_8mib",
            zstd::bulk::compress(&smooth, 1).unwrap(),
            smooth.len(),
        ),
    ];
    for (name, frame, len) in cases {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(len as u64));
        let mut out = vec![0u8; len];
        // Both decoders agree before they are timed.
        let mut context = zstd::zstd_safe::DCtx::create();
        libzstd(&mut context, &frame, &mut out);
        let expected = out.clone();
        ruzstd(&frame, &mut out);
        assert!(out == expected, "{name}: the decoders disagree");
        group.bench_function("libzstd", |b| {
            b.iter(|| libzstd(&mut context, black_box(&frame), &mut out))
        });
        group.bench_function("libzstd_new_context", |b| {
            b.iter(|| libzstd_new_context(black_box(&frame), &mut out))
        });
        group.bench_function("ruzstd", |b| b.iter(|| ruzstd(black_box(&frame), &mut out)));
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
