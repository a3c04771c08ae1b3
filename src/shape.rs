//! Declared shapes (`#[safejax(shape = [...])]`), checked leaf by leaf.
//!
//! One load, or one write, is one binding table: a named dimension (`d_model`) takes its size from
//! the first leaf that has it, in the order the type declares its fields, and every later leaf
//! with that name must agree, as one config value does for a whole model. Loads and writes check
//! through the same table, so a file that loads is one that the same struct writes.

use crate::error::ExpectedDim;
use crate::schema::Dim;
use crate::{Error, Result};

/// The sizes named dimensions are bound to so far, with the key that bound each.
#[derive(Debug, Default)]
pub(crate) struct DimBindings {
    bound: Vec<(&'static str, usize, String)>,
}

impl DimBindings {
    fn lookup(&self, name: &str) -> Option<(usize, &str)> {
        self.bound
            .iter()
            .find(|(bound, ..)| *bound == name)
            .map(|(_, size, key)| (*size, key.as_str()))
    }

    /// Checks the leaf at `key`, of shape `found`, against `declared`; a leaf that fits binds the
    /// named dimensions it is the first to have.
    pub(crate) fn check(&mut self, key: &str, declared: &'static [Dim], found: &[usize]) -> Result<()> {
        // Names this leaf binds: kept only if the whole leaf fits.
        let mut new: Vec<(&'static str, usize)> = Vec::new();
        let mut fits = declared.len() == found.len();
        if fits {
            for (dim, &size) in declared.iter().zip(found) {
                match *dim {
                    Dim::Fixed(n) => fits &= n == size,
                    Dim::Any => {}
                    Dim::Named(name) => {
                        let bound = self
                            .lookup(name)
                            .map(|(size, _)| size)
                            .or_else(|| new.iter().find(|(n, _)| *n == name).map(|(_, size)| *size));
                        match bound {
                            Some(bound) => fits &= bound == size,
                            None => new.push((name, size)),
                        }
                    }
                }
            }
        }
        if fits {
            self.bound
                .extend(new.into_iter().map(|(name, size)| (name, size, key.to_owned())));
            return Ok(());
        }
        let expected = declared
            .iter()
            .map(|dim| match *dim {
                Dim::Fixed(n) => ExpectedDim {
                    name: None,
                    size: Some(n),
                    bound_by: None,
                },
                Dim::Any => ExpectedDim {
                    name: None,
                    size: None,
                    bound_by: None,
                },
                Dim::Named(name) => {
                    let bound = self.lookup(name).map(|(size, by)| (size, by.to_owned())).or_else(|| {
                        new.iter()
                            .find(|(n, _)| *n == name)
                            .map(|(_, size)| (*size, key.to_owned()))
                    });
                    ExpectedDim {
                        name: Some(name.to_owned()),
                        size: bound.as_ref().map(|(size, _)| *size),
                        bound_by: bound.map(|(_, by)| by),
                    }
                }
            })
            .collect();
        Err(Error::DeclaredShapeMismatch {
            key: key.to_owned(),
            expected,
            found: found.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMBED: &[Dim] = &[Dim::Named("vocab"), Dim::Named("d_model")];
    const ATTN: &[Dim] = &[Dim::Named("d_model"), Dim::Fixed(192)];

    #[test]
    fn fixed_sizes_and_rank_are_checked() {
        let mut dims = DimBindings::default();
        dims.check("k", ATTN, &[64, 192]).unwrap();
        let err = dims
            .check("k2", &[Dim::Fixed(192), Dim::Fixed(64)], &[64, 192])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "shape mismatch at `k2`: expected [192, 64], found [64, 192]"
        );
        assert_eq!(err.key(), Some("k2"));
        let err = DimBindings::default().check("b", &[Dim::Any], &[3, 4]).unwrap_err();
        assert_eq!(err.to_string(), "shape mismatch at `b`: expected [_], found [3, 4]");
    }

    #[test]
    fn a_named_dimension_is_bound_by_the_first_leaf() {
        let mut dims = DimBindings::default();
        dims.check("wte.embedding", EMBED, &[50, 64]).unwrap();
        dims.check("h.0.kernel", ATTN, &[64, 192]).unwrap();
        let err = dims.check("h.1.kernel", ATTN, &[32, 192]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "shape mismatch at `h.1.kernel`: expected [d_model=64, 192], found [32, 192] \
             (d_model bound to 64 by `wte.embedding`)"
        );
        let Error::DeclaredShapeMismatch { expected, .. } = err else {
            panic!("not a declared shape mismatch: {err:?}");
        };
        assert_eq!(expected[0].bound_by.as_deref(), Some("wte.embedding"));
    }

    #[test]
    fn a_leaf_that_does_not_fit_binds_nothing() {
        let mut dims = DimBindings::default();
        let err = dims.check("a", ATTN, &[64, 10]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "shape mismatch at `a`: expected [d_model=64, 192], found [64, 10] (d_model bound to 64 by `a`)"
        );
        dims.check("b", ATTN, &[32, 192]).unwrap();
        let err = dims.check("c", &[Dim::Named("d_model")], &[1, 2]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "shape mismatch at `c`: expected [d_model=32], found [1, 2] (d_model bound to 32 by `b`)"
        );
        // Within one leaf, a name repeated must repeat its size.
        let square: &[Dim] = &[Dim::Named("n"), Dim::Named("n")];
        assert!(DimBindings::default().check("sq", square, &[3, 4]).is_err());
        DimBindings::default().check("sq", square, &[3, 3]).unwrap();
    }
}
