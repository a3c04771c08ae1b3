#!/usr/bin/env python3
"""Check Flax msgpack files written by the Rust crate against the real flax.serialization.

Usage: .venv/bin/python scripts/check_rust_msgpack.py DIR [--fixtures tests/fixtures/msgpack]

For each DIR/<name>.msgpack whose <name> is a case of scripts/msgpack_cases.py (flax_cnn, nnx_model,
chunked):
  - `flax.serialization.msgpack_restore` reads it, and its leaves (flattened with '.') have exactly the
    keys, dtypes, shapes and values of tests/fixtures/msgpack/<name>.json (numpy arrays or numpy
    scalars: no Python lists or numbers in place of arrays);
  - `flax.serialization.from_bytes(target, data)` with the case's own init variables as target gives the
    same leaves; for a model (flax_cnn, nnx_model) its apply on the fixture input then gives the fixture
    output (rtol = atol = 1e-6).
How the file encodes its leaves (chunked or not, numpy scalar as ExtType 3 or a 0-d ExtType 1 array, key
order, byte-identity with the fixture) is reported in the line, not required: flax reads all of them.
Prints one line per checked file, then `N passed, M failed`; exits non-zero on any failure, or when DIR
holds no file to check.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import msgpack_cases  # noqa: E402
from checks import check_leaves, ensure, ensure_close, parse_args, run_checks  # noqa: E402

import flax.serialization  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FIXTURES = ROOT / "tests" / "fixtures" / "msgpack"


def encoding_notes(data: bytes, fx: dict, fixture_bytes: bytes | None) -> str:
    layout, odd_keys = msgpack_cases.raw_layout(data)
    chunked = {k: leaf.chunks for k, leaf in layout if leaf.kind == "chunked"}
    npscalar = [k for k, leaf in layout if leaf.kind == "npscalar"]
    other = [f"{k} ({leaf.kind})" for k, leaf in layout if leaf.kind not in ("ndarray", "npscalar", "chunked")]
    ensure(not other, f"leaves that are neither arrays, numpy scalars nor chunked arrays: {other}")
    notes = []
    fm = fx["msgpack"]
    notes.append(f"chunked {sorted(chunked)}" if chunked else "nothing chunked")
    if chunked != fm["chunked"]:
        notes.append(f"(flax with MAX_CHUNK_SIZE={fm['max_chunk_size']} chunks {sorted(fm['chunked']) or 'nothing'})")
    if npscalar != fm["npscalar"]:
        notes.append(f"numpy scalars (ExtType 3) {npscalar}, flax wrote {fm['npscalar']}")
    if odd_keys:
        notes.append(f"non-str map keys {odd_keys[:3]}")
    if [k for k, _ in layout] != fm["key_order"]:
        notes.append("key order differs from flax's")
    if fixture_bytes is not None:
        notes.append("bytes identical to flax's" if data == fixture_bytes else "bytes differ from flax's")
    return ", ".join(notes)


def check_file(case: msgpack_cases.Case, path: Path, fixtures: Path) -> str:
    fx_path = fixtures / f"{case.name}.json"
    fx = json.loads(fx_path.read_text())
    data = path.read_bytes()

    restored = flax.serialization.msgpack_restore(data)
    ensure(isinstance(restored, dict), f"msgpack_restore gives a {type(restored).__name__}, not a map")
    check_leaves("msgpack_restore", msgpack_cases.flatten(restored), fx, fx_path.name)

    tree = flax.serialization.from_bytes(case.target(), data)
    check_leaves("from_bytes(target)", msgpack_cases.flatten(tree), fx, fx_path.name)

    detail = f"{len(fx['tensors'])} leaves equal {fx_path.name}"
    if case.model is not None:
        x = np.asarray(fx["input"]["values"], np.float32).reshape(fx["input"]["shape"])
        y = case.model.apply(tree, x)
        ensure_close("apply output", y, fx["output"], 1e-6, fx_path.name)
        detail += f", output {list(y.shape)} matches"
    fixture_file = fixtures / f"{case.name}.msgpack"
    notes = encoding_notes(data, fx, fixture_file.read_bytes() if fixture_file.is_file() else None)
    return f"{detail}; {notes}"


def main() -> int:
    args = parse_args(__doc__, "directory holding the <name>.msgpack files the Rust crate wrote", DEFAULT_FIXTURES, "fixture directory")

    jobs = []
    for path in sorted(args.dir.glob("*.msgpack")):
        name = path.name[: -len(".msgpack")]
        if name not in msgpack_cases.CASES:
            print(f"SKIP {path.name}: no case named {name!r} (known: {', '.join(msgpack_cases.CASES)})")
            continue
        jobs.append((path, msgpack_cases.CASES[name]))
    if not jobs:
        print(f"error: no <case>.msgpack files in {args.dir}", file=sys.stderr)
        return 1

    return run_checks(
        [(path.name, lambda path=path, case=case: check_file(case, path, args.fixtures)) for path, case in jobs],
        args.verbose,
    )


if __name__ == "__main__":
    sys.exit(main())
