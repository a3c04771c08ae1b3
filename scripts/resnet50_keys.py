"""Writes benches/data/resnet50.json: the key, dtype and shape of every leaf of a real haiku ResNet50.

Builds `hk.nets.ResNet50(num_classes=1000)` with `hk.transform_with_state`, initialises it on an input of
shape (1, 224, 224, 3), and lists `{"params": params, "state": state}` flattened as Python safejax does
(`safejax.haiku.serialize`: `.` at every dict level), so `params.res_net50/~/initial_conv.w`. The
benchmarks (benches/serde.rs) build random tensors from this list and load them into the typed struct
of benches/resnet50.rs.

    .venv/bin/python scripts/resnet50_keys.py            # rewrites benches/data/resnet50.json
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

# safejax 0.5.0 refers to jnp.DeviceArray, which current JAX removed; jax.Array is its successor.
jnp.DeviceArray = jax.Array

import haiku as hk  # noqa: E402
import safejax  # noqa: E402,F401
import safejax.utils  # noqa: E402

INPUT_SHAPE = (1, 224, 224, 3)
OUT = Path(__file__).resolve().parent.parent / "benches" / "data" / "resnet50.json"

# numpy dtype name -> safetensors dtype name
DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64",
          "int32": "I32", "int64": "I64", "uint32": "U32", "uint8": "U8", "bool": "BOOL"}


def resnet50_tree():
    def forward(x, is_training):
        return hk.nets.ResNet50(num_classes=1000)(x, is_training)

    model = hk.transform_with_state(forward)
    x = jnp.zeros(INPUT_SHAPE, jnp.float32)
    params, state = model.init(jax.random.PRNGKey(0), x, True)
    return {"params": params, "state": state}


def main() -> int:
    flat = safejax.utils.flatten_dict(resnet50_tree())
    tensors = []
    for key, value in flat.items():
        arr = np.asarray(value)
        tensors.append({"key": key, "dtype": DTYPES[str(arr.dtype)], "shape": list(arr.shape)})
    params = [t for t in tensors if t["key"].startswith("params.")]
    size = lambda ts: sum(int(np.prod(t["shape"], dtype=np.int64)) * 4 for t in ts)  # all 4-byte dtypes
    assert all(t["dtype"] in ("F32", "I32") for t in tensors), "expected only F32 and I32 leaves"
    doc = {
        "model": "hk.nets.ResNet50(num_classes=1000), hk.transform_with_state, input (1, 224, 224, 3)",
        "versions": {"jax": jax.__version__, "dm-haiku": hk.__version__},
        "params": {"tensors": len(params), "bytes": size(params)},
        "all": {"tensors": len(tensors), "bytes": size(tensors)},
        "tensors": tensors,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # One tensor per line: small, and diffs stay readable.
    lines = ",\n".join("    " + json.dumps(t) for t in tensors)
    head = {k: v for k, v in doc.items() if k != "tensors"}
    text = json.dumps(head, indent=2)[:-2] + ',\n  "tensors": [\n' + lines + "\n  ]\n}\n"
    json.loads(text)  # well-formed
    OUT.write_text(text)
    print(f"{OUT}: {len(params)} params tensors ({size(params) / 1e6:.1f} MB), "
          f"{len(tensors)} in all ({size(tensors) / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
