//! Each rule of the table in the module docs, the refusals, and the inverse.

use super::*;
use crate::{bf16, Tensor};

fn f32_tensor(shape: &[usize]) -> DynTensor {
    let n: usize = shape.iter().product();
    Tensor::new(shape.to_vec(), (0..n).map(|i| i as f32).collect())
        .unwrap()
        .into()
}

/// Converts flat keys; returns (source, target, permutation, rule) per key.
fn map(mapping: &Mapping, keys: &[(&str, &[usize])]) -> Result<Converted> {
    let tensors: Vec<(String, DynTensor)> = keys.iter().map(|(k, s)| (k.to_string(), f32_tensor(s))).collect();
    mapping.apply_flat(tensors.iter().map(|(k, t)| (k.as_str(), t)))
}

fn one(mapping: &Mapping, key: &str, shape: &[usize]) -> Entry {
    map(mapping, &[(key, shape)]).unwrap().entries.remove(0)
}

/// Converts one key that must be refused as undecided; returns why.
fn undecided(mapping: &Mapping, key: &str, shape: &[usize]) -> String {
    match map(mapping, &[(key, shape)]) {
        Err(Error::UndecidedKeys { keys, mut reasons }) => {
            assert_eq!(keys, [key]);
            reasons.remove(0)
        }
        other => panic!("{key}: not refused as undecided: {:?}", other.map(|c| c.entries)),
    }
}

#[test]
fn a_2d_kernel_is_transposed_and_called_weight() {
    let c = map(&Mapping::to_torch(), &[("params.Dense_0.kernel", &[2, 3])]).unwrap();
    let e = &c.entries[0];
    assert_eq!(e.target.as_deref(), Some("Dense_0.weight"));
    assert_eq!(e.permutation.as_deref(), Some(&[1, 0][..]));
    assert_eq!(e.rule, Rule::Linear);
    assert_eq!(e.target_shape, [3, 2]);
    let w = c.tensors["Dense_0.weight"].to_tensor::<f32>().unwrap();
    // [[0, 1, 2], [3, 4, 5]] transposed.
    assert_eq!(w.as_slice(), [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
}

#[test]
fn conv_kernels_become_out_in_spatial() {
    let m = Mapping::to_torch();
    // 4-D HWIO to OIHW, as transformers' (3, 2, 0, 1).
    let e = one(&m, "params.Conv_0.kernel", &[3, 5, 2, 4]);
    assert_eq!(
        (e.rule, e.permutation.as_deref()),
        (Rule::Conv, Some(&[3, 2, 0, 1][..]))
    );
    assert_eq!(e.target_shape, [4, 2, 3, 5]);
    // 5-D DHWIO to OIDHW (transformers' `.T` would give O I W H D).
    let e = one(&m, "params.Conv_0.kernel", &[2, 3, 5, 6, 7]);
    assert_eq!(e.permutation.as_deref(), Some(&[4, 3, 0, 1, 2][..]));
    assert_eq!(e.target_shape, [7, 6, 2, 3, 5]);
    // 3-D: only when the module says it is a convolution.
    let e = one(&m, "encoder.conv1.kernel", &[3, 4, 5]);
    assert_eq!((e.rule, e.permutation.as_deref()), (Rule::Conv, Some(&[2, 1, 0][..])));
    assert_eq!(e.target.as_deref(), Some("encoder.conv1.weight"));
    // The values: out[o][i][w] = in[w][i][o].
    let c = map(&m, &[("Conv_0.kernel", &[3, 4, 5])]).unwrap();
    let w = c.tensors["Conv_0.weight"].to_tensor::<f32>().unwrap();
    let (o, i, x) = (2, 1, 2);
    assert_eq!(w.as_slice()[o * 12 + i * 3 + x], ((x * 4 + i) * 5 + o) as f32);
}

#[test]
fn scale_and_embedding_become_weight() {
    let m = Mapping::to_torch();
    for (key, target) in [
        ("params.LayerNorm_0.scale", "LayerNorm_0.weight"),
        ("params.Embed_0.embedding", "Embed_0.weight"),
        ("embed/~/embed.embeddings", "embed.embed.weight"),
    ] {
        let e = one(&m, key, &[4, 3]);
        assert_eq!(
            (e.target.as_deref(), e.rule, e.permutation),
            (Some(target), Rule::Weight, None)
        );
    }
}

#[test]
fn exactly_mean_and_var_become_running_statistics() {
    let c = map(
        &Mapping::to_torch(),
        &[
            ("batch_stats.BatchNorm_0.mean", &[4]),
            ("batch_stats.BatchNorm_0.var", &[4]),
            ("params.BatchNorm_0.bias", &[4]),
            // Names that merely contain "mean" or "var" are not statistics (transformers renames them).
            ("params.variance_scale.bias", &[4]),
            ("params.Dense_0.mean_bias", &[4]),
        ],
    )
    .unwrap();
    let by: BTreeMap<&str, (&str, Rule)> = c
        .entries
        .iter()
        .map(|e| (e.source.as_str(), (e.target.as_deref().unwrap(), e.rule)))
        .collect();
    assert_eq!(
        by["batch_stats.BatchNorm_0.mean"],
        ("BatchNorm_0.running_mean", Rule::RunningMean)
    );
    assert_eq!(
        by["batch_stats.BatchNorm_0.var"],
        ("BatchNorm_0.running_var", Rule::RunningVar)
    );
    assert_eq!(by["params.BatchNorm_0.bias"], ("BatchNorm_0.bias", Rule::Unchanged));
    assert_eq!(
        by["params.variance_scale.bias"],
        ("variance_scale.bias", Rule::Unchanged)
    );
    assert_eq!(by["params.Dense_0.mean_bias"], ("Dense_0.mean_bias", Rule::Unchanged));
}

#[test]
fn roots_go_and_list_names_split_when_asked() {
    let e = one(&Mapping::to_torch(), "params.layers_0.Dense_1.bias", &[2]);
    assert_eq!(e.target.as_deref(), Some("layers_0.Dense_1.bias"));
    let e = one(
        &Mapping::to_torch().list_names(true),
        "params.layers_0.Dense_1.bias",
        &[2],
    );
    assert_eq!(e.target.as_deref(), Some("layers.0.Dense.1.bias"));
    // A leaf is never split, nor a key whose only name is a root.
    let e = one(&Mapping::to_torch().list_names(true), "params.block.w_2", &[2]);
    assert_eq!(e.target.as_deref(), Some("block.w_2"));
    let e = one(&Mapping::to_torch(), "params", &[2]);
    assert_eq!(e.target.as_deref(), Some("params"));
}

#[test]
fn prefix_and_renames_shape_the_target_names() {
    let m = Mapping::to_torch().prefix("bert.").rename(|t| {
        t.strip_suffix(".LayerNorm.weight")
            .map(|s| format!("{s}.LayerNorm.gamma"))
    });
    let e = one(&m, "embeddings.LayerNorm.scale", &[8]);
    assert_eq!(e.target.as_deref(), Some("bert.embeddings.LayerNorm.gamma"));
    let e = one(&m, "embeddings.LayerNorm.bias", &[8]);
    assert_eq!(e.target.as_deref(), Some("bert.embeddings.LayerNorm.bias"));
}

#[test]
fn ambiguous_kernels_are_refused_with_their_key() {
    let m = Mapping::to_torch();
    let text = undecided(&m, "params.attention.query.kernel", &[8, 2, 4]);
    assert!(
        text.contains("`params.attention.query.kernel`") && text.contains("DenseGeneral"),
        "{text}"
    );
    let text = undecided(&m, "params.ConvTranspose_0.kernel", &[3, 3, 2, 4]);
    assert!(
        text.contains("`params.ConvTranspose_0.kernel`") && text.contains("transposed convolution"),
        "{text}"
    );
    let text = undecided(&m, "transformer.h.0.attn.c_attn.kernel", &[24, 8]);
    assert!(
        text.contains("`transformer.h.0.attn.c_attn.kernel`") && text.contains("GPT-2"),
        "{text}"
    );
    let text = undecided(&m, "params.odd.kernel", &[8]);
    assert!(
        text.contains("`params.odd.kernel`") && text.contains("rank 1"),
        "{text}"
    );
    // Every refusal at once.
    let all = map(
        &m,
        &[
            ("a.c_fc.kernel", &[2, 2]),
            ("b.Dense_0.kernel", &[2, 2]),
            ("c.ConvTranspose_1.kernel", &[1, 1, 2, 2]),
        ],
    )
    .unwrap_err();
    assert!(
        matches!(&all, Error::UndecidedKeys { keys, reasons }
            if *keys == ["a.c_fc.kernel", "c.ConvTranspose_1.kernel"] && reasons.len() == 2),
        "{all:?}"
    );
    assert_eq!(all.key(), Some("a.c_fc.kernel"));
    let text = all.to_string();
    assert!(text.starts_with("2 keys cannot be converted"), "{text}");
    assert!(
        text.contains("`a.c_fc.kernel`") && text.contains("`c.ConvTranspose_1.kernel`"),
        "{text}"
    );
}

#[test]
fn ambiguous_kernels_convert_once_kept_or_permuted_by_pattern() {
    let m = Mapping::to_torch()
        .keep(|k| k.ends_with("c_attn.kernel"))
        .permute(|k| k.ends_with("c_proj.kernel"), vec![1, 0])
        .permute(|k| k.contains("query"), vec![1, 2, 0]);
    let c = map(
        &m,
        &[
            ("h.0.attn.c_attn.kernel", &[24, 8]),
            ("h.0.attn.c_proj.kernel", &[8, 6]),
            ("attention.query.kernel", &[8, 2, 4]),
        ],
    )
    .unwrap();
    let e = c.entry("h.0.attn.c_attn.kernel").unwrap();
    assert_eq!(
        (e.target.as_deref(), e.rule, e.permutation.as_deref()),
        (Some("h.0.attn.c_attn.weight"), Rule::Kept, None)
    );
    assert_eq!(c.tensors["h.0.attn.c_attn.weight"].shape(), [24, 8]);
    let e = c.entry("h.0.attn.c_proj.kernel").unwrap();
    assert_eq!((e.rule, e.target_shape.as_slice()), (Rule::Permuted, &[6, 8][..]));
    let e = c.entry("attention.query.kernel").unwrap();
    assert_eq!(e.target_shape, [2, 4, 8]);
    // A permutation that does not fit the key is an error naming it.
    let bad = Mapping::to_torch().permute(|_| true, vec![1, 0]);
    let text = undecided(&bad, "Conv_0.kernel", &[3, 3, 2, 4]);
    assert!(text.contains("`Conv_0.kernel`") && text.contains("[1, 0]"), "{text}");
}

#[test]
fn permutes_keep_the_dtype_on_its_bytes() {
    let values: Vec<bf16> = (0..6).map(|i| bf16::from_f32(i as f32 + 0.5)).collect();
    let t: DynTensor = Tensor::new(vec![2, 3], values).unwrap().into();
    let c = Mapping::to_torch().apply_flat([("Dense_0.kernel", &t)]).unwrap();
    let w = &c.tensors["Dense_0.weight"];
    assert_eq!(w.dtype(), Dtype::BF16);
    let got: Vec<f32> = w
        .to_tensor::<bf16>()
        .unwrap()
        .as_slice()
        .iter()
        .map(|x| x.to_f32())
        .collect();
    assert_eq!(got, [0.5, 3.5, 1.5, 4.5, 2.5, 5.5]);
    // Unless a dtype is asked for; integers are not floats and stay.
    let ids: DynTensor = Tensor::new(vec![2], vec![1i32, 2]).unwrap().into();
    let c = Mapping::to_torch()
        .dtype(Dtype::F32)
        .apply_flat([("Dense_0.kernel", &t), ("ids", &ids)])
        .unwrap();
    assert_eq!(c.tensors["Dense_0.weight"].to_tensor::<f32>().unwrap().as_slice(), got);
    assert_eq!(c.tensors["ids"].dtype(), Dtype::I32);
}

#[test]
fn haiku_names_follow_the_same_table() {
    let c = map(
        &Mapping::to_torch().list_names(true),
        &[
            ("params.mlp/~/linear_0.w", &[3, 4]),
            ("params.mlp/~/linear_0.b", &[4]),
            ("params.conv2_d.w", &[3, 3, 2, 4]),
            ("params.layer_norm.scale", &[4]),
            ("params.layer_norm.offset", &[4]),
            ("state.batch_norm/~/mean_ema.average", &[4]),
            ("state.batch_norm/~/var_ema.average", &[4]),
            ("state.batch_norm/~/mean_ema.counter", &[]),
            ("state.batch_norm/~/mean_ema.hidden", &[4]),
        ],
    )
    .unwrap();
    let target = |s: &str| c.entry(s).unwrap().target.clone();
    assert_eq!(
        target("params.mlp/~/linear_0.w").as_deref(),
        Some("mlp.linear.0.weight")
    );
    assert_eq!(c.tensors["mlp.linear.0.weight"].shape(), [4, 3]);
    assert_eq!(target("params.mlp/~/linear_0.b").as_deref(), Some("mlp.linear.0.bias"));
    assert_eq!(c.tensors["conv2_d.weight"].shape(), [4, 2, 3, 3]);
    assert_eq!(target("params.layer_norm.scale").as_deref(), Some("layer_norm.weight"));
    assert_eq!(target("params.layer_norm.offset").as_deref(), Some("layer_norm.bias"));
    assert_eq!(
        target("state.batch_norm/~/mean_ema.average").as_deref(),
        Some("batch_norm.running_mean")
    );
    assert_eq!(
        target("state.batch_norm/~/var_ema.average").as_deref(),
        Some("batch_norm.running_var")
    );
    let dropped = c.entry("state.batch_norm/~/mean_ema.counter").unwrap();
    assert_eq!((dropped.target.as_deref(), dropped.rule), (None, Rule::Dropped));
    assert_eq!(c.tensors.len(), 7);
}

#[test]
fn two_keys_onto_one_name_are_an_error() {
    let err = map(
        &Mapping::to_torch(),
        &[("params.a.bias", &[2]), ("batch_stats.a.bias", &[2])],
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::TargetCollision { first, second, target }
            if first == "params.a.bias" && second == "batch_stats.a.bias" && target == "a.bias"),
        "{err:?}"
    );
    assert_eq!(err.key(), Some("batch_stats.a.bias"));
    let text = err.to_string();
    assert!(
        text.contains("`params.a.bias` and `batch_stats.a.bias` both become `a.bias`"),
        "{text}"
    );
}

#[test]
fn the_rules_invert_to_flax() {
    let flax: &[(&str, &[usize])] = &[
        ("params.Dense_0.kernel", &[3, 4]),
        ("params.Dense_0.bias", &[4]),
        ("params.Conv_0.kernel", &[3, 3, 2, 4]),
        ("params.Conv3d_0.kernel", &[2, 3, 3, 2, 4]),
        ("params.BatchNorm_0.scale", &[4]),
        ("params.BatchNorm_0.bias", &[4]),
        ("params.Embed_0.embedding", &[10, 4]),
        ("batch_stats.BatchNorm_0.mean", &[4]),
        ("batch_stats.BatchNorm_0.var", &[4]),
    ];
    let there = map(&Mapping::to_torch(), flax).unwrap();
    // Without a reference: the names say it all here (the embedding's module says `Embed`).
    let back = Mapping::to_flax()
        .apply_flat(there.tensors.iter().map(|(k, t)| (k.as_str(), t)))
        .unwrap();
    let keys: Vec<&str> = back.tensors.keys().map(String::as_str).collect();
    let mut expected: Vec<&str> = flax.iter().map(|(k, _)| *k).collect();
    expected.sort();
    assert_eq!(keys, expected);
    for (key, shape) in flax {
        let t = f32_tensor(shape);
        assert_eq!(back.tensors[*key], t, "{key}");
    }
}

#[test]
fn a_reference_decides_what_names_cannot() {
    // T5 and Llama norms are called `weight` in flax too, and `wte` is an embedding.
    let torch: &[(&str, &[usize])] = &[
        ("h.ln.weight", &[4]),
        ("wte.weight", &[10, 4]),
        ("h.mlp.weight", &[4, 4]),
    ];
    let guessed = map(&Mapping::to_flax(), torch).unwrap();
    let names: Vec<&str> = guessed.tensors.keys().map(String::as_str).collect();
    assert_eq!(names, ["h.ln.scale", "h.mlp.kernel", "wte.kernel"]);
    let reference: BTreeMap<String, Vec<usize>> = [
        ("h.ln.weight", vec![4]),
        ("wte.embedding", vec![10, 4]),
        ("h.mlp.kernel", vec![4, 4]),
    ]
    .into_iter()
    .map(|(k, s)| (k.to_owned(), s))
    .collect();
    let decided = map(&Mapping::to_flax().reference(reference.clone()), torch).unwrap();
    let check = check_reference(decided.tensors.iter().map(|(k, t)| (k.as_str(), t.shape())), &reference);
    assert!(check.is_match(), "{check}");
    assert_eq!(decided.entry("wte.weight").unwrap().rule, Rule::Weight);
    assert_eq!(decided.entry("h.mlp.weight").unwrap().rule, Rule::Linear);
}

#[test]
fn list_names_invert() {
    let e = one(&Mapping::to_flax().list_names(true), "layers.0.mlp.bias", &[4]);
    assert_eq!(e.target.as_deref(), Some("layers_0.mlp.bias"));
    let e = one(&Mapping::to_flax(), "bn.num_batches_tracked", &[]);
    assert_eq!((e.target, e.rule), (None, Rule::Dropped));
}

#[test]
fn reference_checks_report_every_difference() {
    let reference: BTreeMap<String, Vec<usize>> =
        [("a.weight", vec![2, 3]), ("b.weight", vec![4]), ("c.bias", vec![1])]
            .into_iter()
            .map(|(k, s)| (k.to_owned(), s))
            .collect();
    let ours: Vec<(&str, &[usize])> = vec![
        ("a.weight", &[3, 2]),
        ("b.weight", &[4]),
        ("d.bias", &[1]),
        ("e.bias", &[1]),
    ];
    let check = check_reference(ours, &reference);
    assert_eq!(check.missing, ["c.bias"]);
    assert_eq!(check.unexpected, ["d.bias", "e.bias"]);
    assert_eq!(check.mismatched, [("a.weight".to_owned(), vec![3, 2], vec![2, 3])]);
    let text = check.to_string();
    assert!(
        text.contains("1 missing: `c.bias`") && text.contains("2 unexpected") && text.contains("`a.weight` is [3, 2]"),
        "{text}"
    );
}

#[test]
fn permute_checks_its_arguments() {
    let t = f32_tensor(&[2, 3]);
    assert!(permute(&t, &[0, 0])
        .unwrap_err()
        .to_string()
        .contains("not a permutation"));
    assert!(permute_bytes(&[0; 5], Dtype::F32, &[2], &[0]).is_err());
    assert!(permute_bytes(&[0; 2], Dtype::F4, &[2, 2], &[1, 0])
        .unwrap_err()
        .to_string()
        .contains("whole bytes"));
    assert_eq!(permute(&t, &[1, 0]).unwrap().shape(), [3, 2]);
}
