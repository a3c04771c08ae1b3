"""Reference models for the safejax fixtures, built with the real frameworks.

Shared by scripts/gen_fixtures.py (writes tests/fixtures/<name>.{safetensors,json}) and
scripts/check_rust_files.py (checks files written by the Rust crate).

Every model is a `Model` with:
  - `init()`         -> the params tree exactly as the framework holds it (deterministic: fixed seeds);
  - `input()`        -> a fixed, non-constant float32 input (numpy);
  - `apply(tree, x)` -> the model's output as a float32 numpy array (inference mode);
  - `save(tree)`     -> the bytes Python safejax 0.5.0 writes for the tree;
  - `load(path)`     -> the tree Python safejax (or, for NNX, safetensors + nnx) reads back from a file;
  - `to_flat(tree)`  -> {safetensors key: array}, the flat dict that `save` writes;
  - `from_flat(d)`   -> the framework tree for a flat dict (inverse of `to_flat`).

Notes on `init()`: after the framework's own init, each model is run for ONE training-mode step on its
input (so BatchNorm running statistics / EMA state / objax RNG state are non-trivial), and its trainable
params are offset by a small deterministic amount (numpy PCG64 seeded by crc32 of the key), so that
no two tensors of the same shape are equal (biases all start at zero otherwise).
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict

import jax
import jax.numpy as jnp
import numpy as np

# safejax 0.5.0 refers to jnp.DeviceArray, which current JAX removed; jax.Array is its successor.
jnp.DeviceArray = jax.Array
# objax 1.8.0's Var.assign() (used by safejax.objax.deserialize_with_assignment) checks
# `isinstance(array.sharding, jax.sharding.PmapSharding)`; current JAX removed PmapSharding (and pmap's
# sharded arrays with it), so no array is one: a class that nothing is an instance of keeps its meaning.
if not hasattr(jax.sharding, "PmapSharding"):
    jax.sharding.PmapSharding = type("PmapSharding", (), {})

import flax.linen as nn  # noqa: E402
import haiku as hk  # noqa: E402
import objax  # noqa: E402
import safetensors.flax  # noqa: E402
import safejax  # noqa: E402,F401
import safejax.flax  # noqa: E402
import safejax.haiku  # noqa: E402
import safejax.objax  # noqa: E402
import safejax.utils  # noqa: E402
from flax import nnx  # noqa: E402
from flax.core.frozen_dict import FrozenDict  # noqa: E402

SEED = 0
Flat = Dict[str, Any]


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def det_input(shape) -> np.ndarray:
    """A fixed non-constant float32 input; every value is a multiple of 1/8 in [-0.625, 0.625]."""
    n = int(np.prod(shape))
    j = np.arange(n, dtype=np.int64)
    return (((j * 7 + 3) % 11 - 5) / 8.0).astype(np.float32).reshape(shape)


def perturb_flat(flat: Flat, pred: Callable[[str], bool], scale: float = 0.1) -> Flat:
    """Add `scale * N(0,1)` noise (numpy PCG64 seeded by crc32(key)) to the floating leaves with pred(key)."""
    out = {}
    for k, v in flat.items():
        if pred(k) and jnp.issubdtype(v.dtype, jnp.floating):
            rng = np.random.default_rng(zlib.crc32(k.encode()))
            noise = (scale * rng.standard_normal(v.shape)).astype(np.float32)
            v = (jnp.asarray(v, jnp.float32) + noise).astype(v.dtype)
        out[k] = v
    return out


def flatten(tree) -> Flat:
    """safejax's own flattening ('.' at every dict level)."""
    return safejax.utils.flatten_dict(tree)


def unflatten(flat: Flat) -> dict:
    return safejax.utils.unflatten_dict(dict(flat))


def to_np(x) -> np.ndarray:
    return np.asarray(jax.device_get(x), dtype=np.float32)


@dataclass
class Model:
    name: str
    framework: str
    init: Callable[[], Any]
    input: Callable[[], np.ndarray]
    apply: Callable[[Any, np.ndarray], np.ndarray]
    save: Callable[[Any], bytes]
    load: Callable[[Path], Any]
    to_flat: Callable[[Any], Flat]
    from_flat: Callable[[Flat], Any]
    description: str = ""


MODELS: Dict[str, Model] = {}


def register(m: Model) -> Model:
    MODELS[m.name] = m
    return m


# flax linen / haiku trees: the serializer/deserializer pairs of safejax
def _flax_save(tree) -> bytes:
    return safejax.flax.serialize(tree)


def _flax_load(path) -> FrozenDict:
    return safejax.flax.deserialize(Path(path))


def register_flax_linen(name, init, make_input, apply, description) -> Model:
    """Registers a flax linen model saved and loaded with safejax.flax, its tree flattened with `.`."""
    return register(Model(
        name=name, framework="flax", init=init, input=make_input, apply=apply,
        save=_flax_save, load=_flax_load, to_flat=flatten, from_flat=unflatten,
        description=description,
    ))


def _haiku_save(tree) -> bytes:
    return safejax.haiku.serialize(tree)


def _haiku_load(path) -> dict:
    return safejax.haiku.deserialize(Path(path))


# --------------------------------------------------------------------------------------------------
# flax linen: @nn.compact CNN, whole variables (params + batch_stats), Dense_0 in bfloat16
# --------------------------------------------------------------------------------------------------


class CNN(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(4, (3, 3))(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = x.reshape((x.shape[0], -1))
        # nn.Dense(2) is constructed first, so it is Dense_0 (kernel [3, 2]); it holds bf16 params.
        return nn.Dense(2, param_dtype=jnp.bfloat16)(nn.Dense(3)(x))


def _flax_cnn_input():
    return det_input((2, 4, 4, 1))


def _flax_cnn_init():
    x = jnp.asarray(_flax_cnn_input())
    variables = CNN().init(jax.random.PRNGKey(SEED), x)
    _, upd = CNN().apply(variables, x, train=True, mutable=["batch_stats"])
    variables = {"params": variables["params"], "batch_stats": upd["batch_stats"]}
    flat = perturb_flat(flatten(variables), lambda k: k.startswith("params."))
    return unflatten(flat)


def _flax_cnn_apply(variables, x):
    return to_np(CNN().apply(variables, jnp.asarray(x), train=False))


register_flax_linen(
    "flax_cnn", _flax_cnn_init, _flax_cnn_input, _flax_cnn_apply,
    "flax.linen @nn.compact Conv/BatchNorm/Dense(3)/Dense(2) (Dense_0 bf16); "
    "safejax.flax.serialize(variables) with params + batch_stats",
)


# --------------------------------------------------------------------------------------------------
# flax linen: setup() with a list of submodules, params only
# --------------------------------------------------------------------------------------------------


class SetupMLP(nn.Module):
    def setup(self):
        self.layers = [nn.Dense(3), nn.Dense(2)]
        self.head = nn.Dense(1)

    def __call__(self, x):
        for layer in self.layers:
            x = nn.relu(layer(x))
        return self.head(x)


def _flax_setup_mlp_input():
    return det_input((2, 4))


def _flax_setup_mlp_init():
    variables = SetupMLP().init(jax.random.PRNGKey(SEED), jnp.asarray(_flax_setup_mlp_input()))
    return unflatten(perturb_flat(flatten(variables["params"]), lambda k: True))


def _flax_setup_mlp_apply(params, x):
    return to_np(SetupMLP().apply({"params": params}, jnp.asarray(x)))


register_flax_linen(
    "flax_setup_mlp", _flax_setup_mlp_init, _flax_setup_mlp_input, _flax_setup_mlp_apply,
    "flax.linen setup() with self.layers = [Dense(3), Dense(2)] and head Dense(1); "
    "safejax.flax.serialize(variables['params'])",
)


# --------------------------------------------------------------------------------------------------
# flax NNX: nnx.List of two Linear + BatchNorm; tree = nnx.to_pure_dict(nnx.state(model))
# --------------------------------------------------------------------------------------------------


class NNXModel(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.layers = nnx.List([nnx.Linear(4, 3, rngs=rngs), nnx.Linear(3, 2, rngs=rngs)])
        self.bn = nnx.BatchNorm(2, rngs=rngs)

    def __call__(self, x, train: bool = False):
        x = nnx.relu(self.layers[0](x))
        x = self.layers[1](x)
        return self.bn(x, use_running_average=not train)


def _int_keys(tree):
    """Path parts that are decimal strings ('0', '1': list indices after unflattening) -> int, as nnx uses."""
    if isinstance(tree, dict):
        return {(int(k) if isinstance(k, str) and k.isdigit() else k): _int_keys(v) for k, v in tree.items()}
    return tree


def _nnx_model_with(pure) -> NNXModel:
    model = NNXModel(nnx.Rngs(SEED))
    state = nnx.state(model)
    nnx.replace_by_pure_dict(state, _int_keys(pure))
    nnx.update(model, state)
    return model


def _nnx_input():
    return det_input((3, 4))


def _nnx_init():
    model = NNXModel(nnx.Rngs(SEED))
    model(jnp.asarray(_nnx_input()), train=True)  # updates bn.mean / bn.var (BatchStat)
    param_keys = set(flatten(nnx.to_pure_dict(nnx.state(model, nnx.Param))))
    flat = perturb_flat(flatten(nnx.to_pure_dict(nnx.state(model))), lambda k: k in param_keys)
    return _nnx_from_flat(flat)


def _nnx_save(pure) -> bytes:
    # What a user of safejax does for NNX (safejax predates it): flatten the pure dict with '.'.
    return safetensors.flax.save(safejax.utils.flatten_dict(pure))


def _nnx_from_flat(flat: Flat) -> dict:
    return _int_keys(unflatten(flat))


def _nnx_load(path) -> dict:
    model = _nnx_model_with(_nnx_from_flat(safetensors.flax.load_file(str(path))))
    return nnx.to_pure_dict(nnx.state(model))


def _nnx_apply(pure, x):
    return to_np(_nnx_model_with(pure)(jnp.asarray(x), train=False))


register(Model(
    name="nnx_model", framework="nnx",
    init=_nnx_init, input=_nnx_input, apply=_nnx_apply,
    save=_nnx_save, load=_nnx_load, to_flat=flatten, from_flat=_nnx_from_flat,
    description="flax.nnx: layers = nnx.List([Linear(4,3), Linear(3,2)]), bn = BatchNorm(2); "
                "safetensors.flax.save(safejax.utils.flatten_dict(nnx.to_pure_dict(nnx.state(model))))",
))


# --------------------------------------------------------------------------------------------------
# haiku: hk.nets.MLP([3, 2])
# --------------------------------------------------------------------------------------------------

def register_haiku_transformed(name, transformed, input_shape, description):
    """Registers a stateless `hk.transform`ed model: params from `init` at SEED, perturbed so that
    no leaf keeps its initial value, applied with no rng."""

    def make_input():
        return det_input(input_shape)

    def init():
        params = transformed.init(jax.random.PRNGKey(SEED), jnp.asarray(make_input()))
        return unflatten(perturb_flat(flatten(params), lambda k: True))

    def apply(params, x):
        return to_np(transformed.apply(params, None, jnp.asarray(x)))

    register(Model(
        name=name, framework="haiku", init=init, input=make_input, apply=apply,
        save=_haiku_save, load=_haiku_load, to_flat=flatten, from_flat=unflatten,
        description=description,
    ))


register_haiku_transformed(
    "haiku_mlp", hk.transform(lambda x: hk.nets.MLP([3, 2])(x)), (2, 4),
    "haiku hk.nets.MLP([3, 2]); safejax.haiku.serialize(params)",
)


# --------------------------------------------------------------------------------------------------
# haiku: transform_with_state Conv2D / BatchNorm / Linear; {"params": params, "state": state}
# --------------------------------------------------------------------------------------------------


def _bn_state_fn(x, is_training):
    x = hk.Conv2D(4, 3)(x)
    x = hk.BatchNorm(True, True, 0.9)(x, is_training)
    return hk.Linear(2)(x.reshape(x.shape[0], -1))


_haiku_bn_state = hk.transform_with_state(_bn_state_fn)


def _haiku_bn_state_input():
    return det_input((2, 4, 4, 1))


def _haiku_with_state_init(transformed, x):
    x = jnp.asarray(x)
    params, state = transformed.init(jax.random.PRNGKey(SEED), x, True)
    _, state = transformed.apply(params, state, None, x, True)  # one EMA update
    flat = perturb_flat(flatten({"params": params, "state": state}), lambda k: k.startswith("params."))
    return unflatten(flat)


def _haiku_with_state_apply(transformed, tree, x):
    out, _ = transformed.apply(tree["params"], tree["state"], None, jnp.asarray(x), False)
    return to_np(out)


register(Model(
    name="haiku_bn_state", framework="haiku",
    init=lambda: _haiku_with_state_init(_haiku_bn_state, _haiku_bn_state_input()),
    input=_haiku_bn_state_input,
    apply=lambda tree, x: _haiku_with_state_apply(_haiku_bn_state, tree, x),
    save=_haiku_save, load=_haiku_load, to_flat=flatten, from_flat=unflatten,
    description="haiku transform_with_state Conv2D(4,3)/BatchNorm(True,True,0.9)/Linear(2); "
                "safejax.haiku.serialize({'params': params, 'state': state})",
))


# --------------------------------------------------------------------------------------------------
# haiku: submodules made inside __call__ (single '/')
# --------------------------------------------------------------------------------------------------


class Nested(hk.Module):
    def __call__(self, x):
        return hk.Linear(2, name="inner")(hk.Linear(3)(x))


register_haiku_transformed(
    "haiku_nested", hk.transform(lambda x: Nested()(x)), (2, 4),
    "haiku Nested module: Linear(2, name='inner')(Linear(3)(x)) made in __call__; "
    "safejax.haiku.serialize(params)",
)


# --------------------------------------------------------------------------------------------------
# haiku: a small hk.nets.ResNet with state
# --------------------------------------------------------------------------------------------------

RESNET_CONFIG = dict(
    blocks_per_group=(2, 1, 1, 1),
    num_classes=3,
    bottleneck=False,
    channels_per_group=(4, 8, 8, 8),
    use_projection=(True, True, True, True),
    initial_conv_config={"output_channels": 4, "kernel_shape": 3, "stride": 1},
)


def _resnet_fn(x, is_training):
    return hk.nets.ResNet(**RESNET_CONFIG)(x, is_training)


_haiku_resnet = hk.transform_with_state(_resnet_fn)


def _haiku_resnet_input():
    return det_input((4, 16, 16, 3))


register(Model(
    name="haiku_resnet", framework="haiku",
    init=lambda: _haiku_with_state_init(_haiku_resnet, _haiku_resnet_input()),
    input=_haiku_resnet_input,
    apply=lambda tree, x: _haiku_with_state_apply(_haiku_resnet, tree, x),
    save=_haiku_save, load=_haiku_load, to_flat=flatten, from_flat=unflatten,
    description=f"haiku hk.nets.ResNet({RESNET_CONFIG}) with transform_with_state; "
                "safejax.haiku.serialize({'params': params, 'state': state})",
))


# --------------------------------------------------------------------------------------------------
# objax: MLP with BatchNorm1D, Sequential (relu gap at index 1), Dropout, ModuleList
# tree = the module's VarCollection (model.vars())
# --------------------------------------------------------------------------------------------------


class MLP(objax.Module):
    def __init__(self):
        self.l1 = objax.nn.Linear(4, 3)
        self.bn = objax.nn.BatchNorm1D(3)
        self.seq = objax.nn.Sequential([objax.nn.Linear(3, 2), objax.functional.relu, objax.nn.Linear(2, 2)])
        # Its own generator (not objax's global DEFAULT_GENERATOR, the default), so that building another
        # MLP does not advance the RNG state held in a VarCollection we already have.
        self.drop = objax.nn.Dropout(0.5, generator=objax.random.Generator(SEED))
        self.ml = objax.ModuleList([objax.nn.Linear(2, 2)])

    def __call__(self, x, training: bool = False):
        x = self.l1(x)
        # objax's BatchNorm1D normalizes (batch, channels, length) inputs over axes (0, 2).
        x = self.bn(x[:, :, None], training=training)[:, :, 0]
        x = self.seq(x)
        x = self.drop(x, training=training)
        return self.ml[0](x)


ObjaxMLP = MLP  # objax puts the class name into keys: "(MLP)...."


def _objax_flatten(vc) -> Flat:
    return safejax.utils.flatten_dict(vc, include_objax_variables=True)


def _objax_from_flat(flat: Flat) -> objax.VarCollection:
    model = ObjaxMLP()
    vc = model.vars()
    for k, v in flat.items():
        name, var_type = k.split(safejax.utils.OBJAX_VARIABLE_SEPARATOR)
        if type(vc[name]).__name__ != var_type:
            raise ValueError(f"{k}: model has {type(vc[name]).__name__}")
        vc[name].assign(jnp.asarray(v))
    return vc


def _objax_input():
    return det_input((3, 4))


def _objax_init():
    objax.random.DEFAULT_GENERATOR.seed(SEED)
    model = ObjaxMLP()
    model(jnp.asarray(_objax_input()), training=True)  # updates bn running stats and the dropout key
    flat = perturb_flat(_objax_flatten(model.vars()), lambda k: k.endswith("::TrainVar"))
    return _objax_from_flat(flat)


def _objax_apply(vc, x):
    model = ObjaxMLP()
    mvars = model.vars()
    for k, v in vc.items():
        mvars[k].assign(v.value)
    return to_np(model(jnp.asarray(x), training=False))


def _objax_save(vc) -> bytes:
    return safejax.objax.serialize(params=vc)


def _objax_load(path) -> objax.VarCollection:
    model = ObjaxMLP()
    vc = model.vars()
    safejax.objax.deserialize_with_assignment(filename=Path(path), model_vars=vc)
    return vc


register(Model(
    name="objax_mlp", framework="objax",
    init=_objax_init, input=_objax_input, apply=_objax_apply,
    save=_objax_save, load=_objax_load, to_flat=_objax_flatten, from_flat=_objax_from_flat,
    description="objax MLP(l1 Linear, bn BatchNorm1D, seq Sequential[Linear, relu, Linear], drop Dropout, "
                "ml ModuleList[Linear]); safejax.objax.serialize(model.vars())",
))


# --------------------------------------------------------------------------------------------------
# the formula that Rust-written `<name>.formula.safetensors` files follow
# --------------------------------------------------------------------------------------------------


def formula_leaf(key: str, dtype, shape) -> np.ndarray:
    """floating: ((j*31 + len(K)) % 17 + 1) / 16 cast to dtype (positive, so BatchNorm variances are valid); integer: (j + len(K)) % 5 (j = C-order index)."""
    n = int(np.prod(shape, dtype=np.int64))
    j = np.arange(n, dtype=np.int64)
    dtype = jnp.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.floating):
        vals = ((j * 31 + len(key)) % 17 + 1) / 16.0
        return jnp.asarray(vals.reshape(shape), dtype=dtype)
    if jnp.issubdtype(dtype, jnp.integer) or dtype == jnp.bool_:
        return jnp.asarray(((j + len(key)) % 5).reshape(shape), dtype=dtype)
    raise TypeError(f"{key}: no formula for dtype {dtype}")


def formula_flat(model: Model) -> Flat:
    """The model's init tree (keys, dtypes, shapes) with every leaf replaced by the formula."""
    return {k: formula_leaf(k, v.dtype, v.shape) for k, v in model.to_flat(model.init()).items()}


def formula_tree(model: Model):
    return model.from_flat(formula_flat(model))


# --------------------------------------------------------------------------------------------------
# reading safetensors files independently of the safetensors package (header + raw little-endian data)
# --------------------------------------------------------------------------------------------------

import json  # noqa: E402
import struct  # noqa: E402

import ml_dtypes  # noqa: E402

ST_DTYPES = {
    "BOOL": np.dtype(np.bool_), "U8": np.dtype("<u1"), "I8": np.dtype("<i1"),
    "U16": np.dtype("<u2"), "I16": np.dtype("<i2"), "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16), "U32": np.dtype("<u4"), "I32": np.dtype("<i4"),
    "F32": np.dtype("<f4"), "U64": np.dtype("<u8"), "I64": np.dtype("<i8"), "F64": np.dtype("<f8"),
    # the float8 kinds safejax names (src/dtype.rs); F8_E4M3 is ml_dtypes' float8_e4m3fn, as in safetensors
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2), "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E8M0": np.dtype(ml_dtypes.float8_e8m0fnu), "F8_E4M3FNUZ": np.dtype(ml_dtypes.float8_e4m3fnuz),
    "F8_E5M2FNUZ": np.dtype(ml_dtypes.float8_e5m2fnuz),
}


def st_dtype_name(dtype) -> str:
    dtype = np.dtype(dtype)
    for name, d in ST_DTYPES.items():
        if d == dtype:
            return name
    raise TypeError(f"no safetensors dtype for {dtype}")


def read_safetensors(data: bytes):
    """-> (metadata or None, {key: (dtype name, shape list, numpy array)}) in header order."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    meta = header.pop("__metadata__", None)
    out = {}
    for key, info in header.items():
        start, end = info["data_offsets"]
        dt = ST_DTYPES[info["dtype"]]
        arr = np.frombuffer(body[start:end], dtype=dt).reshape(info["shape"])
        out[key] = (info["dtype"], list(info["shape"]), arr)
    return meta, out
