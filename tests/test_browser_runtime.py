"""The Chromium runtime: tiny ONNX and TF.js graph models run in headless Chromium (ort-wasm,
tfjs-cpu, tfjs-wasm) and match onnxruntime / NumPy; timing, download accounting and page errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeport.errors import InputError, RuntimeGap
from edgeport.runtimes import browser
from edgeport.tensors import TensorSpec

from conftest import TOLERANCES

REASON = browser.ChromiumRuntime().availability()
needs_browser = pytest.mark.skipif(REASON is not None, reason=str(REASON))

RNG = np.random.default_rng(0)
W = RNG.standard_normal((4, 3)).astype(np.float32)
B = RNG.standard_normal(3).astype(np.float32)
X = RNG.standard_normal((5, 4)).astype(np.float32)  # batch 5 through a dynamic batch dim
EXPECTED = np.maximum(X @ W + B, 0)


def write_onnx(path: Path) -> Path:
    """MatMul + Add + Relu, input [batch, 4] -> output [batch, 3]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("MatMul", ["input", "w"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["z"]),
             helper.make_node("Relu", ["z"], ["output"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3])],
                              [numpy_helper.from_array(W, "w"), numpy_helper.from_array(B, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _dims(*sizes: int) -> dict:
    return {"dim": [{"size": str(s)} for s in sizes]}


def _const(name: str, *shape: int) -> dict:
    return {"name": name, "op": "Const", "attr": {
        "value": {"tensor": {"dtype": "DT_FLOAT", "tensorShape": _dims(*shape)}}, "dtype": {"type": "DT_FLOAT"}}}


def write_tfjs(folder: Path, op: str = "Relu") -> Path:
    """A TF.js graph model as the converter writes it: Placeholder x [-1, 4] -> MatMul(w) ->
    BiasAdd(b) -> `op` named Identity, signature x:0 -> Identity:0, one weight shard."""
    folder.mkdir(parents=True, exist_ok=True)
    f32 = {"type": "DT_FLOAT"}
    nodes = [
        {"name": "x", "op": "Placeholder", "attr": {"dtype": f32, "shape": {"shape": _dims(-1, 4)}}},
        _const("w", 4, 3), _const("b", 3),
        {"name": "mm", "op": "MatMul", "input": ["x", "w"],
         "attr": {"T": f32, "transpose_a": {"b": False}, "transpose_b": {"b": False}}},
        {"name": "ba", "op": "BiasAdd", "input": ["mm", "b"], "attr": {"T": f32, "data_format": {"s": "TkhXQw=="}}},
        {"name": "Identity", "op": op, "input": ["ba"], "attr": {"T": f32}},
    ]
    model = {
        "format": "graph-model", "generatedBy": "2.16.1", "convertedBy": "edgeport tests",
        "signature": {
            "inputs": {"x:0": {"name": "x:0", "dtype": "DT_FLOAT", "tensorShape": _dims(-1, 4)}},
            "outputs": {"Identity:0": {"name": "Identity:0", "dtype": "DT_FLOAT", "tensorShape": _dims(-1, 3)}},
        },
        "modelTopology": {"node": nodes, "library": {}, "versions": {"producer": 1808}},
        "weightsManifest": [{"paths": ["group1-shard1of1.bin"], "weights": [
            {"name": "w", "shape": [4, 3], "dtype": "float32"}, {"name": "b", "shape": [3], "dtype": "float32"}]}],
    }
    (folder / "model.json").write_text(json.dumps(model))
    (folder / "group1-shard1of1.bin").write_bytes(W.tobytes() + B.tobytes())
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("browser-models")
    return {"onnx": write_onnx(root / "tiny.onnx"), "tfjs": write_tfjs(root / "tfjs"),
            "bad-op": write_tfjs(root / "bad-op", op="NoSuchOp")}


@pytest.fixture(scope="module")
def sessions(models):
    """backend -> session of the tiny model, opened once (one Chromium for the module)."""
    opened = {}

    def get(backend: str) -> browser.BrowserSession:
        if backend not in opened:
            model = models["onnx"] if backend == "ort-wasm" else models["tfjs"]
            opened[backend] = browser.open_session(model, backend)
        return opened[backend]

    yield get
    for session in opened.values():
        session.close()


def test_backends_follow_the_model_format(models):
    assert browser.backends_for(models["tfjs"]) == ("tfjs-cpu", "tfjs-wasm")
    assert browser.backends_for(models["tfjs"] / "model.json") == ("tfjs-cpu", "tfjs-wasm")
    assert browser.backends_for(models["onnx"]) == ("ort-wasm",)
    assert browser.primary_backend(models["tfjs"]) == "tfjs-wasm"
    assert browser.primary_backend("m.ort") == "ort-wasm"
    with pytest.raises(InputError, match="model.tflite"):
        browser.backends_for("model.tflite")


@pytest.mark.e2e
@needs_browser
def test_onnx_in_ort_wasm_matches_onnxruntime(models, sessions):
    import onnxruntime

    session = sessions("ort-wasm")
    assert session.inputs == [TensorSpec("input", (None, 4), "float32")]
    assert session.outputs == [TensorSpec("output", (None, 3), "float32")]
    reference = onnxruntime.InferenceSession(str(models["onnx"]), providers=["CPUExecutionProvider"])
    expected = reference.run(None, {"input": X})[0]
    (got,) = session.run({"input": X})
    assert got.dtype == np.float32 and got.shape == (5, 3)
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCES["float32-runtime"].abs_err)
    assert session.threads == 1 and session.load_ms > 0 and session.first_run_ms > 0


@pytest.mark.e2e
@needs_browser
@pytest.mark.parametrize("backend", ["tfjs-cpu", "tfjs-wasm"])
def test_tfjs_graph_model_matches_numpy(sessions, backend):
    session = sessions(backend)
    assert session.backend == backend
    assert session.inputs == [TensorSpec("x", (None, 4), "float32")]
    assert session.outputs == [TensorSpec("Identity", (None, 3), "float32")]
    (got,) = session.run({"x": X})
    np.testing.assert_allclose(got, EXPECTED, rtol=0, atol=TOLERANCES["float32-matmul"].abs_err)


@pytest.mark.e2e
@needs_browser
@pytest.mark.parametrize("backend", ["ort-wasm", "tfjs-wasm"])
def test_time_runs_are_measured_in_the_page_without_leaking(sessions, backend):
    session = sessions(backend)
    before = session._call("tensors")  # live TF.js tensors (None for ort)
    times = session.time_runs({session.inputs[0].name: X}, runs=7, warmup=2)
    assert len(times) == 7 and all(0 < t < 1 for t in times)
    assert session._call("tensors") == before


@pytest.mark.e2e
@needs_browser
@pytest.mark.parametrize("backend", ["ort-wasm", "tfjs-wasm"])
def test_download_counts_what_the_page_fetched(models, sessions, backend):
    download = sessions(backend).download()
    folder = models["onnx"].parent if backend == "ort-wasm" else models["tfjs"]
    names = ["tiny.onnx"] if backend == "ort-wasm" else ["model.json", "group1-shard1of1.bin"]
    sizes = {f"m/{name}": (folder / name).stat().st_size for name in names}
    assert {k: v for k, v in download["files"].items() if k.startswith("m/")} == sizes
    assert download["model_bytes"] == sum(sizes.values())
    assert 0 < download["model_gzip_bytes"] <= download["model_bytes"] + 20 * len(names)
    wasm = "lib/ort-wasm-simd-threaded.wasm" if backend == "ort-wasm" else "lib/tfjs-backend-wasm-simd.wasm"
    assert download["files"][wasm] > 0
    assert download["runtime_bytes"] == sum(v for k, v in download["files"].items() if k.startswith("lib/"))


@pytest.mark.e2e
@needs_browser
def test_runtime_loads_on_the_primary_backend(models):
    with browser.ChromiumRuntime().load(str(models["tfjs"]), threads=4) as session:
        assert session.backend == "tfjs-wasm" and session.threads == 1
        np.testing.assert_allclose(session.run({"x": X[:1]})[0], EXPECTED[:1], rtol=0,
                                   atol=TOLERANCES["float32-matmul"].abs_err)


@pytest.mark.e2e
@needs_browser
def test_an_op_tfjs_lacks_is_a_runtime_gap_naming_backend_and_op(models):
    with pytest.raises(RuntimeGap, match=r"^tfjs-wasm in Chromium failed: .*NoSuchOp"):
        browser.open_session(models["bad-op"], "tfjs-wasm")


@pytest.mark.e2e
@needs_browser
def test_a_broken_onnx_file_is_a_runtime_gap(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(RuntimeGap, match=r"^ort-wasm in Chromium failed: \S") as info:
        browser.open_session(bad, "ort-wasm")
    assert "\n" not in str(info.value)


@needs_browser
def test_availability_asks_for_npm_ci_without_node_modules(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPORT_NODE_MODULES", str(tmp_path))
    assert "npm ci" in browser.ChromiumRuntime().availability()
    monkeypatch.delenv("EDGEPORT_NODE_MODULES")
    assert browser.ChromiumRuntime().availability() is None


def test_availability_names_the_chromium_package(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPORT_CHROMIUM", str(tmp_path / "no-such-chromium"))
    assert "apt-get install chromium" in browser.ChromiumRuntime().availability()


def test_availability_imports_no_playwright():
    code = ("import sys; from edgeport.runtimes.browser import ChromiumRuntime; ChromiumRuntime().availability(); "
            "print('playwright' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@needs_browser
def test_a_chromium_that_will_not_start_is_a_runtime_gap(models):
    code = ("from edgeport.errors import RuntimeGap\nfrom edgeport.runtimes import browser\n"
            f"try:\n    browser.open_session({str(models['onnx'])!r}, 'ort-wasm')\n"
            "except RuntimeGap as exc:\n    print(exc)")
    env = {**os.environ, "EDGEPORT_CHROMIUM": shutil.which("false") or "false"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.startswith("Chromium failed to launch (") and "install Debian package 'chromium'" in out
