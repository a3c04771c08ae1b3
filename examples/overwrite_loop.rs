//! Overwrites a checkpoint with one of two param sets, alternately, until it is killed: the writer
//! that `tests/crash_safe_write.rs` kills at random points to check that `to_file` never leaves a
//! partial file. With `--dir` (`--msgpack-dir`), it overwrites a checkpoint directory instead,
//! cycling through [`dir_sets`] (different shard counts, keys in other shards, one file), to check
//! the same of `to_dir` (`msgpack::to_dir`). With `--orbax`, it overwrites the Orbax checkpoint
//! directory PATH with `orbax::to_dir`, cycling through the same sets.
//!
//! Run with `cargo run --example overwrite_loop -- [--dir | --msgpack-dir | --orbax] PATH [COUNT]` (COUNT
//! writes, default: forever); it prints `wrote N` after each write.

use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

/// The params written: several MB, so that a kill often lands in the middle of a write.
#[derive(Debug, PartialEq, Serialize, Deserialize, Params)]
pub struct Checkpoint {
    pub kernel: Tensor<f32>,
    pub bias: Tensor<f32>,
    pub step: i64,
}

/// Param set `which` (0 or 1): 4 MB or 6 MB, of different contents, so that any mix of the two is
/// told apart from both.
pub fn params(which: u8) -> Checkpoint {
    let (rows, fill) = if which == 0 { (1024, 1.0) } else { (1536, -2.0) };
    let mut kernel = vec![fill; rows * 1024];
    // A few distinct values along the tensor, so that a torn copy would show.
    for (i, value) in kernel.iter_mut().enumerate().step_by(4099) {
        *value = i as f32;
    }
    Checkpoint {
        kernel: Tensor::new(vec![rows, 1024], kernel).unwrap(),
        bias: Tensor::new(vec![4], vec![fill; 4]).unwrap(),
        step: which.into(),
    }
}

#[path = "../tests/crash_support/mod.rs"]
pub mod crash_support;

pub use crash_support::Layers;

/// How a directory set is saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Save {
    /// `to_dir` with this largest shard.
    Safetensors(u64),
    /// `msgpack::to_dir` with this largest shard.
    Msgpack(u64),
    /// `orbax::to_dir` (no shards: one directory).
    Orbax,
}

/// The directory sets, each with how it is saved: 4 shards of two layers; 3 shards of three
/// layers (so most keys move to another shard); one file. In safetensors, or (`msgpack`) in flax
/// msgpack. Layer sizes and contents differ between sets, so that any mix is told apart from each.
pub fn dir_sets(msgpack: bool) -> Vec<(Layers, Save)> {
    let save = |max| {
        if msgpack {
            Save::Msgpack(max)
        } else {
            Save::Safetensors(max)
        }
    };
    let set = crash_support::layers;
    vec![
        (set(0, 128 << 10), save(1 << 20)),
        (set(1, 192 << 10), save(2_500_000)),
        (set(2, 160 << 10), save(u64::MAX)),
    ]
}

/// Saves directory set `set` into `dir`.
pub fn save_dir(dir: &str, set: &(Layers, Save)) -> safejax::Result<()> {
    match set.1 {
        Save::Safetensors(max) => safejax::to_dir(dir, &set.0, max),
        Save::Msgpack(max) => safejax::msgpack::to_dir(dir, &set.0, max),
        Save::Orbax => safejax::orbax::to_dir(dir, &set.0),
    }
}

#[allow(dead_code)] // the test includes this file for `params`, not for `main`
fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let dir_mode = args
        .first()
        .is_some_and(|a| a == "--dir" || a == "--msgpack-dir" || a == "--orbax");
    let msgpack = args.first().is_some_and(|a| a == "--msgpack-dir");
    let orbax = args.first().is_some_and(|a| a == "--orbax");
    if dir_mode {
        args.remove(0);
    }
    let mut args = args.into_iter();
    let path = args
        .next()
        .expect("usage: overwrite_loop [--dir | --msgpack-dir | --orbax] PATH [COUNT]");
    let count: u64 = args.next().map_or(u64::MAX, |c| c.parse().expect("a count"));
    let sets = [params(0), params(1)];
    let mut dir_sets = dir_sets(msgpack);
    if orbax {
        for set in &mut dir_sets {
            set.1 = Save::Orbax;
        }
    }
    for i in 0..count {
        if dir_mode {
            save_dir(&path, &dir_sets[i as usize % dir_sets.len()]).expect("write");
        } else {
            safejax::to_file(&path, &sets[(i % 2 + 1) as usize % 2]).expect("write");
        }
        // Tells a watching parent how far it got (stdout flushes at each line).
        println!("wrote {i}");
    }
}
