"""ONNX -> PyTorch conversions edgeport adds to onnx2torch (`edgeport.onnx_torch_ops`) and the
forms `edgeport.onnx_torch._specialize` makes static, on small graphs built with onnx.helper and
compared with onnxruntime (the ONNX reference evaluator where onnxruntime has no kernel).

Tolerances: float32 graphs, max |torch - onnxruntime| <= 1e-5 (LSTM / GRU: a few ulp of tanh and
sigmoid, accumulated over 5 steps); static forms (Resize, Split, Pad) exact.
The patterns are those the trained zoo models hit: LSTM / GRU (silero-vad, ddddocr), a reshape
read by another specialized node and Resize with scales (nudenet's YOLOv8 head, PP-OCR det),
reflect Pad of a 2-D signal and an LSTM's Y_h and Y_c both graph outputs (silero-vad sequence),
an input dim written as -1 (paddle2onnx, PP-OCR cls).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnx2torch") is None
                                or importlib.util.find_spec("onnxslim") is None,
                                reason="onnx2torch / onnxslim (android and ios extras) not installed")

RNN_ATOL = 1e-5
SEQ, BATCH, FEATURES, HIDDEN = 5, 1, 4, 3


def _model(nodes, inputs, outputs, initializers=(), opset=14):
    from onnx import helper

    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _value(name, shape, elem=None):
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, elem or TensorProto.FLOAT, shape)


def _rnn(op, direction="forward", states=(), layout=0, outputs=3, seed=0, **attrs):
    """An ONNX LSTM / GRU graph with random weights and the given initial states as inputs, and
    feeds for it."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)
    dirs, gates = (2 if direction == "bidirectional" else 1), (4 if op == "LSTM" else 3)
    weights = {"W": (dirs, gates * HIDDEN, FEATURES), "R": (dirs, gates * HIDDEN, HIDDEN),
               "B": (dirs, 2 * gates * HIDDEN)}
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n) for n, s in weights.items()]
    x_shape = [SEQ, BATCH, FEATURES] if layout == 0 else [BATCH, SEQ, FEATURES]
    state_shape = [dirs, BATCH, HIDDEN] if layout == 0 else [BATCH, dirs, HIDDEN]
    inputs, names = [_value("X", x_shape)], ["X", "W", "R", "B", ""]
    for state in ("h0", "c0")[:2 if op == "LSTM" else 1]:
        names.append(state if state in states else "")
        if state in states:
            inputs.append(_value(state, state_shape))
    out_names = ["Y", "Y_h", "Y_c"][:outputs]
    if op == "GRU":
        attrs.setdefault("linear_before_reset", 1)
    node = helper.make_node(op, names, out_names, hidden_size=HIDDEN, direction=direction, layout=layout, **attrs)
    model = _model([node], inputs, [_value(n, None) for n in out_names], inits)
    feeds = {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
             for i in inputs}
    return model, feeds


def _reference(model, feeds):
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _torch_module(model):
    """The module `edgeport.onnx_torch` makes of `model` (free dims at 1)."""
    from edgeport import onnx_torch

    graph = onnx_torch._prepared(model)
    assert onnx_torch.unsupported_node(graph) is None
    return onnx_torch.onnx2torch().convert(graph)


def _run(module, model, feeds):
    import torch

    with torch.no_grad():
        out = module(*[torch.from_numpy(feeds[i.name]) for i in model.graph.input])
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def _save_and_load(tmp_path, model, data_specs=None):
    """`model` as an `.onnx` source (`load_onnx`), then as PyTorch (`to_torch`)."""
    import onnx

    from edgeport.onnx_torch import to_torch
    from edgeport.sources import load_onnx

    path = tmp_path / "m.onnx"
    onnx.save(onnx.shape_inference.infer_shapes(model), str(path))  # the outputs' types
    return to_torch(load_onnx(path, None, data_specs))


def torch_export(converted):
    """torch.export reads the module without a data-dependent guard (what litert-torch and
    coremltools need first)."""
    import torch

    return torch.export.export(converted.torch_module, converted.example_inputs, strict=False)


# ------------------------------------------------------------------ LSTM / GRU

RECURRENT_CASES = [(op, direction, states) for op in ("LSTM", "GRU") for direction in ("forward", "bidirectional")
                   for states in ((), ("h0",), ("h0", "c0"))[:3 if op == "LSTM" else 2]]


@pytest.mark.parametrize("op, direction, states", RECURRENT_CASES,
                         ids=[f"{o}-{d}-{'-'.join(s) or 'zeros'}" for o, d, s in RECURRENT_CASES])
def test_recurrent_layer_matches_onnxruntime(op, direction, states):
    model, feeds = _rnn(op, direction, states, outputs=3 if op == "LSTM" else 2)
    want = _reference(model, feeds)
    got = _run(_torch_module(model), model, feeds)
    assert [g.shape for g in got] == [w.shape for w in want]  # Y [seq, dirs, batch, hidden], Y_h [dirs, batch, hidden]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=RNN_ATOL, rtol=0)


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_recurrent_layer_batch_first_layout_matches_the_reference_evaluator(op):
    from onnx.reference import ReferenceEvaluator  # onnxruntime has no layout=1 kernel

    model, feeds = _rnn(op, "bidirectional", ("h0",), layout=1, outputs=2)
    want = ReferenceEvaluator(model).run(None, feeds)
    for g, w in zip(_run(_torch_module(model), model, feeds), want):
        np.testing.assert_allclose(g, w, atol=RNN_ATOL, rtol=0)


@pytest.mark.parametrize("outputs", [1, 2])
def test_recurrent_layer_with_fewer_outputs(outputs):
    model, feeds = _rnn("LSTM", "forward", ("h0", "c0"), outputs=outputs)
    got = _run(_torch_module(model), model, feeds)
    assert len(got) == outputs
    for g, w in zip(got, _reference(model, feeds)):
        np.testing.assert_allclose(g, w, atol=RNN_ATOL, rtol=0)


def test_gate_reordering_is_a_permutation_of_blocks():
    from edgeport.onnx_torch_ops import GRU_GATES, LSTM_GATES, reorder_gates

    blocks = np.repeat(np.arange(4), 2)[:, None]  # ONNX i, i, o, o, f, f, c, c
    assert reorder_gates(blocks, LSTM_GATES).ravel().tolist() == [0, 0, 2, 2, 3, 3, 1, 1]  # torch i, f, g, o
    assert reorder_gates(np.arange(3)[:, None], GRU_GATES).ravel().tolist() == [1, 0, 2]  # torch r, z, n


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
def test_gru_with_the_reset_gate_before_the_product_matches_the_reference(direction, layout):
    """linear_before_reset=0 (tf2onnx's GRU), which torch's GRU does not compute: unrolled."""
    from onnx.reference import ReferenceEvaluator

    model, feeds = _rnn("GRU", direction, ("h0",), layout=layout, outputs=2, linear_before_reset=0)
    want = ReferenceEvaluator(model).run(None, feeds) if layout else _reference(model, feeds)
    for g, w in zip(_run(_torch_module(model), model, feeds), want):
        np.testing.assert_allclose(g, w, atol=RNN_ATOL, rtol=0)


@pytest.mark.parametrize("attrs, why", [
    ({"clip": 3.0}, "clip"),
    ({"direction": "reverse"}, "reverse"),
    ({"activations": ["Relu", "Tanh"]}, "activations"),
])
def test_recurrent_forms_torch_does_not_compute_are_refused_with_op_and_node(attrs, why):
    from edgeport import onnx_torch

    direction = attrs.pop("direction", "forward")
    model, _ = _rnn("GRU", direction, outputs=2, **attrs)
    model.graph.node[0].name = "gru_0"
    op, node, message = onnx_torch.unsupported_node(onnx_torch._prepared(model))
    assert (op, node) == ("GRU", "gru_0") and why in message and "\n" not in message


def test_lstm_states_as_two_graph_outputs_exports(tmp_path):
    """silero-vad's sequence model: Y feeds the head, Y_h and Y_c are graph outputs."""
    from onnx import helper

    model, feeds = _rnn("LSTM", "forward", ("h0", "c0"))
    model.graph.node.append(helper.make_node("Relu", ["Y"], ["head"]))
    del model.graph.output[0]
    model.graph.output.insert(0, _value("head", None))
    converted = _save_and_load(tmp_path, model)
    assert len(converted.example_inputs) == 3
    got = _run(converted.torch_module, model, feeds)
    assert len(got) == 3
    for g, w in zip(got, _reference(model, feeds)):
        np.testing.assert_allclose(g, w, atol=RNN_ATOL, rtol=0)
    torch_export(converted)


# ------------------------------------------------------------------ static forms of the trained models

def test_resize_with_scales_after_a_specialized_reshape_exports(tmp_path):
    """YOLOv8 / DBNet pattern: a Reshape onnx2torch reads from a constant, a node reading its
    output, then Resize with scales (a float tensor onnx2torch reads at run time): each becomes a
    torch call with Python numbers, and torch.export sees no data-dependent guard."""
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(np.array([1, 4, 6, 6], np.int64), "shape"),
             numpy_helper.from_array(np.array([1, 2, 1], np.int64), "split"),
             numpy_helper.from_array(np.array([1.0, 1.0, 2.0, 2.0], np.float32), "scales")]
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]),
             helper.make_node("Split", ["r", "split"], ["a", "b", "c"], axis=1),
             helper.make_node("Resize", ["b", "", "scales"], ["up"], mode="nearest"),
             helper.make_node("Resize", ["c", "", "scales"], ["lin"], mode="linear"),
             helper.make_node("Concat", ["up", "lin"], ["y"], axis=1),
             helper.make_node("Relu", ["a"], ["z"])]
    model = _model(nodes, [_value("x", [1, 144])], [_value("y", [1, 3, 12, 12]), _value("z", [1, 1, 6, 6])], inits,
                   opset=17)
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 144)).astype(np.float32)}
    converted = _save_and_load(tmp_path, model)
    for g, w in zip(_run(converted.torch_module, model, feeds), _reference(model, feeds)):
        np.testing.assert_allclose(g, w, atol=1e-6, rtol=0)
    torch_export(converted)


@pytest.mark.parametrize("mode", ["reflect", "edge"])
@pytest.mark.parametrize("shape, pads", [([1, 32], [0, 8, 0, 8]), ([1, 4, 10], [0, 0, 2, 0, 0, 3])], ids=["2d", "3d"])
def test_reflect_and_edge_pad_export_as_slices(tmp_path, mode, shape, pads):
    """silero-vad's STFT padding: reflect Pad of [batch, samples], which onnx2torch's module
    refuses (it pads only the last dims of a 3-D to 5-D tensor in that mode), and which F.pad
    would lower to int32 index arithmetic (ABS, GATHER_ND) LiteRT's runtime cannot load."""
    from onnx import helper, numpy_helper

    out = [s + pads[i] + pads[i + len(shape)] for i, s in enumerate(shape)]
    model = _model([helper.make_node("Pad", ["x", "pads"], ["y"], mode=mode)], [_value("x", shape)],
                   [_value("y", out)], [numpy_helper.from_array(np.array(pads, np.int64), "pads")], opset=18)
    feeds = {"x": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    converted = _save_and_load(tmp_path, model)
    np.testing.assert_array_equal(_run(converted.torch_module, model, feeds)[0], _reference(model, feeds)[0])
    program = torch_export(converted)
    assert not [n for n in program.graph.nodes if "abs" in str(n.target) or "index" in str(n.target)]


# ------------------------------------------------------------------ dynamic dims

def test_a_dim_written_as_minus_one_is_dynamic_and_the_data_gives_the_others(tmp_path):
    """paddle2onnx writes a dynamic batch as -1 (PP-OCR cls: [-1, 3, ?, ?]): it is a dynamic dim,
    and the other free dims come from the data's array of the same name."""
    from onnx import helper

    model = _model([helper.make_node("GlobalAveragePool", ["x"], ["y"])],
                   [_value("x", [-1, 3, "h", "w"])], [_value("y", [-1, 3, 1, 1])], opset=11)
    model.graph.input[0].type.tensor_type.shape.dim[2].Clear()  # "?": neither a value nor a name
    converted = _save_and_load(tmp_path, model, {"x": ((3, 48, 192), "float32")})
    assert converted.inputs[0].shape == (None, 3, 48, 192)
    assert tuple(converted.example_inputs[0].shape) == (1, 3, 48, 192)
    torch_export(converted)


def test_a_minus_one_dim_passes_the_size_check(tmp_path):
    import onnx
    from onnx import helper

    from edgeport.sources import load_onnx

    model = _model([helper.make_node("Relu", ["x"], ["y"])], [_value("x", [-1, 3])], [_value("y", [-1, 3])])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert load_onnx(path).inputs[0].shape == (None, 3)


@pytest.mark.parametrize("index", [np.array(-1, np.int64), np.array([2, 0], np.int64)], ids=["scalar", "list"])
def test_gather_of_constant_indices_exports(tmp_path, index):
    """`y[-1]` of an RNN's output (torch.onnx writes Gather with a scalar index): onnx2torch reads
    the index with item(), which LiteRT cannot lower; a select / index_select of the constant can."""
    from onnx import helper, numpy_helper

    model = _model([helper.make_node("Gather", ["x", "i"], ["y"], axis=1)], [_value("x", [1, 4, 3])],
                   [_value("y", [1, *index.shape, 3])], [numpy_helper.from_array(index, "i")])
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 4, 3)).astype(np.float32)}
    converted = _save_and_load(tmp_path, model)
    np.testing.assert_array_equal(_run(converted.torch_module, model, feeds)[0], _reference(model, feeds)[0])
    program = torch_export(converted)
    assert not [n for n in program.graph.nodes if "item" in str(n.target) or "local_scalar" in str(n.target)]


# ------------------------------------------------------------------ the LiteRT path

def _channel_broadcast_module():
    """timm MobileViTv2's linear attention: key [B, d, P, N] (from a conv) times scores
    [B, 1, P, N], summed over N, times relu(value)."""
    import torch
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, d=8):
            super().__init__()
            self.qkv, self.out, self.d = nn.Conv2d(d, 1 + 2 * d, 1), nn.Conv2d(d, d, 1), d

        def forward(self, x):
            query, key, value = self.qkv(x).split([1, self.d, self.d], dim=1)
            context = (key * torch.softmax(query, dim=-1)).sum(dim=-1, keepdim=True)
            return self.out(torch.relu(value) * context.expand_as(value))

    torch.manual_seed(0)
    return Attention().eval(), (torch.randn(1, 8, 4, 16),)


def test_channel_broadcasts_are_made_explicit_without_changing_numbers():
    import torch

    from edgeport.exporters.tflite import explicit_channel_broadcasts

    module, examples = _channel_broadcast_module()
    program = torch.export.export(module, examples)
    assert explicit_channel_broadcasts(program) == 1  # the scores; relu(value) * context is already expanded
    with torch.no_grad():
        torch.testing.assert_close(program.module()(*examples), module(*examples), rtol=0, atol=0)


@pytest.mark.e2e
def test_a_channel_broadcast_after_a_conv_converts_to_litert():
    """litert-torch's layout pass refused it ("'tfl.mul' op operands don't have broadcast-compatible
    shapes") before the broadcast was made explicit."""
    import torch
    from ai_edge_litert.interpreter import Interpreter

    from edgeport.exporters.tflite import _convert

    module, examples = _channel_broadcast_module()
    interpreter = Interpreter(model_content=_convert(module, examples))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], examples[0].numpy())
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    with torch.no_grad():
        np.testing.assert_allclose(got, module(*examples).numpy(), atol=1e-5, rtol=0)


def test_lstm_weights_reordered_in_the_graph_are_folded():
    """silero-vad's LSTM reads W and R through Slice -> Concat -> Unsqueeze of initializers (torch.onnx
    reorders the gates in the graph); weights that large (> 64 KB) are left unfolded by the clean-up,
    so the conversion folds them itself."""
    from onnx import helper, numpy_helper

    hidden, features = 64, 80
    rng = np.random.default_rng(0)
    w2, r2 = (rng.standard_normal((4 * hidden, n)).astype(np.float32) * 0.1 for n in (features, hidden))
    inits = [numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(r2, "r2"),
             numpy_helper.from_array(np.array([0], np.int64), "axes"),
             numpy_helper.from_array(np.array([0], np.int64), "at0"),
             numpy_helper.from_array(np.array([2 * hidden], np.int64), "half"),
             numpy_helper.from_array(np.array([4 * hidden], np.int64), "all")]
    nodes = [helper.make_node("Slice", ["w2", "at0", "half"], ["w_low"]),
             helper.make_node("Slice", ["w2", "half", "all"], ["w_high"]),
             helper.make_node("Concat", ["w_high", "w_low"], ["w_swapped"], axis=0),
             helper.make_node("Unsqueeze", ["w_swapped", "axes"], ["W"]),
             helper.make_node("Unsqueeze", ["r2", "axes"], ["R"]),
             helper.make_node("LSTM", ["X", "W", "R"], ["Y"], hidden_size=hidden)]
    model = _model(nodes, [_value("X", [3, 1, features])], [_value("Y", [3, 1, 1, hidden])], inits)
    feeds = {"X": rng.standard_normal((3, 1, features)).astype(np.float32)}
    np.testing.assert_allclose(_run(_torch_module(model), model, feeds)[0], _reference(model, feeds)[0],
                               atol=RNN_ATOL, rtol=0)


def test_a_matmul_by_a_constant_becomes_a_linear_layer(tmp_path):
    """The quantizers give int8 weights to torch.nn.Linear: a MatMul by a constant [K, N] (shared by
    two MatMuls here) is converted to one, with the same numbers, and mapped to its initializer."""
    import onnxruntime as ort
    import torch
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((8, 5)).astype(np.float32)
    model = _model([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
                    helper.make_node("Relu", ["h"], ["r"]),
                    helper.make_node("MatMul", ["x", "w"], ["h2"], name="mm2"),
                    helper.make_node("Add", ["r", "h2"], ["y"])],
                   [_value("x", [1, 3, 8])], [_value("y", [1, 3, 5])], [numpy_helper.from_array(weight, "w")])
    converted = _save_and_load(tmp_path, model)
    linears = [m for m in converted.torch_module.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 2 and all(tuple(m.weight.shape) == (5, 8) for m in linears)
    x = rng.standard_normal((1, 3, 8)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = converted.torch_module(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    paired = [p for p in converted.params if p.onnx == "w"]
    assert paired and paired[0].path.endswith(".weight")
