use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Params)]
struct Linear(Tensor<f32>, Tensor<f32>);

#[derive(Serialize, Deserialize, Params)]
struct Marker;

fn main() {}
