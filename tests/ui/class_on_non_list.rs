use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Serialize, Deserialize, Params)]
struct Linear {
    w: Tensor<f32>,
}

#[derive(Serialize, Deserialize, Params)]
#[safejax(style = "objax")]
struct Mlp {
    #[safejax(class = "ModuleList")]
    l1: Linear,
    // A map keyed by name is not a list either.
    #[safejax(class = "Sequential")]
    named: BTreeMap<String, Linear>,
}

fn main() {}
