"""Shared test setup: the digits sample, exported once per recipe; a CLI runner; the tolerance table
per dtype; skip markers for missing packages; the Cortex-M C library's checks against LiteRT's
reference kernels (compiled with the host gcc); and, in CI, a gate that fails the run on any skip.

Tiers: `pytest` runs everything (CI); `pytest -m "not e2e"` leaves out the end-to-end tests
(exports to heavy targets, C builds, QEMU, Chromium, Core ML / litert-torch conversion, training).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from testmodels import tflite_graphs

from edgeport.mcu.compiler.codegen import KERNEL_DIR, generate_library
from edgeport.mcu.compiler.tflite_ir import read_tflite

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
    "weight-only-int8": Tolerance(cosine=0.999, abs_err=1.0),  # int8 weights, float activations and compute
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
                "int16x8": "int16x8", "weight-only-int8": "weight-only-int8"}


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


# ------------------------------------------------------------------ Cortex-M C library vs LiteRT

MLPERF_TINY = [ROOT / "tests" / "data" / "mlperf-tiny", ROOT.parent / "shared" / "models" / "mlperf-tiny"]
SAMPLES = 20  # random inputs per bit-exactness check
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="host gcc not installed")
needs_arm_gcc = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                                   reason="arm-none-eabi-gcc not installed (Debian: gcc-arm-none-eabi)")
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O2"]
DSP_VARIANTS = {"plain": [], "dsp-emulated": ["-DEP_EMULATE_DSP", f"-I{KERNEL_DIR}"]}

MAIN_C = """#include <stdio.h>
#include "@name@.h"

/* Reads N inputs from argv[1], writes N outputs to argv[2] (raw values, native order). */
int main(int argc, char **argv)
{
    static @in_t@ x[@NAME@_INPUT_SIZE];
    static @out_t@ y[@NAME@_OUTPUT_SIZE];
    FILE *in, *out;
    if (argc != 3) return 2;
    in = fopen(argv[1], "rb");
    out = fopen(argv[2], "wb");
    if (!in || !out) return 2;
    while (fread(x, sizeof x[0], @NAME@_INPUT_SIZE, in) == @NAME@_INPUT_SIZE) {
        if (@fn@(x, y) != 0) return 4;
        if (fwrite(y, sizeof y[0], @NAME@_OUTPUT_SIZE, out) != @NAME@_OUTPUT_SIZE) return 5;
    }
    fclose(in);
    return fclose(out) != 0;
}
"""


def model_bytes(name: str) -> bytes:
    """An MLPerf Tiny model: the repo's copy, else the shared one, else skip."""
    for folder in MLPERF_TINY:
        if (folder / name).exists():
            return (folder / name).read_bytes()
    pytest.skip(f"{name} not found in {MLPERF_TINY[0]} or {MLPERF_TINY[1]}")


def litert_reference(tflite: bytes, inputs: np.ndarray, tensors: tuple[int, ...] = ()) -> list[np.ndarray]:
    """Outputs of LiteRT's reference kernels per input, and any extra tensors asked for."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=tflite, experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                              experimental_preserve_all_tensors=bool(tensors))
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    results = [[] for _ in range(1 + len(tensors))]
    for x in inputs:
        interpreter.set_tensor(inp["index"], x.reshape(inp["shape"]))
        interpreter.invoke()
        for slot, index in zip(results, (out["index"], *tensors)):
            slot.append(interpreter.get_tensor(index).copy())
    return [np.stack(r) for r in results]


def litert_outputs(tflite: bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Every output of LiteRT's reference kernels, per sample, for inputs given per port."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=tflite, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    ins, outs = interpreter.get_input_details(), interpreter.get_output_details()
    results = [[] for _ in outs]
    for i in range(len(inputs[0])):
        for detail, values in zip(ins, inputs):
            interpreter.set_tensor(detail["index"], values[i].reshape(detail["shape"]))
        interpreter.invoke()
        for slot, detail in zip(results, outs):
            slot.append(interpreter.get_tensor(detail["index"]).copy())
    return [np.stack(r) for r in results]


def run_c(lib: Path, name: str, fn: str, in_t: str, out_t: str, inputs: np.ndarray, out_shape, out_dtype,
          tmp: Path, cflags=()) -> np.ndarray:
    """Compile the library with a test main (host gcc) and run it on all inputs at once."""
    main = (MAIN_C.replace("@name@", name).replace("@NAME@", name.upper()).replace("@fn@", fn)
            .replace("@in_t@", in_t).replace("@out_t@", out_t))
    (tmp / "main.c").write_text(main)
    exe = tmp / f"{fn}.exe"
    sources = [str(p) for p in sorted(lib.glob("*.c"))]
    build = subprocess.run(["gcc", *CFLAGS, *cflags, f"-I{lib}", "-o", str(exe), str(tmp / "main.c"), *sources],
                           capture_output=True, text=True, check=False)
    assert build.returncode == 0, build.stderr
    (tmp / "in.bin").write_bytes(np.ascontiguousarray(inputs).tobytes())
    run = subprocess.run([str(exe), str(tmp / "in.bin"), str(tmp / "out.bin")], capture_output=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    return np.frombuffer((tmp / "out.bin").read_bytes(), dtype=out_dtype).reshape(len(inputs), *out_shape)


def random_inputs(tflite: bytes, n: int, seed: int = 0) -> np.ndarray:
    graph = read_tflite(tflite)
    tensor = graph.tensors[graph.inputs[0]]
    rng = np.random.default_rng(seed)
    if tensor.dtype == "int8":
        return rng.integers(-128, 128, (n, *tensor.shape), dtype=np.int8)
    x = rng.normal(0.0, 2.0, (n, *tensor.shape)).astype(np.float32)
    # some values halfway between int8 steps: QUANTIZE rounds them away from zero
    scale = graph.tensors[graph.consumers(graph.inputs[0])[0].outputs[0]].scale
    x.reshape(n, -1)[:, :7] = (np.arange(-3, 4) + 0.5).astype(np.float32) * np.float32(scale)
    return x


def check_bit_exact(tflite: bytes, name: str, tmp: Path, cflags=(), n: int = SAMPLES, storage=None):
    """Generate (with `storage`, default dense), compile, run; assert byte equality with LiteRT for
    <name>_invoke and, for float I/O, <name>_invoke_f32. Returns the LibraryInfo."""
    lib = tmp / "lib"
    info = generate_library(tflite, name, lib, source=f"{name}.tflite", storage=storage)
    inputs = random_inputs(tflite, n)
    if not info.float_api:
        (ref,) = litert_reference(tflite, inputs)
        got = run_c(lib, info.name, f"{info.name}_invoke", "int8_t", "int8_t", inputs, ref.shape[1:], np.int8,
                    tmp, cflags)
        assert len(np.unique(ref)) > 3, "degenerate reference outputs: the comparison would mean little"
        np.testing.assert_array_equal(got, ref)
        return info
    # float I/O: the int8 core through <name>_invoke, the whole model through <name>_invoke_f32
    graph = read_tflite(tflite)
    core_in = graph.consumers(graph.inputs[0])[0].outputs[0]
    core_out = graph.producer(graph.outputs[0]).inputs[0]
    ref, q_in, q_out = litert_reference(tflite, inputs, (core_in, core_out))
    in_t = "float" if info.inputs[0]["dtype"] == "float32" else "int8_t"
    out_t = "float" if info.outputs[0]["dtype"] == "float32" else "int8_t"
    got = run_c(lib, info.name, f"{info.name}_invoke_f32", in_t, out_t, inputs, ref.shape[1:], ref.dtype, tmp, cflags)
    np.testing.assert_array_equal(got.view(np.uint8), ref.view(np.uint8))
    got_q = run_c(lib, info.name, f"{info.name}_invoke", "int8_t", "int8_t", q_in, q_out.shape[1:], np.int8,
                  tmp, cflags)
    np.testing.assert_array_equal(got_q, q_out)
    return info


# name -> .tflite bytes: the int8 graphs the C library is checked on
MCU_MODELS = {
    "kws": lambda: model_bytes("kws_ref_model.tflite"),
    "ad": lambda: model_bytes("ad01_int8.tflite"),
    "ops": tflite_graphs.ops_graph,
    "layout": tflite_graphs.layout_graph,
    "conv": tflite_graphs.conv_variants_graph,
}
