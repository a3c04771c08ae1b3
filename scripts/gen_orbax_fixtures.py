#!/usr/bin/env python3
"""Write tests/fixtures/orbax/<case>/ (real Orbax checkpoints, orbax-checkpoint 0.12.8 with tensorstore
0.1.86, jax 0.10.2, flax 0.12.8) and <case>.json (the sidecar: every leaf's path, dtype, shape and exact
values, and what is on disk; the format is described in scripts/orbax_cases.py).

Usage: .venv/bin/python scripts/gen_orbax_fixtures.py [--out DIR] [CASE ...]

Every checkpoint is then restored with every applicable Orbax call (StandardCheckpointer and
PyTreeCheckpointer with and without a target, ocp.v1.load, CheckpointManager) and compared with its
sidecar exactly, with the code scripts/check_rust_orbax.py runs; what each call gave is the sidecar's
`restore`. Deterministic: running it twice writes the same sidecars. The checkpoints' bytes are not
the same: Orbax and tensorstore write random names (`d/<32 hex>`), a uuid (manifest.ocdbt) and
timestamps (_CHECKPOINT_METADATA, manifest.ocdbt, B-tree nodes), and the number of generations of a
per-process database (`ocdbt.process_N/`) depends on how its writes were batched; `commit_success.txt`
holds the absolute path saved to. The sidecars record only what does not vary.

The cases, and the Orbax call that made each (`ocp` is orbax.checkpoint; "the flax_cnn variables" are
scripts/models.py's flax_cnn tree, the tree of tests/fixtures/flax_cnn.safetensors, with its values):

  Trees of the safetensors fixtures, StandardCheckpointer().save(path, tree) (OCDBT, zarr v2, zstd):
    flax_cnn            the flax_cnn variables (params + batch_stats, Dense_0 in bfloat16)
    haiku_bn_state      {"params", "state"} of haiku_bn_state
    haiku_mlp           haiku_mlp's params (`mlp/~/linear_0` one dict level)
    nnx_split           nnx.split(model)[1] of nnx_model (an nnx.State: paths end in `value`)
    nnx_pure_dict       nnx.to_pure_dict of that state (nnx_model's tree; int keys 0, 1 in `layers`)
    train_state         flax TrainState.create(params=flax_cnn params, tx=optax.adam(1e-3)) after one
                        apply_gradients (then .replace(params=flax_cnn params), so that they equal the
                        fixture's): step, params, opt_state.0.{count, mu, nu}; opt_state.1 EmptyState
  Layouts (the flax_cnn variables unless said):
    zarr2_no_ocdbt      StandardCheckpointer(use_ocdbt=False).save
    zarr3_ocdbt         PyTreeCheckpointer(use_zarr3=True).save (StandardCheckpointer has no use_zarr3)
    zarr3_no_ocdbt      PyTreeCheckpointer(use_ocdbt=False, use_zarr3=True).save
    v1                  ocp.v1.save(path, tree) (the tree under state/, zarr3; v1.save_pytree is its
                        deprecated alias)
    uncompressed_zarr2  PyTreeCheckpointer(use_compression=False).save (OCDBT; chunks raw, OCDBT nodes and
                        manifest still zstd: Orbax has no option for those)
    uncompressed_zarr2_no_ocdbt  PyTreeCheckpointer(use_ocdbt=False, use_compression=False).save
    uncompressed_zarr3  PyTreeCheckpointer(use_zarr3=True, use_compression=False).save
    chunked_zarr2       StandardCheckpointer().save(path, tree, save_args=SaveArgs(chunk_byte_size=64) per leaf)
    chunked_zarr3       PyTreeCheckpointer(use_zarr3=True).save(..., save_args=SaveArgs(chunk_byte_size=64))
    manager             CheckpointManager(root).save(step, args=StandardSave(tree)) for steps 1, 2, 3 (each
                        leaf of the flax_cnn variables + (3 - step), so step 3 holds them exactly) and for
                        step 4 in a child process killed (os._exit) when Orbax renames the finished step into
                        place: `4.orbax-checkpoint-tmp` holds a whole save that never committed
    composite           CheckpointManager(root, item_names=("params", "extra")).save(5, args=Composite(
                        params=StandardSave(tree), extra=JsonSave({...})))
    multiprocess        two processes (jax.distributed on CPU, gloo), one device each, a 2-device mesh:
                        StandardCheckpointer().save of arrays sharded over both and replicated ones:
                        ocdbt.process_0/ and ocdbt.process_1/ under the merged root manifest
    multiprocess_unmerged  the same tree, StandardCheckpointHandler().save(path, args=StandardSave(tree)) in
                        both processes with no Checkpointer around it, so no finalize: the per-process
                        databases and no root manifest (Orbax 0.12.8 cannot restore it)
    numbered_manifest   StandardCheckpointer().save with Orbax's OCDBT config given manifest_kind "numbered"
                        (Orbax forces "single": its tensorstore_utils._add_ocdbt_write_options is wrapped)
    mlp8                StandardCheckpointer().save of an MLP of 8 layers (kernel f32[64,64], bias f32[64];
                        values k/256, random k in [-1024, 1024): short in the sidecar, yet each kernel stays
                        above the 1024-byte inline limit after zstd, so it lies in a data file): the remote
                        partial load of one layer (tests/remote_orbax.rs)
    btree_interior      StandardCheckpointer().save of 200 tiny arrays with Orbax's OCDBT config given
                        max_decoded_node_bytes 1024 (forced to 1e8 otherwise; wrapped the same way), so the
                        root B-tree has interior nodes (at 1e8 a leaf node holds ~300k keys)
    fill_value_absent   PyTreeCheckpointer(use_zarr3=True).save(..., chunk_byte_size=16) with
                        tensorstore_utils.STORE_ARRAY_DATA_EQUAL_TO_FILL_VALUE = False (the writes and the
                        _METADATA flag Orbax reads to allow missing chunks): zero chunks are not stored.
                        zarr v2 stores them anyway (Orbax writes fill_value null), so this is zarr3
  dtypes (jax arrays unless said):
    dtypes              StandardCheckpointer().save (jax_enable_x64 on, for the 64-bit jax arrays) of every
                        dtype safejax names (bool, int8..64, uint8..64, f16, bf16, f32, f64, the float8 kinds
                        e4m3fn, e5m2, e4m3fnuz, e5m2fnuz, e8m0fnu), PRNG keys (jax.random.key, split keys,
                        an rbg key, the old-style jax.random.PRNGKey), a 0-d array and a 2304-byte array
                        (stored out of line)
    dtype_<name>        StandardCheckpointer().save of {"params": {"bias": f32, "kernel": <name>}} for each
                        dtype that saves but safejax has no name for: int4, int2, float4_e2m1fn, float8_e3m4,
                        float8_e4m3b11fnuz (uint4, uint2 and float8_e4m3 do not save: tensorstore 0.1.86 has
                        no such dtype). int4, int2 and float4_e2m1fn are stored one element per byte, in its
                        low bits, not sign-extended (int4 -1 is 0x0f, -8 is 0x08; float4 -1.0 is 0x0a), so
                        float4_e2m1fn is not safetensors' F4, which packs two elements in a byte
    value_types         PyTreeCheckpointer().save (StandardCheckpointer refuses strings) of Python int /
                        float / bool, a numpy scalar, numpy arrays, strings, None, an empty dict, a list and a
                        tuple of mixed leaves, and a 2304-byte numpy array (stored out of line)

Not saved at all by Orbax 0.12.8 (so no fixture): zero-size arrays ("Cannot save arrays with zero size").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models  # noqa: E402
import msgpack_cases  # noqa: E402
import orbax_cases as oc  # noqa: E402
from check_rust_msgpack import check_leaves  # noqa: E402
from gen_fixtures import dumps_fixture  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_dtypes  # noqa: E402
import optax  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
from etils import epath  # noqa: E402
from flax import nnx  # noqa: E402
from flax.training import train_state  # noqa: E402
from orbax.checkpoint._src.path import atomicity  # noqa: E402
from orbax.checkpoint._src.serialization import tensorstore_utils as ts_utils  # noqa: E402

SAFETENSORS_FIXTURES = oc.ROOT / "tests" / "fixtures"


@dataclass
class Written:
    """What a case saved: the tree of its item (the one loaded by default), its layout, and for a manager
    or composite step what else is there."""
    tree: Any
    kind: str = "item"
    item: str = "."
    steps: Dict[int, Any] = field(default_factory=dict)
    items: Dict[str, dict] = field(default_factory=dict)


@dataclass
class Case:
    name: str
    call: str
    description: str
    write: Callable[[Path], Written]
    same_as: Optional[str] = None  # a safetensors fixture whose tensors the case's equal
    same_key: Callable[[str], Optional[str]] = lambda k: k  # sidecar key -> that fixture's key (None: skip)
    part_of_same: bool = False  # the case's tensors are a part of that fixture's, not all of them
    must_restore: tuple = ("standard", "standard_target", "pytree_target")
    x64: bool = False


CASES: Dict[str, Case] = {}


def register(c: Case) -> Case:
    CASES[c.name] = c
    return c


# --------------------------------------------------------------------------------------------------
# trees
# --------------------------------------------------------------------------------------------------

_TREES: Dict[str, Any] = {}


def model_tree(name: str):
    if name not in _TREES:
        _TREES[name] = models.MODELS[name].init()
    return _TREES[name]


def nnx_state():
    return nnx.split(models._nnx_model_with(model_tree("nnx_model")))[1]


def trained_state():
    params = model_tree("flax_cnn")["params"]
    state = train_state.TrainState.create(apply_fn=models.CNN().apply, params=params, tx=optax.adam(1e-3))
    grads = jax.tree.map(lambda p: jnp.asarray(msgpack_cases.distinct_values(p.shape, p.dtype, 11)), params)
    # one adam step makes count, mu and nu non-trivial; the params stay the fixture's (flax_cnn.json)
    return state.apply_gradients(grads=grads).replace(params=params)


def shifted(tree, by: float):
    return jax.tree.map(lambda x: (x.astype(jnp.float32) + by).astype(x.dtype), tree)


def dtypes_tree():
    floats = np.array([[0.5, -1.0, 1.5], [-2.0, 3.0, 0.0]], np.float32)
    ints = np.array([[1, -2, 3], [-4, 5, 0]], np.int64)
    tree: Dict[str, Any] = {"bool": jnp.asarray([[True, False, True], [False, False, True]])}
    for i, dt in enumerate([jnp.int8, jnp.int16, jnp.int32, jnp.int64]):
        lo = -(2 ** (8 * jnp.dtype(dt).itemsize - 1))  # the most negative value: sign extension shows
        tree[jnp.dtype(dt).name] = jnp.asarray(ints * (i + 1), dt).at[1, 2].set(max(lo, -(2**52)))
    for i, dt in enumerate([jnp.uint8, jnp.uint16, jnp.uint32, jnp.uint64]):
        hi = 2 ** (8 * jnp.dtype(dt).itemsize) - 1
        tree[jnp.dtype(dt).name] = jnp.asarray(np.abs(ints) * (i + 1), dt).at[1, 2].set(min(hi, 2**52))
    for i, dt in enumerate([jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64]):
        tree[jnp.dtype(dt).name] = jnp.asarray(floats * (i + 1), dt).at[1, 2].set(1 / 3)
    for name in ["float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"]:
        tree[name] = jnp.asarray(floats.astype(getattr(ml_dtypes, name)))
    tree["float8_e8m0fnu"] = jnp.asarray(np.array([[0.25, 0.5, 1], [2, 4, 2.0**-20]], np.float32)
                                         .astype(ml_dtypes.float8_e8m0fnu))  # powers of two only
    tree["keys"] = {
        "key": jax.random.key(0),
        "split": jax.random.split(jax.random.key(1), 3),
        "rbg": jax.random.key(2, impl="rbg"),
        "prngkey": jax.random.PRNGKey(7),
    }
    tree["scalar_f32"] = jnp.asarray(2.5, jnp.float32)
    tree["big_f32"] = jnp.asarray(np.random.default_rng(24).standard_normal((24, 24)).astype(np.float32))
    return tree


UNNAMED_DTYPES = {
    "int4": [[-8, 7, 0], [1, -1, 3]],
    "int2": [[-2, 1, 0], [1, -1, 0]],
    "float4_e2m1fn": [[0.5, -1.0, 1.5], [-2.0, 3.0, 6.0]],
    "float8_e3m4": [[0.5, -1.0, 1.5], [-2.0, 3.0, 15.5]],
    "float8_e4m3b11fnuz": [[0.5, -1.0, 1.5], [-2.0, 3.0, 30.0]],
}


def unnamed_dtype_tree(name: str):
    kernel = np.asarray(UNNAMED_DTYPES[name], np.float32).astype(getattr(ml_dtypes, name))
    return {"params": {"bias": jnp.asarray([0.25, -0.5, 1.0], jnp.float32), "kernel": jnp.asarray(kernel)}}


def value_types_tree():
    return {
        "step": 7,
        "lr": 0.5,
        "flag": True,
        "np_scalar_f32": np.float32(1.25),
        "np": {"f32": np.arange(4, dtype=np.float32).reshape(2, 2) / 4, "i64": np.asarray([-(2**40), 0, 2**40]),
               "u8": np.asarray([0, 7, 255], np.uint8)},
        "name": "resnet",
        "empty_string": "",
        "none": None,
        "empty": {},
        "layers": [{"w": jnp.asarray([1.0, 2.0]), "name": "first"}, {"w": jnp.asarray([3.0, 4.0]), "name": "second"}],
        "pair": (jnp.asarray([5, 6], jnp.int32), 3),
        "big": np.random.default_rng(23).standard_normal((24, 24)).astype(np.float32),
    }


def fill_value_tree():
    half = np.zeros((4, 4), np.float32)
    half[2:] = np.arange(1, 9).reshape(2, 4)  # chunks [2, 2]: the two of the first rows are zero
    return {"params": {"half_zero": jnp.asarray(half), "zeros_f32": jnp.zeros((4,), jnp.float32),
                       "zeros_i32": jnp.zeros((3,), jnp.int32), "ones_bf16": jnp.ones((3,), jnp.bfloat16)}}


def btree_tree():
    return {"layers": {f"{i:03d}": {"w": jnp.asarray([i, -i], jnp.float32), "b": jnp.asarray([i], jnp.int32)}
                       for i in range(100)}}


def mlp8_tree():
    rng = np.random.default_rng(8)

    def values(shape):
        return jnp.asarray(rng.integers(-1024, 1024, shape).astype(np.float32) / 256)

    return {"params": {f"layer_{i}": {"kernel": values((64, 64)), "bias": values((64,))} for i in range(8)}}


MULTIPROCESS_SPECS = {  # dotted key -> mesh axes of each dimension ("x": split over the 2 processes)
    "params.dense.kernel": ("x", None),
    "params.dense.bias": (None,),
    "params.embed": ("x", None),
    "count": (),
}


def multiprocess_tree():
    """numpy values; the kernel is random f32 so that each process's chunk (8 x 40, 1280 B) stays above
    Orbax's 1024-byte inline limit after zstd and is stored out of line in that process's data file."""
    rng = np.random.default_rng(2)
    return {
        "params": {"dense": {"kernel": rng.standard_normal((16, 40)).astype(np.float32),
                             "bias": msgpack_cases.distinct_values((40,), np.float32, 3)},
                   "embed": msgpack_cases.distinct_values((6, 4), ml_dtypes.bfloat16, 5)},
        "count": np.asarray(12, np.int32),
    }


# --------------------------------------------------------------------------------------------------
# saving
# --------------------------------------------------------------------------------------------------


def save_standard(path: Path, tree, save_args=None, **handler_kw) -> Written:
    ck = ocp.StandardCheckpointer(**handler_kw)
    ck.save(path, tree, save_args=save_args)
    ck.wait_until_finished()
    return Written(tree)


def save_pytree(path: Path, tree, save_args=None, **handler_kw) -> Written:
    ocp.PyTreeCheckpointer(**handler_kw).save(path, tree, save_args=save_args)
    return Written(tree)


def chunk_args(tree, nbytes: int):
    return jax.tree.map(lambda _: ocp.SaveArgs(chunk_byte_size=nbytes), tree)


@contextlib.contextmanager
def ocdbt_config(**override):
    """Orbax's OCDBT config (tensorstore_utils._add_ocdbt_write_options forces max_inline_value_bytes 1024,
    max_decoded_node_bytes 1e8 and manifest_kind "single") with some values replaced."""
    original = ts_utils._add_ocdbt_write_options

    def patched(spec, target_data_file_size=None):
        original(spec, target_data_file_size)
        spec["config"].update(override)

    ts_utils._add_ocdbt_write_options = patched
    try:
        yield
    finally:
        ts_utils._add_ocdbt_write_options = original


@contextlib.contextmanager
def fill_value_chunks_skipped():
    original = ts_utils.STORE_ARRAY_DATA_EQUAL_TO_FILL_VALUE
    ts_utils.STORE_ARRAY_DATA_EQUAL_TO_FILL_VALUE = False
    try:
        yield
    finally:
        ts_utils.STORE_ARRAY_DATA_EQUAL_TO_FILL_VALUE = original


MANAGER_STEPS = (1, 2, 3)
CRASHED_STEP = 4


def manager_tree(step: int):
    return shifted(model_tree("flax_cnn"), float(MANAGER_STEPS[-1] - step))


def write_manager(root: Path) -> Written:
    mngr = ocp.CheckpointManager(root)
    for step in MANAGER_STEPS:
        mngr.save(step, args=ocp.args.StandardSave(manager_tree(step)))
    mngr.wait_until_finished()
    mngr.close()
    run_worker("crash", str(root))
    steps = {s: manager_tree(s) for s in MANAGER_STEPS}
    return Written(steps[MANAGER_STEPS[-1]], kind="manager", item=f"{MANAGER_STEPS[-1]}/default", steps=steps)


def crash_worker(root: str) -> None:
    """Saves step CRASHED_STEP and dies where Orbax would rename the finished step into place."""
    final = Path(root) / str(CRASHED_STEP)
    original = atomicity.AtomicRenameTemporaryPath.finalize

    async def finalize(self):
        if Path(self._final_path) == final:
            os._exit(0)  # a crash: no rename, no commit
        return await original(self)

    atomicity.AtomicRenameTemporaryPath.finalize = finalize
    mngr = ocp.CheckpointManager(root)
    mngr.save(CRASHED_STEP, args=ocp.args.StandardSave(manager_tree(CRASHED_STEP)))
    mngr.wait_until_finished()
    raise SystemExit("the save of the crashed step finished")


COMPOSITE_STEP = 5
COMPOSITE_EXTRA = {"learning_rate": 0.001, "model": "flax_cnn", "epochs": [1, 2]}


def write_composite(root: Path) -> Written:
    tree = model_tree("flax_cnn")
    mngr = ocp.CheckpointManager(root, item_names=("params", "extra"))
    mngr.save(COMPOSITE_STEP, args=ocp.args.Composite(params=ocp.args.StandardSave(tree),
                                                      extra=ocp.args.JsonSave(COMPOSITE_EXTRA)))
    mngr.wait_until_finished()
    mngr.close()
    return Written(tree, kind="composite", item=f"{COMPOSITE_STEP}/params",
                   items={"extra": {"handler": "JsonCheckpointHandler", "json": COMPOSITE_EXTRA}})


def write_v1(path: Path) -> Written:
    tree = model_tree("flax_cnn")
    ocp.v1.save(path, tree)
    return Written(tree, kind="v1", item="state")


# --------------------------------------------------------------------------------------------------
# two processes
# --------------------------------------------------------------------------------------------------


def run_worker(*args: str, processes: int = 1) -> None:
    """Runs this script as `--worker ARGS` in `processes` child processes (`--worker ... PID PORT` when
    there are several) and waits for all of them."""
    extra = []
    if processes > 1:
        with socket.socket() as s:
            s.bind(("localhost", 0))
            extra = [str(s.getsockname()[1])]
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", *args, *([str(pid)] if processes > 1 else []),
                               *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for pid in range(processes)]
    for p in procs:
        out, _ = p.communicate(timeout=600)
        if p.returncode != 0:
            raise RuntimeError(f"worker {args} failed ({p.returncode}):\n{out[-3000:]}")


def multiprocess_worker(out: str, pid: str, port: str) -> None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2, process_id=int(pid))
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("x",))
    flat = {".".join(p): v for p, v in oc.tree_leaves(multiprocess_tree()).items()}
    arrays = {}
    for key, value in flat.items():
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*MULTIPROCESS_SPECS[key]))
        arrays[key] = jax.make_array_from_callback(value.shape, sharding, lambda idx, v=value: v[idx])
    tree = models.unflatten(arrays)
    save_standard(Path(out) / "multiprocess", tree)
    unmerged = Path(out) / "multiprocess_unmerged"
    if jax.process_index() == 0:
        unmerged.mkdir()
    ocp.multihost.sync_global_processes("unmerged directory made")
    # an etils path: the handler mkdirs with mode=None, which pathlib refuses and epath takes
    ocp.StandardCheckpointHandler().save(epath.Path(unmerged), args=ocp.args.StandardSave(tree))
    ocp.multihost.sync_global_processes("unmerged saved")
    jax.distributed.shutdown()


def write_multiprocess(path: Path) -> Written:
    staging = path.parent / ".multiprocess-staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    run_worker("multiprocess", str(staging), processes=2)
    for name in ("multiprocess", "multiprocess_unmerged"):
        shutil.rmtree(path.parent / name, ignore_errors=True)
        (staging / name).rename(path.parent / name)
    staging.rmdir()
    return Written(multiprocess_tree())


WORKERS = {"crash": crash_worker, "multiprocess": multiprocess_worker}


# --------------------------------------------------------------------------------------------------
# the cases
# --------------------------------------------------------------------------------------------------

ALL_MODES = ("standard", "standard_target", "pytree", "pytree_target", "v1")

for _name, _what in [
    ("flax_cnn", "the flax_cnn variables (params + batch_stats, Dense_0 in bfloat16)"),
    ("haiku_bn_state", "haiku_bn_state's {'params': params, 'state': state}"),
    ("haiku_mlp", "haiku_mlp's params (module names like `mlp/~/linear_0` are one dict level)"),
]:
    register(Case(_name, "ocp.StandardCheckpointer().save(path, tree)", _what,
                  lambda p, n=_name: save_standard(p, model_tree(n)), same_as=_name, must_restore=ALL_MODES))

register(Case("nnx_split", "ocp.StandardCheckpointer().save(path, nnx.split(model)[1])",
              "nnx_model's nnx.State from nnx.split: every path ends in `value` (Flax 0.12)",
              lambda p: save_standard(p, nnx_state()), same_as="nnx_model",
              same_key=lambda k: k.removesuffix(".value"), must_restore=ALL_MODES))
register(Case("nnx_pure_dict", "ocp.StandardCheckpointer().save(path, nnx.to_pure_dict(state))",
              "nnx_model's nnx.to_pure_dict(nnx.state(model)): the tree of nnx_model.safetensors",
              lambda p: save_standard(p, model_tree("nnx_model")), same_as="nnx_model", must_restore=ALL_MODES))
register(Case("train_state", "ocp.StandardCheckpointer().save(path, state)",
              "flax TrainState.create(apply_fn, params=flax_cnn params, tx=optax.adam(1e-3)) after one "
              "apply_gradients, params set back to flax_cnn's: step (Python int 1), params, "
              "opt_state.0.{count, mu, nu}; opt_state.1 is optax's EmptyState (skipped)",
              lambda p: save_standard(p, trained_state()), same_as="flax_cnn",
              same_key=lambda k: k if k.startswith("params.") else None, part_of_same=True, must_restore=ALL_MODES))


def _cnn_layout(name, call, description, write, must_restore=ALL_MODES):
    register(Case(name, call, description, write, same_as="flax_cnn", must_restore=must_restore))


_cnn_layout("zarr2_no_ocdbt", "ocp.StandardCheckpointer(use_ocdbt=False).save(path, tree)",
            "the flax_cnn variables, one directory per array (zarr v2, zstd)",
            lambda p: save_standard(p, model_tree("flax_cnn"), use_ocdbt=False))
_cnn_layout("zarr3_ocdbt", "ocp.PyTreeCheckpointer(use_zarr3=True).save(path, tree)",
            "the flax_cnn variables, OCDBT with zarr v3 (sharding_indexed, zstd)",
            lambda p: save_pytree(p, model_tree("flax_cnn"), use_zarr3=True))
_cnn_layout("zarr3_no_ocdbt", "ocp.PyTreeCheckpointer(use_ocdbt=False, use_zarr3=True).save(path, tree)",
            "the flax_cnn variables, one directory per array (zarr v3)",
            lambda p: save_pytree(p, model_tree("flax_cnn"), use_ocdbt=False, use_zarr3=True))
_cnn_layout("v1", "ocp.v1.save(path, tree)", "the flax_cnn variables with the v1 API: the tree under state/, zarr3",
            write_v1)
_cnn_layout("uncompressed_zarr2", "ocp.PyTreeCheckpointer(use_compression=False).save(path, tree)",
            "the flax_cnn variables, OCDBT with raw zarr v2 chunks (compressor null)",
            lambda p: save_pytree(p, model_tree("flax_cnn"), use_compression=False))
_cnn_layout("uncompressed_zarr2_no_ocdbt",
            "ocp.PyTreeCheckpointer(use_ocdbt=False, use_compression=False).save(path, tree)",
            "the flax_cnn variables, one directory per array, raw zarr v2 chunks",
            lambda p: save_pytree(p, model_tree("flax_cnn"), use_ocdbt=False, use_compression=False))
_cnn_layout("uncompressed_zarr3", "ocp.PyTreeCheckpointer(use_zarr3=True, use_compression=False).save(path, tree)",
            "the flax_cnn variables, OCDBT with zarr v3 shards whose chunk codecs are only `bytes`",
            lambda p: save_pytree(p, model_tree("flax_cnn"), use_zarr3=True, use_compression=False))
_cnn_layout("chunked_zarr2", "ocp.StandardCheckpointer().save(path, tree, save_args=SaveArgs(chunk_byte_size=64))",
            "the flax_cnn variables, every array above 64 bytes split into chunks of at most 64 bytes",
            lambda p: save_standard(p, model_tree("flax_cnn"), chunk_args(model_tree("flax_cnn"), 64)))
_cnn_layout("chunked_zarr3",
            "ocp.PyTreeCheckpointer(use_zarr3=True).save(path, tree, save_args=SaveArgs(chunk_byte_size=64))",
            "the flax_cnn variables in zarr v3, every array above 64 bytes split into shards of at most 64 bytes",
            lambda p: save_pytree(p, model_tree("flax_cnn"), chunk_args(model_tree("flax_cnn"), 64), use_zarr3=True))
_cnn_layout("manager", "ocp.CheckpointManager(root).save(step, args=ocp.args.StandardSave(tree))",
            f"a CheckpointManager root: steps {list(MANAGER_STEPS)} (step s holds the flax_cnn variables + "
            f"(3 - s)) and {CRASHED_STEP}.orbax-checkpoint-tmp, a save killed before its commit", write_manager,
            must_restore=ALL_MODES + ("manager",))
_cnn_layout("composite", "ocp.CheckpointManager(root, item_names=('params', 'extra')).save(5, args=ocp.args."
                         "Composite(params=StandardSave(tree), extra=JsonSave(dict)))",
            "a step with two items: params (the flax_cnn variables) and extra (a JSON item)", write_composite,
            must_restore=("standard", "standard_target", "pytree", "pytree_target", "manager"))
_cnn_layout("numbered_manifest", "ocp.StandardCheckpointer().save(path, tree) with manifest_kind 'numbered'",
            "the flax_cnn variables, every OCDBT database with a numbered manifest",
            lambda p: _with(ocdbt_config(manifest_kind="numbered"), save_standard, p, model_tree("flax_cnn")))

register(Case("multiprocess", "ocp.StandardCheckpointer().save(path, tree) in 2 jax.distributed processes",
              "arrays sharded over 2 processes (kernel f32[16,40] and embed bf16[6,4] split on axis 0), a "
              "replicated bias f32[40] (each process writes half: replica slices) and a replicated 0-d count; "
              "_sharding names a 2-device NamedSharding",
              write_multiprocess, must_restore=("standard_target", "pytree_target")))
register(Case("multiprocess_unmerged", "ocp.StandardCheckpointHandler().save(path, args=StandardSave(tree)) "
                                       "in 2 jax.distributed processes, no finalize",
              "the multiprocess tree as two per-process OCDBT databases with no root manifest",
              lambda p: Written(multiprocess_tree()), must_restore=()))
register(Case("btree_interior", "ocp.StandardCheckpointer().save(path, tree) with max_decoded_node_bytes 1024",
              "200 tiny arrays (layers.NNN.w f32[2], layers.NNN.b i32[1]): the root B-tree has interior nodes",
              lambda p: _with(ocdbt_config(max_decoded_node_bytes=1024), save_standard, p, btree_tree()),
              must_restore=ALL_MODES))
register(Case("mlp8", "ocp.StandardCheckpointer().save(path, tree)",
              "an MLP of 8 layers, params.layer_N.{kernel f32[64,64], bias f32[64]}: each kernel is stored "
              "out of line, in a data file with the others",
              lambda p: save_standard(p, mlp8_tree()), must_restore=ALL_MODES))
register(Case("fill_value_absent", "ocp.PyTreeCheckpointer(use_zarr3=True).save(path, tree, save_args=SaveArgs("
                                   "chunk_byte_size=16)) with STORE_ARRAY_DATA_EQUAL_TO_FILL_VALUE = False",
              "zarr3 arrays whose zero chunks are absent (half_zero: 2 of 4 chunks; zeros_*: all)",
              lambda p: _with(fill_value_chunks_skipped(), save_pytree, p, fill_value_tree(),
                              chunk_args(fill_value_tree(), 16), use_zarr3=True),
              must_restore=("standard", "standard_target", "pytree", "pytree_target")))
register(Case("dtypes", "ocp.StandardCheckpointer().save(path, tree) with jax_enable_x64",
              "every dtype safejax names as jax arrays, PRNG keys (new-style, split, rbg, old-style "
              "PRNGKey), a 0-d array and a 2304-byte array stored out of line",
              lambda p: save_standard(p, dtypes_tree()), must_restore=ALL_MODES, x64=True))
for _dt in UNNAMED_DTYPES:
    register(Case(f"dtype_{_dt}", "ocp.StandardCheckpointer().save(path, tree)",
                  f"params.kernel in {_dt}, a dtype safejax has no name for (loading it must fail naming the "
                  "key and the dtype); params.bias f32",
                  lambda p, d=_dt: save_standard(p, unnamed_dtype_tree(d)), must_restore=ALL_MODES))
register(Case("value_types", "ocp.PyTreeCheckpointer().save(path, tree)",
              "Python int / float / bool and a numpy scalar (value_type scalar), numpy arrays, strings "
              "(_strings.json), None and {} (skipped), a list and a tuple (key type 1) and a 2304-byte "
              "numpy array (out of line)",
              lambda p: save_pytree(p, value_types_tree()), must_restore=("standard", "pytree", "pytree_target", "v1")))


def _with(ctx, fn, *args, **kwargs):
    with ctx:
        return fn(*args, **kwargs)


# --------------------------------------------------------------------------------------------------
# sidecars
# --------------------------------------------------------------------------------------------------


def versions() -> dict:
    return {p: metadata.version(p) for p in oc.VERSION_PACKAGES}


def check_stored_dtypes(sc: dict) -> None:
    """Every tensor's sidecar dtype is the dtype its zarr metadata stores."""
    for key, e in sc["tensors"].items():
        meta = sc["on_disk"]["arrays"][key]["metadata"]
        stored = meta.get("dtype") or meta["data_type"]
        assert oc.np_dtype(e["dtype"]) == oc.np_dtype(stored), (sc["name"], key, e["dtype"], stored)


def check_same_as(case: Case, sc: dict) -> None:
    fx = json.loads((SAFETENSORS_FIXTURES / f"{case.same_as}.json").read_text())["tensors"]
    mine = {}
    for k, e in sc["tensors"].items():
        fk = case.same_key(k)
        if fk is not None:
            mine[fk] = {"dtype": e["dtype"], "shape": e["shape"], "values": e["values"]}
    if case.part_of_same:  # train_state holds the fixture's params, not its batch_stats
        fx = {k: v for k, v in fx.items() if k in mine}
    assert mine and mine == fx, f"{case.name}: tensors differ from tests/fixtures/{case.same_as}.json"


def build_sidecar(case: Case, case_dir: Path, written: Written) -> dict:
    item = case_dir / written.item
    sc = {"name": case.name, "description": case.description, "orbax_call": case.call, "versions": versions(),
          "layout": {"kind": written.kind, "item": written.item}}
    sc.update(oc.sidecar_leaves(item, written.tree))
    on_disk = {"files": oc.file_names(case_dir)}
    if (item / "manifest.ocdbt").exists() or not read_use_ocdbt(item):
        on_disk.update(oc.describe_item(item))
    else:  # no root manifest: describe each per-process database
        on_disk["_METADATA"] = oc.metadata_flags(oc.read_tree_metadata(item))
        on_disk["processes"] = {p.name: oc.describe_item(item, p) for p in sorted(item.glob("ocdbt.process_*"))}
    sc["on_disk"] = on_disk
    if written.kind == "manager":
        sc["manager"] = {
            "latest_step": max(written.steps),
            "unfinished": sorted(p.name for p in case_dir.glob("*.orbax-checkpoint-tmp*")),
            "steps": {str(s): {"tensors": oc.sidecar_leaves(case_dir / str(s) / "default", t)["tensors"]}
                      for s, t in sorted(written.steps.items())},
        }
        assert sc["manager"]["unfinished"], "the crashed save left no temporary directory"
    if written.items:
        sc["items"] = written.items
    return sc


def read_use_ocdbt(item: Path) -> bool:
    return bool(oc.read_tree_metadata(item).get("use_ocdbt"))


def build(case: Case, out: Path) -> dict:
    case_dir = out / case.name
    if case.name != "multiprocess_unmerged":  # written together with multiprocess
        shutil.rmtree(case_dir, ignore_errors=True)
    with oc.x64(case.x64):
        written = case.write(case_dir)
    sc = build_sidecar(case, case_dir, written)
    if "arrays" in sc["on_disk"]:
        check_stored_dtypes(sc)
    if case.same_as:
        check_same_as(case, sc)
    with oc.x64(True):  # as scripts/check_rust_orbax.py restores
        sc["restore"] = oc.try_restores(case_dir, sc)
    failed = [m for m in case.must_restore if sc["restore"].get(m) != "ok"]
    assert not failed, f"{case.name}: Orbax did not restore with {failed}: {sc['restore']}"
    if case.name == "multiprocess_unmerged":  # the values are there, in the per-process databases
        check_leaves("the union of the per-process databases", oc.read_unmerged(case_dir, sc), sc, case.name)
    return sc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=oc.FIXTURES, help=f"output directory (default {oc.FIXTURES})")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("names", nargs="*", help=f"cases to write (default all: {', '.join(CASES)})")
    args = ap.parse_args()
    if args.worker:
        WORKERS[args.worker[0]](*args.worker[1:])
        return 0
    names = args.names or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {unknown}; known: {list(CASES)}")
    if "multiprocess_unmerged" in names and "multiprocess" not in names:
        names.insert(names.index("multiprocess_unmerged"), "multiprocess")
    args.out.mkdir(parents=True, exist_ok=True)
    args.out = args.out.resolve()  # Orbax wants absolute paths
    for name in names:
        start = time.perf_counter()
        sc = build(CASES[name], args.out)
        text = dumps_fixture(sc)
        (args.out / f"{name}.json").write_text(text)
        size = sum(p.stat().st_size for p in (args.out / name).rglob("*") if p.is_file())
        ok = [m for m, r in sc["restore"].items() if r == "ok"]
        print(f"wrote {name}/ ({size} B) and {name}.json ({len(text)} B) in {time.perf_counter() - start:.1f} s; "
              f"Orbax restores it with {', '.join(ok) or 'nothing'}")
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{len(names)} cases; {args.out} holds {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
