#!/usr/bin/env bash
# Peak memory of writing and loading a large model: each step runs in its own process
# (examples/mem_probe.rs) under /usr/bin/time -v, and the table compares its peak resident memory
# with the model's size.
#
#   scripts/bench_memory.sh          # a 1 GiB model (64 f32 tensors of 16 MiB)
#   scripts/bench_memory.sh 4096     # a 4 GiB one
#
# Loads read a file that was just written, so it is in the page cache (page cache is not resident
# memory of the process; mapped pages are, once touched). Step times are of one run: indicative.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mib="${1:-1024}"
cargo build --quiet --release --example mem_probe
probe=target/release/examples/mem_probe
dir="$(mktemp -d "${TMPDIR:-/tmp}/safejax-mem.XXXXXX")"
trap 'rm -rf "$dir"' EXIT
"$probe" make "$dir/model.safetensors" "$mib"

echo "model: $mib MiB in 64 f32 tensors; $(nproc) cores; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| step | model (MiB) | RSS at start (MiB) | RSS after building / loading (MiB) | peak RSS (MiB) | peak − model (MiB) | time -v max RSS (MiB) | step time (ms) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
run() {
    local line maxrss
    line="$(/usr/bin/time -v "$probe" "$@" 2>"$dir/time")"
    maxrss="$(awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2 / 1024}' "$dir/time")"
    # mode=… model_mib=… start_mib=… (built_mib|loaded_mib)=… [read_mib=…] peak_mib=… ms=…
    echo "$line" | awk -v maxrss="$maxrss" '{
        for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        after = ("built_mib" in v) ? v["built_mib"] : v["loaded_mib"]
        if ("read_mib" in v) after = after " (" v["read_mib"] " after reading)"
        printf "| `%s` | %s | %s | %s | %s | %+.1f | %s | %s |\n", v["mode"], v["model_mib"], v["start_mib"], after,
            v["peak_mib"], v["peak_mib"] - v["model_mib"], maxrss, v["ms"]
    }'
}
# Loads first, while the file just made is in the page cache; then the writes.
run mapped "$dir/model.safetensors"
run mapped_read "$dir/model.safetensors"
run from_file "$dir/model.safetensors"
run read_then_from_bytes "$dir/model.safetensors"
run to_file "$dir/out.safetensors" "$mib"
run to_bytes "$mib"
