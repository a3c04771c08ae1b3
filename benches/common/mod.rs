//! Workloads shared by the benchmarks (`benches/serde.rs`), the memory probe
//! (`examples/mem_probe.rs`) and the ResNet50 round-trip test (`tests/resnet50.rs`).
#![allow(dead_code)]

pub mod resnet50;

use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

/// Deterministic, non-constant fill (splitmix64): the benchmarks copy real-looking bytes, not zeros.
pub fn random_f32(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            // 24 random bits in [-1, 1).
            ((z >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

/// One tensor: the size sweep.
#[derive(Serialize, Deserialize, Params)]
pub struct One<L> {
    pub x: L,
}

impl One<Tensor<f32>> {
    /// One f32 tensor of `bytes` bytes (a multiple of 4).
    pub fn new(bytes: usize) -> Self {
        let n = bytes / 4;
        One {
            x: Tensor::new(vec![n], random_f32(n, 1)).unwrap(),
        }
    }
}

/// Many small tensors: `layer_0.w`, `layer_0.b`, … (flax style), the per-tensor overhead.
#[derive(Serialize, Deserialize, Params)]
pub struct Many<L> {
    pub layer: Vec<Small<L>>,
}

#[derive(Serialize, Deserialize, Params)]
pub struct Small<L> {
    pub w: L,
    pub b: L,
}

impl Many<Tensor<f32>> {
    /// `tensors` tensors (an even number) of `elements` f32 each.
    pub fn new(tensors: usize, elements: usize) -> Self {
        let layer = (0..tensors / 2)
            .map(|i| Small {
                w: Tensor::new(vec![elements], random_f32(elements, 2 * i as u64)).unwrap(),
                b: Tensor::new(vec![elements], random_f32(elements, 2 * i as u64 + 1)).unwrap(),
            })
            .collect();
        Many { layer }
    }
}

/// A model of about `bytes` bytes in `tensors` equal f32 tensors, laid out as a list of layers.
pub fn big_model(bytes: usize, tensors: usize) -> Many<Tensor<f32>> {
    Many::new(tensors, bytes / tensors / 4)
}

/// Every large allocation gets fresh pages from the kernel, as in a process that loads or writes a
/// model once. glibc's `malloc` otherwise raises its mmap threshold (up to 32 MiB) as large blocks
/// are freed, and then serves them from its heap, whose pages may be touched already: how fast a
/// copy into a new `Vec` is would depend on what the benchmarks before it freed. Setting the
/// threshold (to its default, 128 KiB) turns that adjustment off.
pub fn fresh_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's parameters; called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
    }
}
