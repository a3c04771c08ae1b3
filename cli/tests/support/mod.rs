//! What every test of the `safejax` command shares: running it from the safejax crate's root (where
//! `tests/fixtures` is) and a scratch directory per test.

#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};
use std::process::Command;

pub const BIN: &str = env!("CARGO_BIN_EXE_safejax");

/// The safejax crate, where `tests/fixtures` is; commands run there.
pub fn crate_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `safejax ARGS` in the crate root.
pub fn safejax<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(args: I) -> Output {
    let out = Command::new(BIN).args(args).current_dir(crate_root()).output().unwrap();
    Output {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Runs `safejax ARGS`, which must succeed, and gives its standard output.
pub fn ok<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(args: I) -> String {
    let out = safejax(args);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    out.stdout
}

/// A fresh scratch directory for one test, under the test binary's own name.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(env!("CARGO_CRATE_NAME"))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
