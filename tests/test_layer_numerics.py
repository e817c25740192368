"""Per-layer numerics (#16, `--layers`): SQNR and cosine of every layer's output against the float
model, and the layers where the error enters."""

import importlib.util

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import CALIB, DIGITS, EVAL, ROOT, load_report, needs_torch, run_cli
from edgeport.checks.layers import compare_onnx, sqnr_db, worst
from edgeport.runtimes.qemu import QemuRuntime


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


needs_coremltools = pytest.mark.skipif(importlib.util.find_spec("coremltools") is None,
                                       reason="coremltools is not installed")
QEMU_MISSING = QemuRuntime().availability()
needs_qemu = pytest.mark.skipif(QEMU_MISSING is not None, reason=str(QEMU_MISSING))


def _measured(target: dict) -> dict:
    """The target's layers check, measured, every row with a finite SQNR and the worst named."""
    layers = target["checks"]["layers"]
    assert layers["status"] == "measured", layers
    assert layers["compared"] == len(layers["layers"]) > 0 and layers["samples"] == 32
    assert all(-999 < r["sqnr_db"] < 999 for r in layers["layers"]), layers["layers"]
    assert layers["worst"] and set(layers["worst"]) <= {r["tensor"] for r in layers["layers"]}
    assert sum(r["error_share"] for r in layers["layers"]) == pytest.approx(1.0, abs=1e-3)
    return layers


@pytest.mark.e2e
@needs_torch
@needs_coremltools
def test_layers_on_core_ml(tmp_path):
    """W8A8 Core ML in the MIL evaluator against the fp32 program of the same traced module."""
    out = tmp_path / "out"
    result = run_cli("export", DIGITS, "--target", "ios", "--quantize", "int8", "--ios-target", "iOS17",
                     "--calib", CALIB, "--eval", EVAL, "--out", str(out), "--runs", "2", "--layers")
    assert result.returncode == 0, result.stderr
    (ios,) = load_report(out)["targets"]
    layers = _measured(ios)
    assert "MIL evaluator" in layers["how"] and layers["unmatched_ops"] == 0
    rows = layers["layers"]
    # every op of the digits CNN, named by its module: conv / relu / pool / flatten / linear
    assert [r["op"] for r in rows] == ["conv", "relu", "conv", "relu", "max_pool", "reshape", "linear", "relu", "linear"]
    assert [r["layer"] for r in rows] == ["features.0", "features.1", "features.2", "features.3", "features.4",
                                          "classifier.0", "classifier.1", "classifier.2", "classifier.3"]
    assert rows[0]["sqnr_db"] > 25 and all(r["cosine"] > 0.999 for r in rows)
    # the last row is the model's output: its SQNR is that of the parity check (on more samples) within a few dB
    assert rows[-1]["tensor"] == "output"
    assert abs(rows[-1]["sqnr_db"] - ios["checks"]["parity"]["sqnr_db"]) < 3
    assert "where the error enters" in result.stdout


@pytest.mark.e2e
@needs_torch
@needs_coremltools
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_core_ml_float_layers(tmp_path, precision):
    """The float recipe: fp32 compute is the reference program itself (identical values), fp16
    compute stays within its rounding at every layer."""
    out = tmp_path / "out"
    result = run_cli("export", DIGITS, "--target", "ios", "--ios-precision", precision, "--eval", EVAL,
                     "--out", str(out), "--runs", "2", "--layers")
    assert result.returncode == 0, result.stderr
    layers = load_report(out)["targets"][0]["checks"]["layers"]
    assert layers["status"] == "measured" and layers["compared"] == 9 and layers["unmatched_ops"] == 0, layers
    if precision == "fp32":
        assert all(r["sqnr_db"] == 999.0 and r["max_abs_err"] == 0.0 for r in layers["layers"])
    else:
        assert all(r["sqnr_db"] >= 60 and r["cosine"] >= 0.9999 for r in layers["layers"]), layers["layers"]


@pytest.mark.e2e
@needs_torch
@needs_qemu
def test_layers_on_the_c_library(tmp_path):
    """The C library's rows are LiteRT's int8 reference kernels on the .tflite it was compiled from:
    the android target's int8 file is made the same way from the same plan, so the rows agree."""
    out = tmp_path / "out"
    result = run_cli("export", DIGITS, "--target", "cortex-m4,android", "--quantize", "int8", "--calib", CALIB,
                     "--eval", EVAL, "--out", str(out), "--runs", "2", "--layers")
    assert result.returncode == 0, result.stderr
    mcu, android = load_report(out)["targets"]
    layers = _measured(mcu)
    assert "the .tflite the C library was compiled from" in layers["how"]
    assert mcu["checks"]["bit_exact"]["bit_exact"] is True  # what makes LiteRT's numbers the library's
    rows = layers["layers"]
    assert rows[0]["layer"] == "features.1" and rows[0]["sqnr_db"] > 25  # conv + ReLU, fused
    assert {r["layer"] for r in rows} >= {"features.1", "features.3", "features.4", "classifier.1"}
    assert all(r["sqnr_db"] > 30 and r["cosine"] > 0.999 for r in rows)
    assert [(r["tensor"], r["sqnr_db"]) for r in rows] == \
        [(r["tensor"], r["sqnr_db"]) for r in android["checks"]["layers"]["layers"]]
    assert not any(p.name.startswith(".reference") for p in out.iterdir())  # a working file, not an output


@pytest.mark.e2e
@needs_qemu
def test_a_c_library_from_a_given_tflite_has_no_float_model(tmp_path):
    ad01 = ROOT / "tests" / "data" / "mlperf-tiny" / "ad01_int8.tflite"
    out = tmp_path / "out"
    result = run_cli("export", str(ad01), "--target", "cortex-m4", "--out", str(out), "--runs", "2", "--layers")
    assert result.returncode == 0, result.stderr
    layers = load_report(out)["targets"][0]["checks"]["layers"]
    assert layers["status"] == "not-run" and "made from a given int8 .tflite" in layers["reason"]


def _split_block(path, second_half: float = 1.0, bottlenecks: int = 1):
    """A YOLOv8-style C2f block as an .onnx file: conv + SiLU, Split in two, a bottleneck on the
    second half with a residual add, the halves and its output concatenated, a 1x1 conv. The
    first conv's second half of channels is scaled by `second_half`."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.array([4, 4], dtype=np.int64), "sizes")]

    def weight(name, *shape):
        value = rng.normal(size=shape) * 0.3
        if name in ("a.w", "a.b"):
            value[4:] *= second_half
        inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def conv(x, y, cout, cin, k):
        return [helper.make_node("Conv", [x, weight(f"{y}.w", cout, cin, k, k), weight(f"{y}.b", cout)], [f"{y}.c"],
                                 pads=[k // 2] * 4, name=f"{y}.conv"),
                helper.make_node("Sigmoid", [f"{y}.c"], [f"{y}.s"], name=f"{y}.sigmoid"),
                helper.make_node("Mul", [f"{y}.c", f"{y}.s"], [y], name=f"{y}.silu")]
    nodes = [*conv("x", "a", 8, 3, 3), helper.make_node("Split", ["a", "sizes"], ["p", "q"], axis=1, name="split")]
    last, outs = "q", ["p", "q"]
    for b in range(bottlenecks):  # each bottleneck's output feeds the next one and the concat
        nodes += [*conv(last, f"m{2 * b + 1}", 4, 4, 3), *conv(f"m{2 * b + 1}", f"m{2 * b + 2}", 4, 4, 3),
                  helper.make_node("Add", [last, f"m{2 * b + 2}"], [f"r{b}"], name=f"residual{b}")]
        last = f"r{b}"
        outs.append(last)
    nodes += [helper.make_node("Concat", outs, ["cat"], axis=1, name="cat"),
              helper.make_node("Conv", ["cat", weight("out.w", 6, 4 * len(outs), 1, 1), weight("out.b", 6)], ["y"],
                               name="out")]
    graph = helper.make_graph(nodes, "c2f", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 6, 16, 16])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    np.savez(path.parent / "data.npz", x=rng.normal(size=(32, 3, 16, 16)).astype(np.float32))


@pytest.mark.e2e
@needs_torch
def test_android_layers_after_a_split_pair_the_right_tensors(tmp_path):
    """litert-torch names a split's slices after its export wrapper alone; they were paired with
    the float file's slices of the other half (-2.5 dB on a model whose output holds 31 dB). Only
    tensors named by a module (or a model output) are compared."""
    source = tmp_path / "c2f.onnx"
    _split_block(source)
    out = tmp_path / "out"
    data = str(tmp_path / "data.npz")
    result = run_cli("export", str(source), "--target", "onnx,android", "--quantize", "int8", "--calib", data,
                     "--eval", data, "--out", str(out), "--runs", "2", "--layers")
    assert result.returncode == 0, result.stderr
    onnx_t, android = load_report(out)["targets"]
    output_sqnr = android["checks"]["parity"]["sqnr_db"]
    assert output_sqnr > 25
    rows = _measured(android)["layers"]
    assert all(r["sqnr_db"] > output_sqnr - 6 for r in rows), rows  # no layer far below the output it feeds
    assert {r["layer"] for r in rows} >= {"m1/conv", "m2/conv", "out"}, rows  # onnx2torch reads "." as "/"
    assert min(r["sqnr_db"] for r in _measured(onnx_t)["layers"]) > output_sqnr - 6


@pytest.mark.e2e
@needs_torch
def test_android_int8_split_halves_of_different_ranges(tmp_path):
    """A Split's output takes its input's int8 grid in the plan but keeps its own observed range:
    PT2E's observer on the half the bottleneck reads found no plan entry by that range, chose its
    own scale, and LiteRT's conv then read the slice at the input's scale with a bias quantized
    for the other one (YOLOv8 nudenet on android: 11.7 dB; the conv after the split -1.4 dB)."""
    _android_holds_onnx_numbers(tmp_path, second_half=0.2)


def _android_holds_onnx_numbers(tmp_path, **block):
    """Export a `_split_block(**block)` to onnx and android int8: android's output SQNR is within
    3 dB of onnx's, every PT2E observer took the plan's numbers, and onnx holds them all."""
    source = tmp_path / "c2f.onnx"
    _split_block(source, **block)
    out = tmp_path / "out"
    data = str(tmp_path / "data.npz")
    result = run_cli("export", str(source), "--target", "onnx,android", "--quantize", "int8", "--calib", data,
                     "--eval", data, "--out", str(out), "--runs", "2")
    assert result.returncode == 0, result.stderr
    onnx_t, android = load_report(out)["targets"]
    assert onnx_t["checks"]["parity"]["sqnr_db"] > 25
    assert android["checks"]["parity"]["sqnr_db"] > onnx_t["checks"]["parity"]["sqnr_db"] - 3
    assert "by its rule" not in " ".join(android["notes"]), android["notes"]
    assert onnx_t["checks"]["params"]["exact"] == onnx_t["checks"]["params"]["tensors_checked"]


@pytest.mark.e2e
@needs_torch
def test_android_int8_tensor_feeding_a_concat_and_a_conv(tmp_path):
    """A bottleneck's output feeds the next bottleneck's conv and the block's Concat. LiteRT gives
    it the Concat's scale; the plan gives a Concat's inputs made by compute ops the Concat's grid,
    so the conv's bias is quantized for the scale it reads (it was quantized for the tensor's own:
    YOLOv8's second bottlenecks on android at 2 dB, nudenet's output 25 dB against onnx's 33)."""
    _android_holds_onnx_numbers(tmp_path, second_half=0.2, bottlenecks=2)
