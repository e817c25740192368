"""Converters edgeport adds to onnx2torch's table for ONNX ops it has none for: the recurrent
layers LSTM and GRU.

Each becomes a `torch.nn.LSTM` / `torch.nn.GRU` holding the node's weights, its gates reordered
from ONNX's order to torch's (`LSTM_GATES`, `GRU_GATES`): litert-torch and coremltools both
convert those modules to their own recurrent ops, and the weights stay in one tensor per
direction. A GRU with `linear_before_reset=0`, which torch's GRU does not compute, is unrolled
over its (static) sequence instead. The other forms torch's layers do not compute (other
activations, `clip`, `input_forget`, peepholes, `sequence_lens`, weights computed in the graph)
are refused before any work by `unsupported_form`, naming what is not read.

`onnx_torch._extend` registers `CONVERTERS` in onnx2torch's table.
"""

from __future__ import annotations

import functools

import numpy as np

# torch gate block k holds ONNX gate block GATES[k].
LSTM_GATES = (0, 2, 3, 1)  # ONNX i, o, f, c -> torch i, f, g, o
GRU_GATES = (1, 0, 2)  # ONNX z, r, h -> torch r, z, n
DEFAULT_ACTIVATIONS = {"LSTM": ("sigmoid", "tanh", "tanh"), "GRU": ("sigmoid", "tanh")}
STATE_INPUTS = {"LSTM": (5, 6), "GRU": (5,)}  # initial_h (and initial_c): node input indices
RECURRENT_VERSIONS = {"LSTM": (7, 14, 22), "GRU": (7, 14, 22)}
# Data-movement ops through which a recurrent layer's weights may be read from initializers.
FOLDABLE_MOVES = ("Cast", "Concat", "Constant", "Gather", "Reshape", "Slice", "Squeeze", "Transpose", "Unsqueeze")


def reorder_gates(weights: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
    """`weights` (gate blocks stacked on axis 0) with its blocks in `order`."""
    blocks = np.split(weights, len(order), axis=0)
    return np.concatenate([blocks[k] for k in order], axis=0)


def torch_rnn_weights(op: str, w: np.ndarray, r: np.ndarray, b: np.ndarray | None) -> dict[str, np.ndarray]:
    """An ONNX LSTM / GRU's W [dirs, gates*h, in], R [dirs, gates*h, h], B [dirs, 2*gates*h]
    (None: zeros) as the state dict of `torch.nn.LSTM` / `torch.nn.GRU` (one layer)."""
    order = LSTM_GATES if op == "LSTM" else GRU_GATES
    if b is None:
        b = np.zeros((w.shape[0], 2 * w.shape[1]), w.dtype)
    state = {}
    for direction in range(w.shape[0]):
        suffix = "_reverse" if direction else ""
        wb, rb = np.split(b[direction], 2)
        state[f"weight_ih_l0{suffix}"] = reorder_gates(w[direction], order)
        state[f"weight_hh_l0{suffix}"] = reorder_gates(r[direction], order)
        state[f"bias_ih_l0{suffix}"] = reorder_gates(wb, order)
        state[f"bias_hh_l0{suffix}"] = reorder_gates(rb, order)
    return state


def fold_recurrent_weights(model) -> None:
    """An LSTM / GRU weight computed from initializers by data movement only (Slice, Concat,
    Unsqueeze, ...: torch.onnx reorders silero-vad's gates so, and the clean-up leaves weights
    that large unfolded) becomes an initializer: `torch.nn.LSTM` is built from constants."""
    import onnx
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    constants = {i.name for i in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    for node in [n for n in model.graph.node if n.op_type in ("LSTM", "GRU")]:
        for index in range(1, min(4, len(node.input))):
            chain = _constant_chain(node.input[index], producers, constants)
            if not chain:
                continue
            reads = {i for n in chain for i in n.input}
            output = onnx.helper.make_empty_tensor_value_info(node.input[index])
            graph = onnx.helper.make_graph(chain, "fold", [], [output],
                                           [i for i in model.graph.initializer if i.name in reads])
            value = ReferenceEvaluator(onnx.helper.make_model(graph, opset_imports=model.opset_import)).run(None, {})[0]
            name = f"{node.input[index]}_folded"  # the chain stays, unused: dropped as dead code
            model.graph.initializer.append(numpy_helper.from_array(value, name))
            constants.add(name)
            node.input[index] = name


def _constant_chain(name: str, producers: dict, constants: set[str]) -> list:
    """The nodes (in graph order) computing `name` from initializers by data movement alone, or
    [] when it is an initializer or anything else reaches it."""
    chain, todo = [], [name]
    while todo:
        value = todo.pop()
        if value in constants or not value:
            continue
        node = producers.get(value)
        if node is None or node.op_type not in FOLDABLE_MOVES:
            return []
        if node not in chain:
            chain.append(node)
            todo.extend(node.input)
    order = {id(n): i for i, n in enumerate(producers.values())}
    return sorted(chain, key=lambda n: order[id(n)])


def unsupported_form(node, constants: set[str]) -> str | None:
    """Why an ONNX LSTM / GRU node (NodeProto) takes a form `torch.nn.LSTM` / `GRU` does not
    compute, or None."""
    from onnx import helper

    op, inputs = node.op_type, list(node.input) + [""] * 8
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    directions = 2 if attrs.get("direction", b"forward") == b"bidirectional" else 1
    activations = tuple(a.decode().lower() for a in attrs.get("activations", []))
    if activations and activations != DEFAULT_ACTIVATIONS[op] * directions:
        return f"with activations {list(activations)} (only the default {list(DEFAULT_ACTIVATIONS[op])})"
    if attrs.get("direction", b"forward") == b"reverse":
        return "with direction 'reverse'"
    if "clip" in attrs:
        return "with clip"
    if attrs.get("input_forget", 0):
        return "with input_forget=1"
    if any(name and name not in constants for name in inputs[1:4]):
        return "when W, R or B is computed in the graph, not a constant"
    if inputs[4]:
        return "with sequence_lens"
    if op == "LSTM" and inputs[7]:
        return "with peepholes (input P)"
    return None


def convert_recurrent(node, graph):
    """onnx2torch converter of an ONNX LSTM / GRU node (forms `unsupported_form` lets through)."""
    import torch
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult

    op, attrs = node.operation_type, node.attributes
    names = list(node.input_values) + [""] * 8
    w, r = (graph.initializers[names[i]].to_numpy() for i in (1, 2))
    b = graph.initializers[names[3]].to_numpy() if names[3] else None
    hidden, directions = int(attrs["hidden_size"]), w.shape[0]
    batch_first = bool(attrs.get("layout", 0))
    if op == "GRU" and not attrs.get("linear_before_reset", 0):
        layer = gru_reset_before_class()(w, r, b, hidden, batch_first)
    else:
        layer = (torch.nn.LSTM if op == "LSTM" else torch.nn.GRU)(
            w.shape[2], hidden, bidirectional=directions == 2, batch_first=batch_first)
        state = torch_rnn_weights(op, w, r, b)
        layer.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v, np.float32)) for k, v in state.items()})
    given = tuple(bool(names[i]) for i in STATE_INPUTS[op])
    module = recurrent_layer_class()(layer, given, len(node.output_values))
    inputs = (names[0],) + tuple(names[i] for i, g in zip(STATE_INPUTS[op], given) if g)
    return OperationConverterResult(torch_module=module, onnx_mapping=OnnxMapping(inputs, node.output_values))


@functools.cache
def gru_reset_before_class():
    """The module computing an ONNX GRU with linear_before_reset=0 (the reset gate applied to the
    state before the recurrent product, which torch's GRU does not compute), unrolled over the
    sequence (its length is static in an export); called as `torch.nn.GRU` is."""
    import torch

    class GRUResetBefore(torch.nn.Module):
        def __init__(self, w: np.ndarray, r: np.ndarray, b: np.ndarray | None, hidden: int, batch_first: bool):
            super().__init__()
            b = np.zeros((w.shape[0], 6 * hidden), np.float32) if b is None else b
            self.weight, self.recurrence, self.bias = (torch.nn.Parameter(torch.from_numpy(np.array(a, np.float32)))
                                                       for a in (w, r, b))
            self.hidden_size, self.batch_first, self.bidirectional = hidden, batch_first, w.shape[0] == 2

        def forward(self, x, h0):
            x = x.transpose(0, 1) if self.batch_first else x
            size, outputs, finals = self.hidden_size, [], []
            for direction in range(self.weight.shape[0]):
                w, r, b = self.weight[direction], self.recurrence[direction], self.bias[direction]
                projected = torch.matmul(x, w.t()) + b[:3 * size]  # z, r, h of every step at once
                h, steps = h0[direction], [None] * x.shape[0]
                for t in (range(x.shape[0]) if direction == 0 else reversed(range(x.shape[0]))):
                    gates = torch.matmul(h, r[:2 * size].t()) + b[3 * size:5 * size]
                    update = torch.sigmoid(projected[t, :, :size] + gates[:, :size])
                    reset = torch.sigmoid(projected[t, :, size:2 * size] + gates[:, size:])
                    candidate = torch.tanh(projected[t, :, 2 * size:] + torch.matmul(reset * h, r[2 * size:].t())
                                           + b[5 * size:])
                    h = (1 - update) * candidate + update * h
                    steps[t] = h
                outputs.append(torch.stack(steps))
                finals.append(h)
            y = torch.cat(outputs, -1)
            return (y.transpose(0, 1) if self.batch_first else y), torch.stack(finals)

    return GRUResetBefore


@functools.cache
def recurrent_layer_class():
    """The module class wrapping a torch recurrent layer (built on first use: torch loads lazily)."""
    import torch
    from onnx2torch.utils.common import OnnxToTorchModule

    class RecurrentLayer(torch.nn.Module, OnnxToTorchModule):
        """ONNX LSTM / GRU semantics around a torch layer: states given or zeros, outputs
        Y [seq, dirs, batch, hidden], Y_h (and Y_c) [dirs, batch, hidden] (layout 0), or
        [batch, seq, dirs, hidden] and [batch, dirs, hidden] (layout 1)."""

        def __init__(self, layer, given: tuple[bool, ...], outputs: int):
            super().__init__()
            self.layer, self.given, self.outputs = layer, given, outputs

        def forward(self, x, *states):
            layer, batch_first = self.layer, self.layer.batch_first
            dirs, hidden = 2 if layer.bidirectional else 1, layer.hidden_size
            batch = x.shape[0] if batch_first else x.shape[1]
            given = iter(states)
            full = [next(given) if g else x.new_zeros(batch, dirs, hidden) if batch_first
                    else x.new_zeros(dirs, batch, hidden) for g in self.given]
            if batch_first:
                full = [s.transpose(0, 1) for s in full]
            if isinstance(layer, torch.nn.LSTM):
                y, (h, c) = layer(x, tuple(full))
                finals = (h, c)
            else:
                y, h = layer(x, full[0])
                finals = (h,)
            if batch_first:
                y = y.reshape(batch, x.shape[1], dirs, hidden)
                finals = tuple(s.transpose(0, 1) for s in finals)
            else:
                y = y.reshape(x.shape[0], batch, dirs, hidden).transpose(1, 2)
            results = (y,) + finals
            return results[0] if self.outputs == 1 else results[:self.outputs]

    return RecurrentLayer


CONVERTERS = {(op, version): convert_recurrent for op, versions in RECURRENT_VERSIONS.items() for version in versions}


def pad_by_slices(x, pads: list[int], mode: str):
    """ONNX Pad in 'reflect' or 'edge' mode (`pads`: all begins, then all ends, non-negative) as
    slices, flips and a concatenation per padded axis. `F.pad` lowers these modes to index
    arithmetic on int32 (ABS, GATHER_ND) that LiteRT's runtime cannot load; plain slices (not
    `narrow`, which coremltools cannot convert here) convert everywhere."""
    import torch

    rank = len(pads) // 2
    for axis in range(rank):
        begin, end = pads[axis], pads[axis + rank]
        if not begin and not end:
            continue
        size = x.shape[axis]

        def part(start: int, stop: int):
            return x[(slice(None),) * axis + (slice(start, stop),)]

        if mode == "reflect":
            head = part(1, begin + 1).flip(axis) if begin else None
            tail = part(size - 1 - end, size - 1).flip(axis) if end else None
        else:  # edge
            head = torch.cat([part(0, 1)] * begin, axis) if begin else None
            tail = torch.cat([part(size - 1, size)] * end, axis) if end else None
        x = torch.cat([p for p in (head, x, tail) if p is not None], axis)
    return x
