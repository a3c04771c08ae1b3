"""What the checkers of Rust-written files share: the failure type, and the loop that checks every
file, prints one line each and the closing `N passed, M failed`."""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Callable, Iterable


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
