#!/usr/bin/env bash
# Rust writes, the real frameworks read: Rust loads every fixture into its typed struct and writes it
# back, and builds params of its own; Python safejax 0.5.0 and flax / haiku / objax then load each
# file, run the model, and compare outputs and bytes (scripts/check_rust_files.py); flax reads the
# msgpack files Rust writes (scripts/check_rust_msgpack.py), and transformers loads the Hugging Face
# checkpoints Rust writes (scripts/check_rust_hf.py, itself proven on fixture copies and broken copies
# by scripts/test_check_rust_hf.py), among them every HF fixture converted to the PyTorch layout by
# safejax::torch (<model>/pytorch/ and pytorch_sharded/). Orbax restores the checkpoints
# safejax::orbax::to_dir writes (tests/orbax_write.rs writes them, scripts/check_rust_orbax.py restores
# them with orbax-checkpoint 0.12.8 and compares dtypes, shapes and bytes), and CheckpointManager sees a
# step that safejax::orbax::Writer::step wrote into a root of its own steps (manager_step/); the
# checkpoint `safejax convert --to orbax` writes is restored too (cli_flax_cnn/, cli/tests/cli.rs).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup-python.sh
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cargo run --quiet --example interop_write -- "$out"
.venv/bin/python scripts/check_rust_files.py "$out/safetensors"
.venv/bin/python scripts/check_rust_msgpack.py "$out/msgpack"
.venv/bin/python scripts/test_check_rust_hf.py
.venv/bin/python scripts/check_rust_hf.py "$out/hf"
mkdir "$out/orbax"
SAFEJAX_ORBAX_OUT="$out/orbax" cargo test --quiet -p safejax --test orbax_write write_for_orbax
SAFEJAX_ORBAX_OUT="$out/orbax" cargo test --quiet -p safejax-cli --test cli convert_writes_orbax_checkpoints
.venv/bin/python scripts/check_rust_orbax.py "$out/orbax"
