"""Reproducible bytes: two exports of one model with one recipe into different output folders give
byte-identical artifacts and manifests, on every target usable here.

Each export runs in its own process with its own hash seed, as two CI runs would. report.json holds
latencies, so it is compared with the timing fields removed; no file, report.json included, may
hold the output folder's path or the temporary folder the export was made in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import DIGITS, ROOT, needs_torch

REPORT = "report.json"
# relative to ROOT (the exports' working folder): data paths in the report then hold no folder
CALIB, EVAL = "samples/digits/calib.npz", "samples/digits/eval.npz"
TIMING_KEYS = {"delta"}  # besides every `*_ms` key: float p50 / p50, a ratio of two timings


def export_twice(tmp_path: Path, targets: str, *flags: str) -> tuple[Path, Path]:
    """The digits CNN exported twice, in two processes with different hash seeds."""
    outs = []
    for run, seed in (("first", "1"), ("second", "2")):
        out = tmp_path / run / "out"  # different folders, also different depths
        result = subprocess.run(
            [sys.executable, "-m", "edgeport", "export", DIGITS, "--target", targets, "--calib", CALIB,
             "--eval", EVAL, "--out", str(out), "--runs", "2", "--warmup", "1", "--json", *flags],
            cwd=ROOT, capture_output=True, text=True,
            env={**os.environ, "EDGEPORT_QUIET": "1", "PYTHONHASHSEED": seed})
        assert result.returncode == 0, result.stderr
        outs.append(out)
    return outs[0], outs[1]


def files_of(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


def without_timings(value):
    """report.json's content with every timing field left out."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if not (k.endswith("_ms") or k in TIMING_KEYS)}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def assert_reproducible(first: Path, second: Path, tmp_root: Path) -> list[str]:
    """Same file names, same bytes (report.json: same content but timings), and no file naming
    the output folders or a temporary folder. Returns the file names compared."""
    a, b = files_of(first), files_of(second)
    assert sorted(a) == sorted(b)
    differ = [name for name in a if name != REPORT and a[name].read_bytes() != b[name].read_bytes()]
    assert not differ, f"not byte-identical across two exports: {differ}"
    reports = [json.loads(files[REPORT].read_text()) for files in (a, b)]
    assert without_timings(reports[0]) == without_timings(reports[1])
    forbidden = {str(tmp_root), str(first), str(second), tempfile.gettempdir().rstrip(os.sep) + os.sep}
    for files in (a, b):
        for name, path in files.items():
            data = path.read_bytes()
            held = [f for f in forbidden if f.encode() in data]
            assert not held, f"{name} holds the path {held}"
    return sorted(a)


def statuses(report: dict) -> dict[str, str]:
    return {t["target"]: t["status"] for t in report["targets"]}


@needs_torch
def test_onnx_and_ort_exports_are_byte_identical(tmp_path):
    first, second = export_twice(tmp_path, "onnx,onnx-mobile", "--quantize", "int8")
    names = assert_reproducible(first, second, tmp_path)
    assert {"onnx/digits.onnx", "onnx-mobile/digits.ort"} <= set(names)


@pytest.mark.e2e
@needs_torch
@pytest.mark.parametrize("recipe", [
    ["--quantize", "int8", "--ios-target", "iOS17"],  # every target: ios needs iOS17 for W8A8
    ["--quantize", "fp16"],                           # the float targets (the C library refuses fp16)
])
def test_every_target_exports_byte_identical(tmp_path, recipe):
    first, second = export_twice(tmp_path, "all", *recipe)
    names = assert_reproducible(first, second, tmp_path)
    report = json.loads((first / REPORT).read_text())
    exported = [t for t, status in statuses(report).items() if status == "exported"]
    assert exported and all(any(n.startswith(f"{t}/") for n in names) for t in exported)
    # after the comparison: a target this machine cannot use was not compared, and says so
    missing = {t["target"]: t["reason"] for t in report["targets"]
               if t["status"] != "exported" and "int8 kernels" not in t["reason"]}
    if missing:
        pytest.skip(f"not compared (unusable here): {missing}")


# ------------------------------------------------------------------ the canonical forms themselves

def _ort_bytes(onnx_path: Path, out: Path) -> bytes:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(out)
    options.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    return out.read_bytes()


def test_canonical_ort_is_one_form_of_the_same_model(float_onnx, tmp_path):
    """onnxruntime writes the same model in several byte orders, even within one process; the
    canonical form is one, loads, and computes the same outputs."""
    import onnxruntime as ort

    from edgeport.exporters.reproducible import canonical_ort

    saved = [_ort_bytes(float_onnx, tmp_path / f"{i}.ort") for i in range(4)]
    canonical = {canonical_ort(data) for data in saved}
    assert len(canonical) == 1
    (data,) = canonical
    assert canonical_ort(data) == data  # a fixed point
    x = np.random.default_rng(0).normal(size=(5, 1, 8, 8)).astype(np.float32)
    outputs = []
    for model in (saved[0], data):
        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        outputs.append(session.run(None, {session.get_inputs()[0].name: x})[0])
    np.testing.assert_array_equal(*outputs)


def test_canonical_ort_leaves_other_layouts_alone():
    from edgeport.exporters.reproducible import canonical_ort

    assert canonical_ort(b"not an ort file at all") == b"not an ort file at all"


def test_c_manifest_refuses_absolute_file_names(tmp_path):
    from edgeport.mcu.toolchain.manifest import read_manifest, write_manifest

    with pytest.raises(ValueError, match="relative to the library folder"):
        write_manifest(tmp_path, {"name": "m", "library": {"files": [str(tmp_path / "m.c")]}})
    write_manifest(tmp_path, {"name": "m", "library": {"files": ["m.c", "m.h"]}})
    assert read_manifest(tmp_path)["library"]["files"] == ["m.c", "m.h"]


def test_file_sources_are_named_without_their_folder():
    from edgeport.exporters.reproducible import source_label

    assert source_label("/home/me/models/kws.tflite") == "kws.tflite"
    assert source_label("../m.onnx") == "m.onnx"
    assert source_label("samples.digits.model:build") == "samples.digits.model:build"
