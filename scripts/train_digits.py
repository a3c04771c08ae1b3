#!/usr/bin/env python3
"""Train a small MLP on scikit-learn's bundled digits data set in flax linen, haiku and objax, and
write what `examples/digits.rs` and `tests/digits.rs` check into tests/fixtures/digits/:

  flax_mlp.safetensors    safejax.flax.serialize({"params": params})    params.Dense_0.kernel, ...
  haiku_mlp.safetensors   safejax.haiku.serialize(params)               mlp/~/linear_0.w, ...
  objax_mlp.safetensors   safejax.objax.serialize(model.vars())         (MLP).layers(Sequential)[0](Linear).w::TrainVar, ...
  test.safetensors        the held-out split and each framework's outputs on it (safetensors.numpy):
                          x F32[n,64] (pixels / 16), y I64[n],
                          <framework>.logits F32[n,10], <framework>.pred I64[n] (argmax of the logits)
  training.json           versions, seed, split and training settings, each framework's accuracy
                          (not safetensors metadata: the safetensors package writes that in hash order)

Each model is 64 -> 32 (relu) -> 10, initialized by its framework's own initializers from SEED and
trained full-batch with Adam (optax for flax and haiku, objax.optimizer.Adam for objax) on the
training split. Nothing is downloaded: load_digits ships inside scikit-learn.

Usage: .venv/bin/python scripts/train_digits.py [--out DIR | --check]
Deterministic: running it twice (on one machine) writes identical bytes; --check trains into a temporary
directory and compares every file with tests/fixtures/digits/ (exit status 1 on a difference).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models  # noqa: E402,F401  (sets JAX_PLATFORMS=cpu and the shims safejax 0.5.0 / objax 1.8.0 need)

import flax.linen as nn  # noqa: E402
import haiku as hk  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import objax  # noqa: E402
import optax  # noqa: E402
import safejax.flax  # noqa: E402
import safejax.haiku  # noqa: E402
import safejax.objax  # noqa: E402
import safetensors.numpy  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "digits"
SEED = 0
TEST_SIZE = 0.2
HIDDEN = 32
CLASSES = 10
STEPS = 300
LEARNING_RATE = 1e-2
VERSION_PACKAGES = ["jax", "jaxlib", "flax", "dm-haiku", "objax", "optax", "safejax", "safetensors", "numpy",
                    "scikit-learn"]


def load_split():
    """The digits (8x8 images, pixels 0..16) scaled to [0, 1] as float32; a stratified, seeded split."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_SIZE, random_state=SEED, stratify=y)
    return x_train, y_train, x_test, y_test


def mean_xent(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def train_optax(init_params, apply, x, y):
    """Full-batch Adam with optax; `apply(params, x) -> logits`."""
    opt = optax.adam(LEARNING_RATE)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(lambda p: mean_xent(apply(p, x), y))(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    params, state = init_params, opt.init(init_params)
    for _ in range(STEPS):
        params, state, loss = step(params, state)
    return params, float(loss)


# ---- flax linen ----

class FlaxMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(HIDDEN)(x))  # params.Dense_0
        return nn.Dense(CLASSES)(x)       # params.Dense_1


def train_flax(x, y):
    model = FlaxMLP()
    params = model.init(jax.random.PRNGKey(SEED), x[:1])["params"]
    params, loss = train_optax(params, lambda p, inp: model.apply({"params": p}, inp), x, y)
    variables = {"params": params}
    return safejax.flax.serialize(variables), lambda inp: model.apply(variables, inp), loss


# ---- haiku ----

_haiku_mlp = hk.without_apply_rng(hk.transform(lambda x: hk.nets.MLP([HIDDEN, CLASSES])(x)))


def train_haiku(x, y):
    params = _haiku_mlp.init(jax.random.PRNGKey(SEED), x[:1])
    params, loss = train_optax(params, _haiku_mlp.apply, x, y)
    return safejax.haiku.serialize(params), lambda inp: _haiku_mlp.apply(params, inp), loss


# ---- objax ----

class MLP(objax.Module):  # objax writes the class name into keys: "(MLP).layers(Sequential)[0](Linear).w"
    def __init__(self):
        self.layers = objax.nn.Sequential([
            objax.nn.Linear(64, HIDDEN), objax.functional.relu, objax.nn.Linear(HIDDEN, CLASSES)])

    def __call__(self, x):
        return self.layers(x)


def train_objax(x, y):
    objax.random.DEFAULT_GENERATOR.seed(SEED)  # objax's initializers draw from its default generator
    model = MLP()
    opt = objax.optimizer.Adam(model.vars())

    def loss_fn(inp, labels):
        return objax.functional.loss.cross_entropy_logits_sparse(model(inp), labels).mean()

    grad_values = objax.GradValues(loss_fn, model.vars())

    def train_op(inp, labels):
        grads, (loss,) = grad_values(inp, labels)
        opt(LEARNING_RATE, grads)
        return loss

    train_op = objax.Jit(train_op, grad_values.vars() + opt.vars())
    for _ in range(STEPS):
        loss = train_op(x, y)
    predict = objax.Jit(lambda inp: model(inp), model.vars())
    return safejax.objax.serialize(params=model.vars()), predict, float(loss)


FRAMEWORKS = {"flax": train_flax, "haiku": train_haiku, "objax": train_objax}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    ap.add_argument("--check", action="store_true",
                    help=f"train into a temporary directory and compare with {DEFAULT_OUT}")
    args = ap.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            write(Path(tmp))
            names = sorted(p.name for p in DEFAULT_OUT.iterdir())
            fresh = sorted(p.name for p in Path(tmp).iterdir())
            _, differ, missing = filecmp.cmpfiles(DEFAULT_OUT, tmp, names, shallow=False)
            differ += missing + [n for n in fresh if n not in names]
            for name in differ:
                print(f"DIFFERENT: {name}")
            same = f"the {len(names)} files are reproduced byte for byte"
            print("check: " + ("files differ" if differ else same))
            return 1 if differ else 0
    write(args.out)
    return 0


def write(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)

    x_train, y_train, x_test, y_test = load_split()
    test = {"x": x_test, "y": y_test}
    meta = {p: metadata.version(p) for p in VERSION_PACKAGES}
    meta.update({
        "data": "sklearn.datasets.load_digits(), pixels / 16 as float32",
        "split": f"train_test_split(test_size={TEST_SIZE}, random_state={SEED}, stratify=y): "
                 f"{len(y_train)} train, {len(y_test)} test",
        "model": f"64 -> {HIDDEN} relu -> {CLASSES}",
        "training": f"full-batch Adam, learning rate {LEARNING_RATE}, {STEPS} steps, seed {SEED}",
    })
    for name, train in FRAMEWORKS.items():
        checkpoint, predict, loss = train(jnp.asarray(x_train), jnp.asarray(y_train))
        logits = np.asarray(jax.device_get(predict(jnp.asarray(x_test))), dtype=np.float32)
        pred = logits.argmax(axis=1).astype(np.int64)
        accuracy = float((pred == y_test).mean())
        test[f"{name}.logits"] = logits
        test[f"{name}.pred"] = pred
        meta[f"{name}.accuracy"] = f"{accuracy:.6f}"
        meta[f"{name}.final_train_loss"] = f"{loss:.6f}"
        path = out / f"{name}_mlp.safetensors"
        path.write_bytes(checkpoint)
        top2 = np.sort(logits, axis=1)[:, -2:]
        print(f"{name}: train loss {loss:.4f}, test accuracy {accuracy:.4f} "
              f"({int((pred == y_test).sum())}/{len(y_test)}), smallest top-2 logit margin "
              f"{float((top2[:, 1] - top2[:, 0]).min()):.2e}; wrote {path.name} ({len(checkpoint)} B)")

    path = out / "test.safetensors"
    safetensors.numpy.save_file(test, str(path))
    print(f"wrote {path.name} ({path.stat().st_size} B)")
    path = out / "training.json"
    path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    print(f"wrote {path.name}")
    total = sum(p.stat().st_size for p in out.iterdir())
    print(f"{total} bytes in {out}")


if __name__ == "__main__":
    sys.exit(main())
