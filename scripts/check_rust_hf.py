#!/usr/bin/env python3
"""Check Hugging Face-style checkpoint directories written by the Rust crate with transformers' Flax models.

Usage: .venv/bin/python scripts/check_rust_hf.py DIR [--fixtures tests/fixtures] [-v]

Convention: DIR holds one subdirectory per model, named after a model of scripts/hf_models.py (bert, gpt2,
llama, t5, vit, resnet), and in it one subdirectory per layout, named after a layout of the fixture
tests/fixtures/hf_<model>/:
  DIR/<model>/safetensors/          model.safetensors; its __metadata__ must have format 'flax';
  DIR/<model>/safetensors_sharded/  model.safetensors.index.json + model-0000i-of-0000N.safetensors (each
                                    with format 'flax');
  DIR/<model>/msgpack/              flax_model.msgpack;
  DIR/<model>/msgpack_sharded/      flax_model.msgpack.index.json + flax_model-0000i-of-0000N.msgpack;
and, for the PyTorch layout of issue 15 (no fixture has it: it is what a Flax -> PyTorch converter writes),
  DIR/<model>/pytorch/              model.safetensors with format 'pt';
  DIR/<model>/pytorch_sharded/      model.safetensors.index.json + model-0000i-of-0000N.safetensors (format
                                    'pt'), the names, shapes and axis order of tests/fixtures/hf_<model>/
                                    pytorch.json (what transformers' Flax -> PyTorch rules give), BatchNorm's
                                    num_batches_tracked (I64 scalars) allowed beside them;
each with the fixture's config.json beside the weights, as from_pretrained needs. Other names are skipped
(and said so). For every <model>/<layout>/:
  - the files, read directly (safetensors header / flax.serialization.msgpack_restore), hold exactly the
    keys, dtypes, shapes and values of tests/fixtures/hf_<model>/expected.json (for the PyTorch layouts:
    those values with pytorch.json's names and permutations) (a missing, extra or transposed tensor fails,
    naming the key);
  - `<FlaxClass>.from_pretrained(subdir)` (FlaxBertModel, FlaxGPT2LMHeadModel, FlaxLlamaForCausalLM,
    FlaxT5ForConditionalGeneration, FlaxViTModel, FlaxResNetForImageClassification) reads the intended file
    (a spy on its loaders: a model.safetensors is not silently passed over for a flax_model.msgpack, nor for
    random init; a PyTorch layout goes through transformers' own PyTorch -> Flax rules, which need no torch
    for safetensors), its params equal expected.json exactly, and its outputs on the fixed inputs equal
    expected.json within 1e-5.
A safetensors file without format 'flax' fails with what transformers does with it: without a format,
from_pretrained refuses it ("The safetensors archive passed at ... does not contain the valid metadata. Make
sure you save your model with the `save_pretrained` method.", recorded in expected.json
hf.from_pretrained_safetensors_metadata); with format 'pt' it takes the tensors for PyTorch ones.
transformers 4.57.6 cannot load sharded safetensors into Flax (from_pretrained raises NotImplementedError,
"coming soon"); for safetensors_sharded/ the checker therefore validates the index as transformers reads
it (transformers.utils.hub.get_checkpoint_shard_files, which needs "metadata" and "weight_map"), loads
each shard with the class's load_flax_weights (transformers' own reader of a .safetensors file), merges
them into one model.safetensors in a temporary directory and runs from_pretrained on that.
Formatting differences that transformers does not read (index text vs json.dumps(indent=2, sort_keys=True),
byte-identity with the fixture, how the shards are split) are reported in the line, not required.
Prints one line per checked directory, then `N passed, M failed`; exits non-zero on any failure, or when
DIR holds no directory to check. scripts/test_check_rust_hf.py proves it on fixture copies and broken copies.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hf_models  # noqa: E402  (sets HF_HUB_OFFLINE=1 before transformers is imported)
import models  # noqa: E402
import msgpack_cases  # noqa: E402
from checks import (  # noqa: E402
    CheckError, check_leaves, ensure, ensure_close, ensure_same_keys, parse_args, run_checks,
)

import flax.serialization  # noqa: E402
import safetensors.flax  # noqa: E402
from transformers import modeling_flax_utils  # noqa: E402
from transformers.utils.hub import get_checkpoint_shard_files  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FIXTURES = ROOT / "tests" / "fixtures"
SHARD_RE = {
    "safetensors": re.compile(r"^model-(\d{5})-of-(\d{5})\.safetensors$"),
    "msgpack": re.compile(r"^flax_model-(\d{5})-of-(\d{5})\.msgpack$"),
}


def fixture_dir(fixtures: Path, m: hf_models.HfModel) -> Path:
    return fixtures / f"hf_{m.name}"


@contextlib.contextmanager
def spy_loaders(cls):
    """Record the files cls.from_pretrained hands to its weight readers: its two Flax ones and, for a
    safetensors file with format 'pt', transformers' PyTorch -> Flax loader."""
    calls = []
    saved = {name: cls.__dict__.get(name) for name in ("load_flax_weights", "load_flax_sharded_weights")}
    single = cls.load_flax_weights.__func__
    sharded = cls.load_flax_sharded_weights.__func__
    from_pytorch = modeling_flax_utils.load_pytorch_checkpoint_in_flax_state_dict

    def load_single(c, resolved_archive_file):
        calls.append(Path(resolved_archive_file).name)
        return single(c, resolved_archive_file)

    def load_sharded(c, shard_files):
        calls.extend(Path(f).name for f in shard_files)
        return sharded(c, shard_files)

    def load_from_pytorch(model, path, is_sharded, *rest):
        calls.extend(["PyTorch -> Flax"] + [Path(f).name for f in (path if is_sharded else [path])])
        return from_pytorch(model, path, is_sharded, *rest)

    cls.load_flax_weights = classmethod(load_single)
    cls.load_flax_sharded_weights = classmethod(load_sharded)
    modeling_flax_utils.load_pytorch_checkpoint_in_flax_state_dict = load_from_pytorch
    try:
        yield calls
    finally:
        modeling_flax_utils.load_pytorch_checkpoint_in_flax_state_dict = from_pytorch
        for name, orig in saved.items():
            if orig is None:
                delattr(cls, name)
            else:
                setattr(cls, name, orig)


def from_pretrained(m: hf_models.HfModel, directory: Path, want_files: list[str]):
    with spy_loaders(m.flax_cls) as calls:
        model = m.flax_cls.from_pretrained(directory)
    ensure(calls == want_files, f"from_pretrained read {calls or 'no weights file'}, not {want_files}")
    return model


def check_model(what: str, m: hf_models.HfModel, model, fx: dict) -> None:
    check_leaves(f"{what} params", hf_models.flat_keys(model.params), fx, "expected.json")
    got = m.run(model)
    for k, e in fx["outputs"].items():
        ensure_close(f"{what}: {k}", got[k], e, fx["tolerance"], "expected.json")


def check_inputs_match(m: hf_models.HfModel, fx: dict) -> None:
    for k, v in m.inputs().items():
        ensure(fx["inputs"][k]["values"] == v.reshape(-1).tolist(),
               f"expected.json {k} differs from hf_models.MODELS[{m.name!r}].inputs()")


def fx_params(fx: dict) -> dict:
    """expected.json's tensors as arrays."""
    return {k: np.asarray(e["values"], models.ST_DTYPES[e["dtype"]]).reshape(e["shape"])
            for k, e in fx["tensors"].items()}


def fx_outputs(fx: dict) -> dict:
    return {k: np.asarray(e["values"], np.float32).reshape(e["shape"]) for k, e in fx["outputs"].items()}


def what_transformers_does(m: hf_models.HfModel, path: Path, config: Path, fx: dict) -> str:
    """from_pretrained on a directory holding `path` as model.safetensors (and `config`): its error, or
    whether it gives expected.json's params and outputs."""
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(config, Path(tmp) / "config.json")
        shutil.copyfile(path, Path(tmp) / hf_models.SAFE_WEIGHTS_NAME)
        return hf_models.load_outcome(m, Path(tmp), fx_params(fx), fx_outputs(fx))


FORMAT_MEANS = {"flax": "Flax-layout tensors", "pt": "PyTorch-layout tensors"}


def read_safetensors_file(m: hf_models.HfModel, path: Path, what: str, notes: list, fx: dict, fmt: str) -> dict:
    """The tensors of `path`, whose __metadata__ must have format `fmt` (else a failure saying what
    transformers does with the file)."""
    meta, tensors = models.read_safetensors(path.read_bytes())
    if meta is None or meta.get("format") != fmt:
        found = "no __metadata__" if meta is None else f"__metadata__ {meta}"
        said = what_transformers_does(m, path, path.parent / "config.json", fx)
        recorded = fx["hf"]["from_pretrained_safetensors_metadata"]["none"]
        same = " (as recorded in expected.json)" if said == recorded else ""
        raise CheckError(f"{what}: {found}: {FORMAT_MEANS[fmt]} need format {fmt!r} (transformers reads "
                         f"{', '.join(f'{k!r} as {v}' for k, v in FORMAT_MEANS.items())} and refuses none); "
                         f"from_pretrained on this file: {said}{same}")
    if meta != {"format": fmt}:
        notes.append(f"{what} __metadata__ {meta} (transformers writes {{'format': {fmt!r}}})")
    return {k: t[2] for k, t in tensors.items()}


def pytorch_expected(fx: dict, facts: dict) -> dict:
    """The PyTorch layout's tensors in expected.json's format, from pytorch.json (each Flax key's PyTorch
    name and axis permutation) and expected.json's values; `optional`: the names transformers' PyTorch
    models also hold that no Flax leaf gives (BatchNorm's num_batches_tracked), allowed as I64 scalars."""
    tensors = {}
    for key, e in facts["keys"].items():
        t = fx["tensors"][key]
        arr = np.asarray(t["values"], np.float64).reshape(t["shape"])
        if e["permutation"] is not None:
            arr = arr.transpose(e["permutation"])
        tensors[e["pytorch"]] = {"dtype": t["dtype"], "shape": list(arr.shape), "values": arr.reshape(-1).tolist()}
    extra = facts["pytorch_source"]["state_dict_names_without_flax_leaf"]
    return {"tensors": tensors, "optional": {k for k, v in extra.items() if v["reason"] == "batchnorm_counter"}}


def expected_tensors(fx: dict, fmt: str) -> dict:
    """What a layout of format `fmt` must hold: expected.json's Flax tensors or their PyTorch layout."""
    return fx if fmt == "flax" else fx["pytorch"]


def without_optional(leaves: dict, want: dict, notes: list) -> dict:
    present = sorted(set(leaves) & want.get("optional", set()))
    for k in present:
        ensure(leaves[k].dtype == np.int64 and leaves[k].shape == (),
               f"`{k}`: {leaves[k].dtype} {list(leaves[k].shape)}, expected an I64 scalar (BatchNorm's counter)")
    if present:
        notes.append(f"{len(present)} num_batches_tracked (I64 scalars) beside them")
    return {k: v for k, v in leaves.items() if k not in present}


def ensure_absent(directory: Path, names: list[str], why: str) -> None:
    present = [n for n in names if (directory / n).exists()]
    ensure(not present, f"{present} present: {why}")


def same_bytes_note(directory: Path, fixture: Path, names: list[str]) -> str:
    if not fixture.is_dir():
        return "no fixture to compare the bytes with"
    same = all((directory / n).is_file() and (fixture / n).is_file()
               and (directory / n).read_bytes() == (fixture / n).read_bytes() for n in names)
    return "bytes identical to the fixture's" if same else "bytes differ from the fixture's"


def check_index(directory: Path, index_name: str, kind: str, want: dict, sep: str) -> tuple[dict, str]:
    """The index as HF writes/reads it, against `want` (expected.json's format); returns (index, note)."""
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
    optional = {k.replace(".", sep) for k in want.get("optional", ())} & set(weight_map)
    want_total = sum(int(np.prod(e["shape"], dtype=np.int64)) * models.ST_DTYPES[e["dtype"]].itemsize
                     for e in want["tensors"].values()) + 8 * len(optional)
    ensure(type(total) is int, f"{index_name}: metadata.total_size is {total!r}, not an integer")
    ensure(total == want_total, f"{index_name}: metadata.total_size {total}, the tensors hold {want_total} bytes")
    ensure(isinstance(weight_map, dict) and all(isinstance(v, str) for v in weight_map.values()),
           f"{index_name}: weight_map is not an object of file names")
    want_keys = {k.replace(".", sep) for k in want["tensors"]} | optional
    ensure_same_keys(f"{index_name}: weight_map keys", weight_map, want_keys)

    files = sorted(set(weight_map.values()))
    counts = set()
    numbers = set()
    for f in files:
        match = SHARD_RE[kind].match(f)
        ensure(match is not None, f"{index_name}: shard file name {f!r} is not {SHARD_RE[kind].pattern}")
        numbers.add(int(match.group(1)))
        counts.add(int(match.group(2)))
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
    notes.append("index text as transformers writes it" if text == hf_models.index_text(index)
                 else "index text differs from json.dumps(index, indent=2, sort_keys=True) + '\\n'")
    return index, ", ".join(notes)


def loaded_through(fmt: str, files: list[str]) -> list[str]:
    """What the loader spy records when from_pretrained reads `files` of format `fmt`."""
    return (["PyTorch -> Flax"] if fmt == "pt" else []) + files


def check_safetensors(m: hf_models.HfModel, d: Path, fx: dict, fixture: Path, fmt: str = "flax") -> str:
    ensure((d / hf_models.SAFE_WEIGHTS_NAME).is_file(), f"no {hf_models.SAFE_WEIGHTS_NAME}")
    ensure_absent(d, [hf_models.FLAX_WEIGHTS_NAME, hf_models.FLAX_WEIGHTS_INDEX_NAME],
                  "from_pretrained would read it instead of model.safetensors")
    notes: list = []
    want = expected_tensors(fx, fmt)
    leaves = read_safetensors_file(m, d / hf_models.SAFE_WEIGHTS_NAME, hf_models.SAFE_WEIGHTS_NAME, notes, fx, fmt)
    leaves = without_optional(leaves, want, notes)
    check_leaves(hf_models.SAFE_WEIGHTS_NAME, leaves, want, SOURCES[fmt])
    model = from_pretrained(m, d, loaded_through(fmt, [hf_models.SAFE_WEIGHTS_NAME]))
    check_model("from_pretrained", m, model, fx)
    notes.append(same_bytes_note(d, fixture, [hf_models.SAFE_WEIGHTS_NAME]))
    return (f"{m.flax_class}.from_pretrained read model.safetensors{THROUGH[fmt]}: {len(leaves)} tensors exact, "
            f"params exact, outputs match; {', '.join(notes)}")


def check_safetensors_sharded(m: hf_models.HfModel, d: Path, fx: dict, fixture: Path, fmt: str = "flax") -> str:
    ensure_absent(d, [hf_models.FLAX_WEIGHTS_NAME, hf_models.FLAX_WEIGHTS_INDEX_NAME, hf_models.SAFE_WEIGHTS_NAME],
                  "from_pretrained would read it instead of the sharded safetensors")
    want = expected_tensors(fx, fmt)
    index, note = check_index(d, hf_models.SAFE_WEIGHTS_INDEX_NAME, "safetensors", want, ".")
    shards = sorted(set(index["weight_map"].values()))
    leaves, notes = {}, []
    for f in shards:
        shard = read_safetensors_file(m, d / f, f, notes, fx, fmt)
        in_index = sorted(k for k, v in index["weight_map"].items() if v == f)
        ensure(sorted(shard) == in_index, f"{f} holds {sorted(shard)}, the index maps {in_index} to it")
        leaves.update(shard)
    leaves = without_optional(leaves, want, notes)
    check_leaves("shards", leaves, want, SOURCES[fmt])

    try:
        model = from_pretrained(m, d, loaded_through(fmt, shards))
        how = "from_pretrained loaded the shards"
    except NotImplementedError:
        # transformers' own steps up to where it gives up, then its single-file path.
        shard_files, _ = get_checkpoint_shard_files(str(d), str(d / hf_models.SAFE_WEIGHTS_INDEX_NAME))
        flat = {}
        for f in shard_files:
            flat.update(hf_models.flat_keys(m.flax_cls.load_flax_weights(f)))
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copyfile(d / "config.json", Path(tmp) / "config.json")
            safetensors.flax.save_file(flat, str(Path(tmp) / hf_models.SAFE_WEIGHTS_NAME), metadata={"format": fmt})
            model = from_pretrained(m, Path(tmp), loaded_through(fmt, [hf_models.SAFE_WEIGHTS_NAME]))
        how = (f"{m.flax_class}.from_pretrained raises NotImplementedError (transformers 4.57.6); shards found by "
               f"get_checkpoint_shard_files, read by load_flax_weights, merged and loaded with "
               f"from_pretrained{THROUGH[fmt]}")
    check_model("loaded", m, model, fx)
    fixture_shards = [f for f in fx["files"].get(d.name, {}) if SHARD_RE["safetensors"].match(f)]
    split = same_bytes_note(d, fixture, shards + [hf_models.SAFE_WEIGHTS_INDEX_NAME]) \
        if fixture_shards == shards or not fixture.is_dir() else "sharded differently from the fixture"
    return f"{how}: {len(leaves)} tensors exact, params exact, outputs match; {', '.join([note] + notes + [split])}"


def check_msgpack(m: hf_models.HfModel, d: Path, fx: dict, fixture: Path) -> str:
    ensure((d / hf_models.FLAX_WEIGHTS_NAME).is_file(), f"no {hf_models.FLAX_WEIGHTS_NAME}")
    restored = flax.serialization.msgpack_restore((d / hf_models.FLAX_WEIGHTS_NAME).read_bytes())
    ensure(isinstance(restored, dict), f"msgpack_restore gives a {type(restored).__name__}, not a map")
    leaves = msgpack_cases.flatten(restored)  # leaves as restored: arrays must stay arrays
    check_leaves(hf_models.FLAX_WEIGHTS_NAME, leaves, fx, "expected.json")
    model = from_pretrained(m, d, [hf_models.FLAX_WEIGHTS_NAME])
    check_model("from_pretrained", m, model, fx)
    return (f"{m.flax_class}.from_pretrained read flax_model.msgpack: {len(leaves)} params exact, outputs match; "
            f"{same_bytes_note(d, fixture, [hf_models.FLAX_WEIGHTS_NAME])}")


def check_msgpack_sharded(m: hf_models.HfModel, d: Path, fx: dict, fixture: Path) -> str:
    ensure_absent(d, [hf_models.FLAX_WEIGHTS_NAME], "from_pretrained would read it instead of the shards")
    index, note = check_index(d, hf_models.FLAX_WEIGHTS_INDEX_NAME, "msgpack", fx, "/")
    shards = sorted(set(index["weight_map"].values()))
    leaves = {}
    for f in shards:
        shard = msgpack_cases.flatten(flax.serialization.msgpack_restore((d / f).read_bytes()))
        want = sorted(k.replace("/", ".") for k, v in index["weight_map"].items() if v == f)
        ensure(sorted(shard) == want, f"{f} holds {sorted(shard)}, the index maps {want} to it")
        leaves.update(shard)
    check_leaves("shards", leaves, fx, "expected.json")
    model = from_pretrained(m, d, shards)
    check_model("from_pretrained", m, model, fx)
    return (f"{m.flax_class}.from_pretrained read the {len(shards)} shards: {len(leaves)} params exact, outputs "
            f"match; {note}; {same_bytes_note(d, fixture, shards + [hf_models.FLAX_WEIGHTS_INDEX_NAME])}")


SOURCES = {"flax": "expected.json", "pt": "pytorch.json + expected.json"}
THROUGH = {"flax": "", "pt": " through transformers' PyTorch -> Flax rules"}
CHECKS = {
    "safetensors": check_safetensors,
    "safetensors_sharded": check_safetensors_sharded,
    "msgpack": check_msgpack,
    "msgpack_sharded": check_msgpack_sharded,
    "pytorch": functools.partial(check_safetensors, fmt="pt"),
    "pytorch_sharded": functools.partial(check_safetensors_sharded, fmt="pt"),
}
assert set(hf_models.VARIANTS) <= set(CHECKS)


def jobs_in(directory: Path, fixtures: Path) -> list:
    """(label, check) for every DIR/<model>/<layout>/, in name order; prints what it skips."""
    jobs = []
    for model_dir in sorted(p for p in directory.iterdir() if p.is_dir()):
        m = hf_models.MODELS.get(model_dir.name)
        if m is None:
            print(f"SKIP {model_dir.name}/: not a model (known: {', '.join(hf_models.MODELS)})")
            continue
        fx = json.loads((fixture_dir(fixtures, m) / "expected.json").read_text())
        check_inputs_match(m, fx)
        fx["pytorch"] = pytorch_expected(fx, json.loads((fixture_dir(fixtures, m) / "pytorch.json").read_text()))
        for sub in sorted(p for p in model_dir.iterdir() if p.is_dir()):
            if sub.name not in CHECKS:
                print(f"SKIP {m.name}/{sub.name}/: not a layout (known: {', '.join(CHECKS)})")
                continue
            jobs.append((f"{m.name}/{sub.name}/", check_job(m, sub, fx, fixture_dir(fixtures, m) / sub.name)))
    return jobs


def check_job(m: hf_models.HfModel, sub: Path, fx: dict, fixture: Path):
    def run() -> str:
        ensure((sub / "config.json").is_file(), "no config.json (from_pretrained needs it beside the weights)")
        return CHECKS[sub.name](m, sub, fx, fixture)
    return run


def main() -> int:
    args = parse_args(__doc__, "directory holding <model>/<layout>/ directories the Rust crate wrote",
                      DEFAULT_FIXTURES, "directory holding the hf_<model>/ fixtures")
    jobs = jobs_in(args.dir, args.fixtures)
    if not jobs:
        print(f"error: no <model>/<layout>/ directory in {args.dir} (models: {', '.join(hf_models.MODELS)}; "
              f"layouts: {', '.join(CHECKS)})", file=sys.stderr)
        return 1
    return run_checks(jobs, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
