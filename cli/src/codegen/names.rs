//! Rust names from checkpoint names: `Dense_0` is the field `dense_0`, `batch_norm` the struct
//! `BatchNorm`, `self` the field `self_`.

use safejax::__private::keys::split_element;

/// Rust's keywords, strict and reserved (2021 edition, and `gen` of 2024): not usable as field names.
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate", "do", "dyn", "else",
    "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "macro", "match", "mod",
    "move", "mut", "override", "priv", "pub", "ref", "return", "self", "Self", "static", "struct", "super", "trait",
    "true", "try", "type", "typeof", "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Type names the generated code must not define: what it uses (`Tensor`, `Vec`, ...), what the
/// prelude and the expected imports bring into scope, and `Self`.
const RESERVED_TYPES: &[&str] = &[
    "Params",
    "Tensor",
    "TensorView",
    "Serialize",
    "Deserialize",
    "Self",
    "Option",
    "Some",
    "None",
    "Result",
    "Ok",
    "Err",
    "Vec",
    "String",
    "Box",
    "Copy",
    "Clone",
    "Send",
    "Sync",
    "Sized",
    "Unpin",
    "Drop",
    "Fn",
    "FnMut",
    "FnOnce",
    "Iterator",
    "IntoIterator",
    "DoubleEndedIterator",
    "ExactSizeIterator",
    "Extend",
    "Default",
    "Eq",
    "PartialEq",
    "Ord",
    "PartialOrd",
    "AsRef",
    "AsMut",
    "Into",
    "From",
    "TryFrom",
    "TryInto",
    "FromIterator",
    "ToOwned",
    "ToString",
];

/// The words of a name: `BatchNorm_0` is `batch`, `norm`, `0`; `conv2_d` is `conv2`, `d`; `MLP`
/// is `mlp`; `_key` is `key`. Only ASCII letters and digits make words.
pub fn words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut words = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_ascii_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            continue;
        }
        if c.is_ascii_uppercase() && !current.is_empty() {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev.is_ascii_lowercase() || prev.is_ascii_digit() || (prev.is_ascii_uppercase() && next_lower) {
                words.push(std::mem::take(&mut current));
            }
        }
        current.push(c.to_ascii_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// A snake_case field name for `name`, usable as a Rust identifier.
pub fn field_ident(name: &str) -> String {
    let mut ident = words(name).join("_");
    if ident.is_empty() {
        ident = "field".to_owned();
    } else if ident.starts_with(|c: char| c.is_ascii_digit()) {
        ident = format!("field_{ident}");
    }
    if KEYWORDS.contains(&ident.as_str()) {
        ident.push('_');
    }
    ident
}

/// An UpperCamelCase type name from words: `res`, `net` is `ResNet`; `conv2`, `d` is `Conv2D`.
pub fn camel(words: &[String]) -> String {
    let mut out = String::new();
    for w in words {
        let mut chars = w.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.push_str(chars.as_str());
        }
    }
    if out.is_empty() {
        out.push_str("Module");
    } else if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'M');
    }
    out
}

/// Whether `name` cannot name a generated struct.
pub fn is_reserved_type(name: &str) -> bool {
    RESERVED_TYPES.contains(&name) || KEYWORDS.contains(&name)
}

/// Whether `name` is a plain Rust identifier that can name a struct.
pub fn is_type_ident(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name != "_"
        && !is_reserved_type(name)
}

/// `name` without a trailing `_<index>`: `Dense_0` is `Dense`, `block_group_3` is `block_group`.
pub fn strip_index(name: &str) -> &str {
    match split_element(name) {
        Some((base, _)) => base,
        None => name,
    }
}

/// The singular of the last word: `layers` is `layer`, `entries` is `entry`; `bias` stays.
pub fn singular(mut words: Vec<String>) -> Vec<String> {
    if let Some(last) = words.last_mut() {
        if last.len() > 4 && last.ends_with("ies") {
            last.truncate(last.len() - 3);
            last.push('y');
        } else if last.len() > 3
            && last.ends_with('s')
            && !last.ends_with("ss")
            && !last.ends_with("us")
            && !last.ends_with("is")
            && !last.ends_with("as")
        {
            last.pop();
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_snake_case_identifiers() {
        assert_eq!(field_ident("Dense_0"), "dense_0");
        assert_eq!(field_ident("BatchNorm_0"), "batch_norm_0");
        assert_eq!(field_ident("LayerNorm"), "layer_norm");
        assert_eq!(field_ident("conv2_d"), "conv2_d");
        assert_eq!(field_ident("self"), "self_");
        assert_eq!(field_ident("type"), "type_");
        assert_eq!(field_ident("_key"), "key");
        assert_eq!(field_ident("0"), "field_0");
        assert_eq!(field_ident("(weird)"), "weird");
        assert_eq!(field_ident("~"), "field");
    }

    #[test]
    fn type_names_are_upper_camel_case() {
        assert_eq!(camel(&words("res_net")), "ResNet");
        assert_eq!(camel(&words("conv2_d")), "Conv2D");
        assert_eq!(camel(&words("MLP")), "Mlp");
        assert_eq!(camel(&words("BatchNorm1D")), "BatchNorm1D");
        assert_eq!(camel(&singular(words("layers"))), "Layer");
        assert_eq!(camel(&singular(words("bias"))), "Bias");
        assert_eq!(camel(&words("")), "Module");
        assert!(is_reserved_type("Params") && is_reserved_type("Self") && !is_reserved_type("Dense"));
        assert!(is_type_ident("Model") && !is_type_ident("1x") && !is_type_ident("Vec") && !is_type_ident("a-b"));
    }

    #[test]
    fn list_indices_are_python_numbers() {
        assert_eq!(strip_index("Dense_1"), "Dense");
        assert_eq!(strip_index("conv2_d"), "conv2_d");
    }
}
