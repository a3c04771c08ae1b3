#!/usr/bin/env bash
# Runs each fuzz target for a bounded time: scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default 60); the targets run one after another. Seeds come from the committed
# corpus (fuzz/corpus/<target>, read only); what fuzzing learns goes to fuzz/work/<target>
# (ignored by git). A crash stops the script with its input under fuzz/artifacts/<target>/:
# reproduce with `cargo fuzz run <target> <file>`, then add it as a test in tests/regressions.rs.
#
# Built with debug assertions (overflow checks) and AddressSanitizer. Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). libFuzzer needs nightly compiler flags;
# RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(load_typed load_flat resolve_keys orbax_ocdbt orbax_zarr msgpack)
fi

export RUSTC_BOOTSTRAP=1
for target in "${targets[@]}"; do
    mkdir -p "fuzz/work/$target" "fuzz/artifacts/$target"
    echo "== fuzz $target for ${seconds}s"
    cargo fuzz run --fuzz-dir fuzz --debug-assertions "$target" "fuzz/work/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
