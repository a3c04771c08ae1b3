"""What the checkers of Rust-written files share: the failure type, the comparison of tensors with a
fixture's record, and the loop that checks every file, prints one line each and the closing
`N passed, M failed`."""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

import models


class CheckError(Exception):
    """A check that failed, with a message that says what differs."""


def ensure(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckError(msg)


def few(names: list, shown: int = 5) -> str:
    """'none', or the count and the first `shown` names."""
    if not names:
        return "none"
    more = f", ... {len(names) - shown} more" if len(names) > shown else ""
    return f"{len(names)} ({', '.join(map(str, names[:shown]))}{more})"


def ensure_same_keys(what: str, got, want) -> None:
    """Fails naming the keys of `want` that `got` lacks and those it has beyond them (counts, the first few)."""
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    ensure(not missing and not extra, f"{what} differ: missing {few(missing)}, unexpected {few(extra)}")


def check_leaves(what: str, flat: dict, fx: dict, fx_name: str) -> None:
    """flat: {key: leaf} against the fixture's tensors: keys, dtypes, shapes, values exactly."""
    want = fx["tensors"]
    ensure_same_keys(f"{what}: keys", flat, want)
    for k, e in want.items():
        leaf = flat[k]
        ensure(isinstance(leaf, (np.ndarray, np.generic)),
               f"{what}: `{k}` is a {type(leaf).__name__}, not a numpy array or scalar")
        got = np.asarray(leaf)
        dt = models.st_dtype_name(got.dtype) if got.dtype in models.ST_DTYPES.values() else str(got.dtype)
        ensure(dt == e["dtype"], f"{what}: `{k}`: dtype {dt}, expected {e['dtype']}")
        transposed = " (the expected shape reversed: transposed?)" if got.ndim > 1 and \
            list(got.shape)[::-1] == e["shape"] else ""
        ensure(list(got.shape) == e["shape"],
               f"{what}: `{k}`: shape {list(got.shape)}, expected {e['shape']}{transposed}")
        if got.dtype.kind in "iub":
            ref = np.asarray(e["values"], dtype=got.dtype).reshape(e["shape"])
            same = np.array_equal(got, ref)
        else:  # f16 / bf16 / f32 / f64: the JSON holds the exact values as doubles
            ref = np.asarray(e["values"], dtype=np.float64).reshape(e["shape"])
            same = np.array_equal(got.astype(np.float64), ref)
        if not same:
            bad = np.flatnonzero(got.astype(np.float64).reshape(-1) != ref.astype(np.float64).reshape(-1))
            j = int(bad[0]) if bad.size else 0
            transposed = got.ndim > 1 and np.array_equal(got.astype(np.float64).T, ref.astype(np.float64))
            hint = " (it holds the expected tensor transposed)" if transposed else ""
            raise CheckError(f"{what}: `{k}`: value at flat index {j} is {got.reshape(-1)[j]}, {fx_name} has "
                             f"{ref.reshape(-1)[j]}{hint}")


def ensure_close(what: str, got: np.ndarray, entry: dict, tolerance: float, fx_name: str) -> None:
    """An output against a fixture's record of it ({"shape", "values"}), within `tolerance` (relative and
    absolute)."""
    want = np.asarray(entry["values"], np.float32).reshape(entry["shape"])
    ensure(got.shape == want.shape, f"{what}: shape {list(got.shape)}, expected {entry['shape']}")
    try:
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)
    except AssertionError as e:
        raise CheckError(f"{what} differs from {fx_name}: {e}") from None


def run_checks(jobs: Iterable[tuple[str, Callable[[], str]]], verbose: bool) -> int:
    """Runs each `(label, check)`; `check` returns a detail for the PASS line or raises. Returns the
    exit status: 1 if any check failed."""
    passed = failed = 0
    for label, check in jobs:
        try:
            print(f"PASS {label}: {check()}")
            passed += 1
        except Exception as e:  # noqa: BLE001 - report every file
            msg = str(e) if isinstance(e, CheckError) else f"{type(e).__name__}: {e}"
            print(f"FAIL {label}: {msg}")
            if verbose and not isinstance(e, CheckError):
                traceback.print_exc()
            failed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def parse_args(doc: str, dir_help: str, default_fixtures: Path, fixtures_help: str) -> argparse.Namespace:
    """The checkers' common command line: DIR, --fixtures, -v. Exits with status 2 if DIR is not a
    directory."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path, help=dir_help)
    ap.add_argument("--fixtures", type=Path, default=default_fixtures,
                    help=f"{fixtures_help} (default {default_fixtures})")
    ap.add_argument("-v", "--verbose", action="store_true", help="print tracebacks of failures")
    args = ap.parse_args()
    if not args.dir.is_dir():
        print(f"error: {args.dir} is not a directory", file=sys.stderr)
        sys.exit(2)
    return args
