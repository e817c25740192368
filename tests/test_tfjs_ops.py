"""TF.js graph-model conversion, op by op: small ONNX graphs converted by edgeport and compared
with onnxruntime.

Fast tier: the pure helpers (block-diagonal filters for grouped convolutions, ceil-mode pooling
pads, shard sizes), shape folding and refusals. e2e: each op's graph runs in headless Chromium
(tfjs-cpu) and must match onnxruntime within float32 rounding (`OP_TOLERANCE`).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeport.errors import UnsupportedOpError
from edgeport.exporters.tfjs import MAX_SHARDS, SHARD_BYTES, _cleaned, write_graph_model
from edgeport.exporters.tfjs_graph import TfGraph, TfWeight, block_diagonal, ceil_mode_pads, convert
from edgeport.runtimes.browser import ChromiumRuntime, open_session

REASON = ChromiumRuntime().availability()
needs_browser = pytest.mark.skipif(REASON is not None, reason=str(REASON))
OP_TOLERANCE = {"cosine": 0.99999, "rel_err": 1e-4}  # float32 in both runtimes; relative to max |output|
RNG_SEED = 15

F = TensorProto.FLOAT


def _model(nodes, inputs, outputs, inits=(), opset=18):
    graph = helper.make_graph(nodes, "g", inputs, outputs,
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(inits).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return onnx.shape_inference.infer_shapes(model)


def _x(name="x", shape=(1, 4, 6, 6), dtype=F):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def _y(name="y"):
    return helper.make_tensor_value_info(name, F, None)


def _w(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32) * 0.5


def _conv_first(rng, out="c", channels=4):
    """A 3x3 conv in front of the op under test: its output is held in NHWC by the converter."""
    return (helper.make_node("Conv", ["x", "cw"], [out], pads=[1, 1, 1, 1], name="conv"),
            {"cw": _w(rng, channels, 4, 3, 3)})


def _unary(op, opset=18, **attrs):
    def build(rng):
        conv, inits = _conv_first(rng)
        return _model([conv, helper.make_node(op, ["c"], ["y"], name=op.lower(), **attrs)], [_x()], [_y()], inits,
                      opset)
    return build


def _prelu(rng):
    conv, inits = _conv_first(rng)
    inits["slope"] = rng.uniform(0.05, 0.5, (4, 1, 1)).astype(np.float32)
    return _model([conv, helper.make_node("PRelu", ["c", "slope"], ["y"], name="prelu")], [_x()], [_y()], inits)


def _layer_norm(rng):
    x = _x(shape=(1, 5, 16))
    inits = {"g": _w(rng, 16) + 1, "b": _w(rng, 16)}
    return _model([helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1, epsilon=1e-5, name="ln")],
                  [x], [_y()], inits)


def _instance_norm(rng):
    conv, inits = _conv_first(rng)
    inits.update(s=_w(rng, 4) + 1, b=_w(rng, 4))
    return _model([conv, helper.make_node("InstanceNormalization", ["c", "s", "b"], ["y"], name="inorm")],
                  [_x()], [_y()], inits)


def _channel_slice_and_split(rng):
    """Slice and Split of the channel axis of an NHWC-held map, reversed rows, then Concat."""
    conv, inits = _conv_first(rng, channels=6)
    inits.update(st=np.array([1, 5]), en=np.array([5, -100]), ax=np.array([1, 2]), sp=np.array([1, -1]),
                 sizes=np.array([1, 2, 1]))
    nodes = [conv, helper.make_node("Slice", ["c", "st", "en", "ax", "sp"], ["s"], name="slice"),
             helper.make_node("Split", ["s", "sizes"], ["a", "b", "d"], axis=1, name="split"),
             helper.make_node("Concat", ["d", "a", "b"], ["y"], axis=1, name="concat")]
    return _model(nodes, [_x()], [_y()], inits)


def _embedding(rng):
    ids = _x("ids", (1, 7), TensorProto.INT64)
    inits = {"table": _w(rng, 50, 8), "pos": _w(rng, 1, 7, 8), "one": np.array([1], np.int64),
             "idx": np.array(3, np.int64)}
    nodes = [helper.make_node("Gather", ["table", "ids"], ["e"], axis=0, name="embedding"),
             helper.make_node("Add", ["e", "pos"], ["p"], name="add"),
             helper.make_node("Gather", ["p", "idx"], ["t"], axis=1, name="select"),  # [1, 8]
             helper.make_node("Unsqueeze", ["t", "one"], ["u"], name="unsqueeze"),
             helper.make_node("Squeeze", ["u", "one"], ["y"], name="squeeze")]
    return _model(nodes, [ids], [_y()], inits)


def _attention(rng):
    """Batched MatMul of two computed tensors, softmax over a middle axis, a rank-3 x weight MatMul,
    a mask from an int input via Equal / Not / Where, and Expand."""
    x, mask = _x(shape=(1, 6, 8)), _x("mask", (1, 6), TensorProto.INT64)
    inits = {"wq": _w(rng, 8, 8), "bq": _w(rng, 8), "perm_shape": np.array([1, 6, 6]), "zero": np.array(0, np.int64),
             "neg": np.array(-1e9, np.float32), "ax": np.array([1])}
    nodes = [helper.make_node("MatMul", ["x", "wq"], ["q0"], name="proj"),
             helper.make_node("Add", ["q0", "bq"], ["q"], name="proj_bias"),
             helper.make_node("Transpose", ["x"], ["kt"], perm=[0, 2, 1], name="kt"),
             helper.make_node("MatMul", ["q", "kt"], ["s"], name="scores"),
             helper.make_node("Equal", ["mask", "zero"], ["pad"], name="is_pad"),
             helper.make_node("Not", ["pad"], ["keep"], name="keep"),
             helper.make_node("Unsqueeze", ["keep", "ax"], ["keep3"], name="keep3"),
             helper.make_node("Expand", ["keep3", "perm_shape"], ["keep_all"], name="expand"),
             helper.make_node("Where", ["keep_all", "s", "neg"], ["masked"], name="where"),
             helper.make_node("Softmax", ["masked"], ["p"], axis=1, name="softmax"),
             helper.make_node("MatMul", ["p", "x"], ["y"], name="mix")]
    return _model(nodes, [x, mask], [_y()], inits)


def _math(rng):
    x = _x(shape=(2, 3, 5))
    inits = {"two": np.array(2.0, np.float32), "three": np.array(3.0, np.float32), "axes": np.array([2])}
    nodes = [helper.make_node("Abs", ["x"], ["a"]), helper.make_node("Sqrt", ["a"], ["r"]),
             helper.make_node("Pow", ["x", "two"], ["sq"]), helper.make_node("Pow", ["a", "three"], ["cube"]),
             helper.make_node("Exp", ["x"], ["e"]), helper.make_node("Log", ["e"], ["l"]),
             helper.make_node("Neg", ["l"], ["n"]), helper.make_node("Sum", ["n", "r", "sq", "cube"], ["s"]),
             helper.make_node("Max", ["s", "x"], ["m"]),
             helper.make_node("ReduceSum", ["m", "axes"], ["rs"], keepdims=1),
             helper.make_node("ReduceL2", ["x", "axes"], ["l2"], keepdims=1),
             helper.make_node("Add", ["rs", "l2"], ["y"])]
    return _model(nodes, [x], [_y()], inits)


def _cast(rng):
    x = _x(shape=(1, 10))
    nodes = [helper.make_node("Cast", ["x"], ["i"], to=TensorProto.INT64),
             helper.make_node("Cast", ["i"], ["y"], to=TensorProto.FLOAT)]
    return _model(nodes, [x], [_y()])


def _resize(mode, transform):
    def build(rng):
        conv, inits = _conv_first(rng)
        inits["scales"] = np.array([1, 1, 2, 2], np.float32)
        node = helper.make_node("Resize", ["c", "", "scales"], ["y"], mode=mode,
                                coordinate_transformation_mode=transform, nearest_mode="floor", name="resize")
        return _model([conv, node], [_x()], [_y()], inits)
    return build


def _conv_transpose(rng):
    conv, inits = _conv_first(rng)
    inits.update(tw=_w(rng, 4, 3, 3, 3), tb=_w(rng, 3))
    node = helper.make_node("ConvTranspose", ["c", "tw", "tb"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1],
                            output_padding=[1, 1], name="deconv")
    return _model([conv, node], [_x(shape=("batch", 4, 6, 6))], [_y()], inits)


def _grouped_conv(rng):
    conv, inits = _conv_first(rng)
    inits.update(gw=_w(rng, 6, 2, 3, 3), gb=_w(rng, 6))
    node = helper.make_node("Conv", ["c", "gw", "gb"], ["y"], group=2, pads=[1, 1, 1, 1], name="grouped")
    return _model([conv, node], [_x()], [_y()], inits)


def _many_groups_conv(rng):
    """More groups than a block-diagonal filter is worth: a channel split, one conv per group."""
    conv, inits = _conv_first(rng, channels=24)
    inits.update(gw=_w(rng, 36, 2, 3, 3), gb=_w(rng, 36))
    node = helper.make_node("Conv", ["c", "gw", "gb"], ["y"], group=12, pads=[1, 1, 1, 1], name="grouped")
    return _model([conv, node], [_x()], [_y()], inits)


def _edge_pad(rng):
    conv, inits = _conv_first(rng)
    inits["pads"] = np.array([0, 0, 2, 1, 0, 0, 1, 3])
    node = helper.make_node("Pad", ["c", "pads"], ["y"], mode="edge", name="pad")
    return _model([conv, node], [_x()], [_y()], inits)


def _max_pool_ceil(rng):
    conv, inits = _conv_first(rng)
    node = helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1, name="pool")
    return _model([conv, node], [_x(shape=(1, 4, 8, 8))], [_y()], inits)


def _dynamic_batch_shape_chain(rng):
    """A bias of ones broadcast to [batch, C] through Shape -> Gather -> Concat -> ConstantOfShape on
    a dynamic batch: the exporter pins the batch to 1 and the chain folds away."""
    x = helper.make_tensor_value_info("x", F, ["batch", 4, 6, 6])
    conv, inits = _conv_first(rng)
    inits.update(i0=np.array([0]), rest=np.array([4]))
    nodes = [conv, helper.make_node("Shape", ["c"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "i0"], ["b"], axis=0, name="batch"),
             helper.make_node("Concat", ["b", "rest"], ["shape2"], axis=0, name="target"),
             helper.make_node("ConstantOfShape", ["shape2"], ["ones"], value=helper.make_tensor("v", F, [1], [1.0])),
             helper.make_node("GlobalAveragePool", ["c"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Add", ["f", "ones"], ["y"])]
    return _model(nodes, [x], [_y()], inits)


def _rnn(op, direction, linear_before_reset=0):
    """A 1-D conv front end, then GRU / LSTM (initial state as a graph input), output and last state."""
    def build(rng):
        gates, hidden, dirs = {"GRU": 3, "LSTM": 4}[op], 5, 2 if direction == "bidirectional" else 1
        x, h0 = _x(shape=(1, 3, 7)), _x("h0", (dirs, 1, hidden))
        inits = {"cw": _w(rng, 4, 3, 3), "perm": np.array([2, 0, 1]), "W": _w(rng, dirs, gates * hidden, 4),
                 "R": _w(rng, dirs, gates * hidden, hidden), "B": _w(rng, dirs, 2 * gates * hidden)}
        extra = {"linear_before_reset": linear_before_reset} if op == "GRU" else {}
        nodes = [helper.make_node("Conv", ["x", "cw"], ["c"], pads=[1, 1], strides=[1], name="conv1d"),
                 helper.make_node("Transpose", ["c"], ["seq"], perm=[2, 0, 1], name="to_seq"),  # [L, N, C]
                 helper.make_node(op, ["seq", "W", "R", "B", "", "h0"], ["ys", "y_h"], hidden_size=hidden,
                                  direction=direction, name="rnn", **extra),
                 helper.make_node("Flatten", ["ys"], ["f"], axis=0, name="flat_y"),
                 helper.make_node("Flatten", ["y_h"], ["g"], axis=0, name="flat_h"),
                 helper.make_node("Concat", ["f", "g"], ["y"], axis=1, name="both")]
        return _model(nodes, [x, h0], [_y()], inits)
    return build


OP_GRAPHS = {
    "HardSwish": _unary("HardSwish"), "HardSigmoid": _unary("HardSigmoid", alpha=0.25, beta=0.4),
    "Gelu": _unary("Gelu", 20), "Gelu-tanh": _unary("Gelu", 20, approximate="tanh"),
    "LeakyRelu": _unary("LeakyRelu", alpha=0.1), "Elu": _unary("Elu", alpha=0.7), "Erf": _unary("Erf"),
    "PRelu": _prelu, "LayerNormalization": _layer_norm, "InstanceNormalization": _instance_norm,
    "Slice+Split+Concat": _channel_slice_and_split, "Gather+Squeeze+Unsqueeze": _embedding,
    "MatMul+Softmax+Where+Expand": _attention, "math": _math, "Cast": _cast,
    "Resize-nearest": _resize("nearest", "asymmetric"), "Resize-bilinear": _resize("linear", "half_pixel"),
    "Resize-align-corners": _resize("linear", "align_corners"),
    "ConvTranspose": _conv_transpose, "Conv-group2": _grouped_conv, "Conv-group12": _many_groups_conv, "MaxPool-ceil": _max_pool_ceil, "Pad-edge": _edge_pad,
    "Shape-chain": _dynamic_batch_shape_chain,
    "Conv1d+GRU": _rnn("GRU", "forward", 1), "Conv1d+GRU-reset-after": _rnn("GRU", "reverse", 0),
    "Conv1d+LSTM-bidirectional": _rnn("LSTM", "bidirectional"),
}


def _feeds(model, rng) -> dict[str, np.ndarray]:
    feeds = {}
    for value in model.graph.input:
        shape = [d.dim_value or 1 for d in value.type.tensor_type.shape.dim]
        if value.type.tensor_type.elem_type == TensorProto.INT64:
            feeds[value.name] = rng.integers(0, 2 if "mask" in value.name else 50, shape).astype(np.int64)
        else:
            feeds[value.name] = (rng.standard_normal(shape) * 2).astype(np.float32)
    return feeds


def _export(model, folder):
    cleaned, notes = _cleaned(model)
    graph = convert(cleaned, {}, False)
    folder.mkdir()
    write_graph_model(graph, folder, "float32", {})
    return graph, notes


# ------------------------------------------------------------------ fast tier

@pytest.mark.parametrize("group", [2, 3])
def test_block_diagonal_filter_computes_the_grouped_convolution(group):
    rng = np.random.default_rng(RNG_SEED)
    w, x = _w(rng, 2 * group, 2, 3, 3), _w(rng, 1, 2 * group, 5, 5)
    outputs = []
    for weight, g in ((w, group), (block_diagonal(w, group), 1)):
        model = _model([helper.make_node("Conv", ["x", "w"], ["y"], group=g)], [_x(shape=x.shape)], [_y()], {"w": weight})
        outputs.append(ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0])
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size, kernel, stride, pad", [(8, 3, 2, 0), (7, 3, 2, 1), (112, 3, 2, 0), (6, 2, 2, 0),
                                                       (9, 2, 3, 1)])
def test_ceil_mode_pads_give_onnx_ceil_mode_output_size(size, kernel, stride, pad):
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[kernel, 1], strides=[stride, 1],
                            pads=[pad, 0, pad, 0], ceil_mode=1)
    model = _model([node], [_x(shape=(1, 1, size, 1))], [_y()])
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"x": np.zeros((1, 1, size, 1), np.float32)})[0]
    end = ceil_mode_pads(size, kernel, stride, pad, pad)
    assert (size + pad + end - kernel) // stride + 1 == expected.shape[2]


def test_a_static_shape_chain_on_a_dynamic_batch_folds_away_with_the_batch_pinned():
    cleaned, notes = _cleaned(_dynamic_batch_shape_chain(np.random.default_rng(RNG_SEED)))
    graph = convert(cleaned, {}, False)
    ops = {node["op"] for node in graph.nodes}
    assert "Shape" not in ops and "Fill" not in ops
    assert notes and notes[0].startswith("input dims fixed in the TF.js model (x[0]=1)")
    assert graph.inputs[0][1] == [1, 4, 6, 6]


def test_dynamic_image_dims_are_pinned_to_the_data_shapes_not_to_one():
    """An .onnx source declared [batch, 4, h, w]: the TF.js graph takes the data's 6 x 6 (the model's
    input spec), the batch stays dynamic when nothing reads shapes and is pinned to 1 when something does."""
    from edgeport.tensors import TensorSpec

    specs = [TensorSpec("x", (None, 4, 6, 6), "float32")]
    for chain, expected in ((True, ["x[0]=1", "x[2]=6", "x[3]=6"]), (False, ["x[2]=6", "x[3]=6"])):
        model = _dynamic_batch_shape_chain(np.random.default_rng(RNG_SEED))
        dims = model.graph.input[0].type.tensor_type.shape.dim
        dims[2].dim_param, dims[3].dim_param = "h", "w"
        if not chain:  # keep only the conv: nothing reads a shape
            conv = model.graph.node[0]
            del model.graph.node[:]
            model.graph.node.extend([conv, helper.make_node("Relu", ["c"], ["y"])])
            del model.graph.output[:]
            model.graph.output.extend([helper.make_tensor_value_info("y", F, None)])
        cleaned, notes = _cleaned(model, specs)
        assert notes and f"({', '.join(expected)})" in notes[0]
        graph = convert(cleaned, {}, False)
        assert list(graph.inputs[0][1])[1:] == [4, 6, 6]


def test_int64_inputs_become_int32_placeholders_in_the_signature(tmp_path):
    graph, _ = _export(_embedding(np.random.default_rng(RNG_SEED)), tmp_path / "m")
    signature = json.loads((tmp_path / "m" / "model.json").read_text())["signature"]
    assert signature["inputs"]["ids:0"]["dtype"] == "DT_INT32"
    assert signature["outputs"]["y:0"]["dtype"] == "DT_FLOAT"


def test_a_large_model_is_written_in_at_most_six_shards(tmp_path):
    values = np.zeros(MAX_SHARDS * SHARD_BYTES // 4 + 1000, np.float32)
    write_graph_model(TfGraph(weights=[TfWeight("w", values)]), tmp_path, "float32", {})
    manifest = json.loads((tmp_path / "model.json").read_text())["weightsManifest"][0]
    shards = [tmp_path / p for p in manifest["paths"]]
    assert len(shards) == MAX_SHARDS
    assert b"".join(p.read_bytes() for p in shards) == values.tobytes()


def test_an_op_without_conversion_is_refused_naming_op_and_node():
    model = _model([helper.make_node("Einsum", ["x", "x"], ["y"], equation="bchw,bchw->bc", name="pairs")],
                   [_x()], [_y()])
    with pytest.raises(UnsupportedOpError) as info:
        convert(model, {}, False)
    message = str(info.value)
    assert "'Einsum'" in message and "'pairs'" in message and "\n" not in message


def test_every_op_graph_converts_without_a_browser():
    for name, build in OP_GRAPHS.items():
        graph = convert(_cleaned(build(np.random.default_rng(RNG_SEED)))[0], {}, False)
        assert graph.outputs, name


# ------------------------------------------------------------------ in Chromium

@pytest.mark.e2e
@needs_browser
@pytest.mark.parametrize("name", list(OP_GRAPHS))
def test_op_matches_onnxruntime_in_chromium(tmp_path, name):
    rng = np.random.default_rng(RNG_SEED)
    model = OP_GRAPHS[name](rng)
    feeds = _feeds(model, rng)
    _export(model, tmp_path / "m")
    expected = ort.InferenceSession(model.SerializeToString()).run(None, feeds)[0].astype(np.float64)
    with open_session(tmp_path / "m", "tfjs-cpu") as session:
        got = session.run(feeds)[0].astype(np.float64)
    assert got.shape == expected.shape
    cosine = float(got.ravel() @ expected.ravel() / (np.linalg.norm(got) * np.linalg.norm(expected)))
    rel_err = float(np.abs(got - expected).max() / np.abs(expected).max())
    assert cosine >= OP_TOLERANCE["cosine"] and rel_err <= OP_TOLERANCE["rel_err"], (cosine, rel_err)
