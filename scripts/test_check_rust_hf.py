#!/usr/bin/env python3
"""Prove scripts/check_rust_hf.py: it passes copies of the fixtures and fails broken copies, clearly.

Usage: .venv/bin/python scripts/test_check_rust_hf.py [--fixtures tests/fixtures]

1. Copies every tests/fixtures/hf_<model>/<layout>/ into TMP/<model>/<layout>/ (the checker's convention),
   writes TMP/<model>/pytorch/ and pytorch_sharded/ (the fixture's tensors converted by transformers'
   Flax -> PyTorch rules, hf_pytorch.to_pytorch, as issue 15's converter will write them; ResNet's sharded
   one with BatchNorm's num_batches_tracked, as PyTorch writes them), and runs the checker on TMP: every
   directory must PASS, and it must exit 0.
2. Writes broken copies, one per BROKEN case (a safetensors file without `format: flax` or with
   `format: pt`, a shard without it, missing tensors, a transposed kernel, a PyTorch-layout convolution
   kernel in a Flax file, a stray flax_model.msgpack, a config.json that from_pretrained reads differently;
   in the PyTorch layouts a kernel left untransposed, GPT-2's Conv1D kernels as nn.Linear wants them, an
   HWIO convolution, format 'flax', Flax names), plus directories the checker must skip, and runs the
   checker on them (as few runs as keep each <model>/<layout>/ once): each broken directory must FAIL with
   a line containing the case's words (naming the key or transformers' own message), the skipped ones
   must say SKIP, and each run must exit 1.
Exits non-zero, saying which expectation did not hold, if any does not.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hf_models  # noqa: E402
import hf_pytorch  # noqa: E402
import models  # noqa: E402

import flax.serialization  # noqa: E402
import safetensors.numpy  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHECKER = Path(__file__).resolve().parent / "check_rust_hf.py"
DEFAULT_FIXTURES = ROOT / "tests" / "fixtures"
REFUSED = "does not contain the valid metadata. Make sure you save your model with the `save_pretrained` method."


# --------------------------------------------------------------------------------------------------
# ways to break a copy
# --------------------------------------------------------------------------------------------------


def rewrite_safetensors(path: Path, change: Callable[[dict], dict] = lambda t: t, metadata="keep") -> None:
    """Rewrites a safetensors file with `change(tensors)` and, unless "keep", other __metadata__."""
    meta, tensors = models.read_safetensors(path.read_bytes())
    arrays = change({k: t[2] for k, t in tensors.items()})
    safetensors.numpy.save_file(arrays, str(path), metadata=meta if metadata == "keep" else metadata)


# Each returns a function that breaks the copy `d` (the fixtures directory `fx` at hand).
def metadata(file: str, meta) -> Callable:
    """`file` (or, for "last shard", the last model-*.safetensors) with other __metadata__."""
    def breaks(d, fx):
        path = sorted(d.glob("model-*.safetensors"))[-1] if file == "last shard" else d / file
        rewrite_safetensors(path, metadata=meta)
    return breaks


def transposed(key: str, axes=None, shard_of_key: bool = False) -> Callable:
    """model.safetensors (or the shard holding `key`) with the tensor `key` transposed."""
    def breaks(d, fx):
        if shard_of_key:
            index = json.loads((d / hf_models.SAFE_WEIGHTS_INDEX_NAME).read_text())
            path = d / index["weight_map"][key]
        else:
            path = d / hf_models.SAFE_WEIGHTS_NAME
        rewrite_safetensors(path, lambda t: {k: (v.transpose(axes).copy() if k == key else v) for k, v in t.items()})
    return breaks


def renamed(old: str, new: str) -> Callable:
    return lambda d, fx: rewrite_safetensors(d / hf_models.SAFE_WEIGHTS_NAME,
                                             lambda t: {k.replace(old, new): v for k, v in t.items()})


def dropped(prefix: str) -> Callable:
    return lambda d, fx: rewrite_safetensors(d / hf_models.SAFE_WEIGHTS_NAME,
                                             lambda t: {k: v for k, v in t.items() if not k.startswith(prefix)})


def in_msgpack(change: Callable[[dict], None]) -> Callable:
    """flax_model.msgpack with `change` applied to its restored tree."""
    def breaks(d, fx):
        path = d / hf_models.FLAX_WEIGHTS_NAME
        tree = flax.serialization.msgpack_restore(path.read_bytes())
        change(tree)
        path.write_bytes(flax.serialization.msgpack_serialize(tree))
    return breaks


def stray_msgpack(d: Path, fx: Path) -> None:
    shutil.copyfile(fx / "hf_bert" / "msgpack" / hf_models.FLAX_WEIGHTS_NAME, d / hf_models.FLAX_WEIGHTS_NAME)


def one_layer_config(d: Path, fx: Path) -> None:
    config = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps(dict(config, num_hidden_layers=1), indent=2))


def hwio_to_oihw(tree: dict) -> None:
    conv = tree["params"]["resnet"]["embedder"]["embedder"]["convolution"]
    conv["kernel"] = conv["kernel"].transpose(3, 2, 0, 1).copy()


@dataclass
class Broken:
    model: str
    layout: str
    what: str
    breaks: Callable[[Path, Path], None]  # (the copy to break, the fixtures directory)
    expect: tuple  # every one of these must be in the FAIL line


NEEDS_FLAX = "need format 'flax'"
BROKEN = [
    Broken("bert", "safetensors", "model.safetensors without __metadata__", metadata("model.safetensors", None),
           ("no __metadata__", NEEDS_FLAX, REFUSED, "(as recorded in expected.json)")),
    Broken("gpt2", "safetensors", "model.safetensors with format 'pt'", metadata("model.safetensors", {"format": "pt"}),
           ("__metadata__ {'format': 'pt'}", NEEDS_FLAX, hf_models.LOADS)),
    Broken("resnet", "safetensors", "a BatchNorm model's model.safetensors with format 'pt'",
           metadata("model.safetensors", {"format": "pt"}),
           (NEEDS_FLAX, "loads without an error, but 47 of 47 params are not the file's (random init)")),
    Broken("t5", "safetensors_sharded", "one shard without __metadata__", metadata("last shard", None),
           ("model-00004-of-00004.safetensors: no __metadata__", REFUSED)),
    Broken("llama", "msgpack", "the last decoder layer missing", in_msgpack(lambda t: t["model"]["layers"].pop("1")),
           ("keys differ: missing 9 (model.layers.1.input_layernorm.weight, ",)),
    Broken("gpt2", "safetensors", "a Conv1D kernel transposed ([8, 24] for [24, 8])",
           transposed("transformer.h.0.attn.c_attn.kernel"),
           ("`transformer.h.0.attn.c_attn.kernel`: shape [8, 24], expected [24, 8]", "transposed?")),
    Broken("vit", "safetensors_sharded", "a square kernel transposed (same shape, values moved)",
           transposed("encoder.layer.0.attention.attention.query.kernel", shard_of_key=True),
           ("`encoder.layer.0.attention.attention.query.kernel`: value at flat index",
            "it holds the expected tensor transposed")),
    Broken("resnet", "safetensors", "every BatchNorm statistic missing", dropped("batch_stats."),
           ("keys differ: missing 18 (batch_stats.resnet.embedder.embedder.normalization.mean, ",)),
    Broken("resnet", "msgpack", "a convolution kernel in PyTorch's OIHW layout", in_msgpack(hwio_to_oihw),
           ("`params.resnet.embedder.embedder.convolution.kernel`: shape [4, 3, 7, 7], expected [7, 7, 3, 4]",)),
    Broken("bert", "safetensors", "a stray flax_model.msgpack beside model.safetensors", stray_msgpack,
           ("['flax_model.msgpack'] present: from_pretrained would read it instead of model.safetensors",)),
    Broken("bert", "msgpack_sharded", "a config.json with one layer (the files are right, from_pretrained is not)",
           one_layer_config,
           ("from_pretrained params: keys differ: missing 16 (encoder.layer.1.attention.output.LayerNorm.bias, ",)),
    # The PyTorch layouts.
    Broken("bert", "pytorch", "a linear weight left in the Flax layout ([8, 16] for [16, 8])",
           transposed("encoder.layer.0.intermediate.dense.weight"),
           ("`encoder.layer.0.intermediate.dense.weight`: shape [8, 16], expected [16, 8]",)),
    Broken("gpt2", "pytorch", "Conv1D kernels as nn.Linear wants them (the Flax kernel as stored, [24, 8])",
           transposed("transformer.h.0.attn.c_attn.weight"),
           ("`transformer.h.0.attn.c_attn.weight`: shape [24, 8], expected [8, 24]",)),
    Broken("vit", "pytorch", "the patch convolution left HWIO",
           transposed("embeddings.patch_embeddings.projection.weight", (2, 3, 1, 0)),
           ("`embeddings.patch_embeddings.projection.weight`: shape [4, 4, 3, 8], expected [8, 3, 4, 4]",)),
    Broken("resnet", "pytorch_sharded", "PyTorch-layout shards marked format 'flax'",
           metadata("last shard", {"format": "flax"}),
           ("safetensors: __metadata__ {'format': 'flax'}", "need format 'pt'")),
    Broken("llama", "pytorch", "a Flax name kept (embedding) in a format 'pt' file",
           renamed("embed_tokens.weight", "embed_tokens.embedding"),
           ("keys differ: missing 1 (model.embed_tokens.weight), unexpected 1 (model.embed_tokens.embedding)",)),
]
SKIPPED = {"unknown_model/msgpack": "SKIP unknown_model/: not a model", "bert/torch": "SKIP bert/torch/: not a layout"}


# --------------------------------------------------------------------------------------------------


def write_pytorch_layout(m: hf_models.HfModel, fixture: Path, out: Path, sharded: bool, counters: bool) -> None:
    """The fixture's tensors in the PyTorch layout, by transformers' rules (hf_pytorch.to_pytorch), as a
    Flax -> PyTorch converter would write them; `counters`: with BatchNorm's num_batches_tracked, as PyTorch's
    own save_pretrained writes them."""
    _, tensors = models.read_safetensors((fixture / "safetensors" / hf_models.SAFE_WEIGHTS_NAME).read_bytes())
    flat = {k: t[2] for k, t in tensors.items()}
    converted = hf_pytorch.to_pytorch(flat, any(k.startswith("batch_stats.") for k in flat))
    state = {e["pytorch"]: e["array"] for e in converted.values()}
    if counters:
        state.update({k[:-len("running_mean")] + "num_batches_tracked": np.array(1, np.int64)
                      for k in list(state) if k.endswith(".running_mean")})
    hf_pytorch.save_pytorch_layout(out, m, state, m.max_shard_size if sharded else None)


PYTORCH_LAYOUTS = ["pytorch", "pytorch_sharded"]


def copy_fixtures(fixtures: Path, out: Path) -> list[str]:
    """Every fixture layout copied, and both PyTorch layouts written, as out/<model>/<layout>/; returns the
    labels."""
    labels = []
    for m in hf_models.MODELS.values():
        for layout in hf_models.VARIANTS:
            shutil.copytree(fixtures / f"hf_{m.name}" / layout, out / m.name / layout)
        for layout in PYTORCH_LAYOUTS:
            write_pytorch_layout(m, fixtures / f"hf_{m.name}", out / m.name / layout, layout.endswith("_sharded"),
                                 counters=m.name == "resnet" and layout == "pytorch_sharded")
        labels += [f"{m.name}/{layout}/" for layout in hf_models.VARIANTS + PYTORCH_LAYOUTS]
    return labels


def run_checker(directory: Path, fixtures: Path) -> tuple[int, dict, str]:
    """(exit status, {label: line}, stdout) of the checker on `directory`."""
    proc = subprocess.run([sys.executable, str(CHECKER), str(directory), "--fixtures", str(fixtures)],
                          capture_output=True, text=True)
    lines = {}
    for line in proc.stdout.splitlines():
        verdict, _, rest = line.partition(" ")
        if verdict in ("PASS", "FAIL", "SKIP"):
            lines[rest.split(": ", 1)[0]] = line
    return proc.returncode, lines, proc.stdout + proc.stderr


def roots_for(cases: list) -> list[list]:
    """The cases in as few groups as can share a checker run: no two of a group break the same <model>/<layout>."""
    groups: list[list] = []
    for case in cases:
        group = next((g for g in groups if all((c.model, c.layout) != (case.model, case.layout) for c in g)), None)
        if group is None:
            groups.append(group := [])
        group.append(case)
    return groups


def report(ok: bool, what: str, problems: list, detail: str) -> None:
    print(f"{'ok ' if ok else 'BAD'} {what}")
    if not ok:
        problems.append(f"{what}\n{detail}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES,
                    help=f"directory holding the hf_<model>/ fixtures (default {DEFAULT_FIXTURES})")
    args = ap.parse_args()
    problems: list = []
    with tempfile.TemporaryDirectory() as tmp:
        good = Path(tmp) / "copies"
        want = copy_fixtures(args.fixtures, good)
        status, lines, text = run_checker(good, args.fixtures)
        passed = [w for w in want if lines.get(w, "").startswith("PASS ")]
        report(status == 0 and passed == want,
               f"copies of the fixtures: {len(passed)} of {len(want)} PASS, exit {status}", problems, text)

        for i, group in enumerate(roots_for(BROKEN)):
            root = Path(tmp) / f"broken_{i}"
            for case in group:
                d = root / case.model / case.layout
                shutil.copytree(good / case.model / case.layout, d)
                case.breaks(d, args.fixtures)
            if i == 0:
                for sub in SKIPPED:
                    (root / sub).mkdir(parents=True)
            status, lines, text = run_checker(root, args.fixtures)
            report(status == 1, f"broken copies, run {i + 1}: exit {status}", problems, text)
            for case in group:
                line = lines.get(f"{case.model}/{case.layout}/", "")
                missing = [e for e in case.expect if e not in line]
                report(line.startswith("FAIL ") and not missing, f"{case.model}/{case.layout}/ {case.what}: {line}",
                       problems, f"the line lacks {missing}")
            if i == 0:
                for sub, words in SKIPPED.items():
                    line = next((v for v in lines.values() if v.startswith(words)), "")
                    report(bool(line), f"{sub}/: {line or 'no SKIP line'}", problems, text)
        empty = Path(tmp) / "empty"
        empty.mkdir()
        status, _, text = run_checker(empty, args.fixtures)
        report(status == 1 and "no <model>/<layout>/ directory" in text,
               f"a directory with nothing to check: exit {status}", problems, text)
    for p in problems:
        print(f"\nFAILED: {p}", file=sys.stderr)
    print(f"{len(problems)} expectation(s) not met" if problems else
          f"the checker passes every copy and fails every broken copy ({len(BROKEN)} cases)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
