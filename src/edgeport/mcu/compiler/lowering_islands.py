"""Float islands -> int8 tables: DEQUANTIZE -> element-wise float ops -> QUANTIZE.

An int8 .tflite made by PT2E keeps in float the ops its quantizer does not annotate: a PReLU
(litert-torch writes it as RELU, MUL and SUB), a leaky ReLU, a select. The island reads one int8
tensor and writes int8 tensors, and its ops are element-wise with constants that vary along one
axis at most (a per-channel slope), so each output is a function of the int8 input value and
its channel: 256 values per channel. `fold_float_islands` computes them at generation time with
LiteRT's float arithmetic (float32 operations in the ops' order, DEQUANTIZE and QUANTIZE as its
reference kernels round) and replaces the island by a TABLE op per output, looked up by
`ep_lut_s8` (one table) or `ep_lut_channels_s8` (a table per channel).

Only ops whose float32 result is exactly determined (+, -, *, /, max, min, comparisons, select,
the ReLU clamps, negation, absolute value, PReLU and leaky ReLU) are folded; an island with any
other float op (an exp, a tanh: their last bit depends on the C library) is left alone, and its
ops are then refused by name as before.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from edgeport.mcu.compiler.lowering import CStruct, Lower, Lowering, Ref, Step, _require_int8, _tensors
from edgeport.mcu.compiler.lowering_activation import c_table_order
from edgeport.mcu.compiler.requant import INT8_MAX, INT8_MIN
from edgeport.mcu.compiler.tflite_ir import Graph, Op

TABLE = "TABLE"  # the op replacing an island's path to one of its int8 outputs
F32 = np.float32
_CLAMPS = {"NONE": (None, None), "RELU": (0.0, None), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}


def _fused(op: Op, value: np.ndarray) -> np.ndarray:
    """The op's fused activation, as TFLite's float kernels clamp (min, then max)."""
    low, high = _CLAMPS[op.options.get("fused_activation_function", "NONE")]
    value = np.maximum(value, F32(low)) if low is not None else value
    return np.minimum(value, F32(high)) if high is not None else value


def _binary(fn):
    return lambda op, a, b: _fused(op, fn(a, b).astype(F32))


# TFLite op -> its float reference kernel on float32 arrays (None: not exact here)
FLOAT_OPS = {
    "ADD": _binary(np.add), "SUB": _binary(np.subtract), "MUL": _binary(np.multiply), "DIV": _binary(np.divide),
    "MAXIMUM": lambda op, a, b: np.maximum(a, b), "MINIMUM": lambda op, a, b: np.minimum(a, b),
    "RELU": lambda op, a: np.maximum(a, F32(0)), "RELU6": lambda op, a: np.minimum(np.maximum(a, F32(0)), F32(6)),
    "RELU_N1_TO_1": lambda op, a: np.minimum(np.maximum(a, F32(-1)), F32(1)),
    "NEG": lambda op, a: -a, "ABS": lambda op, a: np.abs(a),
    "LEAKY_RELU": lambda op, a: np.where(a > 0, a, a * F32(op.options.get("alpha", 0.0))).astype(F32),
    "PRELU": lambda op, a, alpha: np.where(a >= 0, a, a * alpha).astype(F32),
    "GREATER": lambda op, a, b: a > b, "GREATER_EQUAL": lambda op, a, b: a >= b,
    "LESS": lambda op, a, b: a < b, "LESS_EQUAL": lambda op, a, b: a <= b,
    "EQUAL": lambda op, a, b: a == b, "NOT_EQUAL": lambda op, a, b: a != b,
    "SELECT": lambda op, c, a, b: np.where(c, a, b).astype(F32),
    "SELECT_V2": lambda op, c, a, b: np.where(c, a, b).astype(F32),
}


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """LiteRT's DEQUANTIZE: the exact product of the float32 scale and q - zero point, rounded once."""
    return (np.float64(F32(scale)) * (q.astype(np.float64) - zero_point)).astype(F32)


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """LiteRT's QUANTIZE to int8: float32 division, rounded half away from zero, clamped."""
    v = (x.astype(F32) / F32(scale)).astype(np.float64)
    rounded = np.where(v >= 0, np.floor(v + 0.5), -np.floor(-v + 0.5))
    return np.clip(np.clip(np.nan_to_num(rounded), -512, 512) + zero_point, INT8_MIN, INT8_MAX).astype(np.int8)


class _Island:
    """The float ops reachable from one DEQUANTIZE, and the QUANTIZE ops leaving them."""

    def __init__(self, graph: Graph, dequantize_op: Op):
        self.graph, self.entry = graph, dequantize_op
        self.ops: list[Op] = []
        self.exits: list[Op] = []
        self.values = {dequantize_op.outputs[0]}  # float tensors computed from the entry alone
        self.members: set[int] = set()  # op indexes of `ops` and `exits`

    def grow(self, outputs: frozenset[int]) -> bool:
        """Collect the island; False when it cannot be a table (another float source, an op
        without an exact float form, a shape change, a float value read outside the island or
        a graph output)."""
        graph, shape = self.graph, self.graph.tensors[self.entry.outputs[0]].shape
        frontier = [self.entry.outputs[0]]
        while frontier:
            tensor = frontier.pop()
            if tensor in outputs:
                return False
            for op in graph.consumers(tensor):
                if op.index in self.members:
                    continue
                if op.name == "QUANTIZE" and graph.tensors[op.outputs[0]].dtype == "int8":
                    self.exits.append(op)
                    self.members.add(op.index)
                    continue
                exact = op.name in FLOAT_OPS and op.options.get("fused_activation_function", "NONE") in _CLAMPS
                if not exact or len(op.outputs) != 1:
                    return False
                sources = [i for i in op.inputs if i >= 0 and not graph.tensors[i].is_constant]
                if any(graph.producer(i) is None for i in sources if i not in self.values):
                    return False  # reads a graph input besides the entry
                if not all(i in self.values for i in sources):
                    continue  # another input not computed yet: the op is met again from there
                out = graph.tensors[op.outputs[0]]
                if out.shape != shape or out.dtype not in ("float32", "bool"):
                    return False
                self.ops.append(op)  # after the ops making its inputs: an order to compute in
                self.members.add(op.index)
                self.values.add(op.outputs[0])
                frontier.append(op.outputs[0])
        return bool(self.exits) and all(reader.index in self.members for value in self.values
                                         for reader in graph.consumers(value))

    def channel_axis(self) -> int | None | bool:
        """The one axis the constants vary along (None: none varies; False: several do)."""
        shape = self.graph.tensors[self.entry.outputs[0]].shape
        axes = set()
        for op in self.ops:
            for i in op.inputs:
                if i >= 0 and self.graph.tensors[i].is_constant:
                    data = self.graph.tensors[i].data
                    aligned = (1,) * (len(shape) - data.ndim) + data.shape
                    if len(aligned) > len(shape):
                        return False
                    axes |= {a for a, n in enumerate(aligned) if n > 1}
        return False if len(axes) > 1 else (axes.pop() if axes else None)

    def tables(self, axis: int | None) -> dict[int, np.ndarray]:
        """Exit QUANTIZE op index -> its int8 outputs [channels, 256] for the inputs -128..127."""
        graph, shape = self.graph, self.graph.tensors[self.entry.outputs[0]].shape
        source = graph.tensors[self.entry.inputs[0]]
        probe = [1] * len(shape)
        if axis is not None:
            probe[axis] = shape[axis]
        q = np.arange(INT8_MIN, INT8_MAX + 1).reshape(256, *[1] * len(shape))
        values = {self.entry.outputs[0]: np.broadcast_to(dequantize(q, source.scale, source.zero_point),
                                                         (256, *probe))}
        for op in self.ops:  # consumers were appended after their inputs' producers
            args = [values[i] if i in values else graph.tensors[i].data for i in op.inputs if i >= 0]
            values[op.outputs[0]] = np.asarray(FLOAT_OPS[op.name](op, *args))
        tables = {}
        for exit_op in self.exits:
            out = graph.tensors[exit_op.outputs[0]]
            result = np.broadcast_to(values[exit_op.inputs[0]], (256, *probe)).reshape(256, -1)
            tables[exit_op.index] = quantize(result, out.scale, out.zero_point).T
        return tables


def fold_float_islands(graph: Graph, outputs: frozenset[int]) -> tuple[Graph, list[str]]:
    """`graph` with each foldable float island replaced by TABLE ops (one per int8 output, in the
    place of its QUANTIZE), and notes saying what was folded. `outputs`: the graph's outputs
    (never part of an island)."""
    tables: dict[int, Op] = {}  # exit QUANTIZE index -> the TABLE op in its place
    removed: set[int] = set()
    notes = []
    for op in graph.ops:
        if op.name != "DEQUANTIZE" or op.index in removed or graph.tensors[op.inputs[0]].dtype != "int8":
            continue
        island = _Island(graph, op)
        if not island.grow(outputs) or (axis := island.channel_axis()) is False:
            continue
        if any(graph.tensors[t].per_channel for t in (op.inputs[0], *(e.outputs[0] for e in island.exits))):
            continue
        shape = graph.tensors[op.outputs[0]].shape
        exits = {e.index: e for e in island.exits}
        for index, table in island.tables(axis).items():
            tables[index] = Op(index, TABLE, (op.inputs[0],), exits[index].outputs, {
                "table": table, "float_ops": [o.name for o in island.ops],
                "outer": int(np.prod(shape[:axis], dtype=np.int64)) if axis is not None else 1,
                "inner": int(np.prod(shape[axis + 1:], dtype=np.int64)) if axis is not None else 1})
        removed |= {op.index, *(o.index for o in island.ops)}
        names = ", ".join(o.name for o in island.ops) or "a requantization"
        notes.append(f"'{graph.tensors[op.inputs[0]].label}' -> {names} -> {len(island.exits)} int8 tensor(s): "
                     f"{'a table per channel' if axis is not None else 'one table'}")
    if not tables:
        return graph, []
    ops = [tables.get(op.index, op) for op in graph.ops if op.index not in removed]
    return replace(graph, ops=ops), notes


def lower_table(op: Op, graph: Graph, ctx: Lowering) -> Step:
    """A folded island's path to one int8 output: its table(s) looked up by the input byte."""
    (inp,), (out,) = _tensors(op, graph)
    _require_int8(op, graph, inp, out)
    table, name = op.options["table"], f"op{op.index}"
    ordered = np.stack([c_table_order(row) for row in table])
    comment = f"int8 results of {', '.join(op.options['float_ops']) or 'a requantization'} by input byte"
    lut = ctx.array(f"{name}_lut", "int8_t", ordered.reshape(-1), comment + (" and channel" if len(table) > 1 else ""))
    if len(table) == 1:
        return Step(op, [f"ep_lut_s8({out.size}, {lut}, ", ctx.operand(op.inputs[0]), ", ", Ref(op.outputs[0]), ");"])
    fields = {"outer": op.options["outer"], "channels": len(table), "inner": op.options["inner"]}
    return Step(op, [f"ep_lut_channels_s8(&{name}, {lut}, ", ctx.operand(op.inputs[0]), ", ", Ref(op.outputs[0]), ");"],
                [CStruct("ep_lut_channels_params", name, fields)])


# op name -> lowering, for the registry built in `lowerings`
LOWERINGS: dict[str, Lower] = {TABLE: lower_table}
