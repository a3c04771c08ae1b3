//! One operation of the `many_small` benchmark (10 000 tensors of 64 f32), repeated, for counting
//! instructions under callgrind, which a shared, loaded machine does not skew as it skews time:
//!
//! ```text
//! cargo build --release --example many_small
//! valgrind --tool=callgrind target/release/examples/many_small to_bytes 11
//! ```
//!
//! Operations: `to_bytes`, `safetensors_serialize`, `from_bytes_views`, `safetensors_deserialize`.
//! The difference between the counts of N + 1 and 1 repetitions, over N, is one operation's count
//! without the setup (`BENCHMARKS.md` has the figures).

#[path = "../benches/common/mod.rs"]
mod common;

use std::hint::black_box;

use common::Many;
use safejax::TensorView;

fn main() {
    let mut args = std::env::args().skip(1);
    let op = args.next().expect("usage: many_small OPERATION [REPETITIONS]");
    let reps: usize = args.next().map_or(1, |r| r.parse().expect("a number"));
    let model = Many::new(10_000, 64);
    let file = safejax::to_bytes(&model).unwrap();
    let st = safetensors::SafeTensors::deserialize(&file).unwrap();
    let views = st.tensors();
    for _ in 0..reps {
        match op.as_str() {
            "to_bytes" => {
                black_box(safejax::to_bytes(black_box(&model)).unwrap());
            }
            "safetensors_serialize" => {
                black_box(safetensors::serialize(views.iter().map(|(k, v)| (k, v)), None).unwrap());
            }
            "from_bytes_views" => {
                black_box(safejax::from_bytes::<Many<TensorView<'_, f32>>>(black_box(&file)).unwrap());
            }
            "safetensors_deserialize" => {
                black_box(safetensors::SafeTensors::deserialize(black_box(&file)).unwrap().len());
            }
            other => panic!("unknown operation {other}"),
        }
    }
}
