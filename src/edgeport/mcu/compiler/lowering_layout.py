"""Layout ops -> C kernel calls: RESHAPE (and SQUEEZE / EXPAND_DIMS), TRANSPOSE, PAD, CONCATENATION.

One op family of the lowerings (the shared parts are in `lowering`); the `LOWERINGS` table at
the end goes into the registry built in `lowerings`.
"""

from __future__ import annotations

import numpy as np

from edgeport.mcu.compiler.lowering import (
    CTYPES,
    MAX_CONCAT_INPUTS,
    MAX_DIMS,
    CStruct,
    Lower,
    Lowering,
    Ref,
    Step,
    _require_int8,
    _same_quantization,
    _strides,
    _tensors,
    unsupported,
)
from edgeport.mcu.compiler.tflite_ir import Graph, Op


def lower_reshape(op: Op, graph: Graph, ctx: Lowering) -> Step:
    """Same bytes, new shape: the output aliases the input, unless the output must be written
    to the caller's buffer (then a copy)."""
    (inp, *_), (out,) = _tensors(op, graph)
    # int16 activations (int16x8 layers) alias too; they have no C array type, so no copy below
    if inp.dtype != out.dtype or inp.nbytes != out.nbytes or inp.dtype not in (*CTYPES, "int16"):
        raise unsupported(op, graph, f"{inp.dtype} -> {out.dtype}")
    if op.outputs[0] not in ctx.outputs:
        ctx.aliases[op.outputs[0]] = op.inputs[0]
        return Step(op, [f"/* {op.name}: the output shares the input's bytes */"])
    if out.dtype != "int8":
        raise unsupported(op, graph, f"{out.dtype} copy")
    return Step(op, [f"ep_copy_s8({out.size}, ", ctx.operand(op.inputs[0]), ", ", Ref(op.outputs[0]), ");"])


def lower_transpose(op: Op, graph: Graph, ctx: Lowering) -> Step:
    (inp, perm), (out,) = _tensors(op, graph)
    boolean = inp.dtype == out.dtype == "bool"  # a comparison's result (stored as uint8_t): moved as bytes
    if not boolean:
        _require_int8(op, graph, inp, out)
    if not perm.is_constant or len(inp.shape) > MAX_DIMS:
        raise unsupported(op, graph, "permutation not constant" if not perm.is_constant else "over 6-D")
    order = [int(p) % len(inp.shape) for p in np.ravel(perm.data)]
    strides = _strides(inp.shape)
    name = f"op{op.index}"
    fields = {"dims": len(order), "shape": [inp.shape[p] for p in order], "strides": [strides[p] for p in order]}
    cast_in, cast_out = ("(const int8_t *)", "(int8_t *)") if boolean else ("", "")
    return Step(op, [f"ep_transpose_s8(&{name}, {cast_in}", ctx.operand(op.inputs[0]), f", {cast_out}",
                     Ref(op.outputs[0]), ");"], [CStruct("ep_transpose_params", name, fields)])


def lower_pad(op: Op, graph: Graph, ctx: Lowering) -> Step:
    inputs, (out,) = _tensors(op, graph)
    inp, paddings = inputs[0], inputs[1]
    _require_int8(op, graph, inp, out)
    if not paddings.is_constant or not 0 < len(inp.shape) <= MAX_DIMS or not _same_quantization(inp, out):
        raise unsupported(op, graph, "paddings not constant or rescaling pad")
    pads = np.asarray(paddings.data, dtype=np.int64).reshape(len(inp.shape), 2)
    if np.any(pads < 0):
        raise unsupported(op, graph, "negative padding")
    value = out.zero_point
    if op.name == "PADV2" and len(inputs) > 2 and inputs[2] is not None:
        if not inputs[2].is_constant or inputs[2].dtype != "int8":
            raise unsupported(op, graph, "pad value not a constant int8")
        value = int(np.ravel(inputs[2].data)[0])
    name = f"op{op.index}"
    fields = {"dims": len(inp.shape), "in_shape": list(inp.shape), "before": pads[:, 0].tolist(),
              "out_shape": list(out.shape), "value": value}
    return Step(op, [f"ep_pad_s8(&{name}, ", ctx.operand(op.inputs[0]), ", ", Ref(op.outputs[0]), ");"],
                [CStruct("ep_pad_params", name, fields)])


def lower_concatenation(op: Op, graph: Graph, ctx: Lowering) -> Step:
    inputs, (out,) = _tensors(op, graph)
    _require_int8(op, graph, *inputs, out)
    if op.options.get("fused_activation_function", "NONE") != "NONE":
        raise unsupported(op, graph, "fused activation")
    if any(not _same_quantization(t, out) for t in inputs):
        raise unsupported(op, graph, "inputs quantized differently from the output")
    if len(inputs) > MAX_CONCAT_INPUTS:
        raise unsupported(op, graph, f"{len(inputs)} inputs (at most {MAX_CONCAT_INPUTS})")
    axis = int(op.options.get("axis", 0)) % len(out.shape)
    outer = int(np.prod(out.shape[:axis], dtype=np.int64))
    inner = [int(np.prod(t.shape[axis:], dtype=np.int64)) for t in inputs]
    name = f"op{op.index}"
    code = [f"{{ const int8_t *const {name}_inputs[] = {{"]
    for i, index in enumerate(op.inputs):
        code += [", " if i else "", ctx.operand(index)]
    code += [f"}}; ep_concat_s8(&{name}, {name}_inputs, ", Ref(op.outputs[0]), "); }"]
    fields = {"outer": outer, "count": len(inputs), "inner": inner}
    return Step(op, code, [CStruct("ep_concat_params", name, fields)])


# op name -> lowering, for the registry built in `lowerings`
LOWERINGS: dict[str, Lower] = {
    "RESHAPE": lower_reshape, "SQUEEZE": lower_reshape, "EXPAND_DIMS": lower_reshape,
    "TRANSPOSE": lower_transpose,
    "PAD": lower_pad, "PADV2": lower_pad,
    "CONCATENATION": lower_concatenation,
}
