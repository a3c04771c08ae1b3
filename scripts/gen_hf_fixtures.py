#!/usr/bin/env python3
"""Write tests/fixtures/hf_bert/: a tiny randomly initialised Hugging Face FlaxBertModel (scripts/hf_bert.py)
saved four ways, and expected.json.

  hf_bert/msgpack/              save_pretrained(dir)                             config.json, flax_model.msgpack
  hf_bert/safetensors/          save_pretrained(dir, safe_serialization=True)    config.json, model.safetensors
  hf_bert/msgpack_sharded/      save_pretrained(dir, max_shard_size=2500)        config.json, flax_model.msgpack.index.json,
                                                                                 flax_model-0000i-of-0000N.msgpack
  hf_bert/safetensors_sharded/  the huggingface_hub splitter (no Flax writer)    config.json, model.safetensors.index.json,
                                                                                 model-0000i-of-0000N.safetensors
  hf_bert/expected.json         the format of tests/fixtures/<name>.json: "tensors" (the params, keys joined
                                with '.'), "inputs" (input_ids, attention_mask), "outputs" (last_hidden_state,
                                pooler_output), plus "files" (name, size, sha256 of every file of every variant)
                                and "hf" (what transformers writes and reads, recorded from the run).

Every variant is read back (from_pretrained where transformers can) and must give the params exactly and
the outputs. Nothing is downloaded (HF_HUB_OFFLINE=1).

Usage: .venv/bin/python scripts/gen_hf_fixtures.py [--out DIR]
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
import hf_bert  # noqa: E402  (sets HF_HUB_OFFLINE=1 before transformers is imported)
import models  # noqa: E402
from gen_fixtures import array_entry  # noqa: E402

import flax.serialization  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "hf_bert"
VERSION_PACKAGES = ["jax", "jaxlib", "flax", "transformers", "huggingface_hub", "safetensors", "msgpack", "numpy",
                    "ml_dtypes"]


def versions() -> dict:
    return {p: metadata.version(p) for p in VERSION_PACKAGES}


def dumps_nested(doc: dict) -> str:
    """JSON with one entry of each top-level object per line (one tensor per line, as tests/fixtures/*.json)."""
    compact = lambda v: json.dumps(v, separators=(", ", ": "))  # noqa: E731
    lines = ["{"]
    items = list(doc.items())
    for i, (k, v) in enumerate(items):
        comma = "," if i + 1 < len(items) else ""
        if isinstance(v, dict) and v and k not in ("versions", "config"):
            lines.append(f"  {json.dumps(k)}: {{")
            sub = list(v.items())
            for j, (name, entry) in enumerate(sub):
                c = "," if j + 1 < len(sub) else ""
                lines.append(f"    {json.dumps(name)}: {compact(entry)}{c}")
            lines.append("  }" + comma)
        else:
            lines.append(f"  {json.dumps(k)}: {compact(v)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def file_entries(directory: Path) -> dict:
    return {p.name: {"size": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
            for p in sorted(directory.iterdir())}


def assert_same_params(what: str, got: dict, want: dict) -> None:
    assert list(sorted(got)) == list(sorted(want)), (what, sorted(set(got) ^ set(want)))
    for k, w in want.items():
        g = np.asarray(got[k])
        assert g.dtype == w.dtype and g.shape == w.shape and g.tobytes() == w.tobytes(), (what, k)


def assert_same_outputs(what: str, got: dict, want: dict) -> None:
    for k, w in want.items():
        np.testing.assert_allclose(got[k], w, rtol=hf_bert.TOLERANCE, atol=hf_bert.TOLERANCE, err_msg=f"{what}: {k}")


def shard_contents(directory: Path, index_name: str) -> dict:
    index = json.loads((directory / index_name).read_text())
    shards: dict = {}
    for key, filename in index["weight_map"].items():
        shards.setdefault(filename, []).append(key)
    return {f: shards[f] for f in sorted(shards)}


def build(out: Path) -> dict:
    model = hf_bert.make_model()
    params = hf_bert.flat_keys(model.params)
    outputs = hf_bert.run(model)
    x = hf_bert.inputs()

    for variant in hf_bert.VARIANTS:
        d = out / variant
        if d.exists():
            shutil.rmtree(d)
        hf_bert.save(variant, d, model)

    # Every variant has the same config.json.
    configs = {(out / v / "config.json").read_bytes() for v in hf_bert.VARIANTS}
    assert len(configs) == 1, "config.json differs between variants"

    # Read each variant back.
    st_meta, st_tensors = models.read_safetensors((out / "safetensors" / hf_bert.SAFE_WEIGHTS_NAME).read_bytes())
    assert st_meta == hf_bert.SAFETENSORS_METADATA, st_meta
    assert_same_params("model.safetensors", {k: t[2] for k, t in st_tensors.items()}, params)
    st_key_order = list(st_tensors)
    raw = flax.serialization.msgpack_restore((out / "msgpack" / hf_bert.FLAX_WEIGHTS_NAME).read_bytes())
    assert_same_params("flax_model.msgpack", hf_bert.flat_keys(raw), params)
    assert list(hf_bert.flat_keys(raw)) == list(params), "msgpack key order is not the params tree order"
    sharded_st = {}
    for filename in shard_contents(out / "safetensors_sharded", hf_bert.SAFE_WEIGHTS_INDEX_NAME):
        meta, tensors = models.read_safetensors((out / "safetensors_sharded" / filename).read_bytes())
        assert meta == hf_bert.SAFETENSORS_METADATA, (filename, meta)
        sharded_st.update({k: t[2] for k, t in tensors.items()})
    assert_same_params("safetensors shards", sharded_st, params)

    from_pretrained = {}
    for variant in hf_bert.VARIANTS:
        try:
            loaded = hf_bert.FlaxBertModel.from_pretrained(out / variant)
        except NotImplementedError as e:
            from_pretrained[variant] = f"NotImplementedError: {e}"
            continue
        assert_same_params(f"{variant} from_pretrained", hf_bert.flat_keys(loaded.params), params)
        assert_same_outputs(f"{variant} from_pretrained", hf_bert.run(loaded), outputs)
        from_pretrained[variant] = "loads: params exact, outputs match"
    assert from_pretrained["safetensors_sharded"].startswith("NotImplementedError"), from_pretrained

    # What transformers' own save_pretrained writes when asked for sharded safetensors.
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True, max_shard_size=hf_bert.MAX_SHARD_SIZE)
        safe_sharded_names = sorted(p.name for p in Path(tmp).iterdir())
    assert not any(n.endswith(".safetensors") for n in safe_sharded_names), safe_sharded_names

    st_index = json.loads((out / "safetensors_sharded" / hf_bert.SAFE_WEIGHTS_INDEX_NAME).read_text())
    mp_index = json.loads((out / "msgpack_sharded" / hf_bert.FLAX_WEIGHTS_INDEX_NAME).read_text())
    hf = {
        "weights_names": {"msgpack": hf_bert.FLAX_WEIGHTS_NAME, "msgpack_index": hf_bert.FLAX_WEIGHTS_INDEX_NAME,
                          "safetensors": hf_bert.SAFE_WEIGHTS_NAME,
                          "safetensors_index": hf_bert.SAFE_WEIGHTS_INDEX_NAME},
        "safetensors_metadata": st_meta,
        "safetensors_key_order": st_key_order,
        "params_key_order": list(params),
        "max_shard_size": hf_bert.MAX_SHARD_SIZE,
        "safetensors_sharded_writer": "huggingface_hub.split_state_dict_into_shards_factory(keys ascending, "
                                      "get_storage_size=nbytes, filename_pattern='model{suffix}.safetensors'); "
                                      "safetensors.flax.save_file(metadata={'format': 'flax'}); index = "
                                      "json.dumps(index, indent=2, sort_keys=True) + '\\n'",
        "safetensors_sharded_index_metadata": st_index["metadata"],
        "safetensors_sharded_shards": shard_contents(out / "safetensors_sharded", hf_bert.SAFE_WEIGHTS_INDEX_NAME),
        "msgpack_sharded_index_metadata": mp_index["metadata"],
        "msgpack_sharded_shards": shard_contents(out / "msgpack_sharded", hf_bert.FLAX_WEIGHTS_INDEX_NAME),
        "save_pretrained_safe_serialization_sharded_writes": safe_sharded_names,
        "from_pretrained": from_pretrained,
    }
    return {
        "name": "hf_bert",
        "framework": "transformers",
        "description": f"transformers FlaxBertModel(BertConfig(**config), seed={hf_bert.SEED}), params offset by "
                       "models.perturb_flat (scale 0.1, every leaf); saved by save_pretrained (msgpack, safetensors, "
                       f"msgpack_sharded with max_shard_size={hf_bert.MAX_SHARD_SIZE}) and, for safetensors_sharded, "
                       "by the huggingface_hub splitter; outputs of model(input_ids, attention_mask=attention_mask)",
        "versions": versions(),
        "config": hf_bert.CONFIG,
        "tolerance": hf_bert.TOLERANCE,
        "files": {v: file_entries(out / v) for v in hf_bert.VARIANTS},
        "hf": hf,
        "tensors": {k: array_entry(params[k], models.st_dtype_name(params[k].dtype)) for k in sorted(params)},
        "inputs": {k: array_entry(v, models.st_dtype_name(v.dtype)) for k, v in x.items()},
        "outputs": {k: array_entry(v, models.st_dtype_name(v.dtype)) for k, v in outputs.items()},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    doc = build(args.out)
    text = dumps_nested(doc)
    (args.out / "expected.json").write_text(text)
    total = len(text.encode())
    for variant, files in doc["files"].items():
        size = sum(f["size"] for f in files.values())
        total += size
        print(f"wrote {variant}/: {', '.join(files)} ({size} B)")
    print(f"wrote expected.json ({len(text.encode())} B); {total} bytes in all")
    for variant, result in doc["hf"]["from_pretrained"].items():
        print(f"  FlaxBertModel.from_pretrained({variant}/): {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
