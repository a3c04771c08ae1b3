use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Params)]
struct Dense {
    // `shapes` is not `shape`; the message lists the keys a field takes.
    #[safejax(shapes = [192, 64])]
    kernel: Tensor<f32>,
}

fn main() {}
