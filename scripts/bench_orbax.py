#!/usr/bin/env python3
"""Orbax's own restore and save of a haiku-ResNet50-shaped checkpoint: the Python side of the Orbax benchmark.

    .venv/bin/python scripts/bench_orbax.py DIR --json OUT.json [--runs 10] [--reuse]

Builds the tree of benches/data/resnet50.json (the keys, dtypes and shapes of haiku's ResNet50 params and
state, 479 leaves, 102.7 MB; scripts/bench_python.py's `resnet50_tree`, as jax arrays) twice and saves each
with Orbax's defaults, `ocp.StandardCheckpointer().save(path, tree)` (OCDBT, zarr v2, zstd level 1):

    DIR/random/          float leaves uniform in [-1, 1): zstd barely shrinks them
    DIR/compressible/    float leaves 7 in 8 zero, the rest +-0.5 or +-1

(replaced if they exist, unless --reuse; the Rust benchmark reads these same two directories, so run this
first with the DIR given to it). Then, for each, times with the page cache warm (every file read once, then
2 untimed runs) and `runs` timed runs, imports and tree building excluded:

    restore         ocp.StandardCheckpointer().restore(path)                  (no target)
    restore_target  ocp.StandardCheckpointer().restore(path, abstract tree)   (ShapeDtypeStruct leaves)
    save            ocp.StandardCheckpointer().save(new path, tree) + wait_until_finished()
                    (into DIR/.save-scratch/, emptied before each run, untimed)

and reports the median, min and max of each; and the peak resident memory of one restore and of one save,
each in a fresh process (VmHWM, reset just before the call, against the RSS then: imports and, for the
save, the tree itself are in the baseline; the restored tree is in the peak). The machine's load average before and after is recorded, as
it affects every figure. Writes everything as JSON to OUT.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_python import SPEC, resnet50_tree, timed  # noqa: E402  (sets JAX_PLATFORMS=cpu first)

import jax  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402

VARIANTS = {"random": False, "compressible": True}  # directory name -> resnet50_tree(compressible=...)
VERSION_PACKAGES = ["orbax-checkpoint", "tensorstore", "jax", "jaxlib", "numpy"]


def dir_bytes(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def warm_page_cache(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            p.read_bytes()


def save(path: Path, tree) -> None:
    ck = ocp.StandardCheckpointer()
    ck.save(path, tree)
    ck.wait_until_finished()


def abstract(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


def proc_status_mib(field: str) -> float:
    """VmRSS (resident now) or VmHWM (the peak since the process began, or since reset_peak_rss())."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise KeyError(field)


def reset_peak_rss() -> None:
    """Lowers VmHWM to the current RSS (Linux >= 4.0). ru_maxrss cannot serve: it keeps the peak of the
    process this one was forked from."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_child(op: str, path: str, compressible: str) -> None:
    """In a fresh process: the RSS before one `op` ("restore" or "save") and the peak during it, as JSON."""
    scratch = Path(path).parent / ".save-scratch" / "rss"
    tree = resnet50_tree(compressible == "1") if op == "save" else None
    shutil.rmtree(scratch, ignore_errors=True)
    reset_peak_rss()
    before = proc_status_mib("VmRSS")
    if op == "restore":
        jax.block_until_ready(ocp.StandardCheckpointer().restore(path))
    else:
        save(scratch, tree)
    peak = proc_status_mib("VmHWM")
    shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps({"rss_before_mib": round(before, 1), "peak_rss_mib": round(peak, 1),
                      "peak_above_before_mib": round(peak - before, 1)}))


def peak_rss(op: str, path: Path, compressible: bool) -> dict:
    out = subprocess.run([sys.executable, __file__, "--rss-child", op, str(path), "1" if compressible else "0"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench_variant(root: Path, name: str, compressible: bool, runs: int, reuse: bool) -> dict:
    path = root / name
    tree = resnet50_tree(compressible)
    if not (reuse and (path / "_METADATA").is_file()):
        shutil.rmtree(path, ignore_errors=True)
        save(path, tree)
    size, files = dir_bytes(path)
    warm_page_cache(path)
    ck = ocp.StandardCheckpointer()
    target = abstract(tree)
    scratch = root / ".save-scratch"
    dest = scratch / name

    def fresh_dest():
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()

    results = {
        "restore": timed(lambda: ck.restore(path), runs),
        "restore_target": timed(lambda: ck.restore(path, target), runs),
        "save": timed(lambda: (ck.save(dest, tree), ck.wait_until_finished()), runs, setup=fresh_dest),
    }
    shutil.rmtree(scratch, ignore_errors=True)
    results["peak_rss"] = {op: peak_rss(op, path, compressible) for op in ("restore", "save")}
    return {"path": str(path), "bytes_on_disk": size, "files": files, **results}


def main() -> int:
    if sys.argv[1:2] == ["--rss-child"]:
        peak_rss_child(*sys.argv[2:5])
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path, help="where the checkpoints go: DIR/random/ and DIR/compressible/")
    ap.add_argument("--json", type=Path, required=True, help="where the results go")
    ap.add_argument("--runs", type=int, default=10, help="timed runs of each operation (default 10)")
    ap.add_argument("--reuse", action="store_true", help="keep DIR/<variant>/ if it holds a checkpoint")
    args = ap.parse_args()
    root = args.dir.resolve()  # Orbax wants absolute paths
    root.mkdir(parents=True, exist_ok=True)

    load_before = os.getloadavg()
    leaves = jax.tree_util.tree_leaves(resnet50_tree())
    variants = {name: bench_variant(root, name, c, args.runs, args.reuse) for name, c in VARIANTS.items()}
    result = {
        "tree": {"spec": str(SPEC.relative_to(SPEC.parents[2])), "leaves": len(leaves),
                 "bytes": sum(x.nbytes for x in leaves)},
        "machine": {"cores": os.cpu_count(), "load_average_before": load_before,
                    "load_average_after": os.getloadavg()},
        "versions": {"python": sys.version.split()[0], **{p: metadata.version(p) for p in VERSION_PACKAGES}},
        "orbax": variants,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")

    tree_mb = result["tree"]["bytes"] / 1e6
    print(f"ResNet50 params+state: {len(leaves)} leaves, {tree_mb:.1f} MB; {os.cpu_count()} cores; load average "
          f"{' '.join(f'{x:.2f}' for x in load_before)} before, "
          f"{' '.join(f'{x:.2f}' for x in result['machine']['load_average_after'])} after; {args.runs} runs\n")
    print("| checkpoint | on disk (MB) | operation | median (ms) | min (ms) | max (ms) | MB/s (tree, median) |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for name, v in variants.items():
        for op in ("restore", "restore_target", "save"):
            t = v[op]
            print(f"| {name} | {v['bytes_on_disk'] / 1e6:.1f} | {op} | {t['median_ms']:.1f} | {t['min_ms']:.1f} | "
                  f"{t['max_ms']:.1f} | {tree_mb / (t['median_ms'] / 1e3):.0f} |")
    print("\n| checkpoint | operation | RSS before (MiB) | peak RSS (MiB) | peak above before (MiB) |")
    print("|---|---|---:|---:|---:|")
    for name, v in variants.items():
        for op, r in v["peak_rss"].items():
            print(f"| {name} | {op} | {r['rss_before_mib']} | {r['peak_rss_mib']} | {r['peak_above_before_mib']} |")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
