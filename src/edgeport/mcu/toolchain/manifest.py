"""The manifest of a generated C library folder (`edgeport.json`): its name, board, I/O names and
the compiler's figures (`LibraryInfo`). The C exporter writes it; the QEMU runtime and the checks
read it to build and run the library on its board.

The manifest is part of the artifact, so it holds nothing that depends on where or when it was
written: file names are relative to the library folder (the export is made in a temporary
folder and moved), and there is no timestamp.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath, PureWindowsPath

MANIFEST = "edgeport.json"


def read_manifest(folder: Path) -> dict:
    """The manifest of the library in `folder`."""
    return json.loads((Path(folder) / MANIFEST).read_text())


def write_manifest(folder: Path, manifest: dict) -> Path:
    """Write `manifest` into `folder` (keys in the order given, one space indents).

    Raises:
        ValueError: a `files` entry is an absolute path (the library folder moves after the export).
    """
    absolute = [f for f in _files(manifest) if PurePosixPath(f).is_absolute() or PureWindowsPath(f).drive]
    if absolute:
        raise ValueError(f"{MANIFEST}: file names must be relative to the library folder, not {absolute[:2]}")
    path = Path(folder) / MANIFEST
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return path


def _files(value) -> list[str]:
    """Every entry of a `files` list anywhere in the manifest."""
    if isinstance(value, dict):
        return [str(f) for key, item in value.items() for f in (item if key == "files" else _files(item))]
    if isinstance(value, list):
        return [f for item in value for f in _files(item)]
    return []
