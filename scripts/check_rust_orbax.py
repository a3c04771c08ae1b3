#!/usr/bin/env python3
"""Check Orbax checkpoints written by the Rust crate by restoring them with the real orbax-checkpoint 0.12.8.

Usage: .venv/bin/python scripts/check_rust_orbax.py DIR [--fixtures tests/fixtures/orbax] [-v]
       .venv/bin/python scripts/check_rust_orbax.py --self-test

The convention a writer follows (the same as tests/fixtures/orbax/, so a copy of that folder passes):
  - DIR/<name>/ is one checkpoint: an item directory (the one holding _METADATA; a `safejax::orbax::to_dir`
    output), a CheckpointManager root (<step>/<item>/ under it, each step with its _CHECKPOINT_METADATA),
    or a v1 checkpoint (its tree under state/);
  - its expected contents are the sidecar DIR/<name>.json, or if there is none <fixtures>/<name>.json
    (a Rust test that loads tests/fixtures/orbax/flax_cnn/ and writes it back as DIR/flax_cnn/ needs no
    sidecar of its own); a directory with neither is skipped;
  - the sidecar has the format of scripts/orbax_cases.py. What the check reads from it: `layout`
    ({"kind": "item" | "manager" | "v1" | "composite", "item": the item directory relative to DIR/<name>/,
    "." for a plain item}); `tensors` (per dotted key: path, key_types, value_type, dtype, shape, values,
    and prng_impl / key_shape for PRNG keys); `strings` and `skipped` if any; `manager` for a manager
    root ({"latest_step", "steps": {step: {"tensors"}}}); `items` for a composite step; `restore` if
    some restores are expected to fail (the modes marked "ok" run; without the key every mode runs).
    A sidecar Rust writes for trees of its own needs only `layout` and `tensors` (plus `manager` for a
    root); `on_disk` is not compared: the layout is the writer's choice, and the line reports it.

For each checkpoint, Orbax restores the tree (jax_enable_x64 on, so 64-bit arrays stay 64-bit) with
  - ocp.StandardCheckpointer().restore(item), without a target and with the abstract tree of the sidecar
    (jax.ShapeDtypeStruct leaves on the CPU device);
  - ocp.PyTreeCheckpointer().restore(item, args=PyTreeRestore(target, restore args)), and without a target;
  - ocp.v1.load (of the item, of a step directory with checkpointable_name, or of a v1 root);
  - for a manager root: CheckpointManager(root).latest_step() and all_steps() equal the sidecar's, and
    restore(step) and restore(step, args=StandardRestore(target)) of every step give its tensors (the
    Rust test writes manager_step/: Orbax's manager fixture plus a step `orbax::Writer::step` wrote); for a
    composite step: restore(step, args=Composite(...)) gives the tree item and the JSON items.
Restoring without a target, Orbax takes each jax array's sharding from `_sharding`: without that file
PyTreeCheckpointer and v1 refuse ("Sharding of jax.Array cannot be None"; those two are then skipped and the
line says so) and StandardCheckpointer gives numpy arrays where jax arrays were saved, which fails the check
(value_type "jax.Array"): a writer of jax arrays writes `_sharding`. Every restored tree must
equal the sidecar exactly: the same paths in the same containers (nested dicts for key type 2, lists for key
type 1), jax.Array / numpy array / Python scalar as `value_type` says, and the same dtypes, shapes and values.
Prints one line per checkpoint, then `N passed, M failed`; exits non-zero on any failure, or when DIR holds
no checkpoint to check.

--self-test proves the check on copies of tests/fixtures/orbax: the unchanged copies pass, and each of a set
of corrupted copies (a changed value, dtype, path, container, missing array, manager step) fails with the
message expected.
"""

from __future__ import annotations

import base64
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import orbax_cases as oc  # noqa: E402
from checks import CheckError, ensure, parse_args, run_checks  # noqa: E402

NEEDS_SHARDING = ("pytree", "v1")


def layout_note(item: Path) -> str:
    """How the checkpoint is laid out (for the report line): OCDBT or not, zarr version, compression."""
    md = oc.read_tree_metadata(item)
    ocdbt = md.get("use_ocdbt", (item / "manifest.ocdbt").exists())
    notes = ["OCDBT" if ocdbt else "no OCDBT", "zarr3" if md.get("use_zarr3") else "zarr2"]
    names = oc.array_names(md)
    try:
        meta = oc.describe_item(item)["arrays"][names[0]]["metadata"] if names else {}
        codecs = json.dumps(meta.get("compressor", meta.get("codecs")))
        notes.append("zstd" if "zstd" in codecs else "uncompressed")
    except Exception as e:  # noqa: BLE001 - a note, not a check: Orbax has read the arrays already
        notes.append(f"zarr metadata unreadable here ({type(e).__name__})")
    notes.append("with _sharding" if (item / "_sharding").exists() else "no _sharding")
    return ", ".join(notes)


def check_checkpoint(case_dir: Path, sc_path: Path) -> str:
    sc = json.loads(sc_path.read_text())
    ensure("layout" in sc and "tensors" in sc, f"{sc_path}: a sidecar needs `layout` and `tensors`")
    item = case_dir / sc["layout"]["item"]
    ensure((item / "_METADATA").is_file(), f"no _METADATA in {item} (the sidecar's layout.item)")
    modes = oc.restore_modes(case_dir, sc)
    expected = oc.expected_modes(sc)
    skipped = []
    if not (item / "_sharding").exists():
        skipped = [m for m in expected if m in NEEDS_SHARDING]
    ran = []
    with oc.x64(True):
        for mode in expected:
            if mode in skipped:
                continue
            try:
                detail = modes[mode]()
            except CheckError as e:
                if skipped and "expected a jax.Array" in str(e):
                    raise CheckError(f"{e} (without _sharding Orbax restores arrays without a target as numpy "
                                     "arrays: write _sharding)") from None
                raise
            except Exception as e:  # noqa: BLE001 - Orbax refusing the checkpoint is the failure to report
                raise CheckError(f"{oc.MODES[mode]} raised {oc.error_summary(e, case_dir)}") from e
            ran.append(mode if detail == "equal" else f"{mode} ({detail})")
    ensure(ran, "no restore to run")
    line = f"{len(sc['tensors'])} arrays equal {sc_path.name} with {', '.join(ran)}"
    if skipped:
        line += f" ({', '.join(skipped)} skipped: no _sharding)"
    return f"{line}; {layout_note(item)}"


def jobs_in(root: Path, fixtures: Path) -> list[tuple[str, Callable[[], str]]]:
    jobs = []
    for case_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        sc_path = root / f"{case_dir.name}.json"
        if not sc_path.is_file():
            sc_path = fixtures / f"{case_dir.name}.json"
        if not sc_path.is_file():
            print(f"SKIP {case_dir.name}/: no {case_dir.name}.json here or in {fixtures}")
            continue
        if not oc.expected_modes(json.loads(sc_path.read_text())):
            print(f"SKIP {case_dir.name}/: {sc_path.name} says Orbax restores it with nothing")
            continue
        jobs.append((f"{case_dir.name}/", lambda d=case_dir, s=sc_path: check_checkpoint(d, s)))
    return jobs


# --------------------------------------------------------------------------------------------------
# --self-test: corrupted copies of the fixtures must fail, with the message expected
# --------------------------------------------------------------------------------------------------


def _edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def _flip_first_float(d: Path) -> None:  # raw zarr2 chunk of an uncompressed, non-OCDBT checkpoint
    chunk = d / "params.Conv_0.bias" / "0"
    data = bytearray(chunk.read_bytes())
    data[3] ^= 0x40  # the sign and exponent byte of the first little-endian f32
    chunk.write_bytes(bytes(data))


def _retype(d: Path) -> None:
    _edit_json(d / "params.Conv_0.bias" / ".zarray", lambda z: z.update(dtype="<i4"))


def _drop_array(d: Path) -> None:
    shutil.rmtree(d / "params.Conv_0.bias")
    _edit_json(d / "_METADATA", lambda md: md["tree_metadata"].pop("('params', 'Conv_0', 'bias')"))


def _rename_array(d: Path) -> None:  # on disk, in _METADATA and in _sharding (keyed by base64url of the name)
    (d / "params.Conv_0.bias").rename(d / "params.Conv_0.b")

    def edit(md):
        entry = md["tree_metadata"].pop("('params', 'Conv_0', 'bias')")
        entry["key_metadata"][-1]["key"] = "b"
        md["tree_metadata"]["('params', 'Conv_0', 'b')"] = entry
    _edit_json(d / "_METADATA", edit)
    b64 = lambda name: base64.urlsafe_b64encode(name.encode()).decode()  # noqa: E731
    _edit_json(d / "_sharding", lambda sh: sh.update({b64("params.Conv_0.b"): sh.pop(b64("params.Conv_0.bias"))}))


def _as_sequence(d: Path) -> None:  # the `layers` dict of nnx_pure_dict said to be a list
    def edit(md):
        for e in md["tree_metadata"].values():
            if e["key_metadata"][0]["key"] == "layers":
                e["key_metadata"][1]["key_type"] = 1
    _edit_json(d / "_METADATA", edit)


def _drop_first_step(d: Path) -> None:
    shutil.rmtree(d / "1")


def _truncate_manifest(d: Path) -> None:
    manifest = d / "manifest.ocdbt"
    manifest.write_bytes(manifest.read_bytes()[:40])


CORRUPTIONS = [  # (fixture copied, how it is corrupted, what the failure must say)
    ("uncompressed_zarr2_no_ocdbt", _flip_first_float, "`params.Conv_0.bias`: value at flat index 0 is"),
    ("uncompressed_zarr2_no_ocdbt", _retype, "`params.Conv_0.bias`: dtype I32, expected F32"),
    ("uncompressed_zarr2_no_ocdbt", _drop_array, "paths differ: missing ['params.Conv_0.bias'], unexpected []"),
    ("uncompressed_zarr2_no_ocdbt", _rename_array,
     "paths differ: missing ['params.Conv_0.bias'], unexpected ['params.Conv_0.b']"),
    ("nnx_pure_dict", _as_sequence, "sits in containers ['dict', 'sequence', 'dict'], expected ['dict', 'dict', 'dict']"),
    ("manager", _drop_first_step, "all_steps() is [2, 3], expected [1, 2, 3]"),
    ("flax_cnn", _truncate_manifest, "raised ValueError"),
]


def self_test(fixtures: Path, verbose: bool) -> int:
    with tempfile.TemporaryDirectory(prefix="check_rust_orbax-") as tmp:
        intact = Path(tmp) / "intact"
        shutil.copytree(fixtures, intact)
        print(f"== unchanged copies of {fixtures}: every one must pass")
        status = run_checks(jobs_in(intact, fixtures), verbose)
        print("== corrupted copies: every one must fail with the message expected")
        failures = 0
        for i, (name, corrupt, expected) in enumerate(CORRUPTIONS):
            case_dir = Path(tmp) / f"corrupt{i}" / name
            shutil.copytree(fixtures / name, case_dir)
            corrupt(case_dir)
            label = f"{name}/ with {corrupt.__name__.strip('_').replace('_', ' ')}"
            try:
                detail = check_checkpoint(case_dir, fixtures / f"{name}.json")
                print(f"WRONG {label}: passed ({detail})")
                failures += 1
            except CheckError as e:
                ok = expected in str(e)
                print(f"{'FAIL as expected' if ok else 'WRONG'} {label}: {e}")
                failures += not ok
        print(f"{len(CORRUPTIONS) - failures} of {len(CORRUPTIONS)} corruptions caught with the expected message")
        return 1 if status or failures else 0


def main() -> int:
    if sys.argv[1:2] == ["--self-test"]:
        return self_test(oc.FIXTURES, "-v" in sys.argv)
    args = parse_args(__doc__, "directory holding the checkpoint directories the Rust crate wrote", oc.FIXTURES,
                      "directory of the fixture sidecars used when DIR has none")
    jobs = jobs_in(args.dir, args.fixtures)
    if not jobs:
        print(f"error: no checkpoint directory with a sidecar in {args.dir}", file=sys.stderr)
        return 1
    return run_checks(jobs, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
