"""The manifest of a generated C library folder (`edgeport.json`): its name, board, I/O names and
the compiler's figures (`LibraryInfo`). The C exporter writes it; the QEMU runtime and the checks
read it to build and run the library on its board."""

from __future__ import annotations

import json
from pathlib import Path

MANIFEST = "edgeport.json"


def read_manifest(folder: Path) -> dict:
    """The manifest of the library in `folder`."""
    return json.loads((Path(folder) / MANIFEST).read_text())
