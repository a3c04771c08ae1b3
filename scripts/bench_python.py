"""Python safejax and flax msgpack on the ResNet50 of the Rust benchmarks, with the ratios to Rust.

Times, on this machine and on the same tree as `benches/serde.rs` (the keys, dtypes and shapes of
haiku's ResNet50 params and state from benches/data/resnet50.json, 479 leaves, 102.7 MB, random
values, as jax arrays):

- `safejax.haiku.serialize(tree)` to bytes and to a file, `safejax.haiku.deserialize` from bytes
  and from a file (Python safejax 0.5.0, over the safetensors package);
- `flax.serialization.to_bytes(tree)` and `flax.serialization.from_bytes(tree, data)`.

Then reads criterion's estimates of the Rust benchmarks (target/criterion/resnet50/*/new/estimates.json,
from `cargo bench --bench serde -- resnet50`) and prints each Python time next to the Rust one it
compares with, and their ratio. Writes the Python times to target/bench_python.json, for
scripts/bench_report.py.

    .venv/bin/python scripts/bench_python.py            # 20 runs of each, after 2 warm-up runs
    .venv/bin/python scripts/bench_python.py --runs 5
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

# safejax 0.5.0 refers to jnp.DeviceArray, which current JAX removed; jax.Array is its successor.
jnp.DeviceArray = jax.Array

import flax  # noqa: E402
import flax.serialization  # noqa: E402
import safejax  # noqa: E402
import safejax.haiku  # noqa: E402
import safejax.utils  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "benches" / "data" / "resnet50.json"
CRITERION = ROOT / "target" / "criterion" / "resnet50"
OUT = ROOT / "target" / "bench_python.json"
NP_DTYPES = {"F32": np.float32, "I32": np.int32}


def resnet50_tree(compressible: bool = False) -> dict:
    """`{"params": ..., "state": ...}` as haiku holds it: module name -> {name: jax array}. Float leaves are
    uniform in [-1, 1) (random: zstd barely shrinks them), or with `compressible` 7 in 8 zero and the rest
    +-0.5 or +-1 (like a pruned, quantized model)."""
    rng = np.random.default_rng(0)
    flat = {}
    for t in json.loads(SPEC.read_text())["tensors"]:
        dtype = NP_DTYPES[t["dtype"]]
        if dtype is np.float32 and compressible:
            value = rng.choice(np.float32([0.5, -0.5, 1, -1] + [0] * 28), t["shape"])
        elif dtype is np.float32:
            value = rng.uniform(-1, 1, t["shape"]).astype(np.float32)
        else:
            value = np.ones(t["shape"], dtype)
        flat[t["key"]] = jnp.asarray(value)
    return safejax.utils.unflatten_dict(flat)


def timed(fn, runs: int, warmup: int = 2, setup=None) -> dict:
    """Median, min and max of `runs` timed calls of fn after `warmup` untimed ones; `setup()` runs before
    each call, untimed."""
    times = []
    for i in range(warmup + runs):
        if setup is not None:
            setup()
        start = time.perf_counter()
        jax.block_until_ready(fn())
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return {"median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3, "max_ms": max(times) * 1e3,
            "runs": runs}


def rust_ms(name: str) -> float | None:
    path = CRITERION / name / "new" / "estimates.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["median"]["point_estimate"] / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    tree = resnet50_tree()
    leaves = jax.tree_util.tree_leaves(tree)
    nbytes = sum(x.nbytes for x in leaves)
    data = safejax.haiku.serialize(tree)
    msgpack = flax.serialization.to_bytes(tree)
    back = safejax.haiku.deserialize(data)
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(tree)

    py = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resnet50.safetensors"
        path.write_bytes(data)
        out = Path(tmp) / "out.safetensors"
        py["safejax_serialize"] = timed(lambda: safejax.haiku.serialize(tree), args.runs)
        py["safejax_serialize_file"] = timed(lambda: safejax.haiku.serialize(tree, filename=out), args.runs)
        py["safejax_deserialize"] = timed(lambda: safejax.haiku.deserialize(data), args.runs)
        py["safejax_deserialize_file"] = timed(lambda: safejax.haiku.deserialize(path), args.runs)
        py["flax_to_bytes"] = timed(lambda: flax.serialization.to_bytes(tree), args.runs)
        py["flax_from_bytes"] = timed(lambda: flax.serialization.from_bytes(tree, msgpack), args.runs)

    load = os.getloadavg()
    result = {
        "tree": {"leaves": len(leaves), "bytes": nbytes, "file_bytes": len(data)},
        "versions": {"python": sys.version.split()[0], "jax": jax.__version__, "flax": flax.__version__,
                     "safejax": getattr(safejax, "__version__", "0.5.0"), "numpy": np.__version__},
        "load_average": load,
        "python": py,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")

    print(f"ResNet50 params+state: {len(leaves)} leaves, {nbytes / 1e6:.1f} MB; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {args.runs} runs, median (min) ms\n")
    pairs = [
        ("serialize to bytes", "safejax_serialize", "to_bytes"),
        ("serialize to bytes", "flax_to_bytes", "to_bytes"),
        ("save to a file", "safejax_serialize_file", "to_file"),
        ("load from bytes, owned", "safejax_deserialize", "from_bytes_owned"),
        ("load from bytes, views", "safejax_deserialize", "from_bytes_views"),
        ("load from bytes, owned", "flax_from_bytes", "from_bytes_owned"),
        ("load from a file, owned", "safejax_deserialize_file", "from_file_owned"),
        ("load from a file, mapped views", "safejax_deserialize_file", "mmap_views"),
    ]
    print(f"| operation | Python | Python (ms) | Rust safejax | Rust (ms) | Python / Rust |")
    print(f"|---|---|---:|---|---:|---:|")
    for what, p, r in pairs:
        rust = rust_ms(r)
        pm = py[p]["median_ms"]
        rs = f"{rust:.3f}" if rust is not None else "(not run)"
        ratio = f"{pm / rust:.1f}×" if rust else "–"
        print(f"| {what} | `{p}` | {pm:.1f} ({py[p]['min_ms']:.1f}) | `{r}` | {rs} | {ratio} |")
    if rust_ms("to_bytes") is None:
        print("\n(no Rust results: run `cargo bench --bench serde -- resnet50` first)")
    print(f"\nwrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
