#!/usr/bin/env python3
"""Check Hugging Face-style checkpoint directories written by the Rust crate with transformers' FlaxBertModel.

Usage: .venv/bin/python scripts/check_rust_hf.py DIR [--fixtures tests/fixtures/hf_bert]

For each subdirectory of DIR named after a variant of tests/fixtures/hf_bert/ (each needs the fixture's
config.json beside the weights, as from_pretrained does):
  safetensors/          model.safetensors; its __metadata__ must be {"format": "flax"};
  safetensors_sharded/  model.safetensors.index.json + model-0000i-of-0000N.safetensors;
  msgpack/              flax_model.msgpack;
  msgpack_sharded/      flax_model.msgpack.index.json + flax_model-0000i-of-0000N.msgpack;
the files, read directly (safetensors header / flax.serialization.msgpack_restore), hold exactly the keys,
dtypes, shapes and values of expected.json; `FlaxBertModel.from_pretrained(subdir)` reads the intended
file (a spy on its loaders: a model.safetensors is not silently passed over for a flax_model.msgpack, nor
for random init), its params equal expected.json exactly, and its outputs on the fixed input equal
expected.json within 1e-5.
transformers 4.57.6 cannot load sharded safetensors into Flax (from_pretrained raises NotImplementedError,
"coming soon"); for safetensors_sharded/ the checker therefore validates the index as transformers reads
it (transformers.utils.hub.get_checkpoint_shard_files, which needs "metadata" and "weight_map"), loads
each shard with FlaxBertModel.load_flax_weights (transformers' own reader of a .safetensors file), merges
them into one model.safetensors in a temporary directory and runs from_pretrained on that.
Formatting differences that transformers does not read (index text vs json.dumps(indent=2, sort_keys=True),
byte-identity with the fixture, how the shards are split) are reported in the line, not required.
Prints one line per checked subdirectory, then `N passed, M failed`; exits non-zero on any failure, or
when DIR holds no subdirectory to check.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hf_bert  # noqa: E402  (sets HF_HUB_OFFLINE=1 before transformers is imported)
import models  # noqa: E402
import msgpack_cases  # noqa: E402
from check_rust_msgpack import check_leaves  # noqa: E402
from checks import CheckError, ensure, parse_args, run_checks  # noqa: E402

import flax.serialization  # noqa: E402
import safetensors.flax  # noqa: E402
from transformers.utils.hub import get_checkpoint_shard_files  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FIXTURES = ROOT / "tests" / "fixtures" / "hf_bert"
FlaxBertModel = hf_bert.FlaxBertModel
SHARD_RE = {
    "safetensors": re.compile(r"^model-(\d{5})-of-(\d{5})\.safetensors$"),
    "msgpack": re.compile(r"^flax_model-(\d{5})-of-(\d{5})\.msgpack$"),
}


@contextlib.contextmanager
def spy_loaders():
    """Record the files FlaxBertModel.from_pretrained hands to its two weight readers."""
    calls = []
    saved = {name: FlaxBertModel.__dict__.get(name) for name in ("load_flax_weights", "load_flax_sharded_weights")}
    single = FlaxBertModel.load_flax_weights.__func__
    sharded = FlaxBertModel.load_flax_sharded_weights.__func__

    def load_single(cls, resolved_archive_file):
        calls.append(Path(resolved_archive_file).name)
        return single(cls, resolved_archive_file)

    def load_sharded(cls, shard_files):
        calls.extend(Path(f).name for f in shard_files)
        return sharded(cls, shard_files)

    FlaxBertModel.load_flax_weights = classmethod(load_single)
    FlaxBertModel.load_flax_sharded_weights = classmethod(load_sharded)
    try:
        yield calls
    finally:
        for name, orig in saved.items():
            if orig is None:
                delattr(FlaxBertModel, name)
            else:
                setattr(FlaxBertModel, name, orig)


def from_pretrained(directory: Path, want_files: list[str]) -> FlaxBertModel:
    with spy_loaders() as calls:
        model = FlaxBertModel.from_pretrained(directory)
    ensure(calls == want_files, f"from_pretrained read {calls or 'no weights file'}, not {want_files}")
    return model


def check_model(what: str, model: FlaxBertModel, fx: dict) -> None:
    check_leaves(f"{what} params", hf_bert.flat_keys(model.params), fx, "expected.json")
    got = hf_bert.run(model)
    for k, e in fx["outputs"].items():
        want = np.asarray(e["values"], np.float32).reshape(e["shape"])
        ensure(got[k].shape == want.shape, f"{what}: {k} shape {list(got[k].shape)}, expected {e['shape']}")
        try:
            np.testing.assert_allclose(got[k], want, rtol=fx["tolerance"], atol=fx["tolerance"])
        except AssertionError as err:
            raise CheckError(f"{what}: {k} differs from expected.json: {err}") from None


def check_inputs_match(fx: dict) -> None:
    for k, v in hf_bert.inputs().items():
        ensure(fx["inputs"][k]["values"] == v.reshape(-1).tolist(), f"expected.json {k} differs from hf_bert.inputs()")


def read_safetensors_file(path: Path, what: str, notes: list) -> dict:
    meta, tensors = models.read_safetensors(path.read_bytes())
    ensure(meta is not None and meta.get("format") == "flax",
           f"{what}: __metadata__ {meta}: transformers needs format 'flax' (None is rejected, 'pt' goes to the "
           "PyTorch converter)")
    if meta != hf_bert.SAFETENSORS_METADATA:
        notes.append(f"{what} __metadata__ {meta} (save_pretrained writes {hf_bert.SAFETENSORS_METADATA})")
    return {k: t[2] for k, t in tensors.items()}


def ensure_absent(directory: Path, names: list[str], why: str) -> None:
    present = [n for n in names if (directory / n).exists()]
    ensure(not present, f"{present} present: {why}")


def same_bytes_note(directory: Path, fixture_dir: Path, names: list[str]) -> str:
    same = all((directory / n).is_file() and (fixture_dir / n).is_file()
               and (directory / n).read_bytes() == (fixture_dir / n).read_bytes() for n in names)
    return "bytes identical to the fixture's" if same else "bytes differ from the fixture's"


def check_index(directory: Path, index_name: str, kind: str, fx: dict, sep: str) -> tuple[dict, str]:
    """The index as HF writes/reads it; returns (index, note)."""
    path = directory / index_name
    ensure(path.is_file(), f"no {index_name}")
    text = path.read_text()
    try:
        index = json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckError(f"{index_name} is not JSON: {e}") from None
    ensure(isinstance(index, dict) and set(index) >= {"metadata", "weight_map"},
           f"{index_name}: needs the keys 'metadata' and 'weight_map' (transformers reads both), has "
           f"{list(index) if isinstance(index, dict) else type(index).__name__}")
    meta, weight_map = index["metadata"], index["weight_map"]
    ensure(isinstance(meta, dict), f"{index_name}: metadata is not an object")
    total = meta.get("total_size")
    want_total = sum(int(np.prod(e["shape"], dtype=np.int64)) * models.ST_DTYPES[e["dtype"]].itemsize
                     for e in fx["tensors"].values())
    ensure(type(total) is int, f"{index_name}: metadata.total_size is {total!r}, not an integer")
    ensure(total == want_total, f"{index_name}: metadata.total_size {total}, the tensors hold {want_total} bytes")
    ensure(isinstance(weight_map, dict) and all(isinstance(v, str) for v in weight_map.values()),
           f"{index_name}: weight_map is not an object of file names")
    want_keys = {k.replace(".", sep) for k in fx["tensors"]}
    missing, extra = sorted(want_keys - set(weight_map)), sorted(set(weight_map) - want_keys)
    ensure(not missing and not extra, f"{index_name}: weight_map keys differ: missing {missing}, unexpected {extra}")

    files = sorted(set(weight_map.values()))
    counts = set()
    numbers = set()
    for f in files:
        m = SHARD_RE[kind].match(f)
        ensure(m is not None, f"{index_name}: shard file name {f!r} is not {SHARD_RE[kind].pattern}")
        numbers.add(int(m.group(1)))
        counts.add(int(m.group(2)))
        ensure((directory / f).is_file(), f"{index_name}: shard {f} does not exist")
    ensure(len(counts) == 1, f"{index_name}: shard names disagree on the shard count: {sorted(counts)}")
    n = counts.pop()
    if kind == "safetensors":  # huggingface_hub never writes a shard without tensors
        ensure(numbers == set(range(1, n + 1)), f"{index_name}: shards {sorted(numbers)} are referenced, not 1..{n}")
    stray = sorted(p.name for p in directory.iterdir() if SHARD_RE[kind].match(p.name) and p.name not in files)
    ensure(not stray, f"shard files not in the index: {stray}")

    notes = [f"{n} shards"]
    if set(index) != {"metadata", "weight_map"}:
        notes.append(f"extra index keys {sorted(set(index) - {'metadata', 'weight_map'})}")
    if set(meta) != {"total_size"}:
        notes.append(f"extra metadata keys {sorted(set(meta) - {'total_size'})}")
    notes.append("index text as transformers writes it" if text == hf_bert.index_text(index)
                 else "index text differs from json.dumps(index, indent=2, sort_keys=True) + '\\n'")
    return index, ", ".join(notes)


def check_safetensors(d: Path, fx: dict, fixture_dir: Path) -> str:
    ensure((d / hf_bert.SAFE_WEIGHTS_NAME).is_file(), f"no {hf_bert.SAFE_WEIGHTS_NAME}")
    ensure_absent(d, [hf_bert.FLAX_WEIGHTS_NAME, hf_bert.FLAX_WEIGHTS_INDEX_NAME],
                  "from_pretrained would read it instead of model.safetensors")
    notes: list = []
    leaves = read_safetensors_file(d / hf_bert.SAFE_WEIGHTS_NAME, hf_bert.SAFE_WEIGHTS_NAME, notes)
    check_leaves(hf_bert.SAFE_WEIGHTS_NAME, leaves, fx, "expected.json")
    model = from_pretrained(d, [hf_bert.SAFE_WEIGHTS_NAME])
    check_model("from_pretrained", model, fx)
    notes.append(same_bytes_note(d, fixture_dir, [hf_bert.SAFE_WEIGHTS_NAME]))
    return f"from_pretrained read model.safetensors: {len(leaves)} params exact, outputs match; {', '.join(notes)}"


def check_safetensors_sharded(d: Path, fx: dict, fixture_dir: Path) -> str:
    ensure_absent(d, [hf_bert.FLAX_WEIGHTS_NAME, hf_bert.FLAX_WEIGHTS_INDEX_NAME, hf_bert.SAFE_WEIGHTS_NAME],
                  "from_pretrained would read it instead of the sharded safetensors")
    index, note = check_index(d, hf_bert.SAFE_WEIGHTS_INDEX_NAME, "safetensors", fx, ".")
    shards = sorted(set(index["weight_map"].values()))
    leaves, notes = {}, []
    for f in shards:
        shard = read_safetensors_file(d / f, f, notes)
        want = sorted(k for k, v in index["weight_map"].items() if v == f)
        ensure(sorted(shard) == want, f"{f} holds {sorted(shard)}, the index maps {want} to it")
        leaves.update(shard)
    check_leaves("shards", leaves, fx, "expected.json")

    try:
        model = from_pretrained(d, shards)
        how = "from_pretrained loaded the shards"
    except NotImplementedError:
        # transformers' own steps up to where it gives up, then its single-file path.
        shard_files, _ = get_checkpoint_shard_files(str(d), str(d / hf_bert.SAFE_WEIGHTS_INDEX_NAME))
        flat = {}
        for f in shard_files:
            flat.update(hf_bert.flat_keys(FlaxBertModel.load_flax_weights(f)))
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copyfile(d / "config.json", Path(tmp) / "config.json")
            safetensors.flax.save_file(flat, str(Path(tmp) / hf_bert.SAFE_WEIGHTS_NAME),
                                       metadata=hf_bert.SAFETENSORS_METADATA)
            model = from_pretrained(Path(tmp), [hf_bert.SAFE_WEIGHTS_NAME])
        how = ("from_pretrained raises NotImplementedError (transformers 4.57.6); shards found by "
               "get_checkpoint_shard_files, read by load_flax_weights, merged and loaded with from_pretrained")
    check_model("loaded", model, fx)
    same = ([f for f in fx["files"]["safetensors_sharded"] if SHARD_RE["safetensors"].match(f)] == shards)
    split = same_bytes_note(d, fixture_dir, shards + [hf_bert.SAFE_WEIGHTS_INDEX_NAME]) if same \
        else "sharded differently from the fixture"
    return f"{how}: {len(leaves)} params exact, outputs match; {', '.join([note] + notes + [split])}"


def check_msgpack(d: Path, fx: dict, fixture_dir: Path) -> str:
    ensure((d / hf_bert.FLAX_WEIGHTS_NAME).is_file(), f"no {hf_bert.FLAX_WEIGHTS_NAME}")
    restored = flax.serialization.msgpack_restore((d / hf_bert.FLAX_WEIGHTS_NAME).read_bytes())
    ensure(isinstance(restored, dict), f"msgpack_restore gives a {type(restored).__name__}, not a map")
    leaves = msgpack_cases.flatten(restored)  # leaves as restored: arrays must stay arrays
    check_leaves(hf_bert.FLAX_WEIGHTS_NAME, leaves, fx, "expected.json")
    model = from_pretrained(d, [hf_bert.FLAX_WEIGHTS_NAME])
    check_model("from_pretrained", model, fx)
    return (f"from_pretrained read flax_model.msgpack: {len(leaves)} params exact, outputs match; "
            f"{same_bytes_note(d, fixture_dir, [hf_bert.FLAX_WEIGHTS_NAME])}")


def check_msgpack_sharded(d: Path, fx: dict, fixture_dir: Path) -> str:
    ensure_absent(d, [hf_bert.FLAX_WEIGHTS_NAME], "from_pretrained would read it instead of the shards")
    index, note = check_index(d, hf_bert.FLAX_WEIGHTS_INDEX_NAME, "msgpack", fx, "/")
    shards = sorted(set(index["weight_map"].values()))
    leaves = {}
    for f in shards:
        shard = msgpack_cases.flatten(flax.serialization.msgpack_restore((d / f).read_bytes()))
        want = sorted(k.replace("/", ".") for k, v in index["weight_map"].items() if v == f)
        ensure(sorted(shard) == want, f"{f} holds {sorted(shard)}, the index maps {want} to it")
        leaves.update(shard)
    check_leaves("shards", leaves, fx, "expected.json")
    model = from_pretrained(d, shards)
    check_model("from_pretrained", model, fx)
    return (f"from_pretrained read the {len(shards)} shards: {len(leaves)} params exact, outputs match; {note}; "
            f"{same_bytes_note(d, fixture_dir, shards + [hf_bert.FLAX_WEIGHTS_INDEX_NAME])}")


CHECKS = {
    "safetensors": check_safetensors,
    "safetensors_sharded": check_safetensors_sharded,
    "msgpack": check_msgpack,
    "msgpack_sharded": check_msgpack_sharded,
}
assert list(sorted(CHECKS)) == sorted(hf_bert.VARIANTS)


def main() -> int:
    args = parse_args(__doc__, "directory holding the subdirectories the Rust crate wrote", DEFAULT_FIXTURES, "fixture directory with expected.json")
    fx = json.loads((args.fixtures / "expected.json").read_text())
    check_inputs_match(fx)

    jobs = []
    for sub in sorted(p for p in args.dir.iterdir() if p.is_dir()):
        if sub.name not in CHECKS:
            print(f"SKIP {sub.name}/: not a variant (known: {', '.join(CHECKS)})")
            continue
        jobs.append(sub)
    if not jobs:
        print(f"error: no {'/, '.join(CHECKS)}/ subdirectory in {args.dir}", file=sys.stderr)
        return 1

    def check(sub: Path):
        def run() -> str:
            ensure((sub / "config.json").is_file(), "no config.json (from_pretrained needs it beside the weights)")
            return CHECKS[sub.name](sub, fx, args.fixtures / sub.name)
        return run

    return run_checks([(f"{sub.name}/", check(sub)) for sub in jobs], args.verbose)


if __name__ == "__main__":
    sys.exit(main())
