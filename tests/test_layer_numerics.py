"""Per-layer numerics (#16, `--layers`): SQNR and cosine of every layer's output against the float
model, and the layers where the error enters."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import CALIB, DIGITS, EVAL, load_report, run_cli
from edgeport.checks.layers import compare_onnx, sqnr_db, worst


def _mlp(w2_noise: float = 0.0):
    rng = np.random.default_rng(0)
    w1, w2, w3 = (rng.normal(size=(16, 16)).astype(np.float32) for _ in range(3))
    w2 = w2 + w2_noise * rng.normal(size=w2.shape).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h1"], name="mm1"),
             helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
             helper.make_node("MatMul", ["a1", "w2"], ["h2"], name="mm2"),
             helper.make_node("MatMul", ["h2", "w3"], ["y"], name="mm3")]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 16])],
                              [numpy_helper.from_array(w, n) for w, n in ((w1, "w1"), (w2, "w2"), (w3, "w3"))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_sqnr():
    x = np.ones(100, np.float32)
    assert sqnr_db(x, x) == float("inf")
    assert sqnr_db(x, x * 1.1) == pytest.approx(20.0, abs=1e-4)  # noise 0.1 of the signal -> 20 dB


def test_the_layer_where_the_error_enters_is_named():
    feeds = {"x": np.random.default_rng(1).normal(size=(8, 16)).astype(np.float32)}
    rows = compare_onnx(_mlp(), _mlp(w2_noise=0.05), feeds, {"mm2": "block.2"})
    assert [r["tensor"] for r in rows] == ["h1", "a1", "h2", "y"]
    by_name = {r["tensor"]: r for r in rows}
    assert by_name["h1"]["sqnr_db"] == 999.0 and by_name["a1"]["cosine"] == 1.0
    assert by_name["h2"]["sqnr_db"] < 40 and by_name["h2"]["layer"] == "block.2"
    top = worst(rows)
    assert top[0]["tensor"] == "h2" and top[0]["error_share"] > 0.8  # mm3 only carries mm2's error on


@pytest.mark.e2e
def test_layers_flag_reports_every_layer(tmp_path):
    out = tmp_path / "out"
    result = run_cli("export", DIGITS, "--target", "onnx,onnx-mobile,android", "--quantize", "int8", "--calib", CALIB,
                     "--eval", EVAL, "--out", str(out), "--runs", "2", "--layers")
    assert result.returncode == 0, result.stderr
    onnx_t, ort_t, android = load_report(out)["targets"]
    for target in (onnx_t, android):  # ONNX Runtime with extra outputs; LiteRT with every tensor preserved
        layers = target["checks"]["layers"]
        assert layers["status"] == "measured" and layers["compared"] >= 5 and layers["samples"] == 32, layers
        assert all(r["sqnr_db"] > 30 and r["cosine"] > 0.999 for r in layers["layers"])
        assert sum(r["error_share"] for r in layers["layers"]) == pytest.approx(1.0, abs=1e-3)
        assert {r["layer"] for r in layers["layers"]} >= {"features.1", "features.3"}, target["target"]
    assert "LiteRT's reference kernels" in android["checks"]["layers"]["how"]
    assert "where the error enters" in result.stdout
    assert ort_t["checks"]["layers"]["status"] == "not-run"
    assert "cannot be edited to expose intermediates" in ort_t["checks"]["layers"]["reason"]


@pytest.mark.e2e
def test_layers_are_opt_in(tmp_path):
    out = tmp_path / "out"
    assert run_cli("export", DIGITS, "--target", "onnx", "--eval", EVAL, "--out", str(out), "--runs", "2").returncode == 0
    assert "layers" not in load_report(out)["targets"][0]["checks"]
