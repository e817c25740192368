"""Binary and ternary filters -> the low-bit kernels of `kernels/ep_lowbit.c`.

With `WeightStorage(lowbit=True)`, `StorageLowering.replacement` offers each op to `lower_lowbit`
first. A FULLY_CONNECTED or CONV_2D (without groups) whose int8 filter holds only -1/+1 (binary)
or -1/0/+1 (ternary), zero points 0, is lowered here: its filter packed to 1 or 2 bits per weight
(`lowbit`), computed

- by add/subtract (`ep_fully_connected_lowbit_s8`, `ep_conv2d_lowbit_s8`), or
- by XOR / AND + popcount (`..._xnor_s8`) when the layer's input only takes two int8 values
  (`two_values`: written by SELECT_V2 between two constants, possibly through reshapes, which is
  how a sign function reaches the .tflite: GREATER_EQUAL then SELECT_V2).

Other ops and filters take their registered lowering (DEPTHWISE_CONV_2D and grouped convolutions
stay int8, with a note). The checks, rescale arrays and quantization tables are the dense
lowerings' (`fc_setup`, `conv_setup`): the same accumulators are requantized by the same code.
The `LOWERINGS` table at the end goes into the low-bit registry built in `lowerings`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgeport.mcu.compiler import planner
from edgeport.mcu.compiler.lowbit import LowbitWeights, lowbit_kind, pack_lowbit, xnor_row_terms
from edgeport.mcu.compiler.lowering import (
    CStruct,
    Lowering,
    Ref,
    ScratchRef,
    Step,
    conv_setup,
    fc_bias_arg,
    fc_setup,
)
from edgeport.mcu.compiler.lowerings import lowbit_lowerings
from edgeport.mcu.compiler.storage import weight_matrix
from edgeport.mcu.compiler.tflite_ir import Graph, Op

RESHAPES = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS")  # same bytes: the values pass unchanged
TABLE_BYTES_PER_BLOCK = 256  # subset sums: 8 groups of 4 inputs x 16 int16 per 32 inputs
INT32 = (-(1 << 31), (1 << 31) - 1)


@dataclass(frozen=True)
class XnorInput:
    """A layer input that only takes the int8 values `one` (coded as bit 1) and `other`, and
    the accumulators' constant part per output channel (`lowbit.xnor_row_terms`)."""

    one: int
    other: int
    input_offset: int
    row_terms: np.ndarray

    @property
    def fields(self) -> dict:
        """The ep_xnor_params fields: one, A - B, B (A, B: the two values + input offset)."""
        return {"one": self.one, "step": self.one - self.other, "other_offset": self.other + self.input_offset}


# A low-bit lowering: a `Lower` that also gets the packed filter and, for the XNOR kernels, the
# two-valued input.
LowbitLower = Callable[[Op, Graph, Lowering, LowbitWeights, XnorInput | None], Step]


def two_values(graph: Graph, index: int) -> tuple[int, int] | None:
    """(value where the condition holds, the other value) if tensor `index` is written by SELECT_V2
    between two int8 constants of one value each (directly or through reshapes), else None."""
    producer = graph.producer(index)
    while producer is not None and producer.name in RESHAPES:
        producer = graph.producer(producer.inputs[0])
    if producer is None or producer.name != "SELECT_V2":
        return None
    values = []
    for tensor in (graph.tensors[i] for i in producer.inputs[1:3]):
        distinct = np.unique(tensor.data) if tensor.is_constant and tensor.dtype == "int8" else ()
        if len(distinct) != 1:
            return None
        values.append(int(distinct[0]))
    return values[0], values[1]


def lowbit_filter(op: Op, graph: Graph) -> tuple[LowbitWeights | None, str | None]:
    """`op`'s filter packed, if its values are binary or ternary and a low-bit kernel takes the op
    and the packing is smaller; else None and, when the values were low-bit, why not."""
    filt = graph.tensors[op.inputs[1]]
    if not filt.is_constant or filt.dtype != "int8" or len(filt.shape) not in (2, 4):
        return None, None
    matrix = weight_matrix(op.name, filt.data)
    kind = lowbit_kind(matrix)
    if kind is None:
        return None, None
    if filt.zero_points is not None and np.any(filt.zero_points != 0):
        return None, f"{kind} values but filter zero point != 0: int8"
    if op.name not in lowbit_lowerings():
        return None, f"{kind} values, no low-bit kernel for {op.name}: int8"
    if op.name == "CONV_2D" and filt.shape[3] != graph.tensors[op.inputs[0]].shape[-1]:
        return None, f"{kind} values, no low-bit kernel for grouped convolutions: int8"
    packed = pack_lowbit(matrix, kind)
    if not np.array_equal(packed.decode(), matrix):  # a packing bug must never become wrong outputs
        raise AssertionError(f"{packed.format} packing of '{filt.label}' does not decode to the model's weights")
    if packed.nbytes >= filt.nbytes:
        return None, f"{packed.format} would take {packed.nbytes} B, int8 {filt.nbytes} B: int8"
    return packed, None


def _xnor_input(op: Op, graph: Graph, packed: LowbitWeights) -> tuple[XnorInput | None, str | None]:
    """The XNOR form of `op`'s input, if it takes two values and every constant fits int32."""
    values = two_values(graph, op.inputs[0])
    if values is None:
        return None, None
    offset = -graph.tensors[op.inputs[0]].zero_point
    terms = xnor_row_terms(packed, *values, offset)
    bias = graph.tensors[op.inputs[2]].data if len(op.inputs) > 2 and op.inputs[2] >= 0 else 0
    total = terms + np.asarray(bias, np.int64)
    if np.any(total < INT32[0]) or np.any(total > INT32[1]):
        return None, "two-valued input, but its constants do not fit int32: add/subtract"
    return XnorInput(*values, offset, terms), None


def lower_lowbit(op: Op, graph: Graph, ctx: Lowering) -> Step | None:
    """The low-bit Step of `op`, or None when its registered lowering should run (notes say why
    where the filter's values were low-bit)."""
    if op.name not in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D") or len(op.inputs) < 2:
        return None
    packed, why = lowbit_filter(op, graph)
    xnor = None
    if packed is not None:
        xnor, why = _xnor_input(op, graph, packed)
    if why:
        ctx.notes.append(f"op {op.index} {op.name} ({graph.node_label(op)}): {why}")
    return None if packed is None else lowbit_lowerings().get(op.name)(op, graph, ctx, packed, xnor)


def _weights(ctx: Lowering, op: Op, packed: LowbitWeights, xnor: XnorInput | None) -> tuple[str, list[CStruct]]:
    """The ep_lowbit_weights struct of `op`'s filter: its name and, the first time, the struct
    (the words are emitted and the storage recorded once per tensor)."""
    index = op.inputs[1]
    name = f"t{index}_lowbit"
    if f"t{index}_bits" in ctx.arrays:
        return name, []
    label = ctx.graph.tensors[index].label
    layout = "+1 bits" if packed.kind == "binary" else "+1 mask, -1 mask"
    bits = ctx.array(f"t{index}_bits", "uint32_t", packed.words,
                     f"{label} ({packed.format}): {packed.row_words} words per output channel, {layout}")
    form = packed.format + (" xnor" if xnor is not None else "")
    ctx.record_storage(op, index, form, "kernel", packed.nbytes)  # the kernels compute from the bits
    fields = {"bits": bits, "rows": packed.rows, "cols": packed.cols, "blocks": packed.blocks,
              "ternary": int(packed.kind == "ternary")}
    return name, [CStruct("ep_lowbit_weights", name, fields)]


def lower_lowbit_fc(op: Op, graph: Graph, ctx: Lowering, packed: LowbitWeights, xnor: XnorInput | None) -> Step:
    fields, rescale = fc_setup(op, graph, ctx)
    name, out = f"op{op.index}", graph.tensors[op.outputs[0]]
    macs = out.size * fields["in_depth"]
    if xnor is None:
        bias_arg = fc_bias_arg(op, graph, ctx, fields)
        x_arg = ctx.operand(op.inputs[0])
        weights, structs = _weights(ctx, op, packed, None)
        return Step(op, [f"ep_fully_connected_lowbit_s8(&{name}, ", x_arg, f", &{weights}, {bias_arg}, {rescale}, ",
                         ScratchRef(), ", ", Ref(op.outputs[0]), ");"],
                    [CStruct("ep_fc_params", name, fields), *structs], macs=macs,
                    scratch=TABLE_BYTES_PER_BLOCK * packed.blocks)
    bias = graph.tensors[op.inputs[2]].data if len(op.inputs) > 2 and op.inputs[2] >= 0 else 0
    constants = ctx.array(f"{name}_row_constant", "int32_t", xnor.row_terms + np.asarray(bias, np.int64),
                          "bias + the accumulator's constant part on the two input values, per output channel")
    x_arg = ctx.operand(op.inputs[0])
    weights, structs = _weights(ctx, op, packed, xnor)
    return Step(op, [f"ep_fully_connected_xnor_s8(&{name}, &{name}_xnor, ", x_arg,
                     f", &{weights}, {constants}, {rescale}, ", ScratchRef(), ", ", Ref(op.outputs[0]), ");"],
                [CStruct("ep_fc_params", name, fields), CStruct("ep_xnor_params", f"{name}_xnor", xnor.fields),
                 *structs], macs=macs, scratch=4 * packed.blocks)


def lower_lowbit_conv(op: Op, graph: Graph, ctx: Lowering, packed: LowbitWeights, xnor: XnorInput | None) -> Step:
    fields, taps = conv_setup(op, graph, ctx, None if xnor is None else xnor.row_terms)
    name, out = f"op{op.index}", graph.tensors[op.outputs[0]]
    x_arg = ctx.operand(op.inputs[0])
    weights, structs = _weights(ctx, op, packed, xnor)
    structs = [CStruct("ep_conv_params", name, fields), *structs]
    macs = out.size * taps.shape[1]
    tail = [f", &{weights}, {name}_quant, ", ScratchRef(), ", ", Ref(op.outputs[0]), ");"]
    if xnor is None:
        pointwise = fields["k_h"] == fields["k_w"] == 1 and fields["pad_h"] == fields["pad_w"] == 0
        window = 0 if pointwise else planner.align_up(taps.shape[1], 4)  # the gathered window
        return Step(op, [f"ep_conv2d_lowbit_s8(&{name}, ", x_arg, *tail], structs, macs=macs,
                    scratch=TABLE_BYTES_PER_BLOCK * packed.blocks + window)
    structs.append(CStruct("ep_xnor_params", f"{name}_xnor", xnor.fields))
    return Step(op, [f"ep_conv2d_xnor_s8(&{name}, &{name}_xnor, ", x_arg, *tail], structs, macs=macs,
                scratch=8 * packed.blocks)


# op name -> low-bit lowering, for the registry built in `lowerings` (other ops keep their int8 kernel)
LOWERINGS: dict[str, LowbitLower] = {"FULLY_CONNECTED": lower_lowbit_fc, "CONV_2D": lower_lowbit_conv}
