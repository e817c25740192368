"""TF.js conversions of ONNX LSTM and GRU, unrolled over their (static) sequence length.

TF.js graph models have no fused recurrent kernel, so each time step is written out: one MatMul
for the input projection of every step at once, then per step a MatMul of the hidden state, the
gates (SplitV, Sigmoid, Tanh) and the state update. Sequence lengths must be known when
converting (the exporter pins unknown input dims of a graph holding an RNN to 1); ONNX's default
activations only, no peepholes, no clip, no per-batch `sequence_lens`.
"""

from __future__ import annotations

import numpy as np

from edgeport.errors import UnsupportedOpError
from edgeport.exporters.tfjs_graph import TFJS_OPS, _Converter, a_type

GATES = {"LSTM": 4, "GRU": 3}


def _given(node, index: int) -> str | None:
    return node.input[index] if len(node.input) > index and node.input[index] else None


def _check(c: _Converter, node) -> tuple[int, int, int, int]:
    at = c.attrs(node)
    if at.get("activations") or at.get("clip") is not None or at.get("layout", 0) or at.get("input_forget", 0):
        raise UnsupportedOpError(node.op_type, node.name, "TF.js export supports default activations, no clip, "
                                 "layout 0 and input_forget 0")
    if _given(node, 4) or (node.op_type == "LSTM" and _given(node, 7)):
        raise UnsupportedOpError(node.op_type, node.name, "sequence_lens / peepholes have no TF.js conversion")
    seq, batch = (c.shapes.get(node.input[0]) or [-1, -1])[:2]
    if seq <= 0 or batch <= 0:
        raise UnsupportedOpError(node.op_type, node.name, "unrolling needs a known sequence length and batch size")
    dirs = 2 if c.attrs(node).get("direction", b"forward") in (b"bidirectional", "bidirectional") else 1
    return seq, batch, dirs, at["hidden_size"]


def _matmul(c: _Converter, name: str, x: str, weight: np.ndarray, bias: np.ndarray | None) -> str:
    y = c.op("MatMul", name, [x, c.const(f"{name}/w", weight.T.astype(np.float32))],
             transpose_a={"b": False}, transpose_b={"b": False})
    if bias is not None and np.any(bias):
        y = c.op("AddV2", f"{name}/b", [y, c.const(f"{name}/bias", bias.astype(np.float32))])
    return y


def _initial(c: _Converter, node, index: int, d: int, batch: int, hidden: int) -> str:
    name = _given(node, index)
    tag = f"{node.name}/init{index}_{d}"
    if name is None:
        return c.const(tag, np.zeros((batch, hidden), np.float32))
    if name in c.consts:
        return c.const(tag, c.consts[name][d].astype(np.float32))
    return c.op("GatherV2", tag, [c.tensor(name, "plain"), c.const(f"{tag}/i", np.array(d, np.int32)),
                                  c.const(f"{tag}/axis", np.array(0, np.int32))],
                batch_dims={"i": "0"}, Tindices=a_type("DT_INT32"), Taxis=a_type("DT_INT32"))


def _split(c: _Converter, name: str, x: str, parts: int, hidden: int) -> list[str]:
    split = c.op("SplitV", name, [x, c.const(f"{name}/sizes", np.array([hidden] * parts)),
                                  c.const(f"{name}/axis", np.array(1))], num_split={"i": str(parts)},
                 Tlen=a_type("DT_INT32"))
    return [split] + [f"{split}:{i}" for i in range(1, parts)]


def _step_lstm(c, tag, x_proj, h, cell, r, r_bias, hidden):
    gates = c.op("AddV2", f"{tag}/gates", [x_proj, _matmul(c, f"{tag}/rec", h, r, r_bias)])
    i, o, f, g = _split(c, f"{tag}/split", gates, 4, hidden)
    i, o, f = (c.op("Sigmoid", f"{tag}/{k}", [v]) for k, v in (("i", i), ("o", o), ("f", f)))
    cell = c.op("AddV2", f"{tag}/c", [c.op("Mul", f"{tag}/fc", [f, cell]),
                                      c.op("Mul", f"{tag}/ig", [i, c.op("Tanh", f"{tag}/g", [g])])])
    return c.op("Mul", f"{tag}/h", [o, c.op("Tanh", f"{tag}/tanh_c", [cell])]), cell


def _step_gru(c, tag, x_proj, h, r, r_bias, hidden, linear_before_reset):
    xz, xr, xh = _split(c, f"{tag}/xsplit", x_proj, 3, hidden)
    rz, rr = r[:hidden], r[hidden:2 * hidden]
    bz, br, bh = (r_bias[k * hidden:(k + 1) * hidden] for k in range(3))
    z = c.op("Sigmoid", f"{tag}/z", [c.op("AddV2", f"{tag}/z_in", [xz, _matmul(c, f"{tag}/rz", h, rz, bz)])])
    reset = c.op("Sigmoid", f"{tag}/r", [c.op("AddV2", f"{tag}/r_in", [xr, _matmul(c, f"{tag}/rr", h, rr, br)])])
    if linear_before_reset:
        rec = c.op("Mul", f"{tag}/rh", [reset, _matmul(c, f"{tag}/rh_mm", h, r[2 * hidden:], bh)])
    else:
        rec = _matmul(c, f"{tag}/rh_mm", c.op("Mul", f"{tag}/rh", [reset, h]), r[2 * hidden:], bh)
    cand = c.op("Tanh", f"{tag}/cand", [c.op("AddV2", f"{tag}/cand_in", [xh, rec])])
    # h' = (1 - z) * cand + z * h = cand + z * (h - cand)
    return c.op("AddV2", f"{tag}/h", [cand, c.op("Mul", f"{tag}/zd", [z, c.op("Sub", f"{tag}/d", [h, cand])])])


def _pack(c: _Converter, name: str, tensors: list[str], axis: int) -> str:
    return c.op("Pack", name, tensors, N={"i": str(len(tensors))}, axis={"i": str(axis)})


@TFJS_OPS.register("LSTM")
@TFJS_OPS.register("GRU")
def rnn(c: _Converter, node) -> None:
    seq, batch, dirs, hidden = _check(c, node)
    gates = GATES[node.op_type]
    w, r = c.constant(node.input[1], node), c.constant(node.input[2], node)
    b = c.constant(node.input[3], node) if _given(node, 3) else np.zeros((dirs, 2 * gates * hidden), np.float32)
    x = c.tensor(node.input[0], "plain")
    features = w.shape[2]
    rows = c.op("Reshape", f"{node.name}/rows", [x, c.const(f"{node.name}/rows_shape", np.array([seq * batch, features]))],
                Tshape=a_type("DT_INT32"))
    linear_before_reset = c.attrs(node).get("linear_before_reset", 0)
    per_dir, last_h, last_c = [], [], []
    for d in range(dirs):
        tag = f"{node.name}/d{d}"
        w_bias, r_bias = b[d][:gates * hidden], b[d][gates * hidden:]
        x_bias = w_bias + r_bias if node.op_type == "LSTM" else w_bias.copy()
        if node.op_type == "GRU":  # z and r gates take both biases up front; h's recurrent bias stays inside
            x_bias[:2 * hidden] += r_bias[:2 * hidden]
        proj = _matmul(c, f"{tag}/x", rows, w[d], x_bias)
        proj = c.op("Reshape", f"{tag}/x_seq", [proj, c.const(f"{tag}/x_seq_shape", np.array([seq, batch, gates * hidden]))],
                    Tshape=a_type("DT_INT32"))
        h = _initial(c, node, 5, d, batch, hidden)
        cell = _initial(c, node, 6, d, batch, hidden) if node.op_type == "LSTM" else None
        outputs = [None] * seq
        backward = d == 1 or c.attrs(node).get("direction", b"forward") in (b"reverse", "reverse")
        steps = reversed(range(seq)) if backward else range(seq)
        for t in steps:
            step = f"{tag}/t{t}"
            x_t = c.op("GatherV2", f"{step}/x", [proj, c.const(f"{step}/i", np.array(t, np.int32)),
                                                 c.const(f"{step}/axis", np.array(0, np.int32))],
                       batch_dims={"i": "0"}, Tindices=a_type("DT_INT32"), Taxis=a_type("DT_INT32"))
            if node.op_type == "LSTM":
                h, cell = _step_lstm(c, step, x_t, h, cell, r[d], None, hidden)
            else:
                zero_r = np.zeros(3 * hidden, np.float32)
                zero_r[2 * hidden:] = r_bias[2 * hidden:]
                h = _step_gru(c, step, x_t, h, r[d], zero_r, hidden, linear_before_reset)
            outputs[t] = h
        per_dir.append(_pack(c, f"{tag}/y", outputs, 0))  # [seq, batch, hidden]
        last_h.append(h)
        last_c.append(cell)
    outs = list(node.output) + [""] * 3
    if outs[0]:
        c.hold(outs[0], _pack(c, f"{node.name}/y", per_dir, 1), "plain")  # [seq, dirs, batch, hidden]
    if outs[1]:
        c.hold(outs[1], _pack(c, f"{node.name}/y_h", last_h, 0), "plain")
    if node.op_type == "LSTM" and outs[2]:
        c.hold(outs[2], _pack(c, f"{node.name}/y_c", last_c, 0), "plain")
