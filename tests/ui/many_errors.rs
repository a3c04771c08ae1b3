use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

// Every mistake is reported in one compile, each at its own token.
#[derive(Serialize, Deserialize, Params)]
#[safejax(stlye = "haiku", style = "flax", style = "nnx", class = "")]
struct Linear {
    #[safejax(join = "/")]
    w: Tensor<f32>,
    #[safejax(var = "Train", klass = "X")]
    b: Tensor<f32>,
    #[serde(flatten)]
    #[safejax(class = "Module List")]
    extra: Vec<Tensor<f32>>,
}

fn main() {}
