//! Compile-fail tests of `#[derive(Params)]`: each file in `tests/ui` holds one kind of mistake,
//! and its `.stderr` the message the user sees, which must point at the offending token.
//!
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test --test compiletest` and
//! review every changed `.stderr`.

#[test]
#[cfg_attr(miri, ignore)]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
