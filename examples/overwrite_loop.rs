//! Overwrites a checkpoint with one of two param sets, alternately, until it is killed: the writer
//! that `tests/crash_safe_write.rs` kills at random points to check that `to_file` never leaves a
//! partial file.
//!
//! Run with `cargo run --example overwrite_loop -- PATH [COUNT]` (COUNT writes, default: forever);
//! it prints `wrote N` after each write.

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

#[allow(dead_code)] // the test includes this file for `params`, not for `main`
fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: overwrite_loop PATH [COUNT]");
    let count: u64 = args.next().map_or(u64::MAX, |c| c.parse().expect("a count"));
    let sets = [params(0), params(1)];
    for i in 0..count {
        let set = &sets[(i % 2 + 1) as usize % 2];
        safejax::to_file(&path, set).expect("write");
        // Tells a watching parent how far it got (stdout flushes at each line).
        println!("wrote {i}");
    }
}
