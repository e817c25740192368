"""Shared test setup: the digits sample, exported once per recipe; a CLI runner; the tolerance table
per dtype; skip markers for missing packages; and, in CI, a gate that fails the run on any skip.

Tiers: `pytest` runs everything (CI); `pytest -m "not e2e"` leaves out the end-to-end tests
(exports to heavy targets, C builds, QEMU, Chromium, Core ML / litert-torch conversion, training).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
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
needs_litert = pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None,
                                  reason="ai-edge-litert (reference kernels, flatbuffer schema) not installed")


# ------------------------------------------------------------------ tolerances

@dataclass(frozen=True)
class Tolerance:
    """How close outputs must come to their reference; a field left None is not checked.

    cosine: lowest cosine similarity of the flattened outputs.
    abs_err: largest absolute difference, in output units (the digits CNN's logits reach |25|).
    rel_err: largest absolute difference over the largest |reference| value.
    steps: integer outputs: largest difference in quantization steps (0: bit-exact).
    """

    cosine: float | None = None
    abs_err: float | None = None
    rel_err: float | None = None
    steps: int | None = None


TOLERANCES = {
    # An artifact against PyTorch through the export pipeline, by the dtype the artifact computes in
    # (ONNX / ORT, LiteRT, Core ML, .pt2 sources).
    "float32": Tolerance(cosine=0.999999, abs_err=1e-3),  # float rounding and op order
    "float16": Tolerance(cosine=0.9999, abs_err=0.05),  # half precision: its step at 16..32 is 2^-6
    "dynamic-int8": Tolerance(cosine=0.999, abs_err=1.0),  # int8 weights, float activations
    "int8": Tolerance(cosine=0.999, abs_err=5.0),  # int8 weights and activations (W8A8)
    "int16x8": Tolerance(cosine=0.9995, abs_err=5.0),  # int16 activations: the int8 weights dominate the error
    # Core ML with binary / ternary layers as palettes (test_ios_lowbit's docstring has the measurements).
    "float32-lowbit": Tolerance(abs_err=1e-4),  # the ±1 integers and α stored exactly: summation order only
    "int8-lowbit": Tolerance(abs_err=0.3),  # W8A8 around the palettes: the int8 activations dominate
    # TF.js in Chromium, relative to the largest output (the models' output scales differ).
    "float32-tfjs": Tolerance(rel_err=1e-4),  # the graph model against PyTorch
    "float32-same-weights": Tolerance(rel_err=1e-5),  # against onnxruntime given the same dequantized weights
    "float16-weights": Tolerance(rel_err=2e-3),  # weights stored as float16, computed in float32
    "uint16-weights": Tolerance(rel_err=1e-3),  # weights stored affine uint16
    "uint8-weights": Tolerance(rel_err=3e-2),  # weights stored affine uint8
    # One float32 model in two runtimes: onnxruntime-web vs onnxruntime, onnxruntime vs PyTorch,
    # the browser sample's page vs PyTorch.
    "float32-runtime": Tolerance(abs_err=1e-4),
    "float32-matmul": Tolerance(abs_err=1e-5),  # a 4x3 MatMul + bias + ReLU in TF.js against NumPy
    # Integer artifacts against each other.
    "int8-steps": Tolerance(steps=1),  # two int8 artifacts of one plan (cross-target rows)
    "int16-steps": Tolerance(steps=4),  # the same with int16 activations, in int16 steps
    "int8-bit-exact": Tolerance(steps=0),  # the Cortex-M C library against LiteRT's reference kernels
}
# recipe -> the TOLERANCES entry of the dtype its artifacts compute in
RECIPE_DTYPE = {"none": "float32", "fp16": "float16", "dynamic-int8": "dynamic-int8", "int8": "int8",
                "int16x8": "int16x8"}


# ------------------------------------------------------------------ nothing skips in CI

def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


class SkipGate:
    """In CI every toolchain and package is installed, so a skip means a check that did not run:
    the run fails (exit 1) and names each skipped test with its reason. Locally skips stay skips."""

    def __init__(self):
        self.skipped: list[tuple[str, str]] = []

    def _record(self, report) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            self.skipped.append((report.nodeid, reason.removeprefix("Skipped: ")))

    def pytest_collectreport(self, report) -> None:  # a skip at module level skips a whole file
        self._record(report)

    def pytest_runtest_logreport(self, report) -> None:
        self._record(report)

    def pytest_sessionfinish(self, session) -> None:
        if self.skipped and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.skipped:
            terminalreporter.section("skipped in CI", sep="=", red=True, bold=True)
            for nodeid, reason in self.skipped:
                terminalreporter.line(f"SKIPPED IN CI {nodeid}: {reason}", red=True)
            terminalreporter.line(f"{len(self.skipped)} skipped: CI (CI={os.environ['CI']}) fails on any skip")


def pytest_configure(config):
    if _in_ci():
        config.pluginmanager.register(SkipGate(), "edgeport-skip-gate")


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
