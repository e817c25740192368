"""Progress bars on long steps (calibration, latency runs), on stderr, off with EDGEPORT_QUIET=1."""

from __future__ import annotations

import os
import sys


def progress(iterable, total: int | None = None, desc: str = ""):
    """Wrap `iterable` in a tqdm bar when stderr is a terminal and progress is not switched off."""
    if os.environ.get("EDGEPORT_QUIET") == "1" or not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True)
