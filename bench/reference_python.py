"""The interpreter of the reference package (c2casgiutils==0.14.0) that benches compare with.

It is given with ``--reference-python PATH`` or, for every bench at once, the ``C2C_BENCH_REFERENCE_PYTHON``
environment variable. A bench that compares with the reference stops at once with a one-line message when it is
missing or not an executable file, before it starts anything.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

VARIABLE = "C2C_BENCH_REFERENCE_PYTHON"


def add_argument(parser: argparse.ArgumentParser, ours_only: str | None = None) -> None:
    """The ``--reference-python`` option; ``ours_only`` names the option that skips the reference, if any."""
    skip = f", or {ours_only} to measure this package only" if ours_only else ""
    parser.add_argument(
        "--reference-python",
        metavar="PATH",
        default=os.environ.get(VARIABLE) or None,
        help=f"Python of a virtual environment with c2casgiutils==0.14.0 (default: ${VARIABLE}){skip}; "
        "see bench/README.md",
    )


def checked(parser: argparse.ArgumentParser, path: str | None, ours_only: str | None = None) -> str:
    """``path`` when it is an executable file; else the bench stops with a message (exit status 2, no traceback)."""
    skip = f", or give {ours_only} to measure this package only" if ours_only else ""
    if not path:
        parser.error(
            f"the reference interpreter is missing: give --reference-python PATH or set {VARIABLE} to the Python "
            f"of a virtual environment with c2casgiutils==0.14.0 (see bench/README.md){skip}"
        )
    if not Path(path).is_file() or not os.access(path, os.X_OK):
        parser.error(f"--reference-python {path}: not an executable file{skip}")
    return path
