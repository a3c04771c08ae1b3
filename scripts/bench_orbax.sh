#!/usr/bin/env bash
# Orbax's own restore and save against this crate's read and write, on the same two checkpoints of
# haiku ResNet50's shapes in one session: scripts/bench_orbax.py saves them with Orbax's defaults
# and times Orbax (Python, tensorstore); `cargo bench --bench orbax` times the Rust side on the
# same directories; examples/mem_probe.rs measures the Rust side's peak memory (bench_orbax.py
# measures Orbax's); scripts/bench_report.py --orbax prints the ratios.
#
#   scripts/bench_orbax.sh                   # checkpoints in /tmp/safejax-orbax-bench, 5 runs a side
#   scripts/bench_orbax.sh DIR [RUNS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
dir="${1:-${TMPDIR:-/tmp}/safejax-orbax-bench}"
runs="${2:-5}"
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
.venv/bin/python scripts/bench_orbax.py "$dir" --json target/bench_orbax.json --runs "$runs"
SAFEJAX_ORBAX_BENCH_DIR="$dir" cargo bench -p safejax --bench orbax
cargo build --quiet --release --example mem_probe
probe=target/release/examples/mem_probe
out="$(mktemp -d "${TMPDIR:-/tmp}/safejax-orbax-write.XXXXXX")"
trap 'rm -rf "$out"' EXIT
: > target/bench_orbax_memory.txt
for variant in random compressible; do
    for mode in orbax_value orbax_typed; do
        echo "variant=$variant $("$probe" "$mode" "$dir/$variant")" >> target/bench_orbax_memory.txt
    done
    echo "variant=$variant $("$probe" orbax_write "$dir/$variant" "$out/$variant")" >> target/bench_orbax_memory.txt
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
python3 scripts/bench_report.py --orbax
