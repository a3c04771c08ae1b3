//! The digits example's numbers: each checkpoint trained in JAX, run in Rust, agrees with the
//! framework's own logits and predictions on the held-out test set.

#[allow(dead_code)] // the example's `main` and printing helpers
#[path = "../examples/digits.rs"]
mod digits;

use std::path::PathBuf;

use digits::{FlaxVariables, HaikuParams, ObjaxMlp, TestSet};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/digits")
}

/// `training.json`, written by `scripts/train_digits.py`.
fn training() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("training.json")).unwrap()).unwrap()
}

#[test]
fn rust_inference_agrees_with_each_framework() {
    let evaluations = digits::evaluate_all(&dir()).unwrap();
    let frameworks: Vec<&str> = evaluations.iter().map(|e| e.framework).collect();
    assert_eq!(frameworks, ["flax", "haiku", "objax"]);
    let training = training();
    for e in &evaluations {
        assert_eq!(e.total, 360, "{}", e.framework);
        assert_eq!(e.agree, e.total, "{}: predictions differ", e.framework);
        assert!(
            e.max_logit_diff <= 1e-4,
            "{}: max |logit diff| {}",
            e.framework,
            e.max_logit_diff
        );
        // Rust's accuracy is the framework's own, computed from its recorded predictions ...
        assert_eq!(e.correct, e.framework_correct, "{}", e.framework);
        // ... which is what the training script reported ...
        let reported: f64 = training[format!("{}.accuracy", e.framework)]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let accuracy = e.correct as f64 / e.total as f64;
        assert!(
            (accuracy - reported).abs() < 1e-6,
            "{}: {accuracy} vs {reported}",
            e.framework
        );
        // ... and that of a trained classifier, not of chance (10%).
        assert!(accuracy > 0.9, "{}: {accuracy}", e.framework);
    }
}

#[test]
fn checkpoints_have_the_frameworks_keys_and_write_back_byte_for_byte() {
    let evaluations = digits::evaluate_all(&dir()).unwrap();
    let keys: Vec<&[String]> = evaluations.iter().map(|e| &e.keys[..]).collect();
    assert_eq!(
        keys[0],
        [
            "params.Dense_0.kernel",
            "params.Dense_0.bias",
            "params.Dense_1.kernel",
            "params.Dense_1.bias"
        ]
    );
    assert_eq!(
        keys[1],
        [
            "mlp/~/linear_0.w",
            "mlp/~/linear_0.b",
            "mlp/~/linear_1.w",
            "mlp/~/linear_1.b"
        ]
    );
    assert_eq!(
        keys[2],
        [
            "(MLP).layers(Sequential)[0](Linear).w::TrainVar",
            "(MLP).layers(Sequential)[0](Linear).b::TrainVar",
            "(MLP).layers(Sequential)[2](Linear).w::TrainVar",
            "(MLP).layers(Sequential)[2](Linear).b::TrainVar"
        ]
    );

    let read = |name: &str| std::fs::read(dir().join(name)).unwrap();
    let flax = read("flax_mlp.safetensors");
    let params: FlaxVariables = safejax::from_bytes(&flax).unwrap();
    assert_eq!(params.params.hidden.kernel.dim(), (64, 32));
    assert!(safejax::to_bytes(&params).unwrap() == flax);
    let haiku = read("haiku_mlp.safetensors");
    let params: HaikuParams = safejax::from_bytes(&haiku).unwrap();
    assert!(safejax::to_bytes(&params).unwrap() == haiku);
    let objax = read("objax_mlp.safetensors");
    let params: ObjaxMlp = safejax::from_bytes(&objax).unwrap();
    assert!(params.layers[1].is_none(), "index 1 is objax's relu");
    assert!(safejax::to_bytes(&params).unwrap() == objax);
    let test = read("test.safetensors");
    let set: TestSet = safejax::from_bytes(&test).unwrap();
    assert_eq!(set.x.dim(), (360, 64));
    assert!(set.x.iter().all(|&v| (0.0..=1.0).contains(&v)));
    assert!(safejax::to_bytes(&set).unwrap() == test);
}
