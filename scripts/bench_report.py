"""Tables and a chart from the results of `cargo bench --bench serde` (and scripts/bench_python.py).

Reads criterion's estimates (target/criterion/<group>/<function>[/<size>]/new/estimates.json, the
median of each benchmark) and target/bench_python.json if present, and prints the Markdown tables of
BENCHMARKS.md: the ResNet50 workload against the baselines, the size sweep, the 10 000 small
tensors, and the targets of issue 8, met or not. Draws throughput against tensor size from the sweep
into benches/throughput.svg (plain SVG, no plotting library needed).

    python3 scripts/bench_report.py                 # tables on stdout, chart to benches/throughput.svg
    python3 scripts/bench_report.py --svg out.svg
    python3 scripts/bench_report.py --orbax         # the Orbax tables (scripts/bench_orbax.sh runs it)

With --orbax it reads instead the results of scripts/bench_orbax.sh: Orbax's own restore and save
(target/bench_orbax.json, from scripts/bench_orbax.py), `cargo bench --bench orbax` on the same
checkpoints (target/criterion/orbax_<checkpoint>/), and the peak memory of each side
(target/bench_orbax_memory.txt, lines of examples/mem_probe.rs), and prints them as ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRITERION = ROOT / "target" / "criterion"
PYTHON = ROOT / "target" / "bench_python.json"
ORBAX_PYTHON = ROOT / "target" / "bench_orbax.json"
ORBAX_MEMORY = ROOT / "target" / "bench_orbax_memory.txt"
SWEEP_MIB = [1, 4, 16, 64, 256, 1024]
GIB = float(1 << 30)


def estimate(*parts: str) -> dict | None:
    """Median time (ns) and throughput of one benchmark, or None if it has not run."""
    d = CRITERION.joinpath(*parts) / "new"
    if not (d / "estimates.json").exists():
        return None
    est = json.loads((d / "estimates.json").read_text())
    bench = json.loads((d / "benchmark.json").read_text())
    return {"ns": est["median"]["point_estimate"], "throughput": bench.get("throughput") or {}}


def ms(e: dict | None) -> str:
    if e is None:
        return "–"
    v = e["ns"] / 1e6
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def gibs(e: dict | None) -> float | None:
    if e is None or "Bytes" not in e["throughput"]:
        return None
    return e["throughput"]["Bytes"] / (e["ns"] / 1e9) / GIB


def fmt_gibs(e: dict | None) -> str:
    v = gibs(e)
    return "–" if v is None else (f"{v:.2f}" if v < 100 else f"{v:.0f}")


def ratio(a: dict | None, b: dict | None) -> float | None:
    return None if a is None or b is None else a["ns"] / b["ns"]


def fmt_ratio(r: float | None) -> str:
    return "–" if r is None else f"{r:.2f}×"


RESNET_ROWS = [
    ("memcpy_touched", "baseline: copy into a touched buffer (bandwidth floor)"),
    ("memcpy_fresh", "baseline: copy into a fresh allocation"),
    ("memcpy_fresh_thp", "baseline: copy into a fresh mapping advised for huge pages"),
    ("to_bytes", "`to_bytes`"),
    ("safetensors_serialize", "safetensors crate: `serialize`"),
    ("to_writer_reused", "`to_writer` into a `Vec` the caller reuses"),
    ("to_writer_file", "`to_writer` into a `BufWriter<File>` (no sync)"),
    ("to_file", "`to_file` (temporary file, sync, rename, sync dir)"),
    ("fs_write_sync", "baseline: write the bytes to a new file and sync"),
    ("from_bytes_owned", "`from_bytes` into owned `Tensor`s"),
    ("safetensors_deserialize_copy", "safetensors crate: `deserialize` + copy each tensor out"),
    ("from_file_owned", "`from_file` into owned `Tensor`s"),
    ("from_bytes_views", "`from_bytes` into `TensorView`s"),
    ("mmap_views", "`MappedFile::open` + `deserialize` into views"),
    ("safetensors_deserialize", "safetensors crate: `deserialize` (borrows)"),
]


def resnet_table(out: list[str]) -> dict:
    r = {name: estimate("resnet50", name) for name, _ in RESNET_ROWS}
    floor = r["memcpy_touched"]
    out.append("| benchmark | median (ms) | GiB/s | × the floor |")
    out.append("|---|---:|---:|---:|")
    for name, label in RESNET_ROWS:
        out.append(f"| {label} | {ms(r[name])} | {fmt_gibs(r[name])} | {fmt_ratio(ratio(r[name], floor))} |")
    return r


def sweep_table(out: list[str], names: list[str]) -> dict:
    s = {(n, m): estimate("sweep", n, f"{m}MiB") for n in names for m in SWEEP_MIB}
    out.append("| GiB/s | " + " | ".join(f"{m} MiB" if m < 1024 else "1 GiB" for m in SWEEP_MIB) + " |")
    out.append("|---|" + "---:|" * len(SWEEP_MIB))
    for n in names:
        out.append(f"| `{n}` | " + " | ".join(fmt_gibs(s[(n, m)]) for m in SWEEP_MIB) + " |")
    return s


def many_table(out: list[str]) -> dict:
    names = ["to_bytes", "safetensors_serialize", "to_writer_reused", "to_file", "from_bytes_owned",
             "safetensors_deserialize_copy", "from_file_owned", "from_bytes_views", "mmap_views",
             "safetensors_deserialize", "memcpy_touched"]
    m = {n: estimate("many_small", n) for n in names}
    out.append("| benchmark | median (ms) | µs per tensor |")
    out.append("|---|---:|---:|")
    for n in names:
        e = m[n]
        per = "–" if e is None else f"{e['ns'] / 1e3 / e['throughput']['Elements']:.3f}"
        out.append(f"| `{n}` | {ms(e)} | {per} |")
    return m


def chart(sweep: dict, names: list[str], path: Path, note: str) -> None:
    colors = {
        "memcpy_touched": "#222222", "memcpy_fresh": "#999999", "memcpy_fresh_thp": "#666666",
        "to_bytes": "#d62728", "to_writer_reused": "#ff7f0e", "from_bytes_owned": "#1f77b4",
        "from_file_owned": "#17becf", "safetensors_serialize": "#9467bd",
        "safetensors_deserialize_copy": "#2ca02c",
    }
    dashed = {"memcpy_touched", "memcpy_fresh", "memcpy_fresh_thp", "safetensors_serialize",
              "safetensors_deserialize_copy"}
    W, H, left, right, top, bottom = 860, 480, 70, 250, 40, 60
    pw, ph = W - left - right, H - top - bottom
    values = [gibs(sweep[(n, m)]) for n in names for m in SWEEP_MIB if sweep[(n, m)] is not None]
    # A log scale: from the largest power of two under the slowest to the smallest over the fastest.
    lo = 2.0 ** math.floor(math.log2(min(values or [1.0])))
    hi = 2.0 ** math.ceil(math.log2(max(values or [2.0])))
    x = lambda m: left + pw * math.log(m) / math.log(SWEEP_MIB[-1])
    y = lambda v: top + ph * (1 - math.log(v / lo) / math.log(hi / lo))
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{left}" y="22" font-size="15">Throughput against tensor size (one f32 tensor; '
           f'higher is better)</text>']
    v = lo
    while v <= hi:
        svg.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{left + pw}" y2="{y(v):.1f}" stroke="#e5e5e5"/>')
        svg.append(f'<text x="{left - 8}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
        v *= 2
    for m in SWEEP_MIB:
        label = f"{m} MiB" if m < 1024 else "1 GiB"
        svg.append(f'<line x1="{x(m):.1f}" y1="{top}" x2="{x(m):.1f}" y2="{top + ph}" stroke="#f0f0f0"/>')
        svg.append(f'<text x="{x(m):.1f}" y="{top + ph + 18}" text-anchor="middle">{label}</text>')
    svg.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
    svg.append(f'<text x="{left + pw / 2}" y="{H - 18}" text-anchor="middle">tensor size (log scale)</text>')
    svg.append(f'<text transform="translate(18,{top + ph / 2}) rotate(-90)" text-anchor="middle">GiB/s (log scale)</text>')
    for i, n in enumerate(names):
        pts = [(x(m), y(gibs(sweep[(n, m)]))) for m in SWEEP_MIB if sweep[(n, m)] is not None]
        if not pts:
            continue
        c = colors.get(n, "#000")
        dash = ' stroke-dasharray="6,4"' if n in dashed else ""
        svg.append(f'<polyline fill="none" stroke="{c}" stroke-width="2"{dash} points="'
                   + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
        for a, b in pts:
            svg.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{c}"/>')
        ly = top + 10 + 22 * i
        svg.append(f'<line x1="{W - right + 15}" y1="{ly}" x2="{W - right + 45}" y2="{ly}" stroke="{c}" '
                   f'stroke-width="2"{dash}/>')
        svg.append(f'<text x="{W - right + 52}" y="{ly + 4}">{n}</text>')
    svg.append(f'<text x="{W - right + 15}" y="{top + 10 + 22 * len(names) + 10}" font-size="11" fill="#555">'
               f'views and mapped loads: off the chart</text>')
    svg.append(f'<text x="{W - right + 15}" y="{top + 10 + 22 * len(names) + 26}" font-size="11" fill="#555">'
               f'(constant time, header only)</text>')
    svg.append(f'<text x="{left}" y="{H - 3}" font-size="10" fill="#777">{note}</text>')
    svg.append("</svg>")
    path.write_text("\n".join(svg) + "\n")


def orbax_report() -> int:
    """The Orbax tables: Orbax's restore / our read and Orbax's save / our write, and peak memory."""
    if not ORBAX_PYTHON.exists():
        print("no results: run scripts/bench_orbax.sh first", file=sys.stderr)
        return 1
    py = json.loads(ORBAX_PYTHON.read_text())
    tree_mib = py["tree"]["bytes"] / (1 << 20)
    out = ["| checkpoint | Orbax | median (ms) | Rust | median (ms) | Orbax / Rust |", "|---|---|---:|---|---:|---:|"]
    for name, v in py["orbax"].items():
        for theirs, ours in [("restore", "read_value"), ("restore_target", "read_value"),
                             ("restore_target", "read_typed"), ("save", "write")]:
            pm = v[theirs]["median_ms"]
            e = estimate(f"orbax_{name}", ours)
            q = f"{pm / (e['ns'] / 1e6):.1f}×" if e else "–"
            out.append(f"| {name} ({v['bytes_on_disk'] / 1e6:.1f} MB on disk) | `{theirs}` | {pm:.1f} | `{ours}` | "
                       f"{ms(e)} | {q} |")
        floor = estimate(f"orbax_{name}", "copy_fresh")
        out.append(f"| {name} | | | `copy_fresh` (the floor) | {ms(floor)} | |")
    out += ["", f"Peak resident memory above the process's own at the start (the model is {tree_mib:.1f} MiB):", "",
            "| checkpoint | side | operation | peak above start (MiB; saves: with the tree built) | peak − model (MiB) |", "|---|---|---|---:|---:|"]
    rows = []
    if ORBAX_MEMORY.exists():
        for line in ORBAX_MEMORY.read_text().split("\n"):
            kv = dict(f.split("=", 1) for f in line.split() if "=" in f)
            if "mode" in kv:
                rows.append(kv)
    for name, v in py["orbax"].items():
        for op, r in v["peak_rss"].items():
            above = r["peak_above_before_mib"]
            # Orbax's save starts with the tree in memory (in its baseline); its restore ends with it.
            over = above if op == "save" else above - tree_mib
            out.append(f"| {name} | Orbax | `{op}` | {above:.1f} | {over:+.1f} |")
        for kv in (r for r in rows if r["variant"] == name):
            # A write starts with the tree built (as Orbax's save does): counted from there.
            above = float(kv["peak_mib"]) - float(kv.get("built_mib", kv["start_mib"]))
            over = above if "built_mib" in kv else above - tree_mib
            out.append(f"| {name} | Rust | `{kv['mode']}` | {above:.1f} | {over:+.1f} |")
    m = py["machine"]
    out += ["", f"{m['cores']} cores; load average {' '.join(f'{x:.2f}' for x in m['load_average_before'])} before "
            f"the Python side, {' '.join(f'{x:.2f}' for x in m['load_average_after'])} after it; "
            f"{', '.join(f'{k} {v}' for k, v in py['versions'].items())}"]
    print("\n".join(out))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--svg", type=Path, default=ROOT / "benches" / "throughput.svg")
    parser.add_argument("--orbax", action="store_true", help="the Orbax tables instead (scripts/bench_orbax.sh)")
    args = parser.parse_args()
    if args.orbax:
        return orbax_report()
    if not CRITERION.exists():
        print("no results: run `cargo bench --bench serde` first", file=sys.stderr)
        return 1
    out: list[str] = []
    out.append("### ResNet50 (params and state, 479 leaves, 102.7 MB)\n")
    r = resnet_table(out)
    py = json.loads(PYTHON.read_text()) if PYTHON.exists() else None
    if py:
        out.append("\n### Python on the same tree (scripts/bench_python.py)\n")
        out.append("| Python | median (ms) | Rust counterpart | Rust (ms) | Python / Rust |")
        out.append("|---|---:|---|---:|---:|")
        for p, rust in [("safejax_serialize", "to_bytes"), ("flax_to_bytes", "to_bytes"),
                        ("safejax_serialize_file", "to_writer_file"), ("safejax_serialize_file", "to_file"),
                        ("safejax_deserialize", "from_bytes_owned"), ("flax_from_bytes", "from_bytes_owned"),
                        ("safejax_deserialize", "from_bytes_views"), ("safejax_deserialize_file", "from_file_owned"),
                        ("safejax_deserialize_file", "mmap_views")]:
            pm = py["python"][p]["median_ms"]
            e = r.get(rust)
            rr = f"{pm / (e['ns'] / 1e6):.1f}×" if e else "–"
            out.append(f"| `{p}` | {pm:.1f} | `{rust}` | {ms(e)} | {rr} |")
    sweep_names = ["memcpy_touched", "memcpy_fresh", "memcpy_fresh_thp", "to_bytes", "safetensors_serialize",
                   "to_writer_reused", "from_bytes_owned", "safetensors_deserialize_copy", "from_file_owned"]
    out.append("\n### Size sweep (one f32 tensor)\n")
    s = sweep_table(out, sweep_names + ["from_bytes_views", "mmap_views"])
    out.append("\n### 10 000 tensors of 64 f32\n")
    m = many_table(out)

    out.append("\n### Targets\n")
    out.append("| target | measured | met |")
    out.append("|---|---|---|")

    def target(name: str, value: str, ok: bool | None) -> None:
        out.append(f"| {name} | {value} | {'–' if ok is None else ('yes' if ok else '**no**')} |")

    def speedup(ours: str, theirs: str, what: str) -> None:
        q = ratio(r[theirs], r[ours])
        if q is None:
            return target(what, "not run", None)
        target(what, f"{ms(r[ours])} ms vs {ms(r[theirs])} ms: {q:.2f}× faster", q >= 1.0)
    speedup("to_bytes", "safetensors_serialize", "`to_bytes` no slower than the safetensors crate (aim 1.5×)")
    speedup("from_bytes_owned", "safetensors_deserialize_copy",
            "owned `from_bytes` no slower than the safetensors crate + copy (aim 1.5×)")
    q = ratio(r["to_writer_reused"], r["memcpy_touched"])
    target("`to_writer` into a reused buffer ≤ 1.3× the bandwidth floor",
           "not run" if q is None else f"{ms(r['to_writer_reused'])} ms vs {ms(r['memcpy_touched'])} ms: {q:.2f}×",
           None if q is None else q <= 1.3)
    v = r["from_bytes_views"]
    if v and py:
        pyl = py["python"]["safejax_deserialize"]["median_ms"]
        vm = v["ns"] / 1e6
        target("views of ResNet50 ≤ 1/50 of Python safejax's load, ≤ 1 ms",
               f"{vm:.3f} ms; Python {pyl:.1f} ms: 1/{pyl / vm:.0f}", vm <= 1.0 and pyl / vm >= 50)
    for name in ["to_bytes", "to_writer_reused", "from_bytes_owned"]:
        per = [s[(name, mib)]["ns"] / (mib << 20) for mib in SWEEP_MIB if s[(name, mib)]]
        if len(per) == len(SWEEP_MIB):
            # Linear: a byte costs no more at 1 GiB than at the best size out of the cache (16 MiB up).
            grow = per[-1] / min(per[2:])
            target(f"time linear in bytes: `{name}` ns/byte at 1, 4, 16, 64, 256 MiB, 1 GiB",
                   " / ".join(f"{p:.3f}" for p in per) + f"; 1 GiB is {grow:.2f}× the best from 16 MiB",
                   grow <= 1.5)
    for name in ["to_bytes", "from_bytes_owned", "from_bytes_views"]:
        e = m.get(name)
        if e:
            per = e["ns"] / 1e3 / e["throughput"]["Elements"]
            target(f"per-tensor overhead < 2 µs (10 000 tensors): `{name}`", f"{per:.3f} µs", per < 2.0)

    print("\n".join(out))
    note = f"criterion medians, {os.cpu_count()} cores; see BENCHMARKS.md for the machine and its load"
    chart(s, sweep_names, args.svg, note)
    print(f"\n(chart written to {args.svg.relative_to(ROOT) if args.svg.is_relative_to(ROOT) else args.svg})",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
