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
import models  # noqa: E402
from checks import CheckError, ensure, ensure_same_keys, parse_args, run_checks  # noqa: E402

import flax.serialization  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FIXTURES = ROOT / "tests" / "fixtures" / "msgpack"


def check_leaves(what: str, flat: dict, fx: dict, fx_name: str) -> None:
    """flat: {key: leaf} against the fixture's tensors: keys, dtypes, shapes, values exactly."""
    want = fx["tensors"]
    ensure_same_keys(f"{what}: keys", flat, want)
    for k, e in want.items():
        leaf = flat[k]
        ensure(isinstance(leaf, (np.ndarray, np.generic)),
               f"{what}: `{k}` is a {type(leaf).__name__}, not a numpy array or scalar")
        got = np.asarray(leaf)
        dt = models.st_dtype_name(got.dtype) if got.dtype in models.ST_DTYPES.values() else str(got.dtype)
        ensure(dt == e["dtype"], f"{what}: `{k}`: dtype {dt}, expected {e['dtype']}")
        transposed = " (the expected shape reversed: transposed?)" if got.ndim > 1 and \
            list(got.shape)[::-1] == e["shape"] else ""
        ensure(list(got.shape) == e["shape"],
               f"{what}: `{k}`: shape {list(got.shape)}, expected {e['shape']}{transposed}")
        if got.dtype.kind in "iub":
            ref = np.asarray(e["values"], dtype=got.dtype).reshape(e["shape"])
            same = np.array_equal(got, ref)
        else:  # f16 / bf16 / f32 / f64: the JSON holds the exact values as doubles
            ref = np.asarray(e["values"], dtype=np.float64).reshape(e["shape"])
            same = np.array_equal(got.astype(np.float64), ref)
        if not same:
            bad = np.flatnonzero(got.astype(np.float64).reshape(-1) != ref.astype(np.float64).reshape(-1))
            j = int(bad[0]) if bad.size else 0
            transposed = got.ndim > 1 and np.array_equal(got.astype(np.float64).T, ref.astype(np.float64))
            hint = " (it holds the expected tensor transposed)" if transposed else ""
            raise CheckError(f"{what}: `{k}`: value at flat index {j} is {got.reshape(-1)[j]}, {fx_name} has "
                             f"{ref.reshape(-1)[j]}{hint}")


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
        y_ref = np.asarray(fx["output"]["values"], np.float32).reshape(fx["output"]["shape"])
        ensure(y.shape == y_ref.shape, f"output shape {y.shape}, expected {y_ref.shape}")
        try:
            np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-6)
        except AssertionError as e:
            raise CheckError(f"apply output differs from {fx_path.name}: {e}") from None
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
