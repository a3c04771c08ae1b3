//! Any bytes as zarr v2 / v3 array metadata and one stored chunk (zstd, raw or a shard), decoded
//! into the array: never a panic, and zstd output never beyond the chunk's size.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    safejax::orbax::fuzz::zarr(data);
});
