#!/usr/bin/env python3
"""Check safetensors files written by the Rust crate against the real frameworks and Python safejax 0.5.0.

Usage: .venv/bin/python scripts/check_rust_files.py DIR [--fixtures tests/fixtures]

For each DIR/<name>.safetensors whose <name> is a model in scripts/models.py:
  - its keys, dtypes, shapes and values equal those of tests/fixtures/<name>.json;
  - loaded with the framework's safejax deserializer (safejax.flax.deserialize, safejax.haiku.deserialize,
    safejax.objax.deserialize_with_assignment; NNX: safetensors + nnx.replace_by_pure_dict/nnx.update),
    the model's apply on the fixture input gives the fixture output (rtol = atol = OUTPUT_TOLERANCE);
  - serializing the loaded tree again with Python safejax gives the file's bytes exactly.
For each DIR/<name>.formula.safetensors:
  - the params built in Python by the formula (the model's init tree, every leaf at key K and C-order
    index j replaced by ((j*31 + len(K)) % 17 + 1) / 16 for floating dtypes, (j + len(K)) % 5 for integer
    ones) equal the loaded leaves exactly (same keys, dtypes, shapes, values);
  - apply gives the same output for the loaded tree and the Python-built formula tree;
  - loading and serializing again with Python safejax gives the file's bytes, and so does serializing
    the Python-built formula tree (Rust writes the reference layout).
Prints one line per checked file, then `N passed, M failed`; exits non-zero on any failure, or when DIR
holds no file to check.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models  # noqa: E402
from checks import (  # noqa: E402
    CheckError, check_leaves, ensure, ensure_close, ensure_same_keys, parse_args, run_checks,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FIXTURES = ROOT / "tests" / "fixtures"
FORMULA_SUFFIX = ".formula.safetensors"



# The parameters are compared byte for byte; the output only checks that the framework runs them as
# it ran them when the fixture was made, and XLA's CPU kernels differ by a few ulps between machines
# (haiku_resnet's BatchNorm and convolutions: 6.5e-6 on one of ours against the recorded output).
OUTPUT_TOLERANCE = 1e-5

def describe_diff(got: bytes, want: bytes) -> str:
    """Explain how a reference serialization (got) differs from the file (want)."""
    n = min(len(got), len(want))
    i = next((i for i in range(n) if got[i] != want[i]), n)
    parts = [f"lengths {len(want)} (file) vs {len(got)} (reference), first difference at byte {i}"]
    try:
        hw, hg = header_of(want), header_of(got)
        kw, kg = list(json.loads(hw)), list(json.loads(hg))
        if kw != kg:
            parts.append(f"tensor order in file: {kw}")
            parts.append(f"reference order:      {kg}")
        elif hw != hg:
            j = next((j for j in range(min(len(hw), len(hg))) if hw[j] != hg[j]), min(len(hw), len(hg)))
            parts.append(f"file header near the difference:      {hw[max(0, j - 60):j + 60]!r}")
            parts.append(f"reference header near the difference: {hg[max(0, j - 60):j + 60]!r}")
        else:
            parts.append("headers are equal: the tensor data differs")
    except Exception as e:  # noqa: BLE001 - a broken header is itself the answer
        parts.append(f"file header unreadable: {e}")
    return "\n      ".join(parts)


def header_of(data: bytes) -> str:
    n = int.from_bytes(data[:8], "little")
    return data[8:8 + n].decode("utf-8", "replace").rstrip(" ")


def check_same_bytes(what: str, got: bytes, want: bytes) -> None:
    if got != want:
        raise CheckError(f"{what}: bytes differ from the file\n      {describe_diff(got, want)}")


def check_header(data: bytes, want: dict) -> dict:
    """want: {key: (dtype name, shape)}; returns the parsed tensors."""
    meta, tensors = models.read_safetensors(data)
    ensure_same_keys("keys", tensors, want)
    for k, (dt, shape) in want.items():
        fdt, fshape, _ = tensors[k]
        ensure(fdt == dt, f"`{k}`: dtype {fdt}, expected {dt}")
        ensure(list(fshape) == list(shape), f"`{k}`: shape {fshape}, expected {list(shape)}")
    ensure(meta is None, f"file has __metadata__ {meta} (Python safejax writes none)")
    return tensors


def check_plain(model: models.Model, path: Path, fixtures: Path) -> str:
    fx_path = fixtures / f"{model.name}.json"
    fx = json.loads(fx_path.read_text())
    data = path.read_bytes()

    want = {k: (e["dtype"], e["shape"]) for k, e in fx["tensors"].items()}
    tensors = check_header(data, want)
    check_leaves("file", {k: t[2] for k, t in tensors.items()}, fx, fx_path.name)

    tree = model.load(path)
    x = np.asarray(fx["input"]["values"], np.float32).reshape(fx["input"]["shape"])
    y = model.apply(tree, x)
    ensure_close("apply output", y, fx["output"], OUTPUT_TOLERANCE, fx_path.name)

    check_same_bytes("load + serialize again with Python safejax", model.save(tree), data)
    return f"{len(tensors)} tensors, output {list(y.shape)} matches, bytes round-trip"


def check_formula(model: models.Model, path: Path) -> str:
    data = path.read_bytes()
    fflat = {k: np.asarray(v) for k, v in models.formula_flat(model).items()}
    check_header(data, {k: (models.st_dtype_name(v.dtype), list(v.shape)) for k, v in fflat.items()})

    tree = model.load(path)
    lflat = {k: np.asarray(v) for k, v in model.to_flat(tree).items()}
    ensure_same_keys("loaded tree keys", lflat, fflat)
    for k, want in fflat.items():
        got = lflat[k]
        ensure(got.dtype == want.dtype, f"`{k}`: loaded dtype {got.dtype}, formula {want.dtype}")
        ensure(got.shape == want.shape, f"`{k}`: loaded shape {got.shape}, formula {want.shape}")
        if got.tobytes() != want.tobytes():
            bad = np.flatnonzero(got.reshape(-1) != want.reshape(-1))
            j = int(bad[0]) if bad.size else 0
            raise CheckError(f"`{k}`: value at flat index {j} is {got.reshape(-1)[j]}, formula gives "
                             f"{want.reshape(-1)[j]}")

    ftree = model.from_flat(models.formula_flat(model))
    x = model.input()
    y_rust, y_formula = model.apply(tree, x), model.apply(ftree, x)
    try:
        ensure(not np.isnan(y_formula).any(), "the formula params give NaN outputs: the check would be empty")
        np.testing.assert_array_equal(y_rust, y_formula)
    except AssertionError as e:
        raise CheckError(f"apply outputs differ between the file and the formula params: {e}") from None

    check_same_bytes("load + serialize again with Python safejax", model.save(tree), data)
    check_same_bytes("Python safejax serialization of the formula params", model.save(ftree), data)
    return f"{len(fflat)} leaves equal the formula, outputs agree, bytes match the reference"


def main() -> int:
    args = parse_args(__doc__, "directory holding the files the Rust crate wrote", DEFAULT_FIXTURES, "fixture JSON directory")

    jobs = []
    for path in sorted(args.dir.glob("*.safetensors")):
        if path.name.endswith(FORMULA_SUFFIX):
            name, kind = path.name[: -len(FORMULA_SUFFIX)], "formula"
        else:
            name, kind = path.name[: -len(".safetensors")], "fixture"
        if name not in models.MODELS:
            print(f"SKIP {path.name}: no model named {name!r} (known: {', '.join(models.MODELS)})")
            continue
        jobs.append((path, models.MODELS[name], kind))
    if not jobs:
        print(f"error: no <model>.safetensors or <model>{FORMULA_SUFFIX} files in {args.dir}", file=sys.stderr)
        return 1

    def check(path: Path, model, kind: str):
        return lambda: check_plain(model, path, args.fixtures) if kind == "fixture" else check_formula(model, path)

    labelled = [(f"{path.name} [{model.framework}, {kind}]", check(path, model, kind)) for path, model, kind in jobs]
    return run_checks(labelled, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
