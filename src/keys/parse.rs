//! Reading keys back: which style a file's keys follow, and how a key cuts into the steps of its
//! module tree. The inverse of [`Cursor`](super::Cursor); [`tree`](super::tree) builds on it.

use crate::schema::Style;

/// Guesses the style from the keys: objax shows classes in parentheses (`(MLP).w`), haiku joins
/// modules with `/~/` or `/`, NNX keeps list indices as path parts (`layers.0.kernel`); anything
/// else is flax.
pub fn detect<'k>(keys: impl IntoIterator<Item = &'k str>) -> Style {
    let keys: Vec<&str> = keys.into_iter().collect();
    let parts = |key: &'k str| key.split('.').collect::<Vec<_>>();
    if keys.iter().any(|k| parts(k).iter().any(|p| p.starts_with('('))) {
        Style::Objax
    } else if keys.iter().any(|k| k.contains('/')) {
        Style::Haiku
    } else if keys.iter().any(|k| {
        parts(k)
            .iter()
            .any(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    }) {
        Style::Nnx
    } else {
        Style::Flax
    }
}

/// The steps of `key` through its module tree, for display: concatenated with `.` between them
/// (none before a step that starts with `/` or `[`), they give the key back.
///
/// `params.mlp/~/linear_0.w` (haiku) is `params`, `mlp`, `/~/linear_0`, `w`;
/// `(MLP).seq(Sequential)[0](Linear).b::TrainVar` (objax) is `(MLP)`, `seq(Sequential)`,
/// `[0](Linear)`, `b::TrainVar`.
pub fn steps(style: Style, key: &str) -> Vec<String> {
    match style {
        Style::Flax | Style::Nnx => key.split('.').map(str::to_owned).collect(),
        Style::Haiku => {
            let parts: Vec<&str> = key.split('.').collect();
            let mut out = Vec::new();
            for (i, part) in parts.iter().enumerate() {
                if parts.len() >= 2 && i == parts.len() - 2 {
                    out.extend(
                        haiku_modules(part)
                            .into_iter()
                            .map(|(sep, name)| format!("{sep}{name}")),
                    );
                } else {
                    out.push((*part).to_owned());
                }
            }
            out
        }
        Style::Objax => {
            let mut out = Vec::new();
            for part in split_outside_parens(key) {
                // `seq(Sequential)[0](Linear)`: the list and each element are steps.
                let mut rest = part;
                while let Some(i) = rest[1.min(rest.len())..].find('[').map(|i| i + 1) {
                    out.push(rest[..i].to_owned());
                    rest = &rest[i..];
                }
                out.push(rest.to_owned());
            }
            out
        }
    }
}

/// Appends `step` (one of the [`steps`] of a key) to `key`, the way the steps came apart: after a
/// `.`, unless the step begins with its own separator (a haiku join, an objax `[index]`).
pub fn push_step(key: &mut String, step: &str) {
    if !key.is_empty() && !step.starts_with(['/', '[']) {
        key.push('.');
    }
    key.push_str(step);
}

/// Whether `name` is a list index as Python writes it (`0`, `12`; not `01`): NNX list elements,
/// objax `[i]`.
pub fn is_index(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) && (name == "0" || !name.starts_with('0'))
}

/// A flax or haiku list element's name, `layers_1`, as `("layers", 1)`.
pub fn split_element(name: &str) -> Option<(&str, usize)> {
    let underscore = name.rfind('_')?;
    let (base, digits) = (&name[..underscore], &name[underscore + 1..]);
    if base.is_empty() || !is_index(digits) {
        return None;
    }
    Some((base, digits.parse().ok()?))
}

/// A haiku module path cut at its joins: `mlp/~/linear_0/gate` is `("", "mlp")`,
/// `("/~/", "linear_0")`, `("/", "gate")`.
pub(crate) fn haiku_modules(path: &str) -> Vec<(&'static str, &str)> {
    let mut out = Vec::new();
    let mut sep = "";
    let mut rest = path;
    loop {
        match rest.find('/') {
            None => {
                out.push((sep, rest));
                return out;
            }
            Some(i) => {
                out.push((sep, &rest[..i]));
                if rest[i..].starts_with("/~/") {
                    sep = "/~/";
                    rest = &rest[i + 3..];
                } else {
                    sep = "/";
                    rest = &rest[i + 1..];
                }
            }
        }
    }
}

/// `key` cut at each `.` that is not inside parentheses.
fn split_outside_parens(key: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in key.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            '.' if depth == 0 => {
                out.push(&key[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&key[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styles_are_told_apart_by_their_keys() {
        assert_eq!(detect(["params.Dense_0.kernel", "layers_1.bias"]), Style::Flax);
        assert_eq!(detect(["bn.scale", "layers.0.kernel"]), Style::Nnx);
        assert_eq!(
            detect(["params.linear.w", "state.batch_norm/~/mean_ema.counter"]),
            Style::Haiku
        );
        assert_eq!(detect(["nested/inner.b"]), Style::Haiku);
        assert_eq!(detect(["(MLP).seq(Sequential)[0](Linear).b::TrainVar"]), Style::Objax);
    }

    #[test]
    fn list_element_names() {
        assert_eq!(split_element("layers_10"), Some(("layers", 10)));
        assert_eq!(split_element("block_group_0"), Some(("block_group", 0)));
        assert_eq!(split_element("layers_01"), None);
        assert_eq!(split_element("_0"), None);
        assert_eq!(split_element("conv2_d"), None);
        assert!(is_index("0") && is_index("12") && !is_index("01") && !is_index("a"));
    }

    #[test]
    fn steps_give_the_key_back() {
        let cases = [
            (
                Style::Flax,
                "params.Dense_0.kernel",
                &["params", "Dense_0", "kernel"][..],
            ),
            (
                Style::Haiku,
                "params.res_net/~/block_0/conv.w",
                &["params", "res_net", "/~/block_0", "/conv", "w"],
            ),
            (
                Style::Objax,
                "(MLP).seq(Sequential)[2](Linear).b::TrainVar",
                &["(MLP)", "seq(Sequential)", "[2](Linear)", "b::TrainVar"],
            ),
            (
                Style::Objax,
                "(M).l(ModuleList)[0](Sequential)[1](Linear).w",
                &["(M)", "l(ModuleList)", "[0](Sequential)", "[1](Linear)", "w"],
            ),
        ];
        for (style, key, expected) in cases {
            let steps = steps(style, key);
            assert_eq!(steps, expected, "{key}");
            let mut back = String::new();
            for step in &steps {
                push_step(&mut back, step);
            }
            assert_eq!(back, key);
        }
    }
}
