"""Float-model rewrites before quantization (issue #16, item 3): cross-layer equalization,
SmoothQuant and bias correction.

Tolerances: the rewrites keep the float function up to float32 rounding (relative 1e-5 of the
output's range); their effect is checked on what they are for: the spread of per-channel weight
ranges (CLE), of per-channel activation peaks (SmoothQuant), the mean output shift of rounded
weights (bias correction), and end to end the int8 artifact's SQNR."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgeport
from edgeport.data import Dataset
from edgeport.equalize import correct_biases, equalize_pairs, smooth
from edgeport.errors import InputError
from edgeport.model import FloatModel
from edgeport.quantizers.calibration import channel_statistics
from edgeport.quantizers.plan import QuantPlan, WeightParams
from edgeport.quantizers import qmath
from edgeport.recipe import Recipe

DIGITS = "samples.digits.model:build"
CALIB = "samples/digits/calib.npz"
EVAL = "samples/digits/eval.npz"


def _run(model, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _graph(nodes, inits, x_shape, y_shape):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _conv_chain(between: str = "Relu"):
    """conv 3->8 -> act -> depthwise 8 -> Relu -> conv 8->4, the first conv's channels of very
    different ranges (as BatchNorm folding leaves them)."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(8, 3, 3, 3)) * np.logspace(-2, 1, 8).reshape(8, 1, 1, 1)
    inits = {"w1": w1, "b1": rng.normal(size=8), "w2": rng.normal(size=(8, 1, 3, 3)), "b2": rng.normal(size=8),
             "w3": rng.normal(size=(4, 8, 1, 1)), "b3": rng.normal(size=4)}
    act = helper.make_node(between, ["c1"], ["a1"], name="act1") if between != "Clip" else \
        helper.make_node("Clip", ["c1", "lo", "hi"], ["a1"], name="act1")
    if between == "Clip":
        inits.update(lo=np.array(0.0), hi=np.array(6.0))
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]), act,
             helper.make_node("Conv", ["a1", "w2", "b2"], ["c2"], name="dw", group=8, pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["a2"], name="act2"),
             helper.make_node("Conv", ["a2", "w3", "b3"], ["y"], name="conv3")]
    return _graph(nodes, inits, [None, 3, 6, 6], [None, 4, 6, 6])


def _spread(w: np.ndarray) -> float:
    ranges = np.abs(w).reshape(w.shape[0], -1).max(axis=1)
    return float(ranges.max() / ranges.min())


def test_cross_layer_equalization_keeps_the_function_and_evens_the_channels():
    model = _conv_chain()
    x = np.random.default_rng(1).normal(size=(4, 3, 6, 6)).astype(np.float32)
    before = _run(model, x)
    w1 = numpy_helper.to_array(model.graph.initializer[0])
    info = equalize_pairs(model)
    assert info["pairs"] == 2 and info["skipped"] == {}
    after = _run(model, x)
    assert np.abs(after - before).max() <= 1e-5 * np.abs(before).max()
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert _spread(w1) > 500 and _spread(inits["w1"]) < 0.1 * _spread(w1)
    # what it is for: per-tensor int8 rounding of the first layer's weights loses much less
    def rounding_error(w):
        return np.abs(qmath.dequantize(qmath.quantize(w, qmath.weight_scales(w, None)[0], 0),
                                       qmath.weight_scales(w, None)[0], 0) - w).sum() / np.abs(w).sum()
    assert rounding_error(inits["w1"]) < 0.5 * rounding_error(w1)


def test_cross_layer_equalization_leaves_pairs_an_activation_keeps_apart():
    model = _conv_chain("Clip")  # ReLU6: clip(x / s, 0, 6) != clip(x, 0, 6) / s
    x = np.random.default_rng(1).normal(size=(2, 3, 6, 6)).astype(np.float32)
    before = _run(model, x)
    info = equalize_pairs(model)
    assert info["pairs"] == 1  # only dw -> Relu -> conv3
    assert info["skipped"] == {"(a Clip between the layers does not commute with scaling)": 1}
    assert np.abs(_run(model, x) - before).max() <= 1e-5 * np.abs(before).max()


def _layer_norm_linears(decomposed: bool = False):
    """x -> LayerNorm (one channel's scale 100x: an outlier channel, as trained transformers have)
    -> two MatMuls (q, k) plus a Shape read; outputs concatenated."""
    rng = np.random.default_rng(2)
    gamma = np.ones(16)
    gamma[3] = 100.0
    inits = {"gamma": gamma, "beta": rng.normal(size=16) * 0.1, "wq": rng.normal(size=(16, 8)) * 0.2,
             "wk": rng.normal(size=(16, 8)) * 0.2}
    inits["wq"][3] *= 0.01  # the outlier channel sets the input's int8 scale, the others carry the output
    inits["wk"][3] *= 0.01
    if decomposed:  # the Mul / Add tail of a LayerNorm some exporters write (Paddle's)
        nodes = [helper.make_node("ReduceMean", ["x"], ["mu"], axes=[-1], name="mean"),
                 helper.make_node("Sub", ["x", "mu"], ["centered"], name="sub"),
                 helper.make_node("Mul", ["centered", "gamma"], ["scaled"], name="gamma_mul"),
                 helper.make_node("Add", ["scaled", "beta"], ["ln"], name="beta_add")]
    else:
        nodes = [helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["ln"], name="ln")]
    nodes += [helper.make_node("Shape", ["ln"], ["shape"], name="shape"),
              helper.make_node("MatMul", ["ln", "wq"], ["q"], name="q"),
              helper.make_node("MatMul", ["ln", "wk"], ["k"], name="k"),
              helper.make_node("Concat", ["q", "k"], ["y"], axis=-1, name="cat")]
    model = _graph(nodes, inits, [None, 5, 16], [None, 5, 16])
    model.graph.output.append(helper.make_tensor_value_info("shape", TensorProto.INT64, [3]))
    return model


@pytest.mark.parametrize("decomposed", [False, True])
def test_smoothquant_keeps_the_function_and_flattens_the_outlier_channel(decomposed):
    model = _layer_norm_linears(decomposed)
    data = Dataset({"x": np.random.default_rng(3).normal(size=(32, 5, 16)).astype(np.float32)}, None, "test")
    before = _run(model, data.feeds["x"])
    peaks = channel_statistics(model, data, {"ln": -1})["ln"][1]
    info = smooth(model, data, 0.5)
    assert (info["inputs"], info["layers"]) == (1, 2)
    after = _run(model, data.feeds["x"])
    assert np.abs(after - before).max() <= 1e-5 * np.abs(before).max()
    smoothed = channel_statistics(model, data, {"ln": -1})["ln"][1]
    assert peaks.max() / np.median(peaks) > 20  # the outlier channel sets the tensor's int8 scale
    assert smoothed.max() / np.median(smoothed) < 0.3 * peaks.max() / np.median(peaks)


def test_bias_correction_removes_the_mean_shift_of_rounded_weights():
    rng = np.random.default_rng(4)
    w = rng.normal(size=(6, 4, 3, 3)).astype(np.float32)
    w[0, 0, 0, 0] = 30.0  # one large weight: a per-tensor scale rounds the others coarsely
    inits = {"w": w, "b": np.zeros(6)}
    model = _graph([helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv")], inits,
                   [None, 4, 5, 5], [None, 6, 3, 3])
    x = (rng.normal(size=(64, 4, 5, 5)) + 2.0).astype(np.float32)  # inputs with a clear mean
    scales = qmath.weight_scales(w, None)
    plan = QuantPlan("int8", weights={"w": WeightParams(scales.tolist(), [0], None, "conv")})
    float_model = FloatModel("m", model.SerializeToString(), [], [], None, "test", source="test")
    corrected, info = correct_biases(float_model, plan, Dataset({"x": x}, None, "test"))
    assert info["layers"] == 1

    def rounded(m):  # the model as an int8-weight artifact computes it (weights rounded)
        m = onnx.load_from_string(m.SerializeToString())
        for init in m.graph.initializer:
            if init.name == "w":
                init.CopyFrom(numpy_helper.from_array(plan.weights["w"].rounded(w), "w"))
        return m
    reference = _run(model, x).mean(axis=(0, 2, 3))
    shift_before = np.abs(_run(rounded(model), x).mean(axis=(0, 2, 3)) - reference)
    shift_after = np.abs(_run(rounded(corrected.onnx_model()), x).mean(axis=(0, 2, 3)) - reference)
    assert shift_before.max() > 0.01
    assert shift_after.max() < 0.05 * shift_before.max()


def test_rewrite_options_are_validated_before_work(tmp_path):
    assert "smoothquant alpha 0.5" in Recipe(quantize="int8", smoothquant=0.5).describe()
    with pytest.raises(InputError, match="between 0 and 1"):
        Recipe(quantize="int8", smoothquant=1.5)
    with pytest.raises(InputError, match="must be true or false"):
        Recipe(quantize="int8", equalize="yes")
    with pytest.raises(InputError, match="rounds no weight"):
        Recipe(quantize="fp16", bias_correction=True)
    with pytest.raises(InputError, match="give --calib"):
        edgeport.export(DIGITS, targets=["onnx"], recipe=Recipe(quantize="int8", smoothquant=0.5), eval=EVAL,
                        out=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.mark.e2e
def test_equalize_and_bias_correction_reach_onnx_and_android(tmp_path):
    """digits int8: the rewritten weights are the plan's on both targets (params read back exact),
    the float function kept, the recorded rewrites in quant_params.json."""
    out = tmp_path / "out"
    report = edgeport.export(DIGITS, targets=["onnx", "android"],
                             recipe=Recipe(quantize="int8", equalize=True, bias_correction=True), calib=CALIB,
                             eval=EVAL, out=str(out), settings=edgeport.CheckSettings(runs=2, warmup=0))
    rewrites = json.loads((out / "quant_params.json").read_text())["rewrites"]
    assert rewrites["equalize"]["pairs"] >= 1 and rewrites["bias_correction"]["layers"] >= 3
    assert any("cross-layer equalization" in n for n in report.notes)
    for target in report.targets:
        assert target.values("parity")["sqnr_db"] > 35.0, target.target
        params = target.values("params")
        assert params["exact"] == params["tensors_checked"] > 0, (target.target, params)


@pytest.mark.e2e
def test_smoothquant_raises_int8_sqnr_of_a_model_with_outlier_channels(tmp_path):
    """An .onnx source whose LayerNorm output has one outlier channel: int8 with --smoothquant
    measures a higher SQNR than without, on onnx and android."""
    source = tmp_path / "ln.onnx"
    model = _layer_norm_linears()
    del model.graph.output[1]  # the Shape output was for the unit test
    onnx.save(model, source)
    rng = np.random.default_rng(5)
    np.savez(tmp_path / "calib.npz", x=rng.normal(size=(64, 5, 16)).astype(np.float32))
    np.savez(tmp_path / "eval.npz", x=rng.normal(size=(64, 5, 16)).astype(np.float32))
    sqnr = {}
    for name, recipe in (("plain", Recipe(quantize="int8")), ("smooth", Recipe(quantize="int8", smoothquant=0.5))):
        report = edgeport.export(str(source), targets=["onnx", "android"], recipe=recipe,
                                 calib=str(tmp_path / "calib.npz"), eval=str(tmp_path / "eval.npz"),
                                 out=str(tmp_path / name), settings=edgeport.CheckSettings(runs=2, warmup=0))
        sqnr[name] = {t.target: t.values("parity")["sqnr_db"] for t in report.targets}
    for target in ("onnx", "android"):
        assert sqnr["smooth"][target] > sqnr["plain"][target] + 3.0, sqnr



def test_rewritten_weights_reach_the_pytorch_module():
    """A PyTorch source keeps its module when every rewritten weight is one of its parameters:
    the module then computes what the rewritten graph computes (android, ios and the C library
    convert it), and a rewrite that changes nothing returns the model as it was."""
    import torch

    from edgeport.data import load_dataset, sample_specs
    from edgeport.equalize import rewrite
    from edgeport.sources import load_source

    model = load_source(DIGITS, None, None, sample_specs(CALIB))
    data = load_dataset(CALIB, model.inputs, "calibration data")
    same, info = rewrite(model, Recipe(quantize="int8", smoothquant=0.5), data)
    assert same is model and info["smoothquant"]["inputs"] == 0  # a CNN: no LayerNorm feeds a linear
    equalized, info = rewrite(model, Recipe(quantize="int8", equalize=True), data)
    assert info["equalize"]["pairs"] >= 1 and equalized.torch_module is not None
    x = data.feeds[model.inputs[0].name][:8]
    graph = ort.InferenceSession(equalized.onnx_bytes).run(None, {model.inputs[0].name: x[:1]})[0]
    with torch.no_grad():
        module = equalized.torch_module(torch.from_numpy(x[:1])).numpy()
        before = model.torch_module(torch.from_numpy(x[:1])).numpy()
    assert np.abs(module - graph).max() <= 1e-4 * np.abs(graph).max()
    assert np.abs(module - before).max() <= 1e-4 * np.abs(before).max()  # the same function
    changed = [n for n, p in equalized.torch_module.named_parameters()
               if not torch.equal(p, dict(model.torch_module.named_parameters())[n])]
    assert changed  # ... with other weights
