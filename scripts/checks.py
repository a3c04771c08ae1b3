"""What the checkers of Rust-written files share: the failure type, and the loop that checks every
file, prints one line each and the closing `N passed, M failed`."""

from __future__ import annotations

import traceback
from typing import Callable, Iterable


class CheckError(Exception):
    """A check that failed, with a message that says what differs."""


def ensure(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckError(msg)


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
