"""Schemes as typed configs, the exporters' scheme tables, and layered per-layer overrides."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import CALIB, DIGITS, EVAL, RECIPE_DTYPE, TOLERANCES, load_report, run_cli
from edgeport import plugins
from edgeport.config import load_config
from edgeport.errors import InputError
from edgeport.quantizers.overrides import resolve_precisions
from edgeport.recipe import Overrides, Recipe
from edgeport.schemes import SCHEMES, DynamicInt8, Float32, Int8Static, Int16x8, WeightOnlyInt8, make_scheme
from edgeport.targets import TARGETS


def test_schemes_are_typed_validated_configs():
    assert SCHEMES.names() == ["none", "fp16", "dynamic-int8", "int8", "int16x8", "weight-only-int8",
                               "weight-only-int4"]
    assert isinstance(Recipe().scheme, Float32)
    scheme = Recipe(quantize="int16x8", per_channel=False, calibration="mse").scheme
    assert isinstance(scheme, Int16x8) and isinstance(scheme, Int8Static)
    assert (scheme.per_channel, scheme.calibration, scheme.activation_bits, scheme.weight_bits) == (False, "mse", 16, 8)
    assert Recipe(quantize="weight-only-int8").scheme == WeightOnlyInt8(per_channel=True)
    assert not Recipe(quantize="weight-only-int8").needs_calibration
    with pytest.raises(InputError, match="unknown calibration method 'kl'"):
        Int8Static(calibration="kl")
    with pytest.raises(InputError, match="per_channel must be true or false"):
        DynamicInt8(per_channel="yes")
    assert make_scheme("int8", calibration="percentile", percentile=99.9).percentile == 99.9
    assert Recipe(quantize="weight-only-int8").describe() == "weight-only int8 (per-channel weights, float activations)"
    assert Recipe(quantize="weight-only-int4", block_size=64).scheme.block_size == 64
    with pytest.raises(InputError, match="block_size must be one of 0, 32, 64, 128, 256"):
        Recipe(quantize="weight-only-int4", block_size=48)


@pytest.mark.parametrize("fmt", ["onnx", "ort", "tflite", "mlpackage", "tfjs", "c"])
def test_every_exporter_has_a_row_for_every_scheme(fmt):
    """A scheme missing from a table would be refused with a generic message: every format says
    either how it holds each scheme or why it cannot."""
    table = plugins.exporters().get(fmt).schemes
    assert set(table) == set(SCHEMES), f"{fmt}: no row for {set(SCHEMES) - set(table)}"


@pytest.mark.parametrize(("target", "recipe", "message"), [
    ("cortex-m4", Recipe(quantize="weight-only-int8"), "cortex-m4: the C library runs int8 kernels"),
    ("ios", Recipe(quantize="int16x8"), "ios: Core ML has no int16 activations"),
    ("ios", Recipe(quantize="int8", overrides={"layer": {"features.3": "int16"}}),
     "ios: per-layer int16 overrides inside a int8 model are not written to mlpackage"),
    ("cortex-m4", Recipe(quantize="int8", keep_float=("Gemm",)), "cortex-m4: the c format cannot leave layers in float"),
    ("ios", Recipe(quantize="weight-only-int4"), "ios: int4 weights need --ios-target iOS18"),
    ("onnx-mobile", Recipe(quantize="weight-only-int4"), "onnx-mobile: the ORT format .* cannot hold int4"),
    ("browser-tfjs", Recipe(quantize="weight-only-int4"), "browser-tfjs: TF.js stores weights as .* not int4"),
    ("cortex-m4", Recipe(quantize="weight-only-int4"), "cortex-m4: the C library runs int8 kernels"),
])
def test_refusals_come_from_the_tables_before_any_work(target, recipe, message):
    spec = TARGETS.get(target)
    exporter = plugins.exporters().get(spec.format)
    with pytest.raises(InputError, match=message):
        exporter.check_request(recipe, {}, spec, DIGITS)


def test_overrides_parse_and_validate():
    recipe = Recipe(quantize="int8", overrides={"op_type": {"Conv": "float"}, "layer": {"features.3": "int16"}})
    assert recipe.overrides == Overrides(op_type=(("Conv", "float"),), layer=(("features.3", "int16"),))
    assert recipe.mixed_precision() == {"int16"} and recipe.float_overrides
    assert Overrides.parse({"layer": {"a": None}}).layer == (("a", "float"),)  # None means float
    with pytest.raises(InputError, match="precision must be one of float, int8, int16"):
        Recipe(overrides={"layer": {"a": "int4"}})
    with pytest.raises(InputError, match="unknown level"):
        Recipe(overrides={"node": {"a": "float"}})
    with pytest.raises(InputError, match="needs a static scheme"):
        Recipe(quantize="fp16", overrides={"layer": {"a": "int8"}})


def _graph() -> onnx.ModelProto:
    """conv0 (features.0) -> relu -> conv1 (features.3) -> flatten -> gemm (classifier.1) -> softmax."""
    w = lambda name, *shape: numpy_helper.from_array(np.ones(shape, np.float32), name)
    nodes = [helper.make_node("Conv", ["x", "w0"], ["a"], name="conv0"), helper.make_node("Relu", ["a"], ["b"], name="relu0"),
             helper.make_node("Conv", ["b", "w1"], ["c"], name="conv1"), helper.make_node("Flatten", ["c"], ["d"], name="flat"),
             helper.make_node("Gemm", ["d", "w2"], ["e"], name="gemm"), helper.make_node("Softmax", ["e"], ["y"], name="soft")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                              [w("w0", 2, 1, 1, 1), w("w1", 2, 2, 1, 1), w("w2", 32, 2)])
    return helper.make_model(graph)


LAYERS = {"conv0": "features.0", "relu0": "features.1", "conv1": "features.3", "gemm": "classifier.1", "soft": ""}


def test_overrides_layer_global_then_op_type_then_layer():
    recipe = Recipe(quantize="int8", keep_float=("Softmax",),
                    overrides={"op_type": {"Conv": "float"}, "layer": {"features.3": "int8", "classifier": "int16"}})
    # conv0: op type Conv -> float; conv1: its layer wins over its op type and is the scheme's own
    # precision (not listed); gemm: under the `classifier` path; softmax: keep_float shorthand
    assert resolve_precisions(_graph(), LAYERS, recipe) == {"conv0": "float", "gemm": "int16", "soft": "float"}
    longest = Recipe(quantize="int16x8", overrides={"layer": {"features": "float", "features.3": "int8"}})
    assert resolve_precisions(_graph(), LAYERS, longest) == {"conv0": "float", "relu0": "float", "conv1": "int8"}


@pytest.mark.parametrize(("overrides", "keep", "message"), [
    ({"layer": {"features.9": "float"}}, (), "layer: 'features.9' matches no layer, node or op type"),
    ({"op_type": {"LSTM": "float"}}, (), "op_type: 'LSTM' matches no layer"),
    ({}, ("nope",), "keep_float: 'nope' matches no layer"),
])
def test_an_override_that_matches_nothing_is_an_error(overrides, keep, message):
    with pytest.raises(InputError, match=message):
        resolve_precisions(_graph(), LAYERS, Recipe(quantize="int8", overrides=overrides, keep_float=keep))


def test_toml_and_flags_layer_overrides(tmp_path):
    from edgeport.cli import _overrides

    path = tmp_path / "edgeport.toml"
    path.write_text('[recipe]\nquantize = "int8"\n[recipe.op_type]\nConv = "float"\n[recipe.layer]\n"features.3" = "none"\n')
    cfg = load_config(path)
    assert cfg["recipe"]["overrides"] == {"op_type": {"Conv": "float"}, "layer": {"features.3": "none"}}
    merged = _overrides(["op_type:Gemm=int16", "classifier.3=float"], cfg["recipe"]["overrides"])
    assert Recipe(quantize="int8", overrides=merged).overrides == Overrides(
        op_type=(("Conv", "float"), ("Gemm", "int16")), layer=(("features.3", "float"), ("classifier.3", "float")))
    with pytest.raises(InputError, match="expected LAYER=PRECISION"):
        _overrides(["features.3"], None)


@pytest.mark.e2e
def test_override_on_the_command_line_keeps_the_layer_float_in_onnx(tmp_path):
    out = tmp_path / "out"
    result = run_cli("export", DIGITS, "--target", "onnx", "--quantize", "int8", "--calib", CALIB,
                     "--override", "op_type:Gemm=float", "--override", "classifier.3=int8", "--out", str(out))
    assert result.returncode == 0, result.stderr
    model = onnx.load(str(out / "onnx" / "digits.onnx"))
    gemms = [n for n in model.graph.node if n.op_type == "Gemm"]
    # classifier.1's Gemm stays float (op-type override); classifier.3's is quantized (layer override)
    produced_by = {o: n for n in model.graph.node for o in n.output}
    dequantized = [produced_by.get(g.input[1]) is not None and produced_by[g.input[1]].op_type == "DequantizeLinear"
                   for g in gemms]
    assert sorted(dequantized) == [False, True]
    assert load_report(out)["recipe"]["overrides"] == {"op_type": {"Gemm": "float"}, "layer": {"classifier.3": "int8"}}


HOLDERS = "onnx,onnx-mobile,android,ios,browser-tfjs,browser-ort"


@pytest.mark.e2e
def test_weight_only_int8_exports_to_every_target_that_can_hold_it(exported):
    report, out = exported("digits-weight-only", HOLDERS, "--quantize", "weight-only-int8", "--runs", "10",
                           "--warmup", "2")
    tolerance = TOLERANCES[RECIPE_DTYPE["weight-only-int8"]]
    for target in report["targets"]:
        checks, name = target["checks"], target["target"]
        assert checks["size"]["status"] == "measured" and checks["size"]["alpha"] > 3.0, name
        parity = checks["parity"]
        assert parity["status"] == "measured", name
        assert parity["cosine"] >= tolerance.cosine and parity["max_abs_err"] <= tolerance.abs_err, name
        if name != "onnx-mobile":  # the .ort format's parameters cannot be read back
            assert checks["params"]["exact"] == checks["params"]["tensors_checked"] == 4, name
    for row in report["cross_target"]:  # same int8 weights, float compute everywhere
        assert row["top1_agreement"] == 1.0
    refused = run_cli("export", DIGITS, "--target", "cortex-m4", "--quantize", "weight-only-int8", "--out", "unused")
    assert refused.returncode == 2 and "the C library runs int8 kernels" in refused.stderr


@pytest.mark.e2e
def test_int16_layers_inside_an_int8_onnx_model(tmp_path):
    """`--override features.2=int16`: that conv's activations are int16 with the plan's numbers,
    converted from and back to int8 around it; every Q/DQ parameter is the plan's."""
    out = tmp_path / "out"
    result = run_cli("export", DIGITS, "--target", "onnx,onnx-mobile", "--quantize", "int8", "--calib", CALIB,
                     "--eval", EVAL, "--override", "features.2=int16", "--override", "op_type:Gemm=int16",
                     "--runs", "5", "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = load_report(out)
    onnx_row = report["targets"][0]
    params = onnx_row["checks"]["params"]
    assert params["honored"] and params["exact"] == params["tensors_checked"] == 19
    assert onnx_row["checks"]["parity"]["cosine"] >= TOLERANCES["int8"].cosine
    model = onnx.load(str(out / "onnx" / "digits.onnx"))
    inits = {i.name: i for i in model.graph.initializer}
    int16_q = {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"
               and inits[n.input[2]].data_type == TensorProto.INT16}
    # the conv's input converted to int16, its output, the Gemms' inputs / outputs
    assert {"relu_DequantizeLinear_Output", "conv2d_1"} <= int16_q and len(int16_q) >= 4
    plan = json.loads((out / "quant_params.json").read_text())
    assert plan["precisions"] == {"node_conv2d_1": "int16", "node_linear": "int16", "node_linear_1": "int16"}
    assert report["cross_target"][0]["max_abs_diff"] == 0  # the .ort runs the same graph


@pytest.mark.e2e
def test_int16_and_float_layers_inside_an_int8_tflite(tmp_path):
    """android writes per-layer precisions through ai-edge-quantizer: the int16 layers' tensors are
    int16 (QUANTIZE ops convert at their edges), the float layer is unquantized, and the numbers
    are the onnx target's within 1 dB (same plan, same ranges)."""
    from ai_edge_litert.interpreter import Interpreter

    out = tmp_path / "out"
    result = run_cli("export", DIGITS, "--target", "onnx,android", "--quantize", "int8", "--calib", CALIB,
                     "--eval", EVAL, "--override", "classifier.1=int16", "--override", "classifier.2=int16",
                     "--override", "classifier.3=float", "--runs", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = load_report(out)
    rows = {t["target"]: t for t in report["targets"]}
    android = rows["android"]
    assert any(n.startswith("at int16 activations (int8 weights): 2 layer(s)") for n in android["notes"])
    assert any(n.startswith("kept in float: 1 layer(s) (classifier.3)") for n in android["notes"])
    interpreter = Interpreter(model_path=str(out / "android" / "digits.tflite"))
    tensors = interpreter.get_tensor_details()
    ops = interpreter._get_ops_details()
    fcs = [op for op in ops if op["op_name"] == "FULLY_CONNECTED"]
    assert [tensors[fcs[0]["inputs"][0]]["dtype"].__name__, tensors[fcs[-1]["inputs"][1]]["dtype"].__name__] == \
        ["int16", "float32"]  # first FC on int16 activations, the last one with float weights
    assert any(op["op_name"] == "QUANTIZE" for op in ops)
    sqnr = {name: row["checks"]["parity"]["sqnr_db"] for name, row in rows.items()}
    assert sqnr["android"] == pytest.approx(sqnr["onnx"], abs=1.0) and sqnr["onnx"] >= 44.0, sqnr


@pytest.mark.e2e
def test_an_int16_layer_without_an_int16_kernel_stays_float_on_android(tmp_path):
    """LiteRT has no int16 HARD_SWISH: an int16 override on one computes it in float (as the
    int16x8 recipe does), never with the int8 kernel ai-edge-quantizer would fall back to."""
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w1"),
               numpy_helper.from_array(rng.normal(0, 0.3, (4, 8, 1, 1)).astype(np.float32), "w2")]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", pads=[1, 1, 1, 1]),
         helper.make_node("HardSwish", ["a"], ["h"], name="hswish"),
         helper.make_node("Conv", ["h", "w2"], ["y"], name="conv2")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])], weights)
    source = tmp_path / "hswish.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source))
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=rng.normal(0, 1, (16, 3, 8, 8)).astype(np.float32))
    out = tmp_path / "out"
    result = run_cli("export", str(source), "--target", "android", "--quantize", "int8", "--calib", str(calib),
                     "--override", "hswish=int16", "--runs", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    notes = load_report(out)["targets"][0]["notes"]
    assert any(n.startswith("float where LiteRT has no int16 kernel: HARD_SWISH") for n in notes), notes
    interpreter = Interpreter(model_path=str(out / "android" / "hswish.tflite"))
    tensors = interpreter.get_tensor_details()
    swish = [op for op in interpreter._get_ops_details() if op["op_name"] == "HARD_SWISH"]
    assert swish and all(tensors[op["inputs"][0]]["dtype"].__name__ == "float32" for op in swish)


def _reshaping_graph() -> onnx.ModelProto:
    """conv -> reshape -> transpose -> two slices -> softmax / matmul: value-preserving ops
    between a conv and the ops reading its values."""
    rng = np.random.default_rng(0)
    ints = lambda values, name: numpy_helper.from_array(np.array(values, np.int64), name)
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], name="conv"),
             helper.make_node("Reshape", ["a", "shape"], ["b"], name="reshape"),
             helper.make_node("Transpose", ["b"], ["t"], name="transpose", perm=[1, 0]),
             helper.make_node("Slice", ["t", "zero", "eight", "axis"], ["t0"], name="slice0"),
             helper.make_node("Slice", ["t", "eight", "sixteen", "axis"], ["t1"], name="slice1"),
             helper.make_node("Softmax", ["t0"], ["y"], name="soft", axis=-1),
             helper.make_node("MatMul", ["t1", "w2"], ["z"], name="mm")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 4]),
                               helper.make_tensor_value_info("z", TensorProto.FLOAT, [8, 3])],
                              [numpy_helper.from_array(rng.normal(size=(4, 2, 1, 1)).astype(np.float32), "w"),
                               numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "w2"),
                               ints([4, 16], "shape"), ints([0], "zero"), ints([8], "eight"), ints([16], "sixteen"),
                               ints([0], "axis")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_float_value_preserving_op_reading_quantized_values_keeps_their_grid():
    """Reshape / Transpose hold the same values in float or on their input's grid; behind a
    quantized conv they take its precision (onnxruntime moves the conv's DequantizeLinear past
    them anyway), and stay float behind a float one."""
    graph = _reshaping_graph()
    every = Recipe(quantize="int8", keep_float=("Reshape", "Transpose", "Softmax"))
    assert resolve_precisions(graph, {}, every) == {"soft": "float"}
    int16 = Recipe(quantize="int8", overrides={"layer": {"conv": "int16", "reshape": "float", "transpose": "float"}})
    assert resolve_precisions(graph, {}, int16) == {"conv": "int16", "reshape": "int16", "transpose": "int16"}
    floated = Recipe(quantize="int8", keep_float=("conv", "reshape"))
    assert resolve_precisions(graph, {}, floated) == {"conv": "float", "reshape": "float"}


def test_an_int8_onnx_with_float_reshapes_behind_a_conv_loads_in_onnxruntime(tmp_path):
    """A float Reshape behind an int8 conv, in a graph with an int16 layer (opset 21): onnxruntime's
    QDQ propagation wrote a QuantizeLinear behind the Reshape whose output type differed from its
    zero point's and refused the file (PP-OCRv4 rec's fallback met this)."""
    source = tmp_path / "reshaping.onnx"
    onnx.save(_reshaping_graph(), str(source))
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(1).normal(size=(8, 2, 4, 4)).astype(np.float32))
    out = tmp_path / "out"
    result = run_cli("export", str(source), "--target", "onnx", "--quantize", "int8", "--calib",
                     str(tmp_path / "calib.npz"), "--keep-float", "Reshape", "--keep-float", "Transpose",
                     "--override", "mm=int16", "--runs", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    parity = load_report(out)["targets"][0]["checks"]["parity"]
    assert parity["status"] == "measured" and parity["cosine"] >= 0.999


def _qdq(name: str, out: str, scale: str, zero: str) -> list:
    return [helper.make_node("QuantizeLinear", [name, scale, zero], [f"{name}_q"], name=f"{name}_q"),
            helper.make_node("DequantizeLinear", [f"{name}_q", scale, zero], [out], name=f"{name}_dq")]


def test_value_preserving_ops_rounded_on_one_side_get_the_same_rounding_on_the_other():
    """A Reshape behind a DequantizeLinear with a float output, and a Transpose with a float
    input and a QuantizeLinear after it: each gets the rounding of its other side, the graph
    computes the same values, and onnxruntime (all optimizations) loads it."""
    import onnxruntime as ort

    from edgeport.exporters.onnx_qdq import round_both_sides

    inits = [numpy_helper.from_array(np.float32(0.05), "s"), numpy_helper.from_array(np.int8(3), "z"),
             numpy_helper.from_array(np.array([4, 4], np.int64), "shape")]
    nodes = [*_qdq("x", "xd", "s", "z"), helper.make_node("Reshape", ["xd", "shape"], ["r"], name="reshape"),
             helper.make_node("Sigmoid", ["r"], ["g"], name="sig"),
             helper.make_node("Transpose", ["g"], ["t"], name="transpose", perm=[1, 0]),
             *_qdq("t", "td", "s", "z"), helper.make_node("Relu", ["td"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    x = np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32)
    plain = ort.SessionOptions()
    plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    before = ort.InferenceSession(model.SerializeToString(), plain).run(None, {"x": x})[0]
    assert round_both_sides(model.graph) == 2
    ops = [n.op_type for n in model.graph.node]
    assert ops[ops.index("Reshape") + 1:ops.index("Reshape") + 3] == ["QuantizeLinear", "DequantizeLinear"]
    assert ops[ops.index("Transpose") - 2:ops.index("Transpose")] == ["QuantizeLinear", "DequantizeLinear"]
    onnx.checker.check_model(model)
    after = ort.InferenceSession(model.SerializeToString(), plain).run(None, {"x": x})[0]
    np.testing.assert_array_equal(after, before)  # a second rounding on the same grid changes nothing
    optimized = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_array_equal(optimized, before)
