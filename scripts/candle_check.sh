#!/usr/bin/env bash
# A real Rust consumer of the PyTorch layout: `safejax convert --layout torch` converts transformers'
# Flax models (tests/fixtures/hf_bert, hf_vit, hf_resnet; one file from the msgpack checkpoint, and
# shards from the sharded safetensors one), then interop/candle (its own workspace, so `cargo test`
# never compiles candle) loads each with candle's own model code through a VarBuilder and compares the
# outputs with the Flax models' (the fixtures' expected.json, written by scripts/gen_hf_fixtures.py from
# the real models), max abs difference 1e-5 at most.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cargo build --quiet -p safejax-cli
bin="$root/target/debug/safejax"
for model in bert vit resnet; do
    "$bin" convert "tests/fixtures/hf_$model/msgpack" "$out/${model}_single/" --layout torch
    "$bin" convert "tests/fixtures/hf_$model/safetensors_sharded" "$out/${model}_sharded/" --layout torch \
        --shard-size 2KB
done
start=$(date +%s)
(cd interop/candle && cargo build --quiet --locked)
echo "candle check built in $(( $(date +%s) - start )) s"
interop/candle/target/debug/safejax-candle-check tests/fixtures "$out"
# CI machines are short of disk; the candle build is not needed after this.
if [ "${CI:-}" = true ]; then rm -rf interop/candle/target; fi
