#!/usr/bin/env python3
"""Write tests/fixtures/hf_<name>/ for every tiny randomly initialised Hugging Face Flax model of
scripts/hf_models.py (bert, gpt2, llama, t5, vit, resnet), and tests/fixtures/hf_flax_to_pytorch.json.

For each model, hf_<name>/ holds:
  msgpack/              save_pretrained(dir)                             config.json, flax_model.msgpack
  safetensors/          save_pretrained(dir, safe_serialization=True)    config.json, model.safetensors
  msgpack_sharded/      save_pretrained(dir, max_shard_size=N)           config.json, flax_model.msgpack.index.json,
                                                                         flax_model-0000i-of-0000N.msgpack
  safetensors_sharded/  the huggingface_hub splitter (no Flax writer)    config.json, model.safetensors.index.json,
                                                                         model-0000i-of-0000N.safetensors
  expected.json         the format of tests/fixtures/<name>.json: "tensors" (the params, keys joined with '.',
                        `params.`/`batch_stats.` roots included for ResNet), "inputs" (the keyword arguments of
                        the model call), "outputs" (float32), plus "files" (name, size, sha256 of every file of
                        every layout) and "hf" (what transformers writes and reads, recorded from the run:
                        from_pretrained on each layout, and on model.safetensors without __metadata__ or with
                        format 'pt'). The vision models add "inputs_nhwc" and "input_layout": their Flax
                        __call__ takes pixel_values NCHW (as PyTorch does) and transposes to NHWC itself.
  pytorch.json          the PyTorch side (issue 15), from transformers' Flax -> PyTorch rules without torch
                        (scripts/hf_pytorch.py): per Flax key its PyTorch name, shape, axis permutation and
                        the rule taken; the names the PyTorch state_dict has beyond them; how that was checked.
hf_flax_to_pytorch.json holds the rules of transformers' modeling_flax_pytorch_utils.py with their source
lines, and the cases where they go wrong, each run through transformers' own function.

Every layout is read back (from_pretrained where transformers can) and must give the params exactly and
the outputs. Nothing is downloaded (HF_HUB_OFFLINE=1).

Usage: .venv/bin/python scripts/gen_hf_fixtures.py [--out DIR] [NAME ...]   (DIR default tests/fixtures;
       hf_flax_to_pytorch.json is written when every model is)
Deterministic: running it twice writes identical bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hf_models  # noqa: E402  (sets HF_HUB_OFFLINE=1 before transformers is imported)
import hf_pytorch  # noqa: E402
import models  # noqa: E402
from gen_fixtures import array_entry, dumps_fixture, parse_names  # noqa: E402

import flax.serialization  # noqa: E402
import safetensors.numpy  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "fixtures"
RULES_NAME = "hf_flax_to_pytorch.json"
VERSION_PACKAGES = ["jax", "jaxlib", "flax", "transformers", "huggingface_hub", "safetensors", "msgpack", "numpy",
                    "ml_dtypes"]
# What model.safetensors is rewritten with to see what from_pretrained makes of it.
METADATA_PROBES = {"none": None, "format_pt": {"format": "pt"}}


def versions() -> dict:
    return {p: metadata.version(p) for p in VERSION_PACKAGES}


ONE_LINE_ENTRIES = ("keys", "state_dict_names_without_flax_leaf")


def dumps_readable(doc, indent: int = 0, width: int = 110, entries_on_one_line: bool = False) -> str:
    """JSON where an object or list that fits in `width` columns stays on one line, and so does each entry
    of an object named in ONE_LINE_ENTRIES (one key per line)."""
    one = lambda v: json.dumps(v, separators=(", ", ": "))  # noqa: E731
    if not isinstance(doc, (dict, list)) or not doc or len(one(doc)) + indent <= width:
        return one(doc)
    pad = " " * (indent + 2)
    if isinstance(doc, dict):
        body = [f"{pad}{json.dumps(k)}: "
                + (one(v) if entries_on_one_line else dumps_readable(v, indent + 2, width, k in ONE_LINE_ENTRIES))
                for k, v in doc.items()]
        return "{\n" + ",\n".join(body) + "\n" + " " * indent + "}"
    body = [pad + dumps_readable(v, indent + 2, width) for v in doc]
    return "[\n" + ",\n".join(body) + "\n" + " " * indent + "]"


def file_entries(directory: Path) -> dict:
    return {p.name: {"size": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
            for p in sorted(directory.iterdir())}


def assert_same_params(what: str, got: dict, want: dict) -> None:
    assert list(sorted(got)) == list(sorted(want)), (what, sorted(set(got) ^ set(want)))
    for k, w in want.items():
        g = np.asarray(got[k])
        assert g.dtype == w.dtype and g.shape == w.shape and g.tobytes() == w.tobytes(), (what, k)


def shard_contents(directory: Path, index_name: str) -> dict:
    index = json.loads((directory / index_name).read_text())
    shards: dict = {}
    for key, filename in index["weight_map"].items():
        shards.setdefault(filename, []).append(key)
    return {f: shards[f] for f in sorted(shards)}


def metadata_probes(m: hf_models.HfModel, safetensors_dir: Path, params: dict, outputs: dict) -> dict:
    """from_pretrained on the safetensors layout whose model.safetensors has other __metadata__."""
    _, tensors = models.read_safetensors((safetensors_dir / hf_models.SAFE_WEIGHTS_NAME).read_bytes())
    out = {}
    for name, meta in METADATA_PROBES.items():
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copyfile(safetensors_dir / "config.json", Path(tmp) / "config.json")
            safetensors.numpy.save_file({k: t[2] for k, t in tensors.items()},
                                        str(Path(tmp) / hf_models.SAFE_WEIGHTS_NAME), metadata=meta)
            out[name] = hf_models.load_outcome(m, Path(tmp), params, outputs)
    return out


def input_layout(m: hf_models.HfModel, x: dict) -> dict:
    """For pixel inputs: the NHWC copy, and the line where the Flax model makes it."""
    line = hf_pytorch.quote(hf_pytorch.flax_module_file(m), "pixel_values = jnp.transpose(pixel_values, (0, 2, 3, 1))")
    nhwc = {k: np.ascontiguousarray(v.transpose(0, 2, 3, 1)) for k, v in x.items() if k == "pixel_values"}
    note = (f"inputs.pixel_values is NCHW [batch, channels, height, width], what {m.flax_class}.__call__ took (and "
            f"what PyTorch / candle take); the wrapper transposes it to NHWC (inputs_nhwc), the layout its flax "
            f"module computes on ({line})")
    return {"inputs_nhwc": {k: array_entry(v, models.st_dtype_name(v.dtype)) for k, v in nhwc.items()},
            "input_layout": note}


def build(m: hf_models.HfModel, out: Path) -> tuple[dict, dict]:
    """Writes out/<layout>/ for every layout; returns (expected.json, pytorch.json) documents."""
    model = m.make_model()
    params = hf_models.flat_keys(model.params)
    outputs = m.run(model)
    x = m.inputs()

    for variant in hf_models.VARIANTS:
        d = out / variant
        if d.exists():
            shutil.rmtree(d)
        hf_models.save(variant, d, model, m.max_shard_size)

    # Every variant has the same config.json.
    configs = {(out / v / "config.json").read_bytes() for v in hf_models.VARIANTS}
    assert len(configs) == 1, "config.json differs between variants"

    # Read each variant back.
    st_meta, st_tensors = models.read_safetensors((out / "safetensors" / hf_models.SAFE_WEIGHTS_NAME).read_bytes())
    assert st_meta == hf_models.SAFETENSORS_METADATA, st_meta
    assert_same_params("model.safetensors", {k: t[2] for k, t in st_tensors.items()}, params)
    st_key_order = list(st_tensors)
    raw = flax.serialization.msgpack_restore((out / "msgpack" / hf_models.FLAX_WEIGHTS_NAME).read_bytes())
    assert_same_params("flax_model.msgpack", hf_models.flat_keys(raw), params)
    assert list(hf_models.flat_keys(raw)) == list(params), "msgpack key order is not the params tree order"
    sharded_st = {}
    for filename in shard_contents(out / "safetensors_sharded", hf_models.SAFE_WEIGHTS_INDEX_NAME):
        meta, tensors = models.read_safetensors((out / "safetensors_sharded" / filename).read_bytes())
        assert meta == hf_models.SAFETENSORS_METADATA, (filename, meta)
        sharded_st.update({k: t[2] for k, t in tensors.items()})
    assert_same_params("safetensors shards", sharded_st, params)
    mp_shards = shard_contents(out / "msgpack_sharded", hf_models.FLAX_WEIGHTS_INDEX_NAME)
    st_shards = shard_contents(out / "safetensors_sharded", hf_models.SAFE_WEIGHTS_INDEX_NAME)
    assert len(mp_shards) >= 3 and len(st_shards) >= 3, (m.name, len(mp_shards), len(st_shards))

    from_pretrained = {v: hf_models.load_outcome(m, out / v, params, outputs) for v in hf_models.VARIANTS}
    loadable = ("msgpack", "safetensors", "msgpack_sharded")
    assert all(from_pretrained[v] == hf_models.LOADS for v in loadable), from_pretrained
    assert from_pretrained["safetensors_sharded"].startswith("NotImplementedError"), from_pretrained

    # What transformers' own save_pretrained writes when asked for sharded safetensors.
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True, max_shard_size=m.max_shard_size)
        safe_sharded_names = sorted(p.name for p in Path(tmp).iterdir())
    assert not any(n.endswith(".safetensors") for n in safe_sharded_names), safe_sharded_names

    st_index = json.loads((out / "safetensors_sharded" / hf_models.SAFE_WEIGHTS_INDEX_NAME).read_text())
    mp_index = json.loads((out / "msgpack_sharded" / hf_models.FLAX_WEIGHTS_INDEX_NAME).read_text())
    hf = {
        "weights_names": {"msgpack": hf_models.FLAX_WEIGHTS_NAME, "msgpack_index": hf_models.FLAX_WEIGHTS_INDEX_NAME,
                          "safetensors": hf_models.SAFE_WEIGHTS_NAME,
                          "safetensors_index": hf_models.SAFE_WEIGHTS_INDEX_NAME},
        "safetensors_metadata": st_meta,
        "safetensors_key_order": st_key_order,
        "params_key_order": list(params),
        "max_shard_size": m.max_shard_size,
        "safetensors_sharded_writer": "huggingface_hub.split_state_dict_into_shards_factory(keys ascending, "
                                      "get_storage_size=nbytes, filename_pattern='model{suffix}.safetensors'); "
                                      "safetensors.flax.save_file(metadata={'format': 'flax'}); index = "
                                      "json.dumps(index, indent=2, sort_keys=True) + '\\n'",
        "safetensors_sharded_index_metadata": st_index["metadata"],
        "safetensors_sharded_shards": st_shards,
        "msgpack_sharded_index_metadata": mp_index["metadata"],
        "msgpack_sharded_shards": mp_shards,
        "save_pretrained_safe_serialization_sharded_writes": safe_sharded_names,
        "from_pretrained": from_pretrained,
        "from_pretrained_safetensors_metadata": metadata_probes(m, out / "safetensors", params, outputs),
    }
    doc = {
        "name": f"hf_{m.name}",
        "framework": "transformers",
        "description": f"transformers {m.flax_class}({m.config_class}(**config), seed={hf_models.SEED}), params "
                       f"offset by models.perturb_flat (scale {hf_models.PERTURB_SCALE}, every leaf); saved by "
                       f"save_pretrained (msgpack, safetensors, msgpack_sharded with max_shard_size={m.max_shard_size})"
                       " and, for safetensors_sharded, by the huggingface_hub splitter; outputs of "
                       f"model({m.call_text()})",
        **({"notes": m.notes} if m.notes else {}),
        "versions": versions(),
        "config": m.config_kwargs,
        "tolerance": hf_models.TOLERANCE,
        "files": {v: file_entries(out / v) for v in hf_models.VARIANTS},
        "hf": hf,
        "tensors": {k: array_entry(params[k], models.st_dtype_name(params[k].dtype)) for k in sorted(params)},
        "inputs": {k: array_entry(v, models.st_dtype_name(v.dtype)) for k, v in x.items()},
        **(input_layout(m, x) if m.pixel_inputs else {}),
        "outputs": {k: array_entry(v, models.st_dtype_name(v.dtype)) for k, v in outputs.items()},
    }
    return doc, hf_pytorch.model_facts(m, model, outputs)


def write(path: Path, text: str) -> int:
    path.write_text(text)
    return len(text.encode())


def write_model(m: hf_models.HfModel, root: Path) -> tuple[dict, int]:
    """root/hf_<name>/ for one model; returns (its pytorch.json facts, the bytes written)."""
    out = root / f"hf_{m.name}"
    out.mkdir(parents=True, exist_ok=True)
    doc, facts = build(m, out)
    nested = [k for k, v in doc.items() if isinstance(v, dict) and v and k not in ("versions", "config")]
    size = write(out / "expected.json", dumps_fixture(doc, nested))
    size += write(out / "pytorch.json", dumps_readable(facts) + "\n")
    size += sum(f["size"] for files in doc["files"].values() for f in files.values())
    params = sum(int(np.prod(t["shape"])) for t in doc["tensors"].values())
    print(f"wrote hf_{m.name}/ ({m.flax_class}, {params} params): {', '.join(doc['files'])}, expected.json, "
          f"pytorch.json ({size} B)")
    probes = {**doc["hf"]["from_pretrained"], **doc["hf"]["from_pretrained_safetensors_metadata"]}
    for variant, result in probes.items():
        print(f"  from_pretrained({variant}): {result}")
    return facts, size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"directory for hf_<name>/ and {RULES_NAME} (default {DEFAULT_OUT})")
    args, names = parse_names(ap, hf_models.MODELS, "models")
    written = {name: write_model(hf_models.MODELS[name], args.out) for name in names}
    total = sum(size for _, size in written.values())
    if set(names) == set(hf_models.MODELS):
        facts = {name: f for name, (f, _) in written.items()}
        total += write(args.out / RULES_NAME, dumps_readable(hf_pytorch.rules_document(facts)) + "\n")
        print(f"wrote {RULES_NAME}")
    print(f"{total} bytes in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
