"""Flax msgpack checkpoint cases, written with the real `flax.serialization`.

Shared by scripts/gen_msgpack_fixtures.py (writes tests/fixtures/msgpack/<name>.{msgpack,json}) and
scripts/check_rust_msgpack.py (checks `<name>.msgpack` files written by the Rust crate).

Every case is a `Case` with:
  - `tree()`          -> the tree written with `flax.serialization.to_bytes` (deterministic);
  - `target()`        -> the `from_bytes` target: the model's own (unperturbed) init variables, or for a
                         tree without a model the same structure with zero leaves;
  - `max_chunk_size`  -> `flax.serialization.MAX_CHUNK_SIZE` in force while writing (flax's default
                         is 2**30; `chunked` lowers it so that arrays above 64 bytes are chunked);
  - `model`           -> the scripts/models.py model whose input/apply the case uses, or None.

The msgpack format of `flax.serialization.to_bytes(tree)` (flax 0.12.8, msgpack 1.2.4):
  - `to_state_dict` first turns every dict key into a str and every list/tuple into a dict keyed
    '0', '1', ...; the result is packed with `msgpack.packb(..., use_bin_type=True, strict_types=True)`;
  - an array leaf is ExtType(1, packb((shape, dtype.name, arr.tobytes('C')))), e.g. shape (3, 2) as a
    msgpack array of ints, 'float32' / 'bfloat16' / 'int32' as a str, the data as bin;
  - a numpy scalar (np.generic, e.g. np.int32(7)) is ExtType(3, ...) with the same payload for the 0-d
    array (shape ()); `msgpack_restore` gives back a numpy scalar;
  - an array of more than MAX_CHUNK_SIZE bytes becomes the map
    {'__msgpack_chunked_array__': True, 'shape': {'0': d0, '1': d1, ...},
     'chunks': {'0': ExtType(1, 1-D chunk), '1': ...}}
    with chunks of max(1, MAX_CHUNK_SIZE // itemsize) elements of the C-order flattened array (the last
    one shorter); `msgpack_restore` concatenates them back.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models  # noqa: E402  (sets JAX_PLATFORMS=cpu and the safejax shims before jax is used)

import flax.serialization  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_dtypes  # noqa: E402
import msgpack  # noqa: E402
from flax import nnx  # noqa: E402

FLAX_DEFAULT_MAX_CHUNK_SIZE = 2**30
assert flax.serialization.MAX_CHUNK_SIZE == FLAX_DEFAULT_MAX_CHUNK_SIZE, flax.serialization.MAX_CHUNK_SIZE


@dataclass
class Case:
    name: str
    description: str
    tree: Callable[[], Any]
    target: Callable[[], Any]
    max_chunk_size: int = FLAX_DEFAULT_MAX_CHUNK_SIZE
    model: Optional[models.Model] = None


CASES: Dict[str, Case] = {}


def register(c: Case) -> Case:
    CASES[c.name] = c
    return c


@contextlib.contextmanager
def max_chunk_size(n: int):
    """Temporarily set flax.serialization.MAX_CHUNK_SIZE (read by flax at call time)."""
    old = flax.serialization.MAX_CHUNK_SIZE
    flax.serialization.MAX_CHUNK_SIZE = n
    try:
        yield
    finally:
        flax.serialization.MAX_CHUNK_SIZE = old


def to_bytes(case: Case, tree) -> bytes:
    with max_chunk_size(case.max_chunk_size):
        return flax.serialization.to_bytes(tree)


# --------------------------------------------------------------------------------------------------
# flattening: '.' at every dict level and list index (as the safetensors fixtures)
# --------------------------------------------------------------------------------------------------


def flatten(tree, prefix: str = "") -> Dict[str, Any]:
    """{'a.b.0.c': leaf} for nested dicts (any key type, joined as str) and lists/tuples (by index)."""
    if isinstance(tree, Mapping):  # dict, FrozenDict
        items = [(str(k), v) for k, v in tree.items()]
    elif isinstance(tree, (list, tuple)):
        items = [(str(i), v) for i, v in enumerate(tree)]
    else:
        return {prefix: tree}
    out: Dict[str, Any] = {}
    for k, v in items:
        out.update(flatten(v, f"{prefix}.{k}" if prefix else k))
    return out


# --------------------------------------------------------------------------------------------------
# the raw msgpack structure of a file (independently of flax.serialization's decoder)
# --------------------------------------------------------------------------------------------------

CHUNKED_MARKER = "__msgpack_chunked_array__"


@dataclass
class RawLeaf:
    kind: str  # "ndarray" (ext 1), "npscalar" (ext 3), "chunked" (chunked-array map), or "other:<type>"
    dtype: str  # numpy dtype name as written ('float32', 'bfloat16', ...), '' for other
    shape: list
    chunks: Optional[list] = None  # element counts of the chunks, for "chunked"


def _ext_payload(ext: msgpack.ExtType):
    shape, dtype_name, data = msgpack.unpackb(ext.data, raw=False)
    return list(shape), dtype_name, data


def raw_layout(data: bytes):
    """-> (list of (flat key, RawLeaf) in file order, list of non-str map keys met)."""
    tree = msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=lambda c, d: msgpack.ExtType(c, d))
    leaves, odd_keys = [], []

    def walk(node, prefix):
        if isinstance(node, dict) and CHUNKED_MARKER in node:
            shape = [node["shape"][str(i)] for i in range(len(node["shape"]))]
            chunks = [node["chunks"][str(i)] for i in range(len(node["chunks"]))]
            sizes, dtypes = [], set()
            for ch in chunks:
                cshape, cdt, _ = _ext_payload(ch)
                assert ch.code == 1 and len(cshape) == 1, (prefix, ch.code, cshape)
                sizes.append(cshape[0])
                dtypes.add(cdt)
            assert len(dtypes) == 1, (prefix, dtypes)
            leaves.append((prefix, RawLeaf("chunked", dtypes.pop(), shape, sizes)))
        elif isinstance(node, dict):
            for k, v in node.items():
                if not isinstance(k, str):
                    odd_keys.append((prefix, k))
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        elif isinstance(node, msgpack.ExtType) and node.code in (1, 3):
            shape, dt, _ = _ext_payload(node)
            leaves.append((prefix, RawLeaf("ndarray" if node.code == 1 else "npscalar", dt, shape)))
        else:
            leaves.append((prefix, RawLeaf(f"other:{type(node).__name__}", "", [])))

    walk(tree, "")
    return leaves, odd_keys


# --------------------------------------------------------------------------------------------------
# flax_cnn: the linen CNN of models.py (params incl. the bf16 Dense_0, batch_stats)
# --------------------------------------------------------------------------------------------------


def _flax_cnn_target():
    return models.CNN().init(jax.random.PRNGKey(models.SEED), jnp.asarray(models._flax_cnn_input()))


register(Case(
    name="flax_cnn",
    description="flax.serialization.to_bytes(variables) of the flax_cnn model of scripts/models.py "
                "(params + batch_stats, Dense_0 in bfloat16); no array is chunked (MAX_CHUNK_SIZE = 2**30)",
    tree=models.MODELS["flax_cnn"].init,
    target=_flax_cnn_target,
    model=models.MODELS["flax_cnn"],
))


# --------------------------------------------------------------------------------------------------
# nnx_model: the NNX model's pure dict state (nnx.List indices become '0', '1')
# --------------------------------------------------------------------------------------------------


def _nnx_target():
    return nnx.to_pure_dict(nnx.state(models.NNXModel(nnx.Rngs(models.SEED))))


register(Case(
    name="nnx_model",
    description="flax.serialization.to_bytes(nnx.to_pure_dict(nnx.state(model))) of the nnx_model of "
                "scripts/models.py; the int keys 0, 1 of layers (nnx.List) are written as str keys '0', '1' "
                "(msgpack_serialize of the same dict would write them as msgpack int keys)",
    tree=models.MODELS["nnx_model"].init,
    target=_nnx_target,
    model=models.MODELS["nnx_model"],
))


# --------------------------------------------------------------------------------------------------
# chunked: a small tree written with MAX_CHUNK_SIZE = 64 bytes
# --------------------------------------------------------------------------------------------------

CHUNKED_MAX_CHUNK_SIZE = 64


def distinct_values(shape, dtype, salt: int) -> np.ndarray:
    """Distinct values (a permutation of (k + 0.5) / 8, k in [-n/2, n/2)), exact in bf16 for n <= 512,
    so that a chunk put back in the wrong place changes the array."""
    n = int(np.prod(shape, dtype=np.int64))
    j = np.arange(n, dtype=np.int64)
    step = next(p for p in (7 + salt, 11, 13, 17, 19, 23) if np.gcd(p, n) == 1) if n > 1 else 1
    k = (j * step + salt) % n - n // 2
    return ((k + 0.5) / 8.0).astype(np.float32).astype(dtype).reshape(shape)


def _chunked_tree():
    bf16 = ml_dtypes.bfloat16
    return {
        "params": {
            # 256 B: 4 chunks of 16 f32
            "dense": {"kernel": distinct_values((8, 8), np.float32, 1),
                      "bias": distinct_values((8,), np.float32, 2)},
            # 140 B: chunks of 16, 16, 3 f32 (a short last chunk)
            "odd": distinct_values((5, 7), np.float32, 3),
            # exactly 64 B: not chunked (flax chunks only arrays of MORE than MAX_CHUNK_SIZE bytes)
            "embed_bf16": distinct_values((4, 8), bf16, 4),
            # 80 B: chunks of 32 and 8 bf16
            "big_bf16": distinct_values((5, 8), bf16, 5),
        },
        # a python list of arrays: written as a dict keyed '0', '1'
        "layers": [
            {"w": distinct_values((2, 3), np.float32, 6), "b": distinct_values((3,), np.float32, 7)},
            {"w": distinct_values((3, 2), np.float32, 8), "b": distinct_values((2,), np.float32, 9)},
        ],
        # a numpy scalar: ExtType 3
        "step": np.int32(7),
        # a 0-d int32 array: ExtType 1 with shape ()
        "count": np.asarray(3, dtype=np.int32),
    }


def _zeros_like_tree(tree):
    return jax.tree_util.tree_map(lambda x: np.zeros_like(np.asarray(x)), tree)


register(Case(
    name="chunked",
    description="flax.serialization.to_bytes of a small tree with flax.serialization.MAX_CHUNK_SIZE = 64: "
                "f32[8,8], f32[5,7] and bf16[5,8] become __msgpack_chunked_array__ maps, bf16[4,8] (exactly 64 B) "
                "does not; a python list of dicts (keys '0', '1'); np.int32(7) (ExtType 3) and a 0-d int32 "
                "array (ExtType 1, shape [])",
    tree=_chunked_tree,
    target=lambda: _zeros_like_tree(_chunked_tree()),
    max_chunk_size=CHUNKED_MAX_CHUNK_SIZE,
))
