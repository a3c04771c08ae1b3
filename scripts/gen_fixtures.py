#!/usr/bin/env python3
"""Write tests/fixtures/<name>.safetensors (exactly what Python safejax writes) and <name>.json
(keys, dtypes, shapes, values, a fixed input and the model's output) for every model in models.py.

Usage: .venv/bin/python scripts/gen_fixtures.py [--out DIR] [NAME ...]
Deterministic: running it twice writes identical bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "fixtures"
VERSION_PACKAGES = ["jax", "jaxlib", "flax", "dm-haiku", "objax", "safejax", "safetensors", "numpy", "ml_dtypes"]


def versions() -> dict:
    return {p: metadata.version(p) for p in VERSION_PACKAGES}


def values_list(arr: np.ndarray) -> list:
    """Flattened C-order values as JSON numbers; floats (bf16/f16 widened exactly) as Python floats."""
    arr = np.ascontiguousarray(arr).reshape(-1)
    if arr.dtype.kind == "b":
        return [bool(v) for v in arr]
    if arr.dtype.kind in "iu":
        return [int(v) for v in arr]
    wide = arr.astype(np.float64)  # exact for f16, bf16, f32, f64
    if not np.all(np.isfinite(wide)):
        raise ValueError("non-finite value in a fixture")
    return [float(v) for v in wide]


def array_entry(arr: np.ndarray, dtype_name: str | None = None) -> dict:
    entry = {}
    if dtype_name is not None:
        entry["dtype"] = dtype_name
    entry["shape"] = list(arr.shape)
    entry["values"] = values_list(arr)
    return entry


def dumps_fixture(doc: dict, nested=("tensors",)) -> str:
    """JSON with one entry of each `nested` top-level object per line (one tensor per line: readable diffs,
    small files), every other top-level entry on one line."""
    compact = lambda v: json.dumps(v, separators=(", ", ": "))  # noqa: E731
    lines = ["{"]
    items = list(doc.items())
    for i, (k, v) in enumerate(items):
        comma = "," if i + 1 < len(items) else ""
        if k in nested:
            lines.append(f"  {json.dumps(k)}: {{")
            tk = list(v.items())
            for j, (name, entry) in enumerate(tk):
                c = "," if j + 1 < len(tk) else ""
                lines.append(f"    {json.dumps(name)}: {compact(entry)}{c}")
            lines.append("  }" + comma)
        else:
            lines.append(f"  {json.dumps(k)}: {compact(v)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def parse_names(ap: argparse.ArgumentParser, known: dict, what: str) -> tuple[argparse.Namespace, list]:
    """Adds the `NAME ...` argument (default: every name of `known`) to `ap`, parses the command line, and
    refuses names not in `known`. Shared by the fixture generators."""
    ap.add_argument("names", nargs="*", help=f"{what} to write (default all: {', '.join(known)})")
    args = ap.parse_args()
    names = args.names or list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        ap.error(f"unknown {what} {unknown}; known: {list(known)}")
    return args, names


def write_fixture(out: Path, name: str, ext: str, data: bytes, text: str) -> int:
    """Writes out/<name>.<ext> (the file) and out/<name>.json (its record), says so; returns their size."""
    path, js = out / f"{name}.{ext}", out / f"{name}.json"
    path.write_bytes(data)
    js.write_text(text)
    print(f"wrote {path.name} ({len(data)} B) and {js.name} ({len(text.encode())} B)")
    return len(data) + len(text.encode())


def build(model: models.Model):
    tree = model.init()
    data = model.save(tree)
    x = model.input()
    y = model.apply(tree, x)

    meta, tensors = models.read_safetensors(data)
    assert meta is None, "safejax writes no __metadata__"
    flat = model.to_flat(tree)
    assert sorted(flat) == sorted(tensors), (sorted(flat), sorted(tensors))
    for k, (dt, shape, arr) in tensors.items():
        src = np.asarray(flat[k])
        assert models.st_dtype_name(src.dtype) == dt and list(src.shape) == shape, k
        assert src.tobytes() == arr.tobytes(), k

    doc = {
        "name": model.name,
        "framework": model.framework,
        "description": model.description,
        "versions": versions(),
        "file": {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
        "tensors": {k: array_entry(tensors[k][2], tensors[k][0]) for k in sorted(tensors)},
        "input": array_entry(np.asarray(x, np.float32)),
        "output": array_entry(np.asarray(y, np.float32)),
    }
    return data, dumps_fixture(doc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    ap.add_argument("--formula", type=Path, metavar="DIR",
                    help="also write DIR/<name>.formula.safetensors: the formula params (see check_rust_files.py) "
                         "as Python safejax writes them")
    args, names = parse_names(ap, models.MODELS, "models")
    args.out.mkdir(parents=True, exist_ok=True)
    total = sum(write_fixture(args.out, name, "safetensors", *build(models.MODELS[name])) for name in names)
    print(f"{len(names)} fixtures, {total} bytes in all")
    if args.formula:
        args.formula.mkdir(parents=True, exist_ok=True)
        for name in names:
            m = models.MODELS[name]
            path = args.formula / f"{name}.formula.safetensors"
            path.write_bytes(m.save(models.formula_tree(m)))
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
