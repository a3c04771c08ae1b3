//! serde's `rename_all` rules.
//!
//! Keys are built from serde names, so the derive must compute each field's name exactly as
//! serde_derive does; these rules copy serde_derive's `RenameRule::apply_to_field` (field names are
//! snake_case Rust identifiers, so the rules only ever split at `_`).

/// A `#[serde(rename_all = "...")]` rule.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RenameRule {
    /// No `rename_all`: names are the identifiers.
    None,
    /// `lowercase`.
    LowerCase,
    /// `UPPERCASE`.
    UpperCase,
    /// `PascalCase`.
    PascalCase,
    /// `camelCase`.
    CamelCase,
    /// `snake_case`.
    SnakeCase,
    /// `SCREAMING_SNAKE_CASE`.
    ScreamingSnakeCase,
    /// `kebab-case`.
    KebabCase,
    /// `SCREAMING-KEBAB-CASE`.
    ScreamingKebabCase,
}

/// The rules by their names in `rename_all = "..."`.
const RULES: &[(&str, RenameRule)] = &[
    ("lowercase", RenameRule::LowerCase),
    ("UPPERCASE", RenameRule::UpperCase),
    ("PascalCase", RenameRule::PascalCase),
    ("camelCase", RenameRule::CamelCase),
    ("snake_case", RenameRule::SnakeCase),
    ("SCREAMING_SNAKE_CASE", RenameRule::ScreamingSnakeCase),
    ("kebab-case", RenameRule::KebabCase),
    ("SCREAMING-KEBAB-CASE", RenameRule::ScreamingKebabCase),
];

impl RenameRule {
    /// The rule named `name`; `None` for a name serde does not know (serde_derive reports it).
    pub fn from_str(name: &str) -> Option<Self> {
        RULES
            .iter()
            .find(|(rule_name, _)| *rule_name == name)
            .map(|(_, rule)| *rule)
    }

    /// Applies the rule to a field name (a snake_case identifier), as serde_derive does.
    pub fn apply_to_field(self, field: &str) -> String {
        match self {
            RenameRule::None | RenameRule::LowerCase | RenameRule::SnakeCase => field.to_owned(),
            RenameRule::UpperCase | RenameRule::ScreamingSnakeCase => field.to_ascii_uppercase(),
            RenameRule::PascalCase => {
                let mut pascal = String::new();
                let mut capitalize = true;
                for ch in field.chars() {
                    if ch == '_' {
                        capitalize = true;
                    } else if capitalize {
                        pascal.push(ch.to_ascii_uppercase());
                        capitalize = false;
                    } else {
                        pascal.push(ch);
                    }
                }
                pascal
            }
            RenameRule::CamelCase => {
                let pascal = RenameRule::PascalCase.apply_to_field(field);
                // serde_derive slices at byte 1; an identifier's first character after the `_`s
                // were dropped may be non-ASCII, so split at the first character boundary instead
                // (identical for ASCII, and no panic otherwise).
                let mut chars = pascal.chars();
                match chars.next() {
                    Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
                    None => String::new(),
                }
            }
            RenameRule::KebabCase => field.replace('_', "-"),
            RenameRule::ScreamingKebabCase => RenameRule::ScreamingSnakeCase.apply_to_field(field).replace('_', "-"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RenameRule::{self, *};

    #[test]
    fn rule_names() {
        for (name, rule) in super::RULES {
            assert_eq!(RenameRule::from_str(name), Some(*rule));
        }
        assert!(RenameRule::from_str("Lowercase").is_none());
        assert!(RenameRule::from_str("snake-case").is_none());
        assert!(RenameRule::from_str("").is_none());
    }

    /// The table of serde_derive's own `rename_fields` test, plus names with leading, trailing
    /// and doubled underscores and digits, which param structs have (`dense_0`, `_rng`).
    #[test]
    fn rename_fields() {
        // (original, UPPERCASE, PascalCase, camelCase, SCREAMING_SNAKE_CASE, kebab-case, SCREAMING-KEBAB-CASE)
        #[rustfmt::skip]
        const CASES: &[(&str, &str, &str, &str, &str, &str, &str)] = &[
            ("outcome", "OUTCOME", "Outcome", "outcome", "OUTCOME", "outcome", "OUTCOME"),
            ("very_tasty", "VERY_TASTY", "VeryTasty", "veryTasty", "VERY_TASTY", "very-tasty", "VERY-TASTY"),
            ("a", "A", "A", "a", "A", "a", "A"),
            ("z42", "Z42", "Z42", "z42", "Z42", "z42", "Z42"),
            ("dense_0", "DENSE_0", "Dense0", "dense0", "DENSE_0", "dense-0", "DENSE-0"),
            ("_rng", "_RNG", "Rng", "rng", "_RNG", "-rng", "-RNG"),
            ("batch_norm_", "BATCH_NORM_", "BatchNorm", "batchNorm", "BATCH_NORM_", "batch-norm-", "BATCH-NORM-"),
            ("a__b", "A__B", "AB", "aB", "A__B", "a--b", "A--B"),
            ("conv1D", "CONV1D", "Conv1D", "conv1D", "CONV1D", "conv1D", "CONV1D"),
        ];
        for &(original, upper, pascal, camel, screaming, kebab, screaming_kebab) in CASES {
            assert_eq!(None.apply_to_field(original), original);
            assert_eq!(LowerCase.apply_to_field(original), original);
            assert_eq!(SnakeCase.apply_to_field(original), original);
            assert_eq!(UpperCase.apply_to_field(original), upper);
            assert_eq!(PascalCase.apply_to_field(original), pascal);
            assert_eq!(CamelCase.apply_to_field(original), camel);
            assert_eq!(ScreamingSnakeCase.apply_to_field(original), screaming);
            assert_eq!(KebabCase.apply_to_field(original), kebab);
            assert_eq!(ScreamingKebabCase.apply_to_field(original), screaming_kebab);
        }
    }

    #[test]
    fn non_ascii_and_empty() {
        assert_eq!(CamelCase.apply_to_field("é_b"), "éB");
        assert_eq!(PascalCase.apply_to_field("é_b"), "éB");
        assert_eq!(CamelCase.apply_to_field(""), "");
        assert_eq!(CamelCase.apply_to_field("_"), "");
    }
}
