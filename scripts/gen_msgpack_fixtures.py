#!/usr/bin/env python3
"""Write tests/fixtures/msgpack/<name>.msgpack (exactly what `flax.serialization.to_bytes` writes) and
<name>.json (keys, dtypes, shapes, values; for a model also a fixed input and its output) for every case in
scripts/msgpack_cases.py.

The JSON has the format of tests/fixtures/<name>.json, plus a "msgpack" entry describing the file:
  max_chunk_size  flax.serialization.MAX_CHUNK_SIZE while writing;
  key_order       the flat keys in the order the file holds them (the tree's dict order);
  chunked         {flat key: element counts of its chunks} for the __msgpack_chunked_array__ leaves
                  (recorded in "tensors" as ONE tensor with its full shape);
  npscalar        the flat keys of numpy scalars (ExtType 3; shape [] in "tensors"); every other leaf
                  is an ExtType 1 ndarray.

Usage: .venv/bin/python scripts/gen_msgpack_fixtures.py [--out DIR] [NAME ...]
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
import msgpack_cases  # noqa: E402
import models  # noqa: E402
from gen_fixtures import array_entry, dumps_fixture, parse_names, write_fixture  # noqa: E402

import flax.serialization  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "msgpack"
SAFETENSORS_FIXTURES = ROOT / "tests" / "fixtures"
VERSION_PACKAGES = ["jax", "jaxlib", "flax", "msgpack", "numpy", "ml_dtypes"]


def versions() -> dict:
    return {p: metadata.version(p) for p in VERSION_PACKAGES}


def build(case: msgpack_cases.Case):
    tree = case.tree()
    data = msgpack_cases.to_bytes(case, tree)
    flat = {k: np.asarray(v) for k, v in msgpack_cases.flatten(tree).items()}

    # What flax reads back is exactly the tree (keys, dtypes, shapes, bytes).
    back = msgpack_cases.flatten(flax.serialization.msgpack_restore(data))
    assert sorted(back) == sorted(flat), (sorted(back), sorted(flat))
    for k, v in flat.items():
        b = np.asarray(back[k])
        assert b.dtype == v.dtype and b.shape == v.shape and b.tobytes() == v.tobytes(), k

    # The file's own structure, read with plain msgpack.
    layout, odd_keys = msgpack_cases.raw_layout(data)
    assert not odd_keys, odd_keys
    assert [k for k, _ in layout] == list(flat), ([k for k, _ in layout], list(flat))
    chunked, npscalar = {}, []
    for k, leaf in layout:
        v = flat[k]
        assert leaf.kind in ("ndarray", "npscalar", "chunked"), (k, leaf)
        assert leaf.dtype == v.dtype.name and leaf.shape == list(v.shape), (k, leaf, v.dtype, v.shape)
        if leaf.kind == "chunked":
            chunked[k] = leaf.chunks
        elif leaf.kind == "npscalar":
            npscalar.append(k)
    if case.max_chunk_size < msgpack_cases.FLAX_DEFAULT_MAX_CHUNK_SIZE:
        assert chunked, f"{case.name}: nothing was chunked"

    doc = {
        "name": case.name,
        "framework": case.model.framework if case.model else "flax.serialization",
        "description": case.description,
        "versions": versions(),
        "file": {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
        "msgpack": {"max_chunk_size": case.max_chunk_size, "key_order": list(flat), "chunked": chunked,
                    "npscalar": npscalar},
        "tensors": {k: array_entry(flat[k], models.st_dtype_name(flat[k].dtype)) for k in sorted(flat)},
    }

    if case.model is not None:
        m = case.model
        x = m.input()
        y = m.apply(tree, x)
        # from_bytes into the model's own init variables gives the same output
        y2 = m.apply(flax.serialization.from_bytes(case.target(), data), x)
        assert np.array_equal(y, y2), case.name
        # the same params as the safetensors fixture of the same model
        st = json.loads((SAFETENSORS_FIXTURES / f"{case.name}.json").read_text())
        assert st["tensors"] == doc["tensors"], f"{case.name}: params differ from tests/fixtures/{case.name}.json"
        assert st["output"] == array_entry(np.asarray(y, np.float32)), case.name
        doc["input"] = array_entry(np.asarray(x, np.float32))
        doc["output"] = array_entry(np.asarray(y, np.float32))
    return data, dumps_fixture(doc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    args, names = parse_names(ap, msgpack_cases.CASES, "cases")
    args.out.mkdir(parents=True, exist_ok=True)
    total = sum(write_fixture(args.out, name, "msgpack", *build(msgpack_cases.CASES[name])) for name in names)
    print(f"{len(names)} fixtures, {total} bytes in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
