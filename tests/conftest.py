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
    """Run the real `edgeport` entry point in a subprocess."""
    return subprocess.run([sys.executable, "-m", "edgeport", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "EDGEPORT_QUIET": "1"})


def load_report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="session")
def digits_exports(tmp_path_factory):
    """recipe -> output folder of `edgeport export` of the digits CNN to onnx + onnx-mobile."""
    from edgeport.cli import main

    made = {}

    def get(recipe: str) -> Path:
        if recipe not in made:
            out = tmp_path_factory.mktemp(f"digits-{recipe}")
            code = main(["export", DIGITS, "--target", "onnx,onnx-mobile", "--quantize", recipe,
                         "--calib", CALIB, "--eval", EVAL, "--out", str(out), "--runs", "20", "--warmup", "2",
                         "--json"])
            assert code == 0
            made[recipe] = out
        return made[recipe]

    return get


@pytest.fixture(scope="session")
def float_onnx(digits_exports) -> Path:
    """The digits CNN as a float32 .onnx file."""
    return digits_exports("none") / "onnx" / "digits.onnx"
