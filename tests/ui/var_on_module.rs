// `var` names an objax variable type (`::StateVar`), which only a tensor has: on a field that
// holds a module it is refused, at the attribute.

use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Params)]
#[safejax(style = "objax")]
struct Mlp {
    #[safejax(var = "StateVar")]
    l1: Linear,
}

#[derive(Serialize, Deserialize, Params)]
struct Linear {
    w: Tensor<f32>,
}

fn main() {}
