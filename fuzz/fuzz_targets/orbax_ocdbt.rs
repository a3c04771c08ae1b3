//! Any bytes as an OCDBT manifest and B-tree node: an error or a value, never a panic, a hang or
//! an allocation beyond the input's bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    safejax::orbax::fuzz::ocdbt(data);
});
