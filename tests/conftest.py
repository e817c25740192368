"""Shared fixtures: the digits sample, exported once per recipe, and a CLI runner."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIGITS = "samples.digits.model:build"
CALIB = str(ROOT / "samples" / "digits" / "calib.npz")
EVAL = str(ROOT / "samples" / "digits" / "eval.npz")

os.environ.setdefault("EDGEPORT_QUIET", "1")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run the real `edgeport` entry point in a subprocess (test models importable as `testmodels`)."""
    path = os.pathsep.join(p for p in (str(ROOT / "tests"), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "edgeport", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "EDGEPORT_QUIET": "1", "PYTHONPATH": path})


def load_report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """Export the digits CNN once per label and cache it: exported(label, targets, *flags) ->
    (report dict, output folder). The export runs in-process and must exit 0."""
    from edgeport.cli import main

    made = {}

    def get(label: str, targets: str, *flags: str) -> tuple[dict, Path]:
        if label not in made:
            out = tmp_path_factory.mktemp(label)
            assert main(["export", DIGITS, "--target", targets, "--calib", CALIB, "--eval", EVAL,
                         "--out", str(out), "--json", *flags]) == 0
            made[label] = (load_report(out), out)
        return made[label]

    return get


@pytest.fixture(scope="session")
def digits_exports(exported):
    """recipe -> output folder of `edgeport export` of the digits CNN to onnx + onnx-mobile."""
    return lambda recipe: exported(f"digits-{recipe}", "onnx,onnx-mobile", "--quantize", recipe,
                                   "--runs", "20", "--warmup", "2")[1]


@pytest.fixture(scope="session")
def float_onnx(digits_exports) -> Path:
    """The digits CNN as a float32 .onnx file."""
    return digits_exports("none") / "onnx" / "digits.onnx"
